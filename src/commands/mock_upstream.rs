//! `connector-runtime mock-upstream`: serves the fake API of [`crate::mock_upstream`].

use super::Failure;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use clap::Args;

/// Serves a realistic fake API (OAuth token endpoint, users, items, echo) for demos, tests
/// and load tests.
#[derive(Debug, Clone, Args)]
pub struct MockUpstreamArgs {
    /// Address to listen on.
    #[arg(long, env = "MOCK_UPSTREAM_LISTEN", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Latency added before every answer, in milliseconds.
    #[arg(long, env = "MOCK_UPSTREAM_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Worker threads.
    #[arg(long, env = "MOCK_UPSTREAM_WORKERS", default_value_t = 2)]
    pub workers: usize,
}

/// Runs the mock; returns the exit code.
pub(crate) fn run(args: MockUpstreamArgs) -> Result<i32, Failure> {
    actix_rt::System::new().block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .map_err(|e| Failure::new(1, format!("cannot listen on {}: {e}", args.listen)))?;
        eprintln!(
            "mock-upstream listening on http://{} (latency {} ms)",
            args.listen, args.latency_ms
        );
        let server = crate::mock_upstream::start(
            listener,
            Duration::from_millis(args.latency_ms),
            args.workers,
        )
        .map_err(|e| Failure::new(1, e))?;
        server.await.map(|()| 0).map_err(|e| Failure::new(1, e))
    })
}

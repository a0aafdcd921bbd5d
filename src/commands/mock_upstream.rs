//! `connector-runtime mock-upstream`: serves the fake API of [`crate::mock_upstream`].

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
pub fn run(args: MockUpstreamArgs) -> i32 {
    actix_rt::System::new().block_on(async move {
        let listener = match TcpListener::bind(args.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return 1;
            }
        };
        eprintln!(
            "mock-upstream listening on http://{} (latency {} ms)",
            args.listen, args.latency_ms
        );
        match crate::mock_upstream::start(
            listener,
            Duration::from_millis(args.latency_ms),
            args.workers,
        ) {
            Ok(server) => server.await.map(|_| 0).unwrap_or(1),
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    })
}

//! `connector-runtime demo`: the mock upstream and the server with the bundled example
//! registry, wired together, with curl lines to try. No setup, no files.

use super::Failure;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::config::ServeArgs;
use crate::mock_upstream::identity::{self, Member};
use crate::registry::RegistrySource;
use crate::server::{build_options, Application};
use crate::template::{SecretStore, Variables};

/// The bundled example registry (the same file as `examples/connectors_registry.json`).
pub(crate) const EXAMPLE_REGISTRY: &str = include_str!("../../examples/connectors_registry.json");

/// Runs the server on the example registry against a local mock upstream.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address of the connector server.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Address of the mock upstream.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub upstream_listen: SocketAddr,
    /// Latency the mock upstream adds to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// `demo token`: print a token for the demo member instead.
    #[command(subcommand)]
    pub action: Option<DemoAction>,
}

/// What `demo` does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum DemoAction {
    /// Print a token for the demo member, to send to a running demo as `Authorization: Bearer <token>`.
    Token(DemoTokenArgs),
}

/// The demo member a token describes.
#[derive(Debug, Clone, Args)]
pub struct DemoTokenArgs {
    /// The member's id (`sub`, seen by templates as `user.id`).
    #[arg(long, default_value = "member-1001")]
    pub sub: String,
    /// The member's email (`user.email`).
    #[arg(long, default_value = "ada@example.com")]
    pub email: String,
    /// Seconds the token is valid.
    #[arg(long, default_value_t = 12 * 3600)]
    pub ttl_secs: u64,
}

fn demo_token(member: &Member) -> Result<String, Failure> {
    identity::token(member).map_err(|e| Failure::new(1, format!("cannot sign the demo token: {e}")))
}

/// The demo's secrets: what the example registry's `get_secret()` calls read.
pub(crate) fn demo_secrets() -> SecretStore {
    let mut secrets = SecretStore::new();
    secrets.insert("items_api_token", crate::mock_upstream::TOKEN);
    secrets.insert("items_api_key", "demo-api-key");
    secrets
}

/// The demo's variables: both base URLs point at the mock upstream.
pub(crate) fn demo_variables(upstream: SocketAddr) -> Variables {
    let base = serde_json::Value::from(format!("http://{upstream}"));
    let mut map = serde_json::Map::new();
    map.insert("api_base_url".into(), base.clone());
    map.insert("auth_base_url".into(), base);
    Variables::from_map(map)
}

fn curl_lines(base: &str, token: &str) -> String {
    [
        format!("curl -si -X POST '{base}/connectors/composite/member-items/execute' -H 'Authorization: Bearer {token}'"),
        format!("curl -si -X POST {base}/connectors/composite/auth-and-fetch-user/execute -H 'Content-Type: application/json' -d '{{\"clientId\": \"widget-42\"}}'"),
        format!("curl -si -X POST '{base}/connectors/composite/user-with-items/execute?limit=3'"),
        format!("curl -si {base}/connectors/get-item/execute -H 'X-Path-Params: item_id=itm_042'"),
        format!("curl -si '{base}/connectors/search-items/execute?limit=2&q=item'"),
        format!("curl -si -X POST {base}/connectors/echo-payload/execute -d '{{\"hello\": \"world\"}}'"),
    ]
    .join("\n  ")
}

/// Runs the demo (or `demo token`); returns the exit code.
pub(crate) fn run(args: DemoArgs) -> Result<i32, Failure> {
    if let Some(DemoAction::Token(member)) = &args.action {
        println!(
            "{}",
            demo_token(&Member {
                sub: member.sub.clone(),
                email: member.email.clone(),
                ttl_secs: member.ttl_secs,
            })?
        );
        return Ok(0);
    }
    crate::telemetry::init(crate::config::LogFormat::Text);
    actix_rt::System::new().block_on(async move {
        let listener = TcpListener::bind(args.upstream_listen).map_err(|e| {
            Failure::new(
                1,
                format!(
                    "cannot listen on {} for the mock upstream: {e}",
                    args.upstream_listen
                ),
            )
        })?;
        let upstream_addr = listener.local_addr().unwrap_or(args.upstream_listen);
        let mock = crate::mock_upstream::start(listener, Duration::from_millis(args.latency_ms), 1)
            .map_err(|e| Failure::new(1, e))?;
        actix_rt::spawn(mock);
        let mut serve = ServeArgs::defaults();
        serve.listen = args.listen;
        serve.allow_private_upstreams = true;
        serve.console = true;
        serve.debug_requests = true;
        // The demo member's tokens are verified against the mock's JWKS (on loopback even
        // when the mock listens on every address).
        let mut jwks_addr = upstream_addr;
        if jwks_addr.ip().is_unspecified() {
            jwks_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        serve.identity =
            identity::identity_args(format!("http://{jwks_addr}{}", identity::JWKS_PATH));
        let mut options = build_options(&serve).map_err(|e| Failure::new(1, e))?;
        options.secrets = Arc::new(demo_secrets());
        options.variables = Arc::new(demo_variables(upstream_addr));
        let drain_timeout_secs = serve.shutdown_timeout_secs;
        let signals = super::serve::StopSignals::install()
            .map_err(|e| Failure::new(1, format!("cannot install the signal handlers: {e}")))?;
        let app = Application::build_from(
            serve,
            options,
            RegistrySource::Inline(EXAMPLE_REGISTRY.to_string()),
        )
        .await
        .map_err(|e| Failure::new(1, e))?;
        let base = format!("http://{}:{}", args.listen.ip(), app.port());
        println!("connector-runtime demo");
        println!("  server:        {base}   (example registry: examples/connectors_registry.json)");
        println!("  mock upstream: http://{upstream_addr}");
        println!("  console:       {base}/console");
        let token = demo_token(&Member::default())?;
        println!("  demo member:   a token valid 12 h (another: connector-runtime demo token)");
        println!("                 {token}");
        println!("Try:\n  {}", curl_lines(&base, &token));
        println!("Stop with Ctrl-C.");
        super::serve::serve_until_signalled(app, signals, drain_timeout_secs).await
    })
}

//! Server settings: every flag is also an environment variable `CONNECTOR_RUNTIME_*`
//! (the doc comments below are the `--help` text).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::registry::source::git::cache_dir;
use crate::registry::source::GitSource;
use crate::registry::RegistrySource;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of `serve` (and of `run` and `demo`, which start the same engine).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Registry file to serve (connectors_registry.json); watched for changes.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_REGISTRY",
        required_unless_present = "registry_git",
        conflicts_with = "registry_git"
    )]
    pub registry: Option<PathBuf>,
    /// Git repository holding the registry (URL or local path; https, ssh or file).
    #[arg(long, env = "CONNECTOR_RUNTIME_REGISTRY_GIT")]
    pub registry_git: Option<String>,
    /// Branch of --registry-git to serve.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_REGISTRY_BRANCH",
        default_value = "main"
    )]
    pub registry_branch: String,
    /// Path of the registry file inside the repository.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_REGISTRY_PATH",
        default_value = "connectors_registry.json"
    )]
    pub registry_path: String,
    /// Seconds between re-reads of the registry source (0 = never; webhooks and file watching still work).
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_REGISTRY_POLL_SECS",
        default_value_t = 30
    )]
    pub registry_poll_secs: u64,
    /// Directory for the git fetch cache, private to this user (default: connector-runtime-<uid> in the system temp dir).
    #[arg(long, env = "CONNECTOR_RUNTIME_REGISTRY_CACHE_DIR")]
    pub registry_cache_dir: Option<PathBuf>,
    /// Secret of the push webhook (POST /hooks/git, GitHub X-Hub-Signature-256); the webhook is off without it.
    #[arg(long, env = "CONNECTOR_RUNTIME_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Bearer token of the operator API (/admin/...); the API is off without it.
    #[arg(long, env = "CONNECTOR_RUNTIME_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Answer `X-Debug-Request: 1` with the resolved upstream requests in an `X-Debug-Request`
    /// header (secrets shown as their template text). Without it, only requests carrying
    /// `X-Admin-Token: <admin token>` get it. For development (on in `demo`).
    #[arg(long, env = "CONNECTOR_RUNTIME_DEBUG_REQUESTS")]
    pub debug_requests: bool,
    /// Address to listen on.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Directory of secrets, one file per secret (e.g. /run/secrets).
    #[arg(long, env = "CONNECTOR_RUNTIME_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// JSON file of variables for get_variable().
    #[arg(long, env = "CONNECTOR_RUNTIME_VARIABLES_FILE")]
    pub variables_file: Option<PathBuf>,
    /// Allow http:// upstreams and private, loopback and link-local addresses (local development and tests only).
    #[arg(long, env = "CONNECTOR_RUNTIME_ALLOW_PRIVATE_UPSTREAMS")]
    pub allow_private_upstreams: bool,
    /// Time limit of one upstream call, in milliseconds.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_STEP_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub step_timeout_ms: u64,
    /// Most items a `for_each` step may fan out to; a longer list fails the run with 422
    /// FAN_OUT_TOO_LARGE before any item is called.
    #[arg(long, env = "CONNECTOR_RUNTIME_MAX_FANOUT", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_fanout: u64,
    /// Time limit of one OAuth token request, in milliseconds.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_TOKEN_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub token_timeout_ms: u64,
    /// Largest upstream response body read, in bytes.
    #[arg(long, env = "CONNECTOR_RUNTIME_MAX_RESPONSE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Largest total size of cached upstream answers (connectors with cache_ttl_seconds), in bytes.
    #[arg(long, env = "CONNECTOR_RUNTIME_RESPONSE_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub response_cache_bytes: u64,
    /// Largest request body accepted from callers, in bytes (larger ones get 413).
    #[arg(long, env = "CONNECTOR_RUNTIME_MAX_REQUEST_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Time a caller's whole request body gets to arrive, in milliseconds (slower ones get 408); no run slot is held meanwhile.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_REQUEST_BODY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub request_body_timeout_ms: u64,
    /// Retries of an upstream call that failed to connect (refused, DNS, connect time-out); GET, HEAD, PUT, DELETE and OPTIONS only, within --step-timeout-ms (0 = no retries).
    #[arg(long, env = "CONNECTOR_RUNTIME_UPSTREAM_RETRIES", default_value_t = 1)]
    pub upstream_retries: u32,
    /// Wait before the first retry, in milliseconds; doubled for each further one, at most 1000.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_UPSTREAM_RETRY_BACKOFF_MS",
        default_value_t = 50
    )]
    pub upstream_retry_backoff_ms: u64,
    /// Most connector runs in flight at once, over all workers; more get 503 OVERLOADED at once (0 = no limit).
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_MAX_IN_FLIGHT",
        default_value_t = 10_000
    )]
    pub max_in_flight: usize,
    /// Most simultaneous upstream connections per worker (0 = no limit).
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_UPSTREAM_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub upstream_max_connections: usize,
    /// PEM file of extra roots trusted for upstream TLS (a private CA), added to the bundled Mozilla roots.
    #[arg(long, env = "CONNECTOR_RUNTIME_UPSTREAM_CA_FILE", value_name = "PATH")]
    pub upstream_ca_file: Option<PathBuf>,
    /// Serve GET /metrics on this separate address instead of the main one.
    #[arg(long, env = "CONNECTOR_RUNTIME_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Origins whose pages may call the runtime (CORS), e.g. https://app.example.com; repeatable, `*` for any. None by default.
    #[arg(
        long = "allow-origin",
        env = "CONNECTOR_RUNTIME_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origin: Vec<String>,
    /// Serve the connector console at /console.
    #[arg(long, env = "CONNECTOR_RUNTIME_CONSOLE")]
    pub console: bool,
    /// Worker threads (default: one per CPU core).
    #[arg(long, env = "CONNECTOR_RUNTIME_WORKERS")]
    pub workers: Option<usize>,
    /// Answer DNS for HOST with IP instead of asking DNS (repeatable; like curl --resolve).
    #[arg(
        long = "resolve",
        value_name = "HOST=IP",
        env = "CONNECTOR_RUNTIME_RESOLVE",
        value_delimiter = ';'
    )]
    pub resolve: Vec<String>,
    /// Template fuel: bound on the work one template render may do.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_TEMPLATE_FUEL",
        default_value_t = crate::template::engine::DEFAULT_TEMPLATE_FUEL
    )]
    pub template_fuel: u64,
    /// What a missing variable, attribute, key or index does in a template: `strict`, a
    /// rendering error (422); `lenient`, empty text, as Python Jinja2's default `Undefined`.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_TEMPLATE_UNDEFINED",
        value_enum,
        default_value_t = crate::template::UndefinedMode::Strict
    )]
    pub template_undefined: crate::template::UndefinedMode,
    /// Seconds runs in flight get to finish on shutdown.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub shutdown_timeout_secs: u64,
    /// Log format.
    #[arg(long, env = "CONNECTOR_RUNTIME_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Caller identity: `user.*` and `tenant_id` from a verified token (docs/spec.md §9).
    #[command(flatten, next_help_heading = "Caller identity")]
    pub identity: crate::identity::IdentityArgs,
    /// Traces: OpenTelemetry over OTLP/HTTP (docs/spec.md §13).
    #[command(flatten, next_help_heading = "Tracing")]
    pub trace: crate::trace::TraceArgs,
    /// Shared state across replicas: Redis (docs/spec.md §11).
    #[command(flatten, next_help_heading = "Shared state")]
    pub shared_state: crate::shared_state::SharedStateArgs,
}

impl ServeArgs {
    /// Every flag at its default, listening on a free port of 127.0.0.1 and serving no
    /// registry source yet: what `demo` (which serves the built-in example registry) and
    /// the tests start from. The defaults are clap's (the attributes above are the one place
    /// they are written), and the `CONNECTOR_RUNTIME_*` environment applies as it does to
    /// `serve`.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut args = <Defaults as clap::Parser>::try_parse_from([
            "connector-runtime",
            "--registry",
            "connectors_registry.json",
        ])
        .expect("the defaults parse")
        .serve;
        args.registry = None;
        args.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        args
    }

    /// [`ServeArgs::defaults`] serving the registry file `registry`.
    pub fn for_registry(registry: impl Into<PathBuf>) -> Self {
        ServeArgs {
            registry: Some(registry.into()),
            ..ServeArgs::defaults()
        }
    }

    /// The registry source these settings name.
    pub fn registry_source(&self) -> RegistrySource {
        match (&self.registry_git, &self.registry) {
            (Some(url), _) => {
                let base = self
                    .registry_cache_dir
                    .clone()
                    .unwrap_or_else(crate::registry::source::git::default_cache_base);
                RegistrySource::Git(GitSource::new(
                    url.clone(),
                    self.registry_branch.clone(),
                    self.registry_path.clone(),
                    cache_dir(&base, url),
                ))
            }
            (None, Some(path)) => RegistrySource::File(path.clone()),
            (None, None) => RegistrySource::Inline(String::new()),
        }
    }

    /// The step timeout.
    pub(crate) fn step_timeout(&self) -> Duration {
        Duration::from_millis(self.step_timeout_ms)
    }
}

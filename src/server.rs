//! The application: loads the registry, starts the registry actor and the HTTP server with
//! a step actor and an upstream client per worker. `main`, `demo` and the tests all start it
//! the same way (tests bind port 0).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::config::ServeArgs;
use crate::events::IdentityKeysEvent;
use crate::http::{self, AppState, OperatorAccess};
use crate::identity::{Identity, IdentityStartError, KeyStoreOptions};
use crate::metrics::Metrics;
use crate::registry::actor::SyncError;
use crate::registry::{
    BuildOptions, CallerIdentity, LoadMode, RegistryActor, RegistryHandle, RegistrySource,
    SyncReason,
};
use crate::run::step::{StepActor, StepRunner};
use crate::run::{IdentityGate, RunSettings, SharedRunState};
use crate::template::secrets::SecretsError;
use crate::template::{RenderLimits, SecretStore, Variables};
use crate::upstream::client::ClientSettings;
use crate::upstream::resolver::parse_overrides;
use crate::upstream::{build_client, AddressPolicy, RetryPolicy};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Secrets or variables could not be read.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The registry is invalid or its source unreadable.
    #[error("the registry could not be loaded:\n{}", describe_sync_error(.error))]
    Registry {
        /// Why.
        #[from]
        error: SyncError,
    },
    /// A flag has a bad value.
    #[error("{0}")]
    Config(String),
    /// Caller identity could not start (its flags, or its keys at start).
    #[error(transparent)]
    Identity(#[from] IdentityStartError),
    /// Tracing could not start (its exporter's settings).
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    /// The shared state's flags are unusable.
    #[error(transparent)]
    SharedState(#[from] crate::shared_state::SharedStateError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

fn describe_sync_error(error: &SyncError) -> String {
    match error {
        SyncError::Rejected(r) => r.report.to_text(),
        other => other.to_string(),
    }
}

/// Starts the step actor of each worker: the upstream client settings (each worker builds
/// its own client) and the state every step shares.
#[derive(Clone)]
pub struct StepActors {
    /// Upstream client settings.
    pub client: ClientSettings,
    /// Shared run state (limits, token cache).
    pub shared: Arc<SharedRunState>,
}

impl StepActors {
    /// The step actors described by `args`, recording into `metrics`; with `--redis-url`
    /// their tokens, cache and quotas are shared with other replicas (must run inside the
    /// server's runtime: the Redis connection manager is started there, lazily).
    pub fn from_args(
        args: &ServeArgs,
        metrics: Arc<Metrics>,
        tracing: Option<Arc<crate::trace::Tracing>>,
    ) -> Result<Self, StartError> {
        let overrides = parse_overrides(&args.resolve).map_err(StartError::Config)?;
        let cluster = crate::shared_state::SharedState::start(&args.shared_state, metrics.clone())?;
        Ok(StepActors {
            client: ClientSettings {
                policy: AddressPolicy {
                    allow_private: args.allow_private_upstreams,
                },
                overrides,
                connect_timeout: args.step_timeout(),
                max_connections: args.upstream_max_connections,
                tls: crate::upstream::tls::client_config(args.upstream_ca_file.as_deref())
                    .map_err(|e| StartError::Config(e.to_string()))?,
            },
            shared: SharedRunState::new(
                RunSettings {
                    step_timeout: args.step_timeout(),
                    token_timeout: Duration::from_millis(args.token_timeout_ms),
                    max_response_bytes: args.max_response_bytes,
                    retry: RetryPolicy {
                        retries: args.upstream_retries,
                        backoff: Duration::from_millis(args.upstream_retry_backoff_ms),
                    },
                    response_cache_bytes: args.response_cache_bytes,
                    max_fanout: args.max_fanout as usize,
                },
                metrics,
                tracing,
                cluster,
            ),
        })
    }

    /// Starts a step actor for the current worker thread.
    pub fn start(&self) -> Addr<StepActor> {
        StepActor::new(build_client(&self.client), self.shared.clone()).start()
    }

    /// Starts a step actor for the current worker thread, and gives its runner too (the
    /// server's runs execute their steps with it, sharing the actor's client and pool).
    pub fn start_with_runner(&self) -> (Addr<StepActor>, StepRunner) {
        let runner = StepRunner::new(build_client(&self.client), self.shared.clone());
        (StepActor::with_runner(runner.clone()).start(), runner)
    }
}

/// Registry build options for `args`, reading secrets and variables.
pub fn build_options(args: &ServeArgs) -> Result<BuildOptions, StartError> {
    Ok(BuildOptions {
        secrets: Arc::new(SecretStore::load(args.secrets_dir.as_deref())?),
        variables: Arc::new(Variables::load(args.variables_file.as_deref())?),
        limits: RenderLimits {
            fuel: args.template_fuel,
            max_output_bytes: args.max_response_bytes,
            undefined: args.template_undefined,
        },
        mode: LoadMode::Serve,
        allow_http: args.allow_private_upstreams,
        identity: Some(CallerIdentity::of(&args.identity).unwrap_or_default()),
    })
}

/// The identity gate `args` configure: identity started (see [`start_identity`]) and the
/// tenant source.
pub(crate) async fn identity_gate(
    args: &ServeArgs,
    metrics: &Arc<Metrics>,
) -> Result<Arc<IdentityGate>, StartError> {
    Ok(Arc::new(IdentityGate::new(
        start_identity(args, metrics).await?,
        &args.identity,
    )))
}

/// Caller identity as `args` configure it (`None` when off): its keys fetched once, its
/// refresh started, its key events counted in `metrics`.
async fn start_identity(
    args: &ServeArgs,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<Identity>>, StartError> {
    if args.identity.identity_cookie.is_some() && args.allow_origin.iter().any(|o| o == "*") {
        // The cookie is sent by the browser on its own: only origins the operator names may
        // make requests that carry it (CSRF; README "Caller identity").
        return Err(StartError::Config(
            "--identity-cookie cannot be used with --allow-origin '*': name the origins allowed to send the cookie".into(),
        ));
    }
    let observer_metrics = metrics.clone();
    let options = KeyStoreOptions {
        observer: Arc::new(move |event| IdentityKeysEvent(event).emit(&observer_metrics)),
        ..KeyStoreOptions::default()
    };
    let Some(identity) = Identity::start_with(&args.identity, options).await? else {
        return Ok(None);
    };
    // The task ends with the key store, when the server is dropped.
    let _refresh = identity.spawn_refresh();
    Ok(Some(Arc::new(identity)))
}

/// A running server.
pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: Server,
    registry: RegistryHandle,
    registry_actor: Addr<RegistryActor>,
    tracing: Option<Arc<crate::trace::Tracing>>,
}

impl Application {
    /// Starts caller identity (fetching its keys once), loads the registry (failing if it is
    /// invalid) and binds the listener. Must be called inside an actix system.
    pub async fn build(args: ServeArgs) -> Result<Self, StartError> {
        let options = build_options(&args)?;
        Self::build_with_options(args, options).await
    }

    /// Like [`Application::build`] with explicit registry build options.
    pub async fn build_with_options(
        args: ServeArgs,
        options: BuildOptions,
    ) -> Result<Self, StartError> {
        let source = args.registry_source();
        Self::build_from(args, options, source).await
    }

    /// Like [`Application::build_with_options`] with an explicit registry source.
    pub(crate) async fn build_from(
        args: ServeArgs,
        options: BuildOptions,
        source: RegistrySource,
    ) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let identity = identity_gate(&args, &metrics).await?;
        let tracing = crate::trace::Tracing::start(&args.trace)?;
        let step_actors = StepActors::from_args(&args, metrics.clone(), tracing.clone())?;
        let registry = RegistryHandle::new();
        let watch = matches!(source, RegistrySource::File(_));
        let branch = source.branch().map(str::to_string);
        let mut actor = RegistryActor::new(source, options, registry.clone(), metrics.clone())
            .poll_every(Some(Duration::from_secs(args.registry_poll_secs)))
            .watch_file(watch);
        actor.load_now(SyncReason::Startup)?;
        let registry_actor = actor.start();
        let operator = OperatorAccess {
            registry_actor: registry_actor.clone(),
            admin_token: args
                .admin_token
                .clone()
                .filter(|t| !t.is_empty())
                .map(Into::into),
            webhook_secret: args
                .webhook_secret
                .clone()
                .filter(|t| !t.is_empty())
                .map(Into::into),
            branch: branch.map(Into::into),
        };
        let listener = TcpListener::bind(args.listen).map_err(|source| StartError::Bind {
            addr: args.listen,
            source,
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let state_registry = registry.clone();
        let request_body = http::body::BodyLimits {
            max_bytes: args.max_request_bytes,
            timeout: Duration::from_millis(args.request_body_timeout_ms),
        };
        let metrics_separately = args.metrics_listen.is_some();
        let console = args.console;
        let origins = args.allow_origin.clone();
        let cookie_credentials = args.identity.identity_cookie.is_some();
        let debug_requests = args.debug_requests;
        let app_metrics = metrics.clone();
        let app_tracing = tracing.clone();
        // One count for every worker: the cap is on the process, not per worker.
        let run_slots = http::overload::RunSlots::new(args.max_in_flight);
        let mut server = HttpServer::new(move || {
            let (step_actor, steps) = step_actors.start_with_runner();
            let state = AppState {
                registry: state_registry.clone(),
                step_actor,
                steps,
                request_body,
                metrics: app_metrics.clone(),
                operator: operator.clone(),
                console,
                allow_origins: origins.clone().into(),
                run_slots: run_slots.clone(),
                identity: identity.clone(),
                tracing: app_tracing.clone(),
                debug_requests,
            };
            let mut app = App::new()
                .app_data(web::Data::new(state))
                .configure(http::configure);
            if !metrics_separately {
                app = app.route("/metrics", web::get().to(http::metrics::metrics));
            }
            app.default_service(web::to(http::not_found)).wrap(
                actix_web::middleware::Condition::new(
                    !origins.is_empty(),
                    http::cors(&origins, cookie_credentials).unwrap_or_default(),
                ),
            )
        })
        .shutdown_timeout(args.shutdown_timeout_secs)
        // A caller that closes its connection cancels its run: actix-web then drops the
        // request's future, and with it the run (run/composite.rs). HTTP/1 callers do not
        // half-close a connection while they wait for the answer.
        .h1_allow_half_closed(false)
        // The commands handle signals (commands/serve.rs: SIGINT drains like SIGTERM).
        .disable_signals();
        if let Some(workers) = args.workers {
            server = server.workers(workers.max(1));
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind {
                addr: args.listen,
                source,
            })?
            .run();
        let metrics_port = match args.metrics_listen {
            Some(addr) => Some(
                http::metrics::serve_separately(addr, metrics.clone())
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        Ok(Application {
            port,
            metrics_port,
            server,
            registry,
            registry_actor,
            tracing,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate metrics listener, if `--metrics-listen` was given.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// The published registry.
    pub fn registry(&self) -> RegistryHandle {
        self.registry.clone()
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Re-reads the registry on SIGHUP (the `serve` command turns this on).
    pub(crate) fn reload_on_sighup(&self) {
        let actor = self.registry_actor.clone();
        actix_rt::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: re-reading the registry");
                actor.do_send(crate::registry::Sync(SyncReason::Signal));
            }
        });
    }

    /// Serves until stopped through [`Application::handle`] (no signal handling of its own).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some(tracing) = self.tracing {
            // The spans still buffered go out before the process ends.
            tracing.shutdown();
        }
        served
    }
}

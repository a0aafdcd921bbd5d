//! The HTTP API: execution routes, health, and the error envelope.

pub(crate) mod admin;
pub(crate) mod assets;
pub mod body;
pub(crate) mod envelope;
pub(crate) mod execute;
pub(crate) mod health;
pub mod hooks;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub mod overload;
pub(crate) mod request_id;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};

use std::sync::Arc;

use crate::error::Code;
use crate::registry::{RegistryActor, RegistryHandle};
use crate::run::step::{StepActor, StepRunner};
use envelope::Envelope;

/// What every request handler of one worker shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The published registry.
    pub registry: RegistryHandle,
    /// This worker's step executor.
    pub step_actor: Addr<StepActor>,
    /// The step actor's runner: a run executes its steps with it in its own task.
    pub steps: StepRunner,
    /// How large a caller's body may be, and how long it may take to arrive.
    pub request_body: body::BodyLimits,
    /// Metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The operator API and the push webhook.
    pub operator: OperatorAccess,
    /// Whether `/console` is served.
    pub console: bool,
    /// Origins allowed by `--allow-origin` (for `Timing-Allow-Origin`).
    pub allow_origins: Arc<[String]>,
    /// Runs in flight over all workers, capped by `--max-in-flight`.
    pub run_slots: overload::RunSlots,
    /// Caller identity (docs/spec.md §9).
    pub identity: Arc<crate::run::IdentityGate>,
    /// Traces, when an OTLP endpoint is configured (docs/spec.md §13).
    pub tracing: Option<Arc<crate::trace::Tracing>>,
    /// Whether every caller may ask for `X-Debug-Request` (`--debug-requests`); without
    /// it only a caller presenting the admin token may (docs/spec.md §14).
    pub debug_requests: bool,
}

/// What the operator API and the push webhook need.
#[derive(Debug, Clone)]
pub struct OperatorAccess {
    /// The registry actor (sync, status).
    pub registry_actor: Addr<RegistryActor>,
    /// Bearer token of `/admin/*`; the API is off without one.
    pub admin_token: Option<Arc<str>>,
    /// Secret of `POST /hooks/git`; the webhook is off without one.
    pub webhook_secret: Option<Arc<str>>,
    /// The watched branch (git sources).
    pub branch: Option<Arc<str>>,
}

/// Mounts every route. actix-web tries routes in the order they are mounted, so the execute
/// routes come first: every other one would be matched and rejected on each run before them
/// (scenario A, callgrind: about 1,700 instructions per run for 14 routes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // SIMPLE_ROUTE and COMPOSITE_ROUTE (see execute::dispatch).
    cfg.service(web::scope("/connectors").default_service(web::to(execute::dispatch)))
        .route("/healthz", web::get().to(health::healthz))
        .route("/livez", web::get().to(health::healthz))
        .route("/openapi.json", web::get().to(openapi::document))
        .route("/readyz", web::get().to(health::readyz))
        .route("/sdk/connectors-sdk.js", web::get().to(assets::sdk_classic))
        .route("/sdk/connectors-sdk.mjs", web::get().to(assets::sdk_module))
        .route("/sdk/connectors-sdk.d.ts", web::get().to(assets::sdk_types))
        .route("/console", web::get().to(assets::console))
        .route(
            "/console/api/connectors",
            web::get().to(assets::console_connectors),
        )
        .route("/admin/registry", web::get().to(admin::status))
        .route("/admin/registry/sync", web::post().to(admin::sync))
        .route("/hooks/git", web::post().to(hooks::git_push));
}

/// Headers scripts on allowed origins may read (the SDK reads the first three;
/// `X-Debug-Request` is there only when asked for and allowed, docs/spec.md §14).
pub(crate) const EXPOSED_HEADERS: [&str; 4] = [
    "Server-Timing",
    "X-Connector-Timing",
    "X-Request-ID",
    crate::run::debug::HEADER,
];

/// CORS for `origins` (`*` allows any origin): preflights answered, timing and request-id
/// headers exposed. `None` when no origin is allowed (same-origin only, the default). With
/// `credentials` (the identity cookie, `--identity-cookie`), the named origins may send
/// cookies and read the answers (`Access-Control-Allow-Credentials: true`); never with `*`,
/// which the server refuses together with the cookie.
pub(crate) fn cors(origins: &[String], credentials: bool) -> Option<actix_cors::Cors> {
    if origins.is_empty() {
        return None;
    }
    let mut cors = actix_cors::Cors::default()
        .allow_any_method()
        .allowed_headers([
            "Content-Type",
            "X-Path-Params",
            "X-CSRF-Token",
            "X-Request-ID",
            "Authorization",
            crate::run::debug::HEADER,
        ])
        .expose_headers(EXPOSED_HEADERS)
        .max_age(600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin().allow_any_header();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin.trim_end_matches('/'));
        }
        if credentials {
            cors = cors.supports_credentials();
        }
    }
    Some(cors)
}

/// Lets pages on allowed origins read `Server-Timing` through the Resource Timing API.
pub(crate) fn timing_allow_origin(origins: &[String], req_origin: Option<&str>) -> Option<String> {
    let origin = req_origin?;
    let allowed = origins
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/') == origin);
    allowed.then(|| origin.to_string())
}

/// Any other path: 404 in the envelope.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let id = request_id::of(&req);
    Envelope::new(
        Code::RouteNotFound,
        format!("no route for {} {}", req.method(), req.path()),
    )
    .response(&id)
}

/// The 404 of a route whose feature is off: `what` is off, start with `flag`.
pub(crate) fn feature_off_error(what: &str, flag: &str) -> Envelope {
    Envelope::new(
        Code::RouteNotFound,
        format!("the {what} is off (start with {flag})"),
    )
}

/// [`feature_off_error`] as the answer to `req`.
pub(crate) fn feature_off(req: &HttpRequest, what: &str, flag: &str) -> HttpResponse {
    feature_off_error(what, flag).response(&request_id::of(req))
}

//! The HTTP API: execution routes, health, and the error envelope.

pub mod admin;
pub mod envelope;
pub mod execute;
pub mod health;
pub mod hooks;
pub mod metrics;
pub mod request_id;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};

use std::sync::Arc;

use crate::registry::{RegistryActor, RegistryHandle};
use crate::run::step::StepActor;
use envelope::Envelope;

/// What every request handler of one worker shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The published registry.
    pub registry: RegistryHandle,
    /// This worker's step executor.
    pub step_actor: Addr<StepActor>,
    /// Largest accepted request body.
    pub max_request_bytes: usize,
    /// Metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The operator API and the push webhook.
    pub operator: OperatorAccess,
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

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/admin/registry", web::get().to(admin::status))
        .route("/admin/registry/sync", web::post().to(admin::sync))
        .route("/hooks/git", web::post().to(hooks::git_push))
        .route(
            "/connectors/composite/{permalink}/execute",
            web::route().to(execute::composite),
        )
        .route(
            "/connectors/{permalink}/execute",
            web::route().to(execute::simple),
        );
}

/// Any other path: 404 in the envelope.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let id = request_id::of(&req);
    Envelope::request(
        404,
        "ROUTE_NOT_FOUND",
        format!("no route for {} {}", req.method(), req.path()),
    )
    .response(&id)
}

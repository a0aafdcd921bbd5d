//! The HTTP API: execution routes, health, and the error envelope.

pub mod envelope;
pub mod execute;
pub mod health;
pub mod metrics;
pub mod request_id;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::registry::RegistryHandle;
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
}

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
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

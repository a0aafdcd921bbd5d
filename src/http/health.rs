//! `GET /healthz` and `GET /livez` (the process is up; Kubernetes' name) and `GET /readyz`
//! (a registry is loaded).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// Liveness: always 200 while the server answers.
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: 200 once a registry is loaded, 503 before.
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.registry.current() {
        Some(registry) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "revision": registry.revision,
            "connectors": registry.len(),
        })),
        None => HttpResponse::ServiceUnavailable().json(json!({"status": "no registry loaded"})),
    }
}

//! `GET /openapi.json`: the OpenAPI 3.1 description of this HTTP API, embedded in the binary.
//! `tests/integration/openapi.rs` checks it against the routes that [`super::configure`] mounts.

use actix_web::HttpResponse;

/// The checked-in document (`openapi/openapi.json`).
pub(crate) const DOCUMENT: &str = include_str!("../../openapi/openapi.json");

/// `GET /openapi.json`.
pub(crate) async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}

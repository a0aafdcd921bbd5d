//! `GET /metrics`: the Prometheus text format, on the main listener or on a separate one
//! (`--metrics-listen`).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};

use super::AppState;
use crate::metrics::Metrics;

/// Content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics of this server.
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render())
}

async fn metrics_only(metrics: web::Data<Arc<Metrics>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics.render())
}

/// Serves `/metrics` alone on `addr`; returns the bound port.
pub(crate) fn serve_separately(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<u16> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(metrics.clone()))
            .route("/metrics", web::get().to(metrics_only))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    actix_rt::spawn(server);
    Ok(port)
}

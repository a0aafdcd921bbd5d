//! The execution routes (SPEC §5): `<METHOD> /connectors/{permalink}/execute` for simple
//! connectors and `POST /connectors/composite/{permalink}/execute` for composites.

use std::sync::Arc;

use actix_web::http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tracing::Instrument;

use super::envelope::Envelope;
use super::{overload, request_id, AppState};
use crate::metrics::UNKNOWN_CONNECTOR;
use crate::observe::{self, InFlight};
use crate::registry::{Connector, ConnectorKind};
use crate::run::input::{self, PathParamError};
use crate::run::timing;
use crate::run::{execute, CallerOverrides, RunInput, RunOutcome};
use crate::template::context::RequestView;

/// The header that carries a simple connector's path parameters (`k=v&k2=v2`).
pub const PATH_PARAMS_HEADER: &str = "X-Path-Params";

/// The route of simple connectors, as documented (matched by [`dispatch`]).
pub const SIMPLE_ROUTE: &str = "/connectors/{permalink}/execute";
/// The route of composite connectors, as documented (matched by [`dispatch`]).
pub const COMPOSITE_ROUTE: &str = "/connectors/composite/{permalink}/execute";

/// Which connector a `/connectors/...` path names: `(kind, permalink)`.
pub fn route(path: &str) -> Option<(ConnectorKind, &str)> {
    let rest = path
        .strip_prefix("/connectors/")?
        .strip_suffix("/execute")?;
    match rest.strip_prefix("composite/") {
        Some(permalink) if !permalink.is_empty() && !permalink.contains('/') => {
            Some((ConnectorKind::Composite, permalink))
        }
        _ if !rest.is_empty() && !rest.contains('/') => Some((ConnectorKind::Simple, rest)),
        _ => None,
    }
}

/// Everything under `/connectors/`: [`SIMPLE_ROUTE`] (any method) and [`COMPOSITE_ROUTE`].
/// Matched by hand rather than by the router's pattern matcher: it is the hottest route.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    match route(req.path()) {
        Some((kind, permalink)) => {
            // The path is matched raw; the permalink is percent-decoded as the router would.
            let permalink = percent_encoding::percent_decode_str(permalink)
                .decode_utf8_lossy()
                .into_owned();
            handle(req, permalink, payload, state, kind).await
        }
        None => super::not_found(req).await,
    }
}

async fn handle(
    req: HttpRequest,
    permalink: String,
    payload: web::Payload,
    state: web::Data<AppState>,
    kind: ConnectorKind,
) -> HttpResponse {
    let request_id = request_id::of(&req);
    // Debug level: at the default level a run costs no span (entering one on every poll was
    // measurable); the info-level failure events carry the request id and connector.
    let span = tracing::debug_span!("run", request_id = %request_id, connector = %permalink);
    async move {
        // Load shedding comes first, before the body is read: over `--max-in-flight` the
        // caller gets 503 at once rather than a place in an unbounded queue. The slot is held
        // until the response is built, and freed by its drop guard however the run ends.
        let Some(_slot) = state.run_slots.try_acquire() else {
            return shed(&permalink, &state, kind, &request_id);
        };
        match prepare(&req, &permalink, payload, &state, kind, &request_id).await {
            Ok(input) => {
                let input = Arc::new(input);
                let outcome = {
                    let _in_flight = InFlight::start(&state.metrics);
                    execute(input.clone(), state.step_actor.clone()).await
                };
                let outcome_label = match &outcome.result {
                    Ok(_) => "ok",
                    Err(e) => e.failure.kind.outcome_label(),
                };
                let timing_origin = super::timing_allow_origin(
                    &state.allow_origins,
                    req.headers()
                        .get(actix_web::http::header::ORIGIN)
                        .and_then(|v| v.to_str().ok()),
                );
                observe::run_finished(
                    &state.metrics,
                    &input.connector,
                    kind_label(kind),
                    outcome_label,
                    outcome.total,
                );
                let mut response = respond(&input, outcome);
                if let Some(origin) = timing_origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
                    // Lets pages on allowed origins read Server-Timing (Resource Timing API).
                    response.headers_mut().insert(
                        actix_web::http::header::HeaderName::from_static("timing-allow-origin"),
                        origin,
                    );
                }
                response
            }
            Err(envelope) => {
                let label = if envelope.code == "CONNECTOR_NOT_FOUND" {
                    UNKNOWN_CONNECTOR
                } else {
                    permalink.as_str()
                };
                observe::request_rejected(
                    &state.metrics,
                    &request_id,
                    label,
                    kind_label(kind),
                    envelope.status,
                    envelope.code,
                );
                envelope.response(&request_id)
            }
        }
    }
    .instrument(span)
    .await
}

/// The 503 `OVERLOADED` answer, with `Retry-After`, counted as outcome `overloaded`.
fn shed(permalink: &str, state: &AppState, kind: ConnectorKind, request_id: &str) -> HttpResponse {
    let envelope = overload::overloaded(state.run_slots.cap());
    // Only a permalink the registry knows becomes a label value (labels stay bounded).
    let known = state
        .registry
        .current()
        .is_some_and(|r| r.get(permalink).is_some());
    observe::request_rejected(
        &state.metrics,
        request_id,
        if known { permalink } else { UNKNOWN_CONNECTOR },
        kind_label(kind),
        envelope.status,
        envelope.code,
    );
    let mut response = envelope.response(request_id);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(overload::RETRY_AFTER_SECS));
    response
}

fn kind_label(kind: ConnectorKind) -> &'static str {
    match kind {
        ConnectorKind::Simple => "simple",
        ConnectorKind::Composite => "composite",
    }
}

async fn prepare(
    req: &HttpRequest,
    permalink: &str,
    payload: web::Payload,
    state: &AppState,
    kind: ConnectorKind,
    request_id: &str,
) -> Result<RunInput, Envelope> {
    // Connector calls are plain request/response: an `Upgrade` request would leave its body
    // open-ended (the connection is handed over), so it is refused before the body is read.
    if req.headers().contains_key(actix_web::http::header::UPGRADE) {
        return Err(Envelope::request(
            400,
            "UPGRADE_NOT_SUPPORTED",
            "connector calls cannot upgrade the connection",
        ));
    }
    let registry = state.registry.current().ok_or_else(|| {
        Envelope::request(
            503,
            "REGISTRY_NOT_LOADED",
            "no connector registry is loaded yet",
        )
    })?;
    let connector = registry.get(permalink).cloned().ok_or_else(|| {
        Envelope::request(
            404,
            "CONNECTOR_NOT_FOUND",
            format!("no connector with permalink '{permalink}'"),
        )
    })?;
    if connector.kind != kind {
        let (what, route) = match connector.kind {
            ConnectorKind::Simple => (
                "a simple connector",
                format!(
                    "{} /connectors/{permalink}/execute",
                    connector.caller_method().as_str()
                ),
            ),
            ConnectorKind::Composite => (
                "a composite connector",
                format!("POST /connectors/composite/{permalink}/execute"),
            ),
        };
        return Err(Envelope::request(
            400,
            "CONNECTOR_KIND_MISMATCH",
            format!("'{permalink}' is {what}; call {route}"),
        ));
    }
    let expected = connector.caller_method();
    if req.method().as_str() != expected.as_str() {
        let mut envelope = Envelope::request(
            405,
            "METHOD_NOT_ALLOWED",
            format!(
                "'{permalink}' must be called with {}, not {}",
                expected.as_str(),
                req.method()
            ),
        );
        envelope.params = vec![expected.as_str().to_string()];
        return Err(envelope);
    }
    let path_params = match kind {
        ConnectorKind::Simple => path_parameters(req, &connector)?,
        ConnectorKind::Composite => Vec::new(),
    };
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).map_err(|_| {
            Envelope::request(
                400,
                "INVALID_QUERY_STRING",
                "the query string is not valid URL encoding",
            )
        })?;
    let body = read_body(req, payload, state.max_request_bytes).await?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let overrides =
        CallerOverrides::collect(&connector, |name| req.headers().get(name).cloned(), &query);
    let request = RequestView::new(body, content_type, query);
    Ok(RunInput::new(
        registry,
        connector,
        request_id.into(),
        request,
        path_params,
        overrides,
    ))
}

/// Path parameters from `X-Path-Params`, with declared defaults; missing wins over invalid.
fn path_parameters(
    req: &HttpRequest,
    connector: &Connector,
) -> Result<Vec<(String, String)>, Envelope> {
    let sent: Vec<(String, String)> = match req.headers().get(PATH_PARAMS_HEADER) {
        None => Vec::new(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| serde_urlencoded::from_str(s).ok())
            .ok_or_else(|| {
                Envelope::request(
                    400,
                    "INVALID_PATH_PARAMETERS",
                    "X-Path-Params is not URL-encoded key=value pairs",
                )
            })?,
    };
    input::path_parameters(connector, &sent).map_err(|e| match e {
        PathParamError::Missing(keys) => Envelope::request(
            400,
            "MISSING_PATH_PARAMETERS",
            "required path parameters are missing (send them in X-Path-Params)",
        )
        .with_params(keys),
        PathParamError::Invalid(keys) => Envelope::request(
            400,
            "INVALID_PATH_PARAMETERS",
            "path parameter values must be 1-200 characters of A-Z a-z 0-9 . _ ~ - and must not contain '..'",
        )
        .with_params(keys),
    })
}

/// Reads a request body, refusing more than `limit` bytes with 413.
pub(crate) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, Envelope> {
    let too_large = || {
        Envelope::request(
            413,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            Envelope::request(
                400,
                "INVALID_REQUEST_BODY",
                "the request body could not be read",
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn respond(input: &RunInput, outcome: RunOutcome) -> HttpResponse {
    let request_id = &*input.request_id;
    let (server_timing, connector_timing) = timing_headers(input, &outcome);
    let mut response = match &outcome.result {
        Ok(success) => {
            tracing::debug!(
                status = success.status,
                total_ms = timing::ms(outcome.total),
                "run succeeded"
            );
            let status = StatusCode::from_u16(success.status).unwrap_or(StatusCode::OK);
            let mut builder = HttpResponse::build(status);
            if let Some(ct) = &success.content_type {
                if let Ok(value) = HeaderValue::from_str(ct) {
                    builder.insert_header((CONTENT_TYPE, value));
                }
            }
            builder.insert_header((request_id::HEADER, request_id));
            builder.body(success.body.clone())
        }
        Err(error) => {
            tracing::info!(
                request_id,
                connector = %input.connector.permalink,
                code = error.failure.kind.code(),
                scope = %error.scope(),
                detail = %error.failure.detail,
                "run failed"
            );
            Envelope::from_run(error).response(request_id)
        }
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&server_timing) {
        headers.insert(
            actix_web::http::header::HeaderName::from_static("server-timing"),
            v,
        );
    }
    if let Ok(v) = HeaderValue::from_str(&connector_timing) {
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-connector-timing"),
            v,
        );
    }
    response
}

fn timing_headers(input: &RunInput, outcome: &RunOutcome) -> (String, String) {
    if input.is_composite() {
        (
            timing::composite_server_timing(&outcome.timings, outcome.total),
            timing::composite_connector_timing(&input.request_id, &outcome.timings, outcome.total),
        )
    } else {
        let step = outcome.timings.first().cloned().unwrap_or_default();
        let error = outcome.result.as_ref().err().map(|e| e.failure.kind.code());
        (
            timing::simple_server_timing(&step, outcome.total),
            timing::simple_connector_timing(&input.request_id, &step, outcome.total, error),
        )
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn connector_paths_are_recognised() {
        assert_eq!(
            route("/connectors/get-item/execute"),
            Some((ConnectorKind::Simple, "get-item"))
        );
        assert_eq!(
            route("/connectors/composite/auth/execute"),
            Some((ConnectorKind::Composite, "auth"))
        );
        assert_eq!(
            route("/connectors/composite/execute"),
            Some((ConnectorKind::Simple, "composite"))
        );
        assert_eq!(route("/connectors/a/b/execute"), None);
        assert_eq!(route("/connectors//execute"), None);
        assert_eq!(route("/connectors/composite//execute"), None);
        assert_eq!(route("/connectors/x/run"), None);
    }
}

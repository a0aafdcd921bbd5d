//! The execution routes (docs/spec.md §5): `<METHOD> /connectors/{permalink}/execute` for
//! simple connectors and `POST /connectors/composite/{permalink}/execute` for composites.
//! The handler reads the HTTP request into a [`RunRequest`], resolves it, reads the body,
//! takes a run slot, and runs a [`CompositeRunActor`] that it owns until the answer is built.

use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, ORIGIN};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use tracing::Instrument;

use super::envelope::Envelope;
use super::{body, overload, request_id, AppState};
use crate::error::Code;
use crate::events::{InFlight, RequestRejected};
use crate::metrics::UNKNOWN_CONNECTOR;
use crate::registry::ConnectorKind;
use crate::run::caller::CookieUse;
use crate::run::debug::DebugLog;
use crate::run::input::{RequestError, RunRequest};
use crate::run::timing;
use crate::run::{CompositeRunActor, RunInput, RunOutcome};

/// The header that carries a simple connector's path parameters (`k=v&k2=v2`).
pub(crate) const PATH_PARAMS_HEADER: &str = "X-Path-Params";

// The two routes as documented: `route` matches them by hand (it is the hottest route), and
// tests/integration/openapi.rs reads them from this file to compare with the OpenAPI
// document, so nothing else refers to them.
/// The route of simple connectors, as documented (matched by [`route`]).
#[allow(dead_code)]
pub const SIMPLE_ROUTE: &str = "/connectors/{permalink}/execute";
/// The route of composite connectors, as documented (matched by [`route`]).
#[allow(dead_code)]
pub const COMPOSITE_ROUTE: &str = "/connectors/composite/{permalink}/execute";

/// Upstream content is served from the runtime's origin: it must never be sniffed into
/// something executable, nor run script with the runtime's origin if it is HTML.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 2] = [
    (
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ),
    (
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static("sandbox"),
    ),
];

/// Which connector a `/connectors/...` path names: `(kind, permalink)`.
pub(crate) fn route(path: &str) -> Option<(ConnectorKind, &str)> {
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
pub(crate) async fn dispatch(
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
    let trace = state.tracing.as_ref().map(|tracing| {
        let route = match kind {
            ConnectorKind::Simple => SIMPLE_ROUTE,
            ConnectorKind::Composite => COMPOSITE_ROUTE,
        };
        tracing.server(req.headers(), req.method().as_str(), route, req.path())
    });
    // Debug level, as for every run; a traced request's log lines get its trace id from
    // `trace::InTrace` below (docs/spec.md §13), which costs nothing until a line is written.
    let span = tracing::debug_span!("run", request_id = %request_id, connector = %permalink);
    let trace_id = trace.as_ref().map(|cx| cx.ids().trace_id);
    let answer = async move {
        let ran = run(
            &req,
            &permalink,
            payload,
            &state,
            kind,
            &request_id,
            trace.as_ref(),
        )
        .await;
        let mut response = match ran {
            Ok(response) => response,
            Err(refused) => {
                // Only a permalink the registry knows becomes a label value (labels stay
                // bounded).
                let known = state
                    .registry
                    .current()
                    .is_some_and(|r| r.get(&permalink).is_some());
                RequestRejected {
                    request_id: &request_id,
                    connector: if known { &permalink } else { UNKNOWN_CONNECTOR },
                    kind: kind.as_str(),
                    code: refused.code,
                }
                .emit(&state.metrics);
                Envelope::from(refused).response(&request_id)
            }
        };
        let headers = response.headers_mut();
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, value);
        }
        let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
        if let Some(origin) = super::timing_allow_origin(&state.allow_origins, origin)
            .and_then(|o| HeaderValue::from_str(&o).ok())
        {
            // Lets pages on allowed origins read Server-Timing (Resource Timing API).
            headers.insert(HeaderName::from_static("timing-allow-origin"), origin);
        }
        if let Some(cx) = &trace {
            let status = response.status().as_u16();
            crate::trace::attribute(cx, "connector.permalink", permalink.as_str());
            crate::trace::attribute(cx, "connector.request_id", request_id.as_str());
            // A server span is an error for the server's own failures (5xx) only.
            let error = (status >= 500).then(|| status.to_string());
            crate::trace::end(cx, Some(status), error.as_deref());
        }
        response
    }
    .instrument(span);
    match trace_id {
        Some(trace_id) => crate::trace::InTrace::new(trace_id, answer).await,
        None => answer.await,
    }
}

/// One run, from the HTTP request to the answer; a refusal before any step runs is an `Err`.
async fn run(
    req: &HttpRequest,
    permalink: &str,
    payload: web::Payload,
    state: &AppState,
    kind: ConnectorKind,
    request_id: &str,
    trace: Option<&crate::trace::Context>,
) -> Result<HttpResponse, RequestError> {
    // Connector calls are plain request/response: an `Upgrade` request would leave its body
    // open-ended (the connection is handed over), so it is refused before the body is read.
    if req.headers().contains_key(actix_web::http::header::UPGRADE) {
        return Err(RequestError::new(
            Code::UpgradeNotSupported,
            "connector calls cannot upgrade the connection",
        ));
    }
    let request = RunRequest {
        kind: Some(kind),
        permalink,
        method: Some(req.method().as_str()),
        query: query_parameters(req)?,
        path_params: match kind {
            ConnectorKind::Simple => sent_path_parameters(req)?,
            ConnectorKind::Composite => Vec::new(),
        },
    };
    let resolved = request.resolve(state.registry.current())?;
    // Who calls is settled before the body is read: a caller without the token a connector
    // needs costs no body read and no run slot.
    let caller = state
        .identity
        .identify(
            resolved.connector(),
            req.headers(),
            || cookie_use(req, &state.allow_origins),
            request_id,
            &state.metrics,
        )
        .await?;
    let body = body::read_body(req, payload, state.request_body).await?;
    // The run slot is taken once the body is in: a slow sender holds a socket, never a slot.
    // Over `--max-in-flight` the caller gets 503 at once rather than a place in a queue; the
    // slot is freed by its drop guard however the run ends.
    let _slot = state
        .run_slots
        .try_acquire()
        .ok_or_else(|| overload::overloaded(state.run_slots.cap()))?;
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut input = resolved.into_input(
        request_id.into(),
        body,
        content_type,
        |name| {
            if state.identity.consumes(name) {
                return None;
            }
            req.headers().get(name).cloned()
        },
        caller,
    );
    input.trace = trace.cloned();
    if trace.is_some() {
        input.log_span = Some(tracing::Span::current());
    }
    if debug_allowed(req, state) {
        input.debug = Some(DebugLog::default());
    }
    let input = Arc::new(input);
    let outcome = {
        let _in_flight = InFlight::start(&state.metrics);
        CompositeRunActor::new(
            input.clone(),
            state.step_actor.clone(),
            state.metrics.clone(),
        )
        .with_runner(state.steps.clone())
        .start()
        .await
    };
    Ok(respond(&input, outcome))
}

/// [`crate::run::debug::HEADER`] as a header name (not parsed again for every request).
const DEBUG_HEADER: HeaderName = HeaderName::from_static("x-debug-request");

/// Whether the caller asked for `X-Debug-Request: 1` and may have it (docs/spec.md §14):
/// the server runs with `--debug-requests`, or the request carries the admin token in
/// `X-Admin-Token`.
fn debug_allowed(req: &HttpRequest, state: &AppState) -> bool {
    let headers = req.headers();
    let asked = headers
        .get(DEBUG_HEADER)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    if !asked {
        return false;
    }
    state.debug_requests
        || match (&state.operator.admin_token, headers.get("x-admin-token")) {
            (Some(token), Some(presented)) => {
                super::admin::constant_time_eq(presented.as_bytes(), token.as_bytes())
            }
            _ => false,
        }
}

/// Whether `req` may use the identity cookie: it comes from an origin of `--allow-origin`
/// (never `*`: the server refuses that combination), or from the runtime's own pages. A
/// browser sets `Origin` and `Sec-Fetch-Site` itself; a script cannot.
fn cookie_use(req: &HttpRequest, allowed: &[String]) -> CookieUse {
    let headers = req.headers();
    let same_origin = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"same-origin");
    let allowed_origin = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            allowed
                .iter()
                .any(|o| o != "*" && o.trim_end_matches('/') == origin)
        });
    if same_origin || allowed_origin {
        CookieUse::Allowed
    } else {
        CookieUse::Refused
    }
}

/// Most query parameters one call may send: no widget needs more, and each is a template
/// value and an override candidate.
pub(crate) const MAX_QUERY_PARAMETERS: usize = 1000;

/// The caller's query parameters.
fn query_parameters(req: &HttpRequest) -> Result<Vec<(String, String)>, RequestError> {
    let query = req.query_string();
    if query.is_empty() {
        return Ok(Vec::new());
    }
    if query.split('&').count() > MAX_QUERY_PARAMETERS {
        return Err(RequestError::new(
            Code::InvalidQueryString,
            format!("the query string has more than {MAX_QUERY_PARAMETERS} parameters"),
        ));
    }
    serde_urlencoded::from_str(query).map_err(|_| {
        RequestError::new(
            Code::InvalidQueryString,
            "the query string is not valid URL encoding",
        )
    })
}

/// The path parameters the caller sent in `X-Path-Params`.
fn sent_path_parameters(req: &HttpRequest) -> Result<Vec<(String, String)>, RequestError> {
    match req.headers().get(PATH_PARAMS_HEADER) {
        None => Ok(Vec::new()),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| serde_urlencoded::from_str(s).ok())
            .ok_or_else(|| {
                RequestError::new(
                    Code::InvalidPathParameters,
                    "X-Path-Params is not URL-encoded key=value pairs",
                )
            }),
    }
}

fn respond(input: &RunInput, outcome: RunOutcome) -> HttpResponse {
    let request_id = &*input.request_id;
    let (server_timing, connector_timing) = timing_headers(input, &outcome);
    let mut response = match &outcome.result {
        Ok(success) => {
            let status = StatusCode::from_u16(success.status).unwrap_or(StatusCode::OK);
            let mut builder = HttpResponse::build(status);
            if let Some(ct) = &success.content_type {
                if let Ok(value) = HeaderValue::from_str(ct) {
                    builder.insert_header((CONTENT_TYPE, value));
                }
            }
            if let Ok(value) = HeaderValue::from_str(request_id) {
                builder.insert_header((request_id::HEADER_NAME, value));
            }
            builder.body(success.body.clone())
        }
        Err(error) => Envelope::from_run(error).response(request_id),
    };
    let headers = response.headers_mut();
    if input.connector.reads.user {
        // A member's data: no shared cache (a CDN in front) may keep it for someone else.
        headers.insert(
            actix_web::http::header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    if let Some(v) = timing_value(server_timing) {
        headers.insert(HeaderName::from_static("server-timing"), v);
    }
    if let Some(v) = timing_value(connector_timing) {
        headers.insert(HeaderName::from_static("x-connector-timing"), v);
    }
    if let Some(value) = input
        .debug
        .as_ref()
        .and_then(|log| log.header_value(input.is_composite()))
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static("x-debug-request"), v);
        }
    }
    response
}

/// A timing header's value, the string itself (not copied). `run::timing` writes these from
/// fixed ASCII text, digits, step names and permalinks (slugs), request ids (checked by
/// `request_id::is_valid`, or generated hex), trace ids (hex), host names (as the URL
/// parser writes them) and JSON strings whose control characters are escaped: visible
/// ASCII and spaces only, which a header value may hold. So the value is not checked again
/// byte by byte (about 3,000 instructions per answer); a string that is not all ASCII, which
/// these never are, is checked as any other.
fn timing_value(text: String) -> Option<HeaderValue> {
    if !text.is_ascii() {
        return HeaderValue::from_maybe_shared(Bytes::from(text)).ok();
    }
    // SAFETY: `HeaderValue` requires visible ASCII, spaces and tabs; the text is ASCII and,
    // as written by `run::timing` (see above), holds no control character. (Debug builds,
    // which the tests run, check it all the same: `http` panics on an invalid byte.)
    Some(unsafe { HeaderValue::from_maybe_shared_unchecked(Bytes::from(text)) })
}

fn timing_headers(input: &RunInput, outcome: &RunOutcome) -> (String, String) {
    let trace_id = input.trace.as_ref().map(crate::trace::trace_id);
    let ids = timing::Ids {
        request_id: &input.request_id,
        trace_id: trace_id.as_ref().map(crate::trace::TraceIdHex::as_str),
    };
    if input.is_composite() {
        (
            timing::composite_server_timing(&outcome.timings, outcome.total),
            timing::composite_connector_timing(ids, &outcome.timings, outcome.total),
        )
    } else {
        let step = outcome.timings.first().cloned().unwrap_or_default();
        let error = outcome.result.as_ref().err().map(|e| e.failure.code);
        (
            timing::simple_server_timing(&step, outcome.total),
            timing::simple_connector_timing(ids, &step, outcome.total, error),
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

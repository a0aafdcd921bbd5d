//! Tracing (docs/spec.md §13, issue 16): the real binary as a child process exporting
//! OpenTelemetry spans over OTLP/HTTP (protobuf) to a real receiver on 127.0.0.1, real
//! upstreams on 127.0.0.1. The span tree of a run (SERVER → `step <name>` → CLIENT), W3C trace
//! context taken from the caller and sent upstream, span status on failures, `trace_id` in
//! `X-Connector-Timing`, and tracing off (or its collector down) never touching a run.
//!
//! The server runs as a child process so that `OTEL_BSP_SCHEDULE_DELAY` (100 ms here instead
//! of the default 5 s) and the other `OTEL_*` variables stay out of the test process's own
//! environment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

use crate::common::process::{get_status, Launch, ServerProcess};
use crate::common::{
    assert_envelope, closed_port, json_route, spawn_app, standard_upstream, upstream, Log, Reply,
};

/// An upstream whose `GET /ok` answers `{"ok": true}`.
pub(crate) async fn ok_upstream() -> crate::common::upstreams::Upstream {
    upstream(|cfg| {
        cfg.route("/ok", web::get().to(json_route(200, json!({"ok": true}))));
    })
    .await
}

/// The caller's trace context of the W3C Trace Context specification's example.
const CALLER_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN_ID: &str = "b7ad6b7169203331";
const CALLER_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

const COMPOSITE_ROUTE: &str = "/connectors/composite/{permalink}/execute";

/// How long a test waits for spans to arrive (the batch delay is 100 ms; the machines are
/// slow and shared).
const EXPORT_WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// The OTLP/HTTP receiver.
// ---------------------------------------------------------------------------------------

/// What the receiver got: decoded export requests, and anything it could not take.
#[derive(Default)]
struct Received {
    exports: Vec<ExportTraceServiceRequest>,
    /// The headers of each export, as (lower-case name, value).
    export_headers: Vec<Vec<(String, String)>>,
    /// Requests that were not a protobuf `ExportTraceServiceRequest` POSTed to `/v1/traces`.
    problems: Vec<String>,
}

/// An OTLP/HTTP trace receiver on 127.0.0.1: `POST /v1/traces` with
/// `application/x-protobuf`.
pub(crate) struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    received: Arc<Mutex<Received>>,
    handle: ServerHandle,
}

async fn export(
    req: HttpRequest,
    body: Bytes,
    received: web::Data<Arc<Mutex<Received>>>,
) -> HttpResponse {
    let mut received = received.lock().unwrap();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if req.method() != "POST" || req.path() != "/v1/traces" {
        received
            .problems
            .push(format!("{} {} ({content_type})", req.method(), req.path()));
        return HttpResponse::NotFound().finish();
    }
    if content_type != "application/x-protobuf" {
        received.problems.push(format!(
            "POST /v1/traces with content type {content_type:?}"
        ));
        return HttpResponse::UnsupportedMediaType().finish();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            received.exports.push(request);
            let headers = req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        v.to_str().unwrap_or("?").to_string(),
                    )
                })
                .collect();
            received.export_headers.push(headers);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(e) => {
            received.problems.push(format!("undecodable export: {e}"));
            HttpResponse::BadRequest().finish()
        }
    }
}

impl Receiver {
    /// Starts a receiver on a port of its own.
    pub(crate) fn start() -> Receiver {
        Self::on(&["127.0.0.1:0"]).expect("a loopback port")
    }

    /// Starts a receiver on every address of `addrs` that can be bound (`None` when none
    /// can); `base` names the first.
    fn on(addrs: &[&str]) -> Option<Receiver> {
        let listeners: Vec<std::net::TcpListener> = addrs
            .iter()
            .filter_map(|addr| std::net::TcpListener::bind(addr).ok())
            .collect();
        (!listeners.is_empty()).then(|| Self::listening(listeners))
    }

    /// Starts a receiver on `listeners` (already listening).
    fn listening(listeners: Vec<std::net::TcpListener>) -> Receiver {
        let port = listeners[0].local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Received::default()));
        let data = received.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(export))
        })
        .workers(1)
        .disable_signals();
        for listener in listeners {
            server = server.listen(listener).unwrap();
        }
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            base: format!("http://127.0.0.1:{port}"),
            received,
            handle,
        }
    }

    /// Every span received so far, with the resource attributes it came with.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let received = self.received.lock().unwrap();
        assert!(
            received.problems.is_empty(),
            "the receiver got requests it could not take: {:?}",
            received.problems
        );
        let mut spans = Vec::new();
        for export in &received.exports {
            for resource_spans in &export.resource_spans {
                let resource = resource_spans
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push((resource.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }

    /// How many export requests (of any kind) arrived.
    /// Fails when a span of trace `trace_id` has arrived.
    fn assert_no_spans_of(&self, trace_id: &str) {
        let spans = self.of_trace(trace_id);
        assert!(spans.is_empty(), "{}", describe(&spans));
    }

    /// The headers of every export so far.
    fn export_headers(&self) -> Vec<Vec<(String, String)>> {
        self.received.lock().unwrap().export_headers.clone()
    }

    fn requests(&self) -> usize {
        let received = self.received.lock().unwrap();
        received.exports.len() + received.problems.len()
    }

    /// The spans of trace `trace_id`, once its SERVER span and at least `count` spans in all
    /// have arrived (and a little longer, so that a span too many shows up too).
    pub(crate) async fn trace(&self, trace_id: &str, count: usize) -> Vec<Span> {
        let deadline = Instant::now() + EXPORT_WAIT;
        loop {
            let spans = self.of_trace(trace_id);
            if spans.len() >= count && spans.iter().any(|s| kind(s) == SpanKind::Server) {
                actix_rt::time::sleep(Duration::from_millis(500)).await;
                return self.of_trace(trace_id);
            }
            assert!(
                Instant::now() < deadline,
                "{count} spans of trace {trace_id} did not arrive within {EXPORT_WAIT:?}; got:\n{}",
                describe(&self.spans().into_iter().map(|(_, s)| s).collect::<Vec<_>>())
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| hex(&s.trace_id) == trace_id)
            .collect()
    }

    pub(crate) async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

// ---------------------------------------------------------------------------------------
// Reading spans.
// ---------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind(span: &Span) -> SpanKind {
    SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified)
}

fn status(span: &Span) -> StatusCode {
    span.status
        .as_ref()
        .and_then(|s| StatusCode::try_from(s.code).ok())
        .unwrap_or(StatusCode::Unset)
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(&span.attributes, key) {
        Some(Any::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(&span.attributes, key) {
        Some(Any::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// One line per span, for failure messages.
fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            let attributes: BTreeMap<&str, String> = s
                .attributes
                .iter()
                .map(|kv| {
                    let value = kv
                        .value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_default();
                    (kv.key.as_str(), value)
                })
                .collect();
            format!(
                "  {:?} {:?} trace={} span={} parent={} status={:?} {:?}",
                kind(s),
                s.name,
                hex(&s.trace_id),
                hex(&s.span_id),
                hex(&s.parent_span_id),
                status(s),
                attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one span of `kind`.
#[track_caller]
fn only(spans: &[Span], of: SpanKind) -> Span {
    let found: Vec<&Span> = spans.iter().filter(|s| kind(s) == of).collect();
    assert_eq!(found.len(), 1, "one {of:?} span:\n{}", describe(spans));
    found[0].clone()
}

/// The spans whose parent is `parent`, of `kind`.
fn children(spans: &[Span], parent: &Span, of: SpanKind) -> Vec<Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id && kind(s) == of)
        .cloned()
        .collect()
}

/// The `step <name>` span of step `name`.
#[track_caller]
fn step_span(spans: &[Span], name: &str) -> Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| str_attr(s, "connector.step.name") == Some(name))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one span of step {name}:\n{}",
        describe(spans)
    );
    found[0].clone()
}

/// `child` starts and ends within `parent`.
#[track_caller]
fn within(child: &Span, parent: &Span) {
    assert!(
        child.start_time_unix_nano >= parent.start_time_unix_nano
            && child.end_time_unix_nano <= parent.end_time_unix_nano
            && child.start_time_unix_nano <= child.end_time_unix_nano,
        "{:?} is not within {:?}:\n{}",
        child.name,
        parent.name,
        describe(&[child.clone(), parent.clone()])
    );
}

/// A `traceparent` value's parts: (trace id, parent id, flags).
#[track_caller]
fn traceparent_parts(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value:?}");
    assert_eq!(parts[0], "00", "traceparent version: {value:?}");
    (
        parts[1].to_string(),
        parts[2].to_string(),
        parts[3].to_string(),
    )
}

/// Whether `s` is a valid W3C trace id: 32 lower-case hex digits, not all zero.
fn is_trace_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

// ---------------------------------------------------------------------------------------
// The server and calls to it.
// ---------------------------------------------------------------------------------------

/// Variables the child must not inherit (they would change what is being tested).
const INHERITED: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "CONNECTOR_RUNTIME_OTLP_ENDPOINT",
    "CONNECTOR_RUNTIME_TRACE_PROPAGATION",
    "CONNECTOR_RUNTIME_TRACE_UI_URL",
];

/// `serve` on `registry` as a child process with `flags`, a 100 ms batch delay and `env`.
pub(crate) fn server(registry: &Value, flags: &[&str], env: &[(&str, &str)]) -> ServerProcess {
    let mut vars: Vec<(String, Option<String>)> =
        INHERITED.iter().map(|n| (n.to_string(), None)).collect();
    vars.push(("OTEL_BSP_SCHEDULE_DELAY".into(), Some("100".into())));
    for (name, value) in env {
        vars.push((name.to_string(), Some(value.to_string())));
    }
    ServerProcess::start_with(
        registry,
        flags,
        Launch {
            env: vars,
            ..Default::default()
        },
    )
}

/// A traced server exporting to `receiver`.
fn traced(registry: &Value, receiver: &Receiver, flags: &[&str]) -> ServerProcess {
    let mut all = vec!["--otlp-endpoint", receiver.base.as_str()];
    all.extend_from_slice(flags);
    server(registry, &all, &[])
}

/// `POST /connectors/composite/{permalink}/execute` on `server` with `{}` and `headers`.
async fn run(server: &ServerProcess, permalink: &str, headers: &[(&str, &str)]) -> Reply {
    let path = format!("/connectors/composite/{permalink}/execute");
    call(server, "POST", &path, headers).await
}

/// `method path` on `server` with a JSON body `{}` and `headers`.
async fn call(server: &ServerProcess, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let url = format!("{}{path}", server.base);
    let mut req = client
        .request(method.parse().unwrap(), &url)
        .insert_header(("Content-Type", "application/json"));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req
        .send_body("{}")
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e}\n{}", server.log_tail(20)));
    let body = res.body().limit(16 * 1024 * 1024).await.unwrap();
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body,
    }
}

/// The `trace_id` of a reply's `X-Connector-Timing`.
#[track_caller]
fn timing_trace_id(reply: &Reply) -> String {
    let timing = reply.connector_timing();
    timing["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace_id in X-Connector-Timing: {timing}"))
        .to_string()
}

/// The request `log` got for `path` (exactly one).
#[track_caller]
fn one(log: &Log, path: &str) -> crate::common::Received {
    let got = log.to(path);
    assert_eq!(got.len(), 1, "one request to {path}: {got:#?}");
    got[0].clone()
}

/// A one-step composite `permalink` calling `GET {base}/ok`.
pub(crate) fn one_step(base: &str) -> Value {
    json!({"composite_connectors": [{
        "name": "One", "permalink": "one",
        "steps": [{"name": "only", "url": format!("{base}/ok")}]
    }]})
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_composite_run_is_one_trace_continuing_the_callers_server_step_and_client_spans() {
    let up = standard_upstream().await;
    let receiver = Receiver::start();
    // A plain POST to the token endpoint, then a GET with the step's own OAuth
    // authentication (a token request and the call itself).
    let registry = json!({"composite_connectors": [{
        "name": "Traced", "permalink": "traced",
        "steps": [
            {"name": "login", "url": format!("{}/oauth/token", up.base), "method": "POST",
             "headers": [{"key": "Content-Type", "value": "application/x-www-form-urlencoded"}],
             "request_body": "grant_type=password"},
            {"name": "fetch-user", "url": format!("{}/users/me", up.base),
             "authentication": {"type": "oauth_client_credentials", "config": {
                 "client_id": "cid", "client_secret": "s3",
                 "token_url": format!("{}/oauth/token", up.base)}}}
        ]
    }]});
    let server = traced(&registry, &receiver, &[]);
    let reply = run(&server, "traced", &[("traceparent", CALLER_TRACEPARENT)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"id": "usr_1", "name": "Ada"}));
    assert_eq!(timing_trace_id(&reply), CALLER_TRACE_ID);

    // SERVER + 2 steps + 3 CLIENT (login's POST; fetch-user's token POST and GET).
    let spans = receiver.trace(CALLER_TRACE_ID, 6).await;
    assert_eq!(spans.len(), 6, "{}", describe(&spans));
    let all = receiver.spans();
    assert_eq!(all.len(), 6, "spans of other traces");
    let service: Vec<Option<&Any>> = all.iter().map(|(r, _)| attr(r, "service.name")).collect();
    for name in service {
        assert_eq!(
            name,
            Some(&Any::StringValue("connector-runtime".into())),
            "service.name"
        );
    }

    let server_span = only(&spans, SpanKind::Server);
    assert_eq!(hex(&server_span.parent_span_id), CALLER_SPAN_ID);
    assert_eq!(
        server_span.name,
        format!("POST {COMPOSITE_ROUTE}"),
        "{}",
        describe(&spans)
    );
    assert_eq!(str_attr(&server_span, "http.request.method"), Some("POST"));
    assert_eq!(str_attr(&server_span, "http.route"), Some(COMPOSITE_ROUTE));
    assert_eq!(
        int_attr(&server_span, "http.response.status_code"),
        Some(200)
    );
    assert_ne!(status(&server_span), StatusCode::Error);

    let steps = children(&spans, &server_span, SpanKind::Internal);
    assert_eq!(steps.len(), 2, "{}", describe(&spans));
    for (index, name) in ["login", "fetch-user"].into_iter().enumerate() {
        let step = step_span(&spans, name);
        assert_eq!(step.parent_span_id, server_span.span_id);
        assert_eq!(step.name, format!("step {name}"));
        assert_eq!(str_attr(&step, "connector.permalink"), Some("traced"));
        assert_eq!(str_attr(&step, "connector.step.name"), Some(name));
        assert_eq!(int_attr(&step, "connector.step.index"), Some(index as i64));
        assert_ne!(status(&step), StatusCode::Error, "{}", describe(&spans));
        within(&step, &server_span);
    }
    let login = step_span(&spans, "login");
    let fetch = step_span(&spans, "fetch-user");
    assert!(login.end_time_unix_nano <= fetch.start_time_unix_nano);

    let login_calls = children(&spans, &login, SpanKind::Client);
    let fetch_calls = children(&spans, &fetch, SpanKind::Client);
    assert_eq!(login_calls.len(), 1, "{}", describe(&spans));
    assert_eq!(fetch_calls.len(), 2, "{}", describe(&spans));
    for call in login_calls.iter().chain(&fetch_calls) {
        assert_eq!(str_attr(call, "server.address"), Some("127.0.0.1"));
        assert_eq!(int_attr(call, "server.port"), Some(i64::from(up.port)));
        assert_eq!(int_attr(call, "http.response.status_code"), Some(200));
        assert_ne!(status(call), StatusCode::Error);
    }
    let method = |s: &Span| str_attr(s, "http.request.method").map(str::to_string);
    assert_eq!(method(&login_calls[0]).as_deref(), Some("POST"));
    let token_call = fetch_calls
        .iter()
        .find(|s| method(s).as_deref() == Some("POST"))
        .unwrap_or_else(|| panic!("no token request span:\n{}", describe(&spans)));
    let get_call = fetch_calls
        .iter()
        .find(|s| method(s).as_deref() == Some("GET"))
        .unwrap_or_else(|| panic!("no GET span:\n{}", describe(&spans)));
    within(&login_calls[0], &login);
    within(token_call, &fetch);
    within(get_call, &fetch);
    assert!(token_call.end_time_unix_nano <= get_call.start_time_unix_nano);

    // Each upstream request names its own CLIENT span, in the caller's trace.
    let tokens = up.log.to("/oauth/token");
    assert_eq!(tokens.len(), 2, "{tokens:#?}");
    let login_request = tokens
        .iter()
        .find(|r| r.body == "grant_type=password")
        .unwrap();
    let token_request = tokens
        .iter()
        .find(|r| r.body.contains("client_credentials"))
        .unwrap();
    let user_request = one(&up.log, "/users/me");
    for (request, span) in [
        (login_request, &login_calls[0]),
        (token_request, token_call),
        (&user_request, get_call),
    ] {
        let header = request
            .header("traceparent")
            .unwrap_or_else(|| panic!("no traceparent on {request:#?}"));
        let (trace_id, parent_id, flags) = traceparent_parts(header);
        assert_eq!(trace_id, CALLER_TRACE_ID, "{header}");
        assert_eq!(
            parent_id,
            hex(&span.span_id),
            "{header} on {}",
            request.path
        );
        assert_eq!(flags, "01", "{header}");
    }
    receiver.stop().await;
}

#[actix_web::test]
async fn the_callers_tracestate_goes_upstream_with_the_trace() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = traced(&one_step(&up.base), &receiver, &[]);
    let reply = run(
        &server,
        "one",
        &[
            ("traceparent", CALLER_TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let spans = receiver.trace(CALLER_TRACE_ID, 3).await;
    let client = only(&spans, SpanKind::Client);
    let request = one(&up.log, "/ok");
    let (trace_id, parent_id, _) = traceparent_parts(request.header("traceparent").unwrap());
    assert_eq!(trace_id, CALLER_TRACE_ID);
    assert_eq!(parent_id, hex(&client.span_id));
    assert_eq!(
        request.header("tracestate"),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    receiver.stop().await;
}

#[actix_web::test]
async fn a_failing_step_and_its_call_have_status_error_and_the_answer_is_unchanged() {
    let up = upstream(|cfg| {
        cfg.route("/ok", web::get().to(json_route(200, json!({"ok": true}))))
            .route(
                "/down",
                web::get().to(json_route(503, json!({"error": "maintenance"}))),
            );
    })
    .await;
    let registry = json!({"composite_connectors": [{
        "name": "Failing", "permalink": "failing",
        "steps": [
            {"name": "first", "url": format!("{}/ok", up.base)},
            {"name": "second", "url": format!("{}/down", up.base)}
        ]
    }]});
    // The answer without tracing, to compare with.
    let untraced = spawn_app(registry.clone()).await;
    let plain = untraced.composite("failing", "", "{}").await;
    let expected = assert_envelope(
        &plain,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'second' (index 1): Downstream (HTTP error)"),
    );

    let receiver = Receiver::start();
    let server = traced(&registry, &receiver, &[]);
    let reply = run(&server, "failing", &[]).await;
    let errors = assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'second' (index 1): Downstream (HTTP error)"),
    );
    assert_eq!(errors, expected);
    let trace_id = timing_trace_id(&reply);

    let spans = receiver.trace(&trace_id, 5).await;
    assert_eq!(spans.len(), 5, "{}", describe(&spans));
    let first = step_span(&spans, "first");
    let second = step_span(&spans, "second");
    assert_ne!(status(&first), StatusCode::Error, "{}", describe(&spans));
    assert_eq!(status(&second), StatusCode::Error, "{}", describe(&spans));
    assert_eq!(int_attr(&second, "http.response.status_code"), Some(503));
    assert_eq!(str_attr(&second, "connector.step.state"), Some("failed"));

    let calls = children(&spans, &second, SpanKind::Client);
    assert_eq!(calls.len(), 1, "{}", describe(&spans));
    assert_eq!(status(&calls[0]), StatusCode::Error, "{}", describe(&spans));
    assert_eq!(int_attr(&calls[0], "http.response.status_code"), Some(503));
    assert_eq!(str_attr(&calls[0], "error.type"), Some("503"));
    let ok_calls = children(&spans, &first, SpanKind::Client);
    assert_eq!(ok_calls.len(), 1, "{}", describe(&spans));
    assert_ne!(status(&ok_calls[0]), StatusCode::Error);

    let server_span = only(&spans, SpanKind::Server);
    assert_eq!(
        int_attr(&server_span, "http.response.status_code"),
        Some(502)
    );
    assert_eq!(status(&server_span), StatusCode::Error);
    untraced.handle.stop(false).await;
    receiver.stop().await;
}

#[actix_web::test]
async fn a_request_without_trace_context_starts_a_new_trace_named_in_the_timing_header() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = traced(&one_step(&up.base), &receiver, &[]);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let reply = run(&server, "one", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let trace_id = timing_trace_id(&reply);
        assert!(is_trace_id(&trace_id), "{trace_id:?}");
        assert_ne!(trace_id, CALLER_TRACE_ID);
        seen.push(trace_id);
    }
    assert_ne!(seen[0], seen[1], "each request gets a trace of its own");

    for (i, trace_id) in seen.iter().enumerate() {
        let spans = receiver.trace(trace_id, 3).await;
        assert_eq!(spans.len(), 3, "{}", describe(&spans));
        let server_span = only(&spans, SpanKind::Server);
        assert!(
            server_span.parent_span_id.is_empty(),
            "a root span: {}",
            describe(&spans)
        );
        let client = only(&spans, SpanKind::Client);
        let request = &up.log.to("/ok")[i];
        let (sent_trace, parent_id, _) = traceparent_parts(request.header("traceparent").unwrap());
        assert_eq!(&sent_trace, trace_id);
        assert_eq!(parent_id, hex(&client.span_id));
    }
    receiver.stop().await;
}

#[actix_web::test]
async fn a_malformed_traceparent_starts_a_new_trace() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = traced(&one_step(&up.base), &receiver, &[]);
    // An all-zero trace id is invalid (W3C Trace Context §3.2.2.3).
    let reply = run(
        &server,
        "one",
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        )],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let trace_id = timing_trace_id(&reply);
    assert!(is_trace_id(&trace_id), "{trace_id:?}");
    let spans = receiver.trace(&trace_id, 3).await;
    let server_span = only(&spans, SpanKind::Server);
    assert!(
        server_span.parent_span_id.is_empty(),
        "{}",
        describe(&spans)
    );
    receiver.stop().await;
}

#[actix_web::test]
async fn with_propagation_off_upstreams_see_no_trace_context_and_spans_are_still_exported() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = traced(
        &one_step(&up.base),
        &receiver,
        &["--trace-propagation", "off"],
    );
    let reply = run(
        &server,
        "one",
        &[
            ("traceparent", CALLER_TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(timing_trace_id(&reply), CALLER_TRACE_ID);
    let request = one(&up.log, "/ok");
    assert_eq!(request.header("traceparent"), None, "{request:#?}");
    assert_eq!(request.header("tracestate"), None, "{request:#?}");

    let spans = receiver.trace(CALLER_TRACE_ID, 3).await;
    assert_eq!(spans.len(), 3, "{}", describe(&spans));
    let server_span = only(&spans, SpanKind::Server);
    assert_eq!(hex(&server_span.parent_span_id), CALLER_SPAN_ID);
    let step = step_span(&spans, "only");
    let client = only(&spans, SpanKind::Client);
    assert_eq!(client.parent_span_id, step.span_id);
    assert_eq!(int_attr(&client, "http.response.status_code"), Some(200));
    receiver.stop().await;
}

#[actix_web::test]
async fn with_no_endpoint_configured_nothing_is_exported_and_no_trace_id_is_reported() {
    let up = ok_upstream().await;
    // The exporter's default endpoint (localhost:4318) when it can be had, so that an export
    // made in spite of no configuration would land here; a port of its own otherwise.
    let receiver = Receiver::on(&["127.0.0.1:4318", "[::1]:4318"]).unwrap_or_else(Receiver::start);
    // Everything but the endpoint: an export, were one attempted, would go out in 100 ms.
    let server = server(
        &one_step(&up.base),
        &[],
        &[
            ("OTEL_SERVICE_NAME", "untraced"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ],
    );
    for _ in 0..3 {
        let reply = run(&server, "one", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let timing = reply.connector_timing();
        assert!(timing.get("trace_id").is_none(), "{timing}");
        assert!(timing["request_id"].is_string(), "{timing}");
    }
    for request in up.log.to("/ok") {
        assert_eq!(request.header("traceparent"), None, "{request:#?}");
    }
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.requests(), 0, "an export was attempted");
    assert!(receiver.spans().is_empty());
    // The in-process server (the suite's default flags) reports no trace id either.
    let app = spawn_app(one_step(&up.base)).await;
    let reply = app.composite("one", "", "{}").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let timing = reply.connector_timing();
    assert!(timing.get("trace_id").is_none(), "{timing}");
    app.handle.stop(false).await;
    receiver.stop().await;
}

#[actix_web::test]
async fn a_collector_that_refuses_connections_never_fails_a_run() {
    let up = ok_upstream().await;
    let refused = closed_port();
    let mut server = server(
        &one_step(&up.base),
        &["--otlp-endpoint", &refused.base()],
        &[],
    );
    // Runs spread over several batch delays, so that exports fail in between.
    for _ in 0..5 {
        let reply = run(&server, "one", &[("traceparent", CALLER_TRACEPARENT)]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json(), json!({"ok": true}));
        assert_eq!(timing_trace_id(&reply), CALLER_TRACE_ID);
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(up.log.count("/ok"), 5);
    assert_eq!(get_status(server.port, "/readyz"), Some(200));
    assert!(
        server.try_exit_status().is_none(),
        "{}",
        server.log_tail(20)
    );

    // Once the collector is up, the next run's spans reach it (the exporter kept going).
    let listener = refused.listen().into_std().unwrap();
    let receiver = Receiver::listening(vec![listener]);
    let reply = run(&server, "one", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let trace_id = timing_trace_id(&reply);
    let spans = receiver.trace(&trace_id, 3).await;
    assert_eq!(spans.len(), 3, "{}", describe(&spans));
    receiver.stop().await;
}

#[actix_web::test]
async fn a_collector_that_never_answers_does_not_slow_runs_down() {
    let up = ok_upstream().await;
    // Connections are accepted by the kernel and never read: each export waits for its 5 s
    // timeout.
    let silent = closed_port();
    let base = silent.base();
    let listener = silent.listen();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    actix_rt::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            holder.lock().unwrap().push(stream);
        }
    });
    let server = server(&one_step(&up.base), &["--otlp-endpoint", &base], &[]);
    for _ in 0..5 {
        let started = Instant::now();
        let reply = run(&server, "one", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        // A run waits for no export (one is 5 s); the bound is loose for slow machines.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a run took {:?}",
            started.elapsed()
        );
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    // The exports were attempted (and are still waiting for an answer).
    assert!(!held.lock().unwrap().is_empty(), "no export was attempted");
}

#[actix_web::test]
async fn the_standard_variables_configure_the_endpoint_service_name_and_resource() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = server(
        &one_step(&up.base),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.as_str()),
            ("OTEL_SERVICE_NAME", "widgets-gateway"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci"),
        ],
    );
    let reply = run(&server, "one", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let trace_id = timing_trace_id(&reply);
    let spans = receiver.trace(&trace_id, 3).await;
    assert_eq!(spans.len(), 3, "{}", describe(&spans));
    for (resource, _) in receiver.spans() {
        assert_eq!(
            attr(&resource, "service.name"),
            Some(&Any::StringValue("widgets-gateway".into()))
        );
        assert_eq!(
            attr(&resource, "deployment.environment.name"),
            Some(&Any::StringValue("ci".into()))
        );
    }
    receiver.stop().await;
}

#[actix_web::test]
async fn each_try_of_a_retried_step_is_a_client_span_of_its_own() {
    // 503, 503, then 200.
    let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let up = upstream(move |cfg| {
        let tries = tries.clone();
        cfg.route(
            "/flaky",
            web::get().to(move |req: HttpRequest, body: Bytes, log: web::Data<Log>| {
                log.record(&req, &body);
                let n = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if n < 2 {
                        HttpResponse::ServiceUnavailable().json(json!({"try": n}))
                    } else {
                        HttpResponse::Ok().json(json!({"try": n}))
                    }
                }
            }),
        );
    })
    .await;
    let registry = json!({"composite_connectors": [{
        "name": "Flaky", "permalink": "flaky",
        "steps": [{"name": "flaky", "url": format!("{}/flaky", up.base),
                   "retry": {"attempts": 3, "backoff_ms": 10, "retry_on": [503]}}]
    }]});
    let receiver = Receiver::start();
    let server = traced(&registry, &receiver, &[]);
    let reply = run(&server, "flaky", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"try": 2}));
    let trace_id = timing_trace_id(&reply);
    let spans = receiver.trace(&trace_id, 5).await;
    assert_eq!(spans.len(), 5, "{}", describe(&spans));
    let step = step_span(&spans, "flaky");
    assert_eq!(int_attr(&step, "connector.step.attempts"), Some(3));
    assert_ne!(status(&step), StatusCode::Error, "{}", describe(&spans));
    let mut calls = children(&spans, &step, SpanKind::Client);
    calls.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(calls.len(), 3, "{}", describe(&spans));
    let statuses: Vec<(Option<i64>, StatusCode)> = calls
        .iter()
        .map(|s| (int_attr(s, "http.response.status_code"), status(s)))
        .collect();
    assert_eq!(
        statuses,
        [
            (Some(503), StatusCode::Error),
            (Some(503), StatusCode::Error),
            (Some(200), StatusCode::Unset)
        ]
    );
    // Each try carried its own span's context.
    let sent: Vec<String> = up
        .log
        .to("/flaky")
        .iter()
        .map(|r| traceparent_parts(r.header("traceparent").unwrap()).1)
        .collect();
    let expected: Vec<String> = calls.iter().map(|s| hex(&s.span_id)).collect();
    assert_eq!(sent, expected);
    receiver.stop().await;
}

#[actix_web::test]
async fn each_connect_retry_is_a_client_span_with_its_error_type() {
    let up = ok_upstream().await;
    let refused = closed_port();
    let registry = json!({"composite_connectors": [{
        "name": "Gone", "permalink": "gone",
        "steps": [
            {"name": "first", "url": format!("{}/ok", up.base)},
            {"name": "gone", "url": format!("{}/nothing", refused.base())}
        ]
    }]});
    let receiver = Receiver::start();
    let server = traced(
        &registry,
        &receiver,
        &[
            "--upstream-retries",
            "2",
            "--upstream-retry-backoff-ms",
            "10",
        ],
    );
    let reply = run(&server, "gone", &[]).await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let trace_id = timing_trace_id(&reply);
    // SERVER, 2 steps, 1 + 3 CLIENT.
    let spans = receiver.trace(&trace_id, 7).await;
    assert_eq!(spans.len(), 7, "{}", describe(&spans));
    let step = step_span(&spans, "gone");
    assert_eq!(status(&step), StatusCode::Error, "{}", describe(&spans));
    let calls = children(&spans, &step, SpanKind::Client);
    assert_eq!(calls.len(), 3, "{}", describe(&spans));
    for call in &calls {
        assert_eq!(status(call), StatusCode::Error, "{}", describe(&spans));
        assert_eq!(str_attr(call, "error.type"), Some("network"));
        assert_eq!(int_attr(call, "http.response.status_code"), None);
        assert_eq!(int_attr(call, "server.port"), Some(i64::from(refused.port)));
    }
    receiver.stop().await;
}

#[actix_web::test]
async fn a_skipped_step_has_a_span_saying_so_and_no_client_span() {
    let up = ok_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Skips", "permalink": "skips",
        "steps": [
            {"name": "skipped", "url": format!("{}/ok", up.base), "when": "false"},
            {"name": "ran", "url": format!("{}/ok", up.base)}
        ]
    }]});
    let receiver = Receiver::start();
    let server = traced(&registry, &receiver, &[]);
    let reply = run(&server, "skips", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let trace_id = timing_trace_id(&reply);
    let spans = receiver.trace(&trace_id, 4).await;
    assert_eq!(spans.len(), 4, "{}", describe(&spans));
    let skipped = step_span(&spans, "skipped");
    assert_eq!(str_attr(&skipped, "connector.step.state"), Some("skipped"));
    assert_ne!(status(&skipped), StatusCode::Error);
    assert!(children(&spans, &skipped, SpanKind::Client).is_empty());
    let ran = step_span(&spans, "ran");
    assert_eq!(str_attr(&ran, "connector.step.state"), Some("ok"));
    assert_eq!(children(&spans, &ran, SpanKind::Client).len(), 1);
    assert_eq!(up.log.count("/ok"), 1);
    receiver.stop().await;
}

#[actix_web::test]
async fn a_simple_connector_run_is_a_server_span_on_its_route_with_a_client_span() {
    let up = ok_upstream().await;
    let registry = json!({"connectors": [{
        "name": "Plain", "permalink": "plain", "url": format!("{}/ok", up.base)
    }]});
    let receiver = Receiver::start();
    let server = traced(&registry, &receiver, &[]);
    let reply = call(
        &server,
        "GET",
        "/connectors/plain/execute",
        &[("traceparent", CALLER_TRACEPARENT)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"ok": true}));
    assert_eq!(timing_trace_id(&reply), CALLER_TRACE_ID);
    let spans = receiver.trace(CALLER_TRACE_ID, 2).await;
    let server_span = only(&spans, SpanKind::Server);
    assert_eq!(hex(&server_span.parent_span_id), CALLER_SPAN_ID);
    assert_eq!(str_attr(&server_span, "http.request.method"), Some("GET"));
    assert_eq!(
        str_attr(&server_span, "http.route"),
        Some("/connectors/{permalink}/execute")
    );
    assert_eq!(
        int_attr(&server_span, "http.response.status_code"),
        Some(200)
    );
    assert_eq!(str_attr(&server_span, "connector.permalink"), Some("plain"));
    let client = only(&spans, SpanKind::Client);
    // The CLIENT span descends from the SERVER span.
    let mut at = client.clone();
    while at.parent_span_id != server_span.span_id {
        at = spans
            .iter()
            .find(|s| s.span_id == at.parent_span_id)
            .unwrap_or_else(|| {
                panic!(
                    "the CLIENT span is not under the SERVER span:\n{}",
                    describe(&spans)
                )
            })
            .clone();
    }
    assert_eq!(int_attr(&client, "http.response.status_code"), Some(200));
    let request = one(&up.log, "/ok");
    let (trace_id, parent_id, _) = traceparent_parts(request.header("traceparent").unwrap());
    assert_eq!(trace_id, CALLER_TRACE_ID);
    assert_eq!(parent_id, hex(&client.span_id));
    receiver.stop().await;
}

#[actix_web::test]
async fn a_caller_that_did_not_sample_its_trace_gets_no_spans_exported() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = traced(&one_step(&up.base), &receiver, &[]);
    // Flags 00: the caller did not sample (the default sampler is parent-based).
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let reply = run(&server, "one", &[("traceparent", unsampled)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let request = one(&up.log, "/ok");
    let (trace_id, _, flags) = traceparent_parts(request.header("traceparent").unwrap());
    assert_eq!(trace_id, CALLER_TRACE_ID, "the trace goes on upstream");
    assert_eq!(flags, "00", "unsampled upstream too");
    // A sampled run afterwards: once its spans are in, the unsampled run's would be too.
    let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = run(&server, "one", &[("traceparent", sampled)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    receiver.trace("4bf92f3577b34da6a3ce929d0e0e4736", 3).await;
    receiver.assert_no_spans_of(CALLER_TRACE_ID);
    receiver.stop().await;
}

#[actix_web::test]
async fn the_standard_sampler_variables_decide_for_the_whole_trace() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    // Not parent-based: the trace id alone decides, whatever the caller's flags say (the
    // lower 64 bits, halved, below half of 2^63 are kept).
    let server = server(
        &one_step(&up.base),
        &["--otlp-endpoint", receiver.base.as_str()],
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ],
    );
    let kept = "4bf92f3577b34da60000000000000001";
    let dropped = "4bf92f3577b34da6fffffffffffffff1";
    for trace_id in [dropped, kept] {
        let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
        let reply = run(&server, "one", &[("traceparent", &traceparent)]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let requests = up.log.to("/ok");
    assert_eq!(requests.len(), 2);
    let sent: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let (trace, _, flags) = traceparent_parts(r.header("traceparent").unwrap());
            (trace, flags)
        })
        .collect();
    assert_eq!(
        sent,
        [
            (dropped.to_string(), "00".to_string()),
            (kept.to_string(), "01".to_string())
        ],
        "upstreams see the sampler's decision"
    );
    // The kept trace's three spans (server, step, call) arrive; by then the dropped one's
    // would have too.
    let spans = receiver.trace(kept, 3).await;
    assert_eq!(spans.len(), 3, "{}", describe(&spans));
    receiver.assert_no_spans_of(dropped);
    receiver.stop().await;
}

#[actix_web::test]
async fn every_log_line_of_a_traced_request_carries_its_trace_id() {
    for text_logs in [false, true] {
        let up = upstream(|cfg| {
            cfg.route(
                "/down",
                web::get().to(json_route(503, json!({"error": "maintenance"}))),
            );
        })
        .await;
        let registry = json!({"composite_connectors": [{
            "name": "Failing", "permalink": "failing",
            "steps": [{"name": "down", "url": format!("{}/down", up.base)}]
        }]});
        let receiver = Receiver::start();
        let mut vars: Vec<(String, Option<String>)> =
            INHERITED.iter().map(|n| (n.to_string(), None)).collect();
        vars.push(("OTEL_BSP_SCHEDULE_DELAY".into(), Some("100".into())));
        let server = ServerProcess::start_with(
            &registry,
            &["--otlp-endpoint", receiver.base.as_str()],
            Launch {
                env: vars,
                text_logs,
                ..Default::default()
            },
        );
        // A failing step is logged at info.
        let reply = run(&server, "failing", &[("traceparent", CALLER_TRACEPARENT)]).await;
        assert_eq!(reply.status, 502, "{}", reply.text());
        let request_id = reply.header("x-request-id").unwrap();
        receiver.trace(CALLER_TRACE_ID, 3).await;
        let log = server.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&request_id)).collect();
        assert!(
            !lines.is_empty(),
            "no log line of the request:\n{}",
            server.log_tail(20)
        );
        for line in lines {
            if text_logs {
                // Plain text in a log file: no colour escapes.
                assert!(!line.contains('\x1b'), "{line:?}");
                assert!(
                    line.ends_with(&format!(" trace_id={CALLER_TRACE_ID}")),
                    "a text log line of the request without its trace_id: {line}"
                );
                continue;
            }
            let line: Value = serde_json::from_str(line).expect("a JSON log line");
            assert_eq!(
                line.get("trace_id").and_then(Value::as_str),
                Some(CALLER_TRACE_ID),
                "a log line of the request without its trace_id: {line}"
            );
        }
        receiver.stop().await;
    }
}

#[actix_web::test]
async fn the_standard_header_variable_goes_with_every_export() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = server(
        &one_step(&up.base),
        &["--otlp-endpoint", receiver.base.as_str()],
        &[
            // Percent-encoded values, as the OpenTelemetry specification has them.
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20collector-key, x-scope-orgid=tenant-1",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ],
    );
    let reply = run(&server, "one", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    receiver.trace(&timing_trace_id(&reply), 3).await;
    let exports = receiver.export_headers();
    assert!(!exports.is_empty());
    for headers in &exports {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("authorization"),
            Some("Bearer collector-key"),
            "{headers:?}"
        );
        assert_eq!(get("x-scope-orgid"), Some("tenant-1"), "{headers:?}");
    }
    receiver.stop().await;
}

#[test]
fn a_malformed_exporter_variable_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("connectors_registry.json");
    std::fs::write(&registry, r#"{"connectors": []}"#).unwrap();
    for (name, value, expected) in [
        (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "soon",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "bad name=1",
            "is not a header name",
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-key=a%0Ab",
            "is not a header value",
        ),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_connector-runtime"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
            .arg(&registry)
            .args(["--otlp-endpoint", "http://127.0.0.1:4318"]);
        for inherited in INHERITED {
            command.env_remove(inherited);
        }
        let out = command.env(name, value).output().unwrap();
        assert!(!out.status.success(), "{name}={value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
        assert!(
            !stderr.contains("a%0Ab"),
            "the value is not echoed: {stderr}"
        );
    }
}

#[test]
fn an_https_otlp_endpoint_stops_start_up_with_a_message_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("connectors_registry.json");
    std::fs::write(&registry, r#"{"connectors": []}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(&registry)
        .args(["--otlp-endpoint", "https://127.0.0.1:4318"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("https://127.0.0.1:4318/v1/traces") && stderr.contains("plain HTTP"),
        "{stderr}"
    );
}

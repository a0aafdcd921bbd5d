//! Shared test harness: the real server on port 0 and real upstream servers on 127.0.0.1.
#![allow(dead_code)]

pub mod process;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use connector_runtime::config::ServeArgs;
use connector_runtime::registry::RegistryHandle;
use connector_runtime::server::{build_options, Application};
use connector_runtime::template::{
    new_environment, RenderLimits, SecretStore, TemplateSet, Variables,
};
use serde_json::Value;

/// A running connector-runtime.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The published registry.
    pub registry: RegistryHandle,
    /// Stops the server.
    pub handle: ServerHandle,
    /// The registry file.
    pub registry_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// How to start the app.
pub struct AppOptions {
    /// Secrets by name.
    pub secrets: Vec<(String, String)>,
    /// Variables (a JSON object).
    pub variables: Value,
    /// Adjusts the server flags.
    pub configure: Box<dyn FnOnce(&mut ServeArgs)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            secrets: Vec::new(),
            variables: Value::Object(Default::default()),
            configure: Box::new(|_| {}),
        }
    }
}

impl AppOptions {
    /// With one secret.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.into(), value.into()));
        self
    }

    /// With flags adjusted by `f`.
    pub fn flags(mut self, f: impl FnOnce(&mut ServeArgs) + 'static) -> Self {
        self.configure = Box::new(f);
        self
    }

    /// With variables.
    pub fn variables(mut self, variables: Value) -> Self {
        self.variables = variables;
        self
    }
}

/// Starts the server on `registry` with private upstreams allowed (tests use loopback).
pub async fn spawn_app(registry: Value) -> TestApp {
    spawn_app_with(registry, AppOptions::default()).await
}

/// Starts the server with options.
pub async fn spawn_app_with(registry: Value, options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, serde_json::to_string_pretty(&registry).unwrap()).unwrap();
    let mut args = ServeArgs::for_registry(&path);
    args.allow_private_upstreams = true;
    args.workers = Some(2);
    args.shutdown_timeout_secs = 1;
    (options.configure)(&mut args);
    let mut build = build_options(&args).unwrap();
    let mut secrets = SecretStore::new();
    for (k, v) in options.secrets {
        secrets.insert(k, v);
    }
    build.secrets = Arc::new(secrets);
    if let Value::Object(map) = options.variables {
        build.variables = Arc::new(Variables::from_map(map));
    }
    let app = Application::build_with_options(args, build)
        .unwrap_or_else(|e| panic!("app did not start: {e}"));
    let base = format!("http://127.0.0.1:{}", app.port());
    let registry = app.registry();
    let handle = app.handle();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        registry,
        handle,
        registry_path: path,
        _dir: dir,
    }
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: actix_web::http::header::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// Body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `X-Connector-Timing` header, parsed as JSON.
    #[track_caller]
    pub fn connector_timing(&self) -> Value {
        let header = self
            .header("x-connector-timing")
            .unwrap_or_else(|| panic!("no X-Connector-Timing header: {}", self.text()));
        serde_json::from_str(&header).unwrap()
    }

    /// The error envelope's `errors` object.
    pub fn errors(&self) -> Value {
        let body = self.json();
        assert_eq!(
            body["success"],
            Value::Bool(false),
            "not an error envelope: {body}"
        );
        body["errors"].clone()
    }
}

impl TestApp {
    /// A request for `method path` with `headers`, on a client with a 60 s timeout.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> awc::ClientRequest {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish();
        let mut req = client.request(method.parse().unwrap(), format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        req
    }

    /// Waits for the answer to `sent` (a request to `path`) and reads it, body and all.
    async fn reply(path: &str, sent: awc::SendClientRequest) -> Reply {
        let mut res = sent
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let body = res.body().limit(64 * 1024 * 1024).await.unwrap();
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body,
        }
    }

    /// Sends `method path` with optional body and headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let req = self.request(method, path, headers);
        let sent = match body {
            Some(b) => req.send_body(b.to_string()),
            None => req.send(),
        };
        Self::reply(path, sent).await
    }

    /// Sends `method path` with a body of `chunks` (chunked transfer encoding, no
    /// Content-Length) and `headers`.
    pub async fn call_chunked(
        &self,
        method: &str,
        path: &str,
        chunks: Vec<Bytes>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let sent = self.request(method, path, headers).send_stream(stream);
        Self::reply(path, sent).await
    }

    /// `GET path` without a body or headers.
    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, &[]).await
    }

    /// `GET /connectors/{permalink}/execute` (a simple connector run) without a body or headers.
    pub async fn execute(&self, permalink: &str) -> Reply {
        self.get(&format!("/connectors/{permalink}/execute")).await
    }

    /// `GET /connectors/{permalink}/execute` with `X-Path-Params: {path_params}`.
    pub async fn execute_with_path_params(&self, permalink: &str, path_params: &str) -> Reply {
        self.call(
            "GET",
            &format!("/connectors/{permalink}/execute"),
            None,
            &[("X-Path-Params", path_params)],
        )
        .await
    }

    /// `POST /connectors/composite/{permalink}/execute{query}` with `body`.
    pub async fn composite(&self, permalink: &str, query: &str, body: &str) -> Reply {
        self.call(
            "POST",
            &format!("/connectors/composite/{permalink}/execute{query}"),
            Some(body),
            &[("Content-Type", "application/json")],
        )
        .await
    }
}

/// One request an upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query pairs.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.query).unwrap_or_default()
    }
}

/// Every request an upstream received, in order.
#[derive(Debug, Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Received>>>);

impl Log {
    /// Records a request.
    pub fn record(&self, req: &HttpRequest, body: &[u8]) {
        self.0.lock().unwrap().push(Received {
            method: req.method().to_string(),
            path: req.path().to_string(),
            query: req.query_string().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }

    /// A copy of the requests so far.
    pub fn all(&self) -> Vec<Received> {
        self.0.lock().unwrap().clone()
    }

    /// Requests to `path`.
    pub fn to(&self, path: &str) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.path == path).collect()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.to(path).len()
    }
}

/// A real upstream server on 127.0.0.1.
pub struct Upstream {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// What it received.
    pub log: Log,
    handle: ServerHandle,
}

impl Upstream {
    /// Stops it (connections are then refused).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// Starts an upstream whose routes are set up by `routes`; every request is recorded in its
/// log before the route answers. Routes get the [`Log`] as app data.
pub async fn upstream<F>(routes: F) -> Upstream
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Log::default();
    let app_log = log.clone();
    let server = HttpServer::new(move || {
        let log = app_log.clone();
        App::new()
            .app_data(web::Data::new(log.clone()))
            .configure(routes.clone())
            .default_service(web::to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    HttpResponse::NotFound()
                        .json(serde_json::json!({"error": "no such route", "path": req.path()}))
                },
            ))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Upstream {
        base: format!("http://127.0.0.1:{port}"),
        port,
        log,
        handle,
    }
}

/// A route handler that records the request and answers `status` with a JSON `body`.
pub fn json_route(
    status: u16,
    body: Value,
) -> impl Fn(HttpRequest, Bytes, web::Data<Log>) -> std::future::Ready<HttpResponse> + Clone {
    move |req: HttpRequest, bytes: Bytes, log: web::Data<Log>| {
        log.record(&req, &bytes);
        std::future::ready(
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .content_type("application/json")
                .body(body.to_string()),
        )
    }
}

/// The standard upstream: `POST /oauth/token` → a token, `GET /users/me` → a user when the
/// token is presented (401 otherwise), `ANY /echo` → the request as JSON.
pub async fn standard_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route("/oauth/token", web::post().to(json_route(200, serde_json::json!({"access_token": "tok-123", "token_type": "Bearer", "expires_in": 3600}))))
            .route(
                "/users/me",
                web::get().to(|req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
                        Some("Bearer tok-123") => HttpResponse::Ok().json(serde_json::json!({"id": "usr_1", "name": "Ada"})),
                        _ => HttpResponse::Unauthorized().json(serde_json::json!({"error": "bad token"})),
                    }
                }),
            )
            .route(
                "/echo",
                web::route().to(|req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    HttpResponse::Ok().json(serde_json::json!({
                        "method": req.method().as_str(),
                        "query": req.query_string(),
                        "body": String::from_utf8_lossy(&body),
                    }))
                }),
            );
    })
    .await
}

/// An upstream whose `ANY /echo` answers with everything it received (see [`echo_route`]).
pub async fn echo_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route("/echo", web::route().to(echo_route()));
    })
    .await
}

/// An upstream whose `GET /ok` answers 200 `{"ok": true}`.
pub async fn ok_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route(
            "/ok",
            web::get().to(json_route(200, serde_json::json!({"ok": true}))),
        );
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the execution-engine suites.
// ---------------------------------------------------------------------------------------

/// A route handler that records the request, waits `delay`, then answers `status` with a
/// JSON `body` (the wait is async, so the upstream keeps serving other requests).
pub fn slow_route(
    delay: Duration,
    status: u16,
    body: Value,
) -> impl Fn(
    HttpRequest,
    Bytes,
    web::Data<Log>,
) -> futures_util::future::LocalBoxFuture<'static, HttpResponse>
       + Clone {
    move |req: HttpRequest, bytes: Bytes, log: web::Data<Log>| {
        log.record(&req, &bytes);
        let body = body.clone();
        Box::pin(async move {
            actix_rt::time::sleep(delay).await;
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .content_type("application/json")
                .body(body.to_string())
        })
    }
}

/// A route handler that records the request and answers `status` with `body` as
/// `content_type`.
pub fn typed_route(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> impl Fn(HttpRequest, Bytes, web::Data<Log>) -> std::future::Ready<HttpResponse> + Clone {
    let body: Bytes = body.into();
    move |req: HttpRequest, bytes: Bytes, log: web::Data<Log>| {
        log.record(&req, &bytes);
        std::future::ready(
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .content_type(content_type)
                .body(body.clone()),
        )
    }
}

/// A route handler that answers with everything it received as JSON:
/// `{method, path, query, headers: {lower-case name: value}, body}`.
pub fn echo_route(
) -> impl Fn(HttpRequest, Bytes, web::Data<Log>) -> std::future::Ready<HttpResponse> + Clone {
    |req: HttpRequest, bytes: Bytes, log: web::Data<Log>| {
        log.record(&req, &bytes);
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        std::future::ready(HttpResponse::Ok().json(serde_json::json!({
            "method": req.method().as_str(),
            "path": req.path(),
            "query": req.query_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&bytes),
        })))
    }
}

/// A TCP listener that accepts connections, counts them and closes them at once.
pub struct CountingListener {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingListener {
    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Starts a [`CountingListener`] on 127.0.0.1.
pub async fn counting_listener() -> CountingListener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    actix_rt::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    CountingListener { port, connections }
}

/// A loopback port with nothing listening on it (bound once, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Server flags for the address-policy tests: private upstreams allowed or not, the test
/// resolver answering `resolve` (`host=ip[,ip...]` entries) and a step timeout of
/// `step_timeout_ms`.
pub fn resolver_flags(
    allow_private_upstreams: bool,
    resolve: impl IntoIterator<Item = impl Into<String>>,
    step_timeout_ms: u64,
) -> impl FnOnce(&mut ServeArgs) + 'static {
    let resolve: Vec<String> = resolve.into_iter().map(Into::into).collect();
    move |f| {
        f.allow_private_upstreams = allow_private_upstreams;
        f.resolve = resolve;
        f.step_timeout_ms = step_timeout_ms;
    }
}

/// The error scope of a network failure (refused, reset, timed out, forbidden address, ...).
pub const NETWORK_SCOPE: &str = "Downstream (network/external service)";

/// The error scope of a failure in step `step` (at `index`) of a composite: `scope` with the
/// composite prefix.
pub fn composite_scope(step: &str, index: usize, scope: &str) -> String {
    format!("Composite step '{step}' (index {index}): {scope}")
}

/// Checks that `reply` is the error envelope with `status`, `code` and `scope` (`None`:
/// JSON null), that `success` is false and that `request_id` equals the `X-Request-ID`
/// header. Returns the `errors` object.
#[track_caller]
pub fn assert_envelope(reply: &Reply, status: u16, code: &str, scope: Option<&str>) -> Value {
    assert_eq!(reply.status, status, "unexpected status: {}", reply.text());
    let body = reply.json();
    assert_eq!(body["success"], Value::Bool(false), "{body}");
    let errors = &body["errors"];
    assert_eq!(errors["code"], code, "{body}");
    match scope {
        Some(scope) => assert_eq!(errors["scope"], scope, "{body}"),
        None => assert_eq!(errors["scope"], Value::Null, "{body}"),
    }
    assert!(errors["params"].is_array(), "params must be a list: {body}");
    assert!(errors["detail"].is_string(), "detail must be text: {body}");
    let header = reply
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-ID header on {body}"));
    assert!(!header.is_empty());
    assert_eq!(body["request_id"], Value::String(header), "{body}");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    errors.clone()
}

/// Whether `s` is 32 lower-case hex digits (a generated request id).
pub fn is_generated_request_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One entry of a `Server-Timing` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingEntry {
    /// Metric name (`step.auth`, `total`, ...).
    pub name: String,
    /// The `dur` value as written.
    pub dur: String,
    /// The `desc` value without its quotes.
    pub desc: String,
}

/// Parses a `Server-Timing` header written as `name;dur=D;desc="X", ...`, failing the
/// test when an entry deviates from that exact shape.
#[track_caller]
pub fn parse_server_timing(header: &str) -> Vec<TimingEntry> {
    header
        .split(", ")
        .map(|entry| {
            let parts: Vec<&str> = entry.split(';').collect();
            assert_eq!(parts.len(), 3, "entry '{entry}' of '{header}'");
            let dur = parts[1]
                .strip_prefix("dur=")
                .unwrap_or_else(|| panic!("no dur= in '{entry}'"));
            let desc = parts[2]
                .strip_prefix("desc=\"")
                .and_then(|d| d.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no desc=\"...\" in '{entry}'"));
            TimingEntry {
                name: parts[0].to_string(),
                dur: dur.to_string(),
                desc: desc.to_string(),
            }
        })
        .collect()
}

/// Checks that `reply` has a `Server-Timing` header whose entries are, in order, the
/// `(name, desc)` pairs of `expected`, each with a `dur` of one decimal. Returns the header
/// and its entries.
#[track_caller]
pub fn assert_server_timing(
    reply: &Reply,
    expected: &[(&str, &str)],
) -> (String, Vec<TimingEntry>) {
    let header = reply
        .header("server-timing")
        .unwrap_or_else(|| panic!("no Server-Timing header: {}", reply.text()));
    let entries = parse_server_timing(&header);
    let shape: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.desc.as_str()))
        .collect();
    assert_eq!(shape, expected, "{header}");
    for e in &entries {
        assert!(is_one_decimal_ms(&e.dur), "dur '{}' in {header}", e.dur);
    }
    (header, entries)
}

/// Whether `s` is `\d+\.\d` (milliseconds with exactly one decimal).
pub fn is_one_decimal_ms(s: &str) -> bool {
    match s.split_once('.') {
        Some((int, frac)) => {
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == 1
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The keys of a JSON object, sorted.
#[track_caller]
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// `X-Path-Params` for one key and value (URL-encoded).
pub fn path_params_header(key: &str, value: &str) -> String {
    serde_urlencoded::to_string([(key, value)]).unwrap()
}

/// Form fields of a recorded form-encoded body.
pub fn form_fields(body: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(body).unwrap_or_default()
}

/// The value of form field `name` in a recorded form-encoded body.
pub fn form_field(body: &str, name: &str) -> Option<String> {
    form_fields(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A template set over the real environment (no secrets, no variables) with `limits`, for
/// tests that compile and render templates without a registry.
pub fn template_set(limits: RenderLimits) -> TemplateSet {
    TemplateSet::new(
        new_environment(
            Arc::new(SecretStore::new()),
            Arc::new(Variables::new()),
            limits,
        ),
        limits,
    )
}

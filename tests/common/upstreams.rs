//! Real upstream servers on 127.0.0.1, and the route handlers they are built from.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use connector_runtime::config::ServeArgs;
use serde_json::{json, Value};

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
    /// What `req` with `body` was.
    pub fn of(req: &HttpRequest, body: &[u8]) -> Self {
        Received {
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
        }
    }

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
        self.0.lock().unwrap().push(Received::of(req, body));
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

/// A loopback port that refuses connections for as long as this value lives: a socket is
/// bound to it but never listens. The port is never released, so no other test can take it
/// (the bind has no `SO_REUSEADDR`, so even a bind that sets it fails, and the kernel never
/// hands out a bound port for port 0 or as a source port): "refused" cannot turn into a
/// connection to another test's server. [`ClosedPort::listen`] opens it later, still
/// without releasing it.
pub struct ClosedPort {
    /// The port (on 127.0.0.1).
    pub port: u16,
    socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts listening on the port: connections from now on are accepted. Must be called
    /// on a runtime.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(128).expect("the reserved port listens")
    }
}

/// A [`ClosedPort`] for the caller to keep for the test's lifetime.
pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket.set_reuseaddr(false).unwrap();
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("a loopback port");
    let port = socket.local_addr().unwrap().port();
    ClosedPort { port, socket }
}

/// One [`ClosedPort`] kept for the whole test process, for registries built by helpers that
/// outlive no single test: `http://127.0.0.1:PORT`.
pub fn refused_base() -> String {
    static PORT: std::sync::OnceLock<ClosedPort> = std::sync::OnceLock::new();
    PORT.get_or_init(closed_port).base()
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

/// An upstream whose token endpoint hands out `tok-1`, `tok-2`, ... (waiting `token_delay`
/// and answering `expires_in`), and whose `/data` accepts the tokens in `accepted`.
pub async fn token_upstream(
    token_delay: Duration,
    expires_in: u64,
    accepted: &'static [&'static str],
) -> Upstream {
    let issued = Arc::new(AtomicUsize::new(0));
    upstream(move |cfg| {
        let issued = issued.clone();
        cfg.route(
            "/oauth/token",
            web::post().to(move |req: HttpRequest, body: Bytes, log: web::Data<Log>| {
                log.record(&req, &body);
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    actix_rt::time::sleep(token_delay).await;
                    HttpResponse::Ok().json(json!({
                        "access_token": format!("tok-{n}"),
                        "token_type": "Bearer",
                        "expires_in": expires_in
                    }))
                }
            }),
        )
        .route(
            "/data",
            web::get().to(move |req: HttpRequest, body: Bytes, log: web::Data<Log>| {
                log.record(&req, &body);
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let ok = accepted.iter().any(|t| auth == format!("Bearer {t}"));
                async move {
                    if ok {
                        HttpResponse::Ok().json(json!({"data": "yes"}))
                    } else {
                        HttpResponse::Unauthorized().json(json!({"error": "invalid_token"}))
                    }
                }
            }),
        );
    })
    .await
}

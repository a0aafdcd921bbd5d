//! A realistic fake upstream API for demos, tests and load tests: an OAuth token endpoint,
//! users, items, an echo of the received request, and fixed statuses, with optional latency;
//! and an identity provider's JWKS for the demo member ([`identity`]).

pub(crate) mod identity;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use serde_json::{json, Value};

/// The token the mock's token endpoint issues and its APIs accept.
pub(crate) const TOKEN: &str = "mock-token-4f2a9c";

#[derive(Clone, Copy)]
struct Latency(Duration);

async fn delay(latency: &web::Data<Latency>) {
    if !latency.0.is_zero() {
        actix_rt::time::sleep(latency.0).await;
    }
}

fn authorized(req: &HttpRequest) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == TOKEN)
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .json(json!({"error": "unauthorized", "hint": "POST /oauth/token first"}))
}

/// Serialized once: the mock is cheap per request so load tests measure the runtime.
fn cached(cell: &'static std::sync::OnceLock<Bytes>, make: fn() -> Value) -> Bytes {
    cell.get_or_init(|| Bytes::from(make().to_string())).clone()
}

async fn token(latency: web::Data<Latency>) -> HttpResponse {
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    delay(&latency).await;
    HttpResponse::Ok()
        .content_type("application/json")
        .body(cached(
            &BODY,
            || json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}),
        ))
}

fn user() -> Value {
    json!({
        "id": "usr_123",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "plan": "pro",
        "roles": ["admin", "editor"],
        "settings": {"theme": "dark", "locale": "en-GB", "notifications": {"email": true, "sms": false}},
        "bio": "Mathematician and writer, known for work on the Analytical Engine; the first to publish an algorithm intended for such a machine. This padding makes the body about one kilobyte long, which is a typical size for a profile document returned by a REST API to a widget. Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."
    })
}

async fn me(req: HttpRequest, latency: web::Data<Latency>) -> HttpResponse {
    delay(&latency).await;
    if !authorized(&req) {
        return unauthorized();
    }
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(cached(&BODY, user))
}

fn item(id: &str) -> Value {
    let n: u64 = id.bytes().map(u64::from).sum();
    json!({"id": id, "name": format!("Item {id}"), "price": (n % 100) as f64 + 0.99, "in_stock": n % 3 != 0})
}

async fn items(req: HttpRequest, latency: web::Data<Latency>) -> HttpResponse {
    delay(&latency).await;
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let limit: usize = get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(5)
        .min(100);
    let q = get("q").unwrap_or_default();
    let list: Vec<Value> = (1..=limit)
        .map(|i| item(&format!("itm_{i:03}")))
        .filter(|it| {
            q.is_empty()
                || it["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(&q.to_lowercase())
        })
        .collect();
    HttpResponse::Ok().json(json!({"items": list, "owner": get("owner"), "count": limit}))
}

async fn item_by_id(path: web::Path<String>, latency: web::Data<Latency>) -> HttpResponse {
    delay(&latency).await;
    HttpResponse::Ok().json(item(&path))
}

async fn echo(req: HttpRequest, body: Bytes, latency: web::Data<Latency>) -> HttpResponse {
    delay(&latency).await;
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    HttpResponse::Ok().json(json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "json": body_json,
    }))
}

async fn status(path: web::Path<u16>) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(*path)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(code).json(json!({"status": code.as_u16()}))
}

async fn jwks() -> HttpResponse {
    HttpResponse::Ok().json(identity::jwks())
}

/// Mounts the mock's routes with `latency` before each answer.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, latency: Duration) {
    cfg.app_data(web::Data::new(Latency(latency)))
        .route("/oauth/token", web::post().to(token))
        .route("/users/me", web::get().to(me))
        .route("/items", web::get().to(items))
        .route("/items/{id}", web::get().to(item_by_id))
        .route("/status/{code}", web::route().to(status))
        .route("/echo", web::route().to(echo))
        .route("/echo/{tail:.*}", web::route().to(echo))
        .route(identity::JWKS_PATH, web::get().to(jwks));
}

/// Starts the mock on `listener`; the returned server must be awaited or spawned.
pub(crate) fn start(
    listener: TcpListener,
    latency: Duration,
    workers: usize,
) -> std::io::Result<Server> {
    Ok(
        HttpServer::new(move || App::new().configure(|cfg| configure(cfg, latency)))
            .workers(workers.max(1))
            .listen(listener)?
            .run(),
    )
}

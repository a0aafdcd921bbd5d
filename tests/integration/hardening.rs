//! Second hardening round, run path: `oauth_jwt_bearer` tokens are never shared between
//! different assertions and live no longer than the endpoint says; execute answers are never
//! sniffed or run as the runtime's origin; refusals before a run use the envelope.

use std::time::Duration;

use actix_web::web;
use serde_json::{json, Value};

use crate::common::{
    assert_envelope, echo_route, spawn_app, spawn_app_with, token_upstream, typed_route, upstream,
    AppOptions, Upstream,
};

const HS_KEY: &str = "hs256-test-key-0123456789abcdef";

/// The tokens the tests' token endpoint hands out, in order.
const TOKENS: &[&str] = &["tok-1", "tok-2", "tok-3", "tok-4", "tok-5", "tok-6"];

async fn numbered_tokens(expires_in: u64) -> Upstream {
    token_upstream(Duration::ZERO, expires_in, TOKENS).await
}

/// A simple `oauth_jwt_bearer` connector whose config is the common one with `extra` merged.
fn bearer_connector(up: &Upstream, permalink: &str, extra: Value) -> Value {
    let mut config = json!({
        "client_id": "svc-client", "private_key": "{{ get_secret('hs_key') }}",
        "algorithm": "HS256", "token_url": format!("{}/oauth/token", up.base),
        "subject": "svc@example.com", "audience": "https://auth.example.com/token"
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    json!({"name": permalink, "permalink": permalink, "url": format!("{}/data", up.base),
        "authentication": {"type": "oauth_jwt_bearer", "config": config}})
}

/// The bearer token the upstream received on the latest `/data` call.
fn last_bearer(up: &Upstream) -> String {
    up.log
        .to("/data")
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .to_string()
}

#[actix_web::test]
async fn jwt_bearer_connectors_that_differ_in_any_assertion_input_never_share_a_token() {
    let up = numbered_tokens(3600).await;
    let variants = [
        ("admin", json!({"additional_claims": {"scope": "admin"}})),
        ("read", json!({"additional_claims": {"scope": "read"}})),
        (
            "headers",
            json!({"additional_claims": {"scope": "read"}, "jwt_headers": {"kid": "k2"}}),
        ),
        (
            "algorithm",
            json!({"additional_claims": {"scope": "read"}, "algorithm": "HS384"}),
        ),
        (
            "ttl",
            json!({"additional_claims": {"scope": "read"}, "token_ttl": 1800}),
        ),
    ];
    let connectors: Vec<Value> = variants
        .iter()
        .map(|(p, extra)| bearer_connector(&up, p, extra.clone()))
        .collect();
    let app = spawn_app_with(
        json!({"connectors": connectors}),
        AppOptions::default().secret("hs_key", HS_KEY),
    )
    .await;
    let mut seen = Vec::new();
    for (permalink, _) in &variants {
        let reply = app.execute(permalink).await;
        assert_eq!(reply.status, 200, "{permalink}: {}", reply.text());
        seen.push(last_bearer(&up));
    }
    assert_eq!(
        seen,
        [
            "Bearer tok-1",
            "Bearer tok-2",
            "Bearer tok-3",
            "Bearer tok-4",
            "Bearer tok-5"
        ],
        "each assertion gets its own token"
    );
    // The same assertion again reuses its own token.
    assert_eq!(app.execute("read").await.status, 200);
    assert_eq!(last_bearer(&up), "Bearer tok-2");
    assert_eq!(up.log.count("/oauth/token"), 5);
}

#[actix_web::test]
async fn a_jwt_bearer_token_lives_no_longer_than_the_endpoint_says() {
    // expires_in 61 s with the default token_ttl of 3600 s: cached for 61 - 60 = 1 s.
    let up = numbered_tokens(61).await;
    let app = spawn_app_with(
        json!({"connectors": [bearer_connector(&up, "short", json!({}))]}),
        AppOptions::default().secret("hs_key", HS_KEY),
    )
    .await;
    assert_eq!(app.execute("short").await.status, 200);
    assert_eq!(app.execute("short").await.status, 200);
    assert_eq!(
        up.log.count("/oauth/token"),
        1,
        "reused within its lifetime"
    );
    // What is measured here is the expiry itself, so waiting out the lifetime is the test.
    actix_rt::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(app.execute("short").await.status, 200);
    assert_eq!(
        up.log.count("/oauth/token"),
        2,
        "fetched again after expires_in - 60 s"
    );
    assert_eq!(last_bearer(&up), "Bearer tok-2");
}

#[actix_web::test]
async fn execute_answers_are_never_sniffed_nor_run_as_the_runtime_origin() {
    let up = upstream(|cfg| {
        cfg.route(
            "/html",
            web::get().to(typed_route(
                200,
                "text/html",
                "<script>alert(document.domain)</script>",
            )),
        );
    })
    .await;
    let app = spawn_app(json!({"connectors": [
        {"name": "Page", "permalink": "page", "url": format!("{}/html", up.base)},
        {"name": "Gone", "permalink": "gone", "url": format!("{}/missing", up.base)}
    ]}))
    .await;
    let ok = app.execute("page").await;
    let failed = app.execute("gone").await;
    let unknown = app.execute("no-such-connector").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type").as_deref(), Some("text/html"));
    assert_envelope(
        &failed,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Downstream (HTTP error)"),
    );
    assert_envelope(&unknown, 404, "CONNECTOR_NOT_FOUND", None);
    for reply in [&ok, &failed, &unknown] {
        assert_eq!(
            reply.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(
            reply.header("content-security-policy").as_deref(),
            Some("sandbox")
        );
    }
}

/// Sends `head` (a request without a body) on a raw socket and returns the whole answer.
async fn raw_exchange(app_base: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app_base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[actix_web::test]
async fn a_request_with_ten_thousand_query_parameters_gets_the_envelope() {
    let up = upstream(|cfg| {
        cfg.route("/echo", web::route().to(echo_route()));
    })
    .await;
    let app = spawn_app(json!({"connectors": [
        {"name": "Echo", "permalink": "echo", "url": format!("{}/echo", up.base)}
    ]}))
    .await;
    let query: Vec<String> = (0..10_000).map(|_| "a=1".to_string()).collect();
    let answer = raw_exchange(
        &app.base,
        &format!(
            "GET /connectors/echo/execute?{} HTTP/1.1\r\nHost: runtime\r\nConnection: close\r\n\r\n",
            query.join("&")
        ),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let envelope: Value = serde_json::from_str(body).expect("the answer is the envelope");
    assert_eq!(envelope["errors"]["code"], "INVALID_QUERY_STRING");
    assert!(envelope["errors"]["detail"]
        .as_str()
        .unwrap()
        .contains("more than 1000"));
    assert_eq!(up.log.count("/echo"), 0);
    // 1,000 parameters are still served.
    let fine: Vec<String> = (0..1000).map(|_| "a=1".to_string()).collect();
    let answer = raw_exchange(
        &app.base,
        &format!(
            "GET /connectors/echo/execute?{} HTTP/1.1\r\nHost: runtime\r\nConnection: close\r\n\r\n",
            fine.join("&")
        ),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "{}",
        &answer[..answer.len().min(200)]
    );
}

//! No secret and no earlier-step data in any error body or log line. A canary secret is
//! used in headers, query and every authentication type; each failure kind is triggered
//! for a simple connector and inside a composite; every response body and every captured
//! log line (at debug level) is searched for the canary.
//!
//! This file installs a global `tracing` subscriber that captures into a buffer, so it is
//! its own test binary.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use common::{
    slow_route, spawn_app_with, typed_route, upstream, AppOptions, Log, Reply, TestApp, Upstream,
};
use serde_json::{json, Value};
use tracing_subscriber::EnvFilter;

const CANARY: &str = "canary-5ecr3t-XYZ";
const EARLIER: &str = "EARLIER-STEP-PAYLOAD-7781";

/// The log buffer; the subscriber is installed on first use.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || CaptureWriter(sink.clone()))
            .try_init()
            .expect("no other subscriber in this test binary");
        buffer
    })
    .clone()
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned()
}

/// An upstream whose answers echo what they received (so any secret they were sent would
/// be in their body) and carry the canary themselves.
async fn leaky_upstream() -> Upstream {
    fn echo_with(
        status: u16,
    ) -> impl Fn(HttpRequest, Bytes, web::Data<Log>) -> std::future::Ready<HttpResponse> + Clone
    {
        move |req: HttpRequest, body: Bytes, log: web::Data<Log>| {
            log.record(&req, &body);
            let headers: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            std::future::ready(
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(
                    json!({
                        "headers": headers,
                        "query": req.query_string(),
                        "body": String::from_utf8_lossy(&body),
                        "also": CANARY,
                    }),
                ),
            )
        }
    }
    upstream(|cfg| {
        cfg.route(
            "/first",
            web::get().to(common::json_route(200, json!({"earlier": EARLIER, "n": 1}))),
        )
        .route("/fail-500", web::route().to(echo_with(500)))
        .route("/fail-404", web::route().to(echo_with(404)))
        .route("/always-401", web::route().to(echo_with(401)))
        .route("/token-fail", web::post().to(echo_with(401)))
        .route(
            "/token",
            web::post().to(common::json_route(
                200,
                json!({"access_token": format!("{CANARY}-token"), "expires_in": 3600}),
            )),
        )
        .route(
            "/slow",
            web::get().to(slow_route(
                Duration::from_millis(1_000),
                200,
                json!({"x": CANARY}),
            )),
        )
        .route(
            "/text",
            web::get().to(typed_route(200, "text/plain", format!("not json {CANARY}"))),
        )
        .route(
            "/big",
            web::get().to(typed_route(200, "text/plain", CANARY.repeat(10_000))),
        );
    })
    .await
}

/// Header that carries the canary on every failing call.
fn secret_header() -> Value {
    json!({"key": "X-Secret", "value": "{{ get_secret('canary') }}"})
}

/// Header that carries earlier-step data (composites only).
fn earlier_header() -> Value {
    json!({"key": "X-Earlier", "value": "{{ (steps.first.body | from_json).earlier }}"})
}

/// Failing calls, by name: each uses the canary.
fn failing_calls(base: &str) -> Vec<(&'static str, Value)> {
    let refused = common::refused_base();
    let jwt_rs = json!({"type": "jwt", "config": {
        "private_key": "{{ get_secret('canary') }}", "algorithm": "RS256",
        "claims": {"sub": "{{ get_secret('canary') }}"}}});
    let jwt_bearer = json!({"type": "oauth_jwt_bearer", "config": {
        "client_id": "{{ get_secret('canary') }}", "private_key": "{{ get_secret('canary') }}",
        "token_url": format!("{base}/token"), "subject": "s", "audience": "a"}});
    let oauth = |token_url: &str| {
        json!({"type": "oauth_client_credentials", "config": {
            "client_id": "cid", "client_secret": "{{ get_secret('canary') }}",
            "token_url": format!("{base}{token_url}")}})
    };
    vec![
        (
            "http-500",
            json!({"url": format!("{base}/fail-500"), "headers": [secret_header()],
                   "query_parameters": [{"key": "k", "value": "{{ get_secret('canary') }}"}]}),
        ),
        (
            "http-404-api-key",
            json!({"url": format!("{base}/fail-404"), "authentication": {"type": "api_key",
                   "config": {"key": "key", "value": "{{ get_secret('canary') }}", "in": "query"}}}),
        ),
        (
            "refused",
            json!({"url": format!("{refused}/x"), "headers": [secret_header()]}),
        ),
        (
            "timeout",
            json!({"url": format!("{base}/slow"), "headers": [secret_header()]}),
        ),
        (
            "from-json",
            json!({"url": format!("{base}/first"), "headers": [
                {"key": "X-Bad", "value": "{{ (get_secret('canary') ~ request.body_text) | from_json }}"}]}),
        ),
        (
            "undefined",
            json!({"url": format!("{base}/first"), "headers": [
                {"key": "X-Bad", "value": "{{ get_secret('canary') }}{{ (request.body_text | from_json).nope }}"}]}),
        ),
        (
            "response-template",
            json!({"url": format!("{base}/text"), "headers": [secret_header()],
                   "response_body": "{{ response.body | from_json }}"}),
        ),
        (
            "jwt",
            json!({"url": format!("{base}/first"), "authentication": jwt_rs}),
        ),
        (
            "jwt-bearer",
            json!({"url": format!("{base}/first"), "authentication": jwt_bearer}),
        ),
        (
            "token-fail",
            json!({"url": format!("{base}/first"), "authentication": oauth("/token-fail")}),
        ),
        (
            "persistent-401",
            json!({"url": format!("{base}/always-401"), "authentication": oauth("/token")}),
        ),
        (
            "too-large",
            json!({"url": format!("{base}/big"), "headers": [secret_header()]}),
        ),
    ]
}

fn registry(base: &str) -> Value {
    let mut connectors = Vec::new();
    let mut composites = Vec::new();
    for (name, call) in failing_calls(base) {
        let mut simple = call.clone();
        simple["name"] = json!(name);
        simple["permalink"] = json!(name);
        connectors.push(simple);
        let mut step = call;
        step["name"] = json!("second");
        let headers = step
            .get("headers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut headers = headers;
        headers.push(earlier_header());
        step["headers"] = Value::Array(headers);
        composites.push(json!({
            "name": format!("c-{name}"), "permalink": format!("c-{name}"),
            "steps": [
                {"name": "first", "url": format!("{base}/first"), "headers": [secret_header()]},
                step
            ]
        }));
    }
    json!({"connectors": connectors, "composite_connectors": composites})
}

async fn app_for(up: &Upstream) -> TestApp {
    spawn_app_with(
        registry(&up.base),
        AppOptions::default().secret("canary", CANARY).flags(|f| {
            f.step_timeout_ms = 300;
            f.token_timeout_ms = 300;
            f.max_response_bytes = 64 * 1024;
        }),
    )
    .await
}

/// Runs every failing connector, simple and composite; returns (name, reply).
async fn trigger_every_failure(app: &TestApp, up: &Upstream) -> Vec<(String, Reply)> {
    let mut out = Vec::new();
    for (name, _) in failing_calls(&up.base) {
        let simple = app
            .call(
                "GET",
                &format!("/connectors/{name}/execute"),
                None,
                &[("X-Request-ID", &format!("leak-{name}"))],
            )
            .await;
        out.push((name.to_string(), simple));
        let composite = app
            .call(
                "POST",
                &format!("/connectors/composite/c-{name}/execute"),
                Some(r#"{"caller": 1}"#),
                &[
                    ("Content-Type", "application/json"),
                    ("X-Request-ID", &format!("leak-c-{name}")),
                ],
            )
            .await;
        out.push((format!("c-{name}"), composite));
    }
    out
}

#[actix_web::test]
async fn no_error_body_or_header_contains_the_secret_or_earlier_step_data() {
    captured_logs();
    let up = leaky_upstream().await;
    let app = app_for(&up).await;
    let replies = trigger_every_failure(&app, &up).await;
    let mut codes = Vec::new();
    for (name, reply) in &replies {
        assert!(reply.status >= 400, "{name} did not fail: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["success"], false, "{name}");
        codes.push(body["errors"]["code"].as_str().unwrap().to_string());
        let text = reply.text();
        for leak in [CANARY, EARLIER] {
            assert!(!text.contains(leak), "{name}: '{leak}' in the body {text}");
        }
        for (header, value) in reply.headers.iter() {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(
                !value.contains(CANARY),
                "{name}: canary in {header}: {value}"
            );
            assert!(
                !value.contains(EARLIER),
                "{name}: earlier data in {header}: {value}"
            );
        }
    }
    // Every failure kind was really exercised.
    for code in [
        "DOWNSTREAM_HTTP_ERROR",
        "DOWNSTREAM_NETWORK_ERROR",
        "DOWNSTREAM_TIMEOUT",
        "TEMPLATE_RENDERING_ERROR",
        "RESPONSE_TEMPLATE_RENDERING_ERROR",
        "JWT_SIGNING_ERROR",
        "DOWNSTREAM_RESPONSE_TOO_LARGE",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} not triggered: {codes:?}"
        );
    }
    // The canary really was sent upstream (so the absence above means something).
    let sent = up.log.all();
    assert!(sent.iter().any(|r| r.header("x-secret") == Some(CANARY)));
    assert!(sent.iter().any(|r| r.header("x-earlier") == Some(EARLIER)));
    assert!(
        sent.iter().any(|r| r.body.contains(CANARY)),
        "client_secret in a token request"
    );
}

#[actix_web::test]
async fn no_log_line_contains_the_secret_while_step_failures_are_logged() {
    let logs = captured_logs();
    let up = leaky_upstream().await;
    let app = app_for(&up).await;
    let replies = trigger_every_failure(&app, &up).await;
    assert!(replies.iter().all(|(_, r)| r.status >= 400));
    // Let in-flight log lines (e.g. from the timed-out exchanges) land.
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    let text = log_text();
    assert!(!logs.lock().unwrap().is_empty());
    for (i, line) in text.lines().enumerate() {
        assert!(!line.contains(CANARY), "line {i} has the canary: {line}");
        assert!(
            !line.contains(EARLIER),
            "line {i} has earlier-step data: {line}"
        );
    }
    assert!(
        text.contains("step failed"),
        "no step failure was logged:\n{text}"
    );
    assert!(
        text.contains("run failed"),
        "no run failure was logged:\n{text}"
    );
    for (name, _) in failing_calls(&up.base) {
        assert!(
            text.contains(&format!("leak-c-{name}")),
            "no log line for composite run {name}"
        );
    }
    for code in [
        "DOWNSTREAM_HTTP_ERROR",
        "DOWNSTREAM_NETWORK_ERROR",
        "DOWNSTREAM_TIMEOUT",
        "TEMPLATE_RENDERING_ERROR",
        "JWT_SIGNING_ERROR",
        "DOWNSTREAM_RESPONSE_TOO_LARGE",
    ] {
        assert!(text.contains(code), "{code} was not logged");
    }
    assert!(text.contains("token request failed"));
}

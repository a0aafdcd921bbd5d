//! No secret and no earlier-step data in any error body or log line. A canary secret is
//! used in headers, query and every authentication type, and a second one is pasted into a
//! template literally; each failure kind is triggered for a simple connector and inside a
//! composite (UPSTREAM_ADDRESS_FORBIDDEN on an app with the address policy on); every
//! response body and every captured log line (at debug level, in the text format and in
//! the JSON format production uses) is searched for them.
//!
//! This file installs a global `tracing` subscriber that captures into buffers, so it is
//! its own test binary. Its tests share those buffers: each test's runs carry request ids
//! of their own prefix, and a test looks for its own runs' lines by those ids.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use common::{
    counting_listener, spawn_app_with, typed_route, upstream, AppOptions, CountingListener, Log,
    Reply, TestApp, Upstream,
};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const CANARY: &str = "canary-5ecr3t-XYZ";
const EARLIER: &str = "EARLIER-STEP-PAYLOAD-7781";
/// A secret whose value a registry author pasted into a template literally (an identifier,
/// so the template compiles and its error quotes it: `{{ 'x'.VALUE() }}`).
const PASTED: &str = "pasted_5ecr3t_Q9";
/// What must never appear in an answer or a log line.
const LEAKS: [&str; 3] = [CANARY, EARLIER, PASTED];

/// The captured log, in the text format and in the JSON format of `--log-format json`.
struct Logs {
    text: Arc<Mutex<Vec<u8>>>,
    json: Arc<Mutex<Vec<u8>>>,
}

/// The log buffers; the subscriber is installed on first use. The JSON layer is set up as
/// src/telemetry.rs sets up production's (`json().flatten_event(true).with_current_span(true)`).
fn captured_logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs {
            text: Arc::new(Mutex::new(Vec::new())),
            json: Arc::new(Mutex::new(Vec::new())),
        };
        let (text, json) = (logs.text.clone(), logs.json.clone());
        tracing_subscriber::registry()
            .with(EnvFilter::new("debug"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || CaptureWriter(text.clone())),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(move || CaptureWriter(json.clone())),
            )
            .try_init()
            .expect("no other subscriber in this test binary");
        logs
    })
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

fn text_log() -> String {
    String::from_utf8_lossy(&captured_logs().text.lock().unwrap()).into_owned()
}

fn json_log() -> String {
    String::from_utf8_lossy(&captured_logs().json.lock().unwrap()).into_owned()
}

/// Waits (up to 10 s) until both logs have a line containing every one of `needles`.
async fn wait_for_line(needles: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let has = |log: String| log.lines().any(|l| needles.iter().all(|n| l.contains(n)));
        if has(text_log()) && has(json_log()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?}:\n{}",
            text_log()
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many requests the `/slow` route has received, and how many it has answered.
#[derive(Clone, Default)]
struct SlowCounts {
    received: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

type BoxedReply = futures_util::future::LocalBoxFuture<'static, HttpResponse>;

/// The `/slow` route: answers the canary after 1 s (past the step timeout, so its caller
/// has long had a 504), counting what it received and what it has answered.
fn slow_canary_route(
    counts: SlowCounts,
) -> impl Fn(HttpRequest, Bytes, web::Data<Log>) -> BoxedReply + Clone {
    move |req: HttpRequest, bytes: Bytes, log: web::Data<Log>| {
        log.record(&req, &bytes);
        counts.received.fetch_add(1, Ordering::SeqCst);
        let answered = counts.answered.clone();
        Box::pin(async move {
            actix_rt::time::sleep(Duration::from_millis(1_000)).await;
            answered.fetch_add(1, Ordering::SeqCst);
            HttpResponse::Ok().json(json!({"x": CANARY}))
        })
    }
}

/// An upstream whose answers echo what they received (so any secret they were sent would
/// be in their body) and carry the canary themselves.
async fn leaky_upstream() -> (Upstream, SlowCounts) {
    let counts = SlowCounts::default();
    let slow = counts.clone();
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
    let up = upstream(move |cfg| {
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
        .route("/slow", web::get().to(slow_canary_route(slow.clone())))
        .route(
            "/text",
            web::get().to(typed_route(200, "text/plain", format!("not json {CANARY}"))),
        )
        .route(
            "/big",
            web::get().to(typed_route(200, "text/plain", CANARY.repeat(10_000))),
        );
    })
    .await;
    (up, counts)
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
        (
            "pasted",
            json!({"url": format!("{base}/first"), "headers": [secret_header(),
                {"key": "X-Bad", "value": format!("{{{{ 'x'.{PASTED}() }}}}")}]}),
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
        AppOptions::default()
            .secret("canary", CANARY)
            .secret("pasted", PASTED)
            .flags(|f| {
                f.step_timeout_ms = 300;
                f.token_timeout_ms = 300;
                f.max_response_bytes = 64 * 1024;
            }),
    )
    .await
}

/// An app with the address policy on whose only upstream host resolves to loopback, with
/// the canary in a query parameter (so in the URL it would connect to) and in a header:
/// every run there is
/// UPSTREAM_ADDRESS_FORBIDDEN, and the listener on that port must never see a connection.
async fn forbidden_app() -> (TestApp, CountingListener) {
    let listener = counting_listener().await;
    let call = json!({
        "url": format!("https://internal.leak.test:{}/x?fixed=1", listener.port),
        "headers": [secret_header()],
        "query_parameters": [{"key": "q", "value": "{{ get_secret('canary') }}"}]
    });
    let mut simple = call.clone();
    simple["name"] = json!("forbidden");
    simple["permalink"] = json!("forbidden");
    let mut step = call;
    step["name"] = json!("only");
    let app = spawn_app_with(
        json!({"connectors": [simple], "composite_connectors": [
            {"name": "c-forbidden", "permalink": "c-forbidden", "steps": [step]}]}),
        AppOptions::default().secret("canary", CANARY).flags(|f| {
            f.allow_private_upstreams = false;
            f.resolve = vec!["internal.leak.test=127.0.0.1".to_string()];
        }),
    )
    .await;
    (app, listener)
}

/// The connectors every test runs: those of [`failing_calls`], and `forbidden`.
fn all_names(base: &str) -> Vec<&'static str> {
    let mut names: Vec<&str> = failing_calls(base).into_iter().map(|(n, _)| n).collect();
    names.push("forbidden");
    names
}

/// Runs every failing connector, simple and composite (`forbidden` on `forbidden`, the
/// rest on `app`), with request ids `{prefix}-{name}` and `{prefix}-c-{name}`; returns
/// (name, reply).
async fn trigger_every_failure(
    app: &TestApp,
    forbidden: &TestApp,
    up: &Upstream,
    prefix: &str,
) -> Vec<(String, Reply)> {
    let mut out = Vec::new();
    for name in all_names(&up.base) {
        let on = if name == "forbidden" { forbidden } else { app };
        let simple = on
            .call(
                "GET",
                &format!("/connectors/{name}/execute"),
                None,
                &[("X-Request-ID", &format!("{prefix}-{name}"))],
            )
            .await;
        out.push((name.to_string(), simple));
        let composite = on
            .call(
                "POST",
                &format!("/connectors/composite/c-{name}/execute"),
                Some(r#"{"caller": 1}"#),
                &[
                    ("Content-Type", "application/json"),
                    ("X-Request-ID", &format!("{prefix}-c-{name}")),
                ],
            )
            .await;
        out.push((format!("c-{name}"), composite));
    }
    out
}

/// The failure codes the runs must have produced (so the absence of leaks means something).
const CODES: &[&str] = &[
    "DOWNSTREAM_HTTP_ERROR",
    "DOWNSTREAM_NETWORK_ERROR",
    "DOWNSTREAM_TIMEOUT",
    "TEMPLATE_RENDERING_ERROR",
    "RESPONSE_TEMPLATE_RENDERING_ERROR",
    "JWT_SIGNING_ERROR",
    "DOWNSTREAM_RESPONSE_TOO_LARGE",
    "UPSTREAM_ADDRESS_FORBIDDEN",
];

#[actix_web::test]
async fn no_error_body_or_header_contains_the_secret_or_earlier_step_data() {
    captured_logs();
    let (up, _) = leaky_upstream().await;
    let app = app_for(&up).await;
    let (forbidden, listener) = forbidden_app().await;
    let replies = trigger_every_failure(&app, &forbidden, &up, "leak").await;
    let mut codes = Vec::new();
    for (name, reply) in &replies {
        assert!(reply.status >= 400, "{name} did not fail: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["success"], false, "{name}");
        codes.push(body["errors"]["code"].as_str().unwrap().to_string());
        let text = reply.text();
        for leak in LEAKS {
            assert!(!text.contains(leak), "{name}: '{leak}' in the body {text}");
        }
        for (header, value) in reply.headers.iter() {
            let value = String::from_utf8_lossy(value.as_bytes());
            for leak in LEAKS {
                assert!(
                    !value.contains(leak),
                    "{name}: '{leak}' in {header}: {value}"
                );
            }
        }
    }
    for code in CODES {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} not triggered: {codes:?}"
        );
    }
    // The pasted secret's template error really was produced, with the value scrubbed.
    let pasted = &replies.iter().find(|(n, _)| n == "pasted").unwrap().1;
    let errors = pasted.errors();
    assert_eq!(errors["code"], "TEMPLATE_RENDERING_ERROR", "{errors}");
    assert!(
        errors["detail"].as_str().unwrap().contains("[REDACTED]"),
        "{errors}"
    );
    assert_eq!(listener.count(), 0, "a forbidden upstream was connected to");
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
    captured_logs();
    let (up, slow) = leaky_upstream().await;
    let app = app_for(&up).await;
    let (forbidden, _listener) = forbidden_app().await;
    let replies = trigger_every_failure(&app, &forbidden, &up, "log").await;
    assert!(replies.iter().all(|(_, r)| r.status >= 400));
    // Signals instead of a pause: every run's last line ("run failed", logged as its answer
    // is built) is in both logs, and the slow upstream has sent its canary to every caller
    // that had long had its 504 (a line the runtime logged in reaction would come from that
    // late answer, and is then checked as well).
    for name in all_names(&up.base) {
        for id in [format!("log-{name}"), format!("log-c-{name}")] {
            wait_for_line(&["run failed", &format!("\"{id}\"")]).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.answered.load(Ordering::SeqCst) < slow.received.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the slow upstream never answered"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(slow.received.load(Ordering::SeqCst) >= 2);
    let text = text_log();
    let json = json_log();
    assert!(!text.is_empty() && !json.is_empty());
    for (format, log) in [("json", &json), ("text", &text)] {
        for (i, line) in log.lines().enumerate() {
            for leak in LEAKS {
                assert!(
                    !line.contains(leak),
                    "{format} line {i} has '{leak}': {line}"
                );
            }
        }
    }
    for (i, line) in json.lines().enumerate() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("json line {i} is not JSON ({e}): {line}"));
    }
    for log in [&text, &json] {
        assert!(
            log.contains("step failed"),
            "no step failure was logged:\n{log}"
        );
        assert!(log.contains("token request failed"));
        for code in CODES {
            assert!(
                log.lines()
                    .any(|l| l.contains(code) && l.contains("\"log-")),
                "{code} was not logged for this test's runs"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Caller identity (docs/spec.md §9): no token and no claim value in a log line, an error
// body or /metrics.
// ---------------------------------------------------------------------------------------

/// Claim values of the member tokens: each must reach the upstream and nothing else.
const MEMBER_MARKERS: [&str; 7] = [
    "sub-mark3r-Q1",
    "email-mark3r-Q2@example.com",
    "given-mark3r-Q3",
    "family-mark3r-Q4",
    "username-mark3r-Q5",
    "profile-mark3r-Q6",
    "tenant-mark3r-Q7",
];

#[actix_web::test]
async fn no_log_line_error_body_or_metric_contains_a_caller_token_or_claim() {
    use common::idp::{jwk, now, raw, sign, with_claims_swapped, Idp};
    use common::keys::{ED25519, P256, P384, RSA};
    use jsonwebtoken::Algorithm;

    captured_logs();
    let [sub, email, given, family, username, profile, tenant] = MEMBER_MARKERS;
    let (iss, aud) = ("https://members.example.com/", "widgets");
    let claims = |changes: Value| {
        let mut c = json!({
            "iss": iss, "aud": aud, "sub": sub, "exp": now() + 300, "iat": now(),
            "email": email, "given_name": given, "family_name": family,
            "preferred_username": username, "profile_fields": {"7": profile},
            "community": tenant
        });
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let idp = Idp::start(&json!({"keys": [
        jwk(RSA.1, "rsa-1", Some("RS256")),
        jwk(P256.1, "ec-1", Some("ES256")),
        jwk(ED25519.1, "ed-1", Some("EdDSA")),
    ]}))
    .await;
    let (up, _) = leaky_upstream().await;
    let base = &up.base;
    let every_claim = [
        json!({"key": "X-Member", "value": "{{ user.id }} {{ user.email }} {{ tenant_id }}"}),
        json!({"key": "X-Names", "value": "{{ user.first_name }} {{ user.last_name }} {{ user.username }}"}),
        json!({"key": "X-Field", "value": "{{ user.profile_fields.by_id(7) }}"}),
    ];
    let registry = json!({
        "connectors": [
            {"name": "ok", "permalink": "member-ok", "url": format!("{base}/first"),
             "headers": every_claim, "query_parameters": [{"key": "m", "value": "{{ user.id }}"}],
             "response_body": "{{ user.first_name }} {{ tenant_id }}"},
            {"name": "500", "permalink": "member-500", "url": format!("{base}/fail-500"),
             "headers": every_claim, "query_parameters": [{"key": "m", "value": "{{ user.email }}"}]},
            {"name": "from-json", "permalink": "member-from-json", "url": format!("{base}/first"),
             "headers": [{"key": "X-Bad", "value": "{{ (user.id ~ user.email) | from_json }}"}]},
            {"name": "undefined", "permalink": "member-undefined", "url": format!("{base}/first"),
             "headers": [{"key": "X-Bad", "value": "{{ user.username }}{{ user.profile_fields.by_id(99).deep }}"}]},
            {"name": "response", "permalink": "member-response", "url": format!("{base}/text"),
             "response_body": "{{ (user.first_name ~ response.body) | from_json }}"}
        ],
        "composite_connectors": [{
            "name": "c", "permalink": "c-member",
            "steps": [
                {"name": "first", "url": format!("{base}/first"), "headers": every_claim},
                {"name": "second", "url": format!("{base}/fail-500"),
                 "headers": [{"key": "X-Earlier", "value": "{{ user.last_name }}{{ steps.first.status_code }}"}]}
            ]
        }]
    });
    let url = idp.jwks_url();
    let app = spawn_app_with(
        registry,
        AppOptions::default().flags(move |f| {
            f.identity.identity_issuer = Some(iss.into());
            f.identity.identity_jwks_url = Some(url);
            f.identity.identity_audience = Some(aud.into());
            f.identity.identity_tenant_claim = Some("community".into());
        }),
    )
    .await;

    let valid = sign(Algorithm::ES256, P256.0, "ec-1", &claims(json!({})));
    let invalid = vec![
        sign(
            Algorithm::EdDSA,
            ED25519.0,
            "ed-1",
            &claims(json!({"exp": now() - 3600})),
        ),
        sign(
            Algorithm::RS256,
            RSA.0,
            "rsa-1",
            &claims(json!({"nbf": now() + 3600})),
        ),
        sign(
            Algorithm::RS256,
            RSA.0,
            "rsa-1",
            &claims(json!({"aud": sub})),
        ),
        sign(
            Algorithm::RS256,
            RSA.0,
            "rsa-1",
            &claims(json!({"iss": email})),
        ),
        sign(Algorithm::ES384, P384.0, "ec-404", &claims(json!({}))),
        with_claims_swapped(&valid, &claims(json!({"sub": format!("{sub}-forged")}))),
        raw(
            &json!({"alg": "none", "kid": "ed-1"}),
            &claims(json!({})),
            "",
        ),
        sign(Algorithm::HS256, RSA.1, "rsa-1", &claims(json!({}))),
        sign(
            Algorithm::EdDSA,
            ED25519.0,
            "ed-1",
            &claims(json!({"profile_fields": profile})),
        ),
        sign(
            Algorithm::EdDSA,
            ED25519.0,
            "ed-1",
            &claims(json!({"community": {"id": tenant}})),
        ),
        sign(
            Algorithm::EdDSA,
            ED25519.0,
            "ed-1",
            &claims(json!({"padding": "x".repeat(9000)})),
        ),
    ];
    let routes = [
        ("GET", "/connectors/member-ok/execute"),
        ("GET", "/connectors/member-500/execute"),
        ("GET", "/connectors/member-from-json/execute"),
        ("GET", "/connectors/member-undefined/execute"),
        ("GET", "/connectors/member-response/execute"),
        ("POST", "/connectors/composite/c-member/execute"),
    ];
    let mut tokens: Vec<Option<&str>> = vec![Some(&valid), None];
    tokens.extend(invalid.iter().map(|t| Some(t.as_str())));
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        for (j, (method, path)) in routes.iter().enumerate() {
            let id = format!("idt-{i:02}-{j}");
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("X-Request-ID", id.as_str())];
            if let Some(auth) = &auth {
                headers.push(("Authorization", auth));
            }
            let reply = app.call(method, path, Some(""), &headers).await;
            statuses.push((token.is_some() && i == 0, reply.status));
            if reply.status >= 400 {
                let text = reply.text();
                for marker in MEMBER_MARKERS {
                    assert!(!text.contains(marker), "{id} {path}: '{marker}' in {text}");
                }
                if let Some(token) = token {
                    for part in token.split('.').filter(|p| p.len() >= 16) {
                        assert!(!text.contains(part), "{id} {path}: the token in {text}");
                    }
                }
            }
            for (name, value) in reply.headers.iter() {
                let value = String::from_utf8_lossy(value.as_bytes());
                for marker in MEMBER_MARKERS {
                    assert!(
                        !value.contains(marker),
                        "{id}: '{marker}' in {name}: {value}"
                    );
                }
            }
            ids.push(id);
        }
    }
    // The runs did what they were meant to: the valid token's `member-ok` succeeded, every
    // other failed, and the claims really went upstream (so their absence means something).
    assert_eq!(statuses[0], (true, 200));
    assert!(statuses[1..].iter().all(|(_, s)| *s >= 400), "{statuses:?}");
    let sent = up.log.all();
    assert!(sent
        .iter()
        .any(|r| r.header("x-names").is_some_and(|v| v.contains(given))));
    assert!(sent.iter().any(|r| r.header("x-field") == Some(profile)));
    assert!(sent.iter().any(|r| r.query.contains("email-mark3r")));

    // Every run's lines are in both logs before they are searched (the ids cannot be
    // substrings of one another; span fields are not quoted in the text format).
    for id in &ids {
        wait_for_line(&[id]).await;
    }
    wait_for_line(&["caller token refused", "idt-02-0", "expired"]).await;
    wait_for_line(&["identity keys fetched", "unknown_kid"]).await;
    let metrics = app.get("/metrics").await.text();
    let mut all_tokens: Vec<&str> = vec![&valid];
    all_tokens.extend(invalid.iter().map(String::as_str));
    for (what, text) in [
        ("json log", json_log()),
        ("text log", text_log()),
        ("/metrics", metrics),
    ] {
        for (i, line) in text.lines().enumerate() {
            for marker in MEMBER_MARKERS {
                assert!(
                    !line.contains(marker),
                    "{what} line {i} has '{marker}': {line}"
                );
            }
            for token in &all_tokens {
                for part in token.split('.').filter(|p| p.len() >= 16) {
                    assert!(!line.contains(part), "{what} line {i} has a token: {line}");
                }
            }
        }
    }
}

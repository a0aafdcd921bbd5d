//! Every error row of docs/spec.md §6 / README "HTTP API" with its exact status, code and scope, for
//! a simple connector (no prefix) and inside a composite (`Composite step '<name>' (index
//! <N>): ...`), plus the request errors (400/404/405/413) and `X-Request-ID` handling.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{
    assert_envelope, is_generated_request_id, json_route, path_params_header, refused_base,
    slow_route, spawn_app, spawn_app_with, typed_route, upstream, AppOptions, TestApp, Upstream,
};
use actix_web::web;
use serde_json::{json, Value};

/// Step timeout used by the timeout tests.
const STEP_TIMEOUT_MS: u64 = 300;

/// The upstream every failure case calls.
async fn failing_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route(
            "/ok",
            web::route().to(json_route(200, json!({"earlier": "earlier-step-data"}))),
        )
        .route(
            "/not-found",
            web::get().to(json_route(404, json!({"why": "upstream-404-body"}))),
        )
        .route(
            "/boom",
            web::get().to(json_route(500, json!({"why": "upstream-500-body"}))),
        )
        .route(
            "/slow",
            // Far past the step timeout, so the bounds below can be wide.
            web::get().to(slow_route(
                Duration::from_millis(5_000),
                200,
                json!({"late": true}),
            )),
        )
        .route(
            "/text",
            web::get().to(typed_route(200, "text/plain", "plain text, not JSON")),
        );
    })
    .await
}

/// A failing call, as a simple connector and as step `second` (index 1) of a composite
/// whose first step succeeds. `composite_overrides` replaces fields for the composite step
/// (templates that differ, such as `request.body_text` for `body_text`).
fn case(name: &str, def: Value, composite_overrides: Value) -> (Value, Value) {
    let mut simple = def.clone();
    simple["name"] = json!(name);
    simple["permalink"] = json!(name);
    let mut step = def;
    step["name"] = json!("second");
    if let Value::Object(extra) = composite_overrides {
        for (k, v) in extra {
            step[k] = v;
        }
    }
    (simple, step)
}

/// The registry: simple connector `<name>` and composite `c-<name>` per case.
fn registry(base: &str) -> Value {
    let refused = refused_base();
    let cases = vec![
        case(
            "http-404",
            json!({"url": format!("{base}/not-found")}),
            json!({}),
        ),
        case(
            "http-500",
            json!({"url": format!("{base}/boom")}),
            json!({}),
        ),
        case("refused", json!({"url": format!("{refused}/x")}), json!({})),
        case("slow", json!({"url": format!("{base}/slow")}), json!({})),
        case(
            "bad-json",
            json!({"url": format!("{base}/ok"), "method": "POST",
                   "request_body": "{{ body_text | from_json }}"}),
            json!({"request_body": "{{ request.body_text | from_json }}"}),
        ),
        case(
            "undefined-attr",
            json!({"url": format!("{base}/ok"), "method": "POST",
                   "request_body": "{{ (body_text | from_json).missing }}"}),
            json!({"request_body": "{{ (request.body_text | from_json).missing }}"}),
        ),
        case(
            "bad-response",
            json!({"url": format!("{base}/text"), "response_body": "{{ response.body | from_json }}"}),
            json!({}),
        ),
        case(
            "jwt-bad-key",
            json!({"url": format!("{base}/ok"), "authentication": {"type": "jwt", "config": {
                "private_key": "this is not a PEM key", "algorithm": "RS256",
                "claims": {"sub": "svc"}}}}),
            json!({}),
        ),
    ];
    let mut connectors = Vec::new();
    let mut composites = Vec::new();
    for (simple, step) in cases {
        let name = simple["name"].as_str().unwrap().to_string();
        composites.push(json!({
            "name": format!("c-{name}"), "permalink": format!("c-{name}"),
            "steps": [{"name": "first", "url": format!("{base}/ok")}, step]
        }));
        connectors.push(simple);
    }
    json!({"connectors": connectors, "composite_connectors": composites})
}

async fn app_for(up: &Upstream) -> TestApp {
    spawn_app_with(
        registry(&up.base),
        AppOptions::default().flags(|f| f.step_timeout_ms = STEP_TIMEOUT_MS),
    )
    .await
}

/// Runs simple connector `name` (with `body` for POST ones).
async fn run_simple(app: &TestApp, name: &str, body: Option<&str>) -> common::Reply {
    let method = if body.is_some() { "POST" } else { "GET" };
    app.call(method, &format!("/connectors/{name}/execute"), body, &[])
        .await
}

/// Checks `name` fails with `status`/`code`/`scope` as a simple connector, and as step
/// `second` (index 1) of composite `c-<name>` with the prefixed scope; the earlier step's
/// data and the upstream's body never appear.
async fn assert_row(
    app: &TestApp,
    name: &str,
    body: Option<&str>,
    status: u16,
    code: &str,
    scope: &str,
) {
    let simple = run_simple(app, name, body).await;
    assert_envelope(&simple, status, code, Some(scope));
    let composite = app
        .composite(&format!("c-{name}"), "", body.unwrap_or(""))
        .await;
    assert_envelope(
        &composite,
        status,
        code,
        Some(&format!("Composite step 'second' (index 1): {scope}")),
    );
    for reply in [&simple, &composite] {
        let text = reply.text();
        for leak in [
            "earlier-step-data",
            "upstream-404-body",
            "upstream-500-body",
        ] {
            assert!(!text.contains(leak), "'{leak}' leaked into {text}");
        }
    }
}

#[actix_web::test]
async fn an_upstream_4xx_is_a_502_downstream_http_error() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    assert_row(
        &app,
        "http-404",
        None,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        "Downstream (HTTP error)",
    )
    .await;
    let detail = run_simple(&app, "http-404", None).await.errors()["detail"].clone();
    assert_eq!(detail, "the upstream answered HTTP 404");
}

#[actix_web::test]
async fn an_upstream_5xx_is_a_502_downstream_http_error() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    assert_row(
        &app,
        "http-500",
        None,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        "Downstream (HTTP error)",
    )
    .await;
}

#[actix_web::test]
async fn a_refused_connection_is_a_502_network_error() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    assert_row(
        &app,
        "refused",
        None,
        502,
        "DOWNSTREAM_NETWORK_ERROR",
        "Downstream (network/external service)",
    )
    .await;
}

#[actix_web::test]
async fn a_stopped_upstream_is_a_502_network_error() {
    let up = failing_upstream().await;
    let registry = json!({"connectors": [
        {"name": "Stopped", "permalink": "stopped", "url": format!("{}/ok", up.base)}
    ]});
    let app = spawn_app(registry).await;
    assert_eq!(
        app.call("GET", "/connectors/stopped/execute", None, &[])
            .await
            .status,
        200
    );
    up.stop().await;
    let reply = app
        .call("GET", "/connectors/stopped/execute", None, &[])
        .await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_NETWORK_ERROR",
        Some("Downstream (network/external service)"),
    );
}

#[actix_web::test]
async fn a_slow_upstream_is_a_504_within_the_step_timeout_and_a_margin() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    // Not before the step timeout, and well before the upstream would answer (5 s): 2.7 s of
    // slack for a loaded machine.
    let window =
        Duration::from_millis(STEP_TIMEOUT_MS)..Duration::from_millis(STEP_TIMEOUT_MS + 2_700);

    let started = Instant::now();
    let simple = run_simple(&app, "slow", None).await;
    let elapsed = started.elapsed();
    assert_envelope(
        &simple,
        504,
        "DOWNSTREAM_TIMEOUT",
        Some("Downstream (network/external service)"),
    );
    assert!(window.contains(&elapsed), "took {elapsed:?}");
    let timing: Value =
        serde_json::from_str(&simple.header("x-connector-timing").unwrap()).unwrap();
    assert_eq!(timing["timeout"], true, "{timing}");
    assert_eq!(timing["error"], "DOWNSTREAM_TIMEOUT", "{timing}");
    // The wait was upstream: it counts as external time, not as the runtime's own.
    let external = timing["external_ms"].as_f64().unwrap();
    assert!(external >= STEP_TIMEOUT_MS as f64 * 0.9, "{timing}");
    assert_eq!(
        timing["breakdown"]["http_request_ms"],
        timing["external_ms"]
    );
    assert!(
        timing["internal_ms"].as_f64().unwrap() < external,
        "{timing}"
    );
    let server_timing = simple.header("server-timing").unwrap();
    let entry = common::parse_server_timing(&server_timing)
        .into_iter()
        .find(|e| e.name == "external")
        .unwrap();
    assert!(
        entry.dur.parse::<f64>().unwrap() >= STEP_TIMEOUT_MS as f64 * 0.9,
        "{server_timing}"
    );

    let started = Instant::now();
    let composite = app.composite("c-slow", "", "").await;
    let elapsed = started.elapsed();
    assert_envelope(
        &composite,
        504,
        "DOWNSTREAM_TIMEOUT",
        Some("Composite step 'second' (index 1): Downstream (network/external service)"),
    );
    assert!(window.contains(&elapsed), "took {elapsed:?}");
    let timing: Value =
        serde_json::from_str(&composite.header("x-connector-timing").unwrap()).unwrap();
    let steps = timing["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{timing}");
    assert_eq!(steps[1]["status_code"], Value::Null);
}

#[actix_web::test]
async fn from_json_on_text_that_is_not_json_is_a_422_template_error() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    assert_row(
        &app,
        "bad-json",
        Some("this is not json"),
        422,
        "TEMPLATE_RENDERING_ERROR",
        "Configuration (template rendering)",
    )
    .await;
    // Nothing was sent for the failing step (the composite's first step did call /ok).
    assert_eq!(up.log.count("/ok"), 1);
}

#[actix_web::test]
async fn an_undefined_attribute_at_run_time_is_a_422_template_error() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    assert_row(
        &app,
        "undefined-attr",
        Some(r#"{"present": 1}"#),
        422,
        "TEMPLATE_RENDERING_ERROR",
        "Configuration (template rendering)",
    )
    .await;
    let detail = run_simple(&app, "undefined-attr", Some(r#"{"present": 1}"#))
        .await
        .errors()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.starts_with("request_body: "), "{detail}");
}

#[actix_web::test]
async fn a_failing_response_body_is_a_response_template_error_for_simple_connectors() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    let simple = run_simple(&app, "bad-response", None).await;
    assert_envelope(
        &simple,
        422,
        "RESPONSE_TEMPLATE_RENDERING_ERROR",
        Some("Configuration (response template rendering)"),
    );
    assert!(!simple.text().contains("plain text, not JSON"));
    // In a composite, a step's response_body failure is a template rendering failure.
    let composite = app.composite("c-bad-response", "", "").await;
    assert_envelope(
        &composite,
        422,
        "TEMPLATE_RENDERING_ERROR",
        Some("Composite step 'second' (index 1): Configuration (template rendering)"),
    );
    assert!(!composite.text().contains("plain text, not JSON"));
}

#[actix_web::test]
async fn a_private_key_that_is_not_a_pem_is_a_422_jwt_signing_error() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    assert_row(
        &app,
        "jwt-bad-key",
        None,
        422,
        "JWT_SIGNING_ERROR",
        "Authentication (JWT signing)",
    )
    .await;
    let text = run_simple(&app, "jwt-bad-key", None).await.text();
    assert!(!text.contains("this is not a PEM key"), "{text}");
    // Only the composite's first step reached the upstream.
    assert_eq!(up.log.count("/ok"), 1);
}

fn path_param_registry(base: &str) -> Value {
    json!({"connectors": [{
        "name": "Two params", "permalink": "two-params",
        "url": format!("{base}/ok/{{{{ pathParams.a }}}}/{{{{ pathParams.b }}}}"),
        "path_parameters": [{"key": "a"}, {"key": "b"}]
    }]})
}

#[actix_web::test]
async fn missing_path_params_are_a_400_listing_the_keys() {
    let up = failing_upstream().await;
    let app = spawn_app(path_param_registry(&up.base)).await;
    let call = |header: Option<String>| {
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> = match &header {
                Some(h) => vec![("X-Path-Params", h.as_str())],
                None => vec![],
            };
            app.call("GET", "/connectors/two-params/execute", None, &headers)
                .await
        }
    };
    let none = call(None).await;
    let errors = assert_envelope(&none, 400, "MISSING_PATH_PARAMETERS", None);
    assert_eq!(errors["params"], json!(["a", "b"]));
    let one = call(Some("a=x".into())).await;
    let errors = assert_envelope(&one, 400, "MISSING_PATH_PARAMETERS", None);
    assert_eq!(errors["params"], json!(["b"]));
    // An empty value counts as missing.
    let empty = call(Some("a=x&b=".into())).await;
    let errors = assert_envelope(&empty, 400, "MISSING_PATH_PARAMETERS", None);
    assert_eq!(errors["params"], json!(["b"]));
    assert_eq!(up.log.all().len(), 0);
}

#[actix_web::test]
async fn invalid_path_params_are_a_400_and_missing_wins_over_invalid() {
    let up = failing_upstream().await;
    let app = spawn_app(path_param_registry(&up.base)).await;
    let invalid = app
        .call(
            "GET",
            "/connectors/two-params/execute",
            None,
            &[("X-Path-Params", "a=..&b=ok")],
        )
        .await;
    let errors = assert_envelope(&invalid, 400, "INVALID_PATH_PARAMETERS", None);
    assert_eq!(errors["params"], json!(["a"]));
    let both = app
        .call(
            "GET",
            "/connectors/two-params/execute",
            None,
            &[("X-Path-Params", &path_params_header("a", "a/b"))],
        )
        .await;
    let errors = assert_envelope(&both, 400, "MISSING_PATH_PARAMETERS", None);
    assert_eq!(errors["params"], json!(["b"]));
    let two_bad = app
        .call(
            "GET",
            "/connectors/two-params/execute",
            None,
            &[("X-Path-Params", "a=..&b=a%20b")],
        )
        .await;
    let errors = assert_envelope(&two_bad, 400, "INVALID_PATH_PARAMETERS", None);
    assert_eq!(errors["params"], json!(["a", "b"]));
    assert_eq!(up.log.all().len(), 0);
}

#[actix_web::test]
async fn an_unknown_permalink_is_a_404_on_both_routes() {
    let app = spawn_app(json!({"connectors": []})).await;
    let simple = app
        .call("GET", "/connectors/no-such-thing/execute", None, &[])
        .await;
    assert_envelope(&simple, 404, "CONNECTOR_NOT_FOUND", None);
    let composite = app.composite("no-such-thing", "", "").await;
    assert_envelope(&composite, 404, "CONNECTOR_NOT_FOUND", None);
}

#[actix_web::test]
async fn calling_with_the_wrong_method_is_a_405() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    let simple = app
        .call("POST", "/connectors/http-404/execute", Some("{}"), &[])
        .await;
    let errors = assert_envelope(&simple, 405, "METHOD_NOT_ALLOWED", None);
    assert_eq!(errors["params"], json!(["GET"]));
    let simple_post = app
        .call("GET", "/connectors/bad-json/execute", None, &[])
        .await;
    let errors = assert_envelope(&simple_post, 405, "METHOD_NOT_ALLOWED", None);
    assert_eq!(errors["params"], json!(["POST"]));
    let composite = app
        .call("GET", "/connectors/composite/c-http-404/execute", None, &[])
        .await;
    let errors = assert_envelope(&composite, 405, "METHOD_NOT_ALLOWED", None);
    assert_eq!(errors["params"], json!(["POST"]));
    assert_eq!(up.log.all().len(), 0);
}

#[actix_web::test]
async fn a_simple_composite_route_mix_up_is_a_400_kind_mismatch() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    let composite_on_simple_route = app
        .call("POST", "/connectors/c-http-404/execute", Some(""), &[])
        .await;
    assert_envelope(
        &composite_on_simple_route,
        400,
        "CONNECTOR_KIND_MISMATCH",
        None,
    );
    let simple_on_composite_route = app.composite("http-404", "", "").await;
    assert_envelope(
        &simple_on_composite_route,
        400,
        "CONNECTOR_KIND_MISMATCH",
        None,
    );
    assert_eq!(up.log.all().len(), 0);
}

#[actix_web::test]
async fn a_body_over_max_request_bytes_is_a_413() {
    let up = failing_upstream().await;
    let app = spawn_app_with(
        registry(&up.base),
        AppOptions::default().flags(|f| f.max_request_bytes = 64),
    )
    .await;
    let fits = format!("\"{}\"", "a".repeat(62));
    let too_big = format!("\"{}\"", "a".repeat(63));
    let ok = app.composite("c-bad-json", "", &fits).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let simple = app
        .call("POST", "/connectors/bad-json/execute", Some(&too_big), &[])
        .await;
    assert_envelope(&simple, 413, "PAYLOAD_TOO_LARGE", None);
    let composite = app.composite("c-bad-json", "", &too_big).await;
    assert_envelope(&composite, 413, "PAYLOAD_TOO_LARGE", None);
    // Only the run that fitted reached the upstream (two steps, both /ok).
    assert_eq!(up.log.count("/ok"), 2);
}

#[actix_web::test]
async fn a_chunked_body_over_max_request_bytes_is_a_413() {
    let up = failing_upstream().await;
    let app = spawn_app_with(
        registry(&up.base),
        AppOptions::default().flags(|f| f.max_request_bytes = 64),
    )
    .await;
    let chunks = vec![bytes::Bytes::from(vec![b'a'; 40]); 3];
    let reply = app
        .call_chunked(
            "POST",
            "/connectors/composite/c-bad-json/execute",
            chunks,
            &[],
        )
        .await;
    assert_envelope(&reply, 413, "PAYLOAD_TOO_LARGE", None);
    let fits = vec![
        bytes::Bytes::from_static(b"\"ab"),
        bytes::Bytes::from_static(b"cd\""),
    ];
    let reply = app
        .call_chunked(
            "POST",
            "/connectors/composite/c-bad-json/execute",
            fits,
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.log.count("/ok"), 2);
}

#[actix_web::test]
async fn an_unknown_route_is_a_404_envelope() {
    let app = spawn_app(json!({"connectors": []})).await;
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/connectors/x"),
        ("GET", "/connectors/composite/x/run"),
    ] {
        let reply = app.call(method, path, None, &[]).await;
        assert_envelope(&reply, 404, "ROUTE_NOT_FOUND", None);
    }
}

#[actix_web::test]
async fn a_valid_caller_request_id_is_kept_on_every_kind_of_answer() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    let id = "caller-id_1.2:3";
    for (method, path) in [
        ("GET", "/connectors/http-404/execute"),
        ("GET", "/connectors/missing/execute"),
        ("GET", "/nope"),
    ] {
        let reply = app.call(method, path, None, &[("X-Request-ID", id)]).await;
        assert_eq!(reply.header("x-request-id").as_deref(), Some(id), "{path}");
        assert_eq!(reply.json()["request_id"], id, "{path}");
    }
    let ok = app
        .call(
            "POST",
            "/connectors/composite/c-bad-json/execute",
            Some("{}"),
            &[("X-Request-ID", id)],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-request-id").as_deref(), Some(id));
    let long = "a".repeat(128);
    let reply = app
        .call(
            "GET",
            "/connectors/http-404/execute",
            None,
            &[("X-Request-ID", &long)],
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some(long));
}

#[actix_web::test]
async fn a_request_id_is_generated_when_the_caller_sends_none() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    let first = run_simple(&app, "http-404", None).await;
    let second = run_simple(&app, "http-404", None).await;
    let a = first.header("x-request-id").unwrap();
    let b = second.header("x-request-id").unwrap();
    assert!(is_generated_request_id(&a), "{a}");
    assert!(is_generated_request_id(&b), "{b}");
    assert_ne!(a, b);
    assert_eq!(first.json()["request_id"], a);
    let ok = app.composite("c-bad-json", "", "{}").await;
    assert!(is_generated_request_id(&ok.header("x-request-id").unwrap()));
    let timing: Value = serde_json::from_str(&ok.header("x-connector-timing").unwrap()).unwrap();
    assert_eq!(timing["request_id"], ok.header("x-request-id").unwrap());
}

#[actix_web::test]
async fn an_invalid_caller_request_id_is_replaced() {
    let up = failing_upstream().await;
    let app = app_for(&up).await;
    let too_long = "a".repeat(129);
    for bad in ["has space", "slash/inside", "semi;colon", too_long.as_str()] {
        let reply = app
            .call(
                "GET",
                "/connectors/http-404/execute",
                None,
                &[("X-Request-ID", bad)],
            )
            .await;
        let id = reply.header("x-request-id").unwrap();
        assert!(is_generated_request_id(&id), "'{bad}' became '{id}'");
        assert_eq!(reply.json()["request_id"], id);
        let route = app
            .call("GET", "/nope", None, &[("X-Request-ID", bad)])
            .await;
        assert!(is_generated_request_id(
            &route.header("x-request-id").unwrap()
        ));
    }
}

// ---------------------------------------------------------------------------------------
// No registry loaded.
// ---------------------------------------------------------------------------------------

/// A registry that does not load (a connector without a URL).
fn invalid_registry() -> Value {
    json!({"connectors": [{"name": "broken", "permalink": "broken"}]})
}

#[actix_web::test]
async fn an_invalid_registry_at_start_stops_the_server_from_starting() {
    // So the real server is never up without a registry (src/server.rs: `load_now(Startup)?`
    // before the listener is bound): REGISTRY_NOT_LOADED and /readyz 503 cannot be reached
    // through it. The next test reaches them with the server's own routes instead.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, invalid_registry().to_string()).unwrap();
    let mut args = connector_runtime::config::ServeArgs::for_registry(&path);
    args.listen = "127.0.0.1:0".parse().unwrap();
    match connector_runtime::server::Application::build(args).await {
        Ok(_) => panic!("the server started on an invalid registry"),
        Err(e) => assert!(
            matches!(e, connector_runtime::server::StartError::Registry { .. }),
            "{e}"
        ),
    }
}

#[actix_web::test]
async fn before_a_registry_is_loaded_readyz_is_503_and_runs_are_registry_not_loaded() {
    use actix_web::{App, HttpServer};
    use connector_runtime::http::{self, AppState, OperatorAccess};
    use connector_runtime::registry::{RegistryActor, RegistryHandle, Sync, SyncReason};
    use connector_runtime::server::{build_options, StepActors};

    // The server's routes and state (as src/server.rs mounts them) over a registry actor
    // that has not loaded yet: the file is invalid, as if it were at start.
    let up = upstream(|cfg| {
        cfg.route("/ok", web::get().to(json_route(200, json!({"ok": true}))));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, invalid_registry().to_string()).unwrap();
    let mut args = connector_runtime::config::ServeArgs::for_registry(&path);
    args.allow_private_upstreams = true;
    let options = build_options(&args).unwrap();
    let metrics = connector_runtime::metrics::Metrics::new();
    let step_actors = StepActors::from_args(&args, metrics.clone(), None).unwrap();
    let registry = RegistryHandle::new();
    let actor = actix::Actor::start(RegistryActor::new(
        args.registry_source(),
        options,
        registry.clone(),
        metrics.clone(),
    ));
    let operator = OperatorAccess {
        registry_actor: actor.clone(),
        admin_token: None,
        webhook_secret: None,
        branch: None,
    };
    let slots = http::overload::RunSlots::new(args.max_in_flight);
    let state_registry = registry.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (step_actor, steps) = step_actors.start_with_runner();
        App::new()
            .app_data(web::Data::new(AppState {
                registry: state_registry.clone(),
                step_actor,
                steps,
                request_body: http::body::BodyLimits {
                    max_bytes: 1024 * 1024,
                    timeout: std::time::Duration::from_secs(10),
                },
                metrics: metrics.clone(),
                operator: operator.clone(),
                console: false,
                allow_origins: Vec::new().into(),
                run_slots: slots.clone(),
                identity: std::sync::Arc::new(connector_runtime::run::IdentityGate::new(
                    None,
                    &args.identity,
                )),
                tracing: None,
                debug_requests: false,
            }))
            .configure(http::configure)
            .default_service(web::to(http::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { common::get_url(&url).await }
    };

    // The invalid file is read and rejected: still nothing loaded.
    let rejected = actor.send(Sync(SyncReason::Signal)).await.unwrap();
    assert!(rejected.is_err(), "{rejected:?}");
    assert!(registry.current().is_none());
    let ready = get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json(), json!({"status": "no registry loaded"}));
    assert_eq!(get("/healthz").await.status, 200);
    // Alive while not ready: Kubernetes' liveness probe (deploy/kubernetes) must not restart
    // a replica that is still waiting for its registry.
    let live = get("/livez").await;
    assert_eq!(live.status, 200, "{}", live.text());
    assert_eq!(live.json(), json!({"status": "ok"}));
    let reply = get("/connectors/anything/execute").await;
    assert_envelope(&reply, 503, "REGISTRY_NOT_LOADED", None);
    let composite = common::post_url(
        &format!("{base}/connectors/composite/anything/execute"),
        "{}",
    )
    .await;
    assert_envelope(&composite, 503, "REGISTRY_NOT_LOADED", None);

    // Once a valid registry loads, the same routes are ready and run it.
    std::fs::write(
        &path,
        json!({"connectors": [{"name": "ok", "permalink": "ok", "url": format!("{}/ok", up.base)}]})
            .to_string(),
    )
    .unwrap();
    let published = actor.send(Sync(SyncReason::Signal)).await.unwrap();
    assert!(published.is_ok(), "{published:?}");
    assert_eq!(get("/readyz").await.status, 200);
    let reply = get("/connectors/ok/execute").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    handle.stop(false).await;
}

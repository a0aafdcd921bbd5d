//! Composite connectors end to end: the seed's auth-and-fetch chain (manual token step and
//! per-step OAuth), bracket access to hyphenated steps, `response_body` transforms feeding
//! later steps, the `request.*` variables, and the composite timing headers.

use crate::common;

use crate::common::{
    assert_envelope, assert_server_timing, echo_route, echo_upstream, json_route, keys,
    ok_upstream, parse_server_timing, spawn_app, spawn_app_with, standard_upstream, upstream,
    AppOptions,
};
use actix_web::web;
use serde_json::{json, Value};

/// The seed registry (tests/fixtures/seed_registry.json) pointed at `base`.
fn seed_registry(base: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed_registry.json"
    ))
    .unwrap()
    .replace("https://auth.example.com", base)
    .replace("https://api.example.com", base);
    serde_json::from_str(&text).unwrap()
}

#[actix_web::test]
async fn the_seed_chain_with_per_step_oauth_fetches_a_token_then_the_user() {
    let up = standard_upstream().await;
    let app = spawn_app_with(
        seed_registry(&up.base),
        AppOptions::default()
            .secret("oauth_client_id", "seed-client")
            .secret("oauth_client_secret", "seed-secret"),
    )
    .await;
    let reply = app.composite("auth-and-fetch-user", "", "{}").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"id": "usr_1", "name": "Ada"}));

    // The token endpoint sees the client-credentials grant, then the auth step's own call
    // (which carries the freshly obtained token).
    let token_calls = up.log.to("/oauth/token");
    assert_eq!(token_calls.len(), 2, "{token_calls:#?}");
    let grant = &token_calls[0];
    assert_eq!(
        common::form_fields(&grant.body),
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_id".to_string(), "seed-client".to_string()),
            ("client_secret".to_string(), "seed-secret".to_string()),
        ]
    );
    assert_eq!(
        grant.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let step_call = &token_calls[1];
    assert_eq!(step_call.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(step_call.header("content-type"), Some("application/json"));
    assert_eq!(
        up.log.to("/users/me")[0].header("authorization"),
        Some("Bearer tok-123")
    );
}

#[actix_web::test]
async fn the_chain_with_a_manual_token_step_passes_the_token_through_the_step_body() {
    let up = standard_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Manual", "permalink": "manual",
        "steps": [
            {"name": "auth", "url": format!("{}/oauth/token", up.base), "method": "POST",
             "headers": [{"key": "Content-Type", "value": "application/x-www-form-urlencoded"}],
             "request_body": "grant_type=client_credentials&client_id={{ request.query_parameters.client }}"},
            {"name": "fetch-user", "url": format!("{}/users/me", up.base),
             "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body | from_json | attr('access_token') }}"}]}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.composite("manual", "?client=w-7", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["name"], "Ada");
    assert_eq!(
        up.log.to("/oauth/token")[0].body,
        "grant_type=client_credentials&client_id=w-7"
    );
}

#[actix_web::test]
async fn a_step_with_its_own_oauth_authentication_gets_a_bearer_token() {
    let up = standard_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Own auth", "permalink": "own-auth",
        "steps": [
            {"name": "fetch-user", "url": format!("{}/users/me", up.base),
             "authentication": {"type": "oauth_client_credentials", "config": {
                 "client_id": "cid", "client_secret": "{{ get_secret('cs') }}",
                 "token_url": format!("{}/oauth/token", up.base), "scope": "users.read"}}},
            {"name": "echo", "url": format!("{}/echo", up.base), "method": "POST",
             "request_body": "{{ steps['fetch-user'].body }}"}
        ]
    }]});
    let app = spawn_app_with(registry, AppOptions::default().secret("cs", "s3")).await;
    let reply = app.composite("own-auth", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["body"], r#"{"id":"usr_1","name":"Ada"}"#);
    let grant = &up.log.to("/oauth/token")[0];
    assert_eq!(
        common::form_field(&grant.body, "scope").as_deref(),
        Some("users.read")
    );
    // The echo step has no authentication: no token is added to it.
    assert_eq!(up.log.to("/echo")[0].header("authorization"), None);
}

#[actix_web::test]
async fn hyphenated_steps_are_read_with_bracket_access() {
    let up = standard_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Brackets", "permalink": "brackets",
        "steps": [
            {"name": "fetch-user", "url": format!("{}/users/me", up.base),
             "headers": [{"key": "Authorization", "value": "Bearer tok-123"}]},
            {"name": "use-it", "url": format!("{}/echo", up.base), "method": "POST",
             "request_body": "{{ steps['fetch-user'].body | from_json | attr('name') }}|{{ steps['fetch-user'].status_code }}|{{ steps['fetch-user'].headers['content-type'] }}"}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.composite("brackets", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.log.to("/echo")[0].body, "Ada|200|application/json");
}

#[actix_web::test]
async fn a_response_body_transform_is_what_later_steps_and_the_caller_see() {
    let up = standard_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Transforms", "permalink": "transforms",
        "steps": [
            {"name": "auth", "url": format!("{}/oauth/token", up.base), "method": "POST",
             "response_body": "{{ (response.body | from_json).access_token }}"},
            {"name": "fetch-user", "url": format!("{}/users/me", up.base),
             "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body }}"}],
             "response_body": "{\"user\": {{ (response.body | from_json).name | tojson }}, \"status\": {{ response.status_code }}}",
             "response_content_type": "application/vnd.user+json"}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.composite("transforms", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The later step saw the transformed body ("tok-123"), not the token JSON.
    assert_eq!(
        up.log.to("/users/me")[0].header("authorization"),
        Some("Bearer tok-123")
    );
    assert_eq!(reply.json(), json!({"user": "Ada", "status": 200}));
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.user+json")
    );
}

#[actix_web::test]
async fn request_body_query_and_content_type_reach_step_templates() {
    let up = echo_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Request vars", "permalink": "request-vars",
        "steps": [
            {"name": "echo", "url": format!("{}/echo", up.base), "method": "POST",
             "request_body": "text={{ request.body_text }}|raw={{ request.body_raw }}|page={{ request.query_parameters.page }}|missing=[{{ request.query_parameters.nope }}]|ct={{ request.headers['Content-Type'] }}"}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app
        .call(
            "POST",
            "/connectors/composite/request-vars/execute?page=3",
            Some("hello"),
            &[("Content-Type", "text/plain")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        up.log.to("/echo")[0].body,
        "text=hello|raw=b'hello'|page=3|missing=[]|ct=text/plain"
    );
}

#[actix_web::test]
async fn an_empty_request_body_is_none_in_templates() {
    let up = echo_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Empty", "permalink": "empty",
        "steps": [
            {"name": "echo", "url": format!("{}/echo", up.base), "method": "POST",
             "request_body": "{{ request.body_text }}|{{ request.body_raw }}|{{ request.body_text is none }}"}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.composite("empty", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.log.to("/echo")[0].body, "None|None|True");
}

#[actix_web::test]
async fn a_binary_request_body_is_none_as_text_but_available_as_bytes() {
    let up = echo_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Binary", "permalink": "binary",
        "steps": [
            {"name": "echo", "url": format!("{}/echo", up.base), "method": "POST",
             "request_body": "{{ request.body_text }}|{{ request.body_raw | length }}|{{ request.body_raw }}"}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app
        .call_chunked(
            "POST",
            "/connectors/composite/binary/execute",
            vec![bytes::Bytes::from_static(&[0xff, 0x00, b'a'])],
            &[("Content-Type", "application/octet-stream")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.log.to("/echo")[0].body, "None|3|b'\\xff\\x00a'");
}

#[actix_web::test]
async fn steps_run_in_order_and_each_sees_only_earlier_steps() {
    let up = upstream(|cfg| {
        cfg.route("/a", web::get().to(json_route(200, json!({"n": 1}))))
            .route("/b", web::get().to(json_route(200, json!({"n": 2}))))
            .route("/echo", web::route().to(echo_route()));
    })
    .await;
    let registry = json!({"composite_connectors": [{
        "name": "Three", "permalink": "three",
        "steps": [
            {"name": "a", "url": format!("{}/a", up.base)},
            {"name": "b", "url": format!("{}/b?from={{{{ (steps.a.body | from_json).n }}}}", up.base)},
            {"name": "c", "url": format!("{}/echo", up.base), "method": "POST",
             "request_body": "{{ (steps.a.body | from_json).n + (steps.b.body | from_json).n }}|{{ steps | length }}"}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.composite("three", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let paths: Vec<String> = up.log.all().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/a", "/b", "/echo"]);
    assert_eq!(up.log.to("/b")[0].query, "from=1");
    assert_eq!(up.log.to("/echo")[0].body, "3|2");
}

#[actix_web::test]
async fn composite_timing_headers_have_the_exact_seed_format() {
    let up = standard_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Timed", "permalink": "timed",
        "steps": [
            {"name": "auth", "url": format!("{}/oauth/token", up.base), "method": "POST"},
            {"name": "fetch-user", "url": format!("{}/users/me", up.base),
             "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body | from_json | attr('access_token') }}"}]}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app
        .call(
            "POST",
            "/connectors/composite/timed/execute",
            Some(""),
            &[("X-Request-ID", "timing-req-1")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // ^step\.auth;dur=\d+\.\d;desc="Step: auth", step\.fetch-user;dur=\d+\.\d;desc="Step: fetch-user", total;dur=\d+\.\d;desc="Total"$
    let (header, entries) = assert_server_timing(
        &reply,
        &[
            ("step.auth", "Step: auth"),
            ("step.fetch-user", "Step: fetch-user"),
            ("total", "Total"),
        ],
    );
    let rebuilt = format!(
        "step.auth;dur={};desc=\"Step: auth\", step.fetch-user;dur={};desc=\"Step: fetch-user\", total;dur={};desc=\"Total\"",
        entries[0].dur, entries[1].dur, entries[2].dur
    );
    assert_eq!(header, rebuilt);

    let timing = reply.connector_timing();
    assert_eq!(keys(&timing), vec!["request_id", "steps", "total_ms"]);
    assert_eq!(timing["request_id"], "timing-req-1");
    assert!(timing["total_ms"].is_number());
    let steps = timing["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (i, (step, name)) in steps.iter().zip(["auth", "fetch-user"]).enumerate() {
        assert_eq!(
            keys(step),
            vec![
                "duration_ms",
                "index",
                "name",
                "start_ms",
                "state",
                "status_code"
            ]
        );
        assert_eq!(step["state"], "ok");
        assert_eq!(step["name"], name);
        assert_eq!(step["index"], i);
        assert_eq!(step["status_code"], 200);
        assert!(step["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(step["duration_ms"].as_f64().unwrap() <= timing["total_ms"].as_f64().unwrap());
    }
}

#[actix_web::test]
async fn on_failure_the_timing_headers_list_only_the_steps_that_ran() {
    let up = upstream(|cfg| {
        cfg.route("/ok", web::get().to(json_route(200, json!({"ok": true}))))
            .route("/missing", web::get().to(json_route(404, json!({"no": 1}))));
    })
    .await;
    let registry = json!({"composite_connectors": [{
        "name": "Partial", "permalink": "partial",
        "steps": [
            {"name": "first", "url": format!("{}/ok", up.base)},
            {"name": "second", "url": format!("{}/missing", up.base)},
            {"name": "third", "url": format!("{}/ok", up.base)}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.composite("partial", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'second' (index 1): Downstream (HTTP error)"),
    );
    let names: Vec<String> = parse_server_timing(&reply.header("server-timing").unwrap())
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["step.first", "step.second", "total"]);
    let timing = reply.connector_timing();
    let steps = timing["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{timing}");
    assert_eq!(steps[0]["status_code"], 200);
    assert_eq!(steps[1]["name"], "second");
    assert_eq!(steps[1]["status_code"], 404);
    assert_eq!(up.log.count("/ok"), 1, "the third step must not run");
}

#[actix_web::test]
async fn a_step_that_fails_before_calling_has_a_null_status_code_in_the_timing() {
    let up = ok_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Early", "permalink": "early",
        "steps": [
            {"name": "first", "url": format!("{}/ok", up.base)},
            {"name": "second", "url": format!("{}/ok", up.base), "method": "POST",
             "request_body": "{{ request.body_text | from_json }}"}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.composite("early", "", "not json").await;
    assert_envelope(
        &reply,
        422,
        "TEMPLATE_RENDERING_ERROR",
        Some("Composite step 'second' (index 1): Configuration (template rendering)"),
    );
    let timing = reply.connector_timing();
    let steps = timing["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["status_code"], Value::Null);
    assert_eq!(up.log.count("/ok"), 1);
}

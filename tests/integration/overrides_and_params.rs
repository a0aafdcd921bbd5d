//! What the caller may change: overridable headers and query parameters take the caller's
//! value, fixed ones cannot be changed, undeclared ones never reach the upstream; and the
//! path parameter accept/reject lists of docs/spec.md §3.

use crate::common::{
    assert_envelope, echo_route, path_params_header, spawn_app, upstream, Upstream,
};
use actix_web::web;
use serde_json::json;

/// An upstream whose `ANY /echo` and `GET /items/{id}` answer with what they received.
async fn echo_and_items_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route("/echo", web::route().to(echo_route()))
            .route("/items/{id}", web::get().to(echo_route()));
    })
    .await
}

fn params_connector(base: &str) -> serde_json::Value {
    json!({
        "headers": [
            {"key": "X-Overridable", "value": "configured-h", "overridable": true},
            {"key": "X-Fixed", "value": "fixed-h"},
            {"key": "X-Fixed-Explicit", "value": "fixed-h2", "overridable": false}
        ],
        "query_parameters": [
            {"key": "page", "value": "1", "overridable": true},
            {"key": "limit", "value": "{{ 5 * 2 }}"}
        ],
        "url": format!("{base}/echo")
    })
}

fn registry(base: &str) -> serde_json::Value {
    let mut simple = params_connector(base);
    simple["name"] = json!("Params");
    simple["permalink"] = json!("params");
    let mut step = params_connector(base);
    step["name"] = json!("only");
    json!({
        "connectors": [simple],
        "composite_connectors": [{"name": "C params", "permalink": "c-params", "steps": [step]}]
    })
}

/// Headers the caller sends: an override, attempts on fixed headers, and undeclared ones.
const CALLER_HEADERS: &[(&str, &str)] = &[
    ("X-Overridable", "caller-h"),
    ("X-Fixed", "caller-fixed"),
    ("X-Fixed-Explicit", "caller-fixed2"),
    ("X-Undeclared", "caller-undeclared"),
    ("Authorization", "Bearer caller-token"),
    ("Cookie", "session=caller"),
    ("X-Request-ID", CALLER_REQUEST_ID),
];

/// The request id the caller sends: echoed on the answer, never sent upstream.
const CALLER_REQUEST_ID: &str = "caller-request-id-77";

/// Query the caller sends: an override, an attempt on a fixed one, and an undeclared one.
const CALLER_QUERY: &str = "?page=7&limit=999&extra=caller-extra";

#[actix_web::test]
async fn overridable_values_take_the_callers_and_fixed_or_undeclared_ones_do_not() {
    let up = echo_and_items_upstream().await;
    let app = spawn_app(registry(&up.base)).await;
    let simple = app
        .call(
            "GET",
            &format!("/connectors/params/execute{CALLER_QUERY}"),
            None,
            CALLER_HEADERS,
        )
        .await;
    assert_eq!(simple.status, 200, "{}", simple.text());
    // The caller's id was taken (it is the run's id) ...
    assert_eq!(
        simple.header("x-request-id").as_deref(),
        Some(CALLER_REQUEST_ID)
    );
    let mut composite_headers = CALLER_HEADERS.to_vec();
    composite_headers.push(("Content-Type", "application/json"));
    let composite = app
        .call(
            "POST",
            &format!("/connectors/composite/c-params/execute{CALLER_QUERY}"),
            Some("{}"),
            &composite_headers,
        )
        .await;
    assert_eq!(composite.status, 200, "{}", composite.text());

    let calls = up.log.to("/echo");
    assert_eq!(calls.len(), 2);
    for received in &calls {
        assert_eq!(received.header("x-overridable"), Some("caller-h"));
        assert_eq!(received.header("x-fixed"), Some("fixed-h"));
        assert_eq!(received.header("x-fixed-explicit"), Some("fixed-h2"));
        for undeclared in ["x-undeclared", "authorization", "cookie", "x-request-id"] {
            assert_eq!(
                received.header(undeclared),
                None,
                "{undeclared} reached the upstream"
            );
        }
        assert_eq!(
            received.query_pairs(),
            vec![
                ("page".to_string(), "7".to_string()),
                ("limit".to_string(), "10".to_string())
            ]
        );
        assert!(!received.query.contains("extra"));
        // ... and is in no header the upstream got, under any name.
        for (name, value) in &received.headers {
            assert!(
                !value.contains(CALLER_REQUEST_ID),
                "the caller's request id reached the upstream as {name}: {value}"
            );
        }
        assert!(!received.query.contains("999"));
        // Nothing the caller sent is duplicated next to the configured value.
        let overridable = received
            .headers
            .iter()
            .filter(|(k, _)| k == "x-overridable")
            .count();
        assert_eq!(overridable, 1);
    }
    // The composite's caller Content-Type is not forwarded either (no header declared).
    assert_eq!(calls[1].header("content-type"), None);
}

#[actix_web::test]
async fn the_configured_values_are_sent_when_the_caller_sends_none() {
    let up = echo_and_items_upstream().await;
    let app = spawn_app(registry(&up.base)).await;
    let simple = app.execute("params").await;
    assert_eq!(simple.status, 200, "{}", simple.text());
    let composite = app.composite("c-params", "", "").await;
    assert_eq!(composite.status, 200, "{}", composite.text());
    for received in up.log.to("/echo") {
        assert_eq!(received.header("x-overridable"), Some("configured-h"));
        assert_eq!(received.header("x-fixed"), Some("fixed-h"));
        assert_eq!(
            received.query_pairs(),
            vec![
                ("page".to_string(), "1".to_string()),
                ("limit".to_string(), "10".to_string())
            ]
        );
    }
}

#[actix_web::test]
async fn caller_header_names_match_overridable_ones_case_insensitively() {
    let up = echo_and_items_upstream().await;
    let app = spawn_app(registry(&up.base)).await;
    let reply = app
        .call(
            "GET",
            "/connectors/params/execute?PAGE=3",
            None,
            &[("x-OVERRIDABLE", "lower")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = &up.log.to("/echo")[0];
    assert_eq!(received.header("x-overridable"), Some("lower"));
    // Query keys are case-sensitive: `PAGE` is not `page`.
    assert_eq!(
        received.query_pairs()[0],
        ("page".to_string(), "1".to_string())
    );
}

fn item_registry(base: &str) -> serde_json::Value {
    json!({"connectors": [{
        "name": "Item", "permalink": "item",
        "url": format!("{base}/items/{{{{ pathParams.id }}}}"),
        "path_parameters": [{"key": "id"}]
    }]})
}

#[actix_web::test]
async fn path_param_values_on_the_accept_list_reach_the_upstream_path() {
    let up = echo_and_items_upstream().await;
    let app = spawn_app(item_registry(&up.base)).await;
    let long = "a".repeat(200);
    let accepted = ["abc", "A-Z_0.9~x", "a.b", "~", long.as_str()];
    for value in accepted {
        let reply = app
            .execute_with_path_params("item", &path_params_header("id", value))
            .await;
        assert_eq!(reply.status, 200, "'{value}': {}", reply.text());
        assert_eq!(reply.json()["path"], format!("/items/{value}"), "'{value}'");
    }
    assert_eq!(up.log.all().len(), accepted.len());
}

#[actix_web::test]
async fn path_param_values_on_the_reject_list_are_a_400_and_never_sent() {
    let up = echo_and_items_upstream().await;
    let app = spawn_app(item_registry(&up.base)).await;
    let too_long = "a".repeat(201);
    let rejected = [
        ".",
        "..",
        "a..b",
        "a/b",
        "a%2Fb",
        "a b",
        too_long.as_str(),
        "é",
        "a?b",
        "a#b",
        "a\\b",
    ];
    for value in rejected {
        let reply = app
            .execute_with_path_params("item", &path_params_header("id", value))
            .await;
        let errors = assert_envelope(&reply, 400, "INVALID_PATH_PARAMETERS", None);
        assert_eq!(errors["params"], json!(["id"]), "'{value}'");
    }
    // `a%2Fb` sent without extra encoding decodes to `a/b`: rejected as well.
    let reply = app.execute_with_path_params("item", "id=a%2Fb").await;
    assert_envelope(&reply, 400, "INVALID_PATH_PARAMETERS", None);
    // Empty is missing.
    let reply = app.execute_with_path_params("item", "id=").await;
    let errors = assert_envelope(&reply, 400, "MISSING_PATH_PARAMETERS", None);
    assert_eq!(errors["params"], json!(["id"]));
    // Undeclared keys are ignored, so the declared one is still missing.
    let reply = app.execute_with_path_params("item", "other=abc").await;
    assert_envelope(&reply, 400, "MISSING_PATH_PARAMETERS", None);
    assert_eq!(
        up.log.all().len(),
        0,
        "no rejected value may reach the upstream"
    );
}

#[actix_web::test]
async fn in_a_composite_only_the_steps_that_declare_a_value_overridable_take_the_callers() {
    let up = echo_and_items_upstream().await;
    let registry = json!({"composite_connectors": [{
        "name": "Mixed", "permalink": "mixed", "steps": [
            {"name": "open", "url": format!("{}/echo", up.base),
             "headers": [{"key": "X-Tenant", "value": "default-tenant", "overridable": true}],
             "query_parameters": [{"key": "q", "value": "default-q", "overridable": true}]},
            {"name": "locked", "url": format!("{}/echo", up.base),
             "headers": [{"key": "X-Tenant", "value": "locked-tenant"}],
             "query_parameters": [{"key": "q", "value": "locked-q"}]}
        ]
    }]});
    let app = spawn_app(registry).await;
    let reply = app
        .call(
            "POST",
            "/connectors/composite/mixed/execute?q=caller-q",
            Some(""),
            &[("X-Tenant", "caller-tenant")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let calls = up.log.to("/echo");
    assert_eq!(calls[0].header("x-tenant"), Some("caller-tenant"));
    assert_eq!(calls[0].query, "q=caller-q");
    assert_eq!(calls[1].header("x-tenant"), Some("locked-tenant"));
    assert_eq!(calls[1].query, "q=locked-q");
}

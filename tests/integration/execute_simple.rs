//! Simple connectors end to end: `body_text`/`body_raw` in `request_body`, `pathParams` in
//! the URL, `response_body` with `response.*`, Content-Type handling and the simple timing
//! headers.

use crate::common::{
    assert_server_timing, echo_route, echo_upstream, json_route, keys, ok_upstream,
    path_params_header, spawn_app, typed_route, upstream,
};
use actix_web::web;
use serde_json::json;

#[actix_web::test]
async fn body_text_and_body_raw_fill_the_request_body() {
    let up = echo_upstream().await;
    let registry = json!({"connectors": [{
        "name": "Post it", "permalink": "post-it", "method": "POST",
        "url": format!("{}/echo", up.base),
        "headers": [{"key": "Content-Type", "value": "application/json"}],
        "request_body": "{\"wrapped\": {{ body_text }}, \"raw\": \"{{ body_raw }}\", \"id\": {{ (body_text | from_json).id }}}"
    }]});
    let app = spawn_app(registry).await;
    let reply = app
        .call(
            "POST",
            "/connectors/post-it/execute",
            Some(r#"{"id":7}"#),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = &up.log.to("/echo")[0];
    assert_eq!(received.method, "POST");
    assert_eq!(
        received.body,
        r#"{"wrapped": {"id":7}, "raw": "b'{"id":7}'", "id": 7}"#
    );
    assert_eq!(received.header("content-type"), Some("application/json"));
}

#[actix_web::test]
async fn a_blank_request_body_forwards_the_callers_body_on_post_put_and_patch_only() {
    // docs/spec.md §15, the platform's documented rule: a simple POST/PUT/PATCH connector
    // without request_body sends the caller's body (and its Content-Type) unchanged.
    let up = echo_upstream().await;
    let connector = |method: &str, extra: serde_json::Value| {
        let mut c = json!({
            "name": format!("Forward {method}"), "permalink": format!("forward-{}", method.to_lowercase()),
            "method": method, "url": format!("{}/echo", up.base)
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let registry = json!({
        "connectors": [
            connector("POST", json!({})),
            connector("PUT", json!({})),
            connector("PATCH", json!({"headers": [{"key": "Content-Type", "value": "application/merge-patch+json"}]})),
            connector("DELETE", json!({})),
        ],
        "composite_connectors": [{"name": "Flow", "permalink": "flow", "steps": [
            {"name": "a", "method": "POST", "url": format!("{}/echo", up.base)}
        ]}]
    });
    let app = spawn_app(registry).await;
    for method in ["POST", "PUT", "PATCH"] {
        let path = format!("/connectors/forward-{}/execute", method.to_lowercase());
        let reply = app
            .call(
                method,
                &path,
                Some(r#"{"note":"as sent"}"#),
                &[("Content-Type", "application/json")],
            )
            .await;
        assert_eq!(reply.status, 200, "{method}: {}", reply.text());
        let received = up.log.all().last().cloned().unwrap();
        assert_eq!(received.method, method);
        assert_eq!(received.body, r#"{"note":"as sent"}"#, "{method}");
        let expected = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        assert_eq!(
            received.header("content-type"),
            Some(expected),
            "{method}: the registry's Content-Type wins"
        );
    }
    // Other methods, and composite steps, send no body.
    let reply = app
        .call(
            "DELETE",
            "/connectors/forward-delete/execute",
            Some("caller data"),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.log.all().last().unwrap().body, "");
    let reply = app.composite("flow", "", "caller data").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.log.all().last().unwrap().body, "");
}

#[actix_web::test]
async fn path_params_fill_the_url_and_defaults_apply_when_not_sent() {
    let up = upstream(|cfg| {
        cfg.route("/orgs/{org}/items/{id}", web::get().to(echo_route()));
    })
    .await;
    let registry = json!({"connectors": [{
        "name": "Item", "permalink": "item",
        "url": format!("{}/orgs/{{{{ pathParams.org }}}}/items/{{{{ pathParams.id }}}}", up.base),
        "path_parameters": [{"key": "org", "value": "acme"}, {"key": "id"}]
    }]});
    let app = spawn_app(registry).await;
    let reply = app
        .execute_with_path_params("item", &path_params_header("id", "it-42"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/orgs/acme/items/it-42");
    let reply = app.execute_with_path_params("item", "id=9&org=other").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/orgs/other/items/9");
}

#[actix_web::test]
async fn response_body_sees_the_upstream_response() {
    let up = upstream(|cfg| {
        cfg.route(
            "/user",
            web::get().to(json_route(201, json!({"id": "u1", "name": "Ada"}))),
        );
    })
    .await;
    let registry = json!({"connectors": [{
        "name": "Shaped", "permalink": "shaped",
        "url": format!("{}/user", up.base),
        "response_body": "{\"name\": {{ (response.body | from_json).name | tojson }}, \"status\": {{ response.status_code }}, \"ct\": {{ response.headers['content-type'] | tojson }}}"
    }]});
    let app = spawn_app(registry).await;
    let reply = app.execute("shaped").await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"name": "Ada", "status": 201, "ct": "application/json"})
    );
    // No response_content_type: the upstream's Content-Type is passed through.
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[actix_web::test]
async fn response_content_type_overrides_the_upstream_content_type() {
    let up = upstream(|cfg| {
        cfg.route(
            "/csv",
            web::get().to(typed_route(200, "text/csv; charset=utf-8", "a,b\n1,2\n")),
        );
    })
    .await;
    let registry = json!({"connectors": [
        {"name": "Passthrough", "permalink": "passthrough", "url": format!("{}/csv", up.base)},
        {"name": "Overridden", "permalink": "overridden", "url": format!("{}/csv", up.base),
         "response_content_type": "application/vnd.report"}
    ]});
    let app = spawn_app(registry).await;
    let plain = app.execute("passthrough").await;
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type").as_deref(),
        Some("text/csv; charset=utf-8")
    );
    assert_eq!(plain.text(), "a,b\n1,2\n");
    let overridden = app.execute("overridden").await;
    assert_eq!(overridden.status, 200);
    assert_eq!(
        overridden.header("content-type").as_deref(),
        Some("application/vnd.report")
    );
    assert_eq!(overridden.text(), "a,b\n1,2\n");
}

#[actix_web::test]
async fn the_connector_method_is_used_upstream() {
    let up = echo_upstream().await;
    let registry = json!({"connectors": [
        {"name": "Put", "permalink": "put", "method": "PUT", "url": format!("{}/echo", up.base),
         "request_body": "{{ body_text }}"},
        {"name": "Delete", "permalink": "delete", "method": "DELETE", "url": format!("{}/echo", up.base)}
    ]});
    let app = spawn_app(registry).await;
    assert_eq!(
        app.call("PUT", "/connectors/put/execute", Some("x"), &[])
            .await
            .status,
        200
    );
    assert_eq!(
        app.call("DELETE", "/connectors/delete/execute", None, &[])
            .await
            .status,
        200
    );
    let methods: Vec<String> = up.log.all().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, vec!["PUT", "DELETE"]);
    assert_eq!(up.log.all()[0].body, "x");
}

#[actix_web::test]
async fn simple_timing_headers_have_the_documented_entries_and_keys() {
    let up = ok_upstream().await;
    let registry = json!({"connectors": [
        {"name": "Timed", "permalink": "timed", "url": format!("{}/ok", up.base)}
    ]});
    let app = spawn_app(registry).await;
    let reply = app
        .call(
            "GET",
            "/connectors/timed/execute",
            None,
            &[("X-Request-ID", "simple-timing-1")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let host = format!("127.0.0.1:{}", up.port);
    assert_server_timing(
        &reply,
        &[
            ("setup", "Setup"),
            ("transform", "Transform"),
            ("cache", "Cache Miss"),
            ("external", host.as_str()),
            ("total", "Total"),
        ],
    );

    let timing = reply.connector_timing();
    assert_eq!(
        keys(&timing),
        vec![
            "breakdown",
            "cache",
            "cache_hit",
            "external_host",
            "external_ms",
            "internal_ms",
            "request_id",
            "total_ms"
        ]
    );
    assert_eq!(
        keys(&timing["breakdown"]),
        vec!["cache_ms", "http_request_ms", "setup_ms", "transform_ms"]
    );
    assert_eq!(timing["request_id"], "simple-timing-1");
    assert_eq!(timing["cache_hit"], false);
    assert_eq!(timing["external_host"], host);
    for key in ["total_ms", "internal_ms", "external_ms"] {
        assert!(timing[key].as_f64().unwrap() >= 0.0, "{key}: {timing}");
    }
    assert_eq!(
        timing["breakdown"]["http_request_ms"],
        timing["external_ms"]
    );
    assert!(timing["external_ms"].as_f64().unwrap() <= timing["total_ms"].as_f64().unwrap());
}

#[actix_web::test]
async fn a_failed_simple_run_names_the_error_in_its_timing() {
    let up = upstream(|cfg| {
        cfg.route(
            "/gone",
            web::get().to(json_route(410, json!({"gone": true}))),
        );
    })
    .await;
    let registry = json!({"connectors": [
        {"name": "Gone", "permalink": "gone", "url": format!("{}/gone", up.base)}
    ]});
    let app = spawn_app(registry).await;
    let reply = app.execute("gone").await;
    assert_eq!(reply.status, 502);
    let timing = reply.connector_timing();
    assert_eq!(timing["error"], "DOWNSTREAM_HTTP_ERROR");
    assert!(timing.get("timeout").is_none(), "{timing}");
    assert_eq!(timing["request_id"], reply.json()["request_id"]);
    assert!(reply.header("server-timing").is_some());
}

//! The widget SDK and console are served by the runtime; CORS lets allowed origins call it
//! and read its timing headers.

use crate::common::{spawn_app, spawn_app_with, standard_upstream, AppOptions, Reply, TestApp};
use serde_json::json;

/// Runs composite `pair` (`POST`, body `{}`) as a page on `origin` would.
async fn run_pair_from(app: &TestApp, origin: &str) -> Reply {
    app.call(
        "POST",
        "/connectors/composite/pair/execute",
        Some("{}"),
        &[("Origin", origin)],
    )
    .await
}

/// Checks that `reply` has header `name` with `value`.
#[track_caller]
fn assert_header(reply: &Reply, name: &str, value: &str) {
    assert_eq!(reply.header(name).as_deref(), Some(value), "{name}");
}

fn registry(base: &str) -> serde_json::Value {
    json!({
        "connectors": [{"name": "Echo", "permalink": "echo", "url": format!("{base}/echo"), "method": "POST"}],
        "composite_connectors": [{"name": "Pair", "permalink": "pair", "steps": [
            {"name": "auth", "url": format!("{base}/oauth/token"), "method": "POST"},
            {"name": "fetch-user", "url": format!("{base}/users/me"),
             "headers": [{"key": "Authorization", "value": "Bearer {{ (steps.auth.body | from_json).access_token }}"}]}
        ]}]
    })
}

#[actix_web::test]
async fn the_sdk_is_served_with_caching_headers_and_revalidates() {
    let up = standard_upstream().await;
    let app = spawn_app(registry(&up.base)).await;
    for (path, marker) in [
        ("/sdk/connectors-sdk.js", "WidgetServiceSDK"),
        ("/sdk/connectors-sdk.mjs", "export"),
        ("/sdk/connectors-sdk.d.ts", "ConnectorBoundaryError"),
    ] {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(reply.text().contains(marker), "{path} lacks {marker}");
        let etag = reply.header("etag").expect("an ETag");
        assert!(reply.header("cache-control").unwrap().contains("max-age="));
        let again = app
            .call("GET", path, None, &[("If-None-Match", &etag)])
            .await;
        assert_eq!(again.status, 304, "{path} did not revalidate");
        assert!(again.body.is_empty());
    }
    let js = app.get("/sdk/connectors-sdk.js").await;
    assert_header(&js, "content-type", "text/javascript; charset=utf-8");
}

#[actix_web::test]
async fn the_console_is_off_by_default_and_lists_connectors_when_on() {
    let up = standard_upstream().await;
    let off = spawn_app(registry(&up.base)).await;
    assert_eq!(off.get("/console").await.status, 404);
    assert_eq!(off.get("/console/api/connectors").await.status, 404);

    let on = spawn_app_with(
        registry(&up.base),
        AppOptions::default().flags(|f| f.console = true),
    )
    .await;
    let page = on.get("/console").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("/sdk/connectors-sdk.js"));
    let list = on.get("/console/api/connectors").await.json();
    assert_eq!(
        list["connectors"],
        json!([
            {"permalink": "echo", "name": "Echo", "kind": "simple", "method": "POST", "path_parameters": [], "steps": ["echo"]},
            {"permalink": "pair", "name": "Pair", "kind": "composite", "method": "POST", "path_parameters": [], "steps": ["auth", "fetch-user"]}
        ])
    );
}

#[actix_web::test]
async fn allowed_origins_get_cors_and_may_read_timing_headers() {
    let up = standard_upstream().await;
    let app = spawn_app_with(
        registry(&up.base),
        AppOptions::default().flags(|f| f.allow_origin = vec!["http://widget.test".into()]),
    )
    .await;
    let preflight = app
        .call(
            "OPTIONS",
            "/connectors/composite/pair/execute",
            None,
            &[
                ("Origin", "http://widget.test"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "content-type,x-path-params",
                ),
            ],
        )
        .await;
    assert_eq!(preflight.status, 200, "{}", preflight.text());
    assert_header(
        &preflight,
        "access-control-allow-origin",
        "http://widget.test",
    );

    let run = run_pair_from(&app, "http://widget.test").await;
    assert_eq!(run.status, 200);
    assert_header(&run, "access-control-allow-origin", "http://widget.test");
    let exposed = run
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["server-timing", "x-connector-timing", "x-request-id"] {
        assert!(exposed.contains(h), "{h} is not exposed: {exposed}");
    }
    assert_header(&run, "timing-allow-origin", "http://widget.test");

    let stranger = run_pair_from(&app, "http://evil.test").await;
    assert!(stranger.header("access-control-allow-origin").is_none());
    assert!(stranger.header("timing-allow-origin").is_none());
}

#[actix_web::test]
async fn without_allowed_origins_no_cors_headers_are_sent() {
    let up = standard_upstream().await;
    let app = spawn_app(registry(&up.base)).await;
    let run = run_pair_from(&app, "http://widget.test").await;
    assert_eq!(run.status, 200);
    assert!(run.header("access-control-allow-origin").is_none());
}

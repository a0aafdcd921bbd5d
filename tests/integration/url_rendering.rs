//! What reaches the upstream from a URL template, through the real server (docs/spec.md §3): caller
//! and step data are percent-encoded wherever they are interpolated, and the origin
//! expression (`{{ get_variable('base') | default('https://...') }}`) is inserted as it is.

use actix_web::web;
use serde_json::json;

use crate::common::*;

fn query_of(pairs: &[(&str, &str)]) -> String {
    format!("?{}", serde_urlencoded::to_string(pairs).unwrap())
}

/// An upstream that echoes every request under `/echo/` and `/echo`.
async fn echo_paths_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route("/echo/{tail:.*}", web::route().to(echo_route()))
            .route("/echo", web::route().to(echo_route()));
    })
    .await
}

#[actix_web::test]
async fn request_data_in_a_url_is_percent_encoded() {
    // The values the security probe got through `| safe` (now refused at load): without it
    // each stays inside its one segment, encoded.
    let up = echo_paths_upstream().await;
    let base = &up.base;
    let app = spawn_app(json!({"connectors": [{
        "name": "Echo", "permalink": "echo",
        "url": format!("{base}/echo/{{{{ request.query_parameters.v }}}}/tail")
    }]}))
    .await;
    for (value, path) in [
        ("%2e%2e", "/echo/%252e%252e/tail"),
        ("..;", "/echo/..%3B/tail"),
        ("a\\..\\admin", "/echo/a%5C..%5Cadmin/tail"),
        ("x#", "/echo/x%23/tail"),
        ("x?role=admin", "/echo/x%3Frole%3Dadmin/tail"),
        ("a/../b", "/echo/a%2F..%2Fb/tail"),
    ] {
        let reply = app
            .call(
                "GET",
                &format!("/connectors/echo/execute{}", query_of(&[("v", value)])),
                None,
                &[],
            )
            .await;
        assert_eq!(reply.status, 200, "{value:?}: {}", reply.text());
        let received = up.log.all().pop().unwrap();
        assert_eq!(received.path, path, "{value:?}");
        assert_eq!(received.query, "", "{value:?}");
    }
}

/// Connectors whose origin comes from variable `base` (or `host`), with `default` as the
/// documented fallback, and request data in the path and query.
fn fallback_registry(default_base: &str, default_host: &str) -> serde_json::Value {
    json!({
        "connectors": [
            {"name": "Origin", "permalink": "origin",
             "url": format!("{{{{ get_variable('base') | default('{default_base}') }}}}/echo/{{{{ request.query_parameters.v }}}}?q={{{{ request.query_parameters.v }}}}")},
            {"name": "Host", "permalink": "host",
             "url": format!("http://{{{{- get_variable('host') | default('{default_host}') -}}}}/echo/{{{{ request.query_parameters.v }}}}")}
        ],
        "composite_connectors": [
            {"name": "Chain", "permalink": "chain", "steps": [
                {"name": "first", "url": format!("{{{{ get_variable('base') | default('{default_base}') }}}}/echo/first")},
                {"name": "second", "url": format!("{{{{ get_variable('base') | default('{default_base}') }}}}/echo/{{{{ steps.first.status_code }}}}/{{{{ request.query_parameters.v }}}}")}
            ]}
        ]
    })
}

/// Calls the three connectors with `v` and returns the paths and queries the upstream got.
async fn call_all(app: &TestApp, up: &Upstream, v: &str) -> Vec<(String, String)> {
    let query = query_of(&[("v", v)]);
    for path in [
        format!("/connectors/origin/execute{query}"),
        format!("/connectors/host/execute{query}"),
    ] {
        let reply = app.call("GET", &path, None, &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let reply = app.composite("chain", &query, "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    up.log
        .all()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect()
}

#[actix_web::test]
async fn the_default_origin_of_an_unset_variable_is_used_as_it_is() {
    // `{{ get_variable('base') | default('https://...') }}` is the documented fallback; the
    // literal default was percent-encoded (`http%3A%2F%2F...`) and every run failed with
    // "the rendered URL does not start with its configured scheme and host".
    let up = echo_paths_upstream().await;
    let host = up.base.trim_start_matches("http://");
    let app = spawn_app(fallback_registry(&up.base, host)).await;
    let received = call_all(&app, &up, "a/b?c#d").await;
    assert_eq!(
        received,
        [
            (
                "/echo/a%2Fb%3Fc%23d".to_string(),
                "q=a%2Fb%3Fc%23d".to_string()
            ),
            ("/echo/a%2Fb%3Fc%23d".to_string(), String::new()),
            ("/echo/first".to_string(), String::new()),
            ("/echo/200/a%2Fb%3Fc%23d".to_string(), String::new()),
        ]
    );
}

#[actix_web::test]
async fn a_set_variable_wins_over_the_default_origin() {
    let up = echo_paths_upstream().await;
    let host = up.base.trim_start_matches("http://");
    // The defaults name a port nothing listens on: only the variables lead to the upstream.
    let unused = closed_port();
    let app = spawn_app_with(
        fallback_registry(&unused.base(), &format!("127.0.0.1:{}", unused.port)),
        AppOptions::default().variables(json!({"base": up.base, "host": host})),
    )
    .await;
    let received = call_all(&app, &up, "x y").await;
    assert_eq!(
        received,
        [
            ("/echo/x%20y".to_string(), "q=x%20y".to_string()),
            ("/echo/x%20y".to_string(), String::new()),
            ("/echo/first".to_string(), String::new()),
            ("/echo/200/x%20y".to_string(), String::new()),
        ]
    );
}

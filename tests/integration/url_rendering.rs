//! What reaches the upstream from a URL template, through the real server (SPEC §3): caller
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

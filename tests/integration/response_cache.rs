//! The response cache of GET/HEAD simple connectors (`cache_ttl_seconds`).

use crate::common;

use std::time::Duration;

use crate::common::{spawn_app, upstream, Log};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use connector_runtime::registry::{build_registry, BuildOptions};
use serde_json::json;

async fn counting_upstream() -> common::Upstream {
    upstream(|cfg| {
        cfg.route(
            "/items/{id}",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    let n = log.all().len();
                    HttpResponse::Ok().json(json!({"id": req.match_info().get("id"), "served": n}))
                },
            ),
        )
        .route(
            "/flaky",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    HttpResponse::ServiceUnavailable().json(json!({"error": "down"}))
                },
            ),
        );
    })
    .await
}

fn cached(base: &str, ttl: u64) -> serde_json::Value {
    json!({"connectors": [
        {"name": "Item", "permalink": "item", "url": format!("{base}/items/{{{{ pathParams.id }}}}"),
         "path_parameters": [{"key": "id"}], "cache_ttl_seconds": ttl,
         "headers": [{"key": "Authorization", "value": "Bearer default", "overridable": true}]},
        {"name": "Flaky", "permalink": "flaky", "url": format!("{base}/flaky"), "cache_ttl_seconds": ttl},
        {"name": "Plain", "permalink": "plain", "url": format!("{base}/items/plain")}
    ]})
}

#[actix_web::test]
async fn a_repeated_request_is_served_from_the_cache_and_says_so() {
    let up = counting_upstream().await;
    let app = spawn_app(cached(&up.base, 60)).await;
    let first = app.execute_with_path_params("item", "id=a1").await;
    let second = app.execute_with_path_params("item", "id=a1").await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(
        first.json(),
        second.json(),
        "the cached answer is the first answer"
    );
    assert_eq!(up.log.count("/items/a1"), 1);
    assert!(first
        .header("server-timing")
        .unwrap()
        .contains("desc=\"Cache Miss\""));
    assert!(second
        .header("server-timing")
        .unwrap()
        .contains("desc=\"Cache Hit\""));
    let timing = second.connector_timing();
    assert_eq!(timing["cache_hit"], true);
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(
            "connector_response_cache_requests_total{connector=\"item\",result=\"hit\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains("connector_response_cache_requests_total{connector=\"item\",result=\"miss\"} 1"));
}

#[actix_web::test]
async fn different_requests_and_credentials_never_share_an_answer() {
    let up = counting_upstream().await;
    let app = spawn_app(cached(&up.base, 60)).await;
    for (id, auth) in [
        ("a1", "Bearer alice"),
        ("a1", "Bearer bob"),
        ("a2", "Bearer alice"),
        ("a1", "Bearer alice"),
    ] {
        let reply = app
            .call(
                "GET",
                "/connectors/item/execute",
                None,
                &[
                    ("X-Path-Params", &format!("id={id}")),
                    ("Authorization", auth),
                ],
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(
        up.log.count("/items/a1"),
        2,
        "alice and bob each reach the upstream once for a1"
    );
    assert_eq!(up.log.count("/items/a2"), 1);
}

#[actix_web::test]
async fn only_successful_answers_are_cached_and_only_for_their_ttl() {
    let up = counting_upstream().await;
    let app = spawn_app(cached(&up.base, 1)).await;
    for _ in 0..2 {
        assert_eq!(app.execute("flaky").await.status, 502);
    }
    assert_eq!(
        up.log.count("/flaky"),
        2,
        "a 503 is never served from the cache"
    );
    app.execute_with_path_params("item", "id=t").await;
    app.execute_with_path_params("item", "id=t").await;
    assert_eq!(up.log.count("/items/t"), 1);
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    app.execute_with_path_params("item", "id=t").await;
    assert_eq!(
        up.log.count("/items/t"),
        2,
        "an expired answer is fetched again"
    );
}

#[actix_web::test]
async fn connectors_without_a_ttl_are_not_cached() {
    let up = counting_upstream().await;
    let app = spawn_app(cached(&up.base, 60)).await;
    for _ in 0..3 {
        let reply = app.execute("plain").await;
        assert!(reply
            .header("server-timing")
            .unwrap()
            .contains("Cache Miss"));
    }
    assert_eq!(up.log.count("/items/plain"), 3);
}

#[test]
fn only_get_and_head_connectors_may_be_cached_for_at_most_a_day() {
    let options = BuildOptions {
        allow_http: true,
        ..BuildOptions::default()
    };
    let post = json!({"connectors": [{"name": "p", "url": "https://api.example.com/x", "method": "POST", "cache_ttl_seconds": 10}]});
    let err = build_registry(&post.to_string(), &options).unwrap_err();
    assert!(
        err.report
            .to_text()
            .contains("p › cache_ttl_seconds: only GET and HEAD calls can be cached, not POST"),
        "{}",
        err.report.to_text()
    );
    let long = json!({"connectors": [{"name": "g", "url": "https://api.example.com/x", "cache_ttl_seconds": 86401}]});
    assert!(build_registry(&long.to_string(), &options)
        .unwrap_err()
        .report
        .to_text()
        .contains("g › cache_ttl_seconds: must be at most 86400"));
    let head = json!({"connectors": [{"name": "h", "url": "https://api.example.com/x", "method": "HEAD", "cache_ttl_seconds": 10}]});
    assert!(build_registry(&head.to_string(), &options).is_ok());
}

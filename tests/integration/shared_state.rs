//! Shared state and quotas (docs/spec.md §11) through the real server, without Redis (the
//! suite stays hermetic; scripts/e2e/shared_state.py runs three replicas on a real Redis):
//! `rate_limit` on a simple connector, a composite and a step, counted per replica; a Redis
//! that is down never fails a run, is counted and keeps the replica ready; bad flags and
//! bad quotas are refused with the field named.

use std::process::Command;

use actix_web::web;
use serde_json::json;

use crate::common::{
    assert_envelope, closed_port, json_route, spawn_app, spawn_app_with, token_upstream, upstream,
    AppOptions, Reply, TestApp, Upstream,
};

async fn items_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route(
            "/items",
            web::get().to(json_route(200, json!({"items": [1, 2, 3]}))),
        )
        .route("/item", web::get().to(json_route(200, json!({"ok": true}))));
    })
    .await
}

fn metric(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    crate::common::process::metric_sum(exposition, name, labels)
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text()
}

#[track_caller]
fn assert_rate_limited(reply: &Reply, scope: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_envelope(reply, 429, "RATE_LIMITED", Some(scope));
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=86_400).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let params = reply.errors()["params"].to_string();
    assert!(params.contains("retry_after="), "{params}");
}

#[actix_rt::test]
async fn a_simple_connectors_quota_refuses_the_call_over_it_before_the_upstream() {
    let up = items_upstream().await;
    let app = spawn_app(json!({"connectors": [{
        "name": "items", "url": format!("{}/items", up.base),
        "rate_limit": {"requests": 2, "per_seconds": 60}
    }]}))
    .await;
    assert_eq!(app.execute("items").await.status, 200);
    assert_eq!(app.execute("items").await.status, 200);
    let third = app.execute("items").await;
    assert_rate_limited(&third, "Rate limit");
    assert!(
        third.errors()["detail"]
            .as_str()
            .unwrap()
            .contains("more than 2 calls per 60 s"),
        "{}",
        third.text()
    );
    assert_eq!(
        up.log.count("/items"),
        2,
        "the refused call never went upstream"
    );
    let m = metrics(&app).await;
    assert_eq!(
        metric(
            &m,
            "connector_rate_limit_decisions_total",
            &[
                "connector=\"items\"",
                "decision=\"allowed\"",
                "scope=\"local\""
            ]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "connector_rate_limit_decisions_total",
            &[
                "connector=\"items\"",
                "decision=\"limited\"",
                "scope=\"local\""
            ]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "connector_runs_total",
            &["connector=\"items\"", "outcome=\"rate_limited\""]
        ),
        1.0
    );
}

#[actix_rt::test]
async fn a_quota_key_gives_each_value_its_own_quota() {
    let up = items_upstream().await;
    let app = spawn_app(json!({"connectors": [{
        "name": "items", "url": format!("{}/items", up.base),
        "rate_limit": {"requests": 1, "per_seconds": 60, "key": "{{ request.query_parameters.who }}"}
    }]}))
    .await;
    let call = |who: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/connectors/items/execute?who={who}"))
                .await
        }
    };
    assert_eq!(call("ada").await.status, 200);
    assert_eq!(call("bob").await.status, 200);
    let again = call("ada").await;
    assert_rate_limited(&again, "Rate limit");
    assert!(again.text().contains("for this key"), "{}", again.text());
    assert_eq!(up.log.count("/items"), 2);
}

#[actix_rt::test]
async fn a_composites_quota_is_taken_before_its_first_step_and_a_steps_before_its_call() {
    let up = items_upstream().await;
    let app = spawn_app(json!({"composite_connectors": [
        {"name": "whole", "rate_limit": {"requests": 1, "per_seconds": 60},
         "steps": [{"name": "a", "url": format!("{}/items", up.base)}]},
        {"name": "second", "steps": [
            {"name": "a", "url": format!("{}/items", up.base)},
            {"name": "b", "url": format!("{}/item", up.base),
             "rate_limit": {"requests": 1, "per_seconds": 3600}}
        ]}
    ]}))
    .await;
    assert_eq!(app.composite("whole", "", "{}").await.status, 200);
    let refused = app.composite("whole", "", "{}").await;
    assert_rate_limited(&refused, "Rate limit");
    assert_eq!(up.log.count("/items"), 1, "the refused run made no call");

    assert_eq!(app.composite("second", "", "{}").await.status, 200);
    let refused = app.composite("second", "", "{}").await;
    assert_rate_limited(&refused, "Composite step 'b' (index 1): Rate limit");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after > 3000, "an hour's quota of 1: {retry_after}");
    assert_eq!(
        up.log.count("/item"),
        1,
        "step b was refused before its call"
    );
    assert_eq!(up.log.count("/items"), 3, "step a ran in both runs");
}

#[actix_rt::test]
async fn a_for_each_step_takes_one_call_per_item_all_before_the_first() {
    let up = items_upstream().await;
    let app = spawn_app(json!({"composite_connectors": [{"name": "fan", "steps": [
        {"name": "list", "url": format!("{}/items", up.base)},
        {"name": "each", "url": format!("{}/item?n={{{{ item }}}}", up.base),
         "for_each": "(steps.list.body | from_json)['items']",
         "rate_limit": {"requests": 4, "per_seconds": 60}}
    ]}]}))
    .await;
    assert_eq!(app.composite("fan", "", "{}").await.status, 200);
    assert_eq!(up.log.count("/item"), 3);
    // One call left of 4: three items need three.
    let refused = app.composite("fan", "", "{}").await;
    assert_rate_limited(&refused, "Composite step 'each' (index 1): Rate limit");
    assert_eq!(up.log.count("/item"), 3, "no item was called");
}

#[actix_rt::test]
async fn a_bad_quota_is_rejected_at_load_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    let registry = json!({"connectors": [{
        "name": "items", "url": "https://api.example.com/items",
        "rate_limit": {"requests": 0, "per_seconds": 100000, "key": " ", "burst": 3}
    }], "composite_connectors": [{"name": "c", "rate_limit": {"requests": 1, "per_seconds": 1, "key": "{{ steps.a.body }}"},
        "steps": [{"name": "a", "url": "https://api.example.com/a"}]}]});
    std::fs::write(&path, registry.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{report}");
    for expected in [
        "rate_limit.requests",
        "must be 1-1000000",
        "rate_limit.per_seconds",
        "rate_limit.key",
        "rate_limit.burst",
        "steps.a",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
}

fn key_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("shared-state.key");
    std::fs::write(&path, format!("{}\n", "5a".repeat(32))).unwrap();
    path
}

#[actix_rt::test]
async fn redis_down_never_fails_a_run_and_the_replica_stays_ready() {
    let tokens = token_upstream(std::time::Duration::ZERO, 3600, &["tok-1"]).await;
    let cached = upstream(|cfg| {
        cfg.route(
            "/cached",
            web::get().to(|| async {
                actix_web::HttpResponse::Ok()
                    .insert_header(("Cache-Control", "public, max-age=60"))
                    .json(json!({"cached": true}))
            }),
        );
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(&dir);
    let redis = closed_port();
    let redis_url = format!("redis://127.0.0.1:{}/0", redis.port);
    let app = spawn_app_with(
        json!({"connectors": [
            {"name": "data", "url": format!("{}/data", tokens.base),
             "authentication": {"type": "oauth_client_credentials", "config": {
                "client_id": "c1", "client_secret": "{{ get_secret('cs') }}",
                "token_url": format!("{}/oauth/token", tokens.base)}}},
            {"name": "cached", "url": format!("{}/cached", cached.base)},
            {"name": "limited", "url": format!("{}/cached", cached.base),
             "rate_limit": {"requests": 1, "per_seconds": 60}}
        ]}),
        AppOptions::default().secret("cs", "s1").flags(move |f| {
            f.shared_state.redis_url = Some(redis_url);
            f.shared_state.shared_state_key_file = Some(key);
            f.shared_state.redis_timeout_ms = 50;
        }),
    )
    .await;
    for _ in 0..3 {
        let reply = app.execute("data").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json(), json!({"data": "yes"}));
    }
    assert_eq!(
        tokens.log.count("/oauth/token"),
        1,
        "the replica's own cache holds the token"
    );
    assert_eq!(app.execute("cached").await.status, 200);
    let hit = app.execute("cached").await;
    assert!(hit
        .header("server-timing")
        .unwrap_or_default()
        .contains("Cache Hit"));
    assert_eq!(app.execute("limited").await.status, 200);
    let refused = app.execute("limited").await;
    assert_eq!(refused.status, 429, "the quota holds per replica meanwhile");
    assert_eq!(app.get("/readyz").await.status, 200);
    let m = metrics(&app).await;
    assert!(
        metric(&m, "connector_shared_state_errors_total", &[]) >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "connector_shared_state_connected", &[]), 0.0);
    assert_eq!(
        metric(
            &m,
            "connector_rate_limit_decisions_total",
            &["connector=\"limited\"", "scope=\"local\""]
        ),
        2.0
    );
}

#[test]
fn shared_state_flags_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("connectors_registry.json");
    std::fs::write(&registry, r#"{"connectors": []}"#).unwrap();
    let start = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
            .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
            .arg(&registry)
            .args(extra)
            .env_remove("CONNECTOR_RUNTIME_REDIS_URL")
            .env_remove("CONNECTOR_RUNTIME_SHARED_STATE_KEY_FILE")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let no_key = start(&["--redis-url", "redis://:hunter2@127.0.0.1:6379/0"]);
    assert!(no_key.contains("--shared-state-key-file"), "{no_key}");
    let short = dir.path().join("short.key");
    std::fs::write(&short, "abc").unwrap();
    let bad_key = start(&[
        "--redis-url",
        "redis://127.0.0.1:6379/0",
        "--shared-state-key-file",
        short.to_str().unwrap(),
    ]);
    assert!(
        bad_key.contains("64 hex digits") && bad_key.contains("short.key"),
        "{bad_key}"
    );
    let key = key_file(&dir);
    let bad_url = start(&[
        "--redis-url",
        "http://:hunter2@127.0.0.1:6379/0",
        "--shared-state-key-file",
        key.to_str().unwrap(),
    ]);
    assert!(bad_url.contains("--redis-url"), "{bad_url}");
    assert!(
        !bad_url.contains("hunter2"),
        "the password is not printed: {bad_url}"
    );
}

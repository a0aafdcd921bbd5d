//! `/metrics` moves with runs: histogram series and counters carry the right labels.

use std::collections::BTreeMap;

use crate::common::{get_url, spawn_app, spawn_app_with, standard_upstream, AppOptions};
use serde_json::json;

/// One sample of the text exposition: name, labels, value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().unwrap())
        })
        .collect()
}

fn value(
    all: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    all.iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

fn registry(base: &str) -> serde_json::Value {
    json!({
        "connectors": [
            {"name": "Missing", "permalink": "missing", "url": format!("{base}/nope")}
        ],
        "composite_connectors": [{
            "name": "Auth and Fetch", "permalink": "auth-and-fetch",
            "steps": [
                {"name": "auth", "url": format!("{base}/oauth/token"), "method": "POST"},
                {"name": "fetch-user", "url": format!("{base}/users/me"),
                 "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body | from_json | attr('access_token') }}"}]}
            ]
        }]
    })
}

#[actix_web::test]
async fn runs_steps_and_failures_show_up_with_bounded_labels() {
    let up = standard_upstream().await;
    let app = spawn_app(registry(&up.base)).await;
    for _ in 0..3 {
        assert_eq!(app.composite("auth-and-fetch", "", "{}").await.status, 200);
    }
    assert_eq!(
        app.call("GET", "/connectors/missing/execute", None, &[])
            .await
            .status,
        502
    );
    assert_eq!(
        app.call("GET", "/connectors/no-such-thing/execute", None, &[])
            .await
            .status,
        404
    );

    let reply = app.call("GET", "/metrics", None, &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let all = samples(&reply.text());
    let runs = |c: &str, o: &str| {
        value(
            &all,
            "connector_runs_total",
            &[("connector", c), ("outcome", o)],
        )
    };
    assert_eq!(runs("auth-and-fetch", "ok"), Some(3.0));
    assert_eq!(runs("missing", "downstream_http_error"), Some(1.0));
    assert_eq!(runs("(unknown)", "client_error"), Some(1.0));
    assert_eq!(
        value(
            &all,
            "connector_step_duration_seconds_count",
            &[
                ("connector", "auth-and-fetch"),
                ("step", "fetch-user"),
                ("outcome", "ok")
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &all,
            "connector_step_duration_seconds_bucket",
            &[
                ("connector", "auth-and-fetch"),
                ("step", "auth"),
                ("le", "30")
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &all,
            "connector_run_duration_seconds_count",
            &[
                ("connector", "auth-and-fetch"),
                ("kind", "composite"),
                ("outcome", "ok")
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &all,
            "connector_upstream_responses_total",
            &[("connector", "missing"), ("status_class", "4xx")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&all, "connector_runs_in_flight", &[]), Some(0.0));
    assert_eq!(
        value(&all, "connector_registry_loads_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(value(&all, "connector_registry_load_ok", &[]), Some(1.0));
    assert_eq!(
        value(
            &all,
            "connector_registry_connectors",
            &[("kind", "composite")]
        ),
        Some(1.0)
    );
    assert!(value(&all, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    // Labels stay bounded: no URL, id or message ever becomes a label value.
    for (_, labels, _) in &all {
        for v in labels.values() {
            assert!(
                !v.contains("://") && !v.contains("127.0.0.1") && !v.contains("no-such-thing"),
                "unbounded label value {v}"
            );
        }
    }
}

#[actix_web::test]
async fn oauth_token_cache_hits_and_misses_are_counted() {
    let up = standard_upstream().await;
    let registry = json!({"connectors": [{
        "name": "Me", "permalink": "me", "url": format!("{}/users/me", up.base),
        "authentication": {"type": "oauth_client_credentials", "config": {
            "client_id": "id", "client_secret": "{{ get_secret('cs') }}", "token_url": format!("{}/oauth/token", up.base)}}
    }]});
    let app = spawn_app_with(registry, AppOptions::default().secret("cs", "s3cret-value")).await;
    for _ in 0..3 {
        assert_eq!(
            app.call("GET", "/connectors/me/execute", None, &[])
                .await
                .status,
            200
        );
    }
    let all = samples(&app.call("GET", "/metrics", None, &[]).await.text());
    assert_eq!(
        value(
            &all,
            "connector_token_cache_requests_total",
            &[("result", "miss")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            "connector_token_cache_requests_total",
            &[("result", "hit")]
        ),
        Some(2.0)
    );
    assert_eq!(up.log.count("/oauth/token"), 1);
}

#[actix_web::test]
async fn metrics_can_be_served_on_a_separate_listener() {
    let up = standard_upstream().await;
    let app = spawn_app_with(
        registry(&up.base),
        AppOptions::default().flags(|f| f.metrics_listen = Some("127.0.0.1:0".parse().unwrap())),
    )
    .await;
    let metrics_base = app
        .metrics_base
        .clone()
        .expect("--metrics-listen gives the app a metrics port");
    assert_ne!(metrics_base, app.base);
    assert_eq!(app.execute("missing").await.status, 502);
    // The separate listener serves this server's metrics, the run just made included ...
    let reply = get_url(&format!("{metrics_base}/metrics")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let all = samples(&reply.text());
    assert_eq!(
        value(
            &all,
            "connector_runs_total",
            &[
                ("connector", "missing"),
                ("outcome", "downstream_http_error")
            ]
        ),
        Some(1.0),
        "{}",
        reply.text()
    );
    // ... and only them; the main port has no /metrics.
    assert_eq!(
        get_url(&format!("{metrics_base}/connectors/missing/execute"))
            .await
            .status,
        404
    );
    assert_eq!(app.call("GET", "/metrics", None, &[]).await.status, 404);
}

#[actix_web::test]
async fn series_with_fixed_labels_exist_at_zero_from_start_up() {
    let app = spawn_app(json!({"connectors": []})).await;
    let text = app.get("/metrics").await.text();
    let series = samples(&text);
    for (metric, label, value) in [
        (
            "connector_token_cache_requests_total",
            ("result", "hit"),
            0.0,
        ),
        (
            "connector_token_cache_requests_total",
            ("result", "miss"),
            0.0,
        ),
        ("connector_token_fetch_errors_total", ("", ""), 0.0),
        ("connector_registry_loads_total", ("result", "failed"), 0.0),
        ("connector_registry_connectors", ("kind", "composite"), 0.0),
        ("connector_registry_connectors", ("kind", "simple"), 0.0),
    ] {
        let found = series.iter().find(|(name, labels, _)| {
            name == metric
                && (label.0.is_empty() || labels.get(label.0).map(String::as_str) == Some(label.1))
        });
        let Some((_, _, seen)) = found else {
            panic!("{metric} {label:?} is not exposed at start-up:\n{text}");
        };
        assert_eq!(*seen, value, "{metric} {label:?}");
    }
}

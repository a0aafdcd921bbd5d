//! HTTP caching through the real server (docs/spec.md §10, README "Response caching"): an
//! RFC 9111 shared cache of GET/HEAD simple connectors and composite steps, driven by the
//! upstream's `Cache-Control`, `Expires`, `Age`, `ETag`, `Last-Modified` and `Vary`.
//!
//! Every test runs the real server against a scripted upstream on 127.0.0.1 ([`origin`]):
//! the test sets, per path, what the upstream answers to each request (status, headers,
//! body, delay) from what it received (so it can answer a conditional request with 304),
//! and reads back how often each path was called and with which headers. The only sleeps
//! are waits for an answer's freshness to run out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::HttpDate;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use connector_runtime::config::ServeArgs;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::common::idp::{jwk, now, sign, Idp};
use crate::common::keys::RSA;
use crate::common::process::metric_sum;
use crate::common::{
    parse_server_timing, spawn_app, spawn_app_with, upstream, AppOptions, Log, Received, Reply,
    TestApp, Upstream,
};

// ---------------------------------------------------------------------------------------
// The scripted upstream.
// ---------------------------------------------------------------------------------------

/// What the upstream answers to one request.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    delay: Duration,
    /// Answered once this is notified.
    gate: Option<Arc<Notify>>,
}

impl Answer {
    /// `status` with no headers and no body.
    fn status(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
            gate: None,
        }
    }

    /// 200 with `body` as JSON.
    fn ok(body: Value) -> Self {
        Answer::status(200).json(body)
    }

    /// With `body` as JSON.
    fn json(mut self, body: Value) -> Self {
        self.body = Bytes::from(body.to_string());
        self.header("content-type", "application/json")
    }

    /// With one more header line (a name may repeat).
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// With `Cache-Control: value`.
    fn cc(self, value: &str) -> Self {
        self.header("cache-control", value)
    }

    /// With `ETag: value`.
    fn etag(self, value: &str) -> Self {
        self.header("etag", value)
    }

    /// Answered after `delay` (an async wait: the upstream keeps serving others).
    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answered once the test notifies `gate`.
    fn when(mut self, gate: &Arc<Notify>) -> Self {
        self.gate = Some(gate.clone());
        self
    }
}

/// Computes the answer to a request from what was received and how many requests that
/// path has had (this one included, from 1).
type Rule = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

/// The rules of an upstream, by path; settable while it runs.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<HashMap<String, Rule>>>);

impl Script {
    fn rule(&self, path: &str) -> Option<Rule> {
        self.0.lock().unwrap().get(path).cloned()
    }
}

/// A running scripted upstream.
struct Origin {
    up: Upstream,
    script: Script,
}

impl Origin {
    /// `http://127.0.0.1:PORT{path}`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.up.base)
    }

    /// From now on, requests to `path` are answered by `rule`.
    fn on(&self, path: &str, rule: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static) {
        self.script
            .0
            .lock()
            .unwrap()
            .insert(path.into(), Arc::new(rule));
    }

    /// How many requests `path` received.
    fn count(&self, path: &str) -> usize {
        self.up.log.count(path)
    }

    /// The requests `path` received, in order.
    fn requests(&self, path: &str) -> Vec<Received> {
        self.up.log.to(path)
    }
}

/// Starts a scripted upstream: every request (any method, any path) is recorded, then
/// answered by the path's rule (404 without one).
async fn origin() -> Origin {
    let script = Script::default();
    let routes = script.clone();
    let up = upstream(move |cfg| {
        let script = routes.clone();
        cfg.route(
            "/{tail:.*}",
            web::route().to(move |req: HttpRequest, body: Bytes, log: web::Data<Log>| {
                let script = script.clone();
                async move {
                    let got = Received::of(&req, &body);
                    // Recorded and counted under one lock: concurrent requests get distinct n.
                    let n = {
                        let mut all = log.0.lock().unwrap();
                        all.push(got.clone());
                        all.iter().filter(|r| r.path == got.path).count()
                    };
                    let answer = match script.rule(&got.path) {
                        Some(rule) => rule(&got, n),
                        None => Answer::status(404),
                    };
                    if let Some(gate) = &answer.gate {
                        gate.notified().await;
                    }
                    if !answer.delay.is_zero() {
                        actix_rt::time::sleep(answer.delay).await;
                    }
                    let mut reply =
                        HttpResponse::build(StatusCode::from_u16(answer.status).unwrap());
                    for (name, value) in &answer.headers {
                        reply.append_header((name.as_str(), value.as_str()));
                    }
                    reply.body(answer.body)
                }
            }),
        );
    })
    .await;
    Origin { up, script }
}

/// Header lines of an answer: (name, value).
type Headers = &'static [(&'static str, &'static str)];

/// A rule answering 200 `{"path", "n"}` with `headers` every time.
fn numbered(headers: Headers) -> impl Fn(&Received, usize) -> Answer + Send + Sync + 'static {
    move |r, n| {
        let mut answer = Answer::ok(json!({"path": r.path, "n": n}));
        for (name, value) in headers {
            answer = answer.header(name, value);
        }
        answer
    }
}

/// A rule for a validator-carrying resource: a request whose `condition` header equals
/// `validator` gets `not_modified` (a 304); any other gets 200 `{"path", "n"}` with
/// `headers`.
fn conditional(
    condition: &'static str,
    validator: &'static str,
    headers: Vec<(&'static str, String)>,
    not_modified: Answer,
) -> impl Fn(&Received, usize) -> Answer + Send + Sync + 'static {
    move |r, n| {
        if r.header(condition) == Some(validator) {
            return not_modified.clone();
        }
        let mut answer = Answer::ok(json!({"path": r.path, "n": n}));
        for (name, value) in &headers {
            answer = answer.header(name, value);
        }
        answer
    }
}

// ---------------------------------------------------------------------------------------
// Registries, calls and what the answers say about the cache.
// ---------------------------------------------------------------------------------------

/// A simple GET connector `permalink` on `url`, with the fields of `extra` added.
fn simple(permalink: &str, url: String, extra: Value) -> Value {
    let mut connector = json!({"name": permalink, "permalink": permalink, "url": url});
    if let Value::Object(fields) = extra {
        for (k, v) in fields {
            connector[k] = v;
        }
    }
    connector
}

fn connectors(list: Vec<Value>) -> Value {
    json!({ "connectors": list })
}

/// Checks that the runtime answered without a 5xx.
#[track_caller]
fn no_5xx(reply: &Reply) {
    assert!(
        reply.status < 500,
        "the runtime answered {}: {}",
        reply.status,
        reply.text()
    );
}

/// `GET /connectors/{permalink}/execute`, which must answer 200.
async fn ok(app: &TestApp, permalink: &str) -> Reply {
    let reply = app.execute(permalink).await;
    assert_eq!(reply.status, 200, "{permalink}: {}", reply.text());
    reply
}

/// The desc of the `cache` entry of a simple connector's `Server-Timing`.
#[track_caller]
fn cache_desc(reply: &Reply) -> String {
    let header = reply
        .header("server-timing")
        .unwrap_or_else(|| panic!("no Server-Timing: {}", reply.text()));
    parse_server_timing(&header)
        .into_iter()
        .find(|e| e.name == "cache")
        .unwrap_or_else(|| panic!("no cache entry in {header}"))
        .desc
}

/// `cache` of a simple connector's `X-Connector-Timing` (hit, revalidated, miss,
/// uncacheable, off).
#[track_caller]
fn cache_label(reply: &Reply) -> String {
    reply.connector_timing()["cache"]
        .as_str()
        .unwrap_or_else(|| panic!("no cache in {}", reply.connector_timing()))
        .to_string()
}

/// Checks that `reply` was served from the cache, as both timing headers say.
#[track_caller]
fn assert_hit(reply: &Reply) {
    assert_eq!(cache_desc(reply), "Cache Hit", "{:?}", reply.headers);
    assert_eq!(cache_label(reply), "hit");
    assert_eq!(reply.connector_timing()["cache_hit"], true);
}

/// Checks that `reply` was not served from the cache.
#[track_caller]
fn assert_not_hit(reply: &Reply) {
    assert_ne!(cache_desc(reply), "Cache Hit", "{:?}", reply.headers);
    assert_ne!(cache_label(reply), "hit");
    assert_eq!(reply.connector_timing()["cache_hit"], false);
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text()
}

/// `connector_response_cache_requests_total{connector, result}`.
fn cache_requests(exposition: &str, connector: &str, result: &str) -> f64 {
    metric_sum(
        exposition,
        "connector_response_cache_requests_total",
        &[
            &format!("connector=\"{connector}\""),
            &format!("result=\"{result}\""),
        ],
    )
}

/// An HTTP-date `offset` from now (negative: in the past).
fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let at = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    HttpDate::from(at).to_string()
}

/// Waits until an answer stored now with one second of freshness is stale.
async fn outlive_one_second() {
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
}

// ---------------------------------------------------------------------------------------
// 1. Freshness.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_fresh_answer_is_served_without_calling_the_upstream() {
    let o = origin().await;
    let in_an_hour = http_date(3600);
    o.on("/max-age", numbered(&[("cache-control", "max-age=60")]));
    o.on("/s-maxage", numbered(&[("cache-control", "s-maxage=60")]));
    o.on("/expires", move |r, n| {
        Answer::ok(json!({"path": r.path, "n": n})).header("expires", &in_an_hour)
    });
    o.on(
        "/age",
        numbered(&[("cache-control", "max-age=600"), ("age", "30")]),
    );
    let cases = ["max-age", "s-maxage", "expires", "age"];
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|c| simple(c, o.url(&format!("/{c}")), json!({})))
            .collect(),
    ))
    .await;
    for case in cases {
        let first = ok(&app, case).await;
        assert_eq!(cache_desc(&first), "Cache Miss", "{case}");
        assert_eq!(cache_label(&first), "miss", "{case}");
        assert_eq!(first.connector_timing()["cache_hit"], false);
        let second = ok(&app, case).await;
        assert_hit(&second);
        assert_eq!(
            second.body, first.body,
            "{case}: the stored answer is served"
        );
        assert_eq!(
            second.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(o.count(&format!("/{case}")), 1, "{case}: one upstream call");
    }
    let m = metrics(&app).await;
    for case in cases {
        assert_eq!(cache_requests(&m, case, "hit"), 1.0, "{case}: {m}");
        assert_eq!(cache_requests(&m, case, "miss"), 1.0, "{case}: {m}");
    }
}

#[actix_web::test]
async fn an_answer_without_freshness_left_is_not_served_from_the_cache() {
    let o = origin().await;
    let an_hour_ago = http_date(-3600);
    let in_an_hour = http_date(3600);
    // Age at or beyond max-age: no freshness left.
    o.on(
        "/age-equal",
        numbered(&[("cache-control", "max-age=60"), ("age", "60")]),
    );
    o.on(
        "/age-beyond",
        numbered(&[("cache-control", "max-age=60"), ("age", "120")]),
    );
    // A shared cache takes s-maxage over max-age.
    o.on(
        "/s-maxage-zero",
        numbered(&[("cache-control", "max-age=600, s-maxage=0")]),
    );
    // max-age wins over Expires.
    o.on("/max-age-over-expires", move |r, n| {
        Answer::ok(json!({"path": r.path, "n": n}))
            .cc("max-age=0")
            .header("expires", &in_an_hour)
    });
    o.on("/expired", move |r, n| {
        Answer::ok(json!({"path": r.path, "n": n})).header("expires", &an_hour_ago)
    });
    // Last-Modified alone: no heuristic freshness.
    o.on(
        "/last-modified-only",
        numbered(&[("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")]),
    );
    let cases = [
        "age-equal",
        "age-beyond",
        "s-maxage-zero",
        "max-age-over-expires",
        "expired",
        "last-modified-only",
    ];
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|c| simple(c, o.url(&format!("/{c}")), json!({})))
            .collect(),
    ))
    .await;
    for case in cases {
        let first = ok(&app, case).await;
        let second = ok(&app, case).await;
        assert_not_hit(&second);
        assert_ne!(first.body, second.body, "{case}: a new answer");
        assert_eq!(o.count(&format!("/{case}")), 2, "{case}");
    }
}

#[actix_web::test]
async fn an_answer_is_fetched_again_once_its_freshness_runs_out() {
    let o = origin().await;
    o.on("/max-age", numbered(&[("cache-control", "max-age=1")]));
    o.on(
        "/s-maxage",
        numbered(&[("cache-control", "max-age=600, s-maxage=1")]),
    );
    o.on(
        "/age",
        numbered(&[("cache-control", "max-age=61"), ("age", "60")]),
    );
    let cases = ["max-age", "s-maxage", "age"];
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|c| simple(c, o.url(&format!("/{c}")), json!({})))
            .collect(),
    ))
    .await;
    let mut firsts = Vec::new();
    for case in cases {
        let first = ok(&app, case).await;
        assert_hit(&ok(&app, case).await);
        firsts.push(first);
    }
    outlive_one_second().await;
    for (case, first) in cases.iter().zip(&firsts) {
        let third = ok(&app, case).await;
        assert_eq!(cache_desc(&third), "Cache Miss", "{case}");
        assert_ne!(
            third.body, first.body,
            "{case}: the stale answer is not served"
        );
        assert_eq!(third.json()["n"], 2, "{case}");
        assert_eq!(o.count(&format!("/{case}")), 2, "{case}");
        // The new answer is stored in its place.
        let fourth = ok(&app, case).await;
        assert_hit(&fourth);
        assert_eq!(fourth.body, third.body);
    }
}

// ---------------------------------------------------------------------------------------
// 2. Revalidation.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_no_cache_answer_is_revalidated_with_if_none_match_and_a_304_serves_it() {
    let o = origin().await;
    for (path, cc) in [("/no-cache", "no-cache"), ("/max-age-0", "max-age=0")] {
        o.on(
            path,
            conditional(
                "if-none-match",
                "\"v1\"",
                vec![("etag", "\"v1\"".into()), ("cache-control", cc.into())],
                Answer::status(304).etag("\"v1\"").cc(cc),
            ),
        );
    }
    let app = spawn_app(connectors(vec![
        simple("no-cache", o.url("/no-cache"), json!({})),
        simple("max-age-0", o.url("/max-age-0"), json!({})),
    ]))
    .await;
    for case in ["no-cache", "max-age-0"] {
        let path = format!("/{case}");
        let first = ok(&app, case).await;
        assert_eq!(cache_label(&first), "miss", "{case}: it is stored");
        for call in 2..=3 {
            let again = ok(&app, case).await;
            assert_eq!(again.body, first.body, "{case}: the stored body");
            assert_eq!(cache_desc(&again), "Cache Revalidated", "{case}");
            assert_eq!(cache_label(&again), "revalidated", "{case}");
            assert_eq!(again.connector_timing()["cache_hit"], false);
            assert_eq!(o.count(&path), call, "{case}: every call asks the upstream");
        }
        let sent = o.requests(&path);
        assert_eq!(sent[0].header("if-none-match"), None, "{case}");
        assert_eq!(sent[1].header("if-none-match"), Some("\"v1\""), "{case}");
        assert_eq!(sent[2].header("if-none-match"), Some("\"v1\""), "{case}");
    }
    let m = metrics(&app).await;
    assert_eq!(cache_requests(&m, "no-cache", "revalidated"), 2.0, "{m}");
    assert_eq!(cache_requests(&m, "no-cache", "miss"), 1.0, "{m}");
    assert_eq!(cache_requests(&m, "max-age-0", "revalidated"), 2.0, "{m}");
}

#[actix_web::test]
async fn a_last_modified_answer_is_revalidated_with_if_modified_since() {
    const LM: &str = "Tue, 15 Nov 1994 12:45:26 GMT";
    let o = origin().await;
    o.on(
        "/lm",
        conditional(
            "if-modified-since",
            LM,
            vec![
                ("last-modified", LM.into()),
                ("cache-control", "no-cache".into()),
            ],
            Answer::status(304).header("last-modified", LM),
        ),
    );
    let app = spawn_app(connectors(vec![simple("lm", o.url("/lm"), json!({}))])).await;
    let first = ok(&app, "lm").await;
    let second = ok(&app, "lm").await;
    assert_eq!(second.body, first.body);
    assert_eq!(second.status, 200, "the stored status, not the 304");
    assert_eq!(cache_desc(&second), "Cache Revalidated");
    let sent = o.requests("/lm");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].header("if-modified-since"), None);
    assert_eq!(sent[1].header("if-modified-since"), Some(LM));
}

#[actix_web::test]
async fn a_304_with_new_freshness_makes_the_next_call_a_pure_hit() {
    let o = origin().await;
    o.on(
        "/refresh",
        conditional(
            "if-none-match",
            "\"v1\"",
            vec![
                ("etag", "\"v1\"".into()),
                ("cache-control", "no-cache".into()),
            ],
            Answer::status(304).etag("\"v1\"").cc("max-age=60"),
        ),
    );
    let app = spawn_app(connectors(vec![simple(
        "refresh",
        o.url("/refresh"),
        json!({}),
    )]))
    .await;
    let first = ok(&app, "refresh").await;
    let second = ok(&app, "refresh").await;
    assert_eq!(cache_desc(&second), "Cache Revalidated");
    let third = ok(&app, "refresh").await;
    assert_hit(&third);
    assert_eq!(third.body, first.body);
    assert_eq!(o.count("/refresh"), 2, "the hit calls nobody");
}

// ---------------------------------------------------------------------------------------
// 3. What is not stored.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn answers_a_shared_cache_may_not_store_are_fetched_every_time() {
    let o = origin().await;
    let cases: [(&str, u16, Headers); 11] = [
        (
            "no-store",
            200,
            &[("cache-control", "no-store, max-age=60")],
        ),
        ("private", 200, &[("cache-control", "private, max-age=60")]),
        (
            "vary-star",
            200,
            &[("cache-control", "max-age=60"), ("vary", "*")],
        ),
        (
            "set-cookie",
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "sid=1")],
        ),
        (
            "two-lines",
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-control", "no-store"),
            ],
        ),
        ("status-201", 201, &[("cache-control", "max-age=60")]),
        ("status-203", 203, &[("cache-control", "max-age=60")]),
        ("status-302", 302, &[("cache-control", "max-age=60")]),
        ("status-404", 404, &[("cache-control", "max-age=60")]),
        ("status-500", 500, &[("cache-control", "max-age=60")]),
        ("no-headers", 200, &[]),
    ];
    for (case, status, headers) in cases {
        o.on(&format!("/{case}"), move |r, n| {
            let mut answer = Answer::status(status).json(json!({"path": r.path, "n": n}));
            for (name, value) in headers {
                answer = answer.header(name, value);
            }
            answer
        });
    }
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|(c, _, _)| simple(c, o.url(&format!("/{c}")), json!({})))
            .collect(),
    ))
    .await;
    for (case, status, _) in cases {
        for call in 1..=2 {
            let reply = app.execute(case).await;
            if status < 400 {
                assert_eq!(reply.status, status, "{case}: {}", reply.text());
                assert_eq!(reply.json()["n"], call, "{case}: a new answer every time");
                assert_eq!(cache_label(&reply), "uncacheable", "{case}");
                assert_eq!(cache_desc(&reply), "Cache Miss", "{case}");
            }
        }
        assert_eq!(o.count(&format!("/{case}")), 2, "{case}");
    }
    let m = metrics(&app).await;
    assert_eq!(cache_requests(&m, "no-store", "uncacheable"), 2.0, "{m}");
    assert_eq!(cache_requests(&m, "no-store", "hit"), 0.0, "{m}");
}

#[actix_web::test]
async fn stored_statuses_are_200_301_and_308() {
    let o = origin().await;
    for status in [200u16, 301, 308] {
        o.on(&format!("/status-{status}"), move |_, n| {
            Answer::status(status)
                .header("location", &format!("/moved-{n}"))
                .cc("max-age=60")
                .json(json!({"n": n}))
        });
    }
    let app = spawn_app(connectors(
        [200, 301, 308]
            .iter()
            .map(|s| {
                simple(
                    &format!("status-{s}"),
                    o.url(&format!("/status-{s}")),
                    json!({}),
                )
            })
            .collect(),
    ))
    .await;
    for status in [200u16, 301, 308] {
        let case = format!("status-{status}");
        let first = app.execute(&case).await;
        assert_eq!(first.status, status, "{}", first.text());
        let second = app.execute(&case).await;
        assert_eq!(second.status, status);
        assert_hit(&second);
        assert_eq!(second.body, first.body);
        assert_eq!(o.count(&format!("/{case}")), 1, "{case}");
    }
}

#[actix_web::test]
async fn a_request_carrying_authorization_is_reused_only_when_the_answer_allows_it() {
    let o = origin().await;
    let cases: [(&str, &'static str, usize); 4] = [
        ("max-age-only", "max-age=60", 2),
        ("public", "public, max-age=60", 1),
        ("s-maxage", "s-maxage=60", 1),
        ("must-revalidate", "must-revalidate, max-age=60", 1),
    ];
    for (case, cc, _) in cases {
        o.on(&format!("/{case}"), move |r, n| {
            Answer::ok(json!({"n": n, "auth": r.header("authorization")})).cc(cc)
        });
    }
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|(c, _, _)| {
                simple(
                    c,
                    o.url(&format!("/{c}")),
                    json!({"headers": [{"key": "Authorization", "value": "Bearer static-1"}]}),
                )
            })
            .collect(),
    ))
    .await;
    for (case, _, calls) in cases {
        let first = ok(&app, case).await;
        assert_eq!(first.json()["auth"], "Bearer static-1");
        let second = ok(&app, case).await;
        assert_eq!(o.count(&format!("/{case}")), calls, "{case}");
        if calls == 1 {
            assert_hit(&second);
        } else {
            assert_eq!(cache_label(&second), "uncacheable", "{case}");
        }
    }
}

#[actix_web::test]
async fn post_connectors_are_never_cached() {
    let o = origin().await;
    o.on(
        "/post",
        numbered(&[("cache-control", "public, max-age=60")]),
    );
    let app = spawn_app(connectors(vec![simple(
        "post",
        o.url("/post"),
        json!({"method": "POST", "request_body": "{\"q\": 1}"}),
    )]))
    .await;
    for call in 1..=2 {
        let reply = app
            .call("POST", "/connectors/post/execute", Some("{}"), &[])
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["n"], call);
        assert_eq!(cache_label(&reply), "off");
    }
    assert_eq!(o.count("/post"), 2);
    assert_eq!(o.requests("/post")[1].method, "POST");
}

#[actix_web::test]
async fn cache_off_on_a_connector_or_a_step_disables_caching() {
    let o = origin().await;
    o.on("/off", numbered(&[("cache-control", "public, max-age=60")]));
    o.on(
        "/step-off",
        numbered(&[("cache-control", "public, max-age=60")]),
    );
    o.on(
        "/step-on",
        numbered(&[("cache-control", "public, max-age=60")]),
    );
    let registry = json!({
        "connectors": [simple("off", o.url("/off"), json!({"cache": "off"}))],
        "composite_connectors": [{
            "name": "Chain", "permalink": "chain",
            "steps": [
                {"name": "cached", "url": o.url("/step-on")},
                {"name": "uncached", "url": o.url("/step-off"), "cache": "off"}
            ]
        }]
    });
    let app = spawn_app(registry).await;
    for call in 1..=2 {
        let reply = ok(&app, "off").await;
        assert_eq!(reply.json()["n"], call);
        assert_eq!(cache_label(&reply), "off");
        assert_eq!(cache_desc(&reply), "Cache Miss");
    }
    assert_eq!(o.count("/off"), 2);
    for _ in 0..2 {
        let reply = app.composite("chain", "", "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(o.count("/step-on"), 1, "the other step is cached");
    assert_eq!(o.count("/step-off"), 2, "cache: off on the step");
    let m = metrics(&app).await;
    assert_eq!(cache_requests(&m, "off", "hit"), 0.0, "{m}");
    assert_eq!(cache_requests(&m, "off", "miss"), 0.0, "{m}");
}

// ---------------------------------------------------------------------------------------
// 4. Keys.
// ---------------------------------------------------------------------------------------

/// An app with connector `keyed` on `/keyed` whose api_key (placed `in`) is the caller's
/// `?key=`: the rendered request is the same for every caller, only the credential differs.
/// The upstream answers which key it saw, cacheable for a minute.
async fn keyed_by_api_key(placement: &str) -> (Origin, TestApp) {
    let o = origin().await;
    o.on("/keyed", |r, n| {
        let key = r.header("x-api-key").map(str::to_string).or_else(|| {
            r.query_pairs()
                .into_iter()
                .find(|(k, _)| k == "api_key")
                .map(|(_, v)| v)
        });
        Answer::ok(json!({"key": key, "n": n})).cc("max-age=60")
    });
    let name = if placement == "header" {
        "X-Api-Key"
    } else {
        "api_key"
    };
    let app = spawn_app(connectors(vec![simple(
        "keyed",
        o.url("/keyed"),
        json!({"authentication": {"type": "api_key", "config": {
            "key": name, "value": "{{ request.query_parameters.key }}", "in": placement}}}),
    )]))
    .await;
    (o, app)
}

/// Calls `keyed` as alice, bob, alice, bob, carol: each gets the answer for its own key.
async fn call_with_each_key(app: &TestApp) {
    for key in ["alice", "bob", "alice", "bob", "carol"] {
        let reply = app
            .get(&format!("/connectors/keyed/execute?key={key}"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["key"], key, "{key} gets its own answer");
    }
}

#[actix_web::test]
async fn answers_for_different_api_keys_never_mix() {
    let (o, app) = keyed_by_api_key("header").await;
    call_with_each_key(&app).await;
    assert_eq!(o.count("/keyed"), 3, "one upstream call per key");
    let (_o, app) = keyed_by_api_key("query").await;
    call_with_each_key(&app).await;
}

#[actix_web::test]
async fn an_answer_for_an_api_key_in_the_query_is_reused_for_that_key() {
    let (o, app) = keyed_by_api_key("query").await;
    call_with_each_key(&app).await;
    assert_eq!(o.count("/keyed"), 3, "one upstream call per key");
}

const ISS: &str = "https://members.example.com/";
const AUD: &str = "widgets";

fn member_token(sub: &str, first_name: &str) -> String {
    sign(
        Algorithm::RS256,
        RSA.0,
        "rsa-1",
        &json!({"iss": ISS, "aud": AUD, "sub": sub, "given_name": first_name,
                "exp": now() + 300, "iat": now()}),
    )
}

#[actix_web::test]
async fn answers_for_different_members_never_mix() {
    let idp = Idp::start(&json!({"keys": [jwk(RSA.1, "rsa-1", Some("RS256"))]})).await;
    let o = origin().await;
    o.on("/member", |r, n| {
        Answer::ok(json!({"member": r.header("x-member"), "n": n})).cc("public, max-age=60")
    });
    o.on("/member-key", |r, n| {
        Answer::ok(json!({"key": r.header("x-api-key"), "n": n})).cc("public, max-age=60")
    });
    o.on("/shared", |_, n| {
        Answer::ok(json!({"n": n})).cc("public, max-age=60")
    });
    let registry = connectors(vec![
        simple(
            "member",
            o.url("/member"),
            json!({"headers": [{"key": "X-Member", "value": "{{ user.id }}"}]}),
        ),
        // Only the credential names the member.
        simple(
            "member-key",
            o.url("/member-key"),
            json!({"authentication": {"type": "api_key", "config": {
                "key": "X-Api-Key", "value": "key-for-{{ user.id }}", "in": "header"}}}),
        ),
        // The upstream answer is shared; what each member sees is rendered per call.
        simple(
            "greeting",
            o.url("/shared"),
            json!({"response_body":
                "{\"hello\": {{ user.first_name | tojson }}, \"n\": {{ (response.body | from_json).n }}}"}),
        ),
    ]);
    let url = idp.jwks_url();
    let app = spawn_app_with(
        registry,
        AppOptions::default().flags(move |f: &mut ServeArgs| {
            f.identity.identity_issuer = Some(ISS.into());
            f.identity.identity_jwks_url = Some(url);
            f.identity.identity_audience = Some(AUD.into());
        }),
    )
    .await;
    let members = [("m-1", "Ada"), ("m-2", "Grace")];
    for round in 0..2 {
        for (sub, first_name) in members {
            let auth = format!("Bearer {}", member_token(sub, first_name));
            let call = |permalink: &'static str| {
                let auth = auth.clone();
                let app = &app;
                async move {
                    let reply = app
                        .call(
                            "GET",
                            &format!("/connectors/{permalink}/execute"),
                            None,
                            &[("Authorization", &auth)],
                        )
                        .await;
                    assert_eq!(reply.status, 200, "{permalink}: {}", reply.text());
                    reply
                }
            };
            let member = call("member").await;
            assert_eq!(member.json()["member"], sub);
            let keyed = call("member-key").await;
            assert_eq!(keyed.json()["key"], format!("key-for-{sub}"));
            let greeting = call("greeting").await;
            assert_eq!(greeting.json()["hello"], first_name);
            assert_eq!(greeting.json()["n"], 1, "one upstream answer for all");
            if round == 1 {
                assert_hit(&member);
                assert_hit(&keyed);
            }
        }
    }
    assert_eq!(o.count("/member"), 2, "one call per member");
    assert_eq!(o.count("/member-key"), 2, "one call per member");
    assert_eq!(o.count("/shared"), 1);
}

#[actix_web::test]
async fn vary_keeps_an_entry_per_rendered_header_value() {
    let o = origin().await;
    o.on("/greeting", |r, n| {
        let word = match r.header("accept-language") {
            Some("de") => "Hallo",
            _ => "Hello",
        };
        Answer::ok(json!({"greeting": word, "n": n}))
            .cc("max-age=60")
            .header("vary", "Accept-Language")
    });
    let app = spawn_app(connectors(vec![simple(
        "greeting",
        o.url("/greeting"),
        json!({"headers": [{"key": "Accept-Language", "value": "en", "overridable": true}]}),
    )]))
    .await;
    let call = |lang: &'static str| {
        let app = &app;
        async move {
            let reply = app
                .call(
                    "GET",
                    "/connectors/greeting/execute",
                    None,
                    &[("Accept-Language", lang)],
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply
        }
    };
    let en = call("en").await;
    let de = call("de").await;
    assert_eq!(en.json()["greeting"], "Hello");
    assert_eq!(de.json()["greeting"], "Hallo");
    for _ in 0..2 {
        let en_again = call("en").await;
        assert_hit(&en_again);
        assert_eq!(en_again.body, en.body);
        let de_again = call("de").await;
        assert_hit(&de_again);
        assert_eq!(de_again.body, de.body);
    }
    let sent = o.requests("/greeting");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].header("accept-language"), Some("en"));
    assert_eq!(sent[1].header("accept-language"), Some("de"));
}

// ---------------------------------------------------------------------------------------
// 5. A hit runs no authentication.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_cache_hit_fetches_no_token_and_survives_a_token_endpoint_outage() {
    let o = origin().await;
    let down = Arc::new(AtomicBool::new(false));
    let endpoint_down = down.clone();
    // expires_in 60 is within the token cache's 60 s margin: every token is fetched anew.
    o.on("/oauth/token", move |_, n| {
        if endpoint_down.load(Ordering::SeqCst) {
            return Answer::status(503).json(json!({"error": "down"}));
        }
        Answer::ok(
            json!({"access_token": format!("tok-{n}"), "token_type": "Bearer",
                          "expires_in": 60}),
        )
    });
    for path in ["/data", "/data-off"] {
        o.on(path, |r, n| {
            Answer::ok(json!({"auth": r.header("authorization"), "n": n})).cc("public, max-age=60")
        });
    }
    let auth = json!({"authentication": {"type": "oauth_client_credentials", "config": {
        "client_id": "cid", "client_secret": "{{ get_secret('cs') }}",
        "token_url": o.url("/oauth/token")}}});
    let mut off = auth.clone();
    off["cache"] = json!("off");
    let app = spawn_app_with(
        connectors(vec![
            simple("data", o.url("/data"), auth),
            simple("data-off", o.url("/data-off"), off),
        ]),
        AppOptions::default().secret("cs", "s3"),
    )
    .await;
    let first = ok(&app, "data").await;
    assert_eq!(first.json()["auth"], "Bearer tok-1");
    assert_eq!(o.count("/oauth/token"), 1);
    // The uncached twin shows that tokens are not kept: each call fetches one.
    assert_eq!(ok(&app, "data-off").await.json()["auth"], "Bearer tok-2");
    assert_eq!(o.count("/oauth/token"), 2);
    for _ in 0..3 {
        let hit = ok(&app, "data").await;
        assert_hit(&hit);
        assert_eq!(hit.body, first.body);
    }
    assert_eq!(o.count("/oauth/token"), 2, "a hit fetches no token");
    down.store(true, Ordering::SeqCst);
    let hit = ok(&app, "data").await;
    assert_hit(&hit);
    assert_eq!(hit.body, first.body);
    let refused = app.execute("data-off").await;
    assert!(
        refused.status >= 500,
        "without the cache the token endpoint's outage fails the call: {}",
        refused.text()
    );
    assert_eq!(o.count("/data"), 1);
}

// ---------------------------------------------------------------------------------------
// 6. cache_ttl_seconds.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn cache_ttl_seconds_gives_freshness_but_the_upstreams_no_store_wins() {
    let o = origin().await;
    o.on("/plain", numbered(&[]));
    o.on("/no-store", numbered(&[("cache-control", "no-store")]));
    o.on("/no-cache", numbered(&[("cache-control", "no-cache")]));
    o.on("/private", numbered(&[("cache-control", "private")]));
    o.on("/explicit", numbered(&[("cache-control", "max-age=0")]));
    let cases = [
        ("plain", 1),
        ("no-store", 2),
        ("no-cache", 2),
        ("private", 2),
        ("explicit", 2),
    ];
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|(c, _)| simple(c, o.url(&format!("/{c}")), json!({"cache_ttl_seconds": 60})))
            .collect(),
    ))
    .await;
    for (case, calls) in cases {
        let first = ok(&app, case).await;
        let second = ok(&app, case).await;
        assert_eq!(o.count(&format!("/{case}")), calls, "{case}");
        if calls == 1 {
            assert_hit(&second);
            assert_eq!(second.body, first.body);
        } else {
            assert_not_hit(&second);
        }
    }
}

#[actix_web::test]
async fn a_composite_step_with_cache_ttl_seconds_is_served_from_the_cache_and_says_so() {
    let o = origin().await;
    o.on("/config", numbered(&[]));
    o.on("/live", numbered(&[]));
    let registry = json!({"composite_connectors": [{
        "name": "Dashboard", "permalink": "dashboard",
        "steps": [
            {"name": "config", "url": o.url("/config"), "cache_ttl_seconds": 60},
            {"name": "live", "url": o.url("/live"),
             "query_parameters": [{"key": "n", "value": "{{ (steps.config.body | from_json).n }}"}]}
        ]
    }]});
    let app = spawn_app(registry).await;
    let step_entries = |reply: &Reply| -> Vec<(String, String)> {
        parse_server_timing(&reply.header("server-timing").unwrap())
            .into_iter()
            .map(|e| (e.name, e.desc))
            .collect()
    };
    let first = app.composite("dashboard", "", "").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        step_entries(&first)[..2],
        [
            (
                "step.config".to_string(),
                "Step: config (Cache Miss)".to_string()
            ),
            ("step.live".to_string(), "Step: live".to_string()),
        ]
    );
    let timing = first.connector_timing();
    assert_eq!(timing["steps"][0]["cache"], "miss");
    assert_eq!(
        timing["steps"][1].get("cache"),
        None,
        "uncacheable: no cache key"
    );
    let second = app.composite("dashboard", "", "").await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        step_entries(&second)[..2],
        [
            (
                "step.config".to_string(),
                "Step: config (Cache Hit)".to_string()
            ),
            ("step.live".to_string(), "Step: live".to_string()),
        ]
    );
    let timing = second.connector_timing();
    assert_eq!(timing["steps"][0]["cache"], "hit", "{timing}");
    assert_eq!(timing["steps"][1].get("cache"), None);
    assert_eq!(o.count("/config"), 1);
    assert_eq!(o.count("/live"), 2);
    // The later step read the stored answer.
    assert_eq!(o.requests("/live")[1].query, "n=1");
    let m = metrics(&app).await;
    assert_eq!(cache_requests(&m, "dashboard", "hit"), 1.0, "{m}");
}

#[actix_web::test]
async fn a_composite_step_revalidated_with_a_304_says_so() {
    let o = origin().await;
    o.on(
        "/etag",
        conditional(
            "if-none-match",
            "\"s1\"",
            vec![
                ("etag", "\"s1\"".into()),
                ("cache-control", "no-cache".into()),
            ],
            Answer::status(304).etag("\"s1\""),
        ),
    );
    let registry = json!({"composite_connectors": [{
        "name": "One", "permalink": "one",
        "steps": [{"name": "fetch", "url": o.url("/etag")}]
    }]});
    let app = spawn_app(registry).await;
    let first = app.composite("one", "", "").await;
    let second = app.composite("one", "", "").await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.body, first.body);
    let entries = parse_server_timing(&second.header("server-timing").unwrap());
    assert_eq!(entries[0].desc, "Step: fetch (Cache Revalidated)");
    assert_eq!(
        second.connector_timing()["steps"][0]["cache"],
        "revalidated"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Concurrent misses.
// ---------------------------------------------------------------------------------------

const CALLERS: usize = 20;

#[actix_web::test]
async fn concurrent_misses_for_a_storable_answer_send_one_request() {
    let o = origin().await;
    o.on("/slow", |_, n| {
        Answer::ok(json!({"n": n}))
            .cc("max-age=60")
            .after(Duration::from_millis(300))
    });
    let app = spawn_app(connectors(vec![simple("slow", o.url("/slow"), json!({}))])).await;
    let replies = futures_util::future::join_all((0..CALLERS).map(|_| app.execute("slow"))).await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.json(),
            json!({"n": 1}),
            "every caller shares the one answer"
        );
    }
    assert_eq!(o.count("/slow"), 1);
    let misses = replies.iter().filter(|r| cache_label(r) == "miss").count();
    assert_eq!(misses, 1, "one leader; the others are hits");
}

#[actix_web::test]
async fn concurrent_misses_for_an_unstorable_answer_each_send_their_own() {
    const DELAY: Duration = Duration::from_millis(300);
    let o = origin().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let log = arrivals.clone();
    o.on("/slow", move |_, n| {
        log.lock().unwrap().push(Instant::now());
        Answer::ok(json!({"n": n})).after(DELAY)
    });
    let app = spawn_app(connectors(vec![simple("slow", o.url("/slow"), json!({}))])).await;
    let replies = futures_util::future::join_all((0..CALLERS).map(|_| app.execute("slow"))).await;
    let mut seen: Vec<u64> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(cache_label(reply), "uncacheable");
            reply.json()["n"].as_u64().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=CALLERS as u64).collect::<Vec<_>>(),
        "own answers"
    );
    assert_eq!(o.count("/slow"), CALLERS);
    // From now on the key goes straight upstream: a later burst waits for no leader, so
    // its requests reach the upstream together rather than one, then the rest a DELAY later.
    let later = futures_util::future::join_all((0..CALLERS).map(|_| app.execute("slow"))).await;
    assert!(later.iter().all(|r| r.status == 200));
    assert_eq!(o.count("/slow"), 2 * CALLERS);
    let arrivals = arrivals.lock().unwrap();
    let burst = &arrivals[CALLERS..];
    let spread = *burst.iter().max().unwrap() - *burst.iter().min().unwrap();
    assert!(
        spread < DELAY / 2,
        "callers of a pass key do not queue behind one another: spread {spread:?}"
    );
}

#[actix_web::test]
async fn a_key_whose_answer_was_unstorable_is_stored_once_the_upstream_allows_it() {
    let o = origin().await;
    o.on("/later", |_, n| {
        let answer = Answer::ok(json!({"n": n}));
        if n >= 2 {
            answer.cc("max-age=60")
        } else {
            answer
        }
    });
    let app = spawn_app(connectors(vec![simple(
        "later",
        o.url("/later"),
        json!({}),
    )]))
    .await;
    assert_eq!(cache_label(&ok(&app, "later").await), "uncacheable");
    assert_eq!(cache_label(&ok(&app, "later").await), "miss");
    let third = ok(&app, "later").await;
    assert_hit(&third);
    assert_eq!(third.json()["n"], 2);
    assert_eq!(o.count("/later"), 2);
}

// ---------------------------------------------------------------------------------------
// 8. Bad input from the upstream: never a 5xx, never a stale answer served as fresh.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn malformed_freshness_is_never_taken_as_fresh() {
    let o = origin().await;
    // (A max-age beyond u64 is RFC 9111's "very long", not malformed:
    // a_max_age_beyond_u64_is_taken_as_very_long.)
    let cases: [(&str, Headers); 5] = [
        ("negative", &[("cache-control", "max-age=-5")]),
        ("garbage-expires", &[("expires", "garbage")]),
        ("zero-expires", &[("expires", "0")]),
        ("empty-max-age", &[("cache-control", "max-age=")]),
        ("quoted-garbage", &[("cache-control", "max-age=\"soon\"")]),
    ];
    for (case, headers) in cases {
        o.on(&format!("/{case}"), numbered(headers));
    }
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|(c, _)| simple(c, o.url(&format!("/{c}")), json!({})))
            .collect(),
    ))
    .await;
    for (case, _) in cases {
        for call in 1..=2 {
            let reply = app.execute(case).await;
            no_5xx(&reply);
            assert_eq!(reply.status, 200, "{case}");
            assert_eq!(reply.json()["n"], call, "{case}: not served from the cache");
        }
        assert_eq!(o.count(&format!("/{case}")), 2, "{case}");
    }
}

#[actix_web::test]
async fn odd_but_valid_freshness_is_honoured() {
    let o = origin().await;
    let cases: [(&str, Headers); 2] = [
        (
            "unknown-directives",
            &[("cache-control", "foo, max-age=60, bar=baz")],
        ),
        (
            "u64-max",
            &[("cache-control", "max-age=18446744073709551615")],
        ),
    ];
    for (case, headers) in cases {
        o.on(&format!("/{case}"), numbered(headers));
    }
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|(c, _)| simple(c, o.url(&format!("/{c}")), json!({})))
            .collect(),
    ))
    .await;
    for (case, _) in cases {
        let first = ok(&app, case).await;
        let second = ok(&app, case).await;
        assert_hit(&second);
        assert_eq!(second.body, first.body, "{case}");
        assert_eq!(o.count(&format!("/{case}")), 1, "{case}");
    }
}

#[actix_web::test]
async fn cache_control_directive_names_are_case_insensitive() {
    let o = origin().await;
    let cases: [(&str, &'static str, usize); 4] = [
        ("no-store", "NO-STORE, max-age=60", 2),
        ("private", "Private, max-age=60", 2),
        ("no-cache", "No-Cache, max-age=60", 2),
        ("max-age", "MAX-AGE=60", 1),
    ];
    for (case, cc, _) in cases {
        o.on(&format!("/{case}"), move |_, n| {
            Answer::ok(json!({"n": n})).cc(cc)
        });
    }
    let app = spawn_app(connectors(
        cases
            .iter()
            .map(|(c, _, _)| simple(c, o.url(&format!("/{c}")), json!({})))
            .collect(),
    ))
    .await;
    let mut wrong = Vec::new();
    for (case, cc, calls) in cases {
        ok(&app, case).await;
        ok(&app, case).await;
        if o.count(&format!("/{case}")) != calls {
            wrong.push(format!(
                "{cc}: {} upstream calls, not {calls}",
                o.count(&format!("/{case}"))
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[actix_web::test]
async fn an_unquoted_etag_is_revalidated_as_sent() {
    let o = origin().await;
    o.on(
        "/bare",
        conditional(
            "if-none-match",
            "v1",
            vec![("etag", "v1".into()), ("cache-control", "no-cache".into())],
            Answer::status(304).etag("v1"),
        ),
    );
    let app = spawn_app(connectors(vec![simple("bare", o.url("/bare"), json!({}))])).await;
    let first = ok(&app, "bare").await;
    let second = app.execute("bare").await;
    no_5xx(&second);
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);
    assert_eq!(o.requests("/bare")[1].header("if-none-match"), Some("v1"));
}

#[actix_web::test]
async fn a_304_to_an_unconditional_request_is_passed_on_and_never_stored() {
    let o = origin().await;
    o.on("/always-304", |_, _| {
        Answer::status(304).etag("\"x\"").cc("max-age=60")
    });
    let app = spawn_app(connectors(vec![simple(
        "always-304",
        o.url("/always-304"),
        json!({}),
    )]))
    .await;
    for _ in 0..2 {
        let reply = app.execute("always-304").await;
        no_5xx(&reply);
        assert_ne!(cache_label(&reply), "hit");
    }
    let sent = o.requests("/always-304");
    assert_eq!(sent.len(), 2, "a 304 is never stored");
    assert_eq!(
        sent[1].header("if-none-match"),
        None,
        "nothing to revalidate"
    );
}

#[actix_web::test]
async fn a_304_naming_another_validator_is_followed_by_a_plain_request() {
    let o = origin().await;
    o.on("/changed", |r, n| {
        if r.header("if-none-match").is_some() {
            // Claims "not modified" but names a representation the cache never stored.
            return Answer::status(304).etag("\"v2\"").cc("no-cache");
        }
        Answer::ok(json!({"n": n}))
            .etag(&format!("\"v{n}\""))
            .cc("no-cache")
    });
    // A 304 with no validator at all for an answer that had one: not a match either.
    o.on("/bare-304", |r, n| {
        if r.header("if-modified-since").is_some() {
            return Answer::status(304);
        }
        Answer::ok(json!({"n": n}))
            .header("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")
            .cc("no-cache")
    });
    let app = spawn_app(connectors(vec![
        simple("changed", o.url("/changed"), json!({})),
        simple("bare-304", o.url("/bare-304"), json!({})),
    ]))
    .await;
    assert_eq!(ok(&app, "changed").await.json()["n"], 1);
    let second = app.execute("changed").await;
    no_5xx(&second);
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json()["n"], 3, "the answer to the plain request");
    assert_ne!(cache_desc(&second), "Cache Revalidated");
    let sent = o.requests("/changed");
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(sent[2].header("if-none-match"), None, "the retry is plain");

    assert_eq!(ok(&app, "bare-304").await.json()["n"], 1);
    let second = app.execute("bare-304").await;
    no_5xx(&second);
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json()["n"], 3);
    assert_eq!(o.count("/bare-304"), 3);
}

/// An 8 KiB JSON body.
fn big_body(n: usize) -> Value {
    json!({"n": n, "pad": "x".repeat(8 * 1024)})
}

#[actix_web::test]
async fn a_304_for_an_entry_evicted_meanwhile_still_serves_the_answer() {
    let o = origin().await;
    // The revalidation is answered only once the fillers are done, so the entry it
    // revalidates can be evicted while it is in flight.
    let (asked, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (was_asked, released) = (asked.clone(), release.clone());
    o.on("/slow-etag", move |r, n| {
        match (r.header("if-none-match"), n) {
            (Some("\"e1\""), 2) => {
                was_asked.notify_one();
                return Answer::status(304).etag("\"e1\"").when(&released);
            }
            (Some("\"e1\""), _) => return Answer::status(304).etag("\"e1\""),
            _ => {}
        }
        Answer::ok(big_body(n)).etag("\"e1\"").cc("no-cache")
    });
    o.on("/filler", |_, n| Answer::ok(big_body(n)).cc("max-age=60"));
    let app = spawn_app_with(
        json!({"connectors": [
            simple("slow-etag", o.url("/slow-etag"), json!({})),
            {"name": "filler", "permalink": "filler", "url": o.url("/filler"),
             "query_parameters": [{"key": "k", "value": "{{ request.query_parameters.k }}"}]}
        ]}),
        // Room for about one answer per shard of the cache: the fillers evict.
        AppOptions::default().flags(|f: &mut ServeArgs| f.response_cache_bytes = 128 * 1024),
    )
    .await;
    let first = app.execute("slow-etag").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let revalidating = app.execute("slow-etag");
    let filling = async {
        asked.notified().await;
        for k in 0..40 {
            no_5xx(&app.get(&format!("/connectors/filler/execute?k={k}")).await);
        }
        release.notify_one();
    };
    let (second, ()) = tokio::join!(revalidating, filling);
    let m = metrics(&app).await;
    assert!(
        metric_sum(&m, "connector_response_cache_evictions_total", &[]) > 0.0,
        "the fillers evicted: {m}"
    );
    no_5xx(&second);
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        second.body, first.body,
        "the 304 serves the body it validated"
    );
    // And again: revalidated if the refreshed answer the 304 stored again is still held
    // (the cache may evict it at once to stay within its bound), else fetched anew with a
    // plain request; never a 304 or an empty body to the caller.
    let third = app.execute("slow-etag").await;
    no_5xx(&third);
    assert_eq!(third.status, 200, "{}", third.text());
    let last = o.requests("/slow-etag").pop().unwrap();
    match cache_label(&third).as_str() {
        "revalidated" => {
            assert_eq!(third.body, first.body);
            assert_eq!(last.header("if-none-match"), Some("\"e1\""));
        }
        "miss" => {
            assert_eq!(third.json()["n"], 3);
            assert_eq!(last.header("if-none-match"), None);
        }
        other => panic!("{other}: {}", third.text()),
    }
}

#[actix_web::test]
async fn an_age_too_big_to_add_to_is_never_a_5xx() {
    let o = origin().await;
    o.on(
        "/old",
        conditional(
            "if-none-match",
            "\"o1\"",
            vec![
                ("etag", "\"o1\"".into()),
                ("cache-control", "max-age=60".into()),
                ("age", "18446744073709551615".into()),
            ],
            Answer::status(304).etag("\"o1\""),
        ),
    );
    let app = spawn_app(connectors(vec![simple("old", o.url("/old"), json!({}))])).await;
    let first = ok(&app, "old").await;
    outlive_one_second().await;
    for _ in 0..2 {
        let reply = app.execute("old").await;
        no_5xx(&reply);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.body, first.body);
    }
}

#[actix_web::test]
async fn a_max_age_beyond_u64_is_taken_as_very_long() {
    let o = origin().await;
    o.on(
        "/huge",
        numbered(&[("cache-control", "max-age=99999999999999999999")]),
    );
    let app = spawn_app(connectors(vec![simple("huge", o.url("/huge"), json!({}))])).await;
    let first = ok(&app, "huge").await;
    let second = ok(&app, "huge").await;
    assert_eq!(second.body, first.body);
    assert_eq!(o.count("/huge"), 1);
}

// ---------------------------------------------------------------------------------------
// 9. Bounded size.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_cache_stays_within_its_bytes_and_evicts_to_do_so() {
    const BOUND: u64 = 256 * 1024;
    let o = origin().await;
    o.on("/big", |r, n| {
        Answer::ok(json!({"q": r.query, "n": n, "pad": "x".repeat(8 * 1024)})).cc("max-age=60")
    });
    let app = spawn_app_with(
        json!({"connectors": [{"name": "big", "permalink": "big", "url": o.url("/big"),
            "query_parameters": [{"key": "k", "value": "{{ request.query_parameters.k }}"}]}]}),
        AppOptions::default().flags(|f: &mut ServeArgs| f.response_cache_bytes = BOUND),
    )
    .await;
    for k in 0..64 {
        let path = format!("/connectors/big/execute?k={k}");
        let first = app.get(&path).await;
        assert_eq!(first.status, 200, "{}", first.text());
        // Just stored: still there.
        let again = app.get(&path).await;
        assert_hit(&again);
        assert_eq!(again.body, first.body);
    }
    let m = metrics(&app).await;
    let evictions = metric_sum(&m, "connector_response_cache_evictions_total", &[]);
    let bytes = metric_sum(&m, "connector_response_cache_bytes", &[]);
    assert!(evictions > 0.0, "64 answers of 8 KiB overflow 256 KiB: {m}");
    assert!(bytes > 0.0, "{m}");
    assert!(bytes <= BOUND as f64, "{bytes} bytes held, bound {BOUND}");
    assert_eq!(o.count("/big"), 64);
}

#[actix_web::test]
async fn a_tiny_cache_evicts_and_never_fails_a_call() {
    let o = origin().await;
    o.on("/big", |_, n| Answer::ok(big_body(n)).cc("max-age=60"));
    let app = spawn_app_with(
        json!({"connectors": [{"name": "big", "permalink": "big", "url": o.url("/big"),
            "query_parameters": [{"key": "k", "value": "{{ request.query_parameters.k }}"}]}]}),
        AppOptions::default().flags(|f: &mut ServeArgs| f.response_cache_bytes = 20 * 1024),
    )
    .await;
    for k in 0..8 {
        let reply = app.get(&format!("/connectors/big/execute?k={k}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let m = metrics(&app).await;
    assert!(
        metric_sum(&m, "connector_response_cache_evictions_total", &[]) > 0.0,
        "{m}"
    );
    assert!(metric_sum(&m, "connector_response_cache_bytes", &[]) <= 20.0 * 1024.0);
}

#[actix_web::test]
async fn an_answer_an_eighth_of_the_bound_is_stored() {
    let o = origin().await;
    o.on("/big", |_, n| Answer::ok(big_body(n)).cc("max-age=60"));
    let app = spawn_app_with(
        connectors(vec![simple("big", o.url("/big"), json!({}))]),
        AppOptions::default().flags(|f: &mut ServeArgs| f.response_cache_bytes = 64 * 1024),
    )
    .await;
    let first = ok(&app, "big").await;
    let second = ok(&app, "big").await;
    assert_hit(&second);
    assert_eq!(second.body, first.body);
    assert_eq!(o.count("/big"), 1);
}

// ---------------------------------------------------------------------------------------
// 10. HEAD.
// ---------------------------------------------------------------------------------------

/// `HEAD /connectors/head/execute`, which must answer 200.
async fn call_head(app: &TestApp) -> Reply {
    let reply = app
        .call("HEAD", "/connectors/head/execute", None, &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
}

#[actix_web::test]
async fn head_connectors_are_cached_apart_from_get_connectors() {
    let o = origin().await;
    o.on("/resource", |_, n| {
        Answer::ok(json!({"n": n, "pad": "some bytes"})).cc("max-age=60")
    });
    let app = spawn_app(connectors(vec![
        simple("get", o.url("/resource"), json!({})),
        simple("head", o.url("/resource"), json!({"method": "HEAD"})),
    ]))
    .await;
    let get = ok(&app, "get").await;
    assert_eq!(get.json()["n"], 1);
    let first_head = call_head(&app).await;
    assert_eq!(
        cache_label(&first_head),
        "miss",
        "the GET answer is not the HEAD's"
    );
    assert_eq!(first_head.header("content-length").as_deref(), Some("0"));
    for _ in 0..2 {
        let get_again = ok(&app, "get").await;
        assert_hit(&get_again);
        assert_eq!(get_again.body, get.body);
        let head_again = call_head(&app).await;
        assert_hit(&head_again);
        assert_eq!(
            head_again.header("content-length").as_deref(),
            Some("0"),
            "never the GET body"
        );
    }
    let methods: Vec<String> = o
        .requests("/resource")
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, ["GET", "HEAD"]);
}

// ---------------------------------------------------------------------------------------
// Found while testing.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn cache_ttl_seconds_still_applies_after_a_revalidation() {
    let o = origin().await;
    o.on(
        "/etag-only",
        conditional(
            "if-none-match",
            "\"t1\"",
            vec![("etag", "\"t1\"".into())],
            Answer::status(304).etag("\"t1\""),
        ),
    );
    let app = spawn_app(connectors(vec![simple(
        "ttl",
        o.url("/etag-only"),
        json!({"cache_ttl_seconds": 1}),
    )]))
    .await;
    let first = ok(&app, "ttl").await;
    assert_hit(&ok(&app, "ttl").await);
    outlive_one_second().await;
    let revalidated = ok(&app, "ttl").await;
    assert_eq!(cache_desc(&revalidated), "Cache Revalidated");
    assert_eq!(revalidated.body, first.body);
    // The upstream still gives no freshness: cache_ttl_seconds gives it a second again.
    let after = ok(&app, "ttl").await;
    assert_hit(&after);
    assert_eq!(o.count("/etag-only"), 2);
}

#[actix_web::test]
async fn an_answer_varying_on_the_credential_header_is_reused_for_that_credential() {
    let o = origin().await;
    o.on("/keyed", |r, n| {
        Answer::ok(json!({"key": r.header("x-api-key"), "n": n}))
            .cc("max-age=60")
            .header("vary", "X-Api-Key")
    });
    let app = spawn_app_with(
        connectors(vec![simple(
            "keyed",
            o.url("/keyed"),
            json!({"authentication": {"type": "api_key", "config": {
                "key": "X-Api-Key", "value": "{{ get_secret('k') }}", "in": "header"}}}),
        )]),
        AppOptions::default().secret("k", "k-1"),
    )
    .await;
    let first = ok(&app, "keyed").await;
    assert_eq!(first.json()["key"], "k-1");
    let second = ok(&app, "keyed").await;
    assert_hit(&second);
    assert_eq!(o.count("/keyed"), 1);
}

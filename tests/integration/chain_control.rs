//! Chain control (docs/spec.md §12, /work/chain-decisions.md) through the real server: parallel
//! execution and `depends_on`, `when`, `on_error`, `for_each` / `max_concurrency`, `retry`,
//! `timeout_ms`, the composite `response_body`, the load-time rules, cancellation, and the
//! step metrics. The upstream is a real actix server on 127.0.0.1 (the "lab") that records
//! when each request arrived and finished, whether its caller dropped it, and how many were
//! in flight at once.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::header::HttpDate;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use connector_runtime::config::ServeArgs;
use connector_runtime::server::{build_options, Application};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::process::{metric_sum, ServerProcess};
use crate::common::upstreams::Received;
use crate::common::{
    assert_envelope, closed_port, parse_server_timing, post_url, spawn_app, spawn_app_with,
    AppOptions, Reply, NETWORK_SCOPE,
};

// ---------------------------------------------------------------------------------------
// The lab upstream
// ---------------------------------------------------------------------------------------

/// One request the lab received.
#[derive(Debug, Clone)]
struct Call {
    /// The request as every upstream of the tests records it.
    seen: Received,
    /// When it arrived, from the lab's start.
    start: Duration,
    /// When the lab answered it (`None`: not yet, or dropped).
    end: Option<Duration>,
    /// Its caller went away before the answer (the handler was dropped mid-wait).
    dropped: bool,
}

impl std::ops::Deref for Call {
    type Target = Received;

    fn deref(&self) -> &Received {
        &self.seen
    }
}

impl Call {
    /// The query as a map (the last value of a repeated key).
    fn query_map(&self) -> HashMap<String, String> {
        self.query_pairs().into_iter().collect()
    }

    #[track_caller]
    fn end(&self) -> Duration {
        self.end
            .unwrap_or_else(|| panic!("{} was never answered: {self:?}", self.path))
    }
}

/// Whether two answered calls were in flight at the same time.
fn overlap(a: &Call, b: &Call) -> bool {
    a.start < b.end() && b.start < a.end()
}

struct LabState {
    t0: Instant,
    calls: Mutex<Vec<Call>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Ends a call: answered (`finish`) or dropped with the handler's future.
struct Pending {
    lab: web::Data<LabState>,
    id: usize,
    finished: bool,
}

impl Pending {
    fn finish(mut self) {
        let now = self.lab.t0.elapsed();
        self.lab.calls.lock().unwrap()[self.id].end = Some(now);
        self.finished = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.finished {
            self.lab.calls.lock().unwrap()[self.id].dropped = true;
        }
        self.lab.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every path of the lab answers JSON `{method, path, query, body}` after the query's
/// `delay` (ms), with status `status` (default 200); the first `fail` calls to a path
/// answer `fail_status` (default 503) instead, with `Retry-After: <retry_after>` when given
/// (or, with `retry_after_in=N`, the HTTP date N seconds from now).
async fn lab_route(req: HttpRequest, body: Bytes, lab: web::Data<LabState>) -> HttpResponse {
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let number = |key: &str, default: u64| -> u64 {
        query
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (id, earlier_calls) = {
        let mut calls = lab.calls.lock().unwrap();
        let earlier = calls.iter().filter(|c| c.path == req.path()).count();
        calls.push(Call {
            seen: Received::of(&req, &body),
            start: lab.t0.elapsed(),
            end: None,
            dropped: false,
        });
        (calls.len() - 1, earlier)
    };
    let now = lab.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    lab.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let pending = Pending {
        lab: lab.clone(),
        id,
        finished: false,
    };
    let delay = number("delay", 0);
    if delay > 0 {
        actix_rt::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = (earlier_calls as u64) < number("fail", 0);
    let status = if failing {
        number("fail_status", 503)
    } else {
        number("status", 200)
    };
    let mut answer = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status as u16).expect("a valid status"),
    );
    if failing {
        if let Some(after) = query.get("retry_after") {
            answer.insert_header(("Retry-After", after.as_str()));
        }
        if let Some(secs) = query.get("retry_after_in").and_then(|v| v.parse().ok()) {
            let at = std::time::SystemTime::now() + Duration::from_secs(secs);
            answer.insert_header(("Retry-After", HttpDate::from(at).to_string()));
        }
    }
    let reply = answer.content_type("application/json").body(
        json!({
            "method": req.method().as_str(),
            "path": req.path(),
            "query": req.query_string(),
            "body": String::from_utf8_lossy(&body),
        })
        .to_string(),
    );
    pending.finish();
    reply
}

struct Lab {
    /// `http://127.0.0.1:PORT`.
    base: String,
    state: web::Data<LabState>,
    _handle: ServerHandle,
}

impl Lab {
    /// Starts the lab on 127.0.0.1. Unlike the shared upstream helper it does not allow
    /// half-closed connections, so a caller that goes away drops its handler at once (as the
    /// runtime itself is set up, src/server.rs) and the call is seen as dropped.
    async fn start() -> Lab {
        let state = web::Data::new(LabState {
            t0: Instant::now(),
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let data = state.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/{tail:.*}", web::route().to(lab_route))
        })
        .workers(1)
        .h1_allow_half_closed(false)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Lab {
            base: format!("http://127.0.0.1:{port}"),
            state,
            _handle: handle,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `rest` (which may hold templates).
    fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    fn to(&self, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .collect()
    }

    fn count(&self, path: &str) -> usize {
        self.to(path).len()
    }

    /// The one call to `path`.
    #[track_caller]
    fn only(&self, path: &str) -> Call {
        let calls = self.to(path);
        assert_eq!(calls.len(), 1, "calls to {path}: {:#?}", self.calls());
        calls.into_iter().next().unwrap()
    }

    fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

/// The instrument itself: the lab records a call whose caller gave up as dropped and never
/// answered, and counts calls in flight together (so the cancellation and concurrency tests
/// below measure what they claim).
#[actix_web::test]
async fn the_lab_sees_dropped_calls_and_concurrency() {
    let lab = Lab::start().await;
    let address = lab.base.trim_start_matches("http://").to_string();
    let mut callers = Vec::new();
    for _ in 0..2 {
        let mut caller = TcpStream::connect(&address).await.unwrap();
        caller
            .write_all(b"GET /slow?delay=3000 HTTP/1.1\r\nHost: lab\r\n\r\n")
            .await
            .unwrap();
        callers.push(caller);
    }
    eventually(Duration::from_secs(5), "both calls to arrive", async || {
        lab.count("/slow") == 2
    })
    .await;
    drop(callers);
    eventually(
        Duration::from_secs(5),
        "the calls to be dropped",
        async || lab.to("/slow").iter().all(|c| c.dropped),
    )
    .await;
    assert_eq!(lab.count("/slow"), 2);
    assert!(lab.to("/slow").iter().all(|c| c.end.is_none()));
    assert_eq!(lab.max_in_flight(), 2);
    assert_eq!(lab.state.in_flight.load(Ordering::SeqCst), 0);

    // An HTTP client (the runtime's kind) that gives up drops the call as well.
    let client = awc::Client::builder()
        .timeout(Duration::from_millis(300))
        .finish();
    assert!(client
        .get(lab.url("/given-up?delay=3000"))
        .send()
        .await
        .is_err());
    eventually(
        Duration::from_secs(5),
        "the given-up call to be dropped",
        async || lab.only("/given-up").dropped,
    )
    .await;

    let answer = awc::Client::new()
        .get(lab.url("/r?fail=1&retry_after=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    assert_eq!(answer.headers().get("retry-after").unwrap(), "7");
    let answer = awc::Client::new()
        .get(lab.url("/r?fail=1&retry_after=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(answer.headers().get("retry-after").is_none());
}

// ---------------------------------------------------------------------------------------
// Registries, calls and headers
// ---------------------------------------------------------------------------------------

/// A composite `permalink` with `steps` and the composite-level fields in `extra`.
fn composite(permalink: &str, extra: Value, steps: Vec<Value>) -> Value {
    let mut connector = json!({"name": permalink, "permalink": permalink, "steps": steps});
    if let (Some(map), Value::Object(extra)) = (connector.as_object_mut(), extra) {
        map.extend(extra);
    }
    connector
}

fn registry(composites: Vec<Value>) -> Value {
    json!({ "composite_connectors": composites })
}

/// Runs composite `permalink` with `query` and `body`, and how long the answer took.
async fn timed(
    app: &crate::common::TestApp,
    permalink: &str,
    query: &str,
    body: &str,
) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = app.composite(permalink, query, body).await;
    (reply, started.elapsed())
}

/// The `(name, desc)` pairs of the `Server-Timing` header.
#[track_caller]
fn server_timing(reply: &Reply) -> Vec<(String, String)> {
    let header = reply
        .header("server-timing")
        .unwrap_or_else(|| panic!("no Server-Timing: {}", reply.text()));
    parse_server_timing(&header)
        .into_iter()
        .map(|e| (e.name, e.desc))
        .collect()
}

/// `[("step.a", "Step: a"), ...]` as owned pairs, for comparing with [`server_timing`].
fn entries(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect()
}

/// The `X-Connector-Timing` step entries.
#[track_caller]
fn timing_steps(reply: &Reply) -> Vec<Value> {
    reply.connector_timing()["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps array: {}", reply.connector_timing()))
        .clone()
}

/// The `X-Connector-Timing` entry of step `name`.
#[track_caller]
fn timing_of(reply: &Reply, name: &str) -> Value {
    timing_steps(reply)
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no timing entry for {name}: {}", reply.connector_timing()))
}

/// Polls `check` every 20 ms until it holds, failing after `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(app: &crate::common::TestApp, name: &str, labels: &[&str]) -> f64 {
    metric_sum(&app.get("/metrics").await.text(), name, labels)
}

// ---------------------------------------------------------------------------------------
// 1. execution: parallel / sequential, data dependencies, depends_on
// ---------------------------------------------------------------------------------------

/// Two independent steps waiting 300 ms each at the lab.
fn two_slow_steps(lab: &Lab) -> Vec<Value> {
    vec![
        json!({"name": "a", "url": lab.url("/a?delay=300")}),
        json!({"name": "b", "url": lab.url("/b?delay=300")}),
    ]
}

#[actix_web::test]
async fn parallel_steps_overlap_and_sequential_ones_do_not() {
    let par_lab = Lab::start().await;
    let seq_lab = Lab::start().await;
    let app = spawn_app(registry(vec![
        composite(
            "par",
            json!({"execution": "parallel"}),
            two_slow_steps(&par_lab),
        ),
        composite(
            "seq",
            json!({"execution": "sequential"}),
            two_slow_steps(&seq_lab),
        ),
    ]))
    .await;

    let (reply, took) = timed(&app, "par", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(took < Duration::from_millis(550), "parallel took {took:?}");
    // The answer is the last listed step's.
    assert_eq!(reply.json()["path"], "/b");
    let (a, b) = (par_lab.only("/a"), par_lab.only("/b"));
    assert!(overlap(&a, &b), "not in flight together: {a:?} {b:?}");
    assert_eq!(par_lab.max_in_flight(), 2);
    for name in ["a", "b"] {
        let entry = timing_of(&reply, name);
        assert_eq!(entry["state"], "ok", "{entry}");
        assert!(
            entry["start_ms"].as_f64().unwrap() < 200.0,
            "{name} did not start at once: {entry}"
        );
    }
    assert_eq!(
        server_timing(&reply),
        entries(&[
            ("step.a", "Step: a"),
            ("step.b", "Step: b"),
            ("total", "Total")
        ])
    );

    let (reply, took) = timed(&app, "seq", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        took >= Duration::from_millis(600),
        "sequential took {took:?}"
    );
    let (a, b) = (seq_lab.only("/a"), seq_lab.only("/b"));
    assert!(b.start >= a.end(), "b started before a ended: {a:?} {b:?}");
    assert_eq!(seq_lab.max_in_flight(), 1);
    let (ta, tb) = (timing_of(&reply, "a"), timing_of(&reply, "b"));
    assert!(
        tb["start_ms"].as_f64().unwrap() >= ta["start_ms"].as_f64().unwrap() + 250.0,
        "{ta} {tb}"
    );
}

#[actix_web::test]
async fn without_an_execution_field_steps_run_one_after_another() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "plain",
        json!({}),
        two_slow_steps(&lab),
    )]))
    .await;
    let (reply, took) = timed(&app, "plain", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(took >= Duration::from_millis(600), "took {took:?}");
    assert_eq!(lab.max_in_flight(), 1);
}

#[actix_web::test]
async fn in_parallel_a_step_that_reads_another_waits_for_it_and_the_rest_do_not() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "reads",
        json!({"execution": "parallel"}),
        vec![
            json!({"name": "a", "url": lab.url("/a?delay=300")}),
            // Listed before b, but it needs a: b starts first.
            json!({"name": "c", "url": lab.url("/c?from={{ (steps.a.body | from_json).path }}")}),
            json!({"name": "b", "url": lab.url("/b?delay=300")}),
        ],
    )]))
    .await;
    let (reply, took) = timed(&app, "reads", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (a, b, c) = (lab.only("/a"), lab.only("/b"), lab.only("/c"));
    assert!(c.start >= a.end(), "c started before a ended: {a:?} {c:?}");
    assert!(b.start < a.end(), "b waited for a: {a:?} {b:?}");
    assert!(overlap(&a, &b));
    assert_eq!(c.query_map()["from"], "/a");
    assert!(took < Duration::from_millis(550), "took {took:?}");
    // Entries stay in listed order.
    let names: Vec<Value> = timing_steps(&reply)
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("a"), json!("c"), json!("b")]);
    assert_eq!(
        server_timing(&reply),
        entries(&[
            ("step.a", "Step: a"),
            ("step.c", "Step: c"),
            ("step.b", "Step: b"),
            ("total", "Total")
        ])
    );
    let (ta, tc) = (timing_of(&reply, "a"), timing_of(&reply, "c"));
    assert!(
        tc["start_ms"].as_f64().unwrap() >= ta["start_ms"].as_f64().unwrap() + 250.0,
        "{ta} {tc}"
    );
}

#[actix_web::test]
async fn in_parallel_a_when_or_for_each_reading_a_step_waits_for_it() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "reads-in-control",
        json!({"execution": "parallel"}),
        vec![
            json!({"name": "a", "url": lab.url("/a?delay=300")}),
            json!({"name": "w", "url": lab.url("/w"), "when": "steps.a.status_code == 200"}),
            json!({"name": "f", "url": lab.url("/f/{{ item }}"),
                   "for_each": "[(steps.a.body | from_json).method]"}),
        ],
    )]))
    .await;
    let (reply, _) = timed(&app, "reads-in-control", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let a = lab.only("/a");
    let w = lab.only("/w");
    let f = lab.only("/f/GET");
    assert!(w.start >= a.end(), "when did not wait for a: {a:?} {w:?}");
    assert!(
        f.start >= a.end(),
        "for_each did not wait for a: {a:?} {f:?}"
    );
}

#[actix_web::test]
async fn depends_on_orders_steps_without_a_data_dependency() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "ordered",
        json!({"execution": "parallel"}),
        vec![
            json!({"name": "a", "url": lab.url("/a?delay=300")}),
            json!({"name": "b", "url": lab.url("/b"), "depends_on": ["a"]}),
            json!({"name": "free", "url": lab.url("/free?delay=100")}),
        ],
    )]))
    .await;
    let (reply, _) = timed(&app, "ordered", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (a, b, free) = (lab.only("/a"), lab.only("/b"), lab.only("/free"));
    assert!(b.start >= a.end(), "b started before a ended: {a:?} {b:?}");
    assert!(free.start < a.end(), "the free step waited: {a:?} {free:?}");
}

#[actix_web::test]
async fn in_parallel_skipped_and_continued_steps_count_as_finished() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "par-states",
        json!({"execution": "parallel"}),
        vec![
            json!({"name": "skip", "url": lab.url("/skip"), "when": "false"}),
            json!({"name": "soft", "url": lab.url("/soft?delay=200&status=503"), "on_error": "continue"}),
            json!({"name": "next", "url": lab.url("/next"), "method": "POST",
                   "request_body": "{{ steps.skip.skipped }}|{{ steps.soft.error.status_code }}"}),
        ],
    )]))
    .await;
    let reply = app.composite("par-states", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.count("/skip"), 0);
    let (soft, next) = (lab.only("/soft"), lab.only("/next"));
    assert!(next.start >= soft.end(), "next did not wait for soft");
    assert_eq!(next.body, "True|503");
    let states: Vec<Value> = timing_steps(&reply)
        .iter()
        .map(|s| s["state"].clone())
        .collect();
    assert_eq!(
        states,
        vec![json!("skipped"), json!("continued"), json!("ok")]
    );
}

// ---------------------------------------------------------------------------------------
// 2. when
// ---------------------------------------------------------------------------------------

fn when_registry(lab: &Lab) -> Value {
    registry(vec![composite(
        "maybe",
        json!({}),
        vec![
            json!({"name": "a", "url": lab.url("/a")}),
            json!({"name": "x", "url": lab.url("/x"),
                   "when": "steps.a.status_code == 200 and request.query_parameters.run == 'yes'"}),
            json!({"name": "c", "url": lab.url("/c"), "method": "POST",
                   "request_body": "{{ steps.x.skipped }}|{{ steps.x.body }}|{{ steps.x.status_code }}|{{ steps.x.headers | length }}|{{ steps.x.error }}"}),
        ],
    )])
}

#[actix_web::test]
async fn a_false_when_skips_the_step_and_later_steps_see_it_skipped() {
    let lab = Lab::start().await;
    let app = spawn_app(when_registry(&lab)).await;
    let reply = app.composite("maybe", "?run=no", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.count("/x"), 0, "the skipped step was called");
    assert_eq!(lab.only("/c").body, "True|None|None|0|None");
    assert_eq!(
        server_timing(&reply),
        entries(&[
            ("step.a", "Step: a"),
            ("step.x", "Step: x (skipped)"),
            ("step.c", "Step: c"),
            ("total", "Total")
        ])
    );
    let states: Vec<Value> = timing_steps(&reply)
        .iter()
        .map(|s| s["state"].clone())
        .collect();
    assert_eq!(states, vec![json!("ok"), json!("skipped"), json!("ok")]);
    assert_eq!(timing_of(&reply, "x")["status_code"], Value::Null);
}

#[actix_web::test]
async fn a_true_when_runs_the_step() {
    let lab = Lab::start().await;
    let app = spawn_app(when_registry(&lab)).await;
    let reply = app.composite("maybe", "?run=yes", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.count("/x"), 1);
    // skipped|body|status_code|number of headers|error
    let seen = lab.only("/c").body.clone();
    let parts: Vec<&str> = seen.split('|').collect();
    assert_eq!(parts.len(), 5, "{seen}");
    assert_eq!(parts[0], "False", "{seen}");
    let body: Value = serde_json::from_str(parts[1]).unwrap_or_else(|e| panic!("{e}: {seen}"));
    assert_eq!(body["path"], "/x", "{seen}");
    assert_eq!(parts[2], "200", "{seen}");
    assert!(parts[3].parse::<usize>().unwrap() > 0, "no headers: {seen}");
    assert_eq!(parts[4], "None", "{seen}");
    assert_eq!(
        server_timing(&reply),
        entries(&[
            ("step.a", "Step: a"),
            ("step.x", "Step: x"),
            ("step.c", "Step: c"),
            ("total", "Total")
        ])
    );
    assert_eq!(timing_of(&reply, "x")["state"], "ok");
}

#[actix_web::test]
async fn the_answer_is_the_latest_step_that_answered() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![
        composite(
            "last-skipped",
            json!({}),
            vec![
                json!({"name": "a", "url": lab.url("/a"), "response_body": "from a"}),
                json!({"name": "b", "url": lab.url("/b"), "when": "false"}),
            ],
        ),
        composite(
            "last-continued",
            json!({}),
            vec![
                json!({"name": "a", "url": lab.url("/a"), "response_body": "from a"}),
                json!({"name": "b", "url": lab.url("/b?status=500"), "on_error": "continue"}),
            ],
        ),
        composite(
            "none-answered",
            json!({}),
            vec![
                json!({"name": "a", "url": lab.url("/a"), "when": "false"}),
                json!({"name": "b", "url": lab.url("/b"), "when": "false"}),
            ],
        ),
    ]))
    .await;
    let reply = app.composite("last-skipped", "", "").await;
    assert_eq!((reply.status, reply.text()), (200, "from a".to_string()));
    let reply = app.composite("last-continued", "", "").await;
    assert_eq!((reply.status, reply.text()), (200, "from a".to_string()));
    let reply = app.composite("none-answered", "", "").await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(reply.body.is_empty(), "{}", reply.text());
}

// ---------------------------------------------------------------------------------------
// 3. on_error
// ---------------------------------------------------------------------------------------

fn failing_then_reading(lab: &Lab, on_error: Option<&str>) -> Vec<Value> {
    let mut x = json!({"name": "x", "url": lab.url("/x?status=503")});
    if let Some(on_error) = on_error {
        x["on_error"] = json!(on_error);
    }
    vec![
        x,
        json!({"name": "y", "url": lab.url("/y"), "method": "POST",
               "request_body": "{{ steps.x.error.code }}|{{ steps.x.error.status_code }}|{{ steps.x.status_code }}|{{ steps.x.body }}|{{ steps.x.skipped }}|{{ steps.x.error.detail is string }}"}),
    ]
}

#[actix_web::test]
async fn on_error_continue_records_the_failure_and_the_chain_goes_on() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "goes-on",
        json!({}),
        failing_then_reading(&lab, Some("continue")),
    )]))
    .await;
    let reply = app.composite("goes-on", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/y");
    assert_eq!(
        lab.only("/y").body,
        "DOWNSTREAM_HTTP_ERROR|503|503|None|False|True"
    );
    assert_eq!(
        server_timing(&reply),
        entries(&[
            ("step.x", "Step: x (continued after error)"),
            ("step.y", "Step: y"),
            ("total", "Total")
        ])
    );
    let x = timing_of(&reply, "x");
    assert_eq!(x["state"], "continued", "{x}");
    assert_eq!(x["status_code"], 503, "{x}");
    assert_eq!(timing_of(&reply, "y")["state"], "ok");
}

#[actix_web::test]
async fn without_on_error_the_failure_ends_the_run_with_the_usual_envelope() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![
        composite("stops", json!({}), failing_then_reading(&lab, None)),
        composite(
            "stops-explicitly",
            json!({}),
            failing_then_reading(&lab, Some("fail")),
        ),
    ]))
    .await;
    for permalink in ["stops", "stops-explicitly"] {
        let reply = app.composite(permalink, "", "").await;
        assert_envelope(
            &reply,
            502,
            "DOWNSTREAM_HTTP_ERROR",
            Some("Composite step 'x' (index 0): Downstream (HTTP error)"),
        );
        assert_eq!(timing_of(&reply, "x")["state"], "failed");
    }
    assert_eq!(lab.count("/x"), 2);
    assert_eq!(lab.count("/y"), 0, "a step ran after the failure");
}

#[actix_web::test]
async fn a_continued_network_failure_has_no_status_code() {
    let lab = Lab::start().await;
    let refused = closed_port();
    let app = spawn_app(registry(vec![composite(
        "network",
        json!({}),
        vec![
            json!({"name": "x", "url": format!("{}/gone", refused.base()), "on_error": "continue"}),
            json!({"name": "y", "url": lab.url("/y"), "method": "POST",
                   "request_body": "{{ steps.x.error.code }}|{{ steps.x.error.status_code }}|{{ steps.x.status_code }}"}),
        ],
    )]))
    .await;
    let reply = app.composite("network", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.only("/y").body, "DOWNSTREAM_NETWORK_ERROR|None|None");
    assert_eq!(timing_of(&reply, "x")["state"], "continued");
}

#[actix_web::test]
async fn template_errors_fail_even_with_on_error_continue() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "template",
        json!({}),
        vec![
            json!({"name": "x", "url": lab.url("/x"), "method": "POST", "on_error": "continue",
                   "request_body": "{{ request.body_text | from_json }}"}),
            json!({"name": "y", "url": lab.url("/y")}),
        ],
    )]))
    .await;
    let reply = app.composite("template", "", "not json").await;
    assert_envelope(
        &reply,
        422,
        "TEMPLATE_RENDERING_ERROR",
        Some("Composite step 'x' (index 0): Configuration (template rendering)"),
    );
    assert_eq!(lab.count("/x") + lab.count("/y"), 0);
}

// ---------------------------------------------------------------------------------------
// 4. for_each
// ---------------------------------------------------------------------------------------

/// `{"things": [{"id": 100, "delay": 400}, {"id": 101, "delay": 360}, ...]}`: item k waits
/// (10 - k) * 40 ms, so later items answer first.
fn ten_things() -> String {
    let things: Vec<Value> = (0..10)
        .map(|k| json!({"id": 100 + k, "delay": (10 - k) * 40}))
        .collect();
    json!({ "things": things }).to_string()
}

#[actix_web::test]
async fn for_each_runs_every_item_with_bounded_concurrency_and_answers_in_item_order() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan",
        json!({}),
        vec![json!({
            "name": "fan",
            "for_each": "(request.body_text | from_json).things",
            "max_concurrency": 3,
            "url": lab.url("/item/{{ item.id }}?delay={{ item.delay }}&index={{ item_index }}"),
            "method": "POST",
            "headers": [{"key": "X-Item", "value": "{{ item.id }}-{{ item_index }}"}],
            "query_parameters": [{"key": "double", "value": "{{ item.id * 2 }}"}],
            "request_body": "{{ {'id': item.id, 'index': item_index} | tojson }}",
            "response_body": "{\"item\": {{ item.id }}, \"at\": {{ item_index }}, \"up\": {{ response.body }}}"
        })],
    )]))
    .await;
    let reply = app.composite("fan", "", &ten_things()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let max = lab.max_in_flight();
    assert!(max <= 3, "{max} items in flight at once");
    assert!(max > 1, "the items ran one at a time");

    // The answer is in item order although the lab answered later items first.
    let answer = reply.json();
    let answer = answer.as_array().unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(answer.len(), 10, "{answer:?}");
    for (k, entry) in answer.iter().enumerate() {
        assert_eq!(entry["item"], 100 + k, "{entry}");
        assert_eq!(entry["at"], k, "{entry}");
        assert_eq!(entry["up"]["path"], format!("/item/{}", 100 + k), "{entry}");
    }
    let calls = lab.calls();
    assert_eq!(calls.len(), 10);
    let mut by_end = calls.clone();
    by_end.sort_by_key(Call::end);
    let end_order: Vec<&str> = by_end.iter().map(|c| c.path.as_str()).collect();
    let mut item_order = end_order.clone();
    item_order.sort();
    assert_ne!(end_order, item_order, "the lab answered in item order");

    // item and item_index reach url, query, headers and body.
    for k in 0..10usize {
        let call = lab.only(&format!("/item/{}", 100 + k));
        let query = call.query_map();
        assert_eq!(query["index"], k.to_string(), "{call:?}");
        assert_eq!(query["double"], (2 * (100 + k)).to_string(), "{call:?}");
        assert_eq!(
            call.header("x-item"),
            Some(format!("{}-{k}", 100 + k).as_str())
        );
        assert_eq!(call.method, "POST");
        let body: Value = serde_json::from_str(&call.body).unwrap();
        assert_eq!(body, json!({"id": 100 + k, "index": k}));
    }

    assert_eq!(
        server_timing(&reply),
        entries(&[("step.fan", "Step: fan (10 items)"), ("total", "Total")])
    );
    let fan = timing_of(&reply, "fan");
    assert_eq!(fan["state"], "ok", "{fan}");
    let items = fan["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {fan}"));
    assert_eq!(items.len(), 10, "{fan}");
    for (k, item) in items.iter().enumerate() {
        assert_eq!(item["index"], k, "{fan}");
        assert_eq!(item["status_code"], 200, "{fan}");
        assert!(item["start_ms"].is_number(), "{fan}");
        assert!(item["duration_ms"].is_number(), "{fan}");
    }
    assert!(
        items[0]["duration_ms"].as_f64().unwrap() >= 350.0,
        "item 0 waits 400 ms: {fan}"
    );
    // With 3 at a time, the last item cannot start with the first.
    assert!(
        items[9]["start_ms"].as_f64().unwrap() > items[0]["start_ms"].as_f64().unwrap() + 30.0,
        "{fan}"
    );
}

#[actix_web::test]
async fn later_steps_read_the_items_and_the_json_array_of_a_for_each_step() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-read",
        json!({}),
        vec![
            json!({"name": "fan", "for_each": "[1, 2, 3]", "url": lab.url("/n/{{ item }}")}),
            json!({"name": "words", "for_each": "['x', 'y']", "url": lab.url("/w/{{ item }}"),
                   "response_body": "plain-{{ item }}"}),
            json!({"name": "sum", "url": lab.url("/sum"), "method": "POST",
                   "request_body": "{{ steps.fan['items'] | length }}|{{ steps.fan['items'][1].status_code }}|{{ (steps.fan.body | from_json)[2].path }}|{{ steps.fan.status_code }}|{{ steps.fan['items'][0].headers['content-type'] }}|{{ steps.fan.skipped }}|{{ steps.fan.error }}|{{ steps.words.body | from_json | join(',') }}|{{ (steps.fan['items'][2].body | from_json).path }}"}),
        ],
    )]))
    .await;
    let reply = app.composite("fan-read", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        lab.only("/sum").body,
        "3|200|/n/3|200|application/json|False|None|plain-x,plain-y|/n/3"
    );
}

/// §12 and the decisions write `steps.x.items`; §2 says `.items` on a dict is the method.
/// The chain-control wording is the one pinned for this field.
#[actix_web::test]
async fn steps_x_items_as_an_attribute_is_the_list_of_items() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-attr",
        json!({}),
        vec![
            json!({"name": "fan", "for_each": "[1, 2]", "url": lab.url("/n/{{ item }}")}),
            json!({"name": "sum", "url": lab.url("/sum"), "method": "POST",
                   "request_body": "{{ steps.fan.items | length }}|{{ steps.fan.items[1].status_code }}"}),
        ],
    )]))
    .await;
    let reply = app.composite("fan-attr", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.only("/sum").body, "2|200");
}

#[actix_web::test]
async fn for_each_items_reach_the_authentication_config() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-auth",
        json!({}),
        vec![json!({"name": "fan", "for_each": "['a', 'b']", "url": lab.url("/k/{{ item_index }}"),
                    "authentication": {"type": "api_key",
                                       "config": {"key": "X-Key", "value": "key-{{ item }}", "in": "header"}}})],
    )]))
    .await;
    let reply = app.composite("fan-auth", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.only("/k/0").header("x-key"), Some("key-a"));
    assert_eq!(lab.only("/k/1").header("x-key"), Some("key-b"));
}

#[actix_web::test]
async fn an_empty_for_each_list_is_ok_with_an_empty_array() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-empty",
        json!({}),
        vec![json!({"name": "fan", "for_each": "[]", "url": lab.url("/n/{{ item }}")})],
    )]))
    .await;
    let reply = app.composite("fan-empty", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!([]));
    // docs/spec.md §12: as the last step a for_each answers its array as JSON.
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(lab.calls().is_empty());
    assert_eq!(timing_of(&reply, "fan")["state"], "ok");
}

#[actix_web::test]
async fn a_failing_item_fails_the_step_and_later_items_do_not_start() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-fails",
        json!({}),
        vec![
            json!({"name": "first", "url": lab.url("/first")}),
            json!({"name": "fan", "for_each": "[0, 1, 2, 3, 4, 5, 6, 7]", "max_concurrency": 1,
                   "url": lab.url("/item/{{ item }}?status={{ 503 if item == 5 else 200 }}")}),
            json!({"name": "after", "url": lab.url("/after")}),
        ],
    )]))
    .await;
    let reply = app.composite("fan-fails", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'fan' (index 1) item 5: Downstream (HTTP error)"),
    );
    for k in 0..=5 {
        assert_eq!(lab.count(&format!("/item/{k}")), 1, "item {k}");
    }
    for k in 6..=7 {
        assert_eq!(lab.count(&format!("/item/{k}")), 0, "item {k} started");
    }
    assert_eq!(lab.count("/after"), 0);
    assert_eq!(timing_of(&reply, "fan")["state"], "failed");
}

#[actix_web::test]
async fn a_failing_item_drops_the_items_in_flight() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-drops",
        json!({}),
        vec![json!({"name": "fan", "for_each": "[0, 1, 2, 3, 4, 5]", "max_concurrency": 3,
                    "url": lab.url("/item/{{ item }}?delay={{ 100 if item == 1 else 3000 }}&status={{ 503 if item == 1 else 200 }}")})],
    )]))
    .await;
    let (reply, took) = timed(&app, "fan-drops", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'fan' (index 0) item 1: Downstream (HTTP error)"),
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    eventually(
        Duration::from_secs(5),
        "items 0 and 2 to be dropped",
        async || lab.only("/item/0").dropped && lab.only("/item/2").dropped,
    )
    .await;
    // Item 3 may have taken item 1's place before the failure was seen; 4 and 5 never start.
    assert_eq!(
        lab.count("/item/4") + lab.count("/item/5"),
        0,
        "{:#?}",
        lab.calls()
    );
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        lab.calls()
            .iter()
            .all(|c| c.path == "/item/1" || c.end.is_none()),
        "an item in flight was answered: {:#?}",
        lab.calls()
    );
}

#[actix_web::test]
async fn a_fan_out_over_the_limit_is_refused_before_any_call() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-huge",
        json!({}),
        vec![
            json!({"name": "fan", "for_each": "request.body_text | from_json",
                    "url": lab.url("/n/{{ item }}"), "on_error": "continue"}),
        ],
    )]))
    .await;
    let items: Vec<u32> = (0..10_000).collect();
    let (reply, took) = timed(&app, "fan-huge", "", &json!(items).to_string()).await;
    let errors = assert_envelope(
        &reply,
        422,
        "FAN_OUT_TOO_LARGE",
        Some("Composite step 'fan' (index 0): Configuration (for_each)"),
    );
    assert_eq!(
        errors["detail"],
        "for_each: yields 10000 items, more than --max-fanout (100)"
    );
    assert!(
        lab.calls().is_empty(),
        "{} items were called",
        lab.calls().len()
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // 100 items is the limit, not over it.
    let items: Vec<u32> = (0..100).collect();
    let reply = app
        .composite("fan-huge", "", &json!(items).to_string())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.calls().len(), 100);
}

#[actix_web::test]
async fn a_for_each_that_is_not_a_list_is_a_template_error() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "fan-scalar",
        json!({}),
        vec![
            json!({"name": "fan", "for_each": "request.body_text | from_json",
                    "url": lab.url("/n/{{ item }}"), "on_error": "continue"}),
        ],
    )]))
    .await;
    let scope = Some("Composite step 'fan' (index 0): Configuration (template rendering)");
    let reply = app.composite("fan-scalar", "", "\"abc\"").await;
    let errors = assert_envelope(&reply, 422, "TEMPLATE_RENDERING_ERROR", scope);
    assert_eq!(errors["detail"], "for_each: yields a string, not a list");
    for body in [r#"{"a": 1}"#, "7", "null"] {
        let reply = app.composite("fan-scalar", "", body).await;
        let errors = assert_envelope(&reply, 422, "TEMPLATE_RENDERING_ERROR", scope);
        let detail = errors["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("for_each: yields ") && detail.ends_with(", not a list"),
            "{body}: {detail}"
        );
    }
    assert!(lab.calls().is_empty());
}

#[actix_rt::test]
async fn the_max_fanout_flag_lowers_the_limit() {
    let lab = Lab::start().await;
    let server = ServerProcess::start(
        &registry(vec![composite(
            "fan-five",
            json!({}),
            vec![
                json!({"name": "fan", "for_each": "request.body_text | from_json",
                        "url": lab.url("/n/{{ item }}")}),
            ],
        )]),
        &["--max-fanout", "5"],
    );
    let url = format!("{}/connectors/composite/fan-five/execute", server.base);
    let reply = post_url(&url, "[1, 2, 3, 4, 5, 6]").await;
    let errors = assert_envelope(
        &reply,
        422,
        "FAN_OUT_TOO_LARGE",
        Some("Composite step 'fan' (index 0): Configuration (for_each)"),
    );
    assert_eq!(
        errors["detail"],
        "for_each: yields 6 items, more than --max-fanout (5)"
    );
    assert!(lab.calls().is_empty());
    let reply = post_url(&url, "[1, 2, 3, 4, 5]").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.calls().len(), 5);
}

// ---------------------------------------------------------------------------------------
// 5. retry
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn retry_tries_again_after_503s_until_the_upstream_answers() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "retries",
        json!({}),
        vec![json!({"name": "a", "url": lab.url("/r?fail=2"),
                    "retry": {"attempts": 3, "backoff_ms": 50}})],
    )]))
    .await;
    let reply = app.composite("retries", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/r");
    assert_eq!(lab.count("/r"), 3);
    // docs/spec.md §12: the timing entry carries the tries after retries.
    let a = timing_of(&reply, "a");
    assert_eq!(a["attempts"], 3, "{a}");
    assert_eq!(a["status_code"], 200, "{a}");
    let retries = metric(
        &app,
        "connector_step_retries_total",
        &["connector=\"retries\"", "step=\"a\"", "reason=\"status\""],
    )
    .await;
    assert_eq!(retries, 2.0);
}

#[actix_web::test]
async fn retry_attempts_cap_the_calls() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "capped",
        json!({}),
        vec![json!({"name": "a", "url": lab.url("/r?fail=3"),
                    "retry": {"attempts": 2, "backoff_ms": 20}})],
    )]))
    .await;
    let reply = app.composite("capped", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'a' (index 0): Downstream (HTTP error)"),
    );
    assert_eq!(lab.count("/r"), 2);
}

#[actix_web::test]
async fn statuses_outside_retry_on_are_not_retried() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "not-listed",
        json!({}),
        vec![
            // 500 is not in the default list.
            json!({"name": "a", "url": lab.url("/default?fail=1&fail_status=500"),
                   "retry": {"attempts": 3, "backoff_ms": 20}, "on_error": "continue"}),
            // An explicit list replaces the default.
            json!({"name": "b", "url": lab.url("/listed?fail=1&fail_status=429"),
                   "retry": {"attempts": 3, "backoff_ms": 20, "retry_on": [429]}}),
            json!({"name": "c", "url": lab.url("/unlisted?fail=1&fail_status=503"),
                   "retry": {"attempts": 3, "backoff_ms": 20, "retry_on": [429]},
                   "on_error": "continue"}),
        ],
    )]))
    .await;
    let reply = app.composite("not-listed", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.count("/default"), 1, "500 was retried");
    assert_eq!(lab.count("/listed"), 2, "429 in retry_on was not retried");
    assert_eq!(
        lab.count("/unlisted"),
        1,
        "503 outside retry_on was retried"
    );
}

#[actix_web::test]
async fn retry_after_replaces_the_backoff() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "after",
        json!({}),
        vec![
            json!({"name": "a", "url": lab.url("/honoured?fail=1&retry_after=1"),
                   "retry": {"attempts": 2, "backoff_ms": 10}}),
            json!({"name": "b", "url": lab.url("/plain?fail=1"),
                   "retry": {"attempts": 2, "backoff_ms": 10}}),
        ],
    )]))
    .await;
    let reply = app.composite("after", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let honoured = lab.to("/honoured");
    assert_eq!(honoured.len(), 2);
    let gap = honoured[1].start - honoured[0].end();
    assert!(gap >= Duration::from_millis(900), "waited {gap:?}");
    let plain = lab.to("/plain");
    assert_eq!(plain.len(), 2);
    let gap = plain[1].start - plain[0].end();
    assert!(
        gap < Duration::from_millis(500),
        "waited {gap:?} for a 10 ms backoff"
    );
}

#[actix_web::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "after-date",
        json!({}),
        vec![
            json!({"name": "a", "url": lab.url("/dated?fail=1&retry_after_in=2"),
                    "retry": {"attempts": 2, "backoff_ms": 10}}),
        ],
    )]))
    .await;
    let reply = app.composite("after-date", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let calls = lab.to("/dated");
    assert_eq!(calls.len(), 2);
    // An HTTP date has whole seconds: 2 s from now is at least 1 s away.
    let gap = calls[1].start - calls[0].end();
    assert!(gap >= Duration::from_millis(900), "waited {gap:?}");
}

#[actix_web::test]
async fn the_backoff_doubles_with_jitter_between_half_and_all_of_it() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "backoff",
        json!({}),
        vec![json!({"name": "a", "url": lab.url("/r?fail=2"),
                    "retry": {"attempts": 3, "backoff_ms": 400}})],
    )]))
    .await;
    let reply = app.composite("backoff", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let calls = lab.to("/r");
    assert_eq!(calls.len(), 3);
    let first = calls[1].start - calls[0].end();
    let second = calls[2].start - calls[1].end();
    // Waits in [200, 400] ms and [400, 800] ms; timers never fire early, the upper bounds
    // have room for a slow machine.
    assert!(first >= Duration::from_millis(195), "first wait {first:?}");
    assert!(
        first < Duration::from_millis(400 + 350),
        "first wait {first:?}"
    );
    assert!(
        second >= Duration::from_millis(395),
        "second wait {second:?}"
    );
    assert!(
        second < Duration::from_millis(800 + 350),
        "second wait {second:?}"
    );
}

#[actix_web::test]
async fn a_retry_that_would_pass_the_time_limit_is_not_made() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![
        composite(
            "too-late",
            json!({}),
            vec![
                json!({"name": "a", "url": lab.url("/r?fail=1&retry_after=3"),
                        "retry": {"attempts": 3, "backoff_ms": 10}, "timeout_ms": 1000}),
            ],
        ),
        // The same wait within a longer limit is made.
        composite(
            "in-time",
            json!({}),
            vec![
                json!({"name": "a", "url": lab.url("/in-time?fail=1&retry_after=1"),
                        "retry": {"attempts": 3, "backoff_ms": 10}, "timeout_ms": 5000}),
            ],
        ),
    ]))
    .await;
    let reply = app.composite("in-time", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(lab.count("/in-time"), 2);
    let (reply, took) = timed(&app, "too-late", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'a' (index 0): Downstream (HTTP error)"),
    );
    assert_eq!(lab.count("/r"), 1);
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

/// A registry whose step POSTs with `retry`, with or without an `Idempotency-Key` header.
fn post_retry_registry(lab: &Lab, idempotency_key: bool) -> Value {
    let headers = if idempotency_key {
        json!([{"key": "Idempotency-Key", "value": "key-{{ request.query_parameters.k }}"}])
    } else {
        json!([])
    };
    registry(vec![composite(
        "post-retry",
        json!({}),
        vec![
            json!({"name": "a", "url": lab.url("/p?fail=2"), "method": "POST",
                    "headers": headers, "request_body": "payload",
                    "retry": {"attempts": 3, "backoff_ms": 20}}),
        ],
    )])
}

/// Starts the server on `registry` and expects it to refuse to start: the error's text.
async fn start_failure(registry: &Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, registry.to_string()).unwrap();
    let mut args = ServeArgs::for_registry(&path);
    args.allow_private_upstreams = true;
    args.workers = Some(1);
    let options = build_options(&args).unwrap();
    match Application::build_with_options(args, options).await {
        Ok(app) => {
            // Not dropped: that needs the server's runtime, which never ran.
            std::mem::forget(app);
            panic!("the server started on an invalid registry")
        }
        Err(e) => e.to_string(),
    }
}

#[actix_web::test]
async fn retry_on_post_without_an_idempotency_key_is_refused_at_load() {
    let lab = Lab::start().await;
    let error = start_failure(&post_retry_registry(&lab, false)).await;
    assert!(
        error.contains("error: post-retry › a › retry"),
        "the start error does not name the field: {error}"
    );
    let problems = validate(&post_retry_registry(&lab, false));
    assert_problem(&problems, "post-retry", "a", "retry");
    let problems = validate(&post_retry_registry(&lab, true));
    assert!(errors_of(&problems).is_empty(), "{problems:#?}");
}

#[actix_web::test]
async fn retry_on_post_with_an_idempotency_key_is_retried_with_the_same_key() {
    let lab = Lab::start().await;
    let app = spawn_app(post_retry_registry(&lab, true)).await;
    let reply = app.composite("post-retry", "?k=7", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let calls = lab.to("/p");
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert_eq!(call.method, "POST");
        assert_eq!(call.header("idempotency-key"), Some("key-7"));
        assert_eq!(call.body, "payload");
    }
}

#[actix_web::test]
async fn retry_also_covers_network_failures() {
    let refused = closed_port();
    let app = spawn_app_with(
        registry(vec![composite(
            "net-retry",
            json!({}),
            vec![
                json!({"name": "a", "url": format!("{}/gone", refused.base()),
                        "retry": {"attempts": 3, "backoff_ms": 10}}),
            ],
        )]),
        // Without the runtime's own connect retry, every try is a step retry.
        AppOptions::default().flags(|f| f.upstream_retries = 0),
    )
    .await;
    let reply = app.composite("net-retry", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_NETWORK_ERROR",
        Some(&format!("Composite step 'a' (index 0): {NETWORK_SCOPE}")),
    );
    let retries = metric(
        &app,
        "connector_step_retries_total",
        &[
            "connector=\"net-retry\"",
            "step=\"a\"",
            "reason=\"network\"",
        ],
    )
    .await;
    assert_eq!(retries, 2.0);
}

// ---------------------------------------------------------------------------------------
// 6. timeout_ms
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn timeout_ms_limits_its_step_and_the_others_keep_the_default() {
    let lab = Lab::start().await;
    let app = spawn_app_with(
        registry(vec![
            composite(
                "limits",
                json!({}),
                vec![
                    // Longer than the other step's 200 ms, within the 1 s default.
                    json!({"name": "default", "url": lab.url("/default?delay=600")}),
                    json!({"name": "short", "url": lab.url("/short?delay=2000"), "timeout_ms": 200}),
                ],
            ),
            composite(
                "per-item",
                json!({}),
                vec![json!({"name": "fan", "for_each": "[1, 2, 3, 4]", "max_concurrency": 1,
                            "url": lab.url("/item/{{ item }}?delay=150"), "timeout_ms": 400})],
            ),
            composite(
                "per-item-slow",
                json!({}),
                vec![json!({"name": "fan", "for_each": "[150, 150, 3000]", "max_concurrency": 1,
                            "url": lab.url("/slow/{{ item_index }}?delay={{ item }}"), "timeout_ms": 400})],
            ),
        ]),
        AppOptions::default().flags(|f| f.step_timeout_ms = 1000),
    )
    .await;
    let started = Instant::now();
    let reply = app.composite("limits", "", "").await;
    let took = started.elapsed();
    let answered = lab.state.t0.elapsed();
    assert_envelope(
        &reply,
        504,
        "DOWNSTREAM_TIMEOUT",
        Some(&format!(
            "Composite step 'short' (index 1): {NETWORK_SCOPE}"
        )),
    );
    assert_eq!(lab.count("/default"), 1);
    // The answer came soon after the short step's 200 ms, far from the lab's 2 s.
    let since_short = answered - lab.only("/short").start;
    assert!(
        since_short < Duration::from_millis(1200),
        "answered {since_short:?} after the short step's call"
    );
    let short_ms = timing_of(&reply, "short")["duration_ms"].as_f64().unwrap();
    assert!(
        (190.0..1200.0).contains(&short_ms),
        "the short step took {short_ms} ms"
    );
    assert!(took >= Duration::from_millis(600 + 200), "took {took:?}");
    assert_eq!(timing_of(&reply, "short")["state"], "failed");
    assert_eq!(timing_of(&reply, "default")["state"], "ok");

    // Each item has its own 400 ms: four 150 ms items one at a time pass, and one slower
    // item fails on its own limit.
    let reply = app.composite("per-item", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json().as_array().map(Vec::len), Some(4));
    let (reply, took) = timed(&app, "per-item-slow", "", "").await;
    assert_envelope(
        &reply,
        504,
        "DOWNSTREAM_TIMEOUT",
        Some(&format!(
            "Composite step 'fan' (index 0) item 2: {NETWORK_SCOPE}"
        )),
    );
    assert!(took < Duration::from_millis(2000), "took {took:?}");
}

#[actix_web::test]
async fn a_timeout_ms_failure_names_its_timeout_ms() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "named",
        json!({}),
        vec![json!({"name": "a", "url": lab.url("/slow?delay=2000"), "timeout_ms": 200})],
    )]))
    .await;
    let reply = app.composite("named", "", "").await;
    let errors = assert_envelope(
        &reply,
        504,
        "DOWNSTREAM_TIMEOUT",
        Some(&format!("Composite step 'a' (index 0): {NETWORK_SCOPE}")),
    );
    assert_eq!(
        errors["detail"],
        "the step did not finish within its timeout_ms (200 ms)"
    );
}

/// timeout_ms *is* the step's limit ("default `--step-timeout-ms`"): one above the default
/// gives the step more time, not only less.
#[actix_web::test]
async fn a_timeout_ms_above_the_default_gives_the_step_more_time() {
    let lab = Lab::start().await;
    let app = spawn_app_with(
        registry(vec![composite(
            "long",
            json!({}),
            vec![json!({"name": "long", "url": lab.url("/long?delay=1300"), "timeout_ms": 4000})],
        )]),
        AppOptions::default().flags(|f| f.step_timeout_ms = 1000),
    )
    .await;
    let reply = app.composite("long", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/long");
    assert_eq!(timing_of(&reply, "long")["state"], "ok");
}

#[actix_web::test]
async fn a_timeout_ms_step_answers_well_before_the_upstream_would() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "quick",
        json!({}),
        vec![json!({"name": "a", "url": lab.url("/slow?delay=2000"), "timeout_ms": 200})],
    )]))
    .await;
    let (reply, took) = timed(&app, "quick", "", "").await;
    assert_envelope(
        &reply,
        504,
        "DOWNSTREAM_TIMEOUT",
        Some(&format!("Composite step 'a' (index 0): {NETWORK_SCOPE}")),
    );
    assert!(took >= Duration::from_millis(190), "took {took:?}");
    assert!(took < Duration::from_millis(1200), "took {took:?}");
}

// ---------------------------------------------------------------------------------------
// 7. composite response_body / response_content_type
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_composite_response_body_is_built_from_several_steps() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![
        composite(
            "built",
            json!({
                "response_body": "{\"a\": {{ (steps.a.body | from_json).path | tojson }}, \"b\": {{ steps.b.status_code }}, \"q\": {{ request.query_parameters.q | tojson }}, \"sent\": {{ request.body_text | tojson }}}",
                "response_content_type": "application/vnd.both+json"
            }),
            vec![
                json!({"name": "a", "url": lab.url("/a")}),
                json!({"name": "b", "url": lab.url("/b?status=201")}),
            ],
        ),
        composite(
            "typed",
            json!({"response_content_type": "text/x-last"}),
            vec![json!({"name": "a", "url": lab.url("/a?status=202")})],
        ),
    ]))
    .await;
    let reply = app.composite("built", "?q=find", "hello").await;
    // HTTP 200 whatever the last step's status.
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.both+json")
    );
    assert_eq!(
        reply.json(),
        json!({"a": "/a", "b": 201, "q": "find", "sent": "hello"})
    );

    // Without a composite response_body: the last step's answer with that Content-Type.
    let reply = app.composite("typed", "", "").await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.header("content-type").as_deref(), Some("text/x-last"));
    assert_eq!(reply.json()["path"], "/a");
}

// ---------------------------------------------------------------------------------------
// 8. load errors
// ---------------------------------------------------------------------------------------

/// `connector-runtime validate --format json` on `registry`: its problems.
fn validate(registry: &Value) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, registry.to_string()).unwrap();
    validate_file(&path)
}

fn validate_file(path: &Path) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .arg("validate")
        .arg(path)
        .args(["--format", "json"])
        .env_remove("CONNECTOR_RUNTIME_SECRETS_DIR")
        .env_remove("CONNECTOR_RUNTIME_VARIABLES_FILE")
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "validate printed no JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let errors = doc["errors"].as_u64().unwrap_or(0);
    assert_eq!(
        output.status.code(),
        Some(if errors > 0 { 1 } else { 0 }),
        "{doc}"
    );
    doc["problems"].as_array().cloned().unwrap_or_default()
}

fn errors_of(problems: &[Value]) -> Vec<&Value> {
    problems
        .iter()
        .filter(|p| p["severity"] == "error")
        .collect()
}

/// Whether `field` is `expected` or a part of it (`retry.attempts`, `depends_on[0]`).
fn names_field(field: &str, expected: &str) -> bool {
    field == expected
        || field.starts_with(&format!("{expected}."))
        || field.starts_with(&format!("{expected}["))
}

#[track_caller]
fn assert_problem(problems: &[Value], connector: &str, step: &str, field: &str) {
    let found = errors_of(problems).into_iter().any(|p| {
        p["connector"] == connector
            && p["step"] == step
            && p["field"].as_str().is_some_and(|f| names_field(f, field))
    });
    assert!(
        found,
        "no error at {connector} › {step} › {field}: {problems:#?}"
    );
}

fn base_step(name: &str, extra: Value) -> Value {
    let mut step = json!({"name": name, "url": "https://api.example.com/x"});
    if let (Some(map), Value::Object(extra)) = (step.as_object_mut(), extra) {
        map.extend(extra);
    }
    step
}

#[test]
fn a_registry_using_every_chain_control_field_validates() {
    let registry = registry(vec![composite(
        "flow",
        json!({"execution": "parallel",
               "response_body": "{{ steps.a.body }}{{ steps.c.body }}",
               "response_content_type": "application/json"}),
        vec![
            base_step(
                "a",
                json!({"retry": {"attempts": 5, "backoff_ms": 10000, "retry_on": [429, 502, "network", "timeout"]},
                       "timeout_ms": 300000}),
            ),
            base_step(
                "b",
                json!({"when": "steps.a.status_code == 200 and request.query_parameters.full",
                       "on_error": "continue", "depends_on": ["a"], "timeout_ms": 1}),
            ),
            base_step(
                "c",
                json!({"for_each": "steps.a.body | from_json", "max_concurrency": 16,
                       "url": "https://api.example.com/x/{{ item }}?i={{ item_index }}",
                       "on_error": "fail"}),
            ),
            base_step(
                "d",
                json!({"method": "POST", "request_body": "x",
                       "headers": [{"key": "Idempotency-Key", "value": "k"}],
                       "retry": {"attempts": 1}, "for_each": "[1]", "max_concurrency": 1}),
            ),
            // Idempotent methods retry without a key.
            base_step("e", json!({"method": "PUT", "retry": {"attempts": 2}})),
            base_step("f", json!({"method": "DELETE", "retry": {"attempts": 2}})),
            base_step("g", json!({"method": "HEAD", "retry": {"attempts": 2}})),
            base_step("h", json!({"method": "OPTIONS", "retry": {"attempts": 2}})),
            base_step(
                "i",
                json!({"method": "GET", "retry": {"attempts": 2}, "depends_on": ["a", "b"]}),
            ),
        ],
    )]);
    let problems = validate(&registry);
    assert!(errors_of(&problems).is_empty(), "{problems:#?}");
}

#[test]
fn chain_control_fields_are_checked_at_load_naming_connector_step_and_field() {
    let later = |field: &str, value: &str| {
        vec![
            base_step("a", json!({ field: value })),
            base_step("b", json!({})),
        ]
    };
    let cases: Vec<(&str, Vec<Value>, &str, &str)> = vec![
        (
            "when in braces",
            vec![base_step("a", json!({"when": "{{ x }}"}))],
            "a",
            "when",
        ),
        (
            "when is not one expression",
            vec![base_step("a", json!({"when": "a b c"}))],
            "a",
            "when",
        ),
        (
            "when with a block tag",
            vec![base_step("a", json!({"when": "{% if true %}1{% endif %}"}))],
            "a",
            "when",
        ),
        (
            "when reads a later step",
            later("when", "steps.b.status_code == 200"),
            "a",
            "when",
        ),
        (
            "for_each reads a later step",
            later("for_each", "steps.b.body | from_json"),
            "a",
            "for_each",
        ),
        (
            "max_concurrency 0",
            vec![base_step(
                "a",
                json!({"for_each": "[1]", "max_concurrency": 0}),
            )],
            "a",
            "max_concurrency",
        ),
        (
            "max_concurrency 17",
            vec![base_step(
                "a",
                json!({"for_each": "[1]", "max_concurrency": 17}),
            )],
            "a",
            "max_concurrency",
        ),
        (
            "max_concurrency without for_each",
            vec![base_step("a", json!({"max_concurrency": 2}))],
            "a",
            "max_concurrency",
        ),
        (
            "retry attempts 6",
            vec![base_step("a", json!({"retry": {"attempts": 6}}))],
            "a",
            "retry",
        ),
        (
            "retry attempts 0",
            vec![base_step("a", json!({"retry": {"attempts": 0}}))],
            "a",
            "retry",
        ),
        (
            "retry backoff over 10000",
            vec![base_step(
                "a",
                json!({"retry": {"attempts": 2, "backoff_ms": 10001}}),
            )],
            "a",
            "retry",
        ),
        (
            "retry_on a 2xx status",
            vec![base_step(
                "a",
                json!({"retry": {"attempts": 2, "retry_on": [200]}}),
            )],
            "a",
            "retry",
        ),
        (
            "retry_on an unknown failure",
            vec![base_step(
                "a",
                json!({"retry": {"attempts": 2, "retry_on": ["dns"]}}),
            )],
            "a",
            "retry",
        ),
        (
            "retry on PATCH without Idempotency-Key",
            vec![base_step(
                "a",
                json!({"method": "PATCH", "retry": {"attempts": 2}}),
            )],
            "a",
            "retry",
        ),
        (
            "timeout_ms 0",
            vec![base_step("a", json!({"timeout_ms": 0}))],
            "a",
            "timeout_ms",
        ),
        (
            "timeout_ms over 300000",
            vec![base_step("a", json!({"timeout_ms": 300001}))],
            "a",
            "timeout_ms",
        ),
        (
            "depends_on a later step",
            vec![
                base_step("a", json!({"depends_on": ["b"]})),
                base_step("b", json!({})),
            ],
            "a",
            "depends_on",
        ),
        (
            "depends_on an unknown step",
            vec![
                base_step("a", json!({})),
                base_step("b", json!({"depends_on": ["nope"]})),
            ],
            "b",
            "depends_on",
        ),
        (
            "depends_on itself",
            vec![
                base_step("a", json!({})),
                base_step("b", json!({"depends_on": ["b"]})),
            ],
            "b",
            "depends_on",
        ),
        (
            "when reads item",
            vec![base_step(
                "a",
                json!({"for_each": "[1]", "when": "item == 1"}),
            )],
            "a",
            "when",
        ),
        (
            "when reads its own step",
            vec![base_step(
                "a",
                json!({"when": "steps.a.status_code == 200"}),
            )],
            "a",
            "when",
        ),
        (
            "when with a comment",
            vec![base_step("a", json!({"when": "true {# why #}"}))],
            "a",
            "when",
        ),
        (
            "on_error unknown",
            vec![base_step("a", json!({"on_error": "explode"}))],
            "a",
            "on_error",
        ),
    ];
    let mut failures = Vec::new();
    for (name, steps, step, field) in cases {
        let problems = validate(&registry(vec![composite("flow", json!({}), steps)]));
        let found = errors_of(&problems).into_iter().any(|p| {
            p["connector"] == "flow"
                && p["step"] == step
                && p["field"].as_str().is_some_and(|f| names_field(f, field))
        });
        if !found {
            failures.push(format!(
                "- {name}: no error at flow › {step} › {field}; problems: {problems:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_composite_response_body_is_checked_at_load() {
    for (template, why) in [
        ("{{ steps.nope.body }}", "an unknown step"),
        ("{{ item }}", "item, which only for_each steps have"),
    ] {
        let problems = validate(&registry(vec![composite(
            "flow",
            json!({ "response_body": template }),
            vec![base_step("a", json!({}))],
        )]));
        assert!(
            errors_of(&problems).iter().any(|p| p["connector"] == "flow"
                && p["step"].is_null()
                && p["field"] == "response_body"),
            "{why}: {problems:#?}"
        );
    }
}

#[test]
fn an_unknown_execution_mode_is_a_load_error() {
    let problems = validate(&registry(vec![composite(
        "flow",
        json!({"execution": "sideways"}),
        vec![base_step("a", json!({}))],
    )]));
    assert!(
        errors_of(&problems)
            .iter()
            .any(|p| p["connector"] == "flow" && p["field"] == "execution"),
        "{problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// 9. cancellation in parallel runs
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_parallel_failure_cancels_the_steps_in_flight_and_starts_no_more() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "par-fail",
        json!({"execution": "parallel"}),
        vec![
            json!({"name": "a", "url": lab.url("/a?delay=200&status=500")}),
            json!({"name": "b", "url": lab.url("/b?delay=2000")}),
            json!({"name": "c", "url": lab.url("/c?after={{ steps.b.status_code }}")}),
        ],
    )]))
    .await;
    let (reply, took) = timed(&app, "par-fail", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_HTTP_ERROR",
        Some("Composite step 'a' (index 0): Downstream (HTTP error)"),
    );
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    assert_eq!(lab.count("/b"), 1, "b never started");
    eventually(
        Duration::from_secs(5),
        "b's call to be dropped",
        async || lab.only("/b").dropped,
    )
    .await;
    // Past b's 2 s: it never finished, and c never started.
    actix_rt::time::sleep(Duration::from_millis(2200)).await;
    let b = lab.only("/b");
    assert!(b.end.is_none(), "b was answered: {b:?}");
    assert_eq!(lab.count("/c"), 0, "a step started after the failure");
    assert_eq!(
        server_timing(&reply),
        entries(&[("step.a", "Step: a"), ("total", "Total")])
    );
    let names: Vec<Value> = timing_steps(&reply)
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("a")], "{}", reply.connector_timing());
    assert_eq!(timing_of(&reply, "a")["state"], "failed");
}

#[actix_rt::test]
async fn a_caller_that_disconnects_mid_parallel_run_cancels_every_step() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![composite(
        "par-gone",
        json!({"execution": "parallel"}),
        vec![
            json!({"name": "a", "url": lab.url("/a?delay=5000")}),
            json!({"name": "b", "url": lab.url("/b?delay=5000")}),
            json!({"name": "c", "url": lab.url("/c"), "depends_on": ["a", "b"]}),
        ],
    )]))
    .await;
    let caller = app.composite_then_hang_up("par-gone").await;
    eventually(
        Duration::from_secs(10),
        "both steps to reach the lab",
        async || lab.count("/a") == 1 && lab.count("/b") == 1,
    )
    .await;
    drop(caller);
    eventually(
        Duration::from_secs(10),
        "the run to be counted as cancelled",
        async || {
            metric(
                &app,
                "connector_runs_total",
                &["connector=\"par-gone\"", "outcome=\"cancelled\""],
            )
            .await
                == 1.0
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "both calls in flight to be dropped",
        async || lab.only("/a").dropped && lab.only("/b").dropped,
    )
    .await;
    assert_eq!(lab.count("/c"), 0, "a step started after the caller left");
    let ok = metric(
        &app,
        "connector_runs_total",
        &["connector=\"par-gone\"", "outcome=\"ok\""],
    )
    .await;
    assert_eq!(ok, 0.0);
}

// ---------------------------------------------------------------------------------------
// 10. step state metrics
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn step_states_are_counted_per_connector_step_and_state() {
    let lab = Lab::start().await;
    let app = spawn_app(registry(vec![
        composite(
            "states",
            json!({}),
            vec![
                json!({"name": "skip", "url": lab.url("/skip"), "when": "false"}),
                json!({"name": "soft", "url": lab.url("/soft?status=503"), "on_error": "continue"}),
                json!({"name": "fine", "url": lab.url("/fine")}),
            ],
        ),
        composite(
            "states-fail",
            json!({}),
            vec![json!({"name": "hard", "url": lab.url("/hard?status=404")})],
        ),
    ]))
    .await;
    for _ in 0..2 {
        let reply = app.composite("states", "", "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(app.composite("states-fail", "", "").await.status, 502);
    let exposition = app.get("/metrics").await.text();
    let count = |connector: &str, step: &str, state: &str| {
        metric_sum(
            &exposition,
            "connector_step_states_total",
            &[
                &format!("connector=\"{connector}\""),
                &format!("step=\"{step}\""),
                &format!("state=\"{state}\""),
            ],
        )
    };
    assert_eq!(count("states", "skip", "skipped"), 2.0, "{exposition}");
    assert_eq!(count("states", "soft", "continued"), 2.0, "{exposition}");
    assert_eq!(count("states", "fine", "ok"), 2.0, "{exposition}");
    assert_eq!(count("states-fail", "hard", "failed"), 1.0, "{exposition}");
    // A skipped step is not also counted as ok, a continued one not as failed.
    assert_eq!(count("states", "skip", "ok"), 0.0, "{exposition}");
    assert_eq!(count("states", "soft", "failed"), 0.0, "{exposition}");
}

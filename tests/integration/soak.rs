//! Soak: thousands of composite runs at high concurrency through the real binary, against a
//! loopback upstream that injects faults (503s and answers slower than the step timeout).
//!
//! Every caller sends its own request id and a token of its own; the two-step composite
//! carries the token through both upstream calls and renders it, with both upstream echoes,
//! into the response. So a response given to the wrong caller, or built from another run's
//! step, shows. Every response must be exactly the success or error envelope its request was
//! planned to get. Memory: the server's RSS after a warm-up, then after two identical load
//! rounds (each after a settle period: the binary's mimalloc purges freed pages after 1 s);
//! the second round must not grow it by more than a few MiB (a leak grows it every round).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::process::{metric_sum, ServerProcess};
use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The server's step timeout (`--step-timeout-ms`). Loopback calls answer in milliseconds,
/// but with both cores saturated a healthy call was seen to take over 300 ms, and the
/// machine is shared: 2 s keeps a planned success from timing out on a noisy machine.
const STEP_TIMEOUT_MS: u64 = 2_000;
/// How long a hanging upstream call waits before answering (well past the step timeout).
const HANG: Duration = Duration::from_millis(5_000);
/// Runs in flight from the test at any time.
const CONCURRENCY: usize = 200;
/// Runs before the baseline is measured.
const WARMUP_RUNS: u64 = 500;
/// Runs per measured round (two rounds).
const ROUND_RUNS: u64 = 3_000;
/// Largest growth of the settled RSS over the warm baseline after the first round.
const MAX_GROWTH_OVER_BASELINE_KIB: u64 = 30 * 1024;
/// Largest growth of the settled RSS from the first round to the identical second one.
const MAX_GROWTH_BETWEEN_ROUNDS_KIB: u64 = 6 * 1024;

/// What the upstream does with run `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Both steps answer 200.
    Ok,
    /// Step `step` (1 or 2) answers 503.
    Unavailable { step: usize },
    /// Step `step` answers only after [`HANG`], past the step timeout.
    Hang { step: usize },
}

/// The fault plan, a pure function of `n` that the upstream and the checks share: 10 % of the
/// runs get a 503, 5 % a hang, each at step 1 or 2.
fn plan(n: u64) -> Plan {
    let roll = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 100;
    let step = 1 + ((n.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) >> 40) % 2) as usize;
    match roll {
        0..=9 => Plan::Unavailable { step },
        10..=14 => Plan::Hang { step },
        _ => Plan::Ok,
    }
}

const STEP_NAMES: [&str; 2] = ["first", "second"];

/// The upstream's answer at `step`: step 1 gets the caller's payload `{n, token}`, step 2 the
/// first answer `{n, echo, stage}`; both answer `{n, echo: <the token they got>, stage}`.
async fn answer(step: usize, body: Bytes) -> HttpResponse {
    let received: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (Some(n), Some(marker)) = (
        received["n"].as_u64(),
        received[if step == 1 { "token" } else { "echo" }].as_str(),
    ) else {
        return HttpResponse::BadRequest().json(json!({"error": "unexpected body", "step": step}));
    };
    match plan(n) {
        Plan::Unavailable { step: s } if s == step => {
            // The marker is in the error body too: it must not reach the caller.
            HttpResponse::ServiceUnavailable()
                .json(json!({"error": "injected fault", "marker": marker}))
        }
        Plan::Hang { step: s } if s == step => {
            actix_rt::time::sleep(HANG).await;
            HttpResponse::Ok().json(json!({"n": n, "echo": marker, "stage": step}))
        }
        _ => HttpResponse::Ok().json(json!({"n": n, "echo": marker, "stage": step})),
    }
}

/// Starts the fault-injecting upstream on 127.0.0.1; returns its base URL.
fn start_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new()
            .route("/first", web::post().to(|b: Bytes| answer(1, b)))
            .route("/second", web::post().to(|b: Bytes| answer(2, b)))
    })
    .workers(1)
    // Longer than any pause of the test, so no pooled connection goes stale mid-test.
    .keep_alive(Duration::from_secs(120))
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(server);
    format!("http://127.0.0.1:{port}")
}

fn registry(upstream: &str) -> Value {
    json!({"composite_connectors": [{
        "name": "Soak Chain",
        "permalink": "soak-chain",
        "steps": [
            {"name": "first", "url": format!("{upstream}/first"), "method": "POST",
             "headers": [{"key": "Content-Type", "value": "application/json"}],
             "request_body": "{{ request.body_text }}"},
            {"name": "second", "url": format!("{upstream}/second"), "method": "POST",
             "headers": [{"key": "Content-Type", "value": "application/json"}],
             "request_body": "{{ steps.first.body }}",
             "response_body": "{% set req = request.body_text | from_json %}{% set first = steps.first.body | from_json %}{% set second = response.body | from_json %}{{ {'n': req.n, 'token': req.token, 'first': first.echo, 'second': second.echo} | tojson }}",
             "response_content_type": "application/json"}
        ]
    }]})
}

/// Outcomes of a set of runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    ok: u64,
    unavailable: u64,
    hang: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.hang += other.hang;
    }
}

/// Every `<prefix><digits>` in `text` names `n`.
fn only_own_markers(text: &str, prefix: &str, n: u64) -> Result<(), String> {
    for (at, _) in text.match_indices(prefix) {
        let digits: String = text[at + prefix.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits != n.to_string() {
            return Err(format!("carries marker {prefix}{digits}"));
        }
    }
    Ok(())
}

/// Runs the composite for `n` and checks the answer against [`plan`].
async fn run_one(client: &awc::Client, url: &str, salt: &str, n: u64) -> Result<Plan, String> {
    let request_id = format!("soak-{n}");
    let token = format!("tok-{salt}-{n}");
    let mut res = client
        .post(url)
        .insert_header(("X-Request-ID", request_id.as_str()))
        .insert_header(("Content-Type", "application/json"))
        .send_body(json!({"n": n, "token": token}).to_string())
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let body = res
        .body()
        .limit(1024 * 1024)
        .await
        .map_err(|e| format!("body failed: {e}"))?;
    let status = res.status().as_u16();
    let text = String::from_utf8_lossy(&body).into_owned();
    let fail = |why: &str| Err(format!("{why}: HTTP {status} {text}"));
    let echoed = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    if echoed != Some(request_id.as_str()) {
        return fail(&format!("X-Request-ID is {echoed:?}, not {request_id}"));
    }
    if let Err(why) = only_own_markers(&text, &format!("tok-{salt}-"), n)
        .and_then(|()| only_own_markers(&text, "soak-", n))
    {
        return fail(&why);
    }
    let Ok(json) = serde_json::from_str::<Value>(&text) else {
        return fail("not JSON");
    };
    let expected = plan(n);
    match expected {
        Plan::Ok => {
            let want = json!({"n": n, "token": token, "first": token, "second": token});
            if status != 200 || json != want {
                return fail(&format!("expected 200 {want}"));
            }
        }
        Plan::Unavailable { step } | Plan::Hang { step } => {
            let (want_status, code, kind) = match expected {
                Plan::Unavailable { .. } => (502, "DOWNSTREAM_HTTP_ERROR", "HTTP error"),
                _ => (504, "DOWNSTREAM_TIMEOUT", "network/external service"),
            };
            let scope = format!(
                "Composite step '{}' (index {}): Downstream ({kind})",
                STEP_NAMES[step - 1],
                step - 1
            );
            if status != want_status
                || json["success"] != false
                || json["errors"]["code"] != code
                || json["errors"]["scope"] != scope.as_str()
                || json["request_id"] != request_id.as_str()
            {
                return fail(&format!("expected {want_status} {code} '{scope}'"));
            }
            if text.contains(&token) {
                return fail("an error envelope carries upstream data");
            }
        }
    }
    Ok(expected)
}

/// Runs `runs` with [`CONCURRENCY`] in flight; panics (with up to ten examples) if any
/// answer is not the planned one.
async fn round(client: &awc::Client, url: &str, salt: &str, runs: std::ops::Range<u64>) -> Tally {
    let outcomes: Vec<(u64, Result<Plan, String>)> = futures_util::stream::iter(runs)
        .map(|n| async move { (n, run_one(client, url, salt, n).await) })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for (n, outcome) in outcomes {
        match outcome {
            Ok(Plan::Ok) => tally.ok += 1,
            Ok(Plan::Unavailable { .. }) => tally.unavailable += 1,
            Ok(Plan::Hang { .. }) => tally.hang += 1,
            Err(why) => failures.push(format!("run {n} ({:?}): {why}", plan(n))),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the runs got a wrong answer, e.g.:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    tally
}

/// The server's RSS once freed memory has gone back: the lowest of several samples taken
/// after the allocator's purge delay (1 s) has passed.
async fn settled_rss_kib(server: &ServerProcess) -> u64 {
    actix_rt::time::sleep(Duration::from_millis(2_000)).await;
    let mut lowest = u64::MAX;
    for _ in 0..6 {
        lowest = lowest.min(server.rss_kib());
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    lowest
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[actix_rt::test]
async fn thousands_of_concurrent_runs_with_faults_answer_each_caller_correctly_without_leaking() {
    let started = Instant::now();
    let upstream = start_upstream();
    let server = ServerProcess::start(
        &registry(&upstream),
        &[
            "--step-timeout-ms",
            &STEP_TIMEOUT_MS.to_string(),
            "--workers",
            "2",
            "--shutdown-timeout-secs",
            "5",
        ],
    );
    let url = format!("{}/connectors/composite/soak-chain/execute", server.base);
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .limit(CONCURRENCY * 2)
                // Shorter than the server's keep-alive (5 s): no request is sent on a
                // connection the server is closing.
                .conn_keep_alive(Duration::from_secs(2)),
        )
        .timeout(Duration::from_secs(20))
        .finish();
    let salt = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );

    let mut total = round(&client, &url, &salt, 0..WARMUP_RUNS).await;
    let baseline = settled_rss_kib(&server).await;

    let mut rounds = Vec::new();
    let mut next = WARMUP_RUNS;
    for _ in 0..2 {
        let t = Instant::now();
        let tally = round(&client, &url, &salt, next..next + ROUND_RUNS).await;
        let elapsed = t.elapsed();
        let peak = server.rss_kib();
        let settled = settled_rss_kib(&server).await;
        next += ROUND_RUNS;
        total.add(tally);
        rounds.push((tally, elapsed, peak, settled));
    }
    for (i, (tally, elapsed, peak, settled)) in rounds.iter().enumerate() {
        eprintln!(
            "round {}: {} runs in {:.1} s ({:.0}/s), {tally:?}; RSS right after {}, settled {}",
            i + 1,
            ROUND_RUNS,
            elapsed.as_secs_f64(),
            ROUND_RUNS as f64 / elapsed.as_secs_f64(),
            mib(*peak),
            mib(*settled)
        );
    }
    eprintln!("RSS after the warm-up (settled): {}", mib(baseline));
    let (first, second) = (rounds[0].3, rounds[1].3);
    assert!(
        first < baseline + MAX_GROWTH_OVER_BASELINE_KIB,
        "RSS after a round {} vs warm baseline {}",
        mib(first),
        mib(baseline)
    );
    assert!(
        second < first + MAX_GROWTH_BETWEEN_ROUNDS_KIB,
        "RSS grew from {} to {} over an identical round: a leak?",
        mib(first),
        mib(second)
    );

    // The plan really injected faults, and the server counted every run once, none left in
    // flight.
    let runs = WARMUP_RUNS + 2 * ROUND_RUNS;
    assert_eq!(total.ok + total.unavailable + total.hang, runs);
    assert!(
        total.unavailable > runs / 20 && total.hang > runs / 50,
        "{total:?}"
    );
    let mut res = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    let metrics = String::from_utf8(res.body().limit(4 << 20).await.unwrap().to_vec()).unwrap();
    let count = |outcome: &str| {
        metric_sum(
            &metrics,
            "connector_runs_total",
            &[
                "connector=\"soak-chain\"",
                &format!("outcome=\"{outcome}\""),
            ],
        ) as u64
    };
    assert_eq!(count("ok"), total.ok);
    assert_eq!(count("downstream_http_error"), total.unavailable);
    assert_eq!(count("timeout"), total.hang);
    assert_eq!(metric_sum(&metrics, "connector_runs_in_flight", &[]), 0.0);

    // And it still shuts down cleanly.
    let mut server = server;
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.try_exit_status() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{}", server.log_tail(20));
    eprintln!("soak took {:.1} s", started.elapsed().as_secs_f64());
}

//! Upstreams that fail in every way a network can: refused, reset mid-body, slow headers, a
//! trickled body, a body that never ends, bytes that are not HTTP, a failed TLS handshake
//! and a 50 MiB body. Each run ends as the right envelope, naming the step, within the step
//! timeout plus a margin, with bounded memory. Then connection retries (only before the
//! request can have been sent, only for idempotent methods, within the step timeout) and
//! load shedding (`--max-in-flight`).
//!
//! The bad upstreams are raw TCP listeners (tokio tasks on the test's runtime) that count
//! the connections they accept. The tests of this file run one at a time (see [`serial`]):
//! they measure the process's memory and their own durations.

// The serializing lock is held across awaits on purpose: each test runs on its own
// single-threaded runtime, so it only ever blocks *other tests'* threads, never its own.
#![allow(clippy::await_holding_lock)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::web;
use common::{
    assert_envelope, closed_port, composite_scope, ok_upstream, resolver_flags, slow_route,
    spawn_app_with, upstream, AppOptions, ClosedPort, Reply, TestApp, NETWORK_SCOPE,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The step timeout of these tests.
const STEP_TIMEOUT_MS: u64 = 400;
/// What a run may take beyond its step timeout.
const MARGIN_MS: u64 = 700;
const MIB: usize = 1024 * 1024;

/// One test at a time: memory is measured for the whole process, and timings should not
/// compete with a neighbour streaming 50 MiB.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------
// Bad upstreams.
// ---------------------------------------------------------------------------------------

/// What a bad upstream does with each connection.
#[derive(Debug, Clone, Copy)]
enum Bad {
    /// Reads the request, sends headers announcing 1000 bytes and 100 of them, then resets
    /// the connection (SO_LINGER 0).
    ResetMidBody,
    /// Reads the request and answers only after three step timeouts.
    SlowHeaders,
    /// Announces 100 bytes and sends one every 100 ms.
    Trickle,
    /// A chunked body that never ends (64 KiB chunks as fast as the runtime reads them).
    Endless,
    /// Garbage instead of a status line.
    NotHttp,
    /// A 200 with a body of this many bytes and a Content-Length.
    Sized(usize),
    /// A 200 with a chunked body of this many bytes.
    Chunked(usize),
    /// Reads the request, then resets the connection without a byte of answer.
    ResetAfterRequest,
    /// Answers a TLS ClientHello with plain-text garbage.
    TlsGarbage,
    /// Closes the connection at once, before reading anything.
    CloseAtOnce,
    /// A well-behaved upstream: `200 ok`.
    Ok,
}

/// A raw TCP upstream on 127.0.0.1.
struct BadUpstream {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl BadUpstream {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL the connectors of these tests call on it.
    fn url(&self) -> String {
        format!("{}/x", self.base())
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Starts an upstream that treats every connection as `bad` says.
async fn bad_upstream(bad: Bad) -> BadUpstream {
    serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), bad)
}

fn serve_on(listener: TcpListener, bad: Bad) -> BadUpstream {
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    actix_rt::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            actix_rt::spawn(behave(stream, bad));
        }
    });
    BadUpstream { port, connections }
}

/// Reads up to the end of the request head (or EOF).
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// The head of a 200 with an octet-stream body framed by `len` (a `Content-Length` or
/// `Transfer-Encoding` line).
fn headers(len: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{len}\r\n\r\n")
}

/// Reads the request head, then writes [`headers`]`(len)`; false when the runtime has hung up.
async fn answer_head(stream: &mut TcpStream, len: &str) -> bool {
    read_head(stream).await;
    stream.write_all(headers(len).as_bytes()).await.is_ok()
}

async fn behave(mut stream: TcpStream, bad: Bad) {
    match bad {
        Bad::ResetMidBody => {
            read_head(&mut stream).await;
            let mut answer = headers("Content-Length: 1000").into_bytes();
            answer.extend_from_slice(&[b'x'; 100]);
            let _ = stream.write_all(&answer).await;
            // Let the runtime take the headers and start on the body, then reset.
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            stream.set_zero_linger().unwrap();
        }
        Bad::SlowHeaders => {
            read_head(&mut stream).await;
            actix_rt::time::sleep(Duration::from_millis(STEP_TIMEOUT_MS * 3)).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
        Bad::Trickle => {
            if !answer_head(&mut stream, "Content-Length: 100").await {
                return;
            }
            for _ in 0..100 {
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
        Bad::Endless => {
            if !answer_head(&mut stream, "Transfer-Encoding: chunked").await {
                return;
            }
            let chunk = chunk_frame(64 * 1024);
            // Until the runtime hangs up.
            while stream.write_all(&chunk).await.is_ok() {}
        }
        Bad::NotHttp => {
            read_head(&mut stream).await;
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe this is not HTTP\r\n\r\n")
                .await;
        }
        Bad::Sized(len) => {
            read_head(&mut stream).await;
            let mut answer = headers(&format!("Content-Length: {len}")).into_bytes();
            answer.resize(answer.len() + 64 * 1024, b'x');
            let mut sent = 0;
            let block = vec![b'x'; 64 * 1024];
            if stream.write_all(&answer).await.is_err() {
                return;
            }
            sent += 64 * 1024;
            while sent < len {
                let n = block.len().min(len - sent);
                if stream.write_all(&block[..n]).await.is_err() {
                    return;
                }
                sent += n;
            }
        }
        Bad::Chunked(len) => {
            if !answer_head(&mut stream, "Transfer-Encoding: chunked").await {
                return;
            }
            let chunk = chunk_frame(64 * 1024);
            for _ in 0..len / (64 * 1024) {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
        Bad::ResetAfterRequest => {
            read_head(&mut stream).await;
            stream.set_zero_linger().unwrap();
        }
        Bad::TlsGarbage => {
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
        Bad::CloseAtOnce => {}
        Bad::Ok => {
            read_head(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        }
    }
}

/// One chunk of `len` bytes in chunked transfer encoding.
fn chunk_frame(len: usize) -> Vec<u8> {
    let mut frame = format!("{len:x}\r\n").into_bytes();
    frame.resize(frame.len() + len, b'y');
    frame.extend_from_slice(b"\r\n");
    frame
}

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

/// Simple connector `name` calling `url`, and composite `c-<name>` whose step `second`
/// (index 1) calls it after a step that succeeds (`GET {good}/ok`).
fn case(name: &str, url: &str, good: &str) -> (Value, Value) {
    (
        json!({"name": name, "permalink": name, "url": url}),
        json!({"name": format!("c-{name}"), "permalink": format!("c-{name}"), "steps": [
            {"name": "first", "url": format!("{good}/ok")},
            {"name": "second", "url": url}
        ]}),
    )
}

fn registry(cases: Vec<(Value, Value)>) -> Value {
    let (connectors, composites): (Vec<Value>, Vec<Value>) = cases.into_iter().unzip();
    json!({"connectors": connectors, "composite_connectors": composites})
}

/// Runs simple connector `name` with GET and times it.
async fn timed_simple(app: &TestApp, name: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = app
        .call("GET", &format!("/connectors/{name}/execute"), None, &[])
        .await;
    (reply, started.elapsed())
}

/// Runs composite `c-<name>` and times it.
async fn timed_composite(app: &TestApp, name: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = app.composite(&format!("c-{name}"), "", "").await;
    (reply, started.elapsed())
}

/// Checks `name` as a simple connector and as step `second` of `c-<name>`: `status`,
/// `code`, the scope with and without the composite prefix, and that each run ended within
/// the step timeout plus the margin (and, for time-outs, not before the step timeout).
/// Returns the durations.
async fn assert_failure(app: &TestApp, name: &str, status: u16, code: &str) -> [Duration; 2] {
    let limit = Duration::from_millis(STEP_TIMEOUT_MS + MARGIN_MS);
    let (simple, simple_took) = timed_simple(app, name).await;
    assert_envelope(&simple, status, code, Some(NETWORK_SCOPE));
    let (composite, composite_took) = timed_composite(app, name).await;
    assert_envelope(
        &composite,
        status,
        code,
        Some(&composite_scope("second", 1, NETWORK_SCOPE)),
    );
    for (took, what) in [(simple_took, "simple"), (composite_took, "composite")] {
        assert!(took < limit, "{name} ({what}) took {took:?}");
        if status == 504 {
            assert!(
                took >= Duration::from_millis(STEP_TIMEOUT_MS),
                "{name} ({what}) timed out early: {took:?}"
            );
        }
        println!("{name} ({what}): {status} {code} in {took:?}");
    }
    [simple_took, composite_took]
}

/// The resident set size of this process, in bytes.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Samples RSS every 2 ms on a thread of its own until dropped; `peak()` is the highest.
struct RssSampler {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start() -> Self {
        let peak = Arc::new(AtomicUsize::new(rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                p.fetch_max(rss_bytes(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::SeqCst).max(rss_bytes())
    }
}

/// Runs `run`, returning its reply, its duration and by how much the process's RSS grew
/// over what it was when the run started (the peak, sampled every 2 ms).
async fn measured(
    run: impl std::future::Future<Output = (Reply, Duration)>,
) -> (Reply, Duration, usize) {
    let before = rss_bytes();
    let sampler = RssSampler::start();
    let (reply, took) = run.await;
    (reply, took, sampler.peak().saturating_sub(before))
}

/// Runs `name` as a simple connector and as step `second` of `c-<name>`, each [`measured`],
/// and checks that both are 502 `DOWNSTREAM_RESPONSE_TOO_LARGE` envelopes (no relayed
/// body), that each took under 5 s and that RSS grew by less than twice `cap`.
async fn assert_too_large_in_bounded_memory(app: &TestApp, name: &str, cap: usize) {
    let (simple, simple_took, simple_grew) = measured(timed_simple(app, name)).await;
    let (composite, composite_took, composite_grew) = measured(timed_composite(app, name)).await;
    println!(
        "{name}: simple {simple_took:?} (RSS +{} KiB), composite {composite_took:?} (RSS +{} KiB)",
        simple_grew / 1024,
        composite_grew / 1024
    );
    assert_envelope(
        &simple,
        502,
        "DOWNSTREAM_RESPONSE_TOO_LARGE",
        Some(NETWORK_SCOPE),
    );
    assert_envelope(
        &composite,
        502,
        "DOWNSTREAM_RESPONSE_TOO_LARGE",
        Some(&composite_scope("second", 1, NETWORK_SCOPE)),
    );
    assert!(simple.body.len() < 4096 && composite.body.len() < 4096);
    for grew in [simple_grew, composite_grew] {
        assert!(
            grew < 2 * cap,
            "{name}: RSS grew by {grew} bytes (cap {cap})"
        );
    }
    for took in [simple_took, composite_took] {
        assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    }
}

/// The value of the series `name{labels...}` in `/metrics` (0 when it does not exist yet).
async fn metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = app.get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0.0)
}

async fn retries_of(app: &TestApp, connector: &str) -> f64 {
    metric(
        app,
        "connector_upstream_retries_total",
        &[("connector", connector)],
    )
    .await
}

fn timeout_flags(f: &mut connector_runtime::config::ServeArgs) {
    f.step_timeout_ms = STEP_TIMEOUT_MS;
}

// ---------------------------------------------------------------------------------------
// Failing upstreams.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn network_failures_are_502s_that_name_the_step_and_end_quickly() {
    let _serial = serial();
    let good = ok_upstream().await;
    let reset = bad_upstream(Bad::ResetMidBody).await;
    let not_http = bad_upstream(Bad::NotHttp).await;
    let closed = closed_port();
    let refused = closed.base();
    let app = spawn_app_with(
        registry(vec![
            case("refused", &format!("{refused}/x"), &good.base),
            case("reset", &reset.url(), &good.base),
            case("not-http", &not_http.url(), &good.base),
        ]),
        AppOptions::default().flags(timeout_flags),
    )
    .await;
    for name in ["refused", "reset", "not-http"] {
        assert_failure(&app, name, 502, "DOWNSTREAM_NETWORK_ERROR").await;
    }
    // A reset after the response started is never retried: one connection per run.
    assert_eq!(reset.connections(), 2);
    assert_eq!(not_http.connections(), 2);
}

#[actix_web::test]
async fn slow_headers_and_a_trickled_body_are_504s_at_the_step_timeout() {
    let _serial = serial();
    let good = ok_upstream().await;
    let slow = bad_upstream(Bad::SlowHeaders).await;
    let trickle = bad_upstream(Bad::Trickle).await;
    let app = spawn_app_with(
        registry(vec![
            case("slow-headers", &slow.url(), &good.base),
            case("trickle", &trickle.url(), &good.base),
        ]),
        AppOptions::default().flags(timeout_flags),
    )
    .await;
    for name in ["slow-headers", "trickle"] {
        assert_failure(&app, name, 504, "DOWNSTREAM_TIMEOUT").await;
    }
}

#[actix_web::test]
async fn a_tls_handshake_failure_is_a_502() {
    let _serial = serial();
    let good = ok_upstream().await;
    let garbage = bad_upstream(Bad::TlsGarbage).await;
    let closes = bad_upstream(Bad::CloseAtOnce).await;
    // https:// upstreams with private addresses allowed: the address is fine, TLS is not.
    let (garbage_port, closes_port) = (garbage.port, closes.port);
    let app = spawn_app_with(
        registry(vec![
            case(
                "tls-garbage",
                &format!("https://garbage.test:{garbage_port}/x"),
                &good.base,
            ),
            case(
                "tls-closed",
                &format!("https://closed.test:{closes_port}/x"),
                &good.base,
            ),
        ]),
        AppOptions::default().flags(resolver_flags(
            true,
            ["garbage.test=127.0.0.1", "closed.test=127.0.0.1"],
            STEP_TIMEOUT_MS,
        )),
    )
    .await;
    for name in ["tls-garbage", "tls-closed"] {
        assert_failure(&app, name, 502, "DOWNSTREAM_NETWORK_ERROR").await;
    }
    // A handshake the upstream answers with garbage fails the same way every time: no retry.
    assert_eq!(garbage.connections(), 2);
    assert_eq!(retries_of(&app, "tls-garbage").await, 0.0);
    // A connection closed before the handshake finished saw no request: retried once (GET).
    assert_eq!(closes.connections(), 4);
}

#[actix_web::test]
async fn a_50_mib_body_is_refused_at_the_default_10_mib_cap_with_bounded_memory() {
    let _serial = serial();
    let good = ok_upstream().await;
    let sized = bad_upstream(Bad::Sized(50 * MIB)).await;
    let chunked = bad_upstream(Bad::Chunked(50 * MIB)).await;
    let app = spawn_app_with(
        registry(vec![
            case("sized-50mib", &sized.url(), &good.base),
            case("chunked-50mib", &chunked.url(), &good.base),
        ]),
        // The default --max-response-bytes (10 MiB); a generous timeout, so the cap decides.
        AppOptions::default().flags(|f| f.step_timeout_ms = 10_000),
    )
    .await;
    let cap = 10 * MIB;
    assert_eq!(
        connector_runtime::config::ServeArgs::for_registry("x").max_response_bytes,
        cap
    );
    for name in ["sized-50mib", "chunked-50mib"] {
        assert_too_large_in_bounded_memory(&app, name, cap).await;
    }
}

#[actix_web::test]
async fn a_never_ending_body_is_cut_at_the_size_cap_with_bounded_memory() {
    let _serial = serial();
    let good = ok_upstream().await;
    let endless = bad_upstream(Bad::Endless).await;
    let cap = 8 * MIB;
    let app = spawn_app_with(
        registry(vec![case("endless", &endless.url(), &good.base)]),
        AppOptions::default().flags(move |f| {
            f.step_timeout_ms = 10_000;
            f.max_response_bytes = cap;
        }),
    )
    .await;
    assert_too_large_in_bounded_memory(&app, "endless", cap).await;
}

#[actix_web::test]
async fn a_never_ending_body_under_the_cap_is_cut_by_the_step_timeout() {
    let _serial = serial();
    let good = ok_upstream().await;
    let endless = bad_upstream(Bad::Endless).await;
    // A cap the run cannot reach within the step timeout: the timeout must stop it.
    let app = spawn_app_with(
        registry(vec![case("endless", &endless.url(), &good.base)]),
        AppOptions::default().flags(|f| {
            timeout_flags(f);
            f.max_response_bytes = usize::MAX / 2;
        }),
    )
    .await;
    let (simple, took) = timed_simple(&app, "endless").await;
    println!(
        "endless without a reachable cap: {} in {took:?}",
        simple.status
    );
    assert_envelope(&simple, 504, "DOWNSTREAM_TIMEOUT", Some(NETWORK_SCOPE));
    assert!(
        took >= Duration::from_millis(STEP_TIMEOUT_MS)
            && took < Duration::from_millis(STEP_TIMEOUT_MS + MARGIN_MS),
        "took {took:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Retries.
// ---------------------------------------------------------------------------------------

fn retry_registry(port: u16) -> Value {
    let url = format!("http://127.0.0.1:{port}/x");
    json!({"connectors": [
        {"name": "retry-get", "permalink": "retry-get", "url": url},
        {"name": "retry-post", "permalink": "retry-post", "url": url, "method": "POST",
         "request_body": "{}"},
        {"name": "retry-patch", "permalink": "retry-patch", "url": url, "method": "PATCH",
         "request_body": "{}"}
    ]})
}

/// Starts the app on [`retry_registry`] for `port` with a step timeout of `step_timeout_ms`,
/// `retries` connection retries (the default when `None`) and a first backoff of
/// `backoff_ms`.
async fn retry_app(
    port: u16,
    step_timeout_ms: u64,
    retries: Option<u32>,
    backoff_ms: u64,
) -> TestApp {
    spawn_app_with(
        retry_registry(port),
        AppOptions::default().flags(move |f| {
            f.step_timeout_ms = step_timeout_ms;
            if let Some(retries) = retries {
                f.upstream_retries = retries;
            }
            f.upstream_retry_backoff_ms = backoff_ms;
        }),
    )
    .await
}

/// A well-behaved upstream ([`Bad::Ok`]) on the reserved `port`, which it opens (the port
/// was never released, so no other test's server can be on it).
fn ok_on(port: ClosedPort) -> BadUpstream {
    serve_on(port.listen(), Bad::Ok)
}

/// The longest wait before a retry (`MAX_RETRY_BACKOFF`, src/upstream/send.rs): the backoff
/// of the tests that check a refused call was *not* retried. A retry is counted before its
/// wait (`on_retry`), so a reply in less than this, with no retry counted, had none planned.
const CAPPED_BACKOFF_MS: u64 = 1_000;

/// Checks that `reply` is a 502 `DOWNSTREAM_NETWORK_ERROR` envelope of a simple connector.
#[track_caller]
fn assert_network_error(reply: &Reply) {
    assert_envelope(reply, 502, "DOWNSTREAM_NETWORK_ERROR", Some(NETWORK_SCOPE));
}

#[actix_web::test]
async fn a_get_that_could_not_connect_is_retried_and_succeeds() {
    let _serial = serial();
    let port = closed_port();
    let app = retry_app(port.port, 5_000, None, 500).await;
    let started = Instant::now();
    // Nothing listens until the runtime has counted its retry (the first attempt was
    // refused); the upstream starts during the 500 ms backoff and takes the second attempt.
    let (reply, upstream) = tokio::join!(
        app.call("GET", "/connectors/retry-get/execute", None, &[]),
        async {
            let deadline = Instant::now() + Duration::from_secs(3);
            while retries_of(&app, "retry-get").await < 1.0 {
                assert!(Instant::now() < deadline, "no retry was counted");
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            ok_on(port)
        }
    );
    let took = started.elapsed();
    println!("refused, then retried: {} in {took:?}", reply.status);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "ok");
    // Two attempts: the refused one (counted as the retry) and the accepted one.
    assert_eq!(retries_of(&app, "retry-get").await, 1.0);
    assert_eq!(upstream.connections(), 1);
    assert!(took >= Duration::from_millis(500), "took {took:?}");
}

#[actix_web::test]
async fn post_and_patch_are_never_retried() {
    let _serial = serial();
    // Nothing ever listens: the first attempt is refused. A retry would be counted and then
    // wait a whole second (the backoff, at its cap) within the 5 s step timeout.
    let port = closed_port();
    let app = retry_app(port.port, 5_000, Some(3), CAPPED_BACKOFF_MS).await;
    for (method, name) in [("POST", "retry-post"), ("PATCH", "retry-patch")] {
        let started = Instant::now();
        let reply = app
            .call(
                method,
                &format!("/connectors/{name}/execute"),
                Some("{}"),
                &[],
            )
            .await;
        let took = started.elapsed();
        println!("{method} refused: {} in {took:?}", reply.status);
        assert_network_error(&reply);
        assert!(
            took < Duration::from_millis(CAPPED_BACKOFF_MS),
            "{method} took {took:?}: it waited for a retry"
        );
        assert_eq!(retries_of(&app, name).await, 0.0, "{method} was retried");
    }
    // Control: with the same flags a GET is retried (and counted) on the same refusal.
    let (reply, took) = timed_simple(&app, "retry-get").await;
    assert_network_error(&reply);
    assert_eq!(retries_of(&app, "retry-get").await, 3.0);
    assert!(
        took >= Duration::from_millis(3 * CAPPED_BACKOFF_MS),
        "{took:?}"
    );
}

#[actix_web::test]
async fn a_failure_after_the_request_was_sent_is_not_retried() {
    let _serial = serial();
    let reset = bad_upstream(Bad::ResetAfterRequest).await;
    let app = retry_app(reset.port, 5_000, Some(3), 10).await;
    let (reply, took) = timed_simple(&app, "retry-get").await;
    println!("reset after the request: {} in {took:?}", reply.status);
    assert_network_error(&reply);
    // A retry happens inside the run, before its reply, and the upstream counts a
    // connection when it accepts it (before it reads the request it then resets): the
    // count is final now.
    assert_eq!(reset.connections(), 1, "the GET was sent again");
    assert_eq!(retries_of(&app, "retry-get").await, 0.0);
}

#[actix_web::test]
async fn with_upstream_retries_0_a_refused_get_is_not_retried() {
    let _serial = serial();
    let port = closed_port();
    let app = retry_app(port.port, 5_000, Some(0), CAPPED_BACKOFF_MS).await;
    let (reply, took) = timed_simple(&app, "retry-get").await;
    assert_network_error(&reply);
    assert!(
        took < Duration::from_millis(CAPPED_BACKOFF_MS),
        "took {took:?}: it waited for a retry"
    );
    assert_eq!(retries_of(&app, "retry-get").await, 0.0);
}

#[actix_web::test]
async fn retries_stop_before_the_step_timeout_and_report_the_connection_failure() {
    let _serial = serial();
    // Waits of 200 and 400 ms fit in the 1 s step timeout; the next (800 ms) would not, so
    // the run ends with the refusal at about 600 ms rather than waiting into a time-out.
    // (400 ms of slack for three refused connects on a loaded machine.)
    const STEP_MS: u64 = 1_000;
    let port = closed_port();
    let app = retry_app(port.port, STEP_MS, Some(10), 200).await;
    let (reply, took) = timed_simple(&app, "retry-get").await;
    println!(
        "refused with 10 retries allowed: {} in {took:?}",
        reply.status
    );
    assert_network_error(&reply);
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(STEP_MS),
        "took {took:?}"
    );
    assert_eq!(retries_of(&app, "retry-get").await, 2.0);
}

#[actix_web::test]
async fn an_upstream_the_address_policy_refuses_is_never_retried() {
    let _serial = serial();
    let listener = common::counting_listener().await;
    let app = spawn_app_with(
        json!({"connectors": [{"name": "internal", "permalink": "internal",
                               "url": format!("https://127.0.0.1:{}/x", listener.port)}]}),
        AppOptions::default().flags(|f| {
            f.allow_private_upstreams = false;
            f.upstream_retries = 3;
        }),
    )
    .await;
    let (reply, _) = timed_simple(&app, "internal").await;
    assert_envelope(
        &reply,
        502,
        "UPSTREAM_ADDRESS_FORBIDDEN",
        Some(NETWORK_SCOPE),
    );
    assert_eq!(retries_of(&app, "internal").await, 0.0);
    assert_eq!(listener.count(), 0);
}

// ---------------------------------------------------------------------------------------
// Overload.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn runs_over_max_in_flight_get_503_overloaded_at_once() {
    let _serial = serial();
    // A slot is held for the whole of a run; these runs hold theirs for 1.5 s. A shed run
    // must be answered well before a slot could free up ("at once"), with 1 s to spare
    // for a loaded machine.
    const SLOW: Duration = Duration::from_millis(1_500);
    const AT_ONCE: Duration = Duration::from_millis(1_000);
    let slow = upstream(|cfg| {
        cfg.route(
            "/slow",
            web::get().to(slow_route(SLOW, 200, json!({"slow": true}))),
        );
    })
    .await;
    let app = spawn_app_with(
        json!({
            "connectors": [{"name": "slow", "permalink": "slow", "url": format!("{}/slow", slow.base)}],
            "composite_connectors": [{"name": "c-slow", "permalink": "c-slow", "steps": [
                {"name": "only", "url": format!("{}/slow", slow.base)}]}]
        }),
        AppOptions::default().flags(|f| f.max_in_flight = 2),
    )
    .await;
    let timed = |path: &'static str| {
        let app = &app;
        async move {
            let started = Instant::now();
            let reply = if path.contains("composite") {
                app.composite("c-slow", "", "").await
            } else {
                app.call("GET", path, None, &[]).await
            };
            (reply, started.elapsed())
        }
    };
    let replies =
        futures_util::future::join_all((0..6).map(|_| timed("/connectors/slow/execute"))).await;
    let ok: Vec<_> = replies.iter().filter(|(r, _)| r.status == 200).collect();
    let shed: Vec<_> = replies.iter().filter(|(r, _)| r.status == 503).collect();
    let statuses: Vec<u16> = replies.iter().map(|(r, _)| r.status).collect();
    assert_eq!((ok.len(), shed.len()), (2, 4), "{statuses:?}");
    for (reply, took) in &shed {
        let errors = assert_envelope(reply, 503, "OVERLOADED", None);
        assert_eq!(errors["params"], json!(["retry_after=1"]), "{errors}");
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
        println!("shed in {took:?}");
        assert!(*took < AT_ONCE, "shed after {took:?}");
    }
    for (_, took) in &ok {
        assert!(*took >= SLOW, "{took:?}");
    }
    assert_eq!(
        metric(
            &app,
            "connector_runs_total",
            &[("connector", "slow"), ("outcome", "overloaded")]
        )
        .await,
        4.0
    );

    // The slots were given back: runs succeed again, and the composite route is capped too.
    // The composite goes once both runs hold their slot: the upstream has their requests
    // (a run takes its slot before it calls the upstream and keeps it until it answers).
    let reached = slow.log.count("/slow");
    let (two_slow, composite) = tokio::join!(
        futures_util::future::join_all((0..2).map(|_| timed("/connectors/slow/execute"))),
        async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while slow.log.count("/slow") < reached + 2 {
                assert!(
                    Instant::now() < deadline,
                    "the two runs never reached the upstream"
                );
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            timed("/connectors/composite/c-slow/execute").await
        }
    );
    assert!(two_slow.iter().all(|(r, _)| r.status == 200));
    let errors = assert_envelope(&composite.0, 503, "OVERLOADED", None);
    assert_eq!(errors["params"], json!(["retry_after=1"]));
    let (again, _) = timed("/connectors/composite/c-slow/execute").await;
    assert_eq!(again.status, 200, "{}", again.text());
}

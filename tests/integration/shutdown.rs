//! Graceful shutdown of the real binary with runs in flight: on SIGTERM (and SIGINT, the
//! same) it stops accepting connections, lets the runs in flight finish within
//! `--shutdown-timeout-secs`, then exits 0. A run longer than that drain timeout is cut off
//! (its connection closes without an answer) and the process still exits 0. A second signal
//! during the drain, or SIGQUIT, stops at once with exit status 1.

use crate::common::git::git;
use std::net::TcpListener;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::process::{connection_refused, get_status, ServerProcess};
use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use serde_json::{json, Value};

/// An upstream whose `POST /slow` answers `{"echo": <the body's marker>}` after `delay`; it
/// counts the calls it has received and those it has answered.
struct SlowUpstream {
    base: String,
    received: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

fn slow_upstream(delay: Duration) -> SlowUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (counter, done) = (received.clone(), answered.clone());
    let server = HttpServer::new(move || {
        let (counter, done) = (counter.clone(), done.clone());
        App::new().route(
            "/slow",
            web::post().to(move |body: Bytes| {
                counter.fetch_add(1, Ordering::SeqCst);
                let done = done.clone();
                async move {
                    actix_rt::time::sleep(delay).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    let received: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    HttpResponse::Ok().json(json!({"echo": received["marker"]}))
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(server);
    SlowUpstream {
        base: format!("http://127.0.0.1:{port}"),
        received,
        answered,
    }
}

/// A composite of one slow step: it posts the caller's payload `{marker}` to `/slow` and
/// answers `{"marker": <the payload's>, "echo": <the upstream's>}`.
fn registry(upstream: &str) -> Value {
    json!({"composite_connectors": [{
        "name": "Slow Run",
        "permalink": "slow-run",
        "steps": [
            {"name": "slow", "url": format!("{upstream}/slow"), "method": "POST",
             "headers": [{"key": "Content-Type", "value": "application/json"}],
             "request_body": "{{ request.body_text }}",
             "response_body": "{{ {'marker': (request.body_text | from_json).marker, 'echo': (response.body | from_json).echo} | tojson }}",
             "response_content_type": "application/json"}
        ]
    }]})
}

/// One run's answer: status and body, or why there was none.
type Answer = Result<(u16, Value), String>;

/// Starts `count` runs, each on a connection of its own, and waits until the upstream has
/// received every one of them (they are then in flight in the server).
async fn start_runs(
    server: &ServerProcess,
    upstream: &SlowUpstream,
    count: usize,
) -> Vec<actix_rt::task::JoinHandle<Answer>> {
    let before = upstream.received.load(Ordering::SeqCst);
    let runs = (0..count)
        .map(|i| {
            let url = format!("{}/connectors/composite/slow-run/execute", server.base);
            actix_rt::spawn(async move {
                // A client per run: its own connection, no pooling between runs.
                let client = awc::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .finish();
                let mut res = client
                    .post(url)
                    .insert_header(("X-Request-ID", format!("drain-{i}")))
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(json!({"marker": format!("m-{i}")}).to_string())
                    .await
                    .map_err(|e| e.to_string())?;
                let body = res.body().await.map_err(|e| e.to_string())?;
                let id = res
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok());
                if id != Some(format!("drain-{i}").as_str()) {
                    return Err(format!("X-Request-ID {id:?}"));
                }
                let json = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                Ok((res.status().as_u16(), json))
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.received.load(Ordering::SeqCst) < before + count {
        assert!(
            Instant::now() < deadline,
            "the runs never reached the upstream"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    runs
}

/// Waits until `limit` after `since` for the process to exit; returns its status and when
/// it was seen to have exited, counted from `since`.
async fn wait_exit(
    server: &mut ServerProcess,
    since: Instant,
    limit: Duration,
) -> (ExitStatus, Duration) {
    loop {
        if let Some(status) = server.try_exit_status() {
            return (status, since.elapsed());
        }
        assert!(
            since.elapsed() < limit,
            "still running {limit:?} after the signal:\n{}",
            server.log_tail(20)
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 10 s) until the server's log has a line containing `needle`.
async fn wait_for_log(server: &ServerProcess, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no '{needle}' in the log:\n{}",
            server.log_tail(20)
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs in flight when `signal` arrives all finish with 200 and their own answer, new
/// connections are refused meanwhile, and the process exits 0 well before the drain
/// timeout. (Runs of 3 s and a drain timeout of 10 s: wide margins for a loaded machine.)
async fn drains_runs_in_flight_then_exits_0(signal: &str) {
    const RUNS: usize = 6;
    const DRAIN_SECS: u64 = 10;
    let upstream = slow_upstream(Duration::from_millis(3_000));
    let mut server = ServerProcess::start(
        &registry(&upstream.base),
        &["--shutdown-timeout-secs", &DRAIN_SECS.to_string()],
    );
    let port = server.port;
    // An idle keep-alive connection must not hold the shutdown up: make one now.
    let idle = awc::Client::default();
    let res = idle
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let runs = start_runs(&server, &upstream, RUNS).await;
    let signalled = Instant::now();
    server.signal(signal);

    // New connections are refused while the runs are still running: before the upstream
    // has answered any of them.
    let refused_after = loop {
        if connection_refused(port) {
            break signalled.elapsed();
        }
        assert_eq!(
            upstream.answered.load(Ordering::SeqCst),
            0,
            "new connections were still accepted when the runs finished ({:?} after SIG{signal}):\n{}",
            signalled.elapsed(),
            server.log_tail(20)
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        upstream.answered.load(Ordering::SeqCst),
        0,
        "refused only once the runs had finished"
    );
    assert_eq!(
        get_status(port, "/healthz"),
        None,
        "a new request was served"
    );

    for (i, run) in runs.into_iter().enumerate() {
        let answer = run.await.unwrap();
        assert_eq!(
            answer,
            Ok((
                200,
                json!({"marker": format!("m-{i}"), "echo": format!("m-{i}")})
            )),
            "run {i} in flight at SIG{signal}:\n{}",
            server.log_tail(20)
        );
    }
    let (status, after) =
        wait_exit(&mut server, signalled, Duration::from_secs(DRAIN_SECS + 5)).await;
    assert_eq!(status.code(), Some(0), "{}", server.log_tail(20));
    // Well inside the drain timeout: nothing (such as the idle connection) held it up.
    assert!(
        after < Duration::from_secs(DRAIN_SECS - 2),
        "exited {after:?} after SIG{signal}"
    );
    eprintln!(
        "SIG{signal}: refused new connections after {refused_after:?}, {RUNS} runs finished, exit 0 after {after:?}"
    );
    drop(idle);
}

#[actix_rt::test]
async fn sigterm_lets_runs_in_flight_finish_refuses_new_connections_and_exits_0() {
    drains_runs_in_flight_then_exits_0("TERM").await;
}

#[actix_rt::test]
async fn sigint_drains_like_sigterm() {
    drains_runs_in_flight_then_exits_0("INT").await;
}

#[actix_rt::test]
async fn a_run_longer_than_the_drain_timeout_is_cut_off_and_the_process_exits_0() {
    let upstream = slow_upstream(Duration::from_millis(8_000));
    let mut server =
        ServerProcess::start(&registry(&upstream.base), &["--shutdown-timeout-secs", "1"]);
    let runs = start_runs(&server, &upstream, 2).await;
    let signalled = Instant::now();
    server.signal("TERM");
    let (status, after) = wait_exit(&mut server, signalled, Duration::from_secs(5)).await;
    // Documented: a drain that times out still ends with exit status 0.
    assert_eq!(status.code(), Some(0), "{}", server.log_tail(20));
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(6_000),
        "exited {after:?} after SIGTERM (drain timeout 1 s, runs need 8 s)"
    );
    for run in runs {
        let answer = run.await.unwrap();
        assert!(answer.is_err(), "a cut-off run got an answer: {answer:?}");
    }
    eprintln!("drain timeout 1 s, 8 s runs: cut off, exit 0 after {after:?}");
}

#[actix_rt::test]
async fn a_second_signal_or_sigquit_stops_at_once_with_exit_1() {
    for signals in [&["INT", "INT"][..], &["TERM", "INT"], &["QUIT"]] {
        let upstream = slow_upstream(Duration::from_millis(10_000));
        let mut server = ServerProcess::start(
            &registry(&upstream.base),
            &["--shutdown-timeout-secs", "30"],
        );
        let runs = start_runs(&server, &upstream, 2).await;
        for (i, signal) in signals.iter().enumerate() {
            if i > 0 {
                // The first signal was handled: the drain has begun, and it goes on (the
                // runs need 10 s, the drain timeout is 30 s).
                wait_for_log(&server, "shutting down").await;
                assert!(
                    server.try_exit_status().is_none(),
                    "{signals:?}: exited early"
                );
            }
            server.signal(signal);
        }
        let last_signal = Instant::now();
        let (status, after) = wait_exit(&mut server, last_signal, Duration::from_secs(5)).await;
        assert_eq!(
            status.code(),
            Some(1),
            "{signals:?}: {}",
            server.log_tail(20)
        );
        assert!(
            after < Duration::from_secs(5),
            "{signals:?}: exit {after:?} after the signal (the runs need 10 s)"
        );
        for run in runs {
            let answer = run.await.unwrap();
            assert!(
                answer.is_err(),
                "{signals:?}: a run got an answer: {answer:?}"
            );
        }
        eprintln!("{signals:?}: exit 1 {after:?} after the last signal");
    }
}

/// `GET /admin/registry` with the bearer token, raw: the JSON body.
fn admin_status(port: u16, token: &str) -> Value {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET /admin/registry HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn sighup_rereads_the_registry_without_stopping() {
    let registry = json!({"connectors": [{"name": "x", "url": "http://127.0.0.1:9/x"}]});
    let server = ServerProcess::start(&registry, &["--admin-token", "hup-token"]);
    assert_eq!(
        admin_status(server.port, "hup-token")["last_sync"]["reason"],
        "startup"
    );
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = admin_status(server.port, "hup-token");
        if status["last_sync"]["reason"] == "signal" {
            assert_eq!(status["state"], "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not trigger a sync: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        get_status(server.port, "/readyz"),
        Some(200),
        "the server keeps serving"
    );
}

fn commit_file(dir: &std::path::Path, path: &str, registry: &Value) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, registry.to_string()).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", path]);
}

fn connector(name: &str) -> Value {
    json!({"connectors": [{"name": name, "permalink": name, "url": "http://127.0.0.1:9/x"}]})
}

/// The permalinks the server serves, from the operator API.
fn served(port: u16) -> Vec<String> {
    admin_status(port, "hup-token")["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["permalink"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sighup_serves_the_new_content_of_the_watched_branch_and_path() {
    // `main` holds a decoy at the default path; the server watches `live` and a path of its
    // own, so serving either default would show.
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    commit_file(
        repo.path(),
        "connectors_registry.json",
        &connector("decoy-main"),
    );
    git(repo.path(), &["checkout", "-q", "-b", "live"]);
    commit_file(
        repo.path(),
        "connectors_registry.json",
        &connector("decoy-live"),
    );
    commit_file(repo.path(), "conf/registry.json", &connector("first"));
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("c");
    let source = [
        "--registry-git",
        repo.path().to_str().unwrap(),
        "--registry-branch",
        "live",
        "--registry-path",
        "conf/registry.json",
        "--registry-cache-dir",
        cache.to_str().unwrap(),
    ];
    let launch = crate::common::process::Launch {
        source: Some(source.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let server = ServerProcess::start_with(&json!({}), &["--admin-token", "hup-token"], launch);
    assert_eq!(served(server.port), ["first"]);

    // A new commit on the watched branch is not read by itself (no polling, no watcher for
    // a git source) ...
    commit_file(repo.path(), "conf/registry.json", &connector("second"));
    assert_eq!(served(server.port), ["first"]);
    // ... until SIGHUP.
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = admin_status(server.port, "hup-token");
        if status["last_sync"]["reason"] == "signal" {
            assert_eq!(status["last_sync"]["result"], "published", "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not trigger a sync: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served(server.port), ["second"]);
}

//! What the push webhook (`POST /hooks/git`) costs a sender who does not know the secret,
//! and what replays and bursts of signed pushes cost: checked on the real binary with real
//! sockets (resident memory from /proc, `git fetch` runs counted by a wrapper around git),
//! and on the in-process server for the body limits.

use crate::common::git::git;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_rt::net::TcpStream;
use bytes::Bytes;
use connector_runtime::http::hooks::{sign, MAX_WEBHOOK_BYTES, WEBHOOK_BODY_TIMEOUT};
use connector_runtime::registry::actor::WEBHOOK_BODIES_AT_ONCE;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::process::get_status;
use crate::common::{spawn_app_with, AppOptions};

const SECRET: &str = "hook-s3cret";
const ADMIN: &str = "admin-t0ken";
const MIB: usize = 1024 * 1024;

/// A repository whose `main` holds `registry`; returns it.
fn repo(registry: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    commit(dir.path(), registry);
    dir
}

/// Commits `registry` on `main`; returns the new head.
fn commit(dir: &Path, registry: &Value) -> String {
    std::fs::write(dir.join("connectors_registry.json"), registry.to_string()).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", "registry"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// `connector-runtime serve` on a git repository, with the webhook and the operator API on
/// and polling off. `git` is a wrapper that counts `git fetch` runs (and can make them slow,
/// as a remote would be) before running the real one.
pub(crate) struct GitServer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log_path: PathBuf,
    fetch_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl GitServer {
    /// Starts on `repo`; `fetch_delay` is how long each `git fetch` sleeps first; `env` is
    /// added to the server's environment.
    pub fn start(repo: &Path, fetch_delay: Duration, env: &[(&str, &Path)]) -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let real_git = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v git"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fetch_log = dir.path().join("fetches.log");
        std::fs::write(
            bin.join("git"),
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = fetch ]; then echo fetch >> '{}'; sleep {}; break; fi; done\nexec '{}' \"$@\"\n",
                fetch_log.display(),
                fetch_delay.as_secs_f64(),
                real_git.trim()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            bin.join("git"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log_path = dir.path().join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_connector-runtime"));
        command
            .arg("serve")
            .arg("--registry-git")
            .arg(repo)
            .arg("--registry-cache-dir")
            .arg(dir.path().join("cache"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--registry-poll-secs",
                "0",
                "--workers",
                "2",
                "--log-format",
                "json",
                "--webhook-secret",
                SECRET,
                "--admin-token",
                ADMIN,
            ])
            .env("PATH", path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .expect("the connector-runtime binary starts");
        let mut server = GitServer {
            child,
            port: 0,
            base: String::new(),
            log_path,
            fetch_log,
            _dir: dir,
        };
        server.wait_until_serving();
        server
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.port == 0 {
            for line in self.log().lines() {
                if let Ok(event) = serde_json::from_str::<Value>(line) {
                    if event["message"] == "connector-runtime serving" {
                        self.port = event["port"].as_u64().unwrap_or(0) as u16;
                    }
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited at start ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.base = format!("http://127.0.0.1:{}", self.port);
        while get_status(self.port, "/readyz") != Some(200) {
            assert!(Instant::now() < deadline, "not ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `git fetch` runs so far.
    pub fn fetches(&self) -> usize {
        std::fs::read_to_string(&self.fetch_log)
            .map(|log| log.lines().count())
            .unwrap_or(0)
    }

    /// Waits until no `git fetch` has started for `quiet` (at most 30 s); returns the count.
    pub async fn fetches_once_quiet(&self, quiet: Duration) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = (self.fetches(), Instant::now());
        while Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            let now = self.fetches();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= quiet {
                break;
            }
        }
        last.0
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// `GET /admin/registry`.
    pub async fn admin_status(&self) -> Value {
        let mut res = awc::Client::default()
            .get(format!("{}/admin/registry", self.base))
            .insert_header(("Authorization", format!("Bearer {ADMIN}")))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        res.json().limit(MIB).await.unwrap()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A push to `main` as GitHub sends it, signed; returns (status, body).
async fn signed_push(base: &str, delivery: &str, body: &str) -> (u16, Value) {
    let mut res = awc::Client::default()
        .post(format!("{base}/hooks/git"))
        .insert_header((
            "X-Hub-Signature-256",
            sign(SECRET.as_bytes(), body.as_bytes()),
        ))
        .insert_header(("X-GitHub-Event", "push"))
        .insert_header(("X-GitHub-Delivery", delivery))
        .insert_header(("Content-Type", "application/json"))
        .timeout(Duration::from_secs(30))
        .send_body(body.to_string())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.body().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn push_body() -> String {
    json!({"ref": "refs/heads/main", "after": "0"}).to_string()
}

/// What a raw connection got back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// A status, and everything read with it (head and any body), lower-cased.
    Status(u16, String),
    /// Closed (or reset) without an answer.
    Closed,
    /// Nothing within the wait.
    Silent,
}

/// Reads an answer's head within `wait`.
async fn answer(stream: &mut TcpStream, wait: Duration) -> Answer {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head).to_lowercase();
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Answer::Status(status, text);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match actix_rt::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return Answer::Silent,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return if head.is_empty() {
                    Answer::Closed
                } else {
                    Answer::Status(0, String::from_utf8_lossy(&head).into_owned())
                }
            }
            Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request head for `/hooks/git` declaring `length` body bytes.
fn hook_head(signature: Option<&str>, length: usize) -> String {
    let signature = signature
        .map(|s| format!("X-Hub-Signature-256: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /hooks/git HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\n{signature}Content-Length: {length}\r\n\r\n"
    )
}

/// A well-formed signature that matches nothing.
fn forged() -> String {
    format!("sha256={}", "0".repeat(64))
}

/// Samples the server's RSS every 100 ms while `running` is set; returns the peak.
fn rss_peak(server: &GitServer, running: Arc<AtomicU64>) -> impl std::future::Future<Output = u64> {
    let pid_status = format!("/proc/{}/status", server.child.id());
    async move {
        let mut peak = 0;
        while running.load(Ordering::SeqCst) == 1 {
            if let Some(kib) = std::fs::read_to_string(&pid_status).ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            }) {
                peak = u64::max(peak, kib);
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    }
}

#[actix_web::test]
async fn unsigned_hook_senders_are_refused_before_their_body_and_a_signed_push_syncs_meanwhile() {
    let repo = repo(&json!({"connectors": []}));
    let server = GitServer::start(repo.path(), Duration::ZERO, &[]);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    let sampling = Arc::new(AtomicU64::new(1));
    let peak = actix_rt::spawn(rss_peak(&server, sampling.clone()));

    // 300 senders announce 1 MiB, send 2 bytes and keep their connection open.
    let senders: Vec<_> = (0..300)
        .map(|_| {
            let port = server.port;
            actix_rt::spawn(async move {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let mut request = hook_head(None, MIB).into_bytes();
                request.extend_from_slice(b"{\"");
                stream.write_all(&request).await.unwrap();
                let answered = answer(&mut stream, Duration::from_secs(3)).await;
                (answered, stream)
            })
        })
        .collect();
    // Meanwhile a real push lands and is served.
    let head = commit(repo.path(), &json!({"connectors": [], "v": 2}));
    let (status, body) = signed_push(&server.base, "real-1", &push_body()).await;
    assert_eq!(status, 202, "{body}");
    let mut open = Vec::new();
    for sender in senders {
        let (answered, stream) = sender.await.unwrap();
        match answered {
            Answer::Status(401, _) => {}
            other => panic!("an unsigned sender got {other:?}, not 401 before its body"),
        }
        open.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.admin_status().await["revision"] != head.as_str() {
        assert!(Instant::now() < deadline, "the signed push did not sync");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    sampling.store(0, Ordering::SeqCst);
    let peak = peak.await.unwrap();
    eprintln!(
        "unsigned senders: RSS {before} KiB before, peak {peak} KiB (+{} KiB)",
        peak.saturating_sub(before)
    );
    // The old handler buffered each (1 MiB sized from Content-Length): +334 MB.
    assert!(
        peak < before + 32 * 1024,
        "300 unsigned senders grew the RSS from {before} to {peak} KiB"
    );
    drop(open);
}

#[actix_web::test]
async fn slow_forged_hook_senders_are_capped_cut_off_in_time_and_memory_stays_bounded() {
    let repo = repo(&json!({"connectors": []}));
    let server = GitServer::start(repo.path(), Duration::ZERO, &[]);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_kib();
    let sampling = Arc::new(AtomicU64::new(1));
    let peak = actix_rt::spawn(rss_peak(&server, sampling.clone()));
    let started = Instant::now();
    // 200 senders with a well-formed but wrong signature announce 1 MiB and send 768 KiB of
    // it as fast as the server takes it, then stall.
    let senders: Vec<_> = (0..200)
        .map(|_| {
            let port = server.port;
            actix_rt::spawn(async move {
                static PART: [u8; 768 * 1024] = [b' '; 768 * 1024];
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let connected = Instant::now();
                let _ = stream
                    .write_all(hook_head(Some(&forged()), MIB).as_bytes())
                    .await;
                let quick = answer(&mut stream, Duration::from_millis(1500)).await;
                if quick != Answer::Silent {
                    return (quick, connected.elapsed());
                }
                let _ =
                    actix_rt::time::timeout(Duration::from_secs(3), stream.write_all(&PART)).await;
                let last = answer(&mut stream, Duration::from_secs(15)).await;
                (last, connected.elapsed())
            })
        })
        .collect();
    let mut refused = 0;
    let mut cut_off = Vec::new();
    for sender in senders {
        match sender.await.unwrap() {
            (Answer::Status(503, head), _) => {
                assert!(head.contains("retry-after: 1"), "{head}");
                refused += 1;
            }
            (Answer::Status(408, _) | Answer::Closed, after) => cut_off.push(after),
            other => panic!("a forged sender got {other:?}"),
        }
    }
    sampling.store(0, Ordering::SeqCst);
    let peak = peak.await.unwrap();
    eprintln!(
        "forged senders: {refused} refused with 503, {} read and cut off after {:?}; RSS {before} KiB before, peak {peak} KiB (+{} KiB)",
        cut_off.len(),
        cut_off,
        peak.saturating_sub(before)
    );
    assert!(
        !cut_off.is_empty() && cut_off.len() <= WEBHOOK_BODIES_AT_ONCE,
        "{} bodies were read at once",
        cut_off.len()
    );
    assert_eq!(refused + cut_off.len(), 200);
    for after in &cut_off {
        assert!(
            *after >= WEBHOOK_BODY_TIMEOUT - Duration::from_millis(500)
                && *after < WEBHOOK_BODY_TIMEOUT + Duration::from_secs(4),
            "a slow body was cut off after {after:?}"
        );
    }
    // 8 bodies of up to 1 MiB, grown as they arrive, took +36-39 MB on a fresh debug
    // binary (allocator pages not yet reused); the old handler, with no cap, took +285 MB.
    assert!(
        peak < before + 96 * 1024,
        "200 forged senders grew the RSS from {before} to {peak} KiB"
    );
    // The slots are free again: a real push gets through.
    assert!(started.elapsed() < Duration::from_secs(20));
    let (status, body) = signed_push(&server.base, "after-flood", &push_body()).await;
    assert_eq!(status, 202, "{body}");
}

#[actix_web::test]
async fn signed_pushes_are_coalesced_and_a_replayed_delivery_is_not_synced_again() {
    let repo = repo(&json!({"connectors": []}));
    // Each fetch takes a second, as from a remote host.
    let server = GitServer::start(repo.path(), Duration::from_secs(1), &[]);
    let at_start = server.fetches();
    assert_eq!(at_start, 1, "the start-up fetch");
    let head = commit(repo.path(), &json!({"connectors": [], "v": 2}));

    // 300 distinct signed pushes, 6 at a time (under the 8 bodies read at once), while an
    // operator watches the status.
    let burst = Instant::now();
    let pushes: Vec<_> = (0..6)
        .map(|sender| {
            let base = server.base.clone();
            actix_rt::spawn(async move {
                for i in 0..50 {
                    let (status, body) =
                        signed_push(&base, &format!("burst-{sender}-{i}"), &push_body()).await;
                    assert_eq!(status, 202, "{body}");
                }
            })
        })
        .collect();
    let watching = {
        let base = server.base.clone();
        actix_rt::spawn(async move {
            let client = awc::Client::default();
            let mut slowest = Duration::ZERO;
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                let asked = Instant::now();
                let res = client
                    .get(format!("{base}/admin/registry"))
                    .insert_header(("Authorization", format!("Bearer {ADMIN}")))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status().as_u16(), 200);
                slowest = slowest.max(asked.elapsed());
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
            slowest
        })
    };
    for push in pushes {
        push.await.unwrap();
    }
    let burst = burst.elapsed();
    let slowest = watching.await.unwrap();
    let fetched = server.fetches_once_quiet(Duration::from_millis(2500)).await - at_start;
    eprintln!(
        "300 pushes in {burst:?}: {fetched} fetches; slowest GET /admin/registry {slowest:?}"
    );
    assert!(
        slowest < Duration::from_millis(800),
        "GET /admin/registry took {slowest:?} during the syncs"
    );
    // One sync per second of burst at most (each fetch takes a second), plus the last one.
    let bound = burst.as_secs() as usize + 3;
    assert!(
        (1..=bound).contains(&fetched),
        "300 pushes made {fetched} fetches (at most {bound} expected)"
    );
    assert_eq!(server.admin_status().await["revision"], head.as_str());

    // The same delivery again: acknowledged, not synced.
    let (status, body) = signed_push(&server.base, "burst-4-33", &push_body()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "duplicate");
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.fetches() - at_start, fetched, "a replay fetched");
    // A new delivery does.
    let (status, _) = signed_push(&server.base, "fresh-1", &push_body()).await;
    assert_eq!(status, 202);
    assert_eq!(
        server.fetches_once_quiet(Duration::from_millis(1500)).await - at_start,
        fetched + 1
    );
}

/// The in-process server on a registry file with the webhook on.
async fn hook_app() -> crate::common::TestApp {
    spawn_app_with(
        json!({"connectors": []}),
        AppOptions::default().flags(|f| {
            f.registry_poll_secs = 0;
            f.webhook_secret = Some(SECRET.into());
        }),
    )
    .await
}

/// A push body of exactly `len` bytes.
fn padded_push(len: usize) -> String {
    let empty = json!({"ref": "refs/heads/main", "pad": ""}).to_string();
    json!({"ref": "refs/heads/main", "pad": " ".repeat(len - empty.len())}).to_string()
}

#[actix_web::test]
async fn a_hook_body_over_1_mib_is_a_413_sized_or_chunked() {
    let app = hook_app().await;
    let signed = |body: &str| sign(SECRET.as_bytes(), body.as_bytes());
    let exact = padded_push(MAX_WEBHOOK_BYTES);
    assert_eq!(exact.len(), MIB);
    let reply = app
        .call(
            "POST",
            "/hooks/git",
            Some(&exact),
            &[("X-Hub-Signature-256", &signed(&exact))],
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());

    let over = padded_push(MAX_WEBHOOK_BYTES + 1);
    let sized = app
        .call(
            "POST",
            "/hooks/git",
            Some(&over),
            &[("X-Hub-Signature-256", &signed(&over))],
        )
        .await;
    assert_eq!(sized.status, 413, "{}", sized.text());
    assert_eq!(sized.errors()["code"], "PAYLOAD_TOO_LARGE");

    let chunks: Vec<Bytes> = over
        .as_bytes()
        .chunks(64 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let chunked = app
        .call_chunked(
            "POST",
            "/hooks/git",
            chunks,
            &[("X-Hub-Signature-256", &signed(&over))],
        )
        .await;
    assert_eq!(chunked.status, 413, "{}", chunked.text());
    assert_eq!(chunked.errors()["code"], "PAYLOAD_TOO_LARGE");
}

fn port_of(app: &crate::common::TestApp) -> u16 {
    app.base.rsplit(':').next().unwrap().parse().unwrap()
}

#[actix_web::test]
async fn a_broken_chunked_hook_body_is_a_400() {
    let app = hook_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(&app)))
        .await
        .unwrap();
    let request = format!(
        "POST /hooks/git HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Hub-Signature-256: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\nzz\r\n",
        forged()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // A chunk size that is not hex breaks the HTTP framing itself: actix-http's decoder then
    // answers its own bare 400, or closes the connection, racing the handler's envelope (both
    // seen here). Either way the body is refused at once, never read on or accepted.
    match answer(&mut stream, Duration::from_secs(3)).await {
        Answer::Status(400, _) | Answer::Closed => {}
        other => panic!("a broken chunked body got {other:?}"),
    }
}

#[actix_web::test]
async fn a_slow_hook_body_is_a_408_when_the_timeout_ends() {
    let app = hook_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(&app)))
        .await
        .unwrap();
    let sent = Instant::now();
    let mut request = hook_head(Some(&forged()), 100).into_bytes();
    request.extend_from_slice(b"{\"ref\": ");
    stream.write_all(&request).await.unwrap();
    let answered = answer(&mut stream, WEBHOOK_BODY_TIMEOUT + Duration::from_secs(3)).await;
    let after = sent.elapsed();
    let Answer::Status(408, text) = answered else {
        panic!("a slow body got {answered:?} after {after:?}");
    };
    assert!(
        after >= WEBHOOK_BODY_TIMEOUT - Duration::from_millis(200),
        "cut off after {after:?}"
    );
    let mut rest = Vec::new();
    let _ = actix_rt::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    let text = text + &String::from_utf8_lossy(&rest).to_lowercase();
    assert!(text.contains("\"request_body_timeout\""), "{text}");
}

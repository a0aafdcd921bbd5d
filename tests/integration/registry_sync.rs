//! Registry sync: a watched git branch (poll and webhook), file watching, the operator API,
//! all-or-nothing publishing, and swaps that never disturb runs in flight.

use crate::common;
use crate::common::git::git;

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{spawn_app_with, upstream, AppOptions, TestApp};
use actix_web::{web, HttpRequest, HttpResponse};
use connector_runtime::http::hooks::sign;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

const ADMIN: &str = "admin-t0ken";
const HOOK_SECRET: &str = "hook-s3cret";

/// A repository with `registry` committed on `main`.
fn repo(registry: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["config", "user.email", "test@example.com"]);
    git(dir.path(), &["config", "user.name", "Test"]);
    commit(dir.path(), registry, "first");
    dir
}

fn commit(dir: &Path, registry: &Value, message: &str) {
    std::fs::write(
        dir.join("connectors_registry.json"),
        serde_json::to_string_pretty(registry).unwrap(),
    )
    .unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

fn echo_connector(permalink: &str, base: &str, version: &str) -> Value {
    json!({"name": permalink, "permalink": permalink, "url": format!("{base}/echo"),
           "headers": [{"key": "X-Version", "value": version}]})
}

/// An upstream whose `/echo` answers `{"version": <X-Version header>}`, after waiting the
/// `delay=` milliseconds of its query.
async fn version_upstream() -> common::Upstream {
    upstream(|cfg| {
        cfg.route(
            "/echo",
            web::route().to(|req: HttpRequest| async move {
                let version = req
                    .headers()
                    .get("x-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                let delay = req
                    .query_string()
                    .strip_prefix("delay=")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                actix_rt::time::sleep(Duration::from_millis(delay)).await;
                HttpResponse::Ok().json(json!({"version": version}))
            }),
        );
    })
    .await
}

async fn git_app(repo: &Path, poll_secs: u64) -> TestApp {
    let url = repo.display().to_string();
    let cache = tempfile::tempdir().unwrap().keep();
    spawn_app_with(
        json!({}),
        AppOptions::default().flags(move |f| {
            f.registry = None;
            f.registry_git = Some(url);
            f.registry_cache_dir = Some(cache);
            f.registry_poll_secs = poll_secs;
            f.admin_token = Some(ADMIN.into());
            f.webhook_secret = Some(HOOK_SECRET.into());
        }),
    )
    .await
}

/// The commit `repo`'s `main` points at.
fn head(repo: &Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("git runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn wait_for_status(app: &TestApp, path: &str, status: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        if app.get(path).await.status == status {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn admin_status(app: &TestApp) -> Value {
    let reply = app
        .call(
            "GET",
            "/admin/registry",
            None,
            &[("Authorization", &format!("Bearer {ADMIN}"))],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The record of the first sync that read `revision`, once there is one: it is `last_sync`
/// until a later sync replaces it, and the tests that use this run no other syncs (a git
/// source with polling off has no watcher).
async fn wait_for_sync_of(app: &TestApp, revision: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = admin_status(app).await;
        if status["last_sync"]["revision"] == revision {
            return status["last_sync"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no sync read {revision} within 30 s: {status}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `connector_registry_loads_total{result="ok"}`: how many registries have been published.
async fn publishes(app: &TestApp) -> u64 {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    common::process::metric_sum(
        &reply.text(),
        "connector_registry_loads_total",
        &["result=\"ok\""],
    ) as u64
}

/// `POST /admin/registry/sync` with the operator token.
async fn admin_sync(app: &TestApp) -> common::Reply {
    app.call(
        "POST",
        "/admin/registry/sync",
        None,
        &[("Authorization", &format!("Bearer {ADMIN}"))],
    )
    .await
}

/// A repository with connector `first` (version "1", on `up`) and the app following it
/// with polling off.
async fn first_in_git(up: &common::Upstream) -> (tempfile::TempDir, TestApp) {
    let repo = repo(&json!({"connectors": [echo_connector("first", &up.base, "1")]}));
    let app = git_app(repo.path(), 0).await;
    (repo, app)
}

/// Starts the app on the registry file `registry` with polling off and the operator token
/// set. Its file watcher is on: assertions must not depend on whether the watcher or another
/// sync read a change first. Tests that are not about the file use [`git_app`], which has no
/// watcher.
async fn file_app(registry: Value) -> TestApp {
    spawn_app_with(
        registry,
        AppOptions::default().flags(|f| {
            f.registry_poll_secs = 0;
            f.admin_token = Some(ADMIN.into());
        }),
    )
    .await
}

async fn push_hook(app: &TestApp, body: &Value, signature: Option<String>) -> common::Reply {
    let body = body.to_string();
    let sig = signature.unwrap_or_else(|| sign(HOOK_SECRET.as_bytes(), body.as_bytes()));
    app.call(
        "POST",
        "/hooks/git",
        Some(&body),
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", "push")],
    )
    .await
}

#[actix_web::test]
async fn a_valid_push_is_served_within_the_poll_interval() {
    let up = version_upstream().await;
    let repo = repo(&json!({"connectors": [echo_connector("first", &up.base, "1")]}));
    let app = git_app(repo.path(), 1).await;
    assert_eq!(app.execute("first").await.status, 200);
    commit(
        repo.path(),
        &json!({"connectors": [echo_connector("first", &up.base, "1"), echo_connector("second", &up.base, "1")]}),
        "add second",
    );
    assert!(
        wait_for_status(&app, "/connectors/second/execute", 200).await,
        "the push was not picked up by polling"
    );
    let status = admin_status(&app).await;
    assert_eq!(status["state"], "ok");
    assert_eq!(status["last_sync"]["changes"]["created"], json!(["second"]));
    assert_eq!(status["revision"], head(repo.path()));
}

#[actix_web::test]
async fn a_signed_push_webhook_triggers_a_sync_and_bad_signatures_do_not() {
    let up = version_upstream().await;
    let (repo, app) = first_in_git(&up).await;
    commit(
        repo.path(),
        &json!({"connectors": [echo_connector("second", &up.base, "1")]}),
        "replace",
    );
    let push = json!({"ref": "refs/heads/main", "after": "x"});

    let missing = app
        .call("POST", "/hooks/git", Some(&push.to_string()), &[])
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.errors()["code"], "INVALID_SIGNATURE");
    let wrong = push_hook(
        &app,
        &push,
        Some(sign(b"not-the-secret", push.to_string().as_bytes())),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let other_branch = push_hook(&app, &json!({"ref": "refs/heads/feature"}), None).await;
    assert_eq!(other_branch.status, 200);
    assert_eq!(other_branch.json()["status"], "ignored");
    // Each of those pushes was answered before this request is sent, and the registry actor
    // takes requests in order: had one of them asked for a sync, that sync would read the
    // commit first (or be reading it), and this sync, which reads after its request arrives,
    // would find nothing new. Publishing the commit here is proof that none did, however
    // long a fetch takes.
    let sync = admin_sync(&app).await;
    assert_eq!(sync.status, 200, "{}", sync.text());
    let record = sync.json()["sync"].clone();
    assert_eq!(
        (&record["reason"], &record["result"]),
        (&json!("admin"), &json!("published")),
        "an unsigned or foreign push synced before the operator's sync: {record}"
    );
    assert_eq!(record["changes"]["created"], json!(["second"]), "{record}");
    assert_eq!(record["changes"]["removed"], json!(["first"]), "{record}");

    commit(
        repo.path(),
        &json!({"connectors": [echo_connector("third", &up.base, "1")]}),
        "replace again",
    );
    let pushed = head(repo.path());
    let accepted = push_hook(&app, &push, None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let record = wait_for_sync_of(&app, &pushed).await;
    assert_eq!(record["reason"], "webhook", "{record}");
    assert_eq!(record["result"], "published", "{record}");
    assert_eq!(record["changes"]["created"], json!(["third"]), "{record}");
    assert_eq!(
        record["changes"]["removed"],
        json!(["second"]),
        "a connector missing from the push is removed: {record}"
    );
    assert_eq!(app.execute("third").await.status, 200);
    assert_eq!(app.execute("second").await.status, 404);
}

#[actix_web::test]
async fn an_invalid_commit_is_rejected_with_the_field_named_and_the_old_registry_keeps_serving() {
    let up = version_upstream().await;
    let (repo, app) = first_in_git(&up).await;
    let served = admin_status(&app).await["revision"].clone();
    let mut bad = echo_connector("first", &up.base, "{{ steps.nope.body }}");
    bad["headers"][0]["key"] = json!("Bad Header");
    commit(repo.path(), &json!({"connectors": [bad]}), "break it");
    let reply = admin_sync(&app).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let body = reply.json();
    let errors = body["sync"]["errors"].as_array().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|p| p["connector"] == "first" && p["field"] == "headers[0].key"),
        "{body}"
    );
    let status = admin_status(&app).await;
    assert_eq!(status["state"], "failed");
    assert!(
        status["error"].as_str().unwrap().contains("headers[0].key"),
        "{status}"
    );
    assert_eq!(
        status["revision"], served,
        "the served revision must not change"
    );
    let still = app.execute("first").await;
    assert_eq!(still.status, 200);
    assert_eq!(still.json()["version"], "1");
}

#[actix_web::test]
async fn deleting_the_registry_file_removes_the_connectors() {
    let up = version_upstream().await;
    let (repo, app) = first_in_git(&up).await;
    git(repo.path(), &["rm", "-q", "connectors_registry.json"]);
    git(repo.path(), &["commit", "-q", "-m", "remove the registry"]);
    let reply = admin_sync(&app).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["sync"]["changes"]["removed"], json!(["first"]));
    assert_eq!(app.execute("first").await.status, 404);
}

#[actix_web::test]
async fn the_operator_api_needs_the_bearer_token() {
    let up = version_upstream().await;
    let (_repo, app) = first_in_git(&up).await;
    assert_eq!(
        app.call("GET", "/admin/registry", None, &[]).await.status,
        401
    );
    assert_eq!(
        app.call(
            "GET",
            "/admin/registry",
            None,
            &[("Authorization", "Bearer wrong")]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        app.call(
            "POST",
            "/admin/registry/sync",
            None,
            &[("Authorization", "Bearer wrong")]
        )
        .await
        .status,
        401
    );
    let status = admin_status(&app).await;
    assert_eq!(status["connectors"][0]["permalink"], "first");
    assert_eq!(status["connectors"][0]["kind"], "simple");
}

#[actix_web::test]
async fn without_a_token_or_secret_the_operator_api_and_webhook_are_off() {
    let up = version_upstream().await;
    let app = spawn_app_with(
        json!({"connectors": [echo_connector("first", &up.base, "1")]}),
        AppOptions::default(),
    )
    .await;
    assert_eq!(
        app.call(
            "GET",
            "/admin/registry",
            None,
            &[("Authorization", "Bearer x")]
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.call("POST", "/hooks/git", Some("{}"), &[]).await.status,
        404
    );
}

#[actix_web::test]
async fn an_edited_registry_file_is_picked_up_by_the_watcher() {
    let up = version_upstream().await;
    let app = spawn_app_with(
        json!({"connectors": [echo_connector("first", &up.base, "1")]}),
        AppOptions::default().flags(|f| f.registry_poll_secs = 0),
    )
    .await;
    assert_eq!(app.execute("first").await.json()["version"], "1");
    // Editors write a temporary file and rename it over the original.
    let tmp = app.registry_path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        json!({"connectors": [echo_connector("first", &up.base, "2")]}).to_string(),
    )
    .unwrap();
    std::fs::rename(&tmp, &app.registry_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let version = app.execute("first").await.json()["version"].clone();
        if version == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file change was not picked up"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens and closes of one file, as the kernel reports them (inotify): lets a test wait for
/// "something has read the file" instead of guessing how long that takes.
struct FileAccess {
    fd: OwnedFd,
    /// Event masks read from `fd` and not yet looked at, oldest first.
    queued: VecDeque<u32>,
}

impl FileAccess {
    /// Starts reporting every open, and every close after reading or writing, of `path`.
    fn watch(path: &Path) -> FileAccess {
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mask = libc::IN_OPEN | libc::IN_CLOSE_WRITE | libc::IN_CLOSE_NOWRITE;
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), name.as_ptr(), mask) };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        FileAccess {
            fd,
            queued: VecDeque::new(),
        }
    }

    /// Skips events until one in `mask` (panics after 30 s without one).
    fn wait_for(&mut self, mask: u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(event) = self.queued.pop_front() {
                if event & mask != 0 {
                    return;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no inotify event {mask:#x} within 30 s");
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
            if ready <= 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            assert!(
                n > 0,
                "reading inotify: {}",
                std::io::Error::last_os_error()
            );
            // struct inotify_event: wd, mask, cookie, len (u32 each), then `len` name bytes.
            let mut at = 0;
            while at + 16 <= n as usize {
                let word =
                    |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                self.queued.push_back(word(4));
                at += 16 + word(12) as usize;
            }
        }
    }
}

#[actix_web::test]
async fn a_file_rewritten_in_place_is_read_whole_and_only_an_empty_file_that_stays_empty_counts() {
    // `>` redirection and plain writes truncate the file first: a sync that reads it at that
    // moment must wait for the content instead of removing every connector.
    let up = version_upstream().await;
    let app = file_app(json!({"connectors": [echo_connector("first", &up.base, "1")]})).await;
    let published = publishes(&app).await;
    let path = app.registry_path.clone();
    let mut access = FileAccess::watch(&path);
    std::fs::write(&path, "").unwrap();
    let rewritten = json!({"connectors": [echo_connector("first", &up.base, "2")]}).to_string();
    // The rest of the rewrite lands only once a sync has opened and read the truncated file
    // (an open reported after the truncation's close sees it empty), so that sync must take
    // the re-read: it is not left to how soon the sync happens to start. What is left to
    // timing is the product's own assumption, that a rewrite completes within the settle
    // (EMPTY_FILE_SETTLE, 250 ms); here it is this thread's wake-up.
    let writer = std::thread::spawn(move || {
        access.wait_for(libc::IN_CLOSE_WRITE); // the truncation
        access.wait_for(libc::IN_OPEN); // a sync opens the empty file...
        access.wait_for(libc::IN_CLOSE_NOWRITE); // ...and has read it
        std::fs::write(path, rewritten).unwrap();
    });
    // The file watcher also syncs on these writes (and on the reads: every sync's open wakes
    // it), so whether this sync or a watcher's read the empty file is not known; this one
    // reads after its request, so its answer never shows the connectors removed.
    let reply = admin_sync(&app).await;
    writer.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["sync"]["changes"]["removed"],
        json!([]),
        "{}",
        reply.text()
    );
    // Requested after the rewrite: the registry is then the rewritten one, whatever read what.
    assert_eq!(admin_sync(&app).await.status, 200);
    assert_eq!(app.execute("first").await.json()["version"], "2");
    assert_eq!(
        publishes(&app).await,
        published + 1,
        "the rewritten registry must be the only one published: the sync that read the \
         truncated file published it empty"
    );

    // An empty file that stays empty removes the connectors, as documented.
    let published = publishes(&app).await;
    std::fs::write(&app.registry_path, "").unwrap();
    let reply = admin_sync(&app).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(app.execute("first").await.status, 404);
    let status = admin_status(&app).await;
    assert_eq!(status["connectors"], json!([]), "{status}");
    assert_eq!(
        publishes(&app).await,
        published + 1,
        "one publish, of the empty registry"
    );
    // The watcher's sync may have published it first; then this one found nothing new.
    let record = reply.json()["sync"].clone();
    match record["result"].as_str() {
        Some("published") => assert_eq!(record["changes"]["removed"], json!(["first"]), "{record}"),
        Some("unchanged") => assert_eq!(record["revision"], status["revision"], "{record}"),
        _ => panic!("unexpected sync record {record}"),
    }
}

/// An upstream whose `/echo` reports each request's `X-Version` on the returned receiver as
/// the request arrives, and answers `{"version": <X-Version>}` only once the returned gate
/// is set to `true`: a run is held in flight as long as a test needs, and the test knows
/// when it got there.
async fn held_upstream() -> (
    common::Upstream,
    mpsc::UnboundedReceiver<String>,
    watch::Sender<bool>,
) {
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let (gate, open) = watch::channel(false);
    let up = upstream(move |cfg| {
        let (arrived, open) = (arrived.clone(), open.clone());
        cfg.route(
            "/echo",
            web::route().to(move |req: HttpRequest| {
                let (arrived, mut open) = (arrived.clone(), open.clone());
                async move {
                    let version = req
                        .headers()
                        .get("x-version")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    let _ = arrived.send(version.clone());
                    let _ = open.wait_for(|open| *open).await;
                    HttpResponse::Ok().json(json!({"version": version}))
                }
            }),
        );
    })
    .await;
    (up, arrivals, gate)
}

#[actix_web::test]
async fn a_run_in_flight_during_a_swap_completes_on_its_original_definition() {
    let (up, mut arrivals, gate) = held_upstream().await;
    // The definition's version goes out in a header and comes back through the response
    // template: "request's/response's" shows which definition each half of the run used.
    let v = |version: &str| {
        json!({"connectors": [{"name": "slow", "url": format!("{}/echo", up.base),
        "headers": [{"key": "X-Version", "value": version}],
        "response_body": format!("{{{{ (response.body | from_json).version }}}}/{version}")}]})
    };
    // A git source with polling off: no file watcher, so the one sync below is the swap.
    let repo = repo(&v("1"));
    let app = git_app(repo.path(), 0).await;
    let in_flight = {
        let base = app.base.clone();
        actix_rt::spawn(async move {
            let mut res = awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish()
                .get(format!("{base}/connectors/slow/execute"))
                .send()
                .await
                .unwrap();
            let body = res.body().await.unwrap();
            (
                res.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        })
    };
    // The run is at the upstream (so it has its definition) and stays there until the gate
    // opens, however late it started.
    let sent = actix_rt::time::timeout(Duration::from_secs(30), arrivals.recv())
        .await
        .expect("the run did not reach the upstream within 30 s");
    assert_eq!(sent.as_deref(), Some("1"));
    commit(repo.path(), &v("2"), "v2");
    let sync = admin_sync(&app).await;
    assert_eq!(sync.status, 200, "{}", sync.text());
    let record = sync.json()["sync"].clone();
    assert_eq!(record["result"], "published", "{record}");
    assert_eq!(record["changes"]["updated"], json!(["slow"]), "{record}");
    assert!(
        !in_flight.is_finished(),
        "the run ended before the gate opened"
    );
    gate.send(true).unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "1/1"));
    assert_eq!(app.execute("slow").await.text(), "2/2");
}

/// A two-step composite whose both steps send the registry's version; the response shows
/// both, so a run that mixed two registries would be visible.
fn versioned(base: &str, version: u32) -> Value {
    json!({"composite_connectors": [{"name": "pair", "permalink": "pair", "steps": [
        {"name": "first", "url": format!("{base}/echo?delay=2"), "headers": [{"key": "X-Version", "value": version.to_string()}]},
        {"name": "second", "url": format!("{base}/echo"), "headers": [{"key": "X-Version", "value": version.to_string()}],
         "response_body": "{{ (steps.first.body | from_json).version }}/{{ (response.body | from_json).version }}"}
    ]}]})
}

#[actix_web::test]
async fn concurrent_runs_see_zero_failures_and_no_mixed_versions_while_the_registry_swaps() {
    let up = version_upstream().await;
    let app = file_app(versioned(&up.base, 0)).await;
    let mut callers = Vec::new();
    for _ in 0..16 {
        let base = app.base.clone();
        callers.push(actix_rt::spawn(async move {
            let client = awc::Client::default();
            let mut seen = Vec::new();
            for _ in 0..40 {
                let mut res = client
                    .post(format!("{base}/connectors/composite/pair/execute"))
                    .send()
                    .await
                    .unwrap();
                let body = res.body().await.unwrap();
                seen.push((
                    res.status().as_u16(),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
            seen
        }));
    }
    let mut swaps = 0;
    for version in 1..=20u32 {
        std::fs::write(&app.registry_path, versioned(&up.base, version).to_string()).unwrap();
        let sync = admin_sync(&app).await;
        assert_eq!(sync.status, 200);
        swaps += 1;
        actix_rt::time::sleep(Duration::from_millis(15)).await;
    }
    let mut total = 0;
    let mut versions = std::collections::BTreeSet::new();
    for caller in callers {
        for (status, body) in caller.await.unwrap() {
            total += 1;
            assert_eq!(status, 200, "a run failed during a swap: {body}");
            let (a, b) = body
                .split_once('/')
                .unwrap_or_else(|| panic!("unexpected body {body}"));
            assert_eq!(a, b, "a run mixed two registry versions: {body}");
            versions.insert(a.to_string());
        }
    }
    assert_eq!(total, 16 * 40);
    assert_eq!(swaps, 20);
    assert!(
        versions.len() > 1,
        "the swaps never overlapped the runs: {versions:?}"
    );
}

#[actix_web::test]
async fn reading_the_registry_file_does_not_wake_the_watcher() {
    let up = version_upstream().await;
    let app = file_app(json!({"connectors": [echo_connector("first", &up.base, "1")]})).await;
    // Each sync opens and reads the file; the watcher is told of those opens and must not
    // take them for changes (it did, and every sync started the next: ~5 reads a second).
    for _ in 0..3 {
        let reply = admin_sync(&app).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // The watcher debounces for 200 ms: a sync it started would show within a second.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let status = admin_status(&app).await;
    assert_eq!(
        status["last_sync"]["reason"], "admin",
        "a sync nobody asked for ran: {}",
        status["last_sync"]
    );
    // A real change still wakes it.
    let path = app.registry_path.clone();
    std::fs::write(
        &path,
        json!({"connectors": [echo_connector("first", &up.base, "2")]}).to_string(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = admin_status(&app).await;
        if status["last_sync"]["reason"] == "file_change" {
            assert_eq!(status["last_sync"]["result"], "published", "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edit was not picked up: {status}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

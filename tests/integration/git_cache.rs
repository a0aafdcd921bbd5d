//! The git fetch cache cannot be prepared by someone else: a cache (or the directory holding
//! it) owned by another uid or writable by group or others is refused, and git runs without
//! hooks, without system or global config, and without trusting the cache's own config.
//! Real repositories and the real `git`; the suite runs as root, so "another user" is uid
//! 65534 (`nobody`).

use crate::common::git::git;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use connector_runtime::registry::source::git::CACHE_CONFIG;
use connector_runtime::registry::source::{GitSource, Source};

/// A repository with `text` as its registry file on `main`; returns it and its head.
fn repo_with(parent: &Path, name: &str, text: &str) -> (PathBuf, String) {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("connectors_registry.json"), text).unwrap();
    git(&dir, &["add", "-A"]);
    git(
        &dir,
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=T",
            "commit",
            "-q",
            "-m",
            name,
        ],
    );
    let head = git(&dir, &["rev-parse", "HEAD"]);
    (dir, head)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A bare repository at `cache` (and its directory), made the way an attacker would, but
/// owned by this user with private modes so that only git's own behaviour is on trial.
fn prepared_cache(cache: &Path) {
    std::fs::create_dir_all(cache).unwrap();
    git(cache, &["init", "-q", "--bare"]);
    set_mode(cache.parent().unwrap(), 0o700);
    set_mode(cache, 0o700);
}

/// An executable hook script at `path` that appends its name to `marker`.
fn hook(path: &Path, marker: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        format!("#!/bin/sh\necho \"$0\" >> '{}'\n", marker.display()),
    )
    .unwrap();
    set_mode(path, 0o755);
}

/// What a plain `git fetch` into `cache` does, as the runtime ran it before (the control
/// that shows each trap is armed).
fn plain_fetch(cache: &Path, url: &Path) {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(cache)
        .args(["fetch", "--quiet", "--depth", "1", "--no-tags"])
        .arg(url)
        .arg("+refs/heads/main:refs/remotes/origin/main")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn source(url: &Path, cache: &Path) -> GitSource {
    GitSource::new(
        url.display().to_string(),
        "main",
        "connectors_registry.json",
        cache,
    )
}

#[test]
fn hooks_in_a_prepared_cache_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (legit, head) = repo_with(tmp.path(), "legit", r#"{"connectors": []}"#);
    let marker = tmp.path().join("PWNED");
    let evil_hooks = tmp.path().join("evilhooks");
    hook(&evil_hooks.join("reference-transaction"), &marker);

    // The controls: a plain fetch into such a cache runs either hook.
    let control = tmp.path().join("control/registry.git");
    prepared_cache(&control);
    git(
        &control,
        &[
            "config",
            "core.hooksPath",
            &evil_hooks.display().to_string(),
        ],
    );
    plain_fetch(&control, &legit);
    assert!(
        marker.exists(),
        "the control core.hooksPath hook did not run"
    );
    std::fs::remove_file(&marker).unwrap();
    let control = tmp.path().join("control/registry2.git");
    prepared_cache(&control);
    hook(&control.join("hooks/reference-transaction"), &marker);
    plain_fetch(&control, &legit);
    assert!(marker.exists(), "the control hook in hooks/ did not run");
    std::fs::remove_file(&marker).unwrap();

    // A cache with a core.hooksPath of the attacker's, and a hook in its own hooks/.
    let cache = tmp.path().join("base/registry.git");
    prepared_cache(&cache);
    hook(&cache.join("hooks/reference-transaction"), &marker);
    git(
        &cache,
        &[
            "config",
            "core.hooksPath",
            &evil_hooks.display().to_string(),
        ],
    );
    let snapshot = source(&legit, &cache)
        .read()
        .expect("the cache is this user's");
    assert_eq!(snapshot.revision.as_deref(), Some(head.as_str()));
    assert_eq!(snapshot.text, r#"{"connectors": []}"#);
    // Nor does a fetch that updates the ref.
    git(
        &legit,
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=T",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "next",
        ],
    );
    let next = source(&legit, &cache).read().unwrap();
    assert_ne!(next.revision.as_deref(), Some(head.as_str()));
    assert!(
        !marker.exists(),
        "a hook ran: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
}

#[test]
fn an_insteadof_in_the_cache_config_does_not_redirect_the_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let (legit, head) = repo_with(tmp.path(), "legit", r#"{"connectors": []}"#);
    let (evil, evil_head) = repo_with(tmp.path(), "evil", r#"{"connectors": [], "evil": 1}"#);
    let redirect = |cache: &Path| {
        git(
            cache,
            &[
                "config",
                &format!("url.{}.insteadOf", evil.display()),
                &legit.display().to_string(),
            ],
        );
    };

    let control = tmp.path().join("control/registry.git");
    prepared_cache(&control);
    redirect(&control);
    plain_fetch(&control, &legit);
    assert_eq!(
        git(&control, &["rev-parse", "refs/remotes/origin/main"]),
        evil_head,
        "the control fetch was not redirected"
    );

    let cache = tmp.path().join("base/registry.git");
    prepared_cache(&cache);
    redirect(&cache);
    let snapshot = source(&legit, &cache).read().unwrap();
    assert_eq!(snapshot.revision.as_deref(), Some(head.as_str()));
    assert_eq!(snapshot.text, r#"{"connectors": []}"#);
    assert_eq!(
        std::fs::read_to_string(cache.join("config")).unwrap(),
        CACHE_CONFIG,
        "the cache's config is rewritten whole"
    );
}

#[test]
fn a_new_cache_is_created_private_to_this_user() {
    let tmp = tempfile::tempdir().unwrap();
    let (legit, head) = repo_with(tmp.path(), "legit", "{}");
    let cache = tmp.path().join("fresh/nested/registry.git");
    let snapshot = source(&legit, &cache).read().unwrap();
    assert_eq!(snapshot.revision.as_deref(), Some(head.as_str()));
    for dir in [cache.parent().unwrap(), cache.as_path()] {
        let meta = std::fs::metadata(dir).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{}",
            dir.display()
        );
        assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    }
    assert!(
        !cache.join("hooks").exists(),
        "no template (sample hooks) is copied into the cache"
    );
}

/// Reads into `cache` and returns the error, which must name `named` and say `what`.
#[track_caller]
fn refused(url: &Path, cache: &Path, named: &Path, what: &str) {
    let error = source(url, cache)
        .read()
        .expect_err("the cache must be refused")
        .to_string();
    assert!(
        error.contains(&named.display().to_string()) && error.contains(what),
        "{error}"
    );
}

#[test]
fn a_cache_writable_by_group_or_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (legit, _) = repo_with(tmp.path(), "legit", "{}");
    let cache = tmp.path().join("base/registry.git");
    prepared_cache(&cache);
    set_mode(&cache, 0o777);
    refused(
        &legit,
        &cache,
        &cache,
        "writable by group or others (mode 0777)",
    );
    set_mode(&cache, 0o770);
    refused(&legit, &cache, &cache, "(mode 0770)");
    // The directory that holds it, likewise: whoever can write there can swap the cache.
    set_mode(&cache, 0o700);
    set_mode(cache.parent().unwrap(), 0o777);
    refused(
        &legit,
        &cache,
        cache.parent().unwrap(),
        "writable by group or others",
    );
    // Nothing was fetched into it meanwhile.
    assert!(std::fs::read_dir(cache.join("refs/remotes"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true));
    set_mode(cache.parent().unwrap(), 0o755);
    source(&legit, &cache)
        .read()
        .expect("0755 is not writable by others");
}

#[test]
fn a_cache_owned_by_another_user_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (legit, _) = repo_with(tmp.path(), "legit", "{}");
    let marker = tmp.path().join("PWNED");
    let cache = tmp.path().join("base/registry.git");
    prepared_cache(&cache);
    hook(&cache.join("hooks/reference-transaction"), &marker);
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    refused(&legit, &cache, &cache, "owned by uid 65534");
    std::os::unix::fs::chown(&cache, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(cache.parent().unwrap(), Some(65534), Some(65534)).unwrap();
    refused(
        &legit,
        &cache,
        cache.parent().unwrap(),
        "owned by uid 65534",
    );
    // A symbolic link another user made, even to a directory of ours.
    let linked = tmp.path().join("linked");
    std::os::unix::fs::symlink(tmp.path().join("base"), &linked).unwrap();
    std::os::unix::fs::lchown(&linked, Some(65534), Some(65534)).unwrap();
    refused(
        &legit,
        &linked.join("registry.git"),
        &linked,
        "symbolic link owned by uid 65534",
    );
    assert!(!marker.exists());
}

#[actix_web::test]
async fn the_server_reads_no_global_git_config() {
    let tmp = tempfile::tempdir().unwrap();
    let (legit, head) = repo_with(tmp.path(), "legit", r#"{"connectors": []}"#);
    let (evil, evil_head) = repo_with(tmp.path(), "evil", r#"{"connectors": [], "evil": 1}"#);
    // The runtime user's ~/.gitconfig (and the XDG one) rewrite the registry URL.
    let home = tmp.path().join("home");
    let xdg = home.join(".config");
    std::fs::create_dir_all(xdg.join("git")).unwrap();
    let rewrite = format!(
        "[url \"{}\"]\n\tinsteadOf = {}\n",
        evil.display(),
        legit.display()
    );
    std::fs::write(home.join(".gitconfig"), &rewrite).unwrap();
    std::fs::write(xdg.join("git/config"), &rewrite).unwrap();
    let control = tmp.path().join("control/registry.git");
    prepared_cache(&control);
    let out = Command::new("git")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &xdg)
        .arg("--git-dir")
        .arg(&control)
        .args(["fetch", "-q", "--depth", "1"])
        .arg(&legit)
        .arg("+refs/heads/main:refs/remotes/origin/main")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        git(&control, &["rev-parse", "refs/remotes/origin/main"]),
        evil_head,
        "the control fetch was not redirected"
    );

    let server = crate::webhook_limits::GitServer::start(
        &legit,
        std::time::Duration::ZERO,
        &[("HOME", &home), ("XDG_CONFIG_HOME", &xdg)],
    );
    assert_eq!(server.admin_status().await["revision"], head.as_str());
}

/// `serve` on `repo` without `--registry-cache-dir`, with `TMPDIR` set to `tmpdir`, until
/// it exits (its success and log) or `ready()` holds (`None`; it is then stopped). 20 s at most.
fn serve_without_cache_dir(
    repo: &Path,
    tmpdir: &Path,
    ready: impl Fn() -> bool,
) -> Option<(bool, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .arg("serve")
        .arg("--registry-git")
        .arg(repo)
        .args(["--listen", "127.0.0.1:0", "--registry-poll-secs", "0"])
        .env("TMPDIR", tmpdir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let outcome = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
            break Some((status.success(), log));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither exited nor ready"
        );
        if ready() {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

#[test]
fn the_default_cache_is_per_user_and_one_another_user_made_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (legit, _) = repo_with(tmp.path(), "legit", "{}");
    let tmpdir = tmp.path().join("tmp");
    let uid = unsafe { libc::geteuid() };
    let base = tmpdir.join(format!("connector-runtime-{uid}"));
    std::fs::create_dir_all(&base).unwrap();
    std::os::unix::fs::chown(&base, Some(65534), Some(65534)).unwrap();
    let (ok, log) = serve_without_cache_dir(&legit, &tmpdir, || false)
        .expect("the server must refuse to start");
    assert!(!ok);
    assert!(
        log.contains(&base.display().to_string()) && log.contains("owned by uid 65534"),
        "{log}"
    );

    // Without it, the server makes its own, private to this user, and fetches into it.
    std::fs::remove_dir(&base).unwrap();
    let fetched = || {
        std::fs::read_dir(&base)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("refs/remotes/origin/main").exists())
    };
    assert_eq!(serve_without_cache_dir(&legit, &tmpdir, fetched), None);
    let mode = std::fs::metadata(&base).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

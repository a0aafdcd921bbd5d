//! The README's "run the service" command: `demo` serves the example registry against its
//! mock upstream, every example connector answers, and `run` prints a per-step timing table.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_connector-runtime");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `demo` and what it printed.
struct Demo {
    _process: Killed,
    /// The server's base URL.
    base: String,
    /// The mock upstream's base URL.
    upstream: String,
    /// The demo member's token.
    token: String,
}

/// Starts `demo` on free ports and reads the addresses and the member token it prints.
fn start_demo() -> Demo {
    start_demo_with_env(&[])
}

/// [`start_demo`] with these environment variables set for the process.
fn start_demo_with_env(env: &[(&str, &str)]) -> Demo {
    let mut child = Command::new(BIN)
        .envs(env.iter().copied())
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--upstream-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut server, mut upstream, mut token) = (None, None, None);
    let mut token_next = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.is_none() || upstream.is_none() || token.is_none() {
        assert!(
            Instant::now() < deadline,
            "demo did not print its addresses and token"
        );
        let line = lines.next().expect("demo output").unwrap();
        if token_next {
            token = Some(line.trim().to_string());
            token_next = false;
        }
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string);
        if line.trim_start().starts_with("server:") {
            server = url;
        } else if line.trim_start().starts_with("mock upstream:") {
            upstream = url;
        } else if line.trim_start().starts_with("demo member:") {
            token_next = true;
        }
    }
    // Keep draining the demo's output: a closed pipe would fail its next print.
    std::thread::spawn(move || for _ in lines {});
    Demo {
        _process: Killed(child),
        base: server.unwrap(),
        upstream: upstream.unwrap(),
        token: token.unwrap(),
    }
}

fn curl(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    actix_rt::System::new().block_on(async {
        let mut req = awc::Client::default().request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let mut res = match body {
            Some(b) => req.send_body(b.to_string()).await,
            None => req.send().await,
        }
        .unwrap();
        let body = res.body().await.unwrap();
        (
            res.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    })
}

#[test]
fn the_demo_serves_every_example_connector_end_to_end() {
    let demo = start_demo();
    let base = &demo.base;
    let bearer = format!("Bearer {}", demo.token);
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        &'a str,
    );
    let cases: [Case; 6] = [
        (
            "POST",
            "/connectors/composite/member-items/execute",
            &[("Authorization", &bearer)],
            None,
            r#""greeting": "Hello, Ada", "member": "member-1001""#,
        ),
        (
            "POST",
            "/connectors/composite/auth-and-fetch-user/execute",
            &[("Content-Type", "application/json")],
            Some(r#"{"clientId":"w"}"#),
            "Ada Lovelace",
        ),
        (
            "POST",
            "/connectors/composite/user-with-items/execute?limit=3",
            &[],
            Some("{}"),
            "Item itm_003",
        ),
        (
            "GET",
            "/connectors/get-item/execute",
            &[("X-Path-Params", "item_id=itm_042")],
            None,
            "itm_042",
        ),
        (
            "GET",
            "/connectors/search-items/execute?limit=2&q=item",
            &[],
            None,
            "itm_002",
        ),
        (
            "POST",
            "/connectors/echo-payload/execute",
            &[],
            Some(r#"{"hello":"world"}"#),
            "hello",
        ),
    ];
    for (method, path, headers, body, expect) in cases {
        let (status, text) = curl(method, &format!("{base}{path}"), headers, body);
        assert_eq!(status, 200, "{method} {path}: {text}");
        assert!(text.contains(expect), "{method} {path}: {text}");
    }
    let (status, console) = curl("GET", &format!("{base}/console"), &[], None);
    assert_eq!(status, 200, "the demo serves the console");
    assert!(console.contains("connectors-sdk.js"));
}

#[test]
fn run_executes_a_connector_once_and_prints_the_step_timing_table() {
    let demo = start_demo();
    let upstream = &demo.upstream;
    // The example registry has a connector reading `user.*`: the server (and `run`) needs
    // an identity to load it; this one trusts the demo's identity provider.
    let jwks_url = format!("{upstream}/demo-idp/jwks.json");
    let identity = [
        "--identity-issuer",
        "connector-runtime-demo",
        "--identity-audience",
        "connector-runtime-demo",
        "--identity-jwks-url",
        &jwks_url,
        "--tenant-id",
        "demo-community",
    ];
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("variables.json");
    std::fs::write(
        &vars,
        serde_json::json!({"api_base_url": upstream, "auth_base_url": upstream}).to_string(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "auth-and-fetch-user",
            "--registry",
            "examples/connectors_registry.json",
            "--allow-private-upstreams",
        ])
        .args(identity)
        .arg("--variables-file")
        .arg(&vars)
        .args(["--payload", r#"{"clientId":"w"}"#])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("status: 200"), "{stdout}");
    assert!(stdout.contains("Ada Lovelace"), "{stdout}");
    let table: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with('#')).collect();
    assert!(
        table[0].contains("step") && table[0].contains("upstream") && table[0].contains("total ms"),
        "{stdout}"
    );
    assert!(
        table[1].split_whitespace().nth(1) == Some("auth") && table[1].contains("200"),
        "{stdout}"
    );
    assert!(
        table[2].split_whitespace().nth(1) == Some("fetch-user"),
        "{stdout}"
    );
    assert!(table.iter().any(|l| l.starts_with("total:")), "{stdout}");

    let failing = Command::new(BIN)
        .args([
            "run",
            "get-item",
            "--registry",
            "examples/connectors_registry.json",
            "--allow-private-upstreams",
        ])
        .args(identity)
        .arg("--variables-file")
        .arg(&vars)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(
        failing.status.code(),
        Some(2),
        "a missing path parameter is a usage error"
    );
    assert!(String::from_utf8_lossy(&failing.stderr).contains("missing path parameters: item_id"));
}

#[test]
fn demo_token_prints_a_member_token_the_running_demo_accepts() {
    let demo = start_demo();
    let url = format!("{}/connectors/composite/member-items/execute", demo.base);
    let out = Command::new(BIN)
        .args([
            "demo",
            "token",
            "--sub",
            "member-2002",
            "--email",
            "grace@example.com",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let bearer = format!("Bearer {token}");
    let (status, text) = curl("POST", &url, &[("Authorization", &bearer)], None);
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["member"], "member-2002");
    assert_eq!(answer["email"], "grace@example.com");
    assert_eq!(answer["owner_seen_by_upstream"], "member-2002");
    assert_eq!(answer["tenant"], "demo-community");
    // Without a token the connector is refused.
    let (status, text) = curl("POST", &url, &[], None);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("IDENTITY_REQUIRED"), "{text}");
    let expired = Command::new(BIN)
        .args(["demo", "token", "--ttl-secs", "0"])
        .output()
        .unwrap();
    let expired = format!("Bearer {}", String::from_utf8_lossy(&expired.stdout).trim());
    let (status, text) = curl("POST", &url, &[("Authorization", &expired)], None);
    // A token whose exp is now is still accepted within the leeway (60 s).
    assert_eq!(status, 200, "{text}");
}

#[test]
fn run_identifies_the_member_from_its_header_flag() {
    let demo = start_demo();
    let upstream = &demo.upstream;
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("variables.json");
    std::fs::write(
        &vars,
        serde_json::json!({"api_base_url": upstream, "auth_base_url": upstream}).to_string(),
    )
    .unwrap();
    let run = |header: Option<String>| {
        let mut command = Command::new(BIN);
        command
            .args([
                "run",
                "member-items",
                "--registry",
                "examples/connectors_registry.json",
                "--allow-private-upstreams",
                "--identity-issuer",
                "connector-runtime-demo",
                "--identity-audience",
                "connector-runtime-demo",
                "--tenant-id",
                "demo-community",
            ])
            .arg("--identity-jwks-url")
            .arg(format!("{upstream}/demo-idp/jwks.json"))
            .arg("--variables-file")
            .arg(&vars)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if let Some(header) = header {
            command.args(["--header", &header]);
        }
        command.output().unwrap()
    };
    let out = run(Some(format!("Authorization: Bearer {}", demo.token)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""member": "member-1001""#), "{stdout}");
    let out = run(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("IDENTITY_REQUIRED"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `THP_enabled` line of a process's `/proc/PID/status`: 0 once the process turned
/// transparent huge pages off with `prctl(PR_SET_THP_DISABLE)`.
#[cfg(target_os = "linux")]
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status readable");
    status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .map(|value| value.trim().to_string())
        .expect("the kernel reports THP_enabled (Linux 5.0 and later)")
}

#[test]
#[cfg(target_os = "linux")]
fn the_server_turns_transparent_huge_pages_off_unless_mimalloc_allow_thp_is_set() {
    let demo = start_demo();
    assert_eq!(thp_enabled(demo._process.0.id()), "0", "THP off by default");
    drop(demo);
    // This test's own process has not called prctl: what it reads is the system's setting
    // (1 wherever the kernel has THP at all), which the variable must leave alone.
    let system = thp_enabled(std::process::id());
    let demo = start_demo_with_env(&[("MIMALLOC_ALLOW_THP", "1")]);
    assert_eq!(
        thp_enabled(demo._process.0.id()),
        system,
        "MIMALLOC_ALLOW_THP keeps the system's setting"
    );
}

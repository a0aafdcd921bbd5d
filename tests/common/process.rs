//! The real `connector-runtime` binary as a child process (soak and shutdown suites): started
//! on a registry file with `serve`, its port read from its JSON log, stopped with signals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `connector-runtime serve`. Killed (SIGKILL) when dropped if still running.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port it listens on.
    pub port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// How [`ServerProcess::start_with`] launches the binary.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Pass `--allow-private-upstreams` (the address policy off).
    pub allow_private_upstreams: bool,
    /// Run it in a private mount namespace whose `/etc/resolv.conf` has this text, so its
    /// DNS lookups go where the test says (`unshare --mount` and a bind mount: needs root,
    /// which every machine of this project and CI runs as).
    pub resolv_conf: Option<String>,
    /// Flags naming the registry source instead of `--registry <the written file>` (for a
    /// git source: `--registry-git URL ...`).
    pub source: Option<Vec<String>>,
    /// Environment changes for the child: `(name, Some(value))` sets a variable,
    /// `(name, None)` removes an inherited one.
    pub env: Vec<(String, Option<String>)>,
    /// `--log-format text` instead of the JSON lines the helpers read.
    pub text_logs: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            allow_private_upstreams: true,
            resolv_conf: None,
            source: None,
            env: Vec::new(),
            text_logs: false,
        }
    }
}

impl ServerProcess {
    /// Writes `registry` to a temporary file and starts `serve` on it on a port of its own
    /// choosing (`127.0.0.1:0`, read back from the log), with private upstreams allowed,
    /// polling off and `extra` flags; returns once `/readyz` answers 200.
    pub fn start(registry: &Value, extra: &[&str]) -> ServerProcess {
        Self::start_with(registry, extra, Launch::default())
    }

    /// Like [`ServerProcess::start`], launched as `launch` says.
    pub fn start_with(registry: &Value, extra: &[&str], launch: Launch) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let registry_path = dir.path().join("connectors_registry.json");
        std::fs::write(&registry_path, serde_json::to_vec_pretty(registry).unwrap()).unwrap();
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let binary = env!("CARGO_BIN_EXE_connector-runtime");
        let mut command = match &launch.resolv_conf {
            None => Command::new(binary),
            Some(text) => {
                let resolv = dir.path().join("resolv.conf");
                std::fs::write(&resolv, text).unwrap();
                let usable = Command::new("unshare")
                    .args(["--mount", "true"])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(
                    usable,
                    "this test needs `unshare --mount` (root): it gives the server its own \
                     /etc/resolv.conf"
                );
                // unshare and sh exec in place: the child's pid is the server's.
                let mut command = Command::new("unshare");
                command.args(["--mount", "--propagation", "private", "sh", "-c"]);
                command.arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#);
                command.arg(&resolv).arg(binary);
                command
            }
        };
        command.arg("serve");
        match &launch.source {
            Some(flags) => command.args(flags),
            None => command.arg("--registry").arg(&registry_path),
        };
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--registry-poll-secs",
            "0",
            "--log-format",
            if launch.text_logs { "text" } else { "json" },
        ]);
        if launch.allow_private_upstreams {
            command.arg("--allow-private-upstreams");
        }
        for (name, value) in &launch.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let child = command
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the connector-runtime binary starts");
        let mut server = ServerProcess {
            child,
            base: String::new(),
            port: 0,
            log_path,
            _dir: dir,
        };
        server.port = server.wait_for_port(Duration::from_secs(30));
        server.base = format!("http://127.0.0.1:{}", server.port);
        server.wait_ready(Duration::from_secs(30));
        server
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn wait_for_port(&mut self, limit: Duration) -> u16 {
        let deadline = Instant::now() + limit;
        loop {
            for line in self.log().lines() {
                if let Ok(event) = serde_json::from_str::<Value>(line) {
                    if event["message"] == "connector-runtime serving" {
                        if let Some(port) = event["port"].as_u64() {
                            return port as u16;
                        }
                    }
                } else if let Some((_, rest)) = line
                    .contains("connector-runtime serving")
                    .then(|| line.split_once(" port="))
                    .flatten()
                {
                    // The text format: `... connector-runtime serving ... port=NNNN ...`.
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(port) = digits.parse() {
                        return port;
                    }
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = get_status(self.port, "/readyz") {
                if status == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never answered 200:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `QUIT`, ...) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status is readable");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` over a fresh connection with a blocking socket: the status, or `None` when the
/// connection is refused, reset or answers nothing within a second.
pub fn get_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a TCP connection to `port` is refused right now.
pub fn connection_refused(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Sum of the samples of `metric` in a Prometheus text exposition whose labels contain
/// every one of `labels` (`key="value"`).
pub fn metric_sum(exposition: &str, metric: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            (name == metric && labels.iter().all(|l| series.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

//! Upstream TLS with a private CA (`--upstream-ca-file`, docs/spec.md §15): a CA made here,
//! an HTTPS upstream on 127.0.0.1 serving that CA's leaf; refused without the flag (the
//! contract's network error, no retry), trusted with it for steps, simple connectors and
//! OAuth token requests; one TLS connection kept for sequential calls; a bad CA file
//! stopping `serve`, `run` and `test` at start with a message naming it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use crate::common::process::{get_status, ServerProcess};
use crate::common::{assert_envelope, spawn_app_with, AppOptions, NETWORK_SCOPE};

const BIN: &str = env!("CARGO_BIN_EXE_connector-runtime");

/// A private CA (its certificate written as PEM in `dir`) and a leaf it issued for
/// `localhost` and `127.0.0.1`.
struct Pki {
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    leaf: CertificateDer<'static>,
    leaf_key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "connector-runtime test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("private-ca.pem");
        std::fs::write(&ca_file, pem("CERTIFICATE", ca_cert.der())).unwrap();
        Pki {
            dir,
            ca_file,
            leaf: leaf_cert.der().clone(),
            leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        }
    }

    /// Writes `text` to a file named `name` beside the CA file.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// `der` as a PEM block labelled `label` (RFC 7468: base64 in lines of 64).
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

/// What the HTTPS upstream saw.
#[derive(Default)]
struct Seen {
    /// TCP connections accepted.
    accepted: AtomicUsize,
    /// TLS handshakes completed.
    handshakes: AtomicUsize,
    /// `METHOD path authorization` of each request, in order.
    requests: Mutex<Vec<String>>,
}

/// An HTTPS (HTTP/1.1, keep-alive) upstream on 127.0.0.1, on threads of its own: `POST
/// /oauth/token` gives a token, `GET /users/me` wants it, any other path answers
/// `{"path": ...}`. Stops accepting when dropped.
struct TlsUpstream {
    port: u16,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
}

impl TlsUpstream {
    fn start(pki: &Pki) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.leaf.clone()],
                PrivateKeyDer::Pkcs8(pki.leaf_key.clone_key()),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_seen, thread_stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                thread_seen.accepted.fetch_add(1, Ordering::SeqCst);
                let (config, seen) = (config.clone(), thread_seen.clone());
                std::thread::spawn(move || serve_connection(tcp, config, &seen));
            }
        });
        TlsUpstream { port, seen, stop }
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.seen.accepted.load(Ordering::SeqCst)
    }

    fn handshakes(&self) -> usize {
        self.seen.handshakes.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.requests.lock().unwrap().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One connection: the TLS handshake, then requests until the peer closes (or 10 s idle).
fn serve_connection(mut tcp: TcpStream, config: Arc<rustls::ServerConfig>, seen: &Seen) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let mut tls = rustls::ServerConnection::new(config).unwrap();
    while tls.is_handshaking() {
        if tls.complete_io(&mut tcp).is_err() {
            return; // the client refused the certificate (or went away)
        }
    }
    seen.handshakes.fetch_add(1, Ordering::SeqCst);
    let mut stream = BufReader::new(rustls::StreamOwned::new(tls, tcp));
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or("").to_string(),
            words.next().unwrap_or("").to_string(),
        );
        let (mut length, mut authorization) = (0usize, String::new());
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => authorization = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        seen.requests.lock().unwrap().push(
            format!("{method} {path} {authorization}")
                .trim_end()
                .to_string(),
        );
        let (status, answer) = match (method.as_str(), path.as_str()) {
            ("POST", "/oauth/token") => (
                "200 OK",
                json!({"access_token": "tok-tls", "token_type": "Bearer", "expires_in": 3600}),
            ),
            ("GET", "/users/me") if authorization == "Bearer tok-tls" => {
                ("200 OK", json!({"id": "usr_1", "name": "Ada"}))
            }
            ("GET", "/users/me") => ("401 Unauthorized", json!({"error": "bad token"})),
            _ => ("200 OK", json!({"path": path})),
        };
        let answer = answer.to_string();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).is_err()
            || out.write_all(answer.as_bytes()).is_err()
            || out.flush().is_err()
        {
            return;
        }
    }
}

/// A simple connector `items` on `base` and a composite `profile` whose OAuth step reads
/// `/users/me` (its token from `base`'s `/oauth/token`) and whose second step reads `/orders`.
fn registry(base: &str) -> Value {
    let oauth = json!({"type": "oauth_client_credentials", "config": {
        "client_id": "widget", "client_secret": "{{ get_secret('client_secret') }}",
        "token_url": format!("{base}/oauth/token")}});
    json!({
        "connectors": [{"name": "Items", "permalink": "items", "url": format!("{base}/items")}],
        "composite_connectors": [{"name": "Profile", "permalink": "profile", "steps": [
            {"name": "me", "url": format!("{base}/users/me"), "authentication": oauth},
            {"name": "orders", "url": format!("{base}/orders")}
        ]}]
    })
}

/// Only the simple connector `items` on `base` (no secret to provide).
fn items_registry(base: &str) -> Value {
    json!({"connectors": [{"name": "Items", "permalink": "items", "url": format!("{base}/items")}]})
}

/// App options: the OAuth client secret, one worker (so sequential calls share one
/// connection pool), and `ca_file` as `--upstream-ca-file`.
fn options(ca_file: Option<&Path>) -> AppOptions {
    let ca_file = ca_file.map(Path::to_path_buf);
    AppOptions::default()
        .secret("client_secret", "cs-1")
        .flags(move |args| {
            args.workers = Some(1);
            args.resolve = vec!["localhost=127.0.0.1".into()];
            args.upstream_ca_file = ca_file;
        })
}

#[actix_rt::test]
async fn without_the_ca_file_a_private_ca_upstream_is_a_network_error_and_not_retried() {
    let pki = Pki::new();
    let upstream = TlsUpstream::start(&pki);
    let app = spawn_app_with(registry(&upstream.base()), options(None)).await;
    for _ in 0..2 {
        let reply = app.execute("items").await;
        let errors = assert_envelope(&reply, 502, "DOWNSTREAM_NETWORK_ERROR", Some(NETWORK_SCOPE));
        let detail = errors["detail"].as_str().unwrap();
        assert!(detail.contains("TLS"), "{detail}");
    }
    // A certificate refusal fails the same way again: no retry (the default allows one for
    // connection failures), no handshake completed, nothing sent.
    assert_eq!(upstream.accepted(), 2);
    assert_eq!(upstream.handshakes(), 0);
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    // And the server is unharmed.
    assert_eq!(app.get("/livez").await.status, 200);
}

#[actix_rt::test]
async fn with_the_ca_file_sequential_calls_share_one_tls_connection() {
    let pki = Pki::new();
    let upstream = TlsUpstream::start(&pki);
    let app = spawn_app_with(registry(&upstream.base()), options(Some(&pki.ca_file))).await;
    for _ in 0..5 {
        let reply = app.execute("items").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json(), json!({"path": "/items"}));
    }
    assert_eq!(upstream.requests(), vec!["GET /items"; 5]);
    assert_eq!(upstream.accepted(), 1, "one connection for five calls");
    assert_eq!(upstream.handshakes(), 1, "one handshake for five calls");
}

#[actix_rt::test]
async fn with_the_ca_file_oauth_token_requests_and_composite_steps_are_trusted() {
    let pki = Pki::new();
    let upstream = TlsUpstream::start(&pki);
    // By name this time: the leaf's DNS name, resolved to 127.0.0.1 by --resolve.
    let base = format!("https://localhost:{}", upstream.port);
    let app = spawn_app_with(registry(&base), options(Some(&pki.ca_file))).await;
    for _ in 0..2 {
        let reply = app.composite("profile", "", "{}").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json(), json!({"path": "/orders"}));
    }
    assert_eq!(
        upstream.requests(),
        [
            "POST /oauth/token",
            "GET /users/me Bearer tok-tls",
            "GET /orders",
            // The token is cached.
            "GET /users/me Bearer tok-tls",
            "GET /orders",
        ]
    );
    assert_eq!(
        upstream.handshakes(),
        1,
        "token request and steps share a connection"
    );
}

/// Runs the binary with `args` (and `env`), which must exit within 30 s.
fn run_binary(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("CONNECTOR_RUNTIME_UPSTREAM_CA_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("connector-runtime {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The bad CA files: (file, what the error says about it).
fn bad_ca_files(pki: &Pki) -> Vec<(PathBuf, &'static str)> {
    vec![
        (pki.dir.path().join("missing.pem"), "cannot be read"),
        (
            pki.file("empty.pem", "# no certificate here\n"),
            "no certificate in it",
        ),
        (
            pki.file(
                "truncated.pem",
                "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n",
            ),
            "not valid PEM",
        ),
        (
            // Base64 of "not a certificate": PEM, but not X.509.
            pki.file(
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
            ),
            "certificate 1 cannot be used as a root",
        ),
    ]
}

#[test]
fn serve_refuses_a_bad_ca_file_at_start_naming_it() {
    let pki = Pki::new();
    let registry = pki.file(
        "connectors_registry.json",
        &items_registry("https://127.0.0.1:9").to_string(),
    );
    let registry = registry.to_str().unwrap();
    for (file, says) in bad_ca_files(&pki) {
        let path = file.to_str().unwrap();
        let serve = ["serve", "--registry", registry, "--listen", "127.0.0.1:0"];
        let by_flag = run_binary(&[&serve[..], &["--upstream-ca-file", path]].concat(), &[]);
        let by_env = run_binary(&serve, &[("CONNECTOR_RUNTIME_UPSTREAM_CA_FILE", &file)]);
        for output in [by_flag, by_env] {
            let text = text(&output);
            assert_eq!(output.status.code(), Some(1), "{text}");
            assert!(
                text.contains(&format!("--upstream-ca-file {path}: {says}")),
                "{text}"
            );
            assert!(!text.contains("panicked"), "{text}");
        }
    }
}

#[test]
fn serve_with_the_ca_file_calls_the_private_ca_upstream() {
    let pki = Pki::new();
    let upstream = TlsUpstream::start(&pki);
    let ca = pki.ca_file.to_str().unwrap();
    let server = ServerProcess::start(
        &items_registry(&upstream.base()),
        &["--upstream-ca-file", ca],
    );
    assert_eq!(
        get_status(server.port, "/connectors/items/execute"),
        Some(200)
    );
    assert_eq!(upstream.requests(), ["GET /items"]);
}

#[test]
fn run_takes_the_ca_file_and_refuses_a_bad_one() {
    let pki = Pki::new();
    let upstream = TlsUpstream::start(&pki);
    let registry = pki.file(
        "connectors_registry.json",
        &items_registry(&upstream.base()).to_string(),
    );
    let run = [
        "run",
        "items",
        "--registry",
        registry.to_str().unwrap(),
        "--allow-private-upstreams",
    ];
    let trusted = run_binary(
        &[
            &run[..],
            &["--upstream-ca-file", pki.ca_file.to_str().unwrap()],
        ]
        .concat(),
        &[],
    );
    assert_eq!(trusted.status.code(), Some(0), "{}", text(&trusted));
    assert!(text(&trusted).contains("status: 200"), "{}", text(&trusted));

    let untrusted = run_binary(&run, &[]);
    assert_ne!(untrusted.status.code(), Some(0), "{}", text(&untrusted));
    assert!(
        text(&untrusted).contains("DOWNSTREAM_NETWORK_ERROR"),
        "{}",
        text(&untrusted)
    );
    assert_eq!(upstream.requests(), ["GET /items"]);

    let missing = pki.dir.path().join("missing.pem");
    let bad = run_binary(
        &[&run[..], &["--upstream-ca-file", missing.to_str().unwrap()]].concat(),
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains(&format!(
            "--upstream-ca-file {}: cannot be read",
            missing.display()
        )),
        "{}",
        text(&bad)
    );
}

#[test]
fn test_record_takes_the_ca_file_and_refuses_a_bad_one() {
    let pki = Pki::new();
    let upstream = TlsUpstream::start(&pki);
    let registry = pki.file(
        "connectors_registry.json",
        &items_registry(&upstream.base()).to_string(),
    );
    let tests = pki.file(
        "connectors_tests.json",
        &json!({"tests": [{"name": "items", "connector": "items", "expect": {"status": 200}}]})
            .to_string(),
    );
    let test = [
        "test",
        tests.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
        "--record",
        "--allow-private-upstreams",
    ];
    let recorded = run_binary(
        &[
            &test[..],
            &["--upstream-ca-file", pki.ca_file.to_str().unwrap()],
        ]
        .concat(),
        &[],
    );
    assert_eq!(recorded.status.code(), Some(0), "{}", text(&recorded));
    assert_eq!(upstream.requests(), ["GET /items"]);

    let missing = pki.dir.path().join("missing.pem");
    let bad = run_binary(
        &[
            &test[..],
            &["--upstream-ca-file", missing.to_str().unwrap()],
        ]
        .concat(),
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains(&format!(
            "--upstream-ca-file {}: cannot be read",
            missing.display()
        )),
        "{}",
        text(&bad)
    );
    // Nothing was sent for the refused run.
    assert_eq!(upstream.requests(), ["GET /items"]);
}

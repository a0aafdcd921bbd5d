//! Hostile input: SSRF through the upstream address policy, path and query injection through
//! request data rendered into URLs, header injection, caller headers the upstream must never
//! see, and templates that try to use unbounded time or memory.

use crate::common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{
    assert_envelope, composite_scope, counting_listener, echo_route, path_params_header,
    resolver_flags, spawn_app, spawn_app_with, upstream, AppOptions, Upstream, NETWORK_SCOPE,
};
use actix_web::web;
use connector_runtime::registry::{build_registry, BuildOptions, LoadMode};
use connector_runtime::template::{engine::DEFAULT_TEMPLATE_FUEL, Field, RenderLimits};
use serde_json::{json, Value};

const TEMPLATE_SCOPE: &str = "Configuration (template rendering)";

// ---------------------------------------------------------------------------------------
// (a) SSRF
// ---------------------------------------------------------------------------------------

/// The non-public addresses of the issue, each answered by the test resolver for its own host.
const FORBIDDEN_ANSWERS: &[&str] = &[
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "0.0.0.0",
    "10.0.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "fc00::1",
    "64:ff9b::a9fe:a9fe",
];

/// Hosts written as IP literals, in every spelling a resolver accepts.
const FORBIDDEN_LITERALS: &[&str] = &[
    "127.0.0.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "0.0.0.0",
    "0",
    "10.0.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "[fc00::1]",
    "[64:ff9b::a9fe:a9fe]",
    "[FE80::1]",
    "2130706433",          // 127.0.0.1 as one decimal number
    "0x7f000001",          // ... as one hex number
    "0X7F000001",          // ... upper case
    "017700000001",        // ... as one octal number
    "0177.0.0.1",          // octal first part
    "0x7f.0.0.1",          // hex first part
    "127.1",               // short form
    "127.0.0.1.",          // trailing dot
    "2852039166",          // 169.254.169.254 as one decimal number
    "0xa9fea9fe",          // ... as hex
    "0251.0376.0251.0376", // ... as octal parts
    "localhost",
    "LOCALHOST.",
];

/// A listener on `addr` that counts the connections it accepts and closes them.
struct Counter {
    connections: Arc<AtomicUsize>,
}

impl Counter {
    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A counting listener on `[::1]:port`, or `None` where IPv6 loopback is unavailable.
async fn counting_listener_v6(port: u16) -> Option<Counter> {
    let listener = tokio::net::TcpListener::bind(("::1", port)).await.ok()?;
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    actix_rt::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Some(Counter { connections })
}

fn slug(i: usize, prefix: &str) -> String {
    format!("{prefix}-{i}")
}

#[actix_web::test]
async fn every_non_public_answer_and_ip_spelling_is_refused_without_a_connection() {
    let v4 = counting_listener().await;
    let port = v4.port;
    let v6 = counting_listener_v6(port).await;
    let mut connectors = Vec::new();
    let mut resolve = Vec::new();
    for (i, ip) in FORBIDDEN_ANSWERS.iter().enumerate() {
        resolve.push(format!("host{i}.evil.test={ip}"));
        connectors.push(json!({"name": slug(i, "answer"), "url": format!("https://host{i}.evil.test:{port}/latest/meta-data")}));
    }
    for (i, host) in FORBIDDEN_LITERALS.iter().enumerate() {
        connectors.push(json!({"name": slug(i, "literal"), "url": format!("https://{host}:{port}/latest/meta-data")}));
    }
    resolve.push("mixed.evil.test=93.184.216.34,127.0.0.1".into());
    resolve.push("mixed6.evil.test=2606:4700::1111,::1".into());
    resolve.push("mapped-first.evil.test=::ffff:127.0.0.1,93.184.216.34".into());
    for host in ["mixed", "mixed6", "mapped-first"] {
        connectors.push(json!({"name": host, "url": format!("https://{host}.evil.test:{port}/x")}));
    }
    let registry = json!({
        "connectors": connectors,
        "composite_connectors": [{"name": "chain", "steps": [
            {"name": "probe", "url": format!("https://host0.evil.test:{port}/x?next={{{{ request.query_parameters.next }}}}")}
        ]}]
    });
    let app = spawn_app_with(
        registry,
        AppOptions::default().flags(resolver_flags(false, resolve, 5_000)),
    )
    .await;
    let mut permalinks: Vec<String> = (0..FORBIDDEN_ANSWERS.len())
        .map(|i| slug(i, "answer"))
        .chain((0..FORBIDDEN_LITERALS.len()).map(|i| slug(i, "literal")))
        .collect();
    permalinks.extend(["mixed", "mixed6", "mapped-first"].map(String::from));
    for permalink in &permalinks {
        let started = Instant::now();
        let reply = app.execute(permalink).await;
        let errors = assert_envelope(
            &reply,
            502,
            "UPSTREAM_ADDRESS_FORBIDDEN",
            Some(NETWORK_SCOPE),
        );
        // Refused before connecting: no connect timeout (the step timeout is 5 s), no
        // network error.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{permalink}: took {:?}",
            started.elapsed()
        );
        // The error names the host as configured, never the address it resolved to.
        if permalink.starts_with("answer-") {
            let detail = errors["detail"].as_str().unwrap();
            for ip in FORBIDDEN_ANSWERS {
                assert!(!detail.contains(ip), "{detail}");
            }
        }
    }
    let reply = app.composite("chain", "?next=http://127.0.0.1/", "").await;
    assert_envelope(
        &reply,
        502,
        "UPSTREAM_ADDRESS_FORBIDDEN",
        Some(&composite_scope("probe", 0, NETWORK_SCOPE)),
    );
    assert_eq!(v4.count(), 0, "a forbidden IPv4 address was connected to");
    if let Some(v6) = v6 {
        assert_eq!(v6.count(), 0, "a forbidden IPv6 address was connected to");
    }
}

/// One address of every family the policy refuses (src/upstream/policy.rs), answered by the
/// test resolver for its own host. Most are not loopback: the test first asserts that the
/// policy refuses each one and that a loopback answer is refused through the server, so the
/// runtime is never let near an address it would dial if the policy had lost a range.
const FAMILY_ANSWERS: &[(&str, &str)] = &[
    ("this network", "0.1.2.3"),
    ("private 172.16/12", "172.16.0.1"),
    ("private 192.168/16", "192.168.1.1"),
    ("IETF protocol assignments", "192.0.0.8"),
    ("documentation TEST-NET-1", "192.0.2.1"),
    ("documentation TEST-NET-2", "198.51.100.7"),
    ("documentation TEST-NET-3", "203.0.113.9"),
    ("6to4 relay anycast", "192.88.99.1"),
    ("benchmarking", "198.18.0.1"),
    ("multicast", "224.0.0.1"),
    ("reserved", "240.0.0.1"),
    ("broadcast", "255.255.255.255"),
    ("metadata: AWS, GCP, Azure IMDS", "169.254.169.254"),
    ("metadata: Alibaba", "100.100.100.200"),
    ("metadata: Azure wireserver", "168.63.129.16"),
    ("metadata: Oracle", "192.0.0.192"),
    ("metadata: AWS IPv6", "fd00:ec2::254"),
    ("metadata: GCP IPv6", "fd20:ce::254"),
    ("IPv6 discard-only", "100::1"),
    ("IPv6 benchmarking", "2001:2::1"),
    ("ORCHID", "2001:10::1"),
    ("IPv6 documentation 2001:db8::/32", "2001:db8::1"),
    ("IPv6 documentation 3fff::/20", "3fff::1"),
    ("IPv6 link-local", "fe80::1"),
    ("IPv6 site-local", "fec0::1"),
    ("IPv6 multicast", "ff02::1"),
    ("IPv6 multicast, global scope", "ff0e::1"),
    ("SIIT of 127.0.0.1", "::ffff:0:7f00:1"),
    ("IPv4-compatible 127.0.0.1", "::127.0.0.1"),
    ("NAT64 of 127.0.0.1", "64:ff9b::7f00:1"),
    ("6to4 of 127.0.0.1", "2002:7f00:1::1"),
    (
        "Teredo with client 127.0.0.1",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ),
];

/// The IPv6 forms above that embed 127.0.0.1, written as IP literals in the URL.
const EMBEDDED_LOOPBACK_LITERALS: &[&str] = &[
    "[::ffff:0:7f00:1]",
    "[::ffff:0:127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
];

#[actix_web::test]
async fn every_refused_family_is_refused_through_the_server_before_connecting() {
    // Refusal comes first: every answer is one the policy refuses (so a lost range fails
    // here, before the server could dial it) ...
    for (family, ip) in FAMILY_ANSWERS {
        assert!(
            connector_runtime::upstream::policy::is_forbidden(ip.parse().unwrap()),
            "{family}: the policy allows {ip}; not calling it through the server"
        );
    }
    let v4 = counting_listener().await;
    let port = v4.port;
    let v6 = counting_listener_v6(port).await;
    let mut resolve = vec!["loopback.family.test=127.0.0.1".to_string()];
    let mut connectors = vec![json!({"name": "loopback",
        "url": format!("https://loopback.family.test:{port}/x")})];
    for (i, (_, ip)) in FAMILY_ANSWERS.iter().enumerate() {
        resolve.push(format!("host{i}.family.test={ip}"));
        connectors.push(json!({"name": slug(i, "family"),
            "url": format!("https://host{i}.family.test:{port}/x")}));
    }
    for (i, host) in EMBEDDED_LOOPBACK_LITERALS.iter().enumerate() {
        connectors
            .push(json!({"name": slug(i, "embedded"), "url": format!("https://{host}:{port}/x")}));
    }
    let app = spawn_app_with(
        json!({"connectors": connectors}),
        AppOptions::default().flags(resolver_flags(false, resolve, 5_000)),
    )
    .await;
    // ... and the server applies it: a loopback answer is refused without a connection
    // before any other answer is tried.
    let reply = app.execute("loopback").await;
    assert_envelope(
        &reply,
        502,
        "UPSTREAM_ADDRESS_FORBIDDEN",
        Some(NETWORK_SCOPE),
    );
    assert_eq!(v4.count(), 0, "the loopback answer was connected to");
    for (i, (family, ip)) in FAMILY_ANSWERS.iter().enumerate() {
        let started = Instant::now();
        let reply = app.execute(&slug(i, "family")).await;
        assert_eq!(reply.status, 502, "{family} ({ip}): {}", reply.text());
        let errors = assert_envelope(
            &reply,
            502,
            "UPSTREAM_ADDRESS_FORBIDDEN",
            Some(NETWORK_SCOPE),
        );
        assert!(
            !errors["detail"].as_str().unwrap().contains(ip),
            "{family}: the detail names the address: {errors}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{family}: took {:?}, as if it had tried to connect",
            started.elapsed()
        );
    }
    for (i, host) in EMBEDDED_LOOPBACK_LITERALS.iter().enumerate() {
        let reply = app.execute(&slug(i, "embedded")).await;
        assert_eq!(reply.status, 502, "{host}: {}", reply.text());
        assert_envelope(
            &reply,
            502,
            "UPSTREAM_ADDRESS_FORBIDDEN",
            Some(NETWORK_SCOPE),
        );
    }
    assert_eq!(
        v4.count(),
        0,
        "an address embedding 127.0.0.1 was connected to"
    );
    if let Some(v6) = v6 {
        assert_eq!(v6.count(), 0, "::1 was connected to");
    }
}

#[actix_web::test]
async fn with_the_policy_off_the_test_resolver_answer_is_connected_to() {
    // Control for the tests above: with the policy off, the same kind of listener does
    // count, reached through the test resolver's answer (`.test` is not in DNS), so their
    // zero counts mean something. (DNS pinning itself, with answers that change between
    // lookups, is tested in dns_pinning.rs.)
    let listener = counting_listener().await;
    let registry = json!({"connectors": [
        {"name": "pinned", "url": format!("http://pinned.evil.test:{}/x", listener.port)}
    ]});
    let app = spawn_app_with(
        registry,
        AppOptions::default().flags(resolver_flags(true, ["pinned.evil.test=127.0.0.1"], 5_000)),
    )
    .await;
    let reply = app.execute("pinned").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_ne!(reply.errors()["code"], "UPSTREAM_ADDRESS_FORBIDDEN");
    assert!(
        listener.count() >= 1,
        "the listener never saw the connection"
    );
}

fn serve_options() -> BuildOptions {
    BuildOptions {
        mode: LoadMode::Serve,
        allow_http: false,
        ..BuildOptions::default()
    }
}

/// The errors of a registry that must not load, as `field: message` lines.
#[track_caller]
fn load_errors(registry: &Value) -> Vec<String> {
    match build_registry(&registry.to_string(), &serve_options()) {
        Ok(_) => panic!("the registry loaded: {registry}"),
        Err(rejected) => rejected
            .report
            .problems
            .iter()
            .filter(|p| p.severity == connector_runtime::registry::Severity::Error)
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect(),
    }
}

#[test]
fn urls_that_hide_or_template_the_host_do_not_load() {
    for url in [
        "http://10.0.0.1/x",                             // plain http with the policy on
        "https://user@127.0.0.1/x",                      // user information
        "https://api.example.com@127.0.0.1/x",           // ... that looks like a host
        "https://[fe80::1%25eth0]/x",                    // zone id
        "https://{{ request.query_parameters.host }}/x", // host from request data
        "https://api.example.com{{ request.query_parameters.h }}/x", // partly templated host
        "https://127.0.0.1\\@api.example.com/x",         // backslash tricks
        "{{ request.query_parameters.base }}/x",         // whole origin from request data
        "//127.0.0.1/x",                                 // no scheme
        "https://é.example.com/{{ request.query_parameters.id }}", // non-ASCII host (a panic, found by fuzzing)
    ] {
        let errors = load_errors(&json!({"connectors": [{"name": "x", "url": url}]}));
        assert!(
            errors.iter().any(|e| e.starts_with("url: ")),
            "{url}: {errors:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// (b) Path and query injection
// ---------------------------------------------------------------------------------------

/// Values a caller sends to escape the segment or value they are rendered into.
const HOSTILE_VALUES: &[&str] = &[
    "..",
    ".",
    "../admin",
    "..%2fadmin",
    "%2e%2e",
    "%2e%2e%2fadmin",
    "a/b",
    "a/../../admin",
    "a?x=1",
    "a#f",
    "x&role=admin",
    "x&role=admin#frag",
    "é/☃ +%",
    "\\..\\admin",
    "//evil.example",
    "...",
];

fn is_dot(v: &str) -> bool {
    v == "." || v == ".."
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

fn query_of(pairs: &[(&str, &str)]) -> String {
    format!("?{}", serde_urlencoded::to_string(pairs).unwrap())
}

async fn items_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route("/items/{tail:.*}", web::route().to(echo_route()))
            .route("/files/{tail:.*}", web::route().to(echo_route()))
            .route("/echo", web::route().to(echo_route()));
    })
    .await
}

#[actix_web::test]
async fn request_data_in_a_url_path_or_query_stays_one_encoded_segment_or_value() {
    let up = items_upstream().await;
    let base = &up.base;
    let registry = json!({"composite_connectors": [{"name": "inject", "steps": [{
        "name": "fetch",
        "url": format!("{base}/items/{{{{ request.query_parameters.id }}}}?q={{{{ request.query_parameters.q }}}}"),
        "query_parameters": [{"key": "extra", "value": "{{ request.query_parameters.id }}"}]
    }]}]});
    let app = spawn_app(registry).await;
    for value in HOSTILE_VALUES {
        let before = up.log.all().len();
        let reply = app
            .composite("inject", &query_of(&[("id", value), ("q", value)]), "")
            .await;
        if is_dot(value) {
            let errors = assert_envelope(
                &reply,
                422,
                "TEMPLATE_RENDERING_ERROR",
                Some(&composite_scope("fetch", 0, TEMPLATE_SCOPE)),
            );
            assert!(errors["detail"].as_str().unwrap().contains("'.' or '..'"));
            assert_eq!(up.log.all().len(), before, "{value:?} was sent");
            continue;
        }
        assert_eq!(reply.status, 200, "{value:?}: {}", reply.text());
        let received = up.log.all().pop().unwrap();
        let segments: Vec<&str> = received.path.split('/').collect();
        assert_eq!(segments.len(), 3, "{value:?} -> {}", received.path);
        assert_eq!(
            segments[..2],
            ["", "items"],
            "{value:?} -> {}",
            received.path
        );
        assert_eq!(decode(segments[2]), *value, "{}", received.path);
        assert!(!received.path.contains("/admin"), "{}", received.path);
        assert!(!received.query.contains('#'), "{}", received.query);
        assert_eq!(
            received.query_pairs(),
            vec![
                ("q".to_string(), value.to_string()),
                ("extra".to_string(), value.to_string())
            ],
            "{value:?} -> {}",
            received.query
        );
    }
}

#[actix_web::test]
async fn urlencode_and_escape_in_a_url_cannot_add_dot_segments_parameters_or_fragments() {
    // `urlencode` keeps `/` (Jinja2's `quote(safe='/')`), and its output is inserted as it
    // is; `.`/`..` segments are refused all the same. `e` output is percent-encoded in a URL.
    let up = items_upstream().await;
    let base = &up.base;
    let registry = json!({"composite_connectors": [
        {"name": "quoted", "steps": [{"name": "fetch",
            "url": format!("{base}/files/{{{{ request.query_parameters.p | urlencode }}}}?q={{{{ request.query_parameters.p | urlencode }}}}")}]},
        {"name": "escaped", "steps": [{"name": "fetch",
            "url": format!("{base}/items/{{{{ request.query_parameters.p | e }}}}")}]}
    ]});
    let app = spawn_app(registry).await;
    for value in ["..", ".", "../admin", "a/../../admin", "a/./b", "x/.."] {
        let reply = app
            .composite("quoted", &query_of(&[("p", value)]), "")
            .await;
        assert_envelope(
            &reply,
            422,
            "TEMPLATE_RENDERING_ERROR",
            Some(&composite_scope("fetch", 0, TEMPLATE_SCOPE)),
        );
    }
    assert!(up.log.all().is_empty(), "{:?}", up.log.all());
    let reply = app
        .composite("quoted", &query_of(&[("p", "a/b?x=1&role=admin#f")]), "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = up.log.all().pop().unwrap();
    assert_eq!(received.path, "/files/a/b%3Fx%3D1%26role%3Dadmin%23f");
    assert_eq!(
        received.query_pairs(),
        vec![("q".to_string(), "a/b?x=1&role=admin#f".to_string())]
    );
    let reply = app
        .composite("escaped", &query_of(&[("p", "../admin?role=admin#f")]), "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = up.log.all().pop().unwrap();
    assert_eq!(received.path.matches('/').count(), 2, "{}", received.path);
    assert_eq!(
        decode(received.path.strip_prefix("/items/").unwrap()),
        "../admin?role=admin#f"
    );
    assert_eq!(received.query, "");
}

#[actix_web::test]
async fn hostile_path_params_are_a_400_and_hostile_query_values_one_parameter() {
    let up = items_upstream().await;
    let base = &up.base;
    let registry = json!({"connectors": [
        {"name": "Item", "permalink": "item",
         "url": format!("{base}/items/{{{{ pathParams.id }}}}"),
         "path_parameters": [{"key": "id"}]},
        {"name": "Search", "permalink": "search", "url": format!("{base}/echo"),
         "query_parameters": [{"key": "q", "value": "{{ request.query_parameters.q }}"},
                              {"key": "page", "value": "1"}]}
    ]});
    let app = spawn_app(registry).await;
    for value in HOSTILE_VALUES.iter().filter(|v| **v != "...") {
        let reply = app
            .execute_with_path_params("item", &path_params_header("id", value))
            .await;
        let errors = assert_envelope(&reply, 400, "INVALID_PATH_PARAMETERS", None);
        assert_eq!(errors["params"], json!(["id"]), "{value:?}");
    }
    assert!(up.log.all().is_empty(), "a rejected path param was sent");
    for value in HOSTILE_VALUES {
        let reply = app
            .call(
                "GET",
                &format!("/connectors/search/execute{}", query_of(&[("q", value)])),
                None,
                &[],
            )
            .await;
        assert_eq!(reply.status, 200, "{value:?}: {}", reply.text());
        let received = up.log.all().pop().unwrap();
        assert_eq!(received.path, "/echo");
        assert_eq!(
            received.query_pairs(),
            vec![
                ("q".to_string(), value.to_string()),
                ("page".to_string(), "1".to_string())
            ],
            "{value:?} -> {}",
            received.query
        );
    }
}

// ---------------------------------------------------------------------------------------
// (c) Header injection and caller headers
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_header_that_renders_a_line_break_or_nul_is_a_422_and_nothing_is_sent() {
    let up = items_upstream().await;
    let base = &up.base;
    let header = json!([{"key": "X-Trace", "value": "t-{{ request.query_parameters.h }}"}]);
    let registry = json!({
        "connectors": [
            {"name": "Simple", "permalink": "simple", "url": format!("{base}/echo"), "headers": header},
            {"name": "Keyed", "permalink": "keyed", "url": format!("{base}/echo"),
             "authentication": {"type": "api_key", "config": {"key": "X-Api-Key", "value": "{{ request.query_parameters.h }}"}}}
        ],
        "composite_connectors": [{"name": "chain", "steps": [
            {"name": "first", "url": format!("{base}/echo"), "headers": header}
        ]}]
    });
    let app = spawn_app(registry).await;
    for value in [
        "a\r\nX-Injected: 1",
        "a\nX-Injected: 1",
        "a\rb",
        "a\0b",
        "\r\n\r\nGET /admin HTTP/1.1",
    ] {
        let query = query_of(&[("h", value)]);
        let reply = app.get(&format!("/connectors/simple/execute{query}")).await;
        assert_envelope(
            &reply,
            422,
            "TEMPLATE_RENDERING_ERROR",
            Some(TEMPLATE_SCOPE),
        );
        let reply = app.get(&format!("/connectors/keyed/execute{query}")).await;
        assert_eq!(reply.status, 422, "{value:?}: {}", reply.text());
        let reply = app.composite("chain", &query, "").await;
        assert_envelope(
            &reply,
            422,
            "TEMPLATE_RENDERING_ERROR",
            Some(&composite_scope("first", 0, TEMPLATE_SCOPE)),
        );
        assert!(!reply.text().contains("X-Injected"), "{}", reply.text());
    }
    assert!(up.log.all().is_empty(), "{:?}", up.log.all());
}

/// Sends a raw HTTP/1.1 request (so any header can be written as it is) and returns the
/// status code.
async fn raw_request(base: &str, head: String) -> u16 {
    let addr = base.trim_start_matches("http://").to_string();
    web::block(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&response);
        text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn caller_host_authorization_forwarding_and_hop_by_hop_headers_never_reach_the_upstream() {
    let up = items_upstream().await;
    let base = &up.base;
    let registry = json!({
        "connectors": [
            {"name": "Fixed", "permalink": "fixed", "url": format!("{base}/echo"),
             "headers": [{"key": "Authorization", "value": "Bearer configured"},
                         {"key": "X-Kept", "value": "kept"}]},
            {"name": "Open", "permalink": "open", "url": format!("{base}/echo"),
             "headers": [{"key": "Authorization", "value": "Bearer configured", "overridable": true}]}
        ],
        "composite_connectors": [{"name": "chain", "steps": [
            {"name": "first", "url": format!("{base}/echo"),
             "headers": [{"key": "Authorization", "value": "Bearer configured"}]}
        ]}]
    });
    let app = spawn_app(registry).await;
    let hostile = "Host: evil.example\r\n\
        Authorization: Bearer caller\r\n\
        X-Forwarded-For: 6.6.6.6\r\n\
        X-Forwarded-Host: evil.example\r\n\
        X-Forwarded-Proto: http\r\n\
        X-Real-IP: 6.6.6.6\r\n\
        Forwarded: for=6.6.6.6;host=evil.example\r\n\
        Connection: keep-alive, X-Kept, Authorization\r\n\
        Keep-Alive: timeout=600\r\n\
        Proxy-Connection: keep-alive\r\n\
        TE: trailers\r\n";
    for (method, path) in [
        ("GET", "/connectors/fixed/execute"),
        ("POST", "/connectors/composite/chain/execute"),
    ] {
        // With `Transfer-Encoding: chunked` and a chunked (empty) body, then without. A
        // request asking to `Upgrade` is refused outright (400) before anything is sent.
        for (body, expected) in [
            (
                "Upgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400,
            ),
            ("Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200),
            ("Content-Length: 0\r\n\r\n", 200),
        ] {
            let status = raw_request(
                &app.base,
                format!("{method} {path} HTTP/1.1\r\n{hostile}{body}"),
            )
            .await;
            assert_eq!(status, expected, "{method} {path} {body:?}");
        }
    }
    let calls = up.log.to("/echo");
    assert_eq!(calls.len(), 4);
    for received in &calls {
        assert_eq!(received.header("host"), Some(&up.base["http://".len()..]));
        assert_eq!(received.header("authorization"), Some("Bearer configured"));
        for name in [
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
            "forwarded",
            "keep-alive",
            "proxy-connection",
            "te",
            "upgrade",
            "transfer-encoding",
        ] {
            assert_eq!(received.header(name), None, "{name} reached the upstream");
        }
        if let Some(connection) = received.header("connection") {
            assert!(
                !connection.to_ascii_lowercase().contains("x-kept")
                    && !connection.to_ascii_lowercase().contains("authorization"),
                "{connection}"
            );
        }
        assert!(received
            .headers
            .iter()
            .all(|(_, v)| !v.contains("evil.example") && !v.contains("6.6.6.6")));
    }
    assert_eq!(calls[0].header("x-kept"), Some("kept"));
    // An Authorization declared overridable does take the caller's value.
    let reply = app
        .call(
            "GET",
            "/connectors/open/execute",
            None,
            &[("Authorization", "Bearer caller")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        up.log.to("/echo").pop().unwrap().header("authorization"),
        Some("Bearer caller")
    );
}

#[test]
fn a_registry_cannot_declare_host_or_hop_by_hop_headers() {
    for key in [
        "Host",
        "host",
        "Connection",
        "Transfer-Encoding",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Proxy-Connection",
        "Content-Length",
    ] {
        let errors = load_errors(&json!({"connectors": [{"name": "x",
            "url": "https://api.example.com/x",
            "headers": [{"key": key, "value": "v", "overridable": true}]}]}));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("headers[0].key: ") && e.contains("set by the runtime")),
            "{key}: {errors:?}"
        );
        let errors = load_errors(&json!({"composite_connectors": [{"name": "c", "steps": [
            {"name": "s", "url": "https://api.example.com/x", "headers": [{"key": key, "value": "v"}]}
        ]}]}));
        assert!(!errors.is_empty(), "{key}");
    }
}

#[test]
fn forwarding_headers_may_be_fixed_but_never_overridable_by_callers() {
    for key in ["X-Forwarded-For", "x-forwarded-host", "Forwarded"] {
        let errors = load_errors(
            &json!({"connectors": [{"name": "x", "url": "https://api.example.com/x",
            "headers": [{"key": key, "value": "v", "overridable": true}]}]}),
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("headers[0].overridable: ")
                    && e.contains("cannot be overridable")),
            "{key}: {errors:?}"
        );
        let fixed = json!({"connectors": [{"name": "x", "url": "https://api.example.com/x",
            "headers": [{"key": key, "value": "v"}]}]});
        assert!(
            build_registry(&fixed.to_string(), &serve_options()).is_ok(),
            "{key}: a fixed value loads"
        );
    }
}

#[actix_web::test]
async fn a_connection_upgrade_is_refused_at_once_instead_of_waiting_for_an_endless_body() {
    let up = items_upstream().await;
    let app = spawn_app(
        json!({"connectors": [{"name": "p", "permalink": "p", "method": "POST",
        "url": format!("{}/items/x", up.base)}]}),
    )
    .await;
    let started = std::time::Instant::now();
    let status = raw_request(
        &app.base,
        "POST /connectors/p/execute HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello".to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(up.log.all().is_empty());
}

// ---------------------------------------------------------------------------------------
// (d) Template resource limits
// ---------------------------------------------------------------------------------------

/// Templates that try to use unbounded time or memory. Each ends as a 422 well within a
/// second in a release build with the default fuel (see `DEFAULT_TEMPLATE_FUEL`).
const HOSTILE_TEMPLATES: &[(&str, &str)] = &[
    (
        "nested-loops",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
    ),
    (
        "loop-with-work",
        "{% for i in range(100000) %}{{ i }}{{ range(10) | list }}{% endfor %}",
    ),
    (
        "caller-sized-loop",
        "{% for i in range(request.query_parameters.n | int) %}{% for j in range(request.query_parameters.n | int) %}{{ [i, j] | tojson }}{% endfor %}{% endfor %}",
    ),
    (
        "recursive-macro",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ),
    (
        "branching-recursion",
        "{% macro f(n) %}{% if n < 400 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
    ),
    ("huge-repeat", "{{ 'x' * 100000000 }}"),
    (
        "string-doubling",
        "{% set ns = namespace(v='x') %}{% for i in range(64) %}{% set ns.v = ns.v ~ ns.v %}{% endfor %}{{ ns.v | length }}",
    ),
    (
        "nested-list-building",
        "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = ns.l + [[i] * 1000] %}{% endfor %}{{ ns.l }}",
    ),
    ("list-repeat", "{{ [[range(1000) | list] * 1000] * 1000 }}"),
];

/// A hostile template must stop this fast (the whole call, upstream included, in wall
/// time): these stop in well under 100 ms in a release build, and the debug build that
/// `cargo test` runs is several times slower. The bound is wide because the rendering runs on
/// the server's workers while the rest of this binary (soak, proptests) competes for two
/// shared cores; without the fuel limit these templates run for minutes or exhaust memory.
fn render_bound() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(3)
    }
}

async fn users_upstream(count: usize) -> Upstream {
    let users: Vec<Value> = (0..count)
        .map(|i| json!({"id": format!("usr_{i}"), "name": format!("User {i}"), "email": format!("u{i}@example.com"), "active": i % 2 == 0}))
        .collect();
    let body = Value::Array(users);
    upstream(move |cfg| {
        cfg.route(
            "/users",
            web::get().to(common::json_route(200, body.clone())),
        )
        .route("/echo", web::route().to(echo_route()));
    })
    .await
}

#[actix_web::test]
async fn hostile_templates_end_as_422_in_bounded_time_and_the_server_keeps_serving() {
    let up = users_upstream(3).await;
    let base = &up.base;
    let mut composites: Vec<Value> = HOSTILE_TEMPLATES
        .iter()
        .map(|(name, template)| {
            json!({"name": name, "steps": [{"name": "render", "url": format!("{base}/echo"),
                   "method": "POST", "request_body": template}]})
        })
        .collect();
    composites.push(
        json!({"name": "normal", "steps": [{"name": "list", "url": format!("{base}/users")}]}),
    );
    let registry = json!({
        "connectors": [{"name": "Transform", "permalink": "transform", "url": format!("{base}/users"),
                        "response_body": HOSTILE_TEMPLATES[0].1}],
        "composite_connectors": composites
    });
    let app = spawn_app(registry).await;
    for (name, _) in HOSTILE_TEMPLATES {
        let started = Instant::now();
        let reply = app.composite(name, "?n=100000", "").await;
        let elapsed = started.elapsed();
        let errors = assert_envelope(
            &reply,
            422,
            "TEMPLATE_RENDERING_ERROR",
            Some(&composite_scope("render", 0, TEMPLATE_SCOPE)),
        );
        assert!(
            elapsed < render_bound(),
            "{name}: took {elapsed:?} ({})",
            errors["detail"]
        );
    }
    let started = Instant::now();
    let reply = app.execute("transform").await;
    assert_envelope(
        &reply,
        422,
        "RESPONSE_TEMPLATE_RENDERING_ERROR",
        Some("Configuration (response template rendering)"),
    );
    assert!(started.elapsed() < render_bound());
    assert!(up.log.to("/echo").is_empty(), "a hostile body was sent");
    // Both workers are free again: normal runs go through.
    for _ in 0..4 {
        let reply = app.composite("normal", "", "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// Realistic templates over `count` users: the upstream list re-shaped in a `{% for %}` with
/// `tojson`, and the whole list serialized.
fn realistic_steps(base: &str) -> Value {
    json!([
        {"name": "list", "url": format!("{base}/users")},
        {"name": "reshape", "url": format!("{base}/echo"), "method": "POST",
         "request_body": "[{% for u in steps.list.body | from_json %}{\"id\": {{ u.id | tojson }}, \"name\": {{ u['name'] | tojson }}, \"active\": {{ u.active | tojson }}}{% if not loop.last %},{% endif %}{% endfor %}]",
         "response_body": "{% set sent = (response.body | from_json).body | from_json %}{{ sent | selectattr('active') | map(attribute='id') | list | tojson }}"}
    ])
}

#[actix_web::test]
async fn realistic_templates_over_thousands_of_items_pass_with_the_default_fuel() {
    // 3,000 users: the test upstream reads bodies up to 256 KiB.
    let up = users_upstream(3_000).await;
    let registry = json!({"composite_connectors": [
        {"name": "reshape", "steps": realistic_steps(&up.base)}
    ]});
    let app = spawn_app(registry.clone()).await;
    let reply = app.composite("reshape", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ids = reply.json();
    assert_eq!(ids.as_array().unwrap().len(), 1_500);
    assert_eq!(ids[1], "usr_2");
    let sent: Value = serde_json::from_str(&up.log.to("/echo")[0].body).unwrap();
    assert_eq!(sent.as_array().unwrap().len(), 3_000);
    assert_eq!(
        sent[2_999],
        json!({"id": "usr_2999", "name": "User 2999", "active": false})
    );

    // `--template-fuel` is the bound that applies: far below the default, the same run fails.
    let app = spawn_app_with(
        registry,
        AppOptions::default().flags(|f| f.template_fuel = 20_000),
    )
    .await;
    let reply = app.composite("reshape", "", "").await;
    let errors = assert_envelope(
        &reply,
        422,
        "TEMPLATE_RENDERING_ERROR",
        Some(&composite_scope("reshape", 1, TEMPLATE_SCOPE)),
    );
    assert!(errors["detail"]
        .as_str()
        .unwrap()
        .contains("fuel limit reached"));
}

/// `{users: [...count objects...], body: <the same list as JSON text>}`.
fn users_context(count: usize) -> minijinja::Value {
    let users: Vec<Value> = (0..count)
        .map(|i| json!({"id": format!("usr_{i}"), "name": format!("User {i}"), "email": format!("u{i}@example.com"), "active": i % 2 == 0, "score": i * 3}))
        .collect();
    let body = serde_json::to_string(&users).unwrap();
    serde_json::from_value(json!({"users": users, "body": body})).unwrap()
}

#[test]
fn realistic_templates_need_a_fraction_of_the_default_fuel() {
    // The default is chosen with room to spare: these pass on a quarter of it.
    let quarter = RenderLimits {
        fuel: DEFAULT_TEMPLATE_FUEL / 4,
        ..RenderLimits::default()
    };
    let ctx = users_context(5_000);
    for template in [
        "[{% for u in users %}{{ u | tojson }}{% if not loop.last %},{% endif %}{% endfor %}]",
        "{{ users | tojson }}",
        "{% set data = body | from_json %}[{% for u in data %}{\"id\": {{ u.id | tojson }}, \"name\": {{ u['name'] | tojson }}, \"active\": {{ u.active | tojson }}}{% if not loop.last %},{% endif %}{% endfor %}]",
        "{{ body | from_json | selectattr('active') | map(attribute='email') | list | tojson }}",
        "{% for u in users %}{% if u.active %}{{ loop.index }}:{{ u.email | lower }},{{ u.score * 2 }};{% endif %}{% endfor %}",
        "{{ body | from_json | tojson }}",
    ] {
        let mut set = common::template_set(quarter);
        let id = set.add("t/0/request_body", Field::RequestBody, template).unwrap();
        let output = set
            .render(&id, &ctx)
            .unwrap_or_else(|e| panic!("{template}: {}", e.message));
        assert!(output.len() > 50_000, "{template}");
    }
}

#[test]
fn the_costliest_work_per_unit_of_fuel_stops_within_the_bound_at_the_default() {
    // The templates that do the most work per unit of fuel, measured when the default was
    // chosen (0.6-0.7 s each in a release build; 10-12 s under the former 20,000,000).
    let ctx = users_context(5_000);
    for template in [
        "{% for i in range(100000) %}{% set x = body | from_json %}{% endfor %}",
        "{% for i in range(100000) %}{% set x = users | tojson %}{% endfor %}",
        "{% for i in range(100000) %}{% set x = body | wordwrap(10) %}{% endfor %}",
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}{{ ns.l | length }}",
    ] {
        let mut set = common::template_set(RenderLimits::default());
        let id = set.add("t/0/request_body", Field::RequestBody, template).unwrap();
        // CPU time of this thread (the render runs on it), not wall time: other tests of
        // this binary and other users of the machine do not stretch it.
        let started = common::thread_cpu_time();
        let error = set.render(&id, &ctx).unwrap_err();
        let elapsed = common::thread_cpu_time() - started;
        assert!(error.message.contains("fuel limit reached"), "{template}: {}", error.message);
        // Debug builds are 10-15x slower than release for this work (10.6 s seen for
        // `tojson` on a 2-core machine); the former default would take minutes there.
        let bound = if cfg!(debug_assertions) {
            Duration::from_secs(25)
        } else {
            Duration::from_millis(1500)
        };
        assert!(elapsed < bound, "{template}: took {elapsed:?} of CPU");
    }
}

/// Templates that build a value nested `DEPTH` levels deep and then compare, print,
/// stringify or just free it: minijinja does each recursively, one stack frame per level.
fn deep_value_templates() -> Vec<(&'static str, String)> {
    const DEPTH: usize = 20_000;
    let build = format!(
        "{{% set ns = namespace(d={{}}, e={{}}) %}}{{% for i in range({DEPTH}) %}}{{% set ns.d = {{'a': ns.d}} %}}{{% set ns.e = {{'a': ns.e}} %}}{{% endfor %}}"
    );
    vec![
        ("deep-compare", format!("{build}{{{{ ns.d == ns.e }}}}")),
        ("deep-string", format!("{build}{{{{ ns.d | string | length }}}}")),
        ("deep-print", format!("{build}{{{{ ns.d | length }}}}{{{{ ns.d }}}}")),
        ("deep-free", format!("{build}freed")),
        // Past the fuel: the render stops mid-loop and the deep value is freed.
        (
            "deep-out-of-fuel",
            "{% set ns = namespace(d={}) %}{% for i in range(100000) %}{% for j in range(100) %}{% set ns.d = {'a': ns.d} %}{% endfor %}{% endfor %}".to_string(),
        ),
    ]
}

#[actix_web::test]
async fn values_nested_as_deep_as_the_fuel_allows_do_not_overflow_the_server_stack() {
    // The real binary: its threads get a stack sized from the fuel (`render_stack_bytes`).
    // With the standard 2 MiB worker stack each of these aborted the whole process.
    let up = common::echo_upstream().await;
    let connectors: Vec<Value> = deep_value_templates()
        .into_iter()
        .map(|(name, template)| {
            json!({"name": name, "permalink": name, "method": "POST",
                   "url": format!("{}/echo", up.base), "request_body": template})
        })
        .collect();
    let server = common::process::ServerProcess::start(&json!({ "connectors": connectors }), &[]);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    for (name, _) in deep_value_templates() {
        let mut res = client
            .post(format!("{}/connectors/{name}/execute", server.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: no answer ({e}); log: {}", server.log_tail(20)));
        let body = res.body().limit(1 << 26).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        if name == "deep-out-of-fuel" {
            assert_eq!(res.status(), 422, "{name}: {text}");
            assert!(text.contains("fuel limit reached"), "{name}: {text}");
        } else {
            assert_eq!(
                res.status(),
                200,
                "{name}: {}",
                &text[..text.len().min(300)]
            );
        }
    }
    assert_eq!(
        common::process::get_status(server.port, "/healthz"),
        Some(200),
        "{}",
        server.log_tail(20)
    );
}

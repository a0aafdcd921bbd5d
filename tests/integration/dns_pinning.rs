//! DNS pinning (check-then-connect), through the real binary and real DNS.
//!
//! The promise (src/upstream/resolver.rs, client.rs): the addresses an upstream host
//! resolves to are checked by the address policy *and are the addresses connected to*;
//! nothing looks the name up a second time, so a name whose answer changes between the
//! check and the connection (DNS rebinding) cannot steer the connection elsewhere.
//!
//! How the test drives a resolver whose answers change, without a mock in the runtime:
//! the test runs a DNS server ([`RebindingDns`]) on port 53 of an address of its own in
//! 127.53.0.0/16 that answers the first lookup of `rebind.test` with one address and
//! every later lookup with another. The `connector-runtime serve` binary runs in a private
//! mount namespace whose `/etc/resolv.conf` names that server (`Launch::resolv_conf`), so
//! its ordinary resolution (glibc `getaddrinfo` via `tokio::net::lookup_host`, in
//! `PolicyResolver::resolve`) really asks it over UDP. No `--resolve` entry is involved.
//!
//! Why the connection test runs with the policy off: the rebinding attack is "first answer
//! allowed, second answer loopback". With the policy on, an allowed first answer is a
//! public address, which the runtime would then rightly connect to, and tests never dial
//! anything outside loopback. So the first answer is 127.0.0.1 (the real upstream, allowed
//! with `--allow-private-upstreams`) and every later answer is 127.0.0.2 (a canary on the
//! same port that counts connections). The pinning under test is the same code either way:
//! `PolicyConnector::call` resolves and checks once and hands exactly those addresses to
//! the TCP connector (`set_addrs`); the policy's verdict is a separate, unconditional step
//! of the same lookup, which the second test checks on a DNS answer with the policy on.
//! If the connector looked the name up again (drop `set_addrs`, or give the inner connector
//! a resolver of its own) the second lookup answers 127.0.0.2 and the canary counts it.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::dns::RebindingDns;
use crate::common::process::{Launch, ServerProcess};
use crate::common::{counting_listener, json_route, upstream, Upstream};
use actix_web::web;
use serde_json::{json, Value};

const NAME: &str = "rebind.test";

/// A listener on 127.0.0.2:`port` that counts the connections it accepts and closes them.
fn canary_on_127_0_0_2(port: u16) -> Option<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), port)).ok()?;
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Some((port, count))
}

/// The real upstream on 127.0.0.1 and the canary on the same port of 127.0.0.2.
async fn upstream_and_canary() -> (Upstream, Arc<AtomicUsize>) {
    for _ in 0..20 {
        let up = upstream(|cfg| {
            cfg.route(
                "/pinned",
                web::get().to(json_route(200, json!({"from": "the checked address"}))),
            );
        })
        .await;
        if let Some((_, canary)) = canary_on_127_0_0_2(up.port) {
            return (up, canary);
        }
        up.stop().await;
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let mut res = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let body = res.body().await.unwrap();
    (
        res.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn the_connection_goes_to_the_address_the_resolver_checked() {
    let (up, canary) = upstream_and_canary().await;
    let dns = RebindingDns::start(
        NAME,
        vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)],
    );
    let registry = json!({"connectors": [{"name": "pinned", "permalink": "pinned",
        "url": format!("http://{NAME}:{}/pinned", up.port)}]});
    let server = ServerProcess::start_with(
        &registry,
        &[],
        Launch {
            allow_private_upstreams: true,
            resolv_conf: Some(dns.resolv_conf()),
            ..Default::default()
        },
    );
    let (status, body) = get(&server.base, "/connectors/pinned/execute").await;
    let log = server.log_tail(20);
    assert_eq!(
        (status, &body),
        (200, &json!({"from": "the checked address"})),
        "DNS questions {:?}\n{log}",
        dns.questions()
    );
    assert_eq!(up.log.count("/pinned"), 1);
    assert_eq!(
        canary.load(Ordering::SeqCst),
        0,
        "the runtime connected to the second answer (127.0.0.2)"
    );
    // One connection, one lookup: the name was resolved once, and that answer was used.
    assert_eq!(dns.lookups_of(NAME), 1, "{:?}", dns.questions());
}

#[actix_web::test]
async fn a_dns_answer_is_checked_by_the_policy_before_any_connection() {
    // The policy on: real DNS answers 127.0.0.1 for the name (and the same on any later
    // lookup); the run is refused, and the canary on that address never sees a connection.
    let canary = counting_listener().await;
    let dns = RebindingDns::start(NAME, vec![Ipv4Addr::new(127, 0, 0, 1)]);
    let registry = json!({"connectors": [{"name": "rebound", "permalink": "rebound",
        "url": format!("https://{NAME}:{}/x", canary.port)}]});
    let server = ServerProcess::start_with(
        &registry,
        &[],
        Launch {
            allow_private_upstreams: false,
            resolv_conf: Some(dns.resolv_conf()),
            ..Default::default()
        },
    );
    let (status, body) = get(&server.base, "/connectors/rebound/execute").await;
    assert_eq!(status, 502, "{body}\n{}", server.log_tail(20));
    assert_eq!(
        body["errors"]["code"], "UPSTREAM_ADDRESS_FORBIDDEN",
        "{body}"
    );
    assert_eq!(canary.count(), 0, "the forbidden answer was connected to");
    // The refusal is the DNS answer's: the name really was looked up.
    assert!(dns.lookups_of(NAME) >= 1, "{:?}", dns.questions());
}

//! Slow request bodies cannot take the server down (security probe, finding 1): a body is
//! read before a run slot is taken, within `--request-body-timeout-ms` (408 in the envelope
//! after it), and memory grows with the bytes that arrive, never with the declared length.
//! Checked on the real binary with real sockets and its resident memory from /proc.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::ok_upstream;
use crate::common::process::ServerProcess;

/// A sender that declares `declared` bytes of body, sends `sent` of them and then idles.
async fn slow_sender(port: u16, declared: usize, sent: usize) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /connectors/composite/ok/execute HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&vec![b' '; sent]).await.unwrap();
    socket
}

/// The whole answer on `socket`, read until the server closes it or `limit` passes.
async fn answer(socket: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, socket.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn registry(upstream: &str) -> Value {
    json!({"composite_connectors": [{
        "name": "Ok", "permalink": "ok",
        "steps": [{"name": "ok", "url": format!("{upstream}/ok")}]
    }]})
}

#[actix_rt::test]
async fn slow_bodies_hold_no_run_slot_and_end_as_408() {
    let up = ok_upstream().await;
    let server = ServerProcess::start(
        &registry(&up.base),
        &["--max-in-flight", "4", "--request-body-timeout-ms", "2000"],
    );
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(slow_sender(server.port, 1_000_000, 10).await);
    }
    // More slow senders than run slots, and a caller with a whole body is still served.
    let client = awc::Client::default();
    for _ in 0..3 {
        let reply = client
            .post(format!("{}/connectors/composite/ok/execute", server.base))
            .send_body("{}")
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200, "a whole body was refused");
    }
    for socket in &mut slow {
        let text = answer(socket, Duration::from_secs(15)).await;
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let envelope: Value = serde_json::from_str(body).expect("the 408 is the envelope");
        assert_eq!(envelope["errors"]["code"], "REQUEST_BODY_TIMEOUT");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(15),
        "the body timeout is 2 s; the slow senders were answered after {waited:?}"
    );
}

#[actix_rt::test]
async fn a_declared_length_costs_no_memory_until_the_bytes_arrive() {
    let up = ok_upstream().await;
    let server = ServerProcess::start(&registry(&up.base), &["--request-body-timeout-ms", "30000"]);
    let before = server.rss_kib();
    let mut held = Vec::new();
    for _ in 0..500 {
        held.push(slow_sender(server.port, 1024 * 1024, 2).await);
    }
    // Wait until the server has read every head: it then holds all 500 bodies open.
    let deadline = Instant::now() + Duration::from_secs(10);
    let client = awc::Client::default();
    loop {
        let metrics = client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .body()
            .await
            .unwrap();
        let open = String::from_utf8_lossy(&metrics).lines().any(|l| {
            l.starts_with("process_open_fds ")
                && l[17..].trim().parse::<f64>().unwrap_or(0.0) >= 500.0
        });
        if open || Instant::now() > deadline {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let grown_mib = server.rss_kib().saturating_sub(before) / 1024;
    // The old reader sized a buffer from each Content-Length: 500 MiB here.
    assert!(
        grown_mib < 64,
        "500 idle senders declaring 1 MiB grew RSS by {grown_mib} MiB"
    );
    drop(held);
}

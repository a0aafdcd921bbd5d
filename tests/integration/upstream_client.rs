//! The upstream client where the vendored awc is patched (vendor/README.md): request codecs
//! share one configuration per thread, whose `Date` keeps refreshing within a runtime and
//! across runtimes started one after another on one thread; and the connection pool finds an
//! idle connection by its authority, whatever the case of the host name.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime};

/// What one request's `Date` said, and when the upstream read it.
struct Stamp {
    date: SystemTime,
    received: SystemTime,
}

impl Stamp {
    /// How far the `Date` header was behind the moment the request arrived.
    fn lag(&self) -> Duration {
        self.received
            .duration_since(self.date)
            .unwrap_or(Duration::ZERO)
    }
}

/// A keep-alive HTTP/1.1 upstream on 127.0.0.1 that answers `200 ok`, reports each
/// request's `Date` header and counts the connections it accepted.
fn date_upstream() -> (u16, mpsc::Receiver<Stamp>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut date = None;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let trimmed = line.trim_end();
                        if trimmed.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = trimmed.split_once(':') {
                            if name.eq_ignore_ascii_case("date") {
                                date = httpdate::parse_http_date(value.trim()).ok();
                            }
                        }
                    }
                    let received = SystemTime::now();
                    let date = date.expect("every upstream request carries a Date header");
                    let _ = tx.send(Stamp { date, received });
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx, accepted)
}

async fn get(client: &awc::Client, port: u16) {
    get_from(client, &format!("http://127.0.0.1:{port}/")).await
}

async fn get_from(client: &awc::Client, url: &str) {
    let mut reply = client.get(url).send().await.unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(reply.body().await.unwrap().as_ref(), b"ok");
}

#[test]
fn upstream_requests_carry_a_current_date_within_and_across_runtimes() {
    let (port, stamps, _) = date_upstream();
    // Dates have whole seconds and refresh every 500 ms: at most 1.5 s behind.
    let limit = Duration::from_millis(1500);

    actix_rt::System::new().block_on(async {
        let client = awc::Client::new();
        get(&client, port).await;
        actix_rt::time::sleep(Duration::from_millis(1600)).await;
        get(&client, port).await;
    });
    let first = stamps.recv().unwrap();
    let later = stamps.recv().unwrap();
    assert!(
        first.lag() <= limit,
        "first request's Date {:?} behind",
        first.lag()
    );
    assert!(
        later.lag() <= limit,
        "the Date stopped refreshing: {:?} behind",
        later.lag()
    );
    assert!(later.date > first.date, "the Date did not move in 1.6 s");

    // The first runtime is gone, and with it the task that refreshed the shared date: a new
    // runtime on the same thread must not send the date it left behind.
    std::thread::sleep(Duration::from_millis(2500));
    actix_rt::System::new().block_on(async {
        get(&awc::Client::new(), port).await;
    });
    let next = stamps.recv().unwrap();
    assert!(
        next.lag() <= limit,
        "a later runtime sent a stale Date: {:?} behind",
        next.lag()
    );
}

#[actix_rt::test]
async fn one_idle_connection_serves_an_authority_written_in_any_case() {
    let (port, _stamps, accepted) = date_upstream();
    let client = awc::Client::new();
    for host in ["localhost", "LOCALHOST", "LocalHost", "localhost"] {
        get_from(&client, &format!("http://{host}:{port}/")).await;
    }
    // Sequential calls: each finds the connection the previous one gave back.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

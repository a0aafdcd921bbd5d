//! A caller that goes away cancels its run (docs/spec.md §12): no further step starts, the
//! upstream call in flight is dropped, and the run is counted once as `cancelled`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::common::process::metric_sum;
use crate::common::{spawn_app, upstream, Log};

/// A raw upstream that reads one request and never answers; it counts the requests it
/// read and the connections its peer closed while waiting (the call in flight was dropped).
async fn silent_upstream() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (requests, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (seen, gone) = (requests.clone(), closed.clone());
    actix_rt::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (seen, gone) = (seen.clone(), gone.clone());
            actix_rt::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                    if buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        seen.fetch_add(1, Ordering::SeqCst);
                        // Wait for the peer: only a closed connection ends this read.
                        while let Ok(n) = socket.read(&mut chunk).await {
                            if n == 0 {
                                break;
                            }
                        }
                        gone.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            });
        }
    });
    (port, requests, closed)
}

/// Polls `check` every 20 ms until it holds, failing after `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_caller_that_disconnects_cancels_its_run_before_the_next_step() {
    let (silent, requests, closed) = silent_upstream().await;
    let up = upstream(|cfg| {
        cfg.route(
            "/next",
            web::get().to(|req: HttpRequest, log: web::Data<Log>| async move {
                log.record(&req, b"");
                HttpResponse::Ok().json(json!({"next": true}))
            }),
        );
    })
    .await;
    let app = spawn_app(json!({"composite_connectors": [{
        "name": "Two steps",
        "permalink": "two-steps",
        "steps": [
            {"name": "first", "url": format!("http://127.0.0.1:{silent}/slow")},
            {"name": "second", "url": format!("{}/next", up.base)}
        ]
    }]}))
    .await;

    let caller = app.composite_then_hang_up("two-steps").await;
    eventually(
        Duration::from_secs(10),
        "the first step to reach the upstream",
        async || requests.load(Ordering::SeqCst) == 1,
    )
    .await;
    drop(caller);

    eventually(
        Duration::from_secs(10),
        "the run to be counted as cancelled",
        async || {
            let exposition = app.get("/metrics").await.text();
            metric_sum(
                &exposition,
                "connector_runs_total",
                &["connector=\"two-steps\"", "outcome=\"cancelled\""],
            ) == 1.0
        },
    )
    .await;
    // The cancellation is counted when the run is dropped, so no step can start after it.
    assert_eq!(up.log.count("/next"), 0, "the next step was started");
    eventually(
        Duration::from_secs(10),
        "the upstream call in flight to be dropped",
        async || closed.load(Ordering::SeqCst) == 1,
    )
    .await;
    let exposition = app.get("/metrics").await.text();
    assert_eq!(
        metric_sum(&exposition, "connector_runs_in_flight", &[]),
        0.0,
        "the cancelled run is still counted in flight"
    );
    let ok = metric_sum(
        &exposition,
        "connector_runs_total",
        &["connector=\"two-steps\"", "outcome=\"ok\""],
    );
    assert_eq!(ok, 0.0);
}

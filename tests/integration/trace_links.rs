//! Links from the console to a trace UI (issue 16, docs/spec.md §13): `--trace-ui-url` /
//! `CONNECTOR_RUNTIME_TRACE_UI_URL` reaches the console through `GET /console/api/connectors`
//! (`trace_ui_url`) when tracing is on, filled in with a traced run's `trace_id` it names the
//! trace the runtime exported, and a template that is not an http(s) URL with `{trace_id}`
//! stops the server at start with an error that says what is wrong.
//!
//! The server is the real binary as a child process (its `OTEL_*` environment stays out of
//! the test process), exporting to the real OTLP/HTTP receiver of the tracing suite on
//! 127.0.0.1.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::process::ServerProcess;
use crate::common::Reply;
use crate::tracing::{ok_upstream, one_step, server, Receiver};

const TEMPLATE: &str = "http://localhost:16686/trace/{trace_id}";

async fn request(server: &ServerProcess, method: &str, path: &str) -> Reply {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = format!("{}{path}", server.base);
    let mut res = client
        .request(method.parse().unwrap(), &url)
        .insert_header(("Content-Type", "application/json"))
        .send_body(if method == "POST" { "{}" } else { "" })
        .await
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}\n{}", server.log_tail(20)));
    let body = res.body().limit(1024 * 1024).await.unwrap();
    Reply {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body,
    }
}

/// What the console reads: `GET /console/api/connectors`, whose every field the OpenAPI
/// document's `ConnectorList` must declare (it allows no others).
async fn console_settings(server: &ServerProcess) -> Value {
    let reply = request(server, "GET", "/console/api/connectors").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc = reply.json();
    let openapi: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    let declared = &openapi["components"]["schemas"]["ConnectorList"]["properties"];
    for key in doc.as_object().unwrap().keys() {
        assert!(
            declared.get(key).is_some(),
            "GET /console/api/connectors answers {key:?}, which openapi.json's ConnectorList does not declare"
        );
    }
    doc
}

/// The console's link for a run: the template with the trace id in place of `{trace_id}`.
fn link(template: &str, trace_id: &str) -> String {
    template.replace("{trace_id}", trace_id)
}

#[actix_web::test]
async fn the_console_gets_the_template_and_a_traced_runs_link_names_the_exported_trace() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let server = server(
        &one_step(&up.base),
        &[
            "--console",
            "--otlp-endpoint",
            &receiver.base,
            "--trace-ui-url",
            TEMPLATE,
        ],
        &[],
    );
    let settings = console_settings(&server).await;
    assert_eq!(settings["trace_ui_url"], TEMPLATE, "{settings}");
    assert_eq!(settings["connectors"][0]["permalink"], "one", "{settings}");

    let reply = request(&server, "POST", "/connectors/composite/one/execute").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let timing = reply.connector_timing();
    let trace_id = timing["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace_id in X-Connector-Timing: {timing}"));
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trace_id:?}"
    );
    assert_eq!(
        link(settings["trace_ui_url"].as_str().unwrap(), trace_id),
        format!("http://localhost:16686/trace/{trace_id}")
    );
    // The collector got the trace the link names (its SERVER span; this waits for it).
    receiver.trace(trace_id, 1).await;
    receiver.stop().await;
}

#[actix_web::test]
async fn the_environment_variable_sets_the_template_too() {
    let up = ok_upstream().await;
    let receiver = Receiver::start();
    let template = "https://traces.example.test/explore?trace={trace_id}&from=console";
    let server = server(
        &one_step(&up.base),
        &["--console"],
        &[
            ("CONNECTOR_RUNTIME_OTLP_ENDPOINT", &receiver.base),
            ("CONNECTOR_RUNTIME_TRACE_UI_URL", template),
        ],
    );
    assert_eq!(console_settings(&server).await["trace_ui_url"], template);
    receiver.stop().await;
}

#[actix_web::test]
async fn without_tracing_or_without_a_template_the_console_gets_none() {
    let up = ok_upstream().await;
    // A template but no endpoint: no run has a trace id, so there is nothing to link to.
    let untraced = server(
        &one_step(&up.base),
        &["--console", "--trace-ui-url", TEMPLATE],
        &[],
    );
    let settings = console_settings(&untraced).await;
    assert!(settings.get("trace_ui_url").is_none(), "{settings}");
    let reply = request(&untraced, "POST", "/connectors/composite/one/execute").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.connector_timing().get("trace_id").is_none());

    // Tracing on, no template: runs carry their trace id, the console links nowhere.
    let receiver = Receiver::start();
    let traced = server(
        &one_step(&up.base),
        &["--console", "--otlp-endpoint", &receiver.base],
        &[],
    );
    let settings = console_settings(&traced).await;
    assert!(settings.get("trace_ui_url").is_none(), "{settings}");
    let reply = request(&traced, "POST", "/connectors/composite/one/execute").await;
    assert!(reply.connector_timing()["trace_id"].is_string());
    receiver.stop().await;
}

/// `serve --trace-ui-url VALUE` (tracing off: the value is checked anyway): its exit status
/// and what it wrote, or a panic if it is still running after 20 s.
fn start_with_trace_ui_url(registry: &std::path::Path, value: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(registry)
        .args(["--trace-ui-url", value])
        .env_remove("CONNECTOR_RUNTIME_OTLP_ENDPOINT")
        .env_remove("CONNECTOR_RUNTIME_TRACE_UI_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (status.success(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve --trace-ui-url {value:?} is still running after 20 s (the value was accepted):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_template_that_is_not_an_http_url_with_a_trace_id_placeholder_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("connectors_registry.json");
    std::fs::write(
        &registry,
        one_step("http://127.0.0.1:9").to_string().as_bytes(),
    )
    .unwrap();
    for (value, reason) in [
        (
            "http://localhost:16686/trace/",
            "has no {trace_id} placeholder",
        ),
        (
            "http://localhost:16686/trace/{traceid}",
            "has no {trace_id} placeholder",
        ),
        (
            "ftp://localhost/trace/{trace_id}",
            "is not an http:// or https:// URL",
        ),
        (
            "javascript:alert(1)//{trace_id}",
            "is not an http:// or https:// URL",
        ),
        ("/trace/{trace_id}", "is not an http:// or https:// URL"),
        ("http://local host/{trace_id}", "is not a valid URL"),
        (
            "https://admin:hunter2@jaeger.test/trace/{trace_id}",
            "carries credentials",
        ),
    ] {
        let (ok, output) = start_with_trace_ui_url(&registry, value);
        assert!(!ok, "serve accepted --trace-ui-url {value:?}:\n{output}");
        assert!(
            output.contains("--trace-ui-url") && output.contains(reason),
            "serve --trace-ui-url {value:?} did not say {reason:?}:\n{output}"
        );
        assert!(
            output.contains("http://localhost:16686/trace/{trace_id}"),
            "the error gives no example of a good value:\n{output}"
        );
        if value.contains("hunter2") {
            // The value is echoed; a password in it is the operator's own, but it is still
            // better not to print it.
            assert!(
                !output.contains("hunter2"),
                "the password is printed:\n{output}"
            );
        }
    }
}

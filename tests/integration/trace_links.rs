//! Links from the console to a trace UI (issue 16, docs/spec.md §13): `--trace-ui-url` /
//! `CONNECTOR_RUNTIME_TRACE_UI_URL` reaches the console through `GET /console/api/connectors`
//! (`trace_ui_url`) when tracing is on, filled in with a traced run's `trace_id` it names the
//! trace the runtime exported, and a template that is not an http(s) URL with `{trace_id}`
//! stops the server at start with an error that says what is wrong.
//!
//! The server is the real binary as a child process (its `OTEL_*` environment stays out of
//! the test process), exporting to a real OTLP/HTTP receiver on 127.0.0.1.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{json, Value};

use crate::common::process::{Launch, ServerProcess};
use crate::common::{json_route, upstream, Reply};

const TEMPLATE: &str = "http://localhost:16686/trace/{trace_id}";

/// Variables the child must not inherit (they would turn tracing on or off behind the test's
/// back).
const INHERITED: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "CONNECTOR_RUNTIME_OTLP_ENDPOINT",
    "CONNECTOR_RUNTIME_TRACE_UI_URL",
];

/// The trace id (hex) and kind of every span received.
type Spans = Arc<Mutex<Vec<(String, SpanKind)>>>;

/// An OTLP/HTTP receiver on 127.0.0.1 keeping the trace id and kind of every span it gets.
struct Receiver {
    base: String,
    spans: Spans,
    handle: ServerHandle,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let data = spans.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .default_service(web::to(
                    |req: HttpRequest, body: Bytes, spans: web::Data<Spans>| async move {
                        let Ok(export) = ExportTraceServiceRequest::decode(body) else {
                            return HttpResponse::BadRequest().finish();
                        };
                        if req.path() != "/v1/traces" {
                            return HttpResponse::NotFound().finish();
                        }
                        let mut spans = spans.lock().unwrap();
                        for span in export
                            .resource_spans
                            .iter()
                            .flat_map(|r| &r.scope_spans)
                            .flat_map(|s| &s.spans)
                        {
                            let id = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                            let kind =
                                SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
                            spans.push((id, kind));
                        }
                        HttpResponse::Ok()
                            .content_type("application/x-protobuf")
                            .body(ExportTraceServiceResponse::default().encode_to_vec())
                    },
                ))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            base: format!("http://127.0.0.1:{port}"),
            spans,
            handle,
        }
    }

    /// Waits (at most 15 s) for the SERVER span of `trace_id`.
    async fn server_span_of(&self, trace_id: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .any(|(id, kind)| id == trace_id && *kind == SpanKind::Server);
            if found {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// A one-step composite `one` calling `GET {base}/ok`.
fn one_step(base: &str) -> Value {
    json!({"composite_connectors": [{
        "name": "One", "permalink": "one",
        "steps": [{"name": "only", "url": format!("{base}/ok")}]
    }]})
}

/// `serve` as a child with `flags`, the variables of `env` set and the rest of INHERITED
/// removed, a 100 ms batch delay.
fn server(registry: &Value, flags: &[&str], env: &[(&str, &str)]) -> ServerProcess {
    let mut vars: Vec<(String, Option<String>)> =
        INHERITED.iter().map(|n| (n.to_string(), None)).collect();
    vars.push(("OTEL_BSP_SCHEDULE_DELAY".into(), Some("100".into())));
    for (name, value) in env {
        vars.push((name.to_string(), Some(value.to_string())));
    }
    ServerProcess::start_with(
        registry,
        flags,
        Launch {
            env: vars,
            ..Default::default()
        },
    )
}

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
    let up = upstream(|cfg| {
        cfg.route("/ok", web::get().to(json_route(200, json!({"ok": true}))));
    })
    .await;
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
    assert!(
        receiver.server_span_of(trace_id).await,
        "the collector never got the SERVER span of trace {trace_id}, which the link names"
    );
    receiver.handle.stop(false).await;
}

#[actix_web::test]
async fn the_environment_variable_sets_the_template_too() {
    let up = upstream(|cfg| {
        cfg.route("/ok", web::get().to(json_route(200, json!({"ok": true}))));
    })
    .await;
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
    receiver.handle.stop(false).await;
}

#[actix_web::test]
async fn without_tracing_or_without_a_template_the_console_gets_none() {
    let up = upstream(|cfg| {
        cfg.route("/ok", web::get().to(json_route(200, json!({"ok": true}))));
    })
    .await;
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
    receiver.handle.stop(false).await;
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

//! Micro-benchmarks of the hot path: rendering a step's templates, orchestrating a run
//! (actor spawn and messages) against an in-process no-op upstream, `from_json` on a 10 KB
//! payload, the timing headers and the metrics. `cargo bench --bench hot_path` measures;
//! `cargo test --benches` runs each once (the CI smoke mode, so they cannot rot).

use std::hint::black_box;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use connector_runtime::config::ServeArgs;
use connector_runtime::events::{RunFinished, StepFinished};
use connector_runtime::metrics::Metrics;
use connector_runtime::registry::{build_registry, BuildOptions, Registry};
use connector_runtime::run::step::StepActor;
use connector_runtime::run::timing::{
    composite_connector_timing, composite_server_timing, Ids, StepTiming,
};
use connector_runtime::run::{CallerOverrides, CallerVars, CompositeRunActor, RunInput};
use connector_runtime::server::StepActors;
use connector_runtime::template::context::{RequestView, TemplateContext};
use connector_runtime::upstream::client::ClientSettings;
use connector_runtime::upstream::{build_client, AddressPolicy};
use criterion::{criterion_group, criterion_main, Criterion};
use minijinja::Value;

fn registry(base: &str) -> Registry {
    let text = serde_json::json!({"composite_connectors": [{
        "name": "Auth and Fetch User", "permalink": "auth-and-fetch-user",
        "steps": [
            {"name": "auth", "url": format!("{base}/oauth/token"), "method": "POST",
             "headers": [{"key": "Content-Type", "value": "application/json"}],
             "request_body": "{\"client_id\": \"{{ request.body_text | from_json | attr('clientId') }}\"}"},
            {"name": "fetch-user", "url": format!("{base}/users/me"),
             "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body | from_json | attr('access_token') }}"}]}
        ]
    }]})
    .to_string();
    let options = BuildOptions {
        allow_http: true,
        ..BuildOptions::default()
    };
    build_registry(&text, &options).expect("the bench registry loads")
}

fn request() -> RequestView {
    RequestView::new(
        Bytes::from_static(br#"{"clientId":"widget-42"}"#),
        Some("application/json".into()),
        Vec::new(),
    )
}

/// The input of one run of the bench composite, as the HTTP layer would build it.
fn run_input(registry: &Arc<Registry>) -> RunInput {
    let connector = registry.get("auth-and-fetch-user").unwrap().clone();
    RunInput::new(
        registry.clone(),
        connector,
        "bench".into(),
        request(),
        Vec::new(),
        CallerOverrides::default(),
        CallerVars::default(),
    )
}

fn render_step(c: &mut Criterion) {
    let registry = Arc::new(registry("http://127.0.0.1:9"));
    let connector = registry.get("auth-and-fetch-user").unwrap().clone();
    let input = run_input(&registry);
    let auth_body =
        Value::from(r#"{"access_token":"tok-4f2a9c","token_type":"Bearer","expires_in":3600}"#);
    let steps = Value::from_pairs([(
        "auth",
        Value::from_pairs([("body", auth_body), ("status_code", Value::from(200))]),
    )]);
    let header = &connector.steps[1].headers[0].value;
    let body = connector.steps[0].request_body.as_ref().unwrap();
    c.bench_function("render: bearer header from the previous step's JSON", |b| {
        b.iter(|| {
            let ctx = TemplateContext::value(input.vars.clone(), vec![("steps", steps.clone())]);
            black_box(registry.templates.render(header, &ctx).unwrap())
        })
    });
    c.bench_function(
        "render: token request body from the caller's payload",
        |b| {
            b.iter(|| {
                let ctx =
                    TemplateContext::value(input.vars.clone(), vec![("steps", steps.clone())]);
                black_box(registry.templates.render(body, &ctx).unwrap())
            })
        },
    );
}

/// `from_json` on the scenario C payload (10 KB) reading one field and one length, against
/// the same text fully built by minijinja's own deserializer (how `from_json` used to work):
/// compare the two lines of the report.
fn from_json(c: &mut Criterion) {
    let payload = include_str!("../bench/c_payload.json");
    let text = Value::from(payload);
    let mut group = c.benchmark_group("from_json: 10 KB payload, one field and one length");
    group.bench_function("read on demand (lazy_json)", |b| {
        b.iter(|| {
            let value = connector_runtime::template::lazy_json::parse(&text)
                .unwrap()
                .unwrap();
            let lines = value.get_attr("lines").unwrap();
            black_box((value.get_attr("clientId").unwrap(), lines.len()))
        })
    });
    group.bench_function("baseline: fully built", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_str(payload).unwrap();
            let lines = value.get_attr("lines").unwrap();
            black_box((value.get_attr("clientId").unwrap(), lines.len()))
        })
    });
    group.finish();
}

/// A no-op upstream on loopback: a token and a small user, answered from memory.
fn start_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            HttpServer::new(|| {
                App::new()
                    .route(
                        "/oauth/token",
                        web::post().to(|| async {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .body(r#"{"access_token":"tok-4f2a9c","expires_in":3600}"#)
                        }),
                    )
                    .route(
                        "/users/me",
                        web::get().to(|| async {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .body(r#"{"id":"usr_123","name":"Ada Lovelace"}"#)
                        }),
                    )
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run()
            .await
        })
    });
    port
}

fn orchestrate_run(c: &mut Criterion) {
    let port = start_upstream();
    let registry = Arc::new(registry(&format!("http://127.0.0.1:{port}")));
    let system = actix_rt::System::new();
    let metrics = Metrics::new();
    let step_actor = system.block_on(async {
        let client = build_client(&ClientSettings {
            policy: AddressPolicy {
                allow_private: true,
            },
            overrides: Default::default(),
            connect_timeout: Duration::from_secs(5),
            max_connections: 64,
            tls: connector_runtime::upstream::tls::client_config(None)
                .expect("the bundled roots load"),
        });
        StepActor::new(
            client,
            StepActors::from_args(&ServeArgs::for_registry("unused"), metrics.clone(), None)
                .expect("the default flags are valid")
                .shared,
        )
        .start()
    });
    c.bench_function(
        "run: 2-step composite through the actors against a loopback upstream",
        |b| {
            b.iter_custom(|iterations| {
                system.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let input = Arc::new(run_input(&registry));
                        let outcome =
                            CompositeRunActor::new(input, step_actor.clone(), metrics.clone())
                                .run()
                                .await;
                        assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
                    }
                    started.elapsed()
                })
            })
        },
    );
}

fn timing_headers(c: &mut Criterion) {
    let steps = vec![
        StepTiming {
            name: "auth".into(),
            index: 0,
            total: Duration::from_micros(120_500),
            status_code: Some(200),
            ..Default::default()
        },
        StepTiming {
            name: "fetch-user".into(),
            index: 1,
            total: Duration::from_micros(85_340),
            status_code: Some(200),
            ..Default::default()
        },
    ];
    c.bench_function(
        "timing headers: Server-Timing and X-Connector-Timing of 2 steps",
        |b| {
            b.iter(|| {
                let total = Duration::from_micros(210_090);
                black_box((
                    composite_server_timing(&steps, total),
                    composite_connector_timing(
                        Ids {
                            request_id: "0123456789abcdef",
                            trace_id: None,
                        },
                        &steps,
                        total,
                    ),
                ))
            })
        },
    );
}

fn metrics(c: &mut Criterion) {
    let metrics = Metrics::new();
    let registry = registry("http://127.0.0.1:9");
    let connector = registry.get("auth-and-fetch-user").unwrap();
    let timing = StepTiming {
        name: "auth".into(),
        total: Duration::from_millis(3),
        status_code: Some(200),
        ..Default::default()
    };
    c.bench_function("metrics: one step and one run recorded", |b| {
        b.iter(|| {
            StepFinished {
                request_id: "bench",
                connector: &connector.permalink,
                step: &timing.name,
                index: 0,
                status: timing.status_code,
                duration: timing.total,
                upstream: timing.external,
                failure: None,
                state: "ok",
                hot: &connector.steps[0].hot_metrics,
                ok_state: &connector.steps[0].ok_state_metric,
            }
            .emit(&metrics);
            RunFinished {
                request_id: "bench",
                connector: &connector.permalink,
                kind: "composite",
                duration: Duration::from_millis(5),
                failure: None,
                hot: &connector.hot_metrics,
            }
            .emit(&metrics);
        })
    });
}

criterion_group!(
    benches,
    render_step,
    from_json,
    orchestrate_run,
    timing_headers,
    metrics
);
criterion_main!(benches);

//! `connector-runtime run PERMALINK`: executes one connector once, in process, and prints
//! the status, the body and a per-step timing table (the operator's "test connection").

use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use clap::Args;

use crate::config::ServeArgs;
use crate::registry::build_registry;
use crate::run::input::{path_parameters, PathParamError};
use crate::run::timing::ms;
use crate::run::{execute, CallerOverrides, RunInput};
use crate::server::{build_options, Engine};
use crate::template::context::RequestView;

/// Executes one connector once and prints status, body and step timings.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Permalink of the connector.
    pub permalink: String,
    /// Request body sent as the payload (JSON or any text).
    #[arg(long)]
    pub payload: Option<String>,
    /// Query parameter `key=value` (repeatable).
    #[arg(long = "query", value_name = "KEY=VALUE")]
    pub query: Vec<String>,
    /// Path parameter `key=value` (repeatable; simple connectors).
    #[arg(long = "path-param", value_name = "KEY=VALUE")]
    pub path_params: Vec<String>,
    /// Caller header `Name: value` for overridable headers (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Server settings (registry, secrets, variables, limits).
    #[command(flatten)]
    pub serve: ServeArgs,
}

fn pairs(items: &[String], sep: char) -> Vec<(String, String)> {
    items
        .iter()
        .map(|item| match item.split_once(sep) {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (item.trim().to_string(), String::new()),
        })
        .collect()
}

/// Runs the command; returns the exit code (0 when the connector succeeded).
pub fn run(args: RunArgs) -> i32 {
    actix_rt::System::new().block_on(async move {
        let options = match build_options(&args.serve) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let text = match args.serve.registry_source().read() {
            Ok(snapshot) => snapshot.text,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let registry = match build_registry(&text, &options) {
            Ok(r) => Arc::new(r),
            Err(rejected) => {
                eprint!(
                    "error: the registry is invalid:\n{}",
                    rejected.report.to_text()
                );
                return 2;
            }
        };
        let Some(connector) = registry.get(&args.permalink).cloned() else {
            eprintln!("error: no connector with permalink '{}'", args.permalink);
            return 2;
        };
        let path_params = match path_parameters(&connector, &pairs(&args.path_params, '=')) {
            Ok(p) => p,
            Err(PathParamError::Missing(keys)) => {
                eprintln!(
                    "error: missing path parameters: {} (use --path-param key=value)",
                    keys.join(", ")
                );
                return 2;
            }
            Err(PathParamError::Invalid(keys)) => {
                eprintln!("error: invalid path parameter values: {}", keys.join(", "));
                return 2;
            }
        };
        let query = pairs(&args.query, '=');
        let headers = pairs(&args.headers, ':');
        let overrides = CallerOverrides::collect(
            &connector,
            |name| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| HeaderValue::from_str(v).ok())
            },
            &query,
        );
        let body = Bytes::from(args.payload.clone().unwrap_or_default());
        let content_type = args
            .payload
            .as_ref()
            .map(|_| "application/json".to_string());
        let request = RequestView::new(body, content_type, query);
        let engine = match Engine::from_args(&args.serve, crate::metrics::Metrics::new()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let input = Arc::new(RunInput::new(
            registry,
            connector,
            crate::http::request_id::generate().into(),
            request,
            path_params,
            overrides,
        ));
        let outcome = execute(input, engine.start_step_actor()).await;
        let code = match &outcome.result {
            Ok(success) => {
                println!("status: {}", success.status);
                if let Some(ct) = &success.content_type {
                    println!("content-type: {ct}");
                }
                println!("\n{}\n", String::from_utf8_lossy(&success.body));
                0
            }
            Err(error) => {
                println!(
                    "failed: HTTP {} {}",
                    error.failure.kind.status(),
                    error.failure.kind.code()
                );
                println!("scope:  {}", error.scope());
                println!("detail: {}\n", error.failure.detail);
                1
            }
        };
        println!(
            "{:<4} {:<24} {:>7} {:>10} {:>10} {:>10} {:>10}",
            "#", "step", "status", "setup ms", "upstream", "transform", "total ms"
        );
        for t in &outcome.timings {
            println!(
                "{:<4} {:<24} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                t.index,
                t.name,
                t.status_code
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                ms(t.setup),
                ms(t.external),
                ms(t.transform),
                ms(t.total)
            );
        }
        println!("total: {:.1} ms", ms(outcome.total));
        code
    })
}

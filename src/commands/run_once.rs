//! `connector-runtime run PERMALINK`: executes one connector once, in process, and prints
//! the status, the body and a per-step timing table (the operator's "test connection").

use super::Failure;
use std::sync::Arc;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use clap::Args;

use crate::config::ServeArgs;
use crate::error::Code;
use crate::registry::build_registry;
use crate::run::caller::CookieUse;
use crate::run::input::RunRequest;
use crate::run::timing::ms;
use crate::run::CompositeRunActor;
use crate::server::{build_options, identity_gate, StepActors};

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
pub(crate) fn run(args: RunArgs) -> Result<i32, Failure> {
    actix_rt::System::new().block_on(async move {
        let options = build_options(&args.serve).map_err(|e| Failure::new(2, e))?;
        let text = args
            .serve
            .registry_source()
            .read()
            .map_err(|e| Failure::new(2, e))?
            .text;
        let registry = build_registry(&text, &options).map_err(|rejected| {
            let report = rejected.report.to_text();
            Failure::new(
                2,
                format!("the registry is invalid:\n{}", report.trim_end()),
            )
        })?;
        let registry = Arc::new(registry);
        let request = RunRequest {
            kind: None,
            permalink: &args.permalink,
            method: None,
            query: pairs(&args.query, '='),
            path_params: pairs(&args.path_params, '='),
        };
        let resolved = match request.resolve(Some(registry)) {
            Ok(resolved) => resolved,
            Err(refused) => {
                let keys = refused.params.join(", ");
                return Err(Failure::new(
                    2,
                    match refused.code {
                        Code::MissingPathParameters => {
                            format!("missing path parameters: {keys} (use --path-param key=value)")
                        }
                        Code::InvalidPathParameters => {
                            format!("invalid path parameter values: {keys}")
                        }
                        _ => refused.to_string(),
                    },
                ));
            }
        };
        let headers = pairs(&args.headers, ':');
        let metrics = crate::metrics::Metrics::new();
        let gate = identity_gate(&args.serve, &metrics)
            .await
            .map_err(|e| Failure::new(2, e))?;
        let mut header_map = HeaderMap::new();
        for (name, value) in &headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                header_map.append(name, value);
            }
        }
        let request_id: Arc<str> = crate::http::request_id::generate().into();
        // The command is its own page: a token from the identity cookie is accepted.
        let caller = gate
            .identify(
                resolved.connector(),
                &header_map,
                || CookieUse::Allowed,
                &request_id,
                &metrics,
            )
            .await
            .map_err(|refused| Failure::new(2, format!("{}: {refused}", refused.code)))?;
        let content_type = args
            .payload
            .as_ref()
            .map(|_| "application/json".to_string());
        let body = Bytes::from(args.payload.clone().unwrap_or_default());
        let step_actors =
            StepActors::from_args(&args.serve, metrics).map_err(|e| Failure::new(2, e))?;
        let input = Arc::new(resolved.into_input(
            request_id,
            body,
            content_type,
            |name| {
                if gate.consumes(name) {
                    return None;
                }
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| HeaderValue::from_str(v).ok())
            },
            caller,
        ));
        let metrics = step_actors.shared.metrics.clone();
        let outcome = CompositeRunActor::new(input, step_actors.start(), metrics)
            .run()
            .await;
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
                    error.failure.code.status(),
                    error.failure.code
                );
                println!("scope:  {}", error.scope());
                println!("detail: {}\n", error.failure.detail);
                1
            }
        };
        println!(
            "{:<4} {:<24} {:<10} {:>7} {:>9} {:>10} {:>10} {:>10} {:>10}",
            "#",
            "step",
            "state",
            "status",
            "start ms",
            "setup ms",
            "upstream",
            "transform",
            "total ms"
        );
        for t in &outcome.timings {
            let state = match &t.items {
                Some(items) => format!("{} ×{}", t.state.as_str(), items.len()),
                None => t.state.as_str().to_string(),
            };
            println!(
                "{:<4} {:<24} {:<10} {:>7} {:>9.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                t.index,
                t.name,
                state,
                t.status_code
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                ms(t.start),
                ms(t.setup),
                ms(t.external),
                ms(t.transform),
                ms(t.total)
            );
        }
        println!("total: {:.1} ms", ms(outcome.total));
        Ok(code)
    })
}

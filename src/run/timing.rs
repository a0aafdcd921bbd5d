//! Per-step timings and the `Server-Timing` / `X-Connector-Timing` headers (SPEC §6).

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;

/// Where one step spent its time.
#[derive(Debug, Clone, Default)]
pub struct StepTiming {
    /// Step name.
    pub name: String,
    /// Position from 0.
    pub index: usize,
    /// Rendering and preparing the request (including auth).
    pub setup: Duration,
    /// Waiting for the upstream (send and read).
    pub external: Duration,
    /// Rendering `response_body`.
    pub transform: Duration,
    /// Everything.
    pub total: Duration,
    /// Upstream status, when it answered.
    pub status_code: Option<u16>,
    /// Whether the response came from the response cache.
    pub cache_hit: bool,
    /// Upstream host, for the simple connector's `external` entry.
    pub host: String,
}

/// Milliseconds with one decimal, as the headers show them.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The composite connector's `Server-Timing` header value.
pub fn composite_server_timing(steps: &[StepTiming], total: Duration) -> String {
    let mut out = String::with_capacity(64 * (steps.len() + 1));
    for step in steps {
        let _ = write!(
            out,
            "step.{name};dur={dur:.1};desc=\"Step: {name}\", ",
            name = step.name,
            dur = ms(step.total)
        );
    }
    let _ = write!(out, "total;dur={:.1};desc=\"Total\"", ms(total));
    out
}

/// The composite connector's `X-Connector-Timing` JSON.
pub fn composite_connector_timing(
    request_id: &str,
    steps: &[StepTiming],
    total: Duration,
) -> String {
    let steps: Vec<_> = steps
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "index": s.index,
                "duration_ms": ms(s.total),
                "status_code": s.status_code,
            })
        })
        .collect();
    json!({"request_id": request_id, "total_ms": ms(total), "steps": steps}).to_string()
}

/// The simple connector's `Server-Timing` header value.
pub fn simple_server_timing(step: &StepTiming, total: Duration) -> String {
    let cache = if step.cache_hit {
        "Cache Hit"
    } else {
        "Cache Miss"
    };
    format!(
        "setup;dur={:.1};desc=\"Setup\", transform;dur={:.1};desc=\"Transform\", cache;dur=0.0;desc=\"{cache}\", external;dur={:.1};desc=\"{}\", total;dur={:.1};desc=\"Total\"",
        ms(step.setup),
        ms(step.transform),
        ms(step.external),
        step.host,
        ms(total)
    )
}

/// The simple connector's `X-Connector-Timing` JSON; `error` names the failure kind.
pub fn simple_connector_timing(
    request_id: &str,
    step: &StepTiming,
    total: Duration,
    error: Option<&str>,
) -> String {
    let external = ms(step.external);
    let total_ms = ms(total);
    let mut doc = json!({
        "request_id": request_id,
        "total_ms": total_ms,
        "internal_ms": ((total_ms - external) * 10.0).round().max(0.0) / 10.0,
        "external_ms": external,
        "breakdown": {
            "setup_ms": ms(step.setup),
            "transform_ms": ms(step.transform),
            "cache_ms": 0.0,
            "http_request_ms": external,
        },
        "cache_hit": step.cache_hit,
        "external_host": step.host,
    });
    if let Some(error) = error {
        doc["error"] = json!(error);
        if error == "DOWNSTREAM_TIMEOUT" {
            doc["timeout"] = json!(true);
        }
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_server_timing_matches_the_seed_format() {
        let steps = vec![
            StepTiming {
                name: "auth".into(),
                index: 0,
                total: Duration::from_micros(120_500),
                ..Default::default()
            },
            StepTiming {
                name: "fetch-user".into(),
                index: 1,
                total: Duration::from_micros(85_340),
                ..Default::default()
            },
        ];
        assert_eq!(
            composite_server_timing(&steps, Duration::from_micros(210_090)),
            "step.auth;dur=120.5;desc=\"Step: auth\", step.fetch-user;dur=85.3;desc=\"Step: fetch-user\", total;dur=210.1;desc=\"Total\""
        );
    }
}

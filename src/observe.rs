//! Internal events: each outcome the operators care about is logged and counted from one
//! place, so logs and metrics cannot disagree. Log lines carry ids, names, codes and
//! timings — never a secret, a body or a rendered value.

use std::time::Duration;

use crate::metrics::{status_class, Metrics};
use crate::registry::{Connector, Step};
use crate::run::error::StepFailure;
use crate::run::messages::StepResult;
use crate::run::timing::{ms, StepTiming};

/// A step ended.
pub fn step_finished(
    metrics: &Metrics,
    request_id: &str,
    connector: &str,
    step: &Step,
    timing: &StepTiming,
    result: &Result<StepResult, StepFailure>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(f) => f.kind.outcome_label(),
    };
    let status = timing.status_code.map(status_class);
    if outcome == "ok" && status == Some("2xx") {
        let (duration, responses) = step.hot_metrics.get(|| {
            (
                metrics
                    .step_duration
                    .with_label_values(&[connector, &timing.name, "ok"]),
                metrics
                    .upstream_responses
                    .with_label_values(&[connector, &timing.name, "2xx"]),
            )
        });
        duration.observe(timing.total.as_secs_f64());
        responses.inc();
    } else {
        metrics
            .step_duration
            .with_label_values(&[connector, &timing.name, outcome])
            .observe(timing.total.as_secs_f64());
        if let Some(class) = status {
            metrics
                .upstream_responses
                .with_label_values(&[connector, &timing.name, class])
                .inc();
        }
    }
    match result {
        Ok(_) => tracing::debug!(
            step = %timing.name,
            index = timing.index,
            status = timing.status_code,
            duration_ms = ms(timing.total),
            upstream_ms = ms(timing.external),
            "step finished"
        ),
        Err(failure) => tracing::info!(
            request_id,
            connector,
            step = %timing.name,
            index = timing.index,
            status = timing.status_code,
            code = failure.kind.code(),
            detail = %failure.detail,
            duration_ms = ms(timing.total),
            "step failed"
        ),
    }
}

/// A run ended with `outcome` (`ok` or a failure label).
pub fn run_finished(
    metrics: &Metrics,
    connector: &Connector,
    kind: &str,
    outcome: &str,
    total: Duration,
) {
    if outcome == "ok" {
        let (duration, runs) = connector.hot_metrics.get(|| {
            let labels = [connector.permalink.as_str(), kind, "ok"];
            (
                metrics.run_duration.with_label_values(&labels),
                metrics.runs.with_label_values(&labels),
            )
        });
        runs.inc();
        duration.observe(total.as_secs_f64());
        return;
    }
    let connector = connector.permalink.as_str();
    metrics
        .runs
        .with_label_values(&[connector, kind, outcome])
        .inc();
    metrics
        .run_duration
        .with_label_values(&[connector, kind, outcome])
        .observe(total.as_secs_f64());
}

/// A request was refused before any step ran (400/404/405/413, and 503 — counted as
/// outcome `overloaded` when the run was shed by `--max-in-flight`).
pub fn request_rejected(
    metrics: &Metrics,
    request_id: &str,
    connector: &str,
    kind: &str,
    status: u16,
    code: &str,
) {
    let outcome = if code == "OVERLOADED" {
        "overloaded"
    } else {
        "client_error"
    };
    metrics
        .runs
        .with_label_values(&[connector, kind, outcome])
        .inc();
    if outcome == "overloaded" {
        // Debug only: under overload a line per shed request would add to the load.
        tracing::debug!(request_id, connector, status, code, "request shed");
    } else {
        tracing::info!(request_id, connector, status, code, "request rejected");
    }
}

/// Counts a run as in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    /// Marks a run as started.
    pub fn start(metrics: &'a Metrics) -> Self {
        metrics.in_flight.inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

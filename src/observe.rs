//! Internal events: each outcome the operators care about is logged and counted from one
//! place, so logs and metrics cannot disagree. Log lines carry ids, names, codes and
//! timings — never a secret, a body or a rendered value.

use std::time::Duration;

use crate::metrics::{status_class, Metrics};
use crate::run::error::StepFailure;
use crate::run::messages::StepResult;
use crate::run::timing::{ms, StepTiming};

/// A step ended.
pub fn step_finished(
    metrics: &Metrics,
    request_id: &str,
    connector: &str,
    timing: &StepTiming,
    result: &Result<StepResult, StepFailure>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(f) => f.kind.outcome_label(),
    };
    metrics
        .step_duration
        .with_label_values(&[connector, &timing.name, outcome])
        .observe(timing.total.as_secs_f64());
    if let Some(status) = timing.status_code {
        metrics
            .upstream_responses
            .with_label_values(&[connector, &timing.name, status_class(status)])
            .inc();
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
    connector: &str,
    kind: &str,
    outcome: &str,
    total: Duration,
) {
    metrics
        .runs
        .with_label_values(&[connector, kind, outcome])
        .inc();
    metrics
        .run_duration
        .with_label_values(&[connector, kind, outcome])
        .observe(total.as_secs_f64());
}

/// A request was refused before any step ran (400/404/405/413).
pub fn request_rejected(
    metrics: &Metrics,
    request_id: &str,
    connector: &str,
    kind: &str,
    status: u16,
    code: &str,
) {
    metrics
        .runs
        .with_label_values(&[connector, kind, "client_error"])
        .inc();
    tracing::info!(request_id, connector, status, code, "request rejected");
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

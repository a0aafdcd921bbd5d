//! The message between the run actor and the step actors, and the step's answer.

use std::sync::Arc;
use std::time::Instant;

use actix::Message;
use bytes::Bytes;
use minijinja::Value;

use super::error::StepFailure;
use super::input::RunInput;
use super::timing::StepTiming;

/// Run step `index` of the run's connector, with the results of the steps before it. The
/// step lives only as long as someone waits for its outcome: a run that is dropped (its
/// caller went away) drops its step and the upstream call in flight.
#[derive(Debug, Message)]
#[rtype(result = "StepOutcome")]
pub(crate) struct ExecuteStep {
    /// The run.
    pub run: Arc<RunInput>,
    /// Which step.
    pub index: usize,
    /// `steps` as templates see it: a dict of earlier step results.
    pub steps: Value,
    /// When the run started (step timings are offsets from it).
    pub run_started: Instant,
}

/// A step's result or failure, with its timing either way.
#[derive(Debug)]
pub(crate) struct StepOutcome {
    /// Result or failure.
    pub result: Result<StepResult, StepFailure>,
    /// Where the time went.
    pub timing: StepTiming,
    /// The `for_each` item that failed, if one did.
    pub item: Option<usize>,
}

/// A successful step.
#[derive(Debug, Clone)]
pub(crate) struct StepResult {
    /// Upstream status.
    pub status: u16,
    /// Upstream Content-Type.
    pub content_type: Option<String>,
    /// Body after `response_body` (or the upstream body).
    pub body: Bytes,
    /// `steps.<name>` for later steps: `body`, `status_code`, `headers`, `skipped`, `error`
    /// (and `items`).
    pub value: Value,
    /// Whether this is an answer the run may return: false for a skipped step and for one
    /// that failed with `on_error: "continue"`.
    pub answers: bool,
}

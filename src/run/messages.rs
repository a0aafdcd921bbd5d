//! The message between the run actor and the step actors, and the step's answer.

use std::sync::Arc;

use actix::Message;
use bytes::Bytes;
use minijinja::Value;
use tokio_util::sync::CancellationToken;

use super::error::{Code, StepFailure};
use super::input::RunInput;
use super::timing::StepTiming;

/// Run step `index` of the run's connector, with the results of the steps before it.
#[derive(Debug, Message)]
#[rtype(result = "StepOutcome")]
pub struct ExecuteStep {
    /// The run.
    pub run: Arc<RunInput>,
    /// Which step.
    pub index: usize,
    /// `steps` as templates see it: a dict of earlier step results.
    pub steps: Value,
    /// Cancelled when the run's caller goes away: the step stops where it is.
    pub cancel: CancellationToken,
}

/// A step's result or failure, with its timing either way.
#[derive(Debug)]
pub struct StepOutcome {
    /// Result or failure.
    pub result: Result<StepResult, StepFailure>,
    /// Where the time went.
    pub timing: StepTiming,
}

impl StepOutcome {
    /// The outcome of a step stopped because its run was cancelled (nobody reads it: the
    /// run that asked is gone).
    pub fn cancelled() -> Self {
        StepOutcome {
            result: Err(StepFailure::new(
                Code::UnexpectedError,
                "the run was cancelled",
            )),
            timing: StepTiming::default(),
        }
    }
}

/// A successful step.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Upstream status.
    pub status: u16,
    /// Upstream Content-Type.
    pub content_type: Option<String>,
    /// Body after `response_body` (or the upstream body).
    pub body: Bytes,
    /// `steps.<name>` for later steps: `body`, `status_code`, `headers`.
    pub value: Value,
}

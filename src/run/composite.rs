//! The [`CompositeRunActor`]: one per execution, owned by the request that started it. It
//! sends [`ExecuteStep`] to the worker's [`StepActor`] for each step in turn, keeps each
//! result for the steps after it, stops at the first failure and answers with the last
//! step's response and every step's timing. A simple connector is a run of one step.
//!
//! Because the request owns the run, cancellation follows the caller: when the caller goes
//! away, actix-web drops the request's future and with it the run's [`RunHandle`], which
//! aborts the run's task: the step in flight is dropped with its upstream call once nobody
//! waits for it (see `StepExecution`), no further step starts, and the run is counted once as
//! `cancelled`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix::Addr;
use bytes::Bytes;
use minijinja::Value;

use super::error::{Code, RunError, StepFailure};
use super::input::RunInput;
use super::messages::{ExecuteStep, StepOutcome};
use super::step::StepActor;
use super::timing::StepTiming;
use crate::events::{RunCancelled, RunFinished};
use crate::metrics::Metrics;

/// A successful run: what goes back to the widget.
#[derive(Debug, Clone)]
pub struct RunSuccess {
    /// Status of the last step.
    pub status: u16,
    /// `response_content_type`, or the upstream's Content-Type.
    pub content_type: Option<String>,
    /// The last step's body after `response_body`.
    pub body: Bytes,
}

/// How a run ended, with the timing of every step that ran.
#[derive(Debug)]
pub struct RunOutcome {
    /// Success or the failure.
    pub result: Result<RunSuccess, RunError>,
    /// Steps that ran, in order.
    pub timings: Vec<StepTiming>,
    /// Whole run.
    pub total: Duration,
}

/// Drives one run: step after step, in the order the connector lists them.
pub struct CompositeRunActor {
    input: Arc<RunInput>,
    step_actor: Addr<StepActor>,
    metrics: Arc<Metrics>,
    /// `steps.<name>` of the steps that succeeded so far.
    results: Vec<(String, Value)>,
    timings: Vec<StepTiming>,
    started: Instant,
    finished: bool,
}

impl CompositeRunActor {
    /// A run of `input`'s connector whose steps execute on `step_actor` (this worker's).
    pub fn new(input: Arc<RunInput>, step_actor: Addr<StepActor>, metrics: Arc<Metrics>) -> Self {
        let steps = input.connector.steps.len();
        CompositeRunActor {
            input,
            step_actor,
            metrics,
            results: Vec::with_capacity(steps),
            timings: Vec::with_capacity(steps),
            started: Instant::now(),
            finished: false,
        }
    }

    /// Starts the run on its own task of this worker; the handle gives its outcome and,
    /// dropped before the end, cancels it. The task that awaits the handle is woken once,
    /// when the run ends, not at every step (for the HTTP handler, every wake-up is a pass
    /// of the connection's dispatcher).
    pub(crate) fn start(self) -> RunHandle {
        RunHandle(actix_rt::spawn(self.run()))
    }

    /// Runs every step in order and returns the outcome; the run is counted and, when it
    /// failed, logged once.
    pub async fn run(mut self) -> RunOutcome {
        let input = self.input.clone();
        let steps = &input.connector.steps;
        for (index, step) in steps.iter().enumerate() {
            let outcome = self.dispatch(index).await;
            self.timings.push(outcome.timing);
            match outcome.result {
                Ok(result) if index + 1 < steps.len() => {
                    self.results.push((step.name.clone(), result.value));
                }
                Ok(result) => {
                    let content_type = step.response_content_type.clone().or(result.content_type);
                    return self.finish(Ok(RunSuccess {
                        status: result.status,
                        content_type,
                        body: result.body,
                    }));
                }
                Err(failure) => {
                    let error = self.run_error(failure, index);
                    return self.finish(Err(error));
                }
            }
        }
        let failure = StepFailure::new(Code::UnexpectedError, "the connector has no steps");
        self.finish(Err(RunError {
            failure,
            step: None,
        }))
    }

    /// Sends step `index` to the step actor, with the results so far, and waits for it.
    async fn dispatch(&self, index: usize) -> StepOutcome {
        let message = ExecuteStep {
            run: self.input.clone(),
            index,
            steps: Value::from_pairs(self.results.iter().cloned()),
        };
        match self.step_actor.send(message).await {
            Ok(outcome) => outcome,
            Err(_) => StepOutcome {
                result: Err(StepFailure::new(
                    Code::UnexpectedError,
                    "the step executor stopped unexpectedly",
                )),
                timing: StepTiming::default(),
            },
        }
    }

    fn run_error(&self, failure: StepFailure, index: usize) -> RunError {
        let step = self
            .input
            .is_composite()
            .then(|| (self.input.connector.steps[index].name.clone(), index));
        RunError { failure, step }
    }

    fn finish(mut self, result: Result<RunSuccess, RunError>) -> RunOutcome {
        self.finished = true;
        let total = self.started.elapsed();
        let connector = &self.input.connector;
        let scope = result.as_ref().err().map(RunError::scope);
        RunFinished {
            request_id: &self.input.request_id,
            connector: &connector.permalink,
            kind: connector.kind.as_str(),
            duration: total,
            failure: result.as_ref().err().map(|e| {
                (
                    e.failure.code,
                    scope.as_deref().unwrap_or_default(),
                    e.failure.detail.as_str(),
                )
            }),
            hot: &connector.hot_metrics,
        }
        .emit(&self.metrics);
        RunOutcome {
            result,
            timings: std::mem::take(&mut self.timings),
            total,
        }
    }
}

/// A run started by [`CompositeRunActor::start`]: a future of its outcome that owns the run.
#[derive(Debug)]
pub(crate) struct RunHandle(tokio::task::JoinHandle<RunOutcome>);

impl Future for RunHandle {
    type Output = RunOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RunOutcome> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|_| RunOutcome {
                result: Err(RunError {
                    failure: StepFailure::new(
                        Code::UnexpectedError,
                        "the run stopped before it finished",
                    ),
                    step: None,
                }),
                timings: Vec::new(),
                total: Duration::ZERO,
            })
        })
    }
}

impl Drop for RunHandle {
    /// The caller went away: the run's task is aborted, which drops the run.
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for CompositeRunActor {
    /// A run dropped before it finished was abandoned by its caller.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        RunCancelled {
            request_id: &self.input.request_id,
            connector: &self.input.connector.permalink,
            kind: self.input.connector.kind.as_str(),
            steps_finished: self.timings.len(),
            duration: self.started.elapsed(),
        }
        .emit(&self.metrics);
    }
}

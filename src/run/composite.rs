//! The [`CompositeRunActor`]: one per execution. It sends [`ExecuteStep`] for each step in
//! turn, keeps each result for the steps after it, stops at the first failure and replies
//! with the last step's response and every step's timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, MailboxError, WrapFuture,
};
use bytes::Bytes;
use minijinja::Value;
use tokio::sync::oneshot;

use super::error::{FailureKind, RunError, StepFailure};
use super::input::RunInput;
use super::messages::{ExecuteStep, StepOutcome};
use super::step::StepActor;
use super::timing::StepTiming;

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

/// Drives one run.
pub struct CompositeRunActor {
    input: Arc<RunInput>,
    step_actor: Addr<StepActor>,
    results: Vec<(String, Value)>,
    timings: Vec<StepTiming>,
    reply: Option<oneshot::Sender<RunOutcome>>,
    started: Instant,
}

impl Actor for CompositeRunActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.send_step(0, ctx);
    }
}

impl CompositeRunActor {
    fn send_step(&mut self, index: usize, ctx: &mut Context<Self>) {
        let msg = ExecuteStep {
            run: self.input.clone(),
            index,
            steps: Value::from_pairs(self.results.iter().cloned()),
        };
        let next = self
            .step_actor
            .send(msg)
            .into_actor(self)
            .map(move |outcome, act, ctx| act.on_outcome(index, outcome, ctx));
        ctx.wait(next);
    }

    fn on_outcome(
        &mut self,
        index: usize,
        outcome: Result<StepOutcome, MailboxError>,
        ctx: &mut Context<Self>,
    ) {
        let connector = &self.input.connector;
        let step = &connector.steps[index];
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(_) => {
                let failure = StepFailure::new(
                    FailureKind::Unexpected,
                    "the step executor stopped unexpectedly",
                );
                return self.finish(Err(self.run_error(failure, index)), ctx);
            }
        };
        self.timings.push(outcome.timing);
        match outcome.result {
            Ok(result) if index + 1 < connector.steps.len() => {
                self.results.push((step.name.clone(), result.value));
                self.send_step(index + 1, ctx);
            }
            Ok(result) => {
                let content_type = step.response_content_type.clone().or(result.content_type);
                self.finish(
                    Ok(RunSuccess {
                        status: result.status,
                        content_type,
                        body: result.body,
                    }),
                    ctx,
                );
            }
            Err(failure) => {
                let error = self.run_error(failure, index);
                self.finish(Err(error), ctx);
            }
        }
    }

    fn run_error(&self, failure: StepFailure, index: usize) -> RunError {
        let step = self
            .input
            .is_composite()
            .then(|| (self.input.connector.steps[index].name.clone(), index));
        RunError { failure, step }
    }

    fn finish(&mut self, result: Result<RunSuccess, RunError>, ctx: &mut Context<Self>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(RunOutcome {
                result,
                timings: std::mem::take(&mut self.timings),
                total: self.started.elapsed(),
            });
        }
        ctx.stop();
    }
}

/// Runs `input` to its end on the current worker and returns the outcome.
pub async fn execute(input: Arc<RunInput>, step_actor: Addr<StepActor>) -> RunOutcome {
    let started = Instant::now();
    let steps = input.connector.steps.len();
    let (reply, outcome) = oneshot::channel();
    CompositeRunActor {
        input,
        step_actor,
        results: Vec::with_capacity(steps),
        timings: Vec::with_capacity(steps),
        reply: Some(reply),
        started,
    }
    .start();
    outcome.await.unwrap_or_else(|_| RunOutcome {
        result: Err(RunError {
            failure: StepFailure::new(
                FailureKind::Unexpected,
                "the run stopped before it finished",
            ),
            step: None,
        }),
        timings: Vec::new(),
        total: started.elapsed(),
    })
}

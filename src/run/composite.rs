//! The [`CompositeRunActor`]: one per execution, owned by the request that started it. It
//! sends [`ExecuteStep`] to the worker's [`StepActor`] for each step in turn — or, in
//! parallel mode, for every step whose inputs are ready, several at once — keeps each result
//! for the steps after it, stops at the first failure (a step with `on_error: "continue"`
//! records its failure as a result) and answers with the composite's own `response_body` or
//! the last answering step's response, and every step's timing. A simple connector is a run
//! of one step.
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
use futures_util::future::Either;
use futures_util::stream::{FuturesUnordered, StreamExt};
use minijinja::value::{Enumerator, Object};
use minijinja::Value;

use super::error::{Code, RunError, StepFailure};
use super::input::RunInput;
use super::messages::{ExecuteStep, StepOutcome, StepResult};
use super::quota::TakeRunQuota;
use super::step::{StepActor, StepRunner};
use super::timing::StepTiming;
use crate::events::{RunCancelled, RunFinished};
use crate::metrics::Metrics;
use crate::registry::model::Execution;
use crate::template::context::TemplateContext;

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

/// Drives one run: step after step in the order the connector lists them, or, with
/// `execution: "parallel"`, each step as soon as the steps it needs have finished.
pub struct CompositeRunActor {
    input: Arc<RunInput>,
    step_actor: Addr<StepActor>,
    /// The step actor's own runner, when the caller has it: the steps are then futures of
    /// the run's task rather than messages to the actor (see [`StepRunner`]).
    steps: Option<StepRunner>,
    metrics: Arc<Metrics>,
    /// `steps.<name>` of the steps finished so far, by step index.
    /// (The name is kept as a template string, so `steps` is built without copying it.)
    results: Vec<Option<(Value, Value)>>,
    /// The latest step (by index) that answered, and its answer.
    answer: Option<(usize, StepResult)>,
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
            steps: None,
            metrics,
            results: vec![None; steps],
            answer: None,
            timings: Vec::with_capacity(steps),
            started: Instant::now(),
            finished: false,
        }
    }

    /// Executes the steps with `steps` (the runner of the step actor given to
    /// [`CompositeRunActor::new`]) in the run's own task.
    pub(crate) fn with_runner(mut self, steps: StepRunner) -> Self {
        self.steps = Some(steps);
        self
    }

    /// Starts the run on its own task of this worker; the handle gives its outcome and,
    /// dropped before the end, cancels it. The task that awaits the handle is woken once,
    /// when the run ends, not at every step (for the HTTP handler, every wake-up is a pass
    /// of the connection's dispatcher).
    pub(crate) fn start(self) -> RunHandle {
        if let Some(cx) = &self.input.trace {
            // The run's own task logs with the request's trace id too.
            let trace_id = cx.ids().trace_id;
            return RunHandle(actix_rt::spawn(crate::trace::InTrace::new(
                trace_id,
                self.run(),
            )));
        }
        RunHandle(actix_rt::spawn(self.run()))
    }

    /// Runs every step and returns the outcome; the run is counted and, when it failed,
    /// logged once.
    pub async fn run(mut self) -> RunOutcome {
        let input = self.input.clone();
        let steps = input.connector.steps.len();
        if steps == 0 {
            let failure = StepFailure::new(Code::UnexpectedError, "the connector has no steps");
            return self.finish(Err(RunError {
                failure,
                step: None,
                item: None,
            }));
        }
        if input.connector.rate_limit.is_some() {
            let taken = self
                .step_actor
                .send(TakeRunQuota { run: input.clone() })
                .await
                .unwrap_or_else(|_| {
                    Err(StepFailure::new(
                        Code::UnexpectedError,
                        "the worker's step actor stopped",
                    ))
                });
            if let Err(failure) = taken {
                return self.finish(Err(RunError {
                    failure,
                    step: None,
                    item: None,
                }));
            }
        }
        let ended = match input.connector.execution {
            Execution::Sequential => self.sequential().await,
            Execution::Parallel => self.parallel().await,
        };
        let result = match ended {
            Ok(()) => self.answer(),
            Err(error) => Err(error),
        };
        self.finish(result)
    }

    /// One step after another, in the listed order.
    async fn sequential(&mut self) -> Result<(), RunError> {
        for index in 0..self.input.connector.steps.len() {
            let (index, outcome) = self.dispatch(index).await;
            self.record(index, outcome)?;
        }
        Ok(())
    }

    /// Each step as soon as every step it needs has finished (docs/spec.md §12); the first
    /// failure drops the steps still running (and their upstream calls) and starts no other.
    async fn parallel(&mut self) -> Result<(), RunError> {
        let input = self.input.clone();
        let steps = &input.connector.steps;
        let mut started = vec![false; steps.len()];
        let mut running = FuturesUnordered::new();
        loop {
            for (index, step) in steps.iter().enumerate() {
                let ready = step
                    .control
                    .needs
                    .iter()
                    .all(|&j| self.results[j].is_some());
                if !started[index] && ready {
                    started[index] = true;
                    running.push(self.dispatch(index));
                }
            }
            let Some((index, outcome)) = running.next().await else {
                return Ok(());
            };
            self.record(index, outcome)?;
        }
    }

    /// Keeps a finished step's result for the steps after it, or turns its failure into
    /// the run's.
    fn record(&mut self, index: usize, outcome: StepOutcome) -> Result<(), RunError> {
        self.timings.push(outcome.timing);
        match outcome.result {
            Ok(mut result) => {
                let name = Value::from(self.input.connector.steps[index].name.as_str());
                // The value goes to later steps; the answer keeps only status and body.
                self.results[index] = Some((name, std::mem::take(&mut result.value)));
                if result.answers && self.answer.as_ref().is_none_or(|(i, _)| *i < index) {
                    self.answer = Some((index, result));
                }
                Ok(())
            }
            Err(failure) => Err(self.run_error(failure, index, outcome.item)),
        }
    }

    /// The run's answer: the composite's own `response_body`, or the latest step that
    /// answered (the last one, unless it was skipped or continued after an error); with
    /// no such step, 204 without a body.
    fn answer(&mut self) -> Result<RunSuccess, RunError> {
        let connector = &self.input.connector;
        let own = &connector.answer;
        let answered = self.answer.take();
        let step_content_type = answered.as_ref().and_then(|(index, result)| {
            connector.steps[*index]
                .response_content_type
                .clone()
                .or_else(|| result.content_type.clone())
        });
        if let Some(template) = &own.body {
            let ctx = TemplateContext::value(
                self.input.vars.clone(),
                vec![("steps", self.steps_value())],
            );
            let body = self
                .input
                .registry
                .templates
                .render(template, &ctx)
                .map_err(|e| RunError {
                    failure: StepFailure::from_render(template, &e),
                    step: None,
                    item: None,
                })?;
            return Ok(RunSuccess {
                status: 200,
                content_type: own.content_type.clone().or(step_content_type),
                body: Bytes::from(body),
            });
        }
        Ok(match answered {
            Some((_, result)) => RunSuccess {
                status: result.status,
                content_type: own.content_type.clone().or(step_content_type),
                body: result.body,
            },
            None => RunSuccess {
                status: 204,
                content_type: own.content_type.clone(),
                body: Bytes::new(),
            },
        })
    }

    /// `steps` as templates see it: the finished steps, in the listed order.
    fn steps_value(&self) -> Value {
        Value::from_object(StepsSoFar(self.results.iter().flatten().cloned().collect()))
    }

    /// Sends step `index` to the step actor, with the results so far; the future owns what
    /// it needs, so several can be in flight at once.
    fn dispatch(&self, index: usize) -> impl Future<Output = (usize, StepOutcome)> + 'static {
        let message = ExecuteStep {
            run: self.input.clone(),
            index,
            steps: self.steps_value(),
            run_started: self.started,
        };
        let step = match &self.steps {
            Some(steps) => Either::Left(steps.execute(message)),
            None => Either::Right(self.step_actor.send(message)),
        };
        async move {
            let sent = match step {
                Either::Left(execution) => Ok(execution.await),
                Either::Right(sent) => sent.await,
            };
            let outcome = match sent {
                Ok(outcome) => outcome,
                Err(_) => StepOutcome {
                    result: Err(StepFailure::new(
                        Code::UnexpectedError,
                        "the step executor stopped unexpectedly",
                    )),
                    timing: StepTiming::default(),
                    item: None,
                },
            };
            (index, outcome)
        }
    }

    fn run_error(&self, failure: StepFailure, index: usize, item: Option<usize>) -> RunError {
        let step = self
            .input
            .is_composite()
            .then(|| (self.input.connector.steps[index].name.clone(), index));
        RunError {
            failure,
            step,
            item,
        }
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
        let mut timings = std::mem::take(&mut self.timings);
        // Listed order, whatever order the steps of a parallel run finished in.
        timings.sort_by_key(|t| t.index);
        RunOutcome {
            result,
            timings,
            total,
        }
    }
}

/// `steps` as templates see it: a dict of the finished steps' names to their
/// `steps.<name>` values, in the listed order, as a lookup object over them (built for
/// every step a run starts; a map built with `Value::from_pairs` cost a hashed insert per
/// step, callgrind: ~500 instructions per step of scenario A).
#[derive(Debug)]
struct StepsSoFar(Vec<(Value, Value)>);

impl Object for StepsSoFar {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(name, _)| name.as_str() == Some(key))
            .map(|(_, value)| value.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(name, _)| name.clone()).collect())
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
                    item: None,
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

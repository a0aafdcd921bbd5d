//! The [`StepActor`]: renders one step's request, authenticates it, calls the upstream,
//! and applies `response_body`. One per worker thread; steps of many runs overlap in it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Context, Handler};
use awc::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use awc::http::Method;
use bytes::Bytes;
use futures_util::StreamExt;
use minijinja::value::ValueKind;
use minijinja::Value;
use tracing::Instrument;

mod view;

use super::cache::{CacheStatus, Lookup, ResponseCache};
use super::error::{Code, StepFailure};
use super::messages::{ExecuteStep, StepOutcome, StepResult};
use super::timing::{ItemTiming, StepState, StepTiming};
use super::SharedRunState;
use crate::auth::{self, AuthEnv, Credential, Prepared};
use crate::events::{CacheLookedUp, StepFinished, StepRetried, UpstreamRetried};
use crate::registry::compiled::{ForEach, StepRetry};
use crate::registry::model::HttpMethod;
use crate::registry::Step;
use crate::template::context::{
    body_value, continued_step_value, for_each_step_value, headers_value, response_value,
    skipped_step_value, step_value, TemplateContext,
};
use crate::template::TemplateId;
use crate::upstream::origin::rendered_url_matches;
use crate::upstream::transport::MockKey;
use crate::upstream::{send_with_retry, Caller, OutboundRequest, Transport, UpstreamResponse};

/// Executes steps for the runs of one worker thread, with that thread's upstream client.
pub struct StepActor {
    steps: StepRunner,
}

impl StepActor {
    /// The process-wide state its steps share.
    pub(crate) fn shared(&self) -> &Arc<SharedRunState> {
        &self.steps.shared
    }

    /// A step actor sending through `client` (this thread's awc client, or a test's mocks)
    /// with the process-wide `shared` state.
    pub fn new(client: impl Into<Transport>, shared: Arc<SharedRunState>) -> Self {
        StepActor {
            steps: StepRunner::new(client, shared),
        }
    }

    /// A step actor that executes its steps with `steps` (which a run may also use
    /// directly, see [`StepRunner`]).
    pub fn with_runner(steps: StepRunner) -> Self {
        StepActor { steps }
    }
}

impl Actor for StepActor {
    type Context = Context<Self>;
}

impl Handler<ExecuteStep> for StepActor {
    type Result = StepExecution;

    /// Each step runs as its own future, so a slow upstream never holds up other runs.
    fn handle(&mut self, msg: ExecuteStep, _ctx: &mut Self::Context) -> Self::Result {
        self.steps.execute(msg)
    }
}

/// What executes a worker's steps: its upstream client (or a test's mocks) and the
/// process-wide state. The [`StepActor`] holds one; a run handed one (the server's runs)
/// executes its steps as futures of its own task, without a message to the actor and a task
/// per step (callgrind, scenario A: about 4,000 instructions per run).
#[derive(Clone)]
pub struct StepRunner {
    client: Transport,
    shared: Arc<SharedRunState>,
}

impl std::fmt::Debug for StepRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRunner")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl StepRunner {
    /// Steps sent through `client` (this thread's awc client, or a test's mocks) with the
    /// process-wide `shared` state.
    pub fn new(client: impl Into<Transport>, shared: Arc<SharedRunState>) -> Self {
        StepRunner {
            client: client.into(),
            shared,
        }
    }

    /// Step `msg.index` of `msg.run`, as a future that owns what it needs: dropped, it drops
    /// the step and its upstream call in flight.
    pub(crate) fn execute(&self, msg: ExecuteStep) -> StepExecution {
        let client = self.client.clone();
        let shared = self.shared.clone();
        // Debug level: at the default level a step costs no span; failures are logged at info
        // with the request id, connector and step as fields.
        let run = &msg.run;
        let step = &run.connector.steps[msg.index].name;
        // A traced run's steps run in the run's own info-level span, whose fields carry the
        // request id, connector and trace id: their log lines carry them, and no span is
        // formatted per step (step names are fields of the step events themselves).
        let span = match &run.log_span {
            None => tracing::debug_span!(
                "step",
                request_id = %run.request_id,
                connector = %run.connector.permalink,
                step = %step,
            ),
            Some(span) => span.clone(),
        };
        StepExecution(Box::pin(
            async move { execute_step(&client, &shared, msg).await }.instrument(span),
        ))
    }
}

/// One step's execution: the step actor's answer to [`ExecuteStep`] (spawned on the worker,
/// and dropped — with the upstream call in flight — as soon as nobody waits for its outcome
/// any more: the run that sent it was cancelled), or a future the run awaits itself.
pub(crate) struct StepExecution(Pin<Box<dyn Future<Output = StepOutcome>>>);

impl Future for StepExecution {
    type Output = StepOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<StepOutcome> {
        self.0.as_mut().poll(cx)
    }
}

impl MessageResponse<StepActor, ExecuteStep> for StepExecution {
    fn handle(self, _ctx: &mut Context<StepActor>, tx: Option<OneshotSender<StepOutcome>>) {
        actix_rt::spawn(async move {
            let Some(mut tx) = tx else {
                return;
            };
            tokio::select! {
                biased;
                outcome = self.0 => {
                    let _ = tx.send(outcome);
                }
                () = tx.closed() => {}
            }
        });
    }
}

/// Checks that a rendered URL stays on the origin fixed when the registry loaded.
fn check_origin(url: &str, origin: &str, field: &str) -> Result<(), StepFailure> {
    if rendered_url_matches(url, origin) {
        Ok(())
    } else {
        Err(StepFailure::new(
            Code::TemplateRenderingError,
            format!("{field}: the rendered URL does not start with its configured scheme and host"),
        ))
    }
}

fn render(env: &StepEnv<'_>, id: &TemplateId) -> Result<String, StepFailure> {
    env.run
        .registry
        .templates
        .render(id, &env.template_ctx)
        .map_err(|e| StepFailure::from_render(id, &e))
}

/// The rendered `value` of template `id` as a header value; the error names the template's
/// field (found only when the value is refused: it costs a search of the template's name).
fn header_value(id: &TemplateId, value: String) -> Result<HeaderValue, StepFailure> {
    // The rendered string becomes the value as it is (checked, not copied).
    HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| {
        StepFailure::new(
            Code::TemplateRenderingError,
            format!("{}: renders to a value with a line break, NUL or other control character, which cannot be sent as a header", id.field_path()),
        )
    })
}

/// What rendering one step (or one of its `for_each` items) needs: its run, its definition
/// and its template context.
struct StepEnv<'a> {
    run: &'a super::RunInput,
    step: &'a Step,
    /// The per-step variables: `steps` (composites), `item` and `item_index` (an item).
    vars: Vec<(&'static str, Value)>,
    /// The template context of the step's request templates (the run's variables and `vars`).
    template_ctx: Value,
    /// Whether `steps.<name>` of this call is read: by a later step, the composite's own
    /// `response_body`, or its `for_each` step (an item's result).
    keep_value: bool,
    /// The step's span, when the run is traced (its calls' CLIENT spans go under it).
    trace: Option<crate::trace::Context>,
}

impl<'a> StepEnv<'a> {
    fn new(run: &'a super::RunInput, step: &'a Step, vars: Vec<(&'static str, Value)>) -> Self {
        let keep_value =
            step.index + 1 < run.connector.steps.len() || run.connector.answer.body.is_some();
        StepEnv {
            run,
            step,
            template_ctx: TemplateContext::value(run.vars.clone(), vars.clone()),
            vars,
            keep_value,
            trace: None,
        }
    }

    /// The environment of item `index` of a `for_each` step.
    fn for_item(&self, item: Value, index: usize) -> StepEnv<'a> {
        let mut vars = self.vars.clone();
        vars.push(("item", item));
        vars.push(("item_index", Value::from(index)));
        let mut env = StepEnv::new(self.run, self.step, vars);
        env.keep_value = true;
        env.trace = self.trace.clone();
        env
    }
}

/// The request before authentication is added.
#[derive(Clone)]
struct RenderedRequest {
    url: String,
    query: Vec<(String, String)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
}

fn render_request(env: &StepEnv<'_>) -> Result<RenderedRequest, StepFailure> {
    let step = env.step;
    let mut url = render(env, &step.url)?;
    check_origin(&url, &step.origin, "url")?;
    if let Some(hash) = url.find('#') {
        url.truncate(hash);
    }
    let mut query = Vec::with_capacity(step.query.len());
    for param in &step.query {
        let value = match env
            .run
            .overrides
            .query(&param.key)
            .filter(|_| param.overridable)
        {
            Some(v) => v.to_string(),
            None => render(env, &param.value)?,
        };
        query.push((param.key.clone(), value));
    }
    let mut headers = Vec::with_capacity(step.headers.len() + 1);
    for param in &step.headers {
        let Some((name, literal)) = &param.header else {
            return Err(StepFailure::new(
                Code::UnexpectedError,
                "invalid header name",
            ));
        };
        let value = match (
            env.run
                .overrides
                .header(&param.key)
                .filter(|_| param.overridable),
            literal,
        ) {
            (Some(v), _) => v.clone(),
            (None, Some(literal)) => literal.clone(),
            (None, None) => header_value(&param.value, render(env, &param.value)?)?,
        };
        headers.push((name.clone(), value));
    }
    let mut body = step
        .request_body
        .as_ref()
        .map(|id| render(env, id).map(Bytes::from))
        .transpose()?;
    if let Some((forwarded, content_type)) = &env.run.forwarded_body {
        body = Some(forwarded.clone());
        // The caller's Content-Type goes with its body, unless the registry sets one.
        if let Some(content_type) = content_type {
            if !headers.iter().any(|(n, _)| n == CONTENT_TYPE) {
                headers.push((CONTENT_TYPE, content_type.clone()));
            }
        }
    }
    Ok(RenderedRequest {
        url,
        query,
        headers,
        body,
    })
}

fn method(m: HttpMethod) -> Method {
    match m {
        HttpMethod::GET => Method::GET,
        HttpMethod::POST => Method::POST,
        HttpMethod::PUT => Method::PUT,
        HttpMethod::PATCH => Method::PATCH,
        HttpMethod::DELETE => Method::DELETE,
        HttpMethod::HEAD => Method::HEAD,
        HttpMethod::OPTIONS => Method::OPTIONS,
    }
}

/// The request to send, from the rendered parts (moved, not copied); its credential is
/// added once the response cache has been asked ([`add_credential`]).
fn outbound(step: &Step, rendered: RenderedRequest) -> OutboundRequest {
    let RenderedRequest {
        mut url,
        query,
        headers,
        body,
    } = rendered;
    if !query.is_empty() {
        let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&encoded);
    }
    OutboundRequest {
        method: method(step.method),
        url,
        headers,
        body,
    }
}

/// The per-step variables: `steps` (composites only).
fn step_vars(run: &super::RunInput, steps: Value) -> Vec<(&'static str, Value)> {
    let mut vars = Vec::with_capacity(2);
    if run.is_composite() {
        vars.push(("steps", steps));
    }
    vars
}

fn host_of(origin: &str) -> String {
    origin
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(origin)
        .to_string()
}

async fn execute_step(
    client: &Transport,
    shared: &SharedRunState,
    msg: ExecuteStep,
) -> StepOutcome {
    let started = Instant::now();
    let run = &*msg.run;
    let step = &run.connector.steps[msg.index];
    let mut timing = StepTiming {
        name: step.name.clone(),
        index: msg.index,
        // Only a simple connector's timing headers name the host.
        host: if run.is_composite() {
            String::new()
        } else {
            host_of(&step.origin)
        },
        start: started.saturating_duration_since(msg.run_started),
        ..StepTiming::default()
    };
    let mut env = StepEnv::new(run, step, step_vars(run, msg.steps));
    if let (Some(tracing), Some(run_trace)) = (&shared.tracing, &run.trace) {
        env.trace = Some(tracing.step(run_trace, &run.connector.permalink, &step.name, msg.index));
    }
    let ran = if step.control.when.is_none()
        && step.control.for_each.is_none()
        && step.rate_limit.is_none()
    {
        match run_call(client, shared, &env, &mut timing, started).await {
            Ok(result) => Ran::Answered(result),
            Err(failure) => Ran::Failed(failure, None),
        }
    } else {
        // Boxed: a fan-out's state is large, and a plain step should not carry (and copy) it.
        Box::pin(controlled(
            client,
            shared,
            &env,
            &mut timing,
            started,
            msg.run_started,
        ))
        .await
    };
    timing.total = started.elapsed();
    let (result, item) = match ran {
        Ran::Answered(result) => (Ok(result), None),
        Ran::Skipped => {
            timing.state = StepState::Skipped;
            (
                Ok(StepResult {
                    status: 204,
                    content_type: None,
                    body: Bytes::new(),
                    value: skipped_step_value(),
                    answers: false,
                }),
                None,
            )
        }
        Ran::Failed(failure, item) => {
            if step.control.continue_on_error && failure.is_call_failure() {
                timing.state = StepState::Continued;
            } else {
                timing.state = StepState::Failed;
            }
            (Err(failure), item)
        }
    };
    StepFinished {
        request_id: &run.request_id,
        connector: &run.connector.permalink,
        step: &step.name,
        index: msg.index,
        status: timing.status_code,
        duration: timing.total,
        upstream: timing.external,
        failure: result.as_ref().err().map(|f| (f.code, f.detail.as_str())),
        state: timing.state.as_str(),
        hot: &step.hot_metrics,
        ok_state: &step.ok_state_metric,
    }
    .emit(&shared.metrics);
    if let Some(cx) = &env.trace {
        end_step_span(cx, &timing, result.as_ref().err());
    }
    let result = match result {
        Err(failure) if timing.state == StepState::Continued => Ok(StepResult {
            status: timing.status_code.unwrap_or(502),
            content_type: None,
            body: Bytes::new(),
            value: continued_step_value(failure.code.as_str(), timing.status_code, &failure.detail),
            answers: false,
        }),
        other => other,
    };
    StepOutcome {
        result,
        timing,
        item,
    }
}

/// Ends a step's span with what the step came to: its state, cache use, tries and items
/// as attributes, its failure's code as the error.
fn end_step_span(cx: &crate::trace::Context, timing: &StepTiming, failure: Option<&StepFailure>) {
    crate::trace::attribute(cx, "connector.step.state", timing.state.as_str());
    if timing.cache.involved() {
        crate::trace::attribute(cx, "connector.step.cache", timing.cache.as_label());
    }
    if timing.attempts > 1 {
        crate::trace::attribute(cx, "connector.step.attempts", i64::from(timing.attempts));
    }
    if let Some(items) = &timing.items {
        crate::trace::attribute(cx, "connector.step.items", items.len() as i64);
    }
    let error = failure
        .filter(|_| timing.state == StepState::Failed)
        .map(|f| f.code.as_str());
    crate::trace::end(cx, timing.status_code, error);
}

/// What a step came to.
enum Ran {
    /// It answered (a `for_each` step: every item did).
    Answered(StepResult),
    /// Its `when` was false.
    Skipped,
    /// It failed (at the `for_each` item given).
    Failed(StepFailure, Option<usize>),
}

/// A step with a `when` or a `for_each` (docs/spec.md §12).
async fn controlled(
    client: &Transport,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    timing: &mut StepTiming,
    started: Instant,
    run_started: Instant,
) -> Ran {
    let control = &env.step.control;
    let templates = &env.run.registry.templates;
    if let Some(when) = &control.when {
        match templates.evaluate(when, &env.template_ctx) {
            Ok(value) if value.is_true() => {}
            Ok(_) => return Ran::Skipped,
            Err(e) => return Ran::Failed(StepFailure::from_render(when, &e), None),
        }
    }
    let Some(for_each) = &control.for_each else {
        if let Err(failure) = step_quota(shared, env, 1).await {
            return Ran::Failed(failure, None);
        }
        return match run_call(client, shared, env, timing, started).await {
            Ok(result) => Ran::Answered(result),
            Err(failure) => Ran::Failed(failure, None),
        };
    };
    let items = match fan_out_list(shared, env, for_each) {
        Ok(items) => items,
        Err(failure) => return Ran::Failed(failure, None),
    };
    let count = items.len();
    if let Err(failure) = step_quota(shared, env, count as u32).await {
        return Ran::Failed(failure, None);
    }
    let calls = items.into_iter().enumerate().map(|(index, item)| {
        let env = env.for_item(item, index);
        async move {
            let started = Instant::now();
            let mut item_timing = StepTiming::default();
            let result = run_call(client, shared, &env, &mut item_timing, started).await;
            let timing = ItemTiming {
                index,
                start: started.saturating_duration_since(run_started),
                total: started.elapsed(),
                status_code: item_timing.status_code,
            };
            (index, result, timing)
        }
    });
    // At most `max_concurrency` items in flight; the first failure drops the others.
    let mut running = futures_util::stream::iter(calls).buffer_unordered(for_each.max_concurrency);
    let mut results: Vec<Option<StepResult>> = vec![None; count];
    let mut item_timings = Vec::with_capacity(count);
    // The items' bodies together stay under the cap of one upstream body, so a fan-out
    // holds no more than one step could.
    let max_bytes = shared.settings.max_response_bytes;
    let mut total_bytes = 0usize;
    while let Some((index, result, item_timing)) = running.next().await {
        let status = item_timing.status_code;
        item_timings.push(item_timing);
        let result = result.and_then(|result| {
            total_bytes += result.body.len();
            if total_bytes > max_bytes {
                return Err(StepFailure::new(
                    Code::DownstreamResponseTooLarge,
                    format!("for_each: the items' bodies together are larger than the {max_bytes}-byte limit"),
                ));
            }
            Ok(result)
        });
        match result {
            Ok(result) => results[index] = Some(result),
            Err(failure) => {
                item_timings.sort_by_key(|t| t.index);
                timing.items = Some(item_timings);
                timing.status_code = status;
                return Ran::Failed(failure, Some(index));
            }
        }
    }
    item_timings.sort_by_key(|t| t.index);
    timing.items = Some(item_timings);
    timing.status_code = Some(200);
    let results: Vec<StepResult> = results.into_iter().flatten().collect();
    let body = json_array_of_bodies(&results);
    let value = for_each_step_value(&body, results.into_iter().map(|r| r.value).collect());
    Ran::Answered(StepResult {
        status: 200,
        content_type: Some("application/json".into()),
        body: Bytes::from(body),
        value,
        answers: true,
    })
}

/// Takes `cost` calls of the step's `rate_limit`, if it has one.
async fn step_quota(
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    cost: u32,
) -> Result<(), StepFailure> {
    let Some(limit) = &env.step.rate_limit else {
        return Ok(());
    };
    super::quota::take(
        shared,
        &env.run.registry.templates,
        &env.template_ctx,
        &env.run.connector.permalink,
        &env.step.name,
        limit,
        cost,
    )
    .await
}

/// The items of a `for_each` step: its expression's list, at most `--max-fanout` long.
fn fan_out_list(
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    for_each: &ForEach,
) -> Result<Vec<Value>, StepFailure> {
    let list = env
        .run
        .registry
        .templates
        .evaluate(&for_each.list, &env.template_ctx)
        .map_err(|e| StepFailure::from_render(&for_each.list, &e))?;
    let max = shared.settings.max_fanout;
    let too_many = |count: String| {
        StepFailure::new(
            Code::FanOutTooLarge,
            format!("for_each: yields {count} items, more than --max-fanout ({max})"),
        )
    };
    match list.kind() {
        ValueKind::Seq | ValueKind::Iterable => {}
        kind => {
            return Err(StepFailure::new(
                Code::TemplateRenderingError,
                format!("for_each: yields {}, not a list", kind_article(kind)),
            ))
        }
    }
    if let Some(len) = list.len().filter(|len| *len > max) {
        return Err(too_many(len.to_string()));
    }
    let items: Vec<Value> = list
        .try_iter()
        .map_err(|_| {
            StepFailure::new(
                Code::TemplateRenderingError,
                "for_each: the list cannot be iterated",
            )
        })?
        .take(max + 1)
        .collect();
    if items.len() > max {
        return Err(too_many(format!("more than {max}")));
    }
    Ok(items)
}

/// `a string`, `a map`, ... for a for_each error.
fn kind_article(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::String => "a string",
        ValueKind::Map => "a dict",
        ValueKind::Number => "a number",
        ValueKind::Bool => "a boolean",
        ValueKind::None => "none",
        ValueKind::Undefined => "an undefined value",
        ValueKind::Bytes => "bytes",
        _ => "a value",
    }
}

/// The text of a JSON array of the items' bodies: each as JSON when it parses as JSON, else
/// as a JSON string (none for a binary body).
fn json_array_of_bodies(results: &[StepResult]) -> String {
    let mut out =
        String::with_capacity(2 + results.iter().map(|r| r.body.len() + 1).sum::<usize>());
    out.push('[');
    for (i, result) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match std::str::from_utf8(&result.body) {
            Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                out.push_str(text.trim())
            }
            Ok(text) => out.push_str(&serde_json::Value::from(text).to_string()),
            Err(_) => out.push_str("null"),
        }
    }
    out.push(']');
    out
}

/// One call of a step (or of one `for_each` item) under the step's time limit: the whole
/// limit of `timeout_ms`, or `--step-timeout-ms` for a step that retries, bounds the token
/// fetch, every try and every wait between them.
async fn run_call(
    client: &Transport,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    timing: &mut StepTiming,
    started: Instant,
) -> Result<StepResult, StepFailure> {
    let control = &env.step.control;
    let limit = control
        .timeout
        .or_else(|| control.retry.as_ref().map(|_| shared.settings.step_timeout));
    let Some(limit) = limit else {
        return run_step(client, shared, env, timing, started, None).await;
    };
    // Boxed, as the timer is: a step without a limit of its own does not carry them.
    Box::pin(limited(client, shared, env, timing, started, limit)).await
}

/// [`run_call`] under the step's own `limit`.
async fn limited(
    client: &Transport,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    timing: &mut StepTiming,
    started: Instant,
    limit: Duration,
) -> Result<StepResult, StepFailure> {
    let control = &env.step.control;
    let deadline = started + limit;
    let call = run_step(client, shared, env, timing, started, Some(deadline));
    let which = if control.timeout.is_some() {
        "its timeout_ms"
    } else {
        "--step-timeout-ms"
    };
    let passed = || {
        StepFailure::new(
            Code::DownstreamTimeout,
            format!(
                "the step did not finish within {which} ({} ms)",
                limit.as_millis()
            ),
        )
    };
    match actix_rt::time::timeout(limit, call).await {
        // A call cut short at the step's limit says so, not the call's own remainder.
        Err(_) => Err(passed()),
        Ok(Err(failure))
            if failure.code == Code::DownstreamTimeout
                && Instant::now() + Duration::from_millis(5) >= deadline =>
        {
            Err(passed())
        }
        Ok(result) => result,
    }
}

/// The mock that answers the step under `connector-runtime test`: the step's name, or a
/// simple connector's permalink (docs/spec.md §14).
fn mock_name<'a>(env: &'a StepEnv<'_>) -> &'a str {
    if env.run.is_composite() {
        &env.step.name
    } else {
        &env.run.connector.permalink
    }
}

/// What authentication needs of the step.
fn auth_env<'a>(
    client: &'a Transport,
    shared: &'a SharedRunState,
    env: &'a StepEnv<'_>,
) -> AuthEnv<'a> {
    AuthEnv {
        templates: &env.run.registry.templates,
        ctx: &env.template_ctx,
        client,
        mock_name: mock_name(env),
        tokens: &shared.tokens,
        token_timeout: shared.settings.token_timeout,
        max_response_bytes: shared.settings.max_response_bytes,
        metrics: &shared.metrics,
        trace: trace_parent(shared, env),
    }
}

/// Where the step's upstream calls are traced, if they are.
fn trace_parent<'a>(shared: &'a SharedRunState, env: &'a StepEnv<'_>) -> crate::trace::Parent<'a> {
    shared.tracing.as_deref().zip(env.trace.as_ref())
}

/// The step's authentication with its config rendered (nothing fetched or signed yet).
fn prepare_auth(
    client: &Transport,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
) -> Result<Option<Prepared>, StepFailure> {
    env.step
        .auth
        .as_ref()
        .map(|auth| auth::prepare(auth, &auth_env(client, shared, env)))
        .transpose()
}

/// Adds `credential` to `request`: a header (replacing one of the same name) or a query
/// parameter after the others.
fn add_credential(request: &mut OutboundRequest, credential: &Credential) {
    match credential {
        Credential::Header(name, value) => {
            request.headers.retain(|(n, _)| n != name);
            request.headers.push((name.clone(), value.clone()));
        }
        Credential::Query(key, value) => {
            let encoded = serde_urlencoded::to_string([(key, value)]).unwrap_or_default();
            request
                .url
                .push(if request.url.contains('?') { '&' } else { '?' });
            request.url.push_str(&encoded);
        }
    }
}

/// One upstream call under the step's time limit and size cap. Connection failures of
/// idempotent requests are retried within that same time limit (`--upstream-retries`); each
/// retry is logged and counted in `connector_upstream_retries_total`.
async fn call_upstream(
    client: &Transport,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    request: &OutboundRequest,
    deadline: Option<Instant>,
) -> Result<UpstreamResponse, StepFailure> {
    let connector = env.run.connector.permalink.as_str();
    let step = env.step.name.as_str();
    // The step's own limit replaces --step-timeout-ms, when it has one.
    let timeout = match deadline {
        Some(deadline) => deadline.saturating_duration_since(Instant::now()),
        None => shared.settings.step_timeout,
    };
    send_with_retry(
        client,
        Caller {
            key: MockKey {
                name: mock_name(env),
                token: false,
            },
            trace: trace_parent(shared, env),
        },
        request,
        timeout,
        shared.settings.max_response_bytes,
        shared.settings.retry,
        |retry, error| {
            UpstreamRetried {
                request_id: &env.run.request_id,
                connector,
                step,
                retry,
                detail: &error.to_string(),
            }
            .emit(&shared.metrics);
        },
    )
    .await
    .map_err(StepFailure::from)
}

async fn run_step(
    client: &Transport,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    timing: &mut StepTiming,
    started: Instant,
    deadline: Option<Instant>,
) -> Result<StepResult, StepFailure> {
    let step = env.step;
    let rendered = render_request(env)?;
    let prepared = prepare_auth(client, shared, env)?;
    if let Some(log) = &env.run.debug {
        view::record(log, client, shared, env);
    }
    let request = outbound(step, rendered);
    let exchange = Exchange {
        client,
        shared,
        env,
        prepared: prepared.as_ref(),
        deadline,
        try_deadline: std::cell::Cell::new(deadline),
    };
    let response = match &step.control.retry {
        None => {
            timing.attempts = 1;
            exchange.fetch(&request, timing, started).await?
        }
        // Boxed: a step without `retry` does not carry the retry loop's state.
        Some(retry) => Box::pin(exchange.fetch_retrying(&request, retry, timing, started)).await?,
    };
    timing.status_code = Some(response.status);
    if response.status >= 400 {
        return Err(StepFailure::http(response.status, "the upstream"));
    }
    let transform_started = Instant::now();
    let content_type = response.content_type().map(str::to_string);
    let status = response.status;
    let headers = headers_value(response.headers);
    // `steps.<name>` is built only when something reads it (never for the last step of a
    // plain chain).
    let keep_value = env.keep_value;
    let (body, value) = match &step.response_body {
        Some(id) => {
            let response_ctx = response_value(body_value(&response.body), status, headers.clone());
            let mut vars = env.vars.clone();
            vars.push(("response", response_ctx));
            let ctx = TemplateContext::value(env.run.vars.clone(), vars);
            let rendered = env.run.registry.templates.render(id, &ctx).map_err(|e| {
                let mut failure = StepFailure::from_render(id, &e);
                if !env.run.is_composite() && failure.code == Code::TemplateRenderingError {
                    failure.code = Code::ResponseTemplateRenderingError;
                }
                failure
            })?;
            let value =
                keep_value.then(|| step_value(Value::from(rendered.as_str()), status, headers));
            (Bytes::from(rendered), value)
        }
        None => {
            let value = keep_value.then(|| step_value(body_value(&response.body), status, headers));
            (response.body, value)
        }
    };
    timing.transform = transform_started.elapsed();
    Ok(StepResult {
        status,
        content_type,
        body,
        value: value.unwrap_or_default(),
        answers: true,
    })
}

/// Why `result` is tried again under `retry`, if it is: `status`, `network` or `timeout`.
fn retry_reason(
    retry: &StepRetry,
    result: &Result<UpstreamResponse, StepFailure>,
) -> Option<&'static str> {
    match result {
        Ok(response) => retry
            .statuses
            .contains(&response.status)
            .then_some("status"),
        Err(f) if f.code == Code::DownstreamNetworkError && retry.network => Some("network"),
        Err(f) if f.code == Code::DownstreamTimeout && retry.timeout => Some("timeout"),
        Err(_) => None,
    }
}

/// The wait before try `attempt + 1`: `backoff · 2^(attempt-1)`, with jitter (50-100%).
fn backoff(retry: &StepRetry, attempt: u32) -> Duration {
    let full = retry
        .backoff
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(10));
    full.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// The wait a response's `Retry-After` asks for: seconds or an HTTP date.
fn retry_after(response: &UpstreamResponse) -> Option<Duration> {
    let value = response.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// One step's exchange with its upstream: authentication, the call (retried once with a
/// fresh token after a 401), and the response cache around them.
struct Exchange<'a> {
    client: &'a Transport,
    shared: &'a SharedRunState,
    env: &'a StepEnv<'a>,
    prepared: Option<&'a Prepared>,
    /// The end of the step's own time limit, when it has one (`timeout_ms`, `retry`).
    deadline: Option<Instant>,
    /// The end of the try in flight: the step's limit, or with `retry` an equal share of
    /// what is left of it for each try left, so a try that hangs leaves time to retry.
    try_deadline: std::cell::Cell<Option<Instant>>,
}

impl Exchange<'_> {
    /// One try: through the response cache when the step's answers are cached.
    async fn fetch(
        &self,
        request: &OutboundRequest,
        timing: &mut StepTiming,
        started: Instant,
    ) -> Result<UpstreamResponse, StepFailure> {
        if !self.env.step.cache.enabled {
            return self.send(request, &[], timing, started).await;
        }
        // Boxed: a step whose answers are not cached does not carry (and copy) its state.
        let (response, status) = Box::pin(self.cached(request, timing, started)).await?;
        timing.cache = status;
        CacheLookedUp {
            connector: &self.env.run.connector.permalink,
            result: status.as_label(),
            hot: &self.env.run.connector.cache_metrics,
        }
        .emit(&self.shared.metrics);
        Ok(response)
    }

    /// [`Exchange::fetch`] tried again as `retry` says (docs/spec.md §12): after the
    /// failures it names, with exponential backoff or the upstream's `Retry-After`, while
    /// the wait still ends before the step's time limit.
    async fn fetch_retrying(
        &self,
        request: &OutboundRequest,
        retry: &StepRetry,
        timing: &mut StepTiming,
        started: Instant,
    ) -> Result<UpstreamResponse, StepFailure> {
        let mut attempt = 1;
        loop {
            if let Some(deadline) = self.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let tries_left = retry.attempts.saturating_sub(attempt) + 1;
                self.try_deadline
                    .set(Some(Instant::now() + left / tries_left));
            }
            let result = self.fetch(request, timing, started).await;
            timing.attempts = attempt;
            let Some(reason) = retry_reason(retry, &result).filter(|_| attempt < retry.attempts)
            else {
                return result;
            };
            let wait = result
                .as_ref()
                .ok()
                .and_then(retry_after)
                .unwrap_or_else(|| backoff(retry, attempt));
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() + wait >= deadline)
            {
                return result;
            }
            StepRetried {
                request_id: &self.env.run.request_id,
                connector: &self.env.run.connector.permalink,
                step: &self.env.step.name,
                attempt,
                reason,
                wait,
            }
            .emit(&self.shared.metrics);
            actix_rt::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Authenticates `request`, adds `extra` headers and sends it. Without a credential or
    /// extra headers the request is sent as it is (not copied).
    async fn send(
        &self,
        request: &OutboundRequest,
        extra: &[(HeaderName, HeaderValue)],
        timing: &mut StepTiming,
        started: Instant,
    ) -> Result<UpstreamResponse, StepFailure> {
        let auth_env = auth_env(self.client, self.shared, self.env);
        // Boxed: a credential's fetch (a token call, the shared token cache) is most of a
        // send's state, and a step without authentication should not carry (and copy) it.
        let applied = match self.prepared {
            Some(prepared) => Some(Box::pin(prepared.apply(&auth_env)).await?),
            None => None,
        };
        let with = |credential: Option<&Credential>| {
            let mut request = request.clone();
            if let Some(credential) = credential {
                add_credential(&mut request, credential);
            }
            request.headers.extend(extra.iter().cloned());
            request
        };
        let sent: Cow<'_, OutboundRequest> = match &applied {
            None if extra.is_empty() => Cow::Borrowed(request),
            applied => Cow::Owned(with(applied.as_ref().map(|a| &a.credential))),
        };
        if timing.setup.is_zero() {
            // Until the first call: a retry's wait is not setup.
            timing.setup = started.elapsed();
        }
        let upstream_started = Instant::now();
        let exchange = async {
            let mut response = call_upstream(
                self.client,
                self.shared,
                self.env,
                &sent,
                self.try_deadline.get(),
            )
            .await?;
            if response.status == 401 {
                // A rejected OAuth token is dropped and the step retried once with a fresh one.
                let token = applied.as_ref().and_then(|a| a.token.clone());
                if let (Some((key, token)), Some(prepared)) = (token, self.prepared) {
                    Box::pin(self.shared.tokens.invalidate(&key, &token)).await;
                    let fresh = Box::pin(prepared.apply(&auth_env)).await?;
                    let retry = with(Some(&fresh.credential));
                    response = call_upstream(
                        self.client,
                        self.shared,
                        self.env,
                        &retry,
                        self.try_deadline.get(),
                    )
                    .await?;
                }
            }
            Ok::<_, StepFailure>(response)
        }
        .await;
        // Timed whether or not the exchange succeeded: a timeout or network failure spent
        // its time upstream, and X-Connector-Timing must not report that wait as internal.
        timing.external += upstream_started.elapsed();
        exchange
    }

    /// [`Exchange::send`] through the response cache (docs/spec.md §10): a fresh stored
    /// answer is served without authenticating, a stale one revalidated, a miss fetched
    /// once for every caller waiting on the same key. The cache sees `request` without its
    /// credential (the key holds the credential's identity).
    async fn cached(
        &self,
        request: &OutboundRequest,
        timing: &mut StepTiming,
        started: Instant,
    ) -> Result<(UpstreamResponse, CacheStatus), StepFailure> {
        let cache = &self.shared.response_cache;
        let step = self.env.step;
        let forced = step.cache.forced_ttl;
        let identity = self.prepared.map(Prepared::identity).unwrap_or_default();
        let authorization = self
            .prepared
            .is_some_and(Prepared::sends_authorization_header);
        let key = ResponseCache::key(
            &self.env.run.connector.permalink,
            step.index,
            request,
            &identity,
        );
        let mut lookup = cache.lookup(&key, request, authorization);
        let _flight = if matches!(lookup, Lookup::Miss) {
            let flight = cache.lead_or_wait(&key).await;
            if flight.is_some() && cache.load_from_cluster(&key).await {
                // Another replica stored it.
                lookup = cache.lookup(&key, request, authorization);
            }
            if flight.is_none() {
                // Another caller fetched it: its answer, if it could be stored.
                lookup = cache.lookup(&key, request, authorization);
                if !matches!(lookup, Lookup::Fresh(_)) {
                    lookup = Lookup::Pass;
                }
            }
            flight
        } else {
            None
        };
        let store = |response: &UpstreamResponse, key: Vec<u8>| {
            cache.store(key, request, authorization, response, forced)
        };
        match lookup {
            Lookup::Fresh(response) => {
                timing.setup = started.elapsed();
                Ok((response, CacheStatus::Hit))
            }
            Lookup::Stale {
                stored,
                conditional,
            } => {
                let response = self.send(request, &conditional, timing, started).await?;
                if let Some(refreshed) =
                    cache.revalidated(&key, &stored, request, authorization, &response, forced)
                {
                    return Ok((refreshed, CacheStatus::Revalidated));
                }
                let response = if response.status == 304 {
                    // A 304 whose validator matches nothing stored: ask again, plainly.
                    self.send(request, &[], timing, started).await?
                } else {
                    response
                };
                let status = store(&response, key);
                Ok((response, status))
            }
            Lookup::Miss => {
                let response = self.send(request, &[], timing, started).await?;
                let status = store(&response, key);
                Ok((response, status))
            }
            Lookup::Pass => {
                let response = self.send(request, &[], timing, started).await?;
                let status = if ResponseCache::may_store(&response, forced) {
                    store(&response, key)
                } else {
                    CacheStatus::Uncacheable
                };
                Ok((response, status))
            }
        }
    }
}

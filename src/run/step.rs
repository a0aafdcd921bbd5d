//! The [`StepActor`]: renders one step's request, authenticates it, calls the upstream,
//! and applies `response_body`. One per worker thread; steps of many runs overlap in it.

use std::sync::Arc;
use std::time::Instant;

use std::future::Future;
use std::pin::Pin;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Context, Handler};
use awc::http::header::{HeaderName, HeaderValue};
use awc::http::Method;
use bytes::Bytes;
use minijinja::Value;
use tracing::Instrument;

use super::cache::ResponseCache;
use super::error::{Code, StepFailure};
use super::messages::{ExecuteStep, StepOutcome, StepResult};
use super::timing::StepTiming;
use super::SharedRunState;
use crate::auth::{self, AppliedAuth, AuthEnv, Credential};
use crate::events::{CacheLookedUp, StepFinished, UpstreamRetried};
use crate::registry::model::HttpMethod;
use crate::registry::Step;
use crate::template::context::{body_value, headers_value, response_value, TemplateContext};
use crate::template::TemplateId;
use crate::upstream::origin::rendered_url_matches;
use crate::upstream::{send_with_retry, OutboundRequest, UpstreamResponse};

/// Executes steps for the runs of one worker thread, with that thread's upstream client.
pub struct StepActor {
    client: awc::Client,
    shared: Arc<SharedRunState>,
}

impl StepActor {
    /// A step actor using `client` (this thread's) and the process-wide `shared` state.
    pub fn new(client: awc::Client, shared: Arc<SharedRunState>) -> Self {
        StepActor { client, shared }
    }
}

impl Actor for StepActor {
    type Context = Context<Self>;
}

impl Handler<ExecuteStep> for StepActor {
    type Result = StepExecution;

    /// Each step runs as its own future, so a slow upstream never holds up other runs.
    fn handle(&mut self, msg: ExecuteStep, _ctx: &mut Self::Context) -> Self::Result {
        let client = self.client.clone();
        let shared = self.shared.clone();
        // Debug level: at the default level a step costs no span; failures are logged at info
        // with the request id, connector and step as fields.
        let span = tracing::debug_span!(
            "step",
            request_id = %msg.run.request_id,
            connector = %msg.run.connector.permalink,
            step = %msg.run.connector.steps[msg.index].name,
        );
        StepExecution(Box::pin(
            async move { execute_step(&client, &shared, msg).await }.instrument(span),
        ))
    }
}

/// One step's execution, the step actor's answer to [`ExecuteStep`]: spawned on the worker,
/// and dropped — with the upstream call in flight — as soon as nobody waits for its outcome
/// any more (the run that sent it was cancelled).
pub(crate) struct StepExecution(Pin<Box<dyn Future<Output = StepOutcome>>>);

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

fn header_value(field: &str, value: &str) -> Result<HeaderValue, StepFailure> {
    HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
        StepFailure::new(
            Code::TemplateRenderingError,
            format!("{field}: renders to a value with a line break, NUL or other control character, which cannot be sent as a header"),
        )
    })
}

/// What rendering one step needs: its run, its definition and its template context.
struct StepEnv<'a> {
    run: &'a super::RunInput,
    step: &'a Step,
    /// The template context of the step's request templates.
    template_ctx: Value,
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
            (None, None) => header_value(param.value.field_path(), &render(env, &param.value)?)?,
        };
        headers.push((name.clone(), value));
    }
    let body = step
        .request_body
        .as_ref()
        .map(|id| render(env, id).map(Bytes::from))
        .transpose()?;
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

/// The request to send: the rendered parts (moved, not copied) plus the credential.
fn outbound(
    step: &Step,
    rendered: RenderedRequest,
    credential: Option<&Credential>,
) -> OutboundRequest {
    let RenderedRequest {
        mut url,
        query,
        mut headers,
        body,
    } = rendered;
    let mut query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match credential {
        Some(Credential::Header(name, value)) => {
            headers.retain(|(n, _)| n != name);
            headers.push((name.clone(), value.clone()));
        }
        Some(Credential::Query(key, value)) => query.push((key.as_str(), value.as_str())),
        None => {}
    }
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

/// The per-step variables: `steps` (composites only) and, for `response_body`, `response`.
fn step_vars(
    run: &super::RunInput,
    steps: &Value,
    response: Option<Value>,
) -> Vec<(&'static str, Value)> {
    let mut vars = Vec::with_capacity(2);
    if run.is_composite() {
        vars.push(("steps", steps.clone()));
    }
    if let Some(response) = response {
        vars.push(("response", response));
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
    client: &awc::Client,
    shared: &SharedRunState,
    msg: ExecuteStep,
) -> StepOutcome {
    let started = Instant::now();
    let run = &*msg.run;
    let step = &run.connector.steps[msg.index];
    let mut timing = StepTiming {
        name: step.name.clone(),
        index: msg.index,
        host: host_of(&step.origin),
        ..StepTiming::default()
    };
    let steps = msg.steps;
    let env = StepEnv {
        run,
        step,
        template_ctx: TemplateContext::value(run.vars.clone(), step_vars(run, &steps, None)),
    };
    let result = run_step(client, shared, &env, &steps, &mut timing, started).await;
    timing.total = started.elapsed();
    StepFinished {
        request_id: &run.request_id,
        connector: &run.connector.permalink,
        step: &step.name,
        index: msg.index,
        status: timing.status_code,
        duration: timing.total,
        upstream: timing.external,
        failure: result.as_ref().err().map(|f| (f.code, f.detail.as_str())),
        hot: &step.hot_metrics,
    }
    .emit(&shared.metrics);
    StepOutcome { result, timing }
}

async fn authenticate(
    client: &awc::Client,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
) -> Result<Option<AppliedAuth>, StepFailure> {
    let Some(auth) = &env.step.auth else {
        return Ok(None);
    };
    let env = AuthEnv {
        templates: &env.run.registry.templates,
        ctx: &env.template_ctx,
        client,
        tokens: &shared.tokens,
        token_timeout: shared.settings.token_timeout,
        max_response_bytes: shared.settings.max_response_bytes,
        metrics: &shared.metrics,
    };
    auth::apply(auth, &env).await.map(Some)
}

/// One upstream call under the step's time limit and size cap. Connection failures of
/// idempotent requests are retried within that same time limit (`--upstream-retries`); each
/// retry is logged and counted in `connector_upstream_retries_total`.
async fn call_upstream(
    client: &awc::Client,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    request: &OutboundRequest,
) -> Result<UpstreamResponse, StepFailure> {
    let connector = env.run.connector.permalink.as_str();
    let step = env.step.name.as_str();
    send_with_retry(
        client,
        request,
        shared.settings.step_timeout,
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
    client: &awc::Client,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
    steps: &Value,
    timing: &mut StepTiming,
    started: Instant,
) -> Result<StepResult, StepFailure> {
    let step = env.step;
    let rendered = render_request(env)?;
    let applied = authenticate(client, shared, env).await?;
    // Only an OAuth token can be refreshed and retried; only then is a copy kept.
    let retry_source = applied
        .as_ref()
        .filter(|a| a.token.is_some())
        .map(|_| rendered.clone());
    let request = outbound(step, rendered, applied.as_ref().map(|a| &a.credential));
    timing.setup = started.elapsed();
    let cache_key = step.cache_ttl.map(|_| ResponseCache::key(&request));
    let cached = cache_key
        .as_ref()
        .and_then(|key| shared.response_cache.get(key));
    if step.cache_ttl.is_some() {
        CacheLookedUp {
            connector: &env.run.connector.permalink,
            hit: cached.is_some(),
        }
        .emit(&shared.metrics);
    }
    timing.cache_hit = cached.is_some();
    let upstream_started = Instant::now();
    let exchange = async {
        if let Some(response) = cached {
            return Ok(response);
        }
        let mut response = call_upstream(client, shared, env, &request).await?;
        if response.status == 401 {
            // A rejected OAuth token is dropped and the step retried once with a fresh one.
            let token = applied.as_ref().and_then(|a| a.token.clone());
            if let (Some((key, token)), Some(rendered)) = (token, retry_source) {
                shared.tokens.invalidate(&key, &token);
                let fresh = authenticate(client, shared, env).await?;
                let retry = outbound(step, rendered, fresh.as_ref().map(|a| &a.credential));
                response = call_upstream(client, shared, env, &retry).await?;
            }
        }
        Ok::<_, StepFailure>(response)
    }
    .await;
    // Timed whether or not the exchange succeeded: a timeout or network failure spent its
    // time upstream, and X-Connector-Timing must not report that wait as internal time.
    timing.external = upstream_started.elapsed();
    let response = exchange?;
    if let (Some(key), Some(ttl), false) = (cache_key, step.cache_ttl, timing.cache_hit) {
        shared.response_cache.insert(key, &response, ttl);
    }
    timing.status_code = Some(response.status);
    if response.status >= 400 {
        return Err(StepFailure::http(response.status, "the upstream"));
    }
    let transform_started = Instant::now();
    let content_type = response.content_type().map(str::to_string);
    let status = response.status;
    let headers = headers_value(response.headers);
    // Later steps read `steps.<name>`; the last step's result is never read, so it is not built.
    let read_later = env.step.index + 1 < env.run.connector.steps.len();
    let (body, value) = match &step.response_body {
        Some(id) => {
            let response_ctx = response_value(body_value(&response.body), status, headers.clone());
            let ctx = TemplateContext::value(
                env.run.vars.clone(),
                step_vars(env.run, steps, Some(response_ctx)),
            );
            let rendered = env.run.registry.templates.render(id, &ctx).map_err(|e| {
                let mut failure = StepFailure::from_render(id, &e);
                if !env.run.is_composite() && failure.code == Code::TemplateRenderingError {
                    failure.code = Code::ResponseTemplateRenderingError;
                }
                failure
            })?;
            let value =
                read_later.then(|| response_value(Value::from(rendered.as_str()), status, headers));
            (Bytes::from(rendered), value)
        }
        None => {
            let value =
                read_later.then(|| response_value(body_value(&response.body), status, headers));
            (response.body, value)
        }
    };
    timing.transform = transform_started.elapsed();
    Ok(StepResult {
        status,
        content_type,
        body,
        value: value.unwrap_or_default(),
    })
}

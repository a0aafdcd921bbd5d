//! The [`StepActor`]: renders one step's request, authenticates it, calls the upstream,
//! and applies `response_body`. One per worker thread; steps of many runs overlap in it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use std::future::Future;
use std::pin::Pin;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Context, Handler};
use awc::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use awc::http::Method;
use bytes::Bytes;
use minijinja::Value;
use tracing::Instrument;

use super::cache::{CacheStatus, Lookup, ResponseCache};
use super::error::{Code, StepFailure};
use super::messages::{ExecuteStep, StepOutcome, StepResult};
use super::timing::StepTiming;
use super::SharedRunState;
use crate::auth::{self, AuthEnv, Credential, Prepared};
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

/// What authentication needs of the step.
fn auth_env<'a>(
    client: &'a awc::Client,
    shared: &'a SharedRunState,
    env: &'a StepEnv<'_>,
) -> AuthEnv<'a> {
    AuthEnv {
        templates: &env.run.registry.templates,
        ctx: &env.template_ctx,
        client,
        tokens: &shared.tokens,
        token_timeout: shared.settings.token_timeout,
        max_response_bytes: shared.settings.max_response_bytes,
        metrics: &shared.metrics,
    }
}

/// The step's authentication with its config rendered (nothing fetched or signed yet).
fn prepare_auth(
    client: &awc::Client,
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
    let prepared = prepare_auth(client, shared, env)?;
    let request = outbound(step, rendered);
    let exchange = Exchange {
        client,
        shared,
        env,
        prepared: prepared.as_ref(),
    };
    let response = if step.cache.enabled {
        let (response, status) = exchange.cached(request, timing, started).await?;
        timing.cache = status;
        CacheLookedUp {
            connector: &env.run.connector.permalink,
            result: status.as_label(),
            hot: &env.run.connector.cache_metrics,
        }
        .emit(&shared.metrics);
        response
    } else {
        exchange.send(&request, &[], timing, started).await?
    };
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

/// One step's exchange with its upstream: authentication, the call (retried once with a
/// fresh token after a 401), and the response cache around them.
struct Exchange<'a> {
    client: &'a awc::Client,
    shared: &'a SharedRunState,
    env: &'a StepEnv<'a>,
    prepared: Option<&'a Prepared>,
}

impl Exchange<'_> {
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
        let applied = match self.prepared {
            Some(prepared) => Some(prepared.apply(&auth_env).await?),
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
        timing.setup = started.elapsed();
        let upstream_started = Instant::now();
        let exchange = async {
            let mut response = call_upstream(self.client, self.shared, self.env, &sent).await?;
            if response.status == 401 {
                // A rejected OAuth token is dropped and the step retried once with a fresh one.
                let token = applied.as_ref().and_then(|a| a.token.clone());
                if let (Some((key, token)), Some(prepared)) = (token, self.prepared) {
                    self.shared.tokens.invalidate(&key, &token);
                    let fresh = prepared.apply(&auth_env).await?;
                    let retry = with(Some(&fresh.credential));
                    response = call_upstream(self.client, self.shared, self.env, &retry).await?;
                }
            }
            Ok::<_, StepFailure>(response)
        }
        .await;
        // Timed whether or not the exchange succeeded: a timeout or network failure spent
        // its time upstream, and X-Connector-Timing must not report that wait as internal.
        timing.external = upstream_started.elapsed();
        exchange
    }

    /// [`Exchange::send`] through the response cache (docs/spec.md §10): a fresh stored
    /// answer is served without authenticating, a stale one revalidated, a miss fetched
    /// once for every caller waiting on the same key. The cache sees `request` without its
    /// credential (the key holds the credential's identity).
    async fn cached(
        &self,
        request: OutboundRequest,
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
            &request,
            &identity,
        );
        let mut lookup = cache.lookup(&key, &request, authorization);
        let _flight = if matches!(lookup, Lookup::Miss) {
            let flight = cache.lead_or_wait(&key).await;
            if flight.is_none() {
                // Another caller fetched it: its answer, if it could be stored.
                lookup = cache.lookup(&key, &request, authorization);
                if !matches!(lookup, Lookup::Fresh(_)) {
                    lookup = Lookup::Pass;
                }
            }
            flight
        } else {
            None
        };
        let store = |response: &UpstreamResponse, key: Vec<u8>| {
            cache.store(key, &request, authorization, response, forced)
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
                let response = self.send(&request, &conditional, timing, started).await?;
                if let Some(refreshed) =
                    cache.revalidated(&key, &stored, &request, authorization, &response, forced)
                {
                    return Ok((refreshed, CacheStatus::Revalidated));
                }
                let response = if response.status == 304 {
                    // A 304 whose validator matches nothing stored: ask again, plainly.
                    self.send(&request, &[], timing, started).await?
                } else {
                    response
                };
                let status = store(&response, key);
                Ok((response, status))
            }
            Lookup::Miss => {
                let response = self.send(&request, &[], timing, started).await?;
                let status = store(&response, key);
                Ok((response, status))
            }
            Lookup::Pass => {
                let response = self.send(&request, &[], timing, started).await?;
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

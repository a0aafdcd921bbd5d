//! Taking a call's `rate_limit` quota before anything goes upstream (docs/spec.md §11): the
//! composite's own quota before its first step (asked of the worker's step actor, which holds
//! the shared state), a step's before its call (one per `for_each` item, all at once).

use actix::{Handler, Message, ResponseFuture};
use minijinja::Value;

use super::error::{Code, StepFailure};
use super::input::RunInput;
use super::step::StepActor;
use super::SharedRunState;
use crate::events::QuotaDecided;
use crate::registry::compiled::RateLimit;
use crate::shared_state::Decision;
use crate::template::context::TemplateContext;
use crate::template::TemplateSet;

/// Takes `cost` calls of `limit` for `connector` (and `step`: each step's quota is its own),
/// its `key` rendered in `ctx`. Over the quota: `RATE_LIMITED` with the seconds to wait.
pub(crate) async fn take(
    shared: &SharedRunState,
    templates: &TemplateSet,
    ctx: &Value,
    connector: &str,
    step: &str,
    limit: &RateLimit,
    cost: u32,
) -> Result<(), StepFailure> {
    let rendered = match &limit.key {
        Some(id) => templates
            .render(id, ctx)
            .map_err(|e| StepFailure::from_render(id, &e))?,
        None => String::new(),
    };
    let mut key = Vec::with_capacity(connector.len() + step.len() + rendered.len() + 2);
    key.extend_from_slice(connector.as_bytes());
    key.push(0);
    key.extend_from_slice(step.as_bytes());
    key.push(0);
    key.extend_from_slice(rendered.as_bytes());
    let (decision, in_cluster) = shared.quotas.take(&key, limit.quota, cost).await;
    QuotaDecided {
        connector,
        allowed: decision == Decision::Allowed,
        shared: in_cluster,
    }
    .emit(&shared.metrics);
    let Decision::Limited(wait) = decision else {
        return Ok(());
    };
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let quota = limit.quota;
    let whose = if limit.key.is_some() {
        " for this key"
    } else {
        ""
    };
    let detail = if cost > quota.requests {
        format!(
            "rate_limit: {cost} calls at once are more than the quota of {} per {} s allows",
            quota.requests,
            quota.period.as_secs()
        )
    } else {
        format!(
            "rate_limit: more than {} calls per {} s{whose}; retry after {} s",
            quota.requests,
            quota.period.as_secs(),
            seconds.max(1)
        )
    };
    Err(StepFailure::new(Code::RateLimited, detail).with_retry_after(seconds.max(1)))
}

/// Asks the worker's step actor to take a composite's own `rate_limit` for `run`.
#[derive(Message)]
#[rtype(result = "Result<(), StepFailure>")]
pub(crate) struct TakeRunQuota {
    /// The run about to start.
    pub run: std::sync::Arc<RunInput>,
}

impl Handler<TakeRunQuota> for StepActor {
    type Result = ResponseFuture<Result<(), StepFailure>>;

    fn handle(&mut self, msg: TakeRunQuota, _ctx: &mut Self::Context) -> Self::Result {
        let shared = self.shared().clone();
        Box::pin(async move {
            let run = &msg.run;
            let Some(limit) = &run.connector.rate_limit else {
                return Ok(());
            };
            let ctx = TemplateContext::value(run.vars.clone(), Vec::new());
            take(
                &shared,
                &run.registry.templates,
                &ctx,
                &run.connector.permalink,
                "",
                limit,
                1,
            )
            .await
        })
    }
}

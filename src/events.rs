//! Internal events, as vector's instrumentation spec has them: each observable event is one
//! struct whose `emit` writes its log line and its metrics together, so logs and metrics
//! cannot disagree and nothing else in the crate bumps a counter or logs an outcome. Log
//! lines carry ids, names, codes and timings — never a secret, a body or a rendered value.
//! Events take plain values (names, codes, durations), so every layer can emit them
//! without this module knowing the layers.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::IntCounter;

use crate::error::Code;
use crate::identity::jwks::{log_key_event, FetchTrigger, KeyEvent};
use crate::identity::VerifyOutcome;
use crate::metrics::{status_class, CacheHandles, HotHandles, Metrics};

/// Milliseconds with one decimal, for log fields.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The `kind` label of a connector (`simple` or `composite`).
pub(crate) type KindLabel = &'static str;

/// One step ended, successfully (`failure: None`) or not.
#[derive(Debug)]
pub struct StepFinished<'a> {
    /// The run's request id.
    pub request_id: &'a str,
    /// Connector permalink.
    pub connector: &'a str,
    /// Step name.
    pub step: &'a str,
    /// Step position from 0.
    pub index: usize,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    /// The step's whole duration.
    pub duration: Duration,
    /// The part spent waiting for the upstream.
    pub upstream: Duration,
    /// Why it failed, if it did: the code and its caller-safe detail.
    pub failure: Option<(Code, &'a str)>,
    /// How it ended: `ok`, `skipped`, `failed` or `continued` (which has a failure too).
    pub state: &'static str,
    /// The step's cached metric handles for the common case (ok, 2xx).
    pub hot: &'a HotHandles,
    /// The step's `connector_step_states_total{state="ok"}` counter, resolved once.
    pub ok_state: &'a OnceLock<IntCounter>,
}

impl StepFinished<'_> {
    /// Records the step's state, duration and upstream status class; logs failures at info.
    pub fn emit(&self, metrics: &Metrics) {
        if self.state == "ok" {
            self.ok_state
                .get_or_init(|| {
                    metrics
                        .step_states
                        .with_label_values(&[self.connector, self.step, "ok"])
                })
                .inc();
        } else {
            metrics
                .step_states
                .with_label_values(&[self.connector, self.step, self.state])
                .inc();
        }
        if self.state == "skipped" {
            tracing::debug!(step = self.step, index = self.index, "step skipped");
            return;
        }
        let outcome = self.failure.map_or("ok", |(code, _)| code.outcome_label());
        let class = self.status.map(status_class);
        if outcome == "ok" && class == Some("2xx") {
            let (duration, responses) = self.hot.get(|| {
                (
                    metrics
                        .step_duration
                        .with_label_values(&[self.connector, self.step, "ok"]),
                    metrics.upstream_responses.with_label_values(&[
                        self.connector,
                        self.step,
                        "2xx",
                    ]),
                )
            });
            duration.observe(self.duration.as_secs_f64());
            responses.inc();
        } else {
            metrics
                .step_duration
                .with_label_values(&[self.connector, self.step, outcome])
                .observe(self.duration.as_secs_f64());
            if let Some(class) = class {
                metrics
                    .upstream_responses
                    .with_label_values(&[self.connector, self.step, class])
                    .inc();
            }
        }
        match self.failure {
            None => tracing::debug!(
                step = self.step,
                index = self.index,
                status = self.status,
                duration_ms = ms(self.duration),
                upstream_ms = ms(self.upstream),
                "step finished"
            ),
            Some((code, detail)) => tracing::info!(
                request_id = self.request_id,
                connector = self.connector,
                step = self.step,
                index = self.index,
                status = self.status,
                code = code.as_str(),
                detail,
                duration_ms = ms(self.duration),
                "step failed"
            ),
        }
    }
}

/// A run ended with an answer: success, or the failure of one step.
#[derive(Debug)]
pub struct RunFinished<'a> {
    /// The run's request id.
    pub request_id: &'a str,
    /// Connector permalink.
    pub connector: &'a str,
    /// `simple` or `composite`.
    pub kind: KindLabel,
    /// The whole run.
    pub duration: Duration,
    /// `None` on success; else the code, the envelope's scope and its detail.
    pub failure: Option<(Code, &'a str, &'a str)>,
    /// The connector's cached metric handles for successful runs.
    pub hot: &'a HotHandles,
}

impl RunFinished<'_> {
    /// Counts the run and its duration by outcome; logs a failed run once, at info.
    pub fn emit(&self, metrics: &Metrics) {
        let Some((code, scope, detail)) = self.failure else {
            let (duration, runs) = self.hot.get(|| {
                let labels = [self.connector, self.kind, "ok"];
                (
                    metrics.run_duration.with_label_values(&labels),
                    metrics.runs.with_label_values(&labels),
                )
            });
            runs.inc();
            duration.observe(self.duration.as_secs_f64());
            tracing::debug!(total_ms = ms(self.duration), "run succeeded");
            return;
        };
        let labels = [self.connector, self.kind, code.outcome_label()];
        metrics.runs.with_label_values(&labels).inc();
        metrics
            .run_duration
            .with_label_values(&labels)
            .observe(self.duration.as_secs_f64());
        tracing::info!(
            request_id = self.request_id,
            connector = self.connector,
            code = code.as_str(),
            scope,
            detail,
            "run failed"
        );
    }
}

/// The caller went away before its run ended: no further step starts and the steps in
/// flight are dropped. Counted as outcome `cancelled`, logged once.
#[derive(Debug)]
pub(crate) struct RunCancelled<'a> {
    /// The run's request id.
    pub request_id: &'a str,
    /// Connector permalink.
    pub connector: &'a str,
    /// `simple` or `composite`.
    pub kind: KindLabel,
    /// Steps that had finished.
    pub steps_finished: usize,
    /// Time from the run's start to the cancellation.
    pub duration: Duration,
}

impl RunCancelled<'_> {
    /// Counts the run as `cancelled` and logs it.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let labels = [self.connector, self.kind, "cancelled"];
        metrics.runs.with_label_values(&labels).inc();
        metrics
            .run_duration
            .with_label_values(&labels)
            .observe(self.duration.as_secs_f64());
        tracing::info!(
            request_id = self.request_id,
            connector = self.connector,
            steps_finished = self.steps_finished,
            duration_ms = ms(self.duration),
            "run cancelled: the caller went away"
        );
    }
}

/// A request was refused before any step ran (400/404/405/408/413, and 503 — outcome
/// `overloaded` when `--max-in-flight` shed it).
#[derive(Debug)]
pub(crate) struct RequestRejected<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// Connector permalink, or [`crate::metrics::UNKNOWN_CONNECTOR`] when the registry does
    /// not know it (labels stay bounded).
    pub connector: &'a str,
    /// The route's kind.
    pub kind: KindLabel,
    /// Why.
    pub code: Code,
}

impl RequestRejected<'_> {
    /// Counts the refusal; logs it at info (shed requests at debug: under overload a line
    /// per shed request would add to the load).
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let outcome = self.code.outcome_label();
        metrics
            .runs
            .with_label_values(&[self.connector, self.kind, outcome])
            .inc();
        let (request_id, connector, status, code) = (
            self.request_id,
            self.connector,
            self.code.status(),
            self.code.as_str(),
        );
        if self.code == Code::Overloaded {
            tracing::debug!(request_id, connector, status, code, "request shed");
        } else {
            tracing::info!(request_id, connector, status, code, "request rejected");
        }
    }
}

/// An upstream call is made again after a connection failure (`--upstream-retries`).
#[derive(Debug)]
pub(crate) struct UpstreamRetried<'a> {
    /// The run's request id.
    pub request_id: &'a str,
    /// Connector permalink.
    pub connector: &'a str,
    /// Step name.
    pub step: &'a str,
    /// Which retry (from 1).
    pub retry: u32,
    /// The failure that is retried (caller-safe).
    pub detail: &'a str,
}

impl UpstreamRetried<'_> {
    /// Counts the retry and logs it.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .upstream_retries
            .with_label_values(&[self.connector, self.step])
            .inc();
        tracing::info!(
            request_id = self.request_id,
            connector = self.connector,
            step = self.step,
            retry = self.retry,
            detail = self.detail,
            "connecting upstream failed; retrying"
        );
    }
}

/// A step's try failed as its `retry` names, and is made again after `wait`.
#[derive(Debug)]
pub(crate) struct StepRetried<'a> {
    /// The run's request id.
    pub request_id: &'a str,
    /// Connector permalink.
    pub connector: &'a str,
    /// Step name.
    pub step: &'a str,
    /// The try that failed (from 1).
    pub attempt: u32,
    /// `status`, `network` or `timeout`.
    pub reason: &'static str,
    /// The wait before the next try.
    pub wait: Duration,
}

impl StepRetried<'_> {
    /// Counts the retry and logs it.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .step_retries
            .with_label_values(&[self.connector, self.step, self.reason])
            .inc();
        tracing::info!(
            request_id = self.request_id,
            connector = self.connector,
            step = self.step,
            attempt = self.attempt,
            reason = self.reason,
            wait_ms = ms(self.wait),
            "step try failed; retrying"
        );
    }
}

/// A cacheable call's answer was served from the response cache, revalidated, stored or
/// found not storable (docs/spec.md §10).
#[derive(Debug)]
pub(crate) struct CacheLookedUp<'a> {
    /// Connector permalink.
    pub connector: &'a str,
    /// How the answer was found: the `result` label (hit, revalidated, miss, uncacheable).
    pub result: &'static str,
    /// The connector's counters, resolved once.
    pub hot: &'a CacheHandles,
}

/// The `result` values of `connector_response_cache_requests_total`.
pub(crate) const CACHE_RESULTS: [&str; 4] = ["hit", "revalidated", "miss", "uncacheable"];

impl CacheLookedUp<'_> {
    /// Counts the look-up by connector and result.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let counter = self.hot.get(self.result, || {
            CACHE_RESULTS
                .iter()
                .map(|r| {
                    (
                        *r,
                        metrics
                            .response_cache
                            .with_label_values(&[self.connector, r]),
                    )
                })
                .collect()
        });
        match counter {
            Some(counter) => counter.inc(),
            None => metrics
                .response_cache
                .with_label_values(&[self.connector, self.result])
                .inc(),
        }
    }
}

/// The response cache's size changed.
#[derive(Debug)]
pub(crate) struct CacheSized {
    /// Bytes it holds (keys and answers).
    pub bytes: u64,
}

impl CacheSized {
    /// Sets `connector_response_cache_bytes`.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.response_cache_bytes.set(self.bytes as i64);
    }
}

/// The response cache evicted an entry to stay within `--response-cache-bytes`.
#[derive(Debug)]
pub(crate) struct CacheEvicted;

impl CacheEvicted {
    /// Counts it.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.response_cache_evictions.inc();
    }
}

/// An OAuth grant's token was taken from the token cache (`hit`) or fetched (`miss`).
#[derive(Debug)]
pub(crate) struct TokenLookedUp {
    /// Whether the cached token was used.
    pub hit: bool,
}

impl TokenLookedUp {
    /// Counts the look-up by result.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let result = if self.hit { "hit" } else { "miss" };
        metrics.token_cache.with_label_values(&[result]).inc();
    }
}

/// A token request failed.
#[derive(Debug)]
pub(crate) struct TokenFetchFailed<'a> {
    /// Why (the code the step fails with).
    pub code: Code,
    /// Caller-safe detail.
    pub detail: &'a str,
}

impl TokenFetchFailed<'_> {
    /// Counts the failure and logs it.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.token_fetch_errors.inc();
        tracing::info!(
            code = self.code.as_str(),
            detail = self.detail,
            "token request failed"
        );
    }
}

/// A registry snapshot was built and published (a sync that changed something).
#[derive(Debug)]
pub(crate) struct RegistryPublished<'a> {
    /// Why the sync ran (`startup`, `webhook`, `poll`, ...).
    pub reason: &'a str,
    /// The published revision.
    pub revision: &'a str,
    /// Simple connectors served now.
    pub simple: usize,
    /// Composite connectors served now.
    pub composite: usize,
    /// Connectors created, updated and removed by this sync.
    pub changes: (usize, usize, usize),
    /// Warnings of the build.
    pub warnings: usize,
    /// How long reading and building took.
    pub duration: Duration,
    /// Unix time of the publish.
    pub at: u64,
}

impl RegistryPublished<'_> {
    /// Counts the load, sets the registry gauges and logs the publish.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.registry_loads.with_label_values(&["ok"]).inc();
        metrics.registry_load_ok.set(1);
        metrics.registry_last_success.set(self.at as f64);
        metrics
            .registry_load_duration
            .set(self.duration.as_secs_f64());
        metrics
            .registry_connectors
            .with_label_values(&["composite"])
            .set(self.composite as i64);
        metrics
            .registry_connectors
            .with_label_values(&["simple"])
            .set(self.simple as i64);
        let (created, updated, removed) = self.changes;
        tracing::info!(
            reason = self.reason,
            revision = self.revision,
            connectors = self.simple + self.composite,
            created,
            updated,
            removed,
            warnings = self.warnings,
            "registry published"
        );
    }
}

/// A sync found the source as it was last read: nothing was built.
#[derive(Debug)]
pub(crate) struct RegistryUnchanged {
    /// How long reading took.
    pub duration: Duration,
}

impl RegistryUnchanged {
    /// Records the sync's duration.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics
            .registry_load_duration
            .set(self.duration.as_secs_f64());
    }
}

/// A sync failed: the source could not be read or the registry was rejected. The previous
/// registry keeps serving.
#[derive(Debug)]
pub(crate) struct RegistrySyncFailed<'a> {
    /// Why the sync ran.
    pub reason: &'a str,
    /// What failed (the report's summary, or the source error).
    pub summary: &'a str,
    /// How long the attempt took.
    pub duration: Duration,
}

impl RegistrySyncFailed<'_> {
    /// Counts the failed load and logs it as a warning.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.registry_loads.with_label_values(&["failed"]).inc();
        metrics.registry_load_ok.set(0);
        metrics
            .registry_load_duration
            .set(self.duration.as_secs_f64());
        tracing::warn!(
            reason = self.reason,
            error = self.summary,
            "registry sync failed; the previous registry keeps serving"
        );
    }
}

/// Counts a run as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    /// Marks a run as started.
    pub(crate) fn start(metrics: &'a Metrics) -> Self {
        metrics.in_flight.inc();
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// A caller token was checked (or was needed and missing): docs/spec.md §9. No claim and no
/// token is logged; the failed check is.
#[derive(Debug)]
pub(crate) struct CallerIdentified<'a> {
    /// The run's request id.
    pub request_id: &'a str,
    /// What came of it.
    pub outcome: VerifyOutcome,
}

impl CallerIdentified<'_> {
    /// Counts the outcome; a refused token is logged at debug level (the refusal itself is a
    /// [`RequestRejected`]).
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let result = self.outcome.as_label();
        metrics
            .identity_verifications
            .with_label_values(&[result])
            .inc();
        if let VerifyOutcome::Invalid(error) = self.outcome {
            tracing::debug!(
                request_id = self.request_id,
                check = error.check(),
                "caller token refused"
            );
        }
    }
}

/// The identity key store fetched (or did not fetch) the issuer's keys.
pub(crate) struct IdentityKeysEvent<'a>(pub &'a KeyEvent);

impl IdentityKeysEvent<'_> {
    /// Counts the fetch by trigger and result, and logs it (no URL, no key material).
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let trigger = match self.0 {
            KeyEvent::Fetched(e) => e.trigger.as_label(),
            KeyEvent::FetchFailed(e) => e.trigger.as_label(),
            KeyEvent::RefetchLimited(_) => FetchTrigger::UnknownKey.as_label(),
        };
        metrics
            .identity_jwks_fetches
            .with_label_values(&[trigger, self.0.as_label()])
            .inc();
        log_key_event(self.0);
    }
}

/// One operation on the shared state in Redis ended (docs/spec.md §11).
#[derive(Debug)]
pub(crate) struct SharedStateOperation {
    /// The `op` label (`token_get`, `cache_put`, `rate_limit`, ...).
    pub op: &'static str,
    /// Whether Redis answered in time.
    pub ok: bool,
    /// How long it took (zero when it was skipped while Redis is away).
    pub duration: Duration,
}

impl SharedStateOperation {
    /// Counts the operation and its time.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let outcome = if self.ok { "ok" } else { "error" };
        metrics
            .shared_state_operations
            .with_label_values(&[self.op, outcome])
            .inc();
        if self.ok || !self.duration.is_zero() {
            metrics
                .shared_state_duration
                .with_label_values(&[self.op])
                .observe(self.duration.as_secs_f64());
        }
        if !self.ok {
            metrics
                .shared_state_errors
                .with_label_values(&[self.op])
                .inc();
        }
    }
}

/// Redis stopped answering: this replica uses its own state meanwhile. Logged at most once
/// a minute by the caller (`log`); counted by [`SharedStateOperation`].
#[derive(Debug)]
pub(crate) struct SharedStateUnavailable<'a> {
    /// The operation that found out.
    pub op: &'static str,
    /// What happened (a timeout, a refused connection; never a key or a value).
    pub reason: &'a str,
    /// Whether this one is logged (at most one a minute is).
    pub log: bool,
}

impl SharedStateUnavailable<'_> {
    /// Marks the shared state as away; logs a warning when `log`.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.shared_state_connected.set(0);
        if self.log {
            tracing::warn!(
                op = self.op,
                reason = self.reason,
                "shared state in Redis unavailable; this replica uses its own tokens, cache and quotas until it answers again (warned at most once a minute)"
            );
        }
    }
}

/// Redis answers (again): sharing resumes.
#[derive(Debug)]
pub(crate) struct SharedStateConnected {
    /// Whether it had been away (logged then).
    pub recovered: bool,
}

impl SharedStateConnected {
    /// Marks the shared state as in use.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        metrics.shared_state_connected.set(1);
        if self.recovered {
            tracing::info!("shared state in Redis answers again; sharing resumes");
        }
    }
}

/// A `rate_limit` quota decided on a call (docs/spec.md §11).
#[derive(Debug)]
pub(crate) struct QuotaDecided<'a> {
    /// Connector permalink.
    pub connector: &'a str,
    /// Whether the call may go ahead.
    pub allowed: bool,
    /// Whether the count is the cluster's (Redis) or this replica's own.
    pub shared: bool,
}

impl QuotaDecided<'_> {
    /// Counts the decision.
    pub(crate) fn emit(&self, metrics: &Metrics) {
        let decision = if self.allowed { "allowed" } else { "limited" };
        let scope = if self.shared { "shared" } else { "local" };
        metrics
            .rate_limit_decisions
            .with_label_values(&[self.connector, decision, scope])
            .inc();
    }
}

//! Every metric the runtime exposes, registered in one place and served at `GET /metrics`
//! in the Prometheus text format. Label values are bounded: connector permalinks, step
//! names, kinds, outcomes and status classes — never a URL, an id or a message.

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Latency buckets, resolving 1 ms to 30 s.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label used for requests whose permalink is unknown (keeps labels bounded).
pub(crate) const UNKNOWN_CONNECTOR: &str = "(unknown)";

/// The runtime's metrics.
pub struct Metrics {
    registry: Registry,
    /// `connector_step_duration_seconds{connector, step, outcome}`.
    pub step_duration: HistogramVec,
    /// `connector_run_duration_seconds{connector, kind, outcome}`.
    pub run_duration: HistogramVec,
    /// `connector_runs_total{connector, kind, outcome}`.
    pub runs: IntCounterVec,
    /// `connector_runs_in_flight`.
    pub in_flight: IntGauge,
    /// `connector_upstream_responses_total{connector, step, status_class}`.
    pub upstream_responses: IntCounterVec,
    /// `connector_upstream_retries_total{connector, step}`: calls made again after a
    /// connection failure.
    pub upstream_retries: IntCounterVec,
    /// `connector_step_states_total{connector, step, state}` (ok | skipped | failed |
    /// continued, docs/spec.md §12).
    pub step_states: IntCounterVec,
    /// `connector_step_retries_total{connector, step, reason}` (status | network | timeout):
    /// tries made again under a step's `retry`.
    pub step_retries: IntCounterVec,
    /// `connector_token_cache_requests_total{result}` (hit | miss).
    pub token_cache: IntCounterVec,
    /// `connector_token_fetch_errors_total`.
    pub token_fetch_errors: IntCounter,
    /// `connector_registry_loads_total{result}` (ok | failed).
    pub registry_loads: IntCounterVec,
    /// `connector_registry_connectors{kind}`.
    pub registry_connectors: IntGaugeVec,
    /// `connector_registry_last_success_timestamp_seconds`.
    pub registry_last_success: Gauge,
    /// `connector_registry_load_ok`: 1 when the last load succeeded.
    pub registry_load_ok: IntGauge,
    /// `connector_registry_load_duration_seconds` of the last load.
    pub registry_load_duration: Gauge,
    /// `connector_response_cache_requests_total{connector, result}` (hit | revalidated |
    /// miss | uncacheable).
    pub response_cache: IntCounterVec,
    /// `connector_response_cache_bytes`: what the response cache holds.
    pub response_cache_bytes: IntGauge,
    /// `connector_response_cache_evictions_total`.
    pub response_cache_evictions: IntCounter,
    /// `connector_identity_verifications_total{result}`: caller tokens verified, by result
    /// (verified, missing where one was needed, or the failed check).
    pub identity_verifications: IntCounterVec,
    /// `connector_identity_jwks_fetches_total{trigger, result}` (fetched | failed | limited).
    pub identity_jwks_fetches: IntCounterVec,
    /// `connector_shared_state_operations_total{op, outcome}` (ok | error): Redis operations
    /// (docs/spec.md §11).
    pub shared_state_operations: IntCounterVec,
    /// `connector_shared_state_errors_total{op}`: operations that failed, timed out or were
    /// skipped while Redis was away, each answered from the replica's own state instead.
    pub shared_state_errors: IntCounterVec,
    /// `connector_shared_state_duration_seconds{op}`.
    pub shared_state_duration: HistogramVec,
    /// `connector_shared_state_connected`: 1 while Redis answers, 0 while the replica falls
    /// back to its own state (or runs without `--redis-url`).
    pub shared_state_connected: IntGauge,
    /// `connector_rate_limit_decisions_total{connector, decision, scope}` (allowed | limited;
    /// shared | local).
    pub rate_limit_decisions: IntCounterVec,
}

/// The `op` values of the shared-state metrics.
pub const SHARED_STATE_OPS: [&str; 6] = [
    "token_get",
    "token_put",
    "token_lock",
    "cache_get",
    "cache_put",
    "rate_limit",
];

/// Buckets of Redis operations, resolving 0.1 ms to 0.25 s.
const SHARED_STATE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// The `result` values of `connector_identity_verifications_total`.
pub const IDENTITY_RESULTS: [&str; 10] = [
    "verified",
    "missing",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "signature",
    "unknown_key",
    "algorithm",
    "malformed",
];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("valid histogram")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
}

impl Metrics {
    /// A fresh set of metrics with its own registry (one per server, so tests can run
    /// several servers in one process).
    pub fn new() -> Arc<Self> {
        let m = Metrics {
            registry: Registry::new(),
            step_duration: histogram(
                "connector_step_duration_seconds",
                "Duration of one step (one upstream call with its rendering and auth), by outcome.",
                &["connector", "step", "outcome"],
            ),
            run_duration: histogram(
                "connector_run_duration_seconds",
                "Duration of one connector run, by kind and outcome.",
                &["connector", "kind", "outcome"],
            ),
            runs: counter(
                "connector_runs_total",
                "Connector runs, by kind and outcome.",
                &["connector", "kind", "outcome"],
            ),
            in_flight: IntGauge::new("connector_runs_in_flight", "Runs currently executing.")
                .expect("valid gauge"),
            upstream_responses: counter(
                "connector_upstream_responses_total",
                "Upstream responses, by status class.",
                &["connector", "step", "status_class"],
            ),
            upstream_retries: counter(
                "connector_upstream_retries_total",
                "Upstream calls retried after failing to connect (idempotent methods only).",
                &["connector", "step"],
            ),
            step_states: counter(
                "connector_step_states_total",
                "Steps by how they ended: ok, skipped (when was false), failed, continued (failed with on_error continue).",
                &["connector", "step", "state"],
            ),
            step_retries: counter(
                "connector_step_retries_total",
                "Step tries made again under the step's retry, by reason (status | network | timeout).",
                &["connector", "step", "reason"],
            ),
            token_cache: counter(
                "connector_token_cache_requests_total",
                "OAuth token look-ups, by result (hit | miss).",
                &["result"],
            ),
            token_fetch_errors: IntCounter::new(
                "connector_token_fetch_errors_total",
                "Failed OAuth token requests.",
            )
            .expect("valid counter"),
            registry_loads: counter(
                "connector_registry_loads_total",
                "Registry loads, by result (ok | failed).",
                &["result"],
            ),
            registry_connectors: IntGaugeVec::new(
                Opts::new(
                    "connector_registry_connectors",
                    "Connectors being served, by kind.",
                ),
                &["kind"],
            )
            .expect("valid gauge"),
            registry_last_success: Gauge::new(
                "connector_registry_last_success_timestamp_seconds",
                "When the served registry was loaded (Unix seconds).",
            )
            .expect("valid gauge"),
            registry_load_ok: IntGauge::new(
                "connector_registry_load_ok",
                "1 if the last registry load succeeded, 0 if it was rejected.",
            )
            .expect("valid gauge"),
            registry_load_duration: Gauge::new(
                "connector_registry_load_duration_seconds",
                "How long the last registry load took.",
            )
            .expect("valid gauge"),
            response_cache: counter(
                "connector_response_cache_requests_total",
                "Response cache look-ups of GET/HEAD calls, by result (hit | revalidated | miss | uncacheable).",
                &["connector", "result"],
            ),
            response_cache_bytes: IntGauge::new(
                "connector_response_cache_bytes",
                "Bytes the response cache holds (keys and answers), at most --response-cache-bytes.",
            )
            .expect("valid gauge"),
            response_cache_evictions: IntCounter::new(
                "connector_response_cache_evictions_total",
                "Answers evicted from the response cache to stay within --response-cache-bytes.",
            )
            .expect("valid counter"),
            identity_verifications: counter(
                "connector_identity_verifications_total",
                "Caller tokens checked, by result (verified, missing where one was needed, or the check that failed).",
                &["result"],
            ),
            identity_jwks_fetches: counter(
                "connector_identity_jwks_fetches_total",
                "Fetches of the identity issuer's keys, by trigger (start | periodic | unknown_kid) and result (fetched | failed | limited).",
                &["trigger", "result"],
            ),
            shared_state_operations: counter(
                "connector_shared_state_operations_total",
                "Operations on the shared state in Redis, by op and outcome (ok | error).",
                &["op", "outcome"],
            ),
            shared_state_errors: counter(
                "connector_shared_state_errors_total",
                "Shared-state operations that failed, timed out or were skipped while Redis was away; each fell back to the replica's own state.",
                &["op"],
            ),
            shared_state_duration: HistogramVec::new(
                HistogramOpts::new(
                    "connector_shared_state_duration_seconds",
                    "Time of shared-state operations in Redis, by op.",
                )
                .buckets(SHARED_STATE_BUCKETS.to_vec()),
                &["op"],
            )
            .expect("valid histogram"),
            shared_state_connected: IntGauge::new(
                "connector_shared_state_connected",
                "1 while Redis answers, 0 while this replica falls back to its own state (or has no --redis-url).",
            )
            .expect("valid gauge"),
            rate_limit_decisions: counter(
                "connector_rate_limit_decisions_total",
                "Quota decisions of rate_limit, by connector, decision (allowed | limited) and scope (shared: counted in Redis | local: this replica only).",
                &["connector", "decision", "scope"],
            ),
        };
        let r = &m.registry;
        let _ = r.register(Box::new(m.step_duration.clone()));
        let _ = r.register(Box::new(m.run_duration.clone()));
        let _ = r.register(Box::new(m.runs.clone()));
        let _ = r.register(Box::new(m.in_flight.clone()));
        let _ = r.register(Box::new(m.upstream_responses.clone()));
        let _ = r.register(Box::new(m.upstream_retries.clone()));
        let _ = r.register(Box::new(m.step_states.clone()));
        let _ = r.register(Box::new(m.step_retries.clone()));
        let _ = r.register(Box::new(m.token_cache.clone()));
        let _ = r.register(Box::new(m.token_fetch_errors.clone()));
        let _ = r.register(Box::new(m.registry_loads.clone()));
        let _ = r.register(Box::new(m.registry_connectors.clone()));
        let _ = r.register(Box::new(m.registry_last_success.clone()));
        let _ = r.register(Box::new(m.registry_load_ok.clone()));
        let _ = r.register(Box::new(m.registry_load_duration.clone()));
        let _ = r.register(Box::new(m.response_cache.clone()));
        let _ = r.register(Box::new(m.response_cache_bytes.clone()));
        let _ = r.register(Box::new(m.response_cache_evictions.clone()));
        let _ = r.register(Box::new(m.identity_verifications.clone()));
        let _ = r.register(Box::new(m.identity_jwks_fetches.clone()));
        let _ = r.register(Box::new(m.shared_state_operations.clone()));
        let _ = r.register(Box::new(m.shared_state_errors.clone()));
        let _ = r.register(Box::new(m.shared_state_duration.clone()));
        let _ = r.register(Box::new(m.shared_state_connected.clone()));
        let _ = r.register(Box::new(m.rate_limit_decisions.clone()));
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        // Series whose label values are fixed exist from start-up, at zero, so dashboards and
        // alerts see them before the first event (a rate over a series that does not exist
        // yet is no data, not 0).
        for result in ["hit", "miss"] {
            m.token_cache.with_label_values(&[result]);
        }
        for result in ["ok", "failed"] {
            m.registry_loads.with_label_values(&[result]);
        }
        for kind in ["simple", "composite"] {
            m.registry_connectors.with_label_values(&[kind]);
        }
        for result in IDENTITY_RESULTS {
            m.identity_verifications.with_label_values(&[result]);
        }
        for op in SHARED_STATE_OPS {
            for outcome in ["ok", "error"] {
                m.shared_state_operations.with_label_values(&[op, outcome]);
            }
            m.shared_state_errors.with_label_values(&[op]);
            m.shared_state_duration.with_label_values(&[op]);
        }
        Arc::new(m)
    }

    /// Everything, in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Metric handles for the common outcome ("ok" with a 2xx answer), resolved from their labels
/// once and then reused: each `with_label_values` hashes its labels, and this runs for every
/// step and run. A registry belongs to one server, so one set of metrics fills the cache.
#[derive(Debug, Default)]
pub struct HotHandles {
    handles: std::sync::OnceLock<(prometheus::Histogram, IntCounter)>,
}

impl HotHandles {
    /// The cached `(histogram, counter)`, resolved by `resolve` on first use.
    pub(crate) fn get(
        &self,
        resolve: impl FnOnce() -> (prometheus::Histogram, IntCounter),
    ) -> &(prometheus::Histogram, IntCounter) {
        self.handles.get_or_init(resolve)
    }
}

/// The `connector_response_cache_requests_total` counters of one connector, one per result,
/// resolved once (the look-up runs for every GET step).
#[derive(Debug, Default)]
pub struct CacheHandles {
    handles: std::sync::OnceLock<Vec<(&'static str, IntCounter)>>,
}

impl CacheHandles {
    /// The counter of `result`, the counters resolved by `resolve` on first use.
    pub(crate) fn get(
        &self,
        result: &'static str,
        resolve: impl FnOnce() -> Vec<(&'static str, IntCounter)>,
    ) -> Option<&IntCounter> {
        self.handles
            .get_or_init(resolve)
            .iter()
            .find(|(r, _)| *r == result)
            .map(|(_, c)| c)
    }
}

/// `2xx`, `3xx`, `4xx` or `5xx`.
pub(crate) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

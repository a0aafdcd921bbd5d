//! Running connectors: a [`composite::CompositeRunActor`] per execution, owned by its
//! request, sends [`messages::ExecuteStep`] to the worker's [`step::StepActor`] one step at a
//! time, stops at the first failure and assembles the response. A simple connector is a run
//! of one step.

pub mod cache;
pub mod caller;
pub(crate) mod composite;
pub mod debug;
pub(crate) mod error;
pub(crate) mod input;
pub(crate) mod messages;
pub(crate) mod quota;
pub(crate) mod shared_cache;
pub mod step;
pub mod timing;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::tokens::TokenCache;
use crate::metrics::Metrics;
use crate::shared_state::{Quotas, SharedState};
use crate::upstream::RetryPolicy;

pub use caller::{CallerVars, IdentityGate};
pub use composite::{CompositeRunActor, RunOutcome, RunSuccess};
pub use error::{Code, RunError, StepFailure};
pub use input::{CallerOverrides, RunInput};

/// Limits that apply to every step (from the flags: `StepActors::from_args`).
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Time allowed for one upstream call (connect, send, read).
    pub step_timeout: Duration,
    /// Time allowed for one token request.
    pub token_timeout: Duration,
    /// Largest upstream body read.
    pub max_response_bytes: usize,
    /// Retries of upstream calls that failed to connect (idempotent methods only), within
    /// `step_timeout`.
    pub retry: RetryPolicy,
    /// Largest total size of the response cache.
    pub response_cache_bytes: u64,
    /// Most items one `for_each` step may fan out to (`--max-fanout`).
    pub max_fanout: usize,
}

/// State shared by every run in the process.
#[derive(Debug)]
pub struct SharedRunState {
    /// Limits.
    pub settings: RunSettings,
    /// OAuth tokens.
    pub tokens: TokenCache,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Cached answers of cacheable simple connectors.
    pub response_cache: cache::ResponseCache,
    /// Traces, when an OTLP endpoint is configured.
    pub tracing: Option<Arc<crate::trace::Tracing>>,
    /// `rate_limit` quotas: the cluster's in Redis, or this replica's.
    pub quotas: Quotas,
}

impl SharedRunState {
    /// Shared state with `settings`, recording into `metrics`; tokens, cached answers and
    /// quotas shared with other replicas through `cluster` when given (docs/spec.md §11).
    pub fn new(
        settings: RunSettings,
        metrics: Arc<Metrics>,
        tracing: Option<Arc<crate::trace::Tracing>>,
        cluster: Option<Arc<SharedState>>,
    ) -> Arc<Self> {
        Arc::new(SharedRunState {
            response_cache: cache::ResponseCache::new(
                settings.response_cache_bytes,
                settings.max_response_bytes,
                metrics.clone(),
                cluster.clone(),
            ),
            settings,
            tokens: TokenCache::new(cluster.clone()),
            metrics,
            tracing,
            quotas: Quotas::new(cluster),
        })
    }
}

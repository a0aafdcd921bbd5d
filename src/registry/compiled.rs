//! The registry as a run uses it: validated, every template compiled, looked up by
//! permalink. It is immutable; a new registry replaces it as a whole.

use std::collections::HashMap;
use std::sync::Arc;

use awc::http::header::{HeaderName, HeaderValue};

use super::model::{Execution, HttpMethod};
use super::problems::Problem;
use crate::metrics::{CacheHandles, HotHandles};
use crate::template::{ContextKind, TemplateId, TemplateSet};

/// One published registry.
#[derive(Debug)]
pub struct Registry {
    /// Every compiled template.
    pub templates: TemplateSet,
    connectors: HashMap<String, Arc<Connector>>,
    /// Identifies the content (a hash of the file, or the git commit).
    pub revision: String,
    /// Warnings found while loading.
    pub warnings: Vec<Problem>,
}

impl Registry {
    /// Assembles a registry from compiled parts.
    pub(crate) fn new(
        templates: TemplateSet,
        connectors: Vec<Connector>,
        revision: String,
        warnings: Vec<Problem>,
    ) -> Self {
        let connectors = connectors
            .into_iter()
            .map(|c| (c.permalink.clone(), Arc::new(c)))
            .collect();
        Registry {
            templates,
            connectors,
            revision,
            warnings,
        }
    }

    /// Looks a connector up by permalink.
    pub fn get(&self, permalink: &str) -> Option<&Arc<Connector>> {
        self.connectors.get(permalink)
    }

    /// All connectors, sorted by permalink.
    pub(crate) fn connectors(&self) -> Vec<&Arc<Connector>> {
        let mut all: Vec<_> = self.connectors.values().collect();
        all.sort_by(|a, b| a.permalink.cmp(&b.permalink));
        all
    }

    /// How many connectors are loaded.
    pub(crate) fn len(&self) -> usize {
        self.connectors.len()
    }

    /// Whether no connector is loaded.
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty()
    }
}

/// Whether a connector is simple (one call) or composite (a chain of steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    /// A simple connector: one templated HTTP call.
    Simple,
    /// A composite connector: named steps run in order.
    Composite,
}

impl ConnectorKind {
    /// `"simple"` or `"composite"`, as metrics and the admin API label it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Simple => "simple",
            ConnectorKind::Composite => "composite",
        }
    }

    /// The top-level variables its templates see.
    pub(crate) fn context(self) -> ContextKind {
        match self {
            ConnectorKind::Simple => ContextKind::Simple,
            ConnectorKind::Composite => ContextKind::Composite,
        }
    }
}

/// A simple connector (one step) or a composite connector (several).
#[derive(Debug)]
pub struct Connector {
    /// Display name.
    pub name: String,
    /// Unique id.
    pub permalink: String,
    /// Simple or composite.
    pub kind: ConnectorKind,
    /// The calls, in order; exactly one for a simple connector.
    pub steps: Vec<Step>,
    /// Declared path parameters (simple connectors), with their defaults.
    pub path_parameters: Vec<(String, Option<String>)>,
    /// Fingerprint of the connector's definition, to tell updated connectors from unchanged
    /// ones when a new registry is published.
    pub fingerprint: String,
    /// Run duration histogram and run counter for successful runs.
    pub hot_metrics: HotHandles,
    /// What its templates read of the caller (docs/spec.md §9).
    pub reads: CallerReads,
    /// Its response cache counters by result.
    pub cache_metrics: CacheHandles,
    /// How its steps are scheduled (composites; a simple connector's one step runs alone).
    pub execution: Execution,
    /// The composite's own `rate_limit`, taken before its first step (a simple connector's
    /// is its step's).
    pub rate_limit: Option<RateLimit>,
    /// The composite's own `response_body` and `response_content_type`.
    pub answer: Answer,
}

/// A composite's own answer settings (docs/spec.md §12).
#[derive(Debug, Default)]
pub struct Answer {
    /// Built from any steps instead of being the last step's response.
    pub body: Option<TemplateId>,
    /// Content-Type of the answer.
    pub content_type: Option<String>,
}

/// What a step does besides its call (docs/spec.md §12): its condition, fan-out, retries,
/// time limit, error handling and the steps it waits for.
#[derive(Debug, Default)]
pub struct StepControl {
    /// `when`: the step is skipped when this expression is falsy.
    pub when: Option<TemplateId>,
    /// `for_each`: the list the step runs once per item of, and how many run at once.
    pub for_each: Option<ForEach>,
    /// `retry`.
    pub retry: Option<StepRetry>,
    /// `timeout_ms`: the step's own time limit (each item's, with `for_each`).
    pub timeout: Option<std::time::Duration>,
    /// `on_error: "continue"`: a failed call is recorded and the chain goes on.
    pub continue_on_error: bool,
    /// Indices of the earlier steps that must finish before this one starts: those its
    /// templates read and those in its `depends_on`, ascending.
    pub needs: Vec<usize>,
}

/// A step's `for_each`.
#[derive(Debug)]
pub struct ForEach {
    /// The list expression.
    pub list: TemplateId,
    /// Items in flight at once.
    pub max_concurrency: usize,
}

/// A step's `retry`.
#[derive(Debug, Clone)]
pub struct StepRetry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait before the second try (doubled for each further one, with jitter).
    pub backoff: std::time::Duration,
    /// Upstream statuses that are tried again.
    pub statuses: Vec<u16>,
    /// Whether network failures are.
    pub network: bool,
    /// Whether timeouts of one try are.
    pub timeout: bool,
}

/// What a connector's templates read of the caller, found when the registry loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerReads {
    /// Some template reads `user`: a run needs a verified caller token.
    pub user: bool,
    /// Some template reads `tenant_id`.
    pub tenant_id: bool,
}

impl Connector {
    /// The method callers must use: the step's for a simple connector, POST for a composite.
    pub(crate) fn caller_method(&self) -> HttpMethod {
        match self.kind {
            ConnectorKind::Simple => self.steps[0].method,
            ConnectorKind::Composite => HttpMethod::POST,
        }
    }
}

/// One upstream call.
#[derive(Debug)]
pub struct Step {
    /// Step name (a simple connector's only step is named after its permalink).
    pub name: String,
    /// Position in the chain, from 0.
    pub index: usize,
    /// Upstream method.
    pub method: HttpMethod,
    /// The URL template.
    pub url: TemplateId,
    /// What the rendered URL must start with: `https://host[:port]`, fixed at load.
    pub origin: String,
    /// Headers.
    pub headers: Vec<Param>,
    /// Query parameters.
    pub query: Vec<Param>,
    /// Authentication.
    pub auth: Option<Box<Auth>>,
    /// Outbound body template.
    pub request_body: Option<TemplateId>,
    /// Response transform.
    pub response_body: Option<TemplateId>,
    /// Content-Type override returned to the widget.
    pub response_content_type: Option<String>,
    /// Step duration histogram and 2xx counter for successful steps.
    pub hot_metrics: HotHandles,
    /// Whether and how its answers are cached (docs/spec.md §10).
    pub cache: StepCache,
    /// Condition, fan-out, retries, time limit and error handling (docs/spec.md §12).
    pub control: StepControl,
    /// Counts of its ok runs in `connector_step_states_total`, resolved once.
    pub ok_state_metric: std::sync::OnceLock<prometheus::IntCounter>,
    /// The call's `rate_limit`.
    pub rate_limit: Option<RateLimit>,
}

/// A compiled `rate_limit` (docs/spec.md §11).
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Calls per period.
    pub quota: crate::shared_state::Quota,
    /// Whose quota a call takes, when not the connector's (or step's) one.
    pub key: Option<TemplateId>,
}

/// How a call's answers are cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCache {
    /// Cached at all: a GET or HEAD call without `cache: "off"`.
    pub enabled: bool,
    /// `cache_ttl_seconds`: freshness when the upstream gives none.
    pub forced_ttl: Option<std::time::Duration>,
}

/// A header or query parameter.
#[derive(Debug)]
pub struct Param {
    /// Literal name.
    pub key: String,
    /// Value template.
    pub value: TemplateId,
    /// Whether callers may replace the value.
    pub overridable: bool,
    /// For headers: the parsed name, and the value when it is literal text, both ready to
    /// send without parsing per run.
    pub header: Option<(HeaderName, Option<HeaderValue>)>,
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyPlacement {
    /// As a header.
    Header,
    /// As a query parameter.
    Query,
}

/// A JSON value whose strings are templates (authentication claims and headers).
#[derive(Debug)]
pub enum ConfigValue {
    /// A string template.
    Template(TemplateId),
    /// A number, boolean or null.
    Literal(serde_json::Value),
    /// An object.
    Object(Vec<(String, ConfigValue)>),
    /// An array.
    Array(Vec<ConfigValue>),
}

/// Compiled `authentication` (docs/spec.md §4).
#[derive(Debug)]
pub enum Auth {
    /// `api_key` / `apikey`.
    ApiKey {
        /// Header or query parameter name.
        key: String,
        /// The key's value.
        value: TemplateId,
        /// Header or query.
        placement: ApiKeyPlacement,
    },
    /// `oauth_client_credentials`.
    OAuthClientCredentials {
        /// Client id.
        client_id: TemplateId,
        /// Client secret.
        client_secret: TemplateId,
        /// Token endpoint.
        token_url: TemplateId,
        /// Origin the token URL must have.
        token_origin: String,
        /// Optional scope.
        scope: Option<TemplateId>,
    },
    /// `jwt`: a token signed on every call.
    Jwt {
        /// Signing key (PEM, or the shared secret for HS*).
        private_key: TemplateId,
        /// Algorithm name.
        algorithm: String,
        /// Claims.
        claims: ConfigValue,
        /// Extra JOSE header fields.
        jwt_headers: Option<ConfigValue>,
    },
    /// `oauth_jwt_bearer`: a signed assertion exchanged for a cached token.
    OAuthJwtBearer {
        /// Issuer of the assertion.
        client_id: TemplateId,
        /// Signing key.
        private_key: TemplateId,
        /// Token endpoint.
        token_url: TemplateId,
        /// Origin the token URL must have.
        token_origin: String,
        /// `sub` claim.
        subject: TemplateId,
        /// `aud` claim.
        audience: TemplateId,
        /// Seconds the token is used for (cached `token_ttl - 60`).
        token_ttl: u64,
        /// Algorithm name.
        algorithm: String,
        /// More claims.
        additional_claims: Option<ConfigValue>,
        /// Extra JOSE header fields.
        jwt_headers: Option<ConfigValue>,
    },
}

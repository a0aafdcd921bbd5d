//! What one run starts from: the registry snapshot, the connector, the caller's request as
//! templates see it, and the values the caller may override.

use std::sync::Arc;

use awc::http::header::HeaderValue;
use minijinja::Value;

use bytes::Bytes;

use super::caller::CallerVars;
use super::error::Code;
use crate::registry::rules::is_valid_path_param_value;
use crate::registry::{Connector, ConnectorKind, Registry};
use crate::template::context::RequestView;
use crate::template::json_cache::{self, JsonCache};

/// Header and query values the caller sent for parameters declared `overridable`.
#[derive(Debug, Default, Clone)]
pub struct CallerOverrides {
    /// Lower-case header name → value.
    pub headers: Vec<(String, HeaderValue)>,
    /// Query key → value.
    pub query: Vec<(String, String)>,
}

impl CallerOverrides {
    /// Collects the caller's values for the parameters `connector` declares overridable;
    /// nothing else the caller sends is taken. `header` looks a caller header up by name.
    pub(crate) fn collect(
        connector: &Connector,
        header: impl Fn(&str) -> Option<HeaderValue>,
        query: &[(String, String)],
    ) -> Self {
        let mut out = CallerOverrides::default();
        for step in &connector.steps {
            for param in step.headers.iter().filter(|p| p.overridable) {
                if let Some(value) = header(&param.key) {
                    out.headers.push((param.key.to_ascii_lowercase(), value));
                }
            }
            for param in step.query.iter().filter(|p| p.overridable) {
                if let Some((_, value)) = query.iter().rev().find(|(k, _)| *k == param.key) {
                    out.query.push((param.key.clone(), value.clone()));
                }
            }
        }
        out
    }

    /// The caller's value for header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The caller's value for query parameter `key`.
    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Path parameters the caller got wrong (docs/spec.md §3): missing ones win over invalid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathParamError {
    /// These declared parameters have no value.
    Missing(Vec<String>),
    /// These values break the path parameter rule.
    Invalid(Vec<String>),
}

/// The values of `connector`'s declared path parameters: the caller's (`sent`), else the
/// declared default.
pub(crate) fn path_parameters(
    connector: &Connector,
    sent: &[(String, String)],
) -> Result<Vec<(String, String)>, PathParamError> {
    let mut values = Vec::with_capacity(connector.path_parameters.len());
    let mut missing = Vec::new();
    let mut invalid = Vec::new();
    for (key, default) in &connector.path_parameters {
        let value = sent
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .or_else(|| default.clone());
        match value {
            None => missing.push(key.clone()),
            Some(v) if !is_valid_path_param_value(&v) => invalid.push(key.clone()),
            Some(v) => values.push((key.clone(), v)),
        }
    }
    if !missing.is_empty() {
        return Err(PathParamError::Missing(missing));
    }
    if !invalid.is_empty() {
        return Err(PathParamError::Invalid(invalid));
    }
    Ok(values)
}

/// A request refused before any step ran: its code, a caller-safe detail and the keys it is
/// about (`params` of the envelope).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub(crate) struct RequestError {
    /// Which refusal (one of the request-error rows of [`Code`]).
    pub code: Code,
    /// What is wrong, and how to call instead.
    pub detail: String,
    /// The keys the error is about (missing or invalid path parameters, the method).
    pub params: Vec<String>,
}

impl RequestError {
    /// A refusal with `code` and `detail`.
    pub(crate) fn new(code: Code, detail: impl Into<String>) -> Self {
        RequestError {
            code,
            detail: detail.into(),
            params: Vec::new(),
        }
    }

    /// With `params`.
    pub(crate) fn with_params(mut self, params: Vec<String>) -> Self {
        self.params = params;
        self
    }
}

impl From<PathParamError> for RequestError {
    fn from(e: PathParamError) -> Self {
        match e {
            PathParamError::Missing(keys) => RequestError::new(
                Code::MissingPathParameters,
                "required path parameters are missing (send them in X-Path-Params)",
            )
            .with_params(keys),
            PathParamError::Invalid(keys) => RequestError::new(
                Code::InvalidPathParameters,
                "path parameter values must be 1-200 characters of A-Z a-z 0-9 . _ ~ - and must not contain '..'",
            )
            .with_params(keys),
        }
    }
}

/// A caller's request to run a connector, as the execute routes and the `run` command
/// receive it: everything but the body, which is read only once the request is known to
/// name a connector it may call. [`RunRequest::resolve`] is the one place that checks it.
#[derive(Debug, Clone)]
pub(crate) struct RunRequest<'a> {
    /// The kind of connector the route runs; `None` (the `run` command) runs either.
    pub kind: Option<ConnectorKind>,
    /// The permalink named.
    pub permalink: &'a str,
    /// The caller's method; `None` (the `run` command) uses the connector's own.
    pub method: Option<&'a str>,
    /// The caller's query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The path parameters the caller sent (simple connectors).
    pub path_params: Vec<(String, String)>,
}

impl RunRequest<'_> {
    /// Checks the request against `registry` (the current snapshot, `None` before the first
    /// load): the connector exists, is of the route's kind, is called with its method and
    /// gets valid path parameters.
    pub(crate) fn resolve(
        self,
        registry: Option<Arc<Registry>>,
    ) -> Result<ResolvedRun, RequestError> {
        let permalink = self.permalink;
        let registry = registry.ok_or_else(|| {
            RequestError::new(
                Code::RegistryNotLoaded,
                "no connector registry is loaded yet",
            )
        })?;
        let connector = registry.get(permalink).cloned().ok_or_else(|| {
            RequestError::new(
                Code::ConnectorNotFound,
                format!("no connector with permalink '{permalink}'"),
            )
        })?;
        if self.kind.is_some_and(|kind| kind != connector.kind) {
            let (what, route) = match connector.kind {
                ConnectorKind::Simple => (
                    "a simple connector",
                    format!(
                        "{} /connectors/{permalink}/execute",
                        connector.caller_method().as_str()
                    ),
                ),
                ConnectorKind::Composite => (
                    "a composite connector",
                    format!("POST /connectors/composite/{permalink}/execute"),
                ),
            };
            return Err(RequestError::new(
                Code::ConnectorKindMismatch,
                format!("'{permalink}' is {what}; call {route}"),
            ));
        }
        let expected = connector.caller_method().as_str();
        if let Some(method) = self.method.filter(|m| *m != expected) {
            return Err(RequestError::new(
                Code::MethodNotAllowed,
                format!("'{permalink}' must be called with {expected}, not {method}"),
            )
            .with_params(vec![expected.to_string()]));
        }
        let path_params = match connector.kind {
            ConnectorKind::Simple => path_parameters(&connector, &self.path_params)?,
            ConnectorKind::Composite => Vec::new(),
        };
        Ok(ResolvedRun {
            registry,
            connector,
            path_params,
            query: self.query,
        })
    }
}

/// A request that named a connector it may call, waiting for its body.
#[derive(Debug)]
pub(crate) struct ResolvedRun {
    registry: Arc<Registry>,
    connector: Arc<Connector>,
    path_params: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl ResolvedRun {
    /// The run's input, with the caller's `body` (and its `content_type`); `header` looks up
    /// the caller's headers by name, for the connector's overridable ones.
    pub(crate) fn into_input(
        self,
        request_id: Arc<str>,
        body: Bytes,
        content_type: Option<String>,
        header: impl Fn(&str) -> Option<HeaderValue>,
        caller: CallerVars,
    ) -> RunInput {
        let overrides = CallerOverrides::collect(&self.connector, header, &self.query);
        let request = RequestView::new(body, content_type, self.query);
        RunInput::new(
            self.registry,
            self.connector,
            request_id,
            request,
            self.path_params,
            overrides,
            caller,
        )
    }

    /// The connector the request names.
    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }
}

/// Everything a run needs; shared by its messages, never copied.
#[derive(Debug)]
pub struct RunInput {
    /// The registry snapshot the run started with (kept to its end).
    pub registry: Arc<Registry>,
    /// The connector being run.
    pub connector: Arc<Connector>,
    /// The request id.
    pub request_id: Arc<str>,
    /// Top-level template variables other than `steps` and `response`, shared by every
    /// render of the run.
    pub vars: Arc<Vec<(&'static str, Value)>>,
    /// Caller overrides.
    pub overrides: CallerOverrides,
    /// The caller's body and `Content-Type`, sent on as they are by a simple POST, PUT or
    /// PATCH connector without a `request_body` (docs/spec.md §15, the platform's rule).
    pub forwarded_body: Option<(Bytes, Option<HeaderValue>)>,
    /// The context of the request's SERVER span, when tracing is on.
    pub trace: Option<crate::trace::Context>,
    /// The run's log span when it is traced (its fields carry the trace id): the steps'
    /// futures run in it, so their log lines carry it too without a span of their own.
    pub log_span: Option<tracing::Span>,
    /// The steps' resolved requests, kept only when the caller asked for `X-Debug-Request`
    /// and may have it (docs/spec.md §14).
    pub debug: Option<super::debug::DebugLog>,
}

impl RunInput {
    /// Builds the input of a run of `connector` for the caller's request.
    pub fn new(
        registry: Arc<Registry>,
        connector: Arc<Connector>,
        request_id: Arc<str>,
        request: RequestView,
        path_params: Vec<(String, String)>,
        overrides: CallerOverrides,
        caller: CallerVars,
    ) -> Self {
        let forwarded_body = forwards_body(&connector).then(|| {
            let content_type = request
                .content_type()
                .and_then(|ct| HeaderValue::from_str(ct).ok());
            (request.body().clone(), content_type)
        });
        let request = Arc::new(request);
        let mut vars = Vec::with_capacity(6);
        if connector.kind == ConnectorKind::Simple {
            vars.push(("pathParams", Value::from_pairs(path_params)));
            vars.push(("body_text", request.body_text()));
            vars.push(("body_raw", request.body_raw()));
        }
        vars.push(("request", Value::from_dyn_object(request)));
        if let Some(user) = caller.user {
            vars.push(("user", user));
        }
        if let Some(tenant_id) = caller.tenant_id {
            vars.push(("tenant_id", tenant_id));
        }
        vars.push((
            json_cache::VARIABLE,
            Value::from_object(JsonCache::default()),
        ));
        RunInput {
            registry,
            connector,
            request_id,
            vars: Arc::new(vars),
            overrides,
            forwarded_body,
            trace: None,
            log_span: None,
            debug: None,
        }
    }

    /// Whether this is a composite run.
    pub(crate) fn is_composite(&self) -> bool {
        self.connector.kind == ConnectorKind::Composite
    }
}

/// Whether `connector` sends the caller's body on: a simple POST, PUT or PATCH connector with
/// a blank `request_body` (a composite step with a blank one sends no body).
fn forwards_body(connector: &Connector) -> bool {
    use crate::registry::model::HttpMethod;
    connector.kind == ConnectorKind::Simple
        && connector.steps.first().is_some_and(|step| {
            step.request_body.is_none()
                && matches!(
                    step.method,
                    HttpMethod::POST | HttpMethod::PUT | HttpMethod::PATCH
                )
        })
}

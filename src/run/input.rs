//! What one run starts from: the registry snapshot, the connector, the caller's request as
//! templates see it, and the values the caller may override.

use std::sync::Arc;

use awc::http::header::HeaderValue;
use minijinja::Value;

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
    pub fn collect(
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
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The caller's value for query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Path parameters the caller got wrong (SPEC §3): missing ones win over invalid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathParamError {
    /// These declared parameters have no value.
    Missing(Vec<String>),
    /// These values break the path parameter rule.
    Invalid(Vec<String>),
}

/// The values of `connector`'s declared path parameters: the caller's (`sent`), else the
/// declared default.
pub fn path_parameters(
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
    ) -> Self {
        let request = Arc::new(request);
        let mut vars = Vec::with_capacity(4);
        if connector.kind == ConnectorKind::Simple {
            vars.push(("pathParams", Value::from_pairs(path_params)));
            vars.push(("body_text", request.body_text()));
            vars.push(("body_raw", request.body_raw()));
        }
        vars.push(("request", Value::from_dyn_object(request)));
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
        }
    }

    /// Whether this is a composite run.
    pub fn is_composite(&self) -> bool {
        self.connector.kind == ConnectorKind::Composite
    }
}

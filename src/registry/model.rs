//! The registry file as users write it (`connectors_registry.json`, docs/spec.md §1): serde types
//! that also generate the JSON Schema editors use.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole registry file. Both arrays are optional; unknown fields are ignored (and
/// reported as warnings by `validate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "connectors_registry.json")]
pub(crate) struct RegistryFile {
    /// Simple connectors: one templated HTTP call each.
    #[serde(default)]
    pub connectors: Vec<SimpleConnectorDef>,
    /// Composite connectors: named chains of calls run one after another.
    #[serde(default)]
    pub composite_connectors: Vec<CompositeConnectorDef>,
}

/// A simple connector: one templated HTTP call.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct SimpleConnectorDef {
    /// Display name (≤ 255 characters). Also the source of the permalink when none is given.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// Unique id used in the execute URL. Defaults to `name` lower-cased with spaces turned
    /// into `-`. Unique across simple and composite connectors.
    #[serde(default)]
    #[schemars(length(max = 255), regex(pattern = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"))]
    pub permalink: Option<String>,
    /// Upstream URL (≤ 2048). Jinja2 in the path and query only; the scheme and host are
    /// literal or `{{ get_variable('name') }}`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// HTTP method of the upstream call, which callers must also use. Default GET.
    #[serde(default)]
    #[schemars(with = "Option<HttpMethod>")]
    pub method: Option<String>,
    /// Headers sent upstream; values are templates.
    #[serde(default)]
    pub headers: Vec<KeyValueDef>,
    /// Query parameters appended to the URL; values are templates.
    #[serde(default)]
    pub query_parameters: Vec<KeyValueDef>,
    /// Declares `{{ pathParams.KEY }}` for use in `url`; callers send values in `X-Path-Params`.
    #[serde(default)]
    pub path_parameters: Vec<PathParameterDef>,
    /// How the upstream call authenticates.
    #[serde(default)]
    pub authentication: Option<AuthenticationDef>,
    /// Template of the outbound body (`body_text`, `body_raw` available).
    #[serde(default)]
    pub request_body: String,
    /// Template applied to the upstream response (`response.body`, `.status_code`, `.headers`).
    #[serde(default)]
    pub response_body: String,
    /// Content-Type returned to the widget instead of the upstream's.
    #[serde(default)]
    pub response_content_type: String,
    /// Seconds an answer of this GET/HEAD connector stays fresh when the upstream gives no
    /// freshness of its own (no `max-age`, `s-maxage` or `Expires`); the upstream's
    /// `no-store`, `no-cache` and `private` still win. Without it, answers are cached as
    /// the upstream's headers say (docs/spec.md §10).
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub cache_ttl_seconds: Option<u64>,
    /// `"off"`: never cache this connector's answers. Default `"auto"`: cache GET and HEAD
    /// answers as the upstream's `Cache-Control`, `Expires`, `ETag` and `Last-Modified` say.
    #[serde(default)]
    pub cache: Option<CacheSetting>,
    /// A quota on calls (docs/spec.md §11): over it, 429 `RATE_LIMITED` before any upstream call.
    #[serde(default)]
    pub rate_limit: Option<RateLimitDef>,
}

/// Whether a call's answers are cached (docs/spec.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheSetting {
    /// As the upstream's headers say (GET and HEAD only).
    #[default]
    Auto,
    /// Never.
    Off,
}

/// A composite connector: steps run in order; the last step's response is returned.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct CompositeConnectorDef {
    /// Display name (≤ 255 characters).
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// Unique id used in the execute URL; defaults to `name` as for simple connectors.
    #[serde(default)]
    #[schemars(length(max = 255), regex(pattern = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"))]
    pub permalink: Option<String>,
    /// The calls, in order. At least one.
    #[schemars(length(min = 1))]
    pub steps: Vec<StepDef>,
    /// `"sequential"` (default): one step after another. `"parallel"`: each step starts as
    /// soon as the steps it reads and those in its `depends_on` have finished (docs/spec.md §12).
    #[serde(default)]
    pub execution: Option<Execution>,
    /// Template of the answer, built from any steps (`steps.*`, `request.*`) instead of the
    /// last step's response.
    #[serde(default)]
    pub response_body: String,
    /// Content-Type of the answer.
    #[serde(default)]
    pub response_content_type: String,
    /// A quota on runs of the whole composite (docs/spec.md §11), taken before its first step.
    #[serde(default)]
    pub rate_limit: Option<RateLimitDef>,
}

/// `rate_limit`: at most `requests` calls per `per_seconds`, counted across replicas when
/// they share state (GCRA: `requests` at once, then one every `per_seconds / requests`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RateLimitDef {
    /// Calls allowed per period (1-1000000), also the largest burst.
    #[schemars(range(min = 1, max = 1000000))]
    pub requests: u32,
    /// The period in seconds (1-86400).
    #[schemars(range(min = 1, max = 86400))]
    pub per_seconds: u32,
    /// A template naming whose quota a call takes (e.g. `{{ user.id }}`: one quota per
    /// member). Default: one quota for the connector (or step).
    #[serde(default)]
    pub key: Option<String>,
}

/// How a composite's steps are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Execution {
    /// In the listed order, one at a time.
    #[default]
    Sequential,
    /// Each step as soon as the steps it needs have finished.
    Parallel,
}

/// What a failed step does to its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The run fails with the step's error.
    #[default]
    Fail,
    /// The failure is recorded as `steps.<name>.error` and the chain goes on.
    Continue,
}

/// `retry` of a composite step.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RetryDef {
    /// Tries in all, the first included (1-5).
    #[schemars(range(min = 1, max = 5))]
    pub attempts: u32,
    /// Wait before the second try, in milliseconds (doubled for each further one, with
    /// jitter). Default 100, at most 10000.
    #[serde(default)]
    #[schemars(range(max = 10000))]
    pub backoff_ms: Option<u64>,
    /// What is retried: statuses (400-599), `"network"`, `"timeout"`. Default
    /// `[502, 503, 504, "network", "timeout"]`.
    #[serde(default)]
    pub retry_on: Option<Vec<RetryOnDef>>,
}

/// One entry of `retry.retry_on`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RetryOnDef {
    /// An upstream status, 400-599.
    Status(u16),
    /// `"network"` or `"timeout"`.
    Failure(String),
}

/// One call of a composite connector.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct StepDef {
    /// Slug, unique within the composite; later steps read `steps.<name>` (or
    /// `steps['fetch-user']` for hyphenated names).
    #[schemars(regex(pattern = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"), length(max = 255))]
    pub name: String,
    /// Upstream URL, as for simple connectors.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// HTTP method. Default GET.
    #[serde(default)]
    #[schemars(with = "Option<HttpMethod>")]
    pub method: Option<String>,
    /// Headers sent upstream; values are templates.
    #[serde(default)]
    pub headers: Vec<KeyValueDef>,
    /// Query parameters appended to the URL; values are templates.
    #[serde(default)]
    pub query_parameters: Vec<KeyValueDef>,
    /// How this call authenticates.
    #[serde(default)]
    pub authentication: Option<AuthenticationDef>,
    /// Template of the outbound body (`request.*`, `steps.*` available).
    #[serde(default)]
    pub request_body: String,
    /// Template applied to this step's response; later steps see its output as `body`.
    #[serde(default)]
    pub response_body: String,
    /// Content-Type returned to the widget; only the last step's matters.
    #[serde(default)]
    pub response_content_type: String,
    /// As for simple connectors: freshness when the upstream gives none (GET/HEAD steps).
    #[serde(default)]
    #[schemars(range(max = 86400))]
    pub cache_ttl_seconds: Option<u64>,
    /// As for simple connectors: `"off"` never caches this step's answers.
    #[serde(default)]
    pub cache: Option<CacheSetting>,
    /// A Jinja2 expression (no `{{ }}`); when it is false the step is skipped.
    #[serde(default)]
    pub when: Option<String>,
    /// `"fail"` (default) or `"continue"`: record the failure as `steps.<name>.error` and go on.
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// A Jinja2 expression yielding a list: the step runs once per item, with `item` and
    /// `item_index` in its templates.
    #[serde(default)]
    pub for_each: Option<String>,
    /// Items of `for_each` running at once: 1-16, default 4.
    #[serde(default)]
    #[schemars(range(min = 1, max = 16))]
    pub max_concurrency: Option<u64>,
    /// Tries again after the failures it names, with exponential backoff.
    #[serde(default)]
    pub retry: Option<RetryDef>,
    /// This step's time limit in milliseconds (1-300000), retries included.
    #[serde(default)]
    #[schemars(range(min = 1, max = 300000))]
    pub timeout_ms: Option<u64>,
    /// Earlier steps that must finish first, even without a data dependency.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// A quota on this step's calls (docs/spec.md §11); a `for_each` step takes one per item,
    /// all before its first call.
    #[serde(default)]
    pub rate_limit: Option<RateLimitDef>,
}

/// HTTP methods a connector may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
#[allow(clippy::upper_case_acronyms)]
pub enum HttpMethod {
    /// GET
    GET,
    /// POST
    POST,
    /// PUT
    PUT,
    /// PATCH
    PATCH,
    /// DELETE
    DELETE,
    /// HEAD
    HEAD,
    /// OPTIONS
    OPTIONS,
}

impl HttpMethod {
    /// The method's name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HttpMethod::GET => "GET",
            HttpMethod::POST => "POST",
            HttpMethod::PUT => "PUT",
            HttpMethod::PATCH => "PATCH",
            HttpMethod::DELETE => "DELETE",
            HttpMethod::HEAD => "HEAD",
            HttpMethod::OPTIONS => "OPTIONS",
        }
    }

    /// Parses a method name, in any case.
    pub(crate) fn parse(name: &str) -> Option<HttpMethod> {
        Some(match name.to_ascii_uppercase().as_str() {
            "GET" => HttpMethod::GET,
            "POST" => HttpMethod::POST,
            "PUT" => HttpMethod::PUT,
            "PATCH" => HttpMethod::PATCH,
            "DELETE" => HttpMethod::DELETE,
            "HEAD" => HttpMethod::HEAD,
            "OPTIONS" => HttpMethod::OPTIONS,
            _ => return None,
        })
    }
}

/// A header or query parameter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct KeyValueDef {
    /// Literal name (≤ 255 characters).
    #[schemars(length(min = 1, max = 255))]
    pub key: String,
    /// Template of the value (≤ 1000 characters).
    #[schemars(length(max = 1000))]
    pub value: String,
    /// Whether callers may replace the value; the configured value is the default.
    #[serde(default)]
    pub overridable: bool,
}

/// A declared path parameter.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct PathParameterDef {
    /// Name used as `{{ pathParams.KEY }}`.
    #[schemars(length(min = 1, max = 255))]
    pub key: String,
    /// Default value used when the caller sends none.
    #[serde(default)]
    pub value: Option<String>,
    /// Accepted for compatibility; path parameters always come from the caller.
    #[serde(default)]
    pub overridable: Option<bool>,
}

/// `authentication`: a type and its configuration (docs/spec.md §4). String values in `config` are
/// templates and may call `get_secret()`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct AuthenticationDef {
    /// `none`, `api_key` (or `apikey`), `oauth_client_credentials`, `jwt`, `oauth_jwt_bearer`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Settings of that type.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// Field names known for each object, for unknown-field warnings. They are the property
/// names of the model's own JSON Schema (so the names serde reads, renames included),
/// computed once: a field added to a struct above is known at once, and cannot be reported
/// as "unknown ... is ignored" while it is honoured.
pub(crate) mod known_fields {
    use std::sync::LazyLock;

    use schemars::JsonSchema;

    use super::{
        AuthenticationDef, CompositeConnectorDef, KeyValueDef, PathParameterDef, RateLimitDef,
        RegistryFile, RetryDef, SimpleConnectorDef, StepDef,
    };

    /// The property names of `T`'s schema, in declaration order.
    fn properties<T: JsonSchema>() -> Vec<String> {
        schemars::schema_for!(T)
            .as_object()
            .and_then(|schema| schema.get("properties"))
            .and_then(serde_json::Value::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Top level of the file, and `$schema` (an editor's pointer to the schema file, which is
    /// not part of the model).
    pub(crate) static FILE: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut fields = properties::<RegistryFile>();
        fields.push("$schema".into());
        fields
    });
    /// A simple connector.
    pub(crate) static SIMPLE: LazyLock<Vec<String>> =
        LazyLock::new(properties::<SimpleConnectorDef>);
    /// A composite connector.
    pub(crate) static COMPOSITE: LazyLock<Vec<String>> =
        LazyLock::new(properties::<CompositeConnectorDef>);
    /// A composite step.
    pub(crate) static STEP: LazyLock<Vec<String>> = LazyLock::new(properties::<StepDef>);
    /// A header or query parameter.
    pub(crate) static KEY_VALUE: LazyLock<Vec<String>> = LazyLock::new(properties::<KeyValueDef>);
    /// A path parameter.
    pub(crate) static PATH_PARAMETER: LazyLock<Vec<String>> =
        LazyLock::new(properties::<PathParameterDef>);
    /// A step's `retry`.
    pub(crate) static RETRY: LazyLock<Vec<String>> = LazyLock::new(properties::<RetryDef>);
    /// `rate_limit`.
    pub(crate) static RATE_LIMIT: LazyLock<Vec<String>> = LazyLock::new(properties::<RateLimitDef>);
    /// `authentication`.
    pub(crate) static AUTHENTICATION: LazyLock<Vec<String>> =
        LazyLock::new(properties::<AuthenticationDef>);
}

/// The JSON Schema of the registry file, as checked in under `schema/`.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(RegistryFile);
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys serde writes for `value`: every field of its struct, as the file spells it.
    fn serde_keys(value: impl Serialize) -> Vec<String> {
        match serde_json::to_value(value).unwrap() {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn known_fields_are_exactly_the_fields_serde_reads() {
        let simple = SimpleConnectorDef {
            name: "n".into(),
            permalink: None,
            url: "https://a.example.com".into(),
            method: None,
            headers: Vec::new(),
            query_parameters: Vec::new(),
            path_parameters: Vec::new(),
            authentication: None,
            request_body: String::new(),
            response_body: String::new(),
            response_content_type: String::new(),
            cache_ttl_seconds: Some(60),
            cache: Some(CacheSetting::Off),
            rate_limit: Some(RateLimitDef {
                requests: 5,
                per_seconds: 60,
                key: Some("{{ user.id }}".into()),
            }),
        };
        let step = StepDef {
            name: "s".into(),
            url: "https://a.example.com".into(),
            method: None,
            headers: Vec::new(),
            query_parameters: Vec::new(),
            authentication: None,
            request_body: String::new(),
            response_body: String::new(),
            response_content_type: String::new(),
            cache_ttl_seconds: Some(60),
            cache: Some(CacheSetting::Auto),
            when: Some("true".into()),
            on_error: Some(OnError::Continue),
            for_each: Some("[1]".into()),
            max_concurrency: Some(2),
            retry: Some(RetryDef {
                attempts: 2,
                backoff_ms: Some(10),
                retry_on: Some(vec![RetryOnDef::Status(503)]),
            }),
            timeout_ms: Some(100),
            depends_on: vec!["a".into()],
            rate_limit: Some(RateLimitDef {
                requests: 5,
                per_seconds: 60,
                key: Some("{{ user.id }}".into()),
            }),
        };
        let composite = CompositeConnectorDef {
            name: "c".into(),
            permalink: None,
            steps: vec![step.clone()],
            execution: Some(Execution::Parallel),
            response_body: "{{ 1 }}".into(),
            response_content_type: "application/json".into(),
            rate_limit: Some(RateLimitDef {
                requests: 5,
                per_seconds: 60,
                key: Some("{{ user.id }}".into()),
            }),
        };
        let retry = RetryDef {
            attempts: 2,
            backoff_ms: Some(10),
            retry_on: None,
        };
        let key_value = KeyValueDef {
            key: "k".into(),
            value: "v".into(),
            overridable: false,
        };
        let path_parameter = PathParameterDef {
            key: "k".into(),
            value: None,
            overridable: None,
        };
        let authentication = AuthenticationDef {
            kind: "none".into(),
            config: Default::default(),
        };
        assert_eq!(*known_fields::SIMPLE, serde_keys(simple));
        assert!(known_fields::SIMPLE.contains(&"cache_ttl_seconds".to_string()));
        assert_eq!(*known_fields::STEP, serde_keys(step));
        assert_eq!(*known_fields::COMPOSITE, serde_keys(composite));
        assert_eq!(*known_fields::KEY_VALUE, serde_keys(key_value));
        assert_eq!(*known_fields::PATH_PARAMETER, serde_keys(path_parameter));
        assert_eq!(*known_fields::AUTHENTICATION, serde_keys(authentication));
        assert_eq!(*known_fields::RETRY, serde_keys(retry));
        assert_eq!(
            *known_fields::RATE_LIMIT,
            serde_keys(RateLimitDef {
                requests: 1,
                per_seconds: 1,
                key: None,
            })
        );
        assert_eq!(
            *known_fields::FILE,
            ["connectors", "composite_connectors", "$schema"]
        );
    }
}

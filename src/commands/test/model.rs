//! The test file as registry authors write it (`connectors_tests.json`, docs/spec.md §14):
//! serde types that also generate its JSON Schema (`connector-runtime schema --tests`).
//! Unknown fields are errors: a misspelt expectation must not pass silently.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A test file: the secrets and variables the registry is loaded with, and the test cases.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "connectors_tests.json")]
pub struct TestFile {
    /// Values of `get_secret('name')`. These are the only secrets a test sees: the
    /// environment and any secrets directory are never read. Use placeholders.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Values of `get_variable('name')` (URL hosts among them).
    #[serde(default)]
    pub variables: serde_json::Map<String, Value>,
    /// The test cases, run in order.
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

/// One test case: a call of one connector, the mocked upstream answers and what to expect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the report (unique names make reports easier to read).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Permalink of the connector called (simple or composite).
    #[schemars(length(min = 1))]
    pub connector: String,
    /// What the widget sends.
    #[serde(default)]
    pub request: TestRequest,
    /// Upstream answers by step name (a composite's steps) or by the permalink (a simple
    /// connector); `"<name>.token"` answers that step's OAuth token request (unmocked, it
    /// gets access token `test-token`). A call without a mock fails the test.
    #[serde(default)]
    pub mocks: BTreeMap<String, Mock>,
    /// What the answer and the upstream requests must be; fields left out are not checked.
    #[serde(default)]
    pub expect: Expect,
}

/// The widget's request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The body: a JSON value sent as `application/json`; a string is sent as it is (with
    /// the `Content-Type` of `headers`, or `text/plain`).
    #[serde(default)]
    pub payload: Option<Value>,
    /// Query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Request headers (for overridable headers, `X-CSRF-Token`, ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Path parameters of a simple connector (sent in `X-Path-Params`).
    #[serde(default)]
    pub path_params: BTreeMap<String, String>,
    /// The caller's token claims (docs/spec.md §9), seen by templates as `user`; `tenant_id`
    /// among them is the run's `tenant_id`. The runner signs a token with them (its own
    /// test issuer, valid one hour unless `exp` is given).
    #[serde(default)]
    pub user: Option<serde_json::Map<String, Value>>,
}

/// One mocked upstream answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mock {
    /// Status code (default 200).
    #[serde(default = "ok")]
    #[schemars(range(min = 100, max = 599))]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: a string is answered as it is (`text/plain` unless `headers` say
    /// otherwise); any other JSON value as JSON (`application/json`). None: empty.
    #[serde(default)]
    pub body: Option<Value>,
}

fn ok() -> u16 {
    200
}

/// What the case expects. Bodies that are JSON compare as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The answer's HTTP status.
    #[serde(default)]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// The answer's body: compared as JSON when the answer is JSON, else as text.
    #[serde(default)]
    pub body: Option<Value>,
    /// Text the answer's body must contain (one string or several).
    #[serde(default)]
    pub body_contains: Option<OneOrMany>,
    /// Headers the answer must have, with these values (names in any case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request each step sent (its first call; a `for_each` step: item 0), by step
    /// name or permalink.
    #[serde(default)]
    pub requests: BTreeMap<String, ExpectedRequest>,
    /// The error envelope the answer must be.
    #[serde(default)]
    pub error: Option<ExpectedError>,
}

/// One string or a list of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings.
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(items) => items.iter().map(String::as_str).collect(),
        }
    }
}

/// A step's rendered request as the upstream would have received it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRequest {
    /// The whole URL, query string included.
    #[serde(default)]
    pub url: Option<String>,
    /// The method.
    #[serde(default)]
    pub method: Option<String>,
    /// Headers it must carry with these values (a subset; names in any case; the
    /// credential included, e.g. `Authorization: Bearer test-token`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Its body: compared as JSON when it is JSON, else as text.
    #[serde(default)]
    pub body: Option<Value>,
}

/// An expected error envelope (docs/spec.md §6).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    /// `errors.code`, e.g. `DOWNSTREAM_HTTP_ERROR`.
    #[serde(default)]
    pub code: Option<String>,
    /// `errors.scope`, e.g. `Composite step 'fetch' (index 1): Downstream (HTTP error)`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// The JSON Schema of test files (`schema/connectors_tests.schema.json`).
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(TestFile);
    serde_json::to_value(schema).unwrap_or_default()
}

//! Runs one test case through the real engine: the HTTP routes of the server (the same
//! request resolution, caller identity, rendering, authentication, error envelope and timing
//! headers) called in process, with a step actor whose transport is the case's mocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::Method;
use actix_web::{test as actix_test, web, App};
use bytes::Bytes;
use serde_json::Value;

use super::model::{ExpectedRequest, Mock, TestCase};
use crate::config::ServeArgs;
use crate::http::{self, AppState, OperatorAccess};
use crate::identity::{Identity, IdentityArgs, KeySet, KeySource, KeyStore, KeyStoreOptions};
use crate::metrics::Metrics;
use crate::registry::{ConnectorKind, Registry, RegistryActor, RegistryHandle};
use crate::run::step::{StepActor, StepRunner};
use crate::run::IdentityGate;
use crate::server::StepActors;
use crate::upstream::transport::{MockAnswer, MockUpstreams, RecordedCall};
use crate::upstream::{build_client, Transport};

/// The claim of the test caller's token that gives `tenant_id`.
const TENANT_CLAIM: &str = "tenant_id";

/// What every case of one test file shares: the registry (loaded with the file's secrets
/// and variables) and the caller identity that trusts the runner's own signing key.
pub(crate) struct Engine {
    pub registry: Arc<Registry>,
    pub handle: RegistryHandle,
    pub registry_actor: Addr<RegistryActor>,
    pub identity: Arc<IdentityGate>,
    pub serve: ServeArgs,
    /// Send over the network and keep the answers (`--record`) instead of mocking.
    pub record: bool,
}

/// The identity flags of the runner: its test issuer, and `tenant_id` from a claim.
fn identity_args() -> IdentityArgs {
    let mut args = crate::mock_upstream::identity::identity_args(String::new());
    args.identity_jwks_url = None;
    args.identity_jwks_file = Some("connector-runtime-test.jwks.json".into());
    args.tenant_id = None;
    args.identity_tenant_claim = Some(TENANT_CLAIM.into());
    args
}

/// The identity gate of the runner: it verifies tokens signed with the built-in test key.
pub(crate) fn identity_gate() -> Arc<IdentityGate> {
    let args = identity_args();
    let keys = KeySet::parse(
        crate::mock_upstream::identity::jwks()
            .to_string()
            .as_bytes(),
    )
    .expect("the built-in test key parses");
    let store = KeyStore::with_keys(
        KeySource::File("connector-runtime-test.jwks.json".into()),
        keys,
        KeyStoreOptions::default(),
    );
    let identity = Identity::with_store(&args, Arc::new(store));
    Arc::new(IdentityGate::new(Some(Arc::new(identity)), &args))
}

/// The answer a case got, and every upstream call it made.
pub(crate) struct CaseRun {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub calls: Vec<RecordedCall>,
    pub duration: Duration,
}

/// Turns a test file's mock into the answer the transport gives.
pub(crate) fn mock_answer(mock: &Mock) -> MockAnswer {
    let mut headers: Vec<(String, String)> = mock
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let has_content_type = headers.iter().any(|(k, _)| k == "content-type");
    let (body, content_type) = match &mock.body {
        None | Some(Value::Null) => (Bytes::new(), None),
        Some(Value::String(text)) => (Bytes::from(text.clone()), Some("text/plain")),
        Some(other) => (Bytes::from(other.to_string()), Some("application/json")),
    };
    if let (false, Some(ct)) = (has_content_type, content_type) {
        headers.push(("content-type".into(), ct.into()));
    }
    MockAnswer {
        status: mock.status,
        headers,
        body,
    }
}

/// The caller's token for `claims`: issued by the runner's test issuer, valid for an hour
/// unless the claims say otherwise.
fn caller_token(claims: &serde_json::Map<String, Value>) -> Result<String, String> {
    let now = crate::template::functions::unix_now();
    let mut claims = claims.clone();
    claims.insert("iss".into(), crate::mock_upstream::identity::ISSUER.into());
    claims.insert("aud".into(), crate::mock_upstream::identity::ISSUER.into());
    claims.entry("sub").or_insert_with(|| "test-user".into());
    claims.entry("iat").or_insert_with(|| now.into());
    claims.entry("exp").or_insert_with(|| (now + 3600).into());
    crate::mock_upstream::identity::sign(&Value::Object(claims)).map_err(|e| e.to_string())
}

impl Engine {
    /// Runs `case` (whose connector exists: checked when the file was read).
    pub(crate) async fn run(&self, case: &TestCase) -> Result<CaseRun, String> {
        let connector = self
            .registry
            .get(&case.connector)
            .ok_or_else(|| format!("no connector '{}'", case.connector))?;
        let metrics = Metrics::new();
        // A test never touches the network: no shared state, whatever the environment says.
        let isolated = ServeArgs {
            shared_state: Default::default(),
            ..self.serve.clone()
        };
        let step_actors =
            StepActors::from_args(&isolated, metrics.clone(), None).map_err(|e| e.to_string())?;
        let mocks = MockUpstreams::new(
            case.mocks
                .iter()
                .map(|(k, m)| (k.clone(), mock_answer(m)))
                .collect(),
        );
        let transport = if self.record {
            Transport::Record(build_client(&step_actors.client), mocks.clone())
        } else {
            Transport::Mock(mocks.clone())
        };
        let steps = StepRunner::new(transport, step_actors.shared.clone());
        let state = AppState {
            tracing: None,
            registry: self.handle.clone(),
            step_actor: StepActor::with_runner(steps.clone()).start(),
            steps,
            request_body: http::body::BodyLimits {
                max_bytes: self.serve.max_request_bytes,
                timeout: Duration::from_millis(self.serve.request_body_timeout_ms),
            },
            metrics,
            operator: OperatorAccess {
                registry_actor: self.registry_actor.clone(),
                admin_token: None,
                webhook_secret: None,
                branch: None,
            },
            console: false,
            allow_origins: Vec::new().into(),
            run_slots: http::overload::RunSlots::new(self.serve.max_in_flight),
            identity: self.identity.clone(),
            debug_requests: false,
        };
        let app = actix_test::init_service(
            App::new()
                .app_data(web::Data::new(state))
                .configure(http::configure),
        )
        .await;
        let permalink: String =
            percent_encoding::utf8_percent_encode(&connector.permalink, SEGMENT).to_string();
        let mut uri = match connector.kind {
            ConnectorKind::Simple => format!("/connectors/{permalink}/execute"),
            ConnectorKind::Composite => format!("/connectors/composite/{permalink}/execute"),
        };
        let request = &case.request;
        if !request.query.is_empty() {
            uri.push('?');
            uri.push_str(&serde_urlencoded::to_string(&request.query).unwrap_or_default());
        }
        let method = Method::from_bytes(connector.caller_method().as_str().as_bytes())
            .unwrap_or(Method::GET);
        let mut req = actix_test::TestRequest::default()
            .method(method)
            .uri(&uri)
            .insert_header((http::request_id::HEADER, "connector-runtime-test"));
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("request.headers: '{name}' is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("request.headers.{name}: not a valid header value"))?;
            req = req.append_header((name, value));
        }
        if !request.path_params.is_empty() {
            req = req.insert_header((
                crate::http::execute::PATH_PARAMS_HEADER,
                serde_urlencoded::to_string(&request.path_params).unwrap_or_default(),
            ));
        }
        if let Some(claims) = &request.user {
            req = req.insert_header((AUTHORIZATION, format!("Bearer {}", caller_token(claims)?)));
        }
        let has_content_type = request
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"));
        match &request.payload {
            None => {}
            Some(Value::String(text)) => {
                if !has_content_type {
                    req = req.insert_header((CONTENT_TYPE, "text/plain"));
                }
                req = req.set_payload(text.clone());
            }
            Some(other) => {
                if !has_content_type {
                    req = req.insert_header((CONTENT_TYPE, "application/json"));
                }
                req = req.set_payload(other.to_string());
            }
        }
        let started = Instant::now();
        let response = actix_test::call_service(&app, req.to_request()).await;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = actix_test::read_body(response).await;
        Ok(CaseRun {
            status,
            headers,
            body,
            calls: mocks.calls(),
            duration: started.elapsed(),
        })
    }
}

/// What a permalink may hold that a path segment may not.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One way a case did not pass.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Mismatch {
    /// What was checked: `status`, `body`, `headers.x-a`, `requests.auth.url`, `mock`, ...
    pub field: String,
    /// What the file expects.
    pub expected: Option<String>,
    /// What the run gave.
    pub actual: Option<String>,
    /// A sentence when expected and actual do not say it all.
    pub message: Option<String>,
}

impl Mismatch {
    fn differs(field: impl Into<String>, expected: String, actual: String) -> Self {
        Mismatch {
            field: field.into(),
            expected: Some(expected),
            actual: Some(actual),
            message: None,
        }
    }

    fn says(field: impl Into<String>, message: String) -> Self {
        Mismatch {
            field: field.into(),
            expected: None,
            actual: None,
            message: Some(message),
        }
    }
}

/// Text of a body, for a report.
fn text_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Whether `actual` is the `expected` body: as JSON when it parses as JSON, else as text.
/// A string expectation also matches the same text, or JSON equal to the string parsed.
pub(crate) fn body_matches(expected: &Value, actual: &[u8]) -> bool {
    let parsed = serde_json::from_slice::<Value>(actual).ok();
    match expected {
        Value::String(text) => {
            text.as_bytes() == actual
                || parsed.as_ref() == Some(expected)
                || serde_json::from_str::<Value>(text)
                    .ok()
                    .is_some_and(|e| parsed.as_ref() == Some(&e))
        }
        other => parsed.as_ref() == Some(other),
    }
}

fn show(expected: &Value) -> String {
    match expected {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every way `run` differs from what `case` expects; empty when the case passes.
pub(crate) fn check(case: &TestCase, run: &CaseRun, mocked: bool) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if mocked {
        for call in run.calls.iter().filter(|c| c.answer.is_none()) {
            let name = call.key.strip_suffix(".token").unwrap_or(&call.key);
            out.push(Mismatch::says(
                "mocks",
                format!("no mock for step '{name}'"),
            ));
        }
    }
    let expect = &case.expect;
    if let Some(status) = expect.status {
        if status != run.status {
            out.push(Mismatch::differs(
                "status",
                status.to_string(),
                run.status.to_string(),
            ));
        }
    }
    if let Some(body) = &expect.body {
        if !body_matches(body, &run.body) {
            out.push(Mismatch::differs("body", show(body), text_of(&run.body)));
        }
    }
    if let Some(contains) = &expect.body_contains {
        let text = text_of(&run.body);
        for part in contains.items() {
            if !text.contains(part) {
                out.push(Mismatch {
                    field: "body_contains".into(),
                    expected: Some(part.to_string()),
                    actual: Some(text.clone()),
                    message: Some("the body does not contain the text".into()),
                });
            }
        }
    }
    for (name, value) in &expect.headers {
        let actual = header(&run.headers, name);
        if actual != Some(value.as_str()) {
            out.push(Mismatch::differs(
                format!("headers.{name}"),
                value.clone(),
                actual.map_or_else(|| "(absent)".to_string(), str::to_string),
            ));
        }
    }
    for (step, expected) in &expect.requests {
        check_request(step, expected, &run.calls, &mut out);
    }
    if let Some(error) = &expect.error {
        let envelope = serde_json::from_slice::<Value>(&run.body).ok();
        let errors = envelope.as_ref().and_then(|e| e.get("errors"));
        match errors {
            None => out.push(Mismatch::differs(
                "error",
                "an error envelope".into(),
                format!("HTTP {}: {}", run.status, text_of(&run.body)),
            )),
            Some(errors) => {
                let field = |key: &str| errors.get(key).and_then(Value::as_str).map(str::to_string);
                for (key, want) in [("code", &error.code), ("scope", &error.scope)] {
                    if let Some(want) = want {
                        let got = field(key);
                        if got.as_deref() != Some(want.as_str()) {
                            out.push(Mismatch::differs(
                                format!("error.{key}"),
                                want.clone(),
                                got.unwrap_or_else(|| "null".into()),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn check_request(
    step: &str,
    expected: &ExpectedRequest,
    calls: &[RecordedCall],
    out: &mut Vec<Mismatch>,
) {
    let Some(call) = calls.iter().find(|c| c.key == step) else {
        out.push(Mismatch::says(
            format!("requests.{step}"),
            format!("step '{step}' sent no request"),
        ));
        return;
    };
    let at = |what: &str| format!("requests.{step}.{what}");
    if let Some(url) = &expected.url {
        if *url != call.url {
            out.push(Mismatch::differs(at("url"), url.clone(), call.url.clone()));
        }
    }
    if let Some(method) = &expected.method {
        if !method.eq_ignore_ascii_case(&call.method) {
            out.push(Mismatch::differs(
                at("method"),
                method.clone(),
                call.method.clone(),
            ));
        }
    }
    for (name, value) in &expected.headers {
        let actual = header(&call.headers, name);
        if actual != Some(value.as_str()) {
            out.push(Mismatch::differs(
                at(&format!("headers.{name}")),
                value.clone(),
                actual.map_or_else(|| "(absent)".to_string(), str::to_string),
            ));
        }
    }
    if let Some(body) = &expected.body {
        let actual = call.body.clone().unwrap_or_default();
        if !body_matches(body, &actual) {
            out.push(Mismatch::differs(at("body"), show(body), text_of(&actual)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_compare_as_json_when_they_are_json() {
        assert!(body_matches(
            &json!({"a": 1, "b": [1]}),
            br#"{ "b": [1], "a": 1 }"#
        ));
        assert!(!body_matches(&json!({"a": 1}), br#"{"a": 2}"#));
        assert!(body_matches(&json!("plain text"), b"plain text"));
        assert!(body_matches(&json!(r#"{"a":1}"#), br#"{ "a": 1 }"#));
        assert!(body_matches(&json!("x"), br#""x""#));
        assert!(!body_matches(&json!({"a": 1}), b"not json"));
    }
}

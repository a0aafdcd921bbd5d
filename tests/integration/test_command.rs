//! `connector-runtime test` run as the real binary the way a registry's CI runs it (docs/spec.md
//! §14): passing and failing cases in all three formats, bad test files, `--record` against a
//! loopback upstream; and `X-Debug-Request` through the real server, on and off.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::common::app::{spawn_app_with, AppOptions};
use crate::common::upstreams::{echo_route, json_route, upstream, Log};

/// A simple connector with an API key from a secret, and a composite: an OAuth step, a step
/// reading the caller (`user`) and a step reading the first one's answer.
fn registry() -> Value {
    json!({
        "connectors": [{
            "name": "Get Item", "permalink": "get-item",
            "url": "{{ get_variable('api') }}/items/{{ pathParams.item_id }}",
            "path_parameters": [{"key": "item_id"}],
            "headers": [{"key": "X-Api-Key", "value": "{{ get_secret('api_key') }}"}],
            "response_body": "{\"name\": {{ (response.body | from_json).name | tojson }}}",
            "response_content_type": "application/json"
        }],
        "composite_connectors": [{
            "name": "Member Profile", "permalink": "member-profile",
            "steps": [
                {"name": "lookup", "url": "{{ get_variable('api') }}/members",
                 "query_parameters": [{"key": "email", "value": "{{ user.email }}"}],
                 "authentication": {"type": "oauth_client_credentials", "config": {
                     "client_id": "widget", "client_secret": "{{ get_secret('client_secret') }}",
                     "token_url": "{{ get_variable('api') }}/oauth/token"}}},
                {"name": "profile", "method": "POST", "url": "{{ get_variable('api') }}/profiles",
                 "headers": [{"key": "Content-Type", "value": "application/json"}],
                 "request_body": "{\"id\": {{ (steps.lookup.body | from_json).id | tojson }}}"}
            ]
        }, {
            "name": "Chain", "permalink": "chain",
            "steps": [
                {"name": "members", "url": "{{ get_variable('api') }}/members",
                 "query_parameters": [{"key": "limit", "value": "1"}],
                 "authentication": {"type": "oauth_client_credentials", "config": {
                     "client_id": "widget", "client_secret": "{{ get_secret('client_secret') }}",
                     "token_url": "{{ get_variable('api') }}/oauth/token"}}},
                {"name": "profile", "method": "POST", "url": "{{ get_variable('api') }}/profiles",
                 "request_body": "{\"id\": {{ (steps.members.body | from_json).id | tojson }}}"}
            ]
        }]
    })
}

/// Cases that pass against [`registry`].
fn passing_cases() -> Value {
    json!([
        {"name": "an item by id", "connector": "get-item",
         "request": {"path_params": {"item_id": "itm_1"}},
         "mocks": {"get-item": {"body": {"id": "itm_1", "name": "Lamp"}}},
         "expect": {"status": 200, "body": {"name": "Lamp"},
                    "headers": {"content-type": "application/json"},
                    "requests": {"get-item": {"url": "https://api.example.test/items/itm_1",
                                              "method": "GET",
                                              "headers": {"x-api-key": "key-placeholder"}}}}},
        {"name": "a member's profile", "connector": "member-profile",
         "request": {"user": {"sub": "m-1", "email": "ada@example.com"}},
         "mocks": {"lookup": {"body": {"id": "m-1"}},
                   "profile": {"status": 201, "body": {"id": "m-1", "plan": "pro"}}},
         "expect": {"status": 201, "body_contains": ["\"plan\"", "pro"],
                    "requests": {
                        "lookup": {"url": "https://api.example.test/members?email=ada%40example.com",
                                   "headers": {"Authorization": "Bearer test-token"}},
                        "profile": {"method": "POST", "body": {"id": "m-1"}}}}},
        {"name": "the profile service fails", "connector": "member-profile",
         "request": {"user": {"sub": "m-1", "email": "ada@example.com"}},
         "mocks": {"lookup": {"body": {"id": "m-1"}}, "profile": {"status": 503, "body": "down"}},
         "expect": {"status": 502, "error": {"code": "DOWNSTREAM_HTTP_ERROR",
                    "scope": "Composite step 'profile' (index 1): Downstream (HTTP error)"}}}
    ])
}

/// Cases that fail: a wrong status and body, a wrong request header, a missing mock.
fn failing_cases() -> Value {
    json!([
        {"name": "expects the wrong name", "connector": "get-item",
         "request": {"path_params": {"item_id": "itm_1"}},
         "mocks": {"get-item": {"body": {"id": "itm_1", "name": "Lamp"}}},
         "expect": {"status": 200, "body": {"name": "Chair"},
                    "requests": {"get-item": {"headers": {"x-api-key": "other"}}}}},
        {"name": "forgets a mock", "connector": "member-profile",
         "request": {"user": {"email": "ada@example.com"}},
         "mocks": {"lookup": {"body": {"id": "m-1"}}},
         "expect": {"status": 201}}
    ])
}

fn test_file(tests: Value) -> Value {
    json!({
        "secrets": {"api_key": "key-placeholder", "client_secret": "cs-placeholder"},
        "variables": {"api": "https://api.example.test"},
        "tests": tests
    })
}

/// A directory holding the registry and, when given, `connectors_tests.json` beside it.
fn project(registry: &Value, tests: Option<&Value>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("connectors_registry.json"), registry);
    if let Some(tests) = tests {
        write(&dir.path().join("connectors_tests.json"), tests);
    }
    dir
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Runs `connector-runtime test --registry DIR/connectors_registry.json ARGS`, with no
/// secrets in the environment (a test file's own secrets are the only ones read).
fn run_test(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .arg("test")
        .arg("--registry")
        .arg(dir.join("connectors_registry.json"))
        .args(args)
        .env("CONNECTOR_SECRET_API_KEY", "from-the-environment")
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn passing_cases_exit_0_from_the_default_file_beside_the_registry() {
    let dir = project(&registry(), Some(&test_file(passing_cases())));
    let output = run_test(dir.path(), &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(text.contains("ok   an item by id (get-item"), "{text}");
    assert!(text.contains("ok   the profile service fails"), "{text}");
    assert!(text.contains("ok: 3 test(s), 3 passed, 0 failed"), "{text}");
}

#[test]
fn failures_show_expected_and_actual_in_text() {
    let dir = project(&registry(), Some(&test_file(failing_cases())));
    let output = run_test(dir.path(), &["--format", "text"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    assert!(text.contains("FAIL expects the wrong name"), "{text}");
    assert!(
        text.contains(r#"body: expected {"name":"Chair"}, actual {"name": "Lamp"}"#),
        "{text}"
    );
    assert!(
        text.contains(
            "requests.get-item.headers.x-api-key: expected other, actual key-placeholder"
        ),
        "{text}"
    );
    assert!(text.contains("FAIL forgets a mock"), "{text}");
    assert!(text.contains("no mock for step 'profile'"), "{text}");
    assert!(text.contains("status: expected 201, actual 502"), "{text}");
    assert!(
        text.contains("FAILED: 2 test(s), 0 passed, 2 failed"),
        "{text}"
    );
    // The environment's secret is never read: the file's placeholder was sent.
    assert!(!text.contains("from-the-environment"), "{text}");
}

#[test]
fn the_json_report_is_for_tools() {
    let mut cases = passing_cases().as_array().unwrap().clone();
    cases.extend(failing_cases().as_array().unwrap().iter().cloned());
    let dir = project(&registry(), Some(&test_file(Value::Array(cases))));
    let output = run_test(dir.path(), &["--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(report["passed"], 3);
    assert_eq!(report["failed"], 2);
    let tests = report["files"][0]["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 5);
    assert_eq!(tests[0]["passed"], true);
    assert_eq!(tests[0]["status"], 200);
    assert!(tests[0]["duration_ms"].as_f64().unwrap() >= 0.0);
    let wrong = &tests[3];
    assert_eq!(wrong["name"], "expects the wrong name");
    assert_eq!(wrong["passed"], false);
    let body = wrong["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "body")
        .unwrap();
    assert_eq!(body["expected"], r#"{"name":"Chair"}"#);
    assert_eq!(body["actual"], r#"{"name": "Lamp"}"#);
    assert_eq!(
        tests[4]["failures"][0]["message"],
        "no mock for step 'profile'"
    );
}

/// An element's name and attributes.
type Element = (String, Vec<(String, String)>);

/// The attributes of every `name` element of a JUnit document, and the text of each
/// `failure`: parsed as XML (a malformed document fails the parse).
fn junit_elements(xml: &str) -> (Vec<Element>, Vec<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut elements = Vec::new();
    let mut failures = Vec::new();
    let mut in_failure = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                in_failure = name == "failure";
                let attributes = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("a well-formed attribute");
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .expect("escaped")
                                .into_owned(),
                        )
                    })
                    .collect();
                elements.push((name, attributes));
            }
            Event::Text(t) if in_failure => {
                failures.push(t.decode().expect("text").into_owned());
            }
            Event::GeneralRef(r) if in_failure => {
                let entity = String::from_utf8(r.to_vec()).unwrap();
                let c = match entity.as_str() {
                    "quot" => "\"",
                    "apos" => "'",
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    other => panic!("unexpected entity {other}"),
                };
                if let Some(last) = failures.last_mut() {
                    last.push_str(c);
                } else {
                    failures.push(c.to_string());
                }
            }
            Event::End(e) if e.name().as_ref() == b"failure" => in_failure = false,
            Event::Eof => break,
            _ => {}
        }
    }
    (elements, failures)
}

fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> &'a str {
    attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no attribute {key}"))
}

#[test]
fn the_junit_report_is_well_formed_xml_with_counts_and_failures() {
    let mut cases = passing_cases().as_array().unwrap().clone();
    cases.extend(failing_cases().as_array().unwrap().iter().cloned());
    let dir = project(&registry(), Some(&test_file(Value::Array(cases))));
    let output = run_test(dir.path(), &["--format", "junit"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let xml = stdout(&output);
    let (elements, failures) = junit_elements(&xml);
    let suites = &elements.iter().find(|(n, _)| n == "testsuites").unwrap().1;
    assert_eq!(attribute(suites, "tests"), "5");
    assert_eq!(attribute(suites, "failures"), "2");
    let suite = &elements.iter().find(|(n, _)| n == "testsuite").unwrap().1;
    assert!(attribute(suite, "name").ends_with("connectors_tests.json"));
    let cases: Vec<&Vec<(String, String)>> = elements
        .iter()
        .filter(|(n, _)| n == "testcase")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(cases.len(), 5);
    assert_eq!(attribute(cases[1], "name"), "a member's profile");
    assert_eq!(attribute(cases[1], "classname"), "member-profile");
    let failure_elements: Vec<_> = elements.iter().filter(|(n, _)| n == "failure").collect();
    assert_eq!(failure_elements.len(), 2);
    assert_eq!(
        attribute(&failure_elements[1].1, "message"),
        "no mock for step 'profile'"
    );
    let details = failures.join("");
    assert!(
        details.contains(r#"expected {"name":"Chair"}"#),
        "{details}"
    );
}

#[test]
fn bad_test_files_exit_2_naming_the_file_and_the_json_path() {
    let dir = project(&registry(), None);
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "not-json.json",
            "{ tests: [",
            &["not-json.json", "not a JSON test file"],
        ),
        (
            "wrong-mock.json",
            r#"{"tests": [{"name": "x", "connector": "get-item", "mocks": {"get-item": {"status": "ok"}}}]}"#,
            &["wrong-mock.json", "at tests[0].mocks.get-item.status"],
        ),
        (
            "unknown-connector.json",
            r#"{"tests": [{"name": "x", "connector": "get-items"}]}"#,
            &["at tests[0].connector", "no connector 'get-items'"],
        ),
        (
            "unknown-step.json",
            r#"{"tests": [{"name": "x", "connector": "member-profile", "mocks": {"lookup": {}, "profil": {}}}]}"#,
            &[
                "at tests[0].mocks.profil",
                "has no step 'profil' (its steps: lookup, profile)",
            ],
        ),
        (
            "unknown-request.json",
            r#"{"tests": [{"name": "x", "connector": "member-profile", "expect": {"requests": {"lokup": {}}}}]}"#,
            &["at tests[0].expect.requests.lokup"],
        ),
        (
            "misspelt.json",
            r#"{"tests": [{"name": "x", "connector": "get-item", "expect": {"stauts": 200}}]}"#,
            &["at tests[0].expect.stauts", "unknown field"],
        ),
    ];
    let variables = r#"{"variables": {"api": "https://api.example.test"}, "#;
    for (name, text, wanted) in cases {
        let path = dir.path().join(name);
        let text = match text.strip_prefix('{') {
            Some(rest) if text.starts_with(r#"{"tests""#) => format!("{variables}{rest}"),
            _ => text.to_string(),
        };
        std::fs::write(&path, text).unwrap();
        let output = run_test(dir.path(), &[path.to_str().unwrap()]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{name}: {err}");
        for part in wanted {
            assert!(err.contains(part), "{name}: {part} not in {err}");
        }
        assert!(stdout(&output).is_empty(), "{name}: no case ran");
    }
    // No file at all beside the registry.
    let output = run_test(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("connectors_tests.json"));
}

#[test]
fn a_registry_that_does_not_load_exits_2_with_its_report() {
    let mut broken = registry();
    broken["connectors"][0]["url"] = json!("https://{{ request.body_text }}/items");
    let dir = project(&broken, Some(&test_file(passing_cases())));
    let output = run_test(dir.path(), &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("get-item"), "{err}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn the_checked_in_tests_schema_matches_the_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let checked_in: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("schema/connectors_tests.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        checked_in,
        connector_runtime::commands::test::model::json_schema(),
        "schema/connectors_tests.schema.json is stale: run `connector-runtime schema --tests > schema/connectors_tests.schema.json`"
    );
    let printed = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["schema", "--tests"])
        .output()
        .unwrap();
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(printed, checked_in);
    let validator = jsonschema::validator_for(&checked_in).unwrap();
    for file in [
        test_file(passing_cases()),
        test_file(failing_cases()),
        example_tests(),
    ] {
        let errors: Vec<String> = validator
            .iter_errors(&file)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    assert!(!validator.is_valid(&json!({"tests": [{"name": "x"}]})));
    assert!(!validator.is_valid(
        &json!({"tests": [{"name": "x", "connector": "c", "mocks": {"c": {"status": "ok"}}}]})
    ));
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn example_tests() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(examples().join("connectors_tests.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn the_example_registrys_tests_pass() {
    let output = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .arg("test")
        .arg("--registry")
        .arg(examples().join("connectors_registry.json"))
        .output()
        .unwrap();
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    let cases = example_tests()["tests"].as_array().unwrap().len();
    assert!(cases >= 5, "the example file covers the example connectors");
    assert!(
        text.contains(&format!("{cases} passed, 0 failed")),
        "{text}"
    );
}

/// An upstream on 127.0.0.1 for `--record`: a token endpoint, `/members` and an echo of
/// what `/profiles` received (the bearer token and the secret header among it).
async fn recording_upstream() -> crate::common::upstreams::Upstream {
    upstream(|cfg| {
        cfg.route(
            "/oauth/token",
            web::post().to(json_route(
                200,
                json!({"access_token": "live-token-9f8e7d", "token_type": "Bearer", "expires_in": 600}),
            )),
        )
        .route(
            "/members",
            web::get().to(json_route(200, json!({"id": "m-7", "tier": "gold"}))),
        )
        .route("/profiles", web::post().to(echo_route()))
        .route(
            "/items/{id}",
            web::get().to(|req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                log.record(&req, &body);
                let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
                HttpResponse::Ok().json(json!({"name": "Lamp", "key_seen": key}))
            }),
        );
    })
    .await
}

#[actix_rt::test]
async fn record_writes_redacted_answers_as_mocks_that_replay_without_the_network() {
    let upstream = recording_upstream().await;
    let mut file = test_file(json!([
        {"name": "a member's profile", "connector": "member-profile",
         "request": {"user": {"sub": "m-7", "email": "ada@example.com"}},
         "expect": {"status": 200, "body_contains": "\"method\":\"POST\""}},
        {"name": "an item", "connector": "get-item",
         "request": {"path_params": {"item_id": "itm_9"}},
         "expect": {"status": 200}}
    ]));
    file["secrets"]["api_key"] = json!("real-api-key-5678");
    file["secrets"]["client_secret"] = json!("real-client-secret-1234");
    file["variables"]["api"] = json!(upstream.base);
    let dir = project(&registry(), Some(&file));
    let path = dir.path().to_path_buf();
    let recorded = actix_rt::task::spawn_blocking(move || {
        run_test(&path, &["--record", "--allow-private-upstreams"])
    })
    .await
    .unwrap();
    assert_eq!(
        recorded.status.code(),
        Some(0),
        "{}{}",
        stdout(&recorded),
        stderr(&recorded)
    );
    assert!(stderr(&recorded).contains("recorded the mocks of 2 test(s)"));
    // The upstream really was called: token, lookup, profile and the item.
    assert_eq!(upstream.log.count("/oauth/token"), 1);
    assert_eq!(upstream.log.count("/profiles"), 1);
    let text = std::fs::read_to_string(dir.path().join("connectors_tests.json")).unwrap();
    let written: Value = serde_json::from_str(&text).unwrap();
    let mocks = &written["tests"][0]["mocks"];
    assert_eq!(mocks["lookup"]["status"], 200);
    assert_eq!(
        mocks["lookup"]["body"],
        json!({"id": "m-7", "tier": "gold"})
    );
    assert_eq!(mocks["lookup.token"]["body"]["access_token"], "test-token");
    let echoed = &mocks["profile"]["body"];
    assert_eq!(echoed["body"], r#"{"id": "m-7"}"#);
    assert_eq!(echoed["method"], "POST");
    // The item's answer carried the API key back: redacted.
    let item = &written["tests"][1]["mocks"]["get-item"]["body"];
    assert_eq!(item["key_seen"], "[REDACTED]");
    assert_eq!(item["name"], "Lamp");
    for leaked in [
        "live-token-9f8e7d",
        "real-api-key-5678",
        "real-client-secret-1234",
    ] {
        let without_secrets = {
            let mut w = written.clone();
            w["secrets"] = json!({});
            w.to_string()
        };
        assert!(!without_secrets.contains(leaked), "{leaked} in {text}");
    }
    assert!(mocks.get("date").is_none());
    // The recorded file replays with the upstream gone: nothing is sent.
    upstream.stop().await;
    let path = dir.path().to_path_buf();
    let replayed = actix_rt::task::spawn_blocking(move || run_test(&path, &[]))
        .await
        .unwrap();
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}{}",
        stdout(&replayed),
        stderr(&replayed)
    );
}

/// The debug header of `reply`, parsed.
fn debug_header(reply: &crate::common::app::Reply) -> Option<Value> {
    reply
        .header("x-debug-request")
        .map(|h| serde_json::from_str(&h).expect("the header is JSON"))
}

#[actix_rt::test]
async fn x_debug_request_shows_resolved_requests_with_secrets_as_template_text() {
    let upstream = recording_upstream().await;
    // Without caller identity: the member-profile composite (it reads `user`) is left out.
    let mut registry = registry();
    registry["composite_connectors"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let secret = "sk-live-very-secret-42";
    let variables = json!({"api": upstream.base});
    let start = |debug: bool, admin: Option<&'static str>| {
        spawn_app_with(
            registry.clone(),
            AppOptions::default()
                .secret("api_key", secret)
                .secret("client_secret", "client-secret-value-77")
                .variables(variables.clone())
                .flags(move |args| {
                    args.debug_requests = debug;
                    args.admin_token = admin.map(str::to_string);
                }),
        )
    };
    let item = "/connectors/get-item/execute";
    let asked = [("X-Path-Params", "item_id=itm_3"), ("X-Debug-Request", "1")];

    // Off: asking is not enough.
    let app = start(false, Some("admin-token-1")).await;
    let reply = app.call("GET", item, None, &asked).await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-debug-request").is_none());
    let wrong = [
        ("X-Path-Params", "item_id=itm_3"),
        ("X-Debug-Request", "1"),
        ("X-Admin-Token", "admin-token-2"),
    ];
    let reply = app.call("GET", item, None, &wrong).await;
    assert!(reply.header("x-debug-request").is_none());
    // With the admin token it is answered.
    let admin = [
        ("X-Path-Params", "item_id=itm_3"),
        ("X-Debug-Request", "1"),
        ("X-Admin-Token", "admin-token-1"),
    ];
    let reply = app.call("GET", item, None, &admin).await;
    let debug = debug_header(&reply).expect("answered with the admin token");
    assert_eq!(debug["url"], format!("{}/items/itm_3", upstream.base));
    app.handle.stop(false).await;

    // --debug-requests: every caller who asks gets it; one who does not ask does not.
    let app = start(true, None).await;
    let reply = app
        .call("GET", item, None, &[("X-Path-Params", "item_id=itm_3")])
        .await;
    assert!(reply.header("x-debug-request").is_none());
    let reply = app.call("GET", item, None, &asked).await;
    assert_eq!(reply.status, 200);
    let raw = reply.header("x-debug-request").unwrap();
    assert!(!raw.contains(secret), "{raw}");
    assert!(raw.len() <= 16 * 1024);
    let debug = debug_header(&reply).unwrap();
    assert_eq!(debug["method"], "GET");
    assert_eq!(debug["headers"]["x-api-key"], "{{ get_secret('api_key') }}");
    assert_eq!(debug["authentication"], Value::Null);
    assert_eq!(debug["response_content_type"], "application/json");
    assert!(debug["response_body"]
        .as_str()
        .unwrap()
        .contains("response.body"));
    // The upstream got the real value all the same.
    let sent = upstream.log.to("/items/itm_3");
    assert_eq!(sent.last().unwrap().header("x-api-key"), Some(secret));

    // A composite lists every step that ran; the client secret is its template text.
    let reply = app
        .call(
            "POST",
            "/connectors/composite/chain/execute",
            Some("{}"),
            &[
                ("Content-Type", "application/json"),
                ("X-Debug-Request", "1"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let raw = reply.header("x-debug-request").unwrap();
    assert!(!raw.contains("client-secret-value-77"), "{raw}");
    assert!(!raw.contains("live-token-9f8e7d"), "{raw}");
    let debug = debug_header(&reply).unwrap();
    let steps = debug["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{debug}");
    assert_eq!(steps[0]["step"], "members");
    assert_eq!(steps[0]["query_parameters"], json!({"limit": "1"}));
    let auth = &steps[0]["authentication"];
    assert_eq!(auth["type"], "oauth_client_credentials");
    assert_eq!(auth["client_secret"], "{{ get_secret('client_secret') }}");
    assert_eq!(auth["token_url"], format!("{}/oauth/token", upstream.base));
    assert_eq!(steps[1]["step"], "profile");
    assert_eq!(steps[1]["method"], "POST");
    assert_eq!(steps[1]["request_body"], r#"{"id": "m-7"}"#);
    app.handle.stop(false).await;
}

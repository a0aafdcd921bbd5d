//! `connector-runtime validate PATH`, run as the real binary the way a registry's CI runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn example_registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/connectors_registry.json")
}

/// Runs `connector-runtime validate` with `args`, without secrets or variables from the
/// environment of whoever runs the tests.
fn validate(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .arg("validate")
        .args(args)
        .env_remove("CONNECTOR_RUNTIME_SECRETS_DIR")
        .env_remove("CONNECTOR_RUNTIME_VARIABLES_FILE")
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// A registry with three independent errors and one warning.
const BAD_REGISTRY: &str = r#"{
  "connectors": [
    {"name": "Get User", "url": "https://{{ request.body_text }}/users", "method": "FETCH"},
    {"name": "Search", "permalink": "search", "url": "https://api.example.com/s", "colour": "red"}
  ],
  "composite_connectors": [
    {"name": "Flow", "permalink": "flow", "steps": [
      {"name": "auth", "url": "https://auth.example.com/token"},
      {"name": "fetch-user", "url": "https://api.example.com/me",
       "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auht.body }}"}]}
    ]}
  ]
}"#;

fn write_bad_registry(dir: &Path) -> PathBuf {
    let path = dir.join("connectors_registry.json");
    std::fs::write(&path, BAD_REGISTRY).unwrap();
    path
}

#[test]
fn the_example_registry_validates_and_exits_0() {
    let output = validate(&[example_registry().as_os_str()]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.lines().last().unwrap().starts_with("ok: "), "{out}");
    assert!(!out.contains("error:"), "{out}");
}

#[test]
fn a_bad_registry_exits_1_and_prints_a_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_bad_registry(dir.path());
    let output = validate(&[path.as_os_str()]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    for expected in [
        "error: get-user › method: 'FETCH' is not a supported method",
        "error: get-user › url: the scheme and host must be literal",
        "error: flow › fetch-user › headers[0].value: there is no step 'auht'",
        "warning: search › colour: unknown field 'colour' is ignored",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "missing line {expected:?} in:\n{out}"
        );
    }
    assert_eq!(lines.last(), Some(&"invalid: 3 error(s), 1 warning(s)"));
    // Errors are listed before warnings.
    let first_warning = lines
        .iter()
        .position(|l| l.starts_with("warning:"))
        .unwrap();
    assert!(lines[..first_warning]
        .iter()
        .all(|l| l.starts_with("error:")));
}

#[test]
fn json_format_reports_an_invalid_registry() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_bad_registry(dir.path());
    let output = validate(&[path.as_os_str(), "--format".as_ref(), "json".as_ref()]);
    assert_eq!(output.status.code(), Some(1));
    let doc: Value = serde_json::from_str(&stdout(&output)).expect("stdout is one JSON document");
    assert_eq!(doc["valid"], json!(false));
    assert_eq!(doc["errors"], json!(3));
    assert_eq!(doc["warnings"], json!(1));
    assert_eq!(doc["connectors"], json!(0));
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 4);
    assert!(problems.contains(&json!({
        "severity": "error",
        "connector": "flow",
        "step": "fetch-user",
        "field": "headers[0].value",
        "message": "there is no step 'auht' (earlier steps: auth)"
    })));
}

#[test]
fn json_format_reports_a_valid_registry() {
    let output = validate(&[
        example_registry().as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    let doc: Value = serde_json::from_str(&stdout(&output)).expect("stdout is one JSON document");
    assert_eq!(doc["valid"], json!(true));
    assert_eq!(doc["errors"], json!(0));
    assert!(doc["connectors"].as_u64().unwrap() > 0);
    assert!(doc["problems"].is_array());
}

#[test]
fn a_missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = validate(&[dir.path().join("nope.json").as_os_str()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn a_file_that_is_not_json_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, "{ not json").unwrap();
    let output = validate(&[path.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).starts_with("error: - › (file): not valid JSON"));
}

#[test]
fn secrets_and_variables_given_to_validate_silence_their_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("connectors_registry.json");
    std::fs::write(
        &registry,
        json!({"connectors": [{
            "name": "Thing",
            "url": "https://{{ get_variable('host') }}/x",
            "headers": [{"key": "X-Key", "value": "{{ get_secret('api_key') }}"}]
        }]})
        .to_string(),
    )
    .unwrap();

    let without = validate(&[registry.as_os_str()]);
    assert_eq!(without.status.code(), Some(0));
    let out = stdout(&without);
    assert!(out.contains("secret 'api_key' is not configured"), "{out}");
    assert!(out.contains("variable 'host'"), "{out}");

    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("api_key"), "s3cret\n").unwrap();
    let variables = dir.path().join("variables.json");
    std::fs::write(&variables, r#"{"host": "api.example.com"}"#).unwrap();
    let with = validate(&[
        registry.as_os_str(),
        "--secrets-dir".as_ref(),
        secrets.as_os_str(),
        "--variables-file".as_ref(),
        variables.as_os_str(),
    ]);
    assert_eq!(with.status.code(), Some(0));
    assert_eq!(stdout(&with), "ok: 1 connector(s), 0 warning(s)\n");
}

/// Writes `registry` to a temporary `connectors_registry.json` and validates it.
fn validate_registry(registry: &Value) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, registry.to_string()).unwrap();
    let output = validate(&[path.as_os_str()]);
    let out = stdout(&output);
    (output, out)
}

#[test]
fn cache_ttl_seconds_is_a_known_field() {
    // The known-field lists were kept by hand beside the model and lacked it, so every cached
    // connector was told its (honoured) cache_ttl_seconds "is ignored".
    let (output, out) = validate_registry(&json!({"connectors": [
        {"name": "Cached", "url": "https://api.example.com/x", "cache_ttl_seconds": 60},
        {"name": "Cached head", "url": "https://api.example.com/x", "method": "HEAD", "cache_ttl_seconds": 5}
    ]}));
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(out, "ok: 2 connector(s), 0 warning(s)\n");
}

#[test]
fn composite_steps_take_cache_ttl_seconds_and_cache_off_like_simple_connectors() {
    // Composite GET steps are cached too (docs/spec.md §10), so both fields are known there.
    let (output, out) = validate_registry(&json!({"composite_connectors": [{
        "name": "Flow", "permalink": "flow",
        "steps": [
            {"name": "a", "url": "https://api.example.com/x", "cache_ttl_seconds": 60},
            {"name": "b", "url": "https://api.example.com/y", "cache": "off"}
        ]
    }]}));
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(out, "ok: 1 connector(s), 0 warning(s)\n");
    let (output, out) = validate_registry(&json!({"composite_connectors": [{
        "name": "Flow", "permalink": "flow",
        "steps": [
            {"name": "a", "url": "https://api.example.com/x", "method": "POST", "cache_ttl_seconds": 60},
            {"name": "b", "url": "https://api.example.com/y", "cache": "off", "cache_ttl_seconds": 5},
            {"name": "c", "url": "https://api.example.com/z", "cache": "sometimes"}
        ]
    }]}));
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains(
            "error: flow › a › cache_ttl_seconds: only GET and HEAD calls can be cached, not POST"
        ),
        "{out}"
    );
    assert!(
        out.contains("error: flow › b › cache_ttl_seconds: has no effect with cache: \"off\""),
        "{out}"
    );
    assert!(out.contains("error: flow › c › cache"), "{out}");
}

#[test]
fn an_unknown_field_still_warns_and_lists_the_known_ones() {
    let (output, out) = validate_registry(&json!({"connectors": [
        {"name": "Thing", "url": "https://api.example.com/x", "cache_ttl_secs": 60}
    ]}));
    assert_eq!(output.status.code(), Some(0), "{out}");
    let line = out.lines().next().unwrap();
    assert!(
        line.starts_with("warning: thing › cache_ttl_secs: unknown field 'cache_ttl_secs' is ignored (known fields: name, permalink, url,"),
        "{out}"
    );
    assert!(line.contains("cache_ttl_seconds"), "{line}");
    assert!(out.ends_with("ok: 1 connector(s), 1 warning(s)\n"), "{out}");
}

#[test]
fn safe_in_a_url_is_refused() {
    let (output, out) = validate_registry(&json!({"connectors": [{
        "name": "Raw", "url": "https://api.example.com/echo/{{ request.query_parameters.v | safe }}/tail"
    }]}));
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.starts_with("error: raw › url: the safe filter is not available in the url"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Caller identity (docs/spec.md §9): what validate says of `user.*` and `tenant_id` reads.
// ---------------------------------------------------------------------------------------

/// A composite `flow` whose step `second` reads `user.id` in its first header and, with
/// `tenant`, `tenant_id` in its first query parameter.
fn caller_registry(tenant: bool) -> Value {
    let mut second = json!({
        "name": "second", "url": "https://api.example.com/members",
        "headers": [{"key": "X-Member", "value": "{{ user.id }}"}]
    });
    if tenant {
        second["query_parameters"] = json!([{"key": "tenant", "value": "{{ tenant_id }}"}]);
    }
    json!({"composite_connectors": [{
        "name": "Flow", "permalink": "flow",
        "steps": [{"name": "first", "url": "https://api.example.com/first"}, second]
    }]})
}

/// Validates `registry` with the extra `flags`.
fn validate_with_flags(registry: &Value, flags: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, registry.to_string()).unwrap();
    let mut args: Vec<&std::ffi::OsStr> = vec![path.as_os_str()];
    args.extend(flags.iter().map(std::ffi::OsStr::new));
    let output = validate(&args);
    let out = stdout(&output);
    (output, out)
}

const USER_READ: &str = "flow › second › headers[0].value: reads user.*, which needs caller identity: --identity-issuer with --identity-jwks-url or --identity-jwks-file";
const TENANT_READ: &str = "flow › second › query_parameters[0].value: reads tenant_id, which needs --tenant-id or --identity-tenant-claim";

#[test]
fn reading_the_caller_without_identity_flags_is_a_warning_naming_the_field() {
    // Validate does not know the server's flags: it warns, and the file is still valid.
    let (output, out) = validate_with_flags(&caller_registry(true), &[]);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("warning: {USER_READ} (a server without it refuses this registry)").as_str(),
            format!("warning: {TENANT_READ} (a server without it refuses this registry)").as_str(),
            "ok: 1 connector(s), 2 warning(s)",
        ],
        "{out}"
    );
}

#[test]
fn with_identity_flags_user_reads_pass_and_an_unserved_tenant_id_read_is_an_error() {
    let identity = [
        "--identity-issuer",
        "https://members.example.com/",
        "--identity-jwks-url",
        "https://idp.example/jwks",
    ];
    let (output, out) = validate_with_flags(&caller_registry(false), &identity);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(out, "ok: 1 connector(s), 0 warning(s)\n");

    let (output, out) = validate_with_flags(&caller_registry(true), &identity);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            format!("error: {TENANT_READ}").as_str(),
            "invalid: 1 error(s), 0 warning(s)"
        ],
        "{out}"
    );

    let with_tenant = [&identity[..], &["--identity-tenant-claim", "community"]].concat();
    let (output, out) = validate_with_flags(&caller_registry(true), &with_tenant);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(out, "ok: 1 connector(s), 0 warning(s)\n");

    // Any identity flag says what the server has: --tenant-id alone serves tenant_id but
    // not user.*, so the user read is an error.
    let (output, out) = validate_with_flags(&caller_registry(true), &["--tenant-id", "acme"]);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            format!("error: {USER_READ}").as_str(),
            "invalid: 1 error(s), 0 warning(s)"
        ],
        "{out}"
    );
}

#[test]
fn validate_never_fetches_the_identity_keys() {
    // A listener on loopback as the JWKS URL: a fetch would leave a connection in its
    // backlog (or fail validate, if the fetch were required).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!(
        "http://127.0.0.1:{}/jwks",
        listener.local_addr().unwrap().port()
    );
    let (output, out) = validate_with_flags(
        &caller_registry(false),
        &[
            "--identity-issuer",
            "https://members.example.com/",
            "--identity-jwks-url",
            &url,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert_eq!(out, "ok: 1 connector(s), 0 warning(s)\n");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("validate connected to the JWKS URL: {other:?}"),
    }
}

#[test]
fn a_jwks_file_given_to_validate_is_read_as_serve_would() {
    // A file, unlike a URL, can be checked in the registry's CI: an unreadable or empty key
    // file fails validate as it would fail the server's start.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("jwks.json");
    std::fs::write(
        &good,
        r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "x": "-KgBKNXRfxzGn7pTovXoM2l7_ZHvO8u9jqyRypPwbfw"}]}"#,
    )
    .unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    let missing = dir.path().join("missing.json");
    let run = |file: &std::path::Path| {
        validate_with_flags(
            &caller_registry(false),
            &[
                "--identity-issuer",
                "https://members.example.com/",
                "--identity-jwks-file",
                file.to_str().unwrap(),
            ],
        )
        .0
    };
    let ok = run(&good);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    for bad in [&empty, &missing] {
        let output = run(bad);
        assert_eq!(output.status.code(), Some(2), "{}", bad.display());
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("--identity-jwks-file"), "{err}");
    }
}

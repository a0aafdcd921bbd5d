//! The shipped example registries and the seed page's composite load, and the checked-in
//! JSON Schema matches the model and accepts them (and rejects what the loader rejects).

use std::path::{Path, PathBuf};

use connector_runtime::registry::model::json_schema;
use connector_runtime::registry::{build_registry, BuildOptions, CallerIdentity, LoadMode};
use serde_json::{json, Value};

const SCHEMA_PATH: &str = "schema/connectors_registry.schema.json";
const SEED_FIXTURE: &str = "tests/fixtures/seed_registry.json";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `examples/*.json` registry (test files, `*_tests.json`, are checked by
/// test_command.rs).
fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .expect("examples/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("_tests.json"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples/*.json found");
    files
}

/// The example registries and the seed fixture.
fn registry_files() -> Vec<PathBuf> {
    let mut files = example_files();
    files.push(root().join(SEED_FIXTURE));
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Validation for a server with caller identity and a tenant (as `demo` has): the examples
/// include a connector reading `user.*` and `tenant_id`.
fn validate_options() -> BuildOptions {
    BuildOptions {
        mode: LoadMode::Validate,
        identity: Some(CallerIdentity {
            user: true,
            tenant_id: true,
        }),
        ..BuildOptions::default()
    }
}

fn checked_in_schema() -> Value {
    read_json(&root().join(SCHEMA_PATH))
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&checked_in_schema()).expect("the checked-in schema compiles")
}

#[test]
fn every_example_registry_loads_without_errors() {
    for path in example_files() {
        let registry = build_registry(&read(&path), &validate_options())
            .unwrap_or_else(|e| panic!("{} is rejected:\n{}", path.display(), e.report.to_text()));
        assert!(!registry.is_empty(), "{} has no connectors", path.display());
        assert!(
            registry
                .warnings
                .iter()
                .all(|w| w.message.contains("is not configured here")),
            "{} has warnings other than missing secrets:\n{:#?}",
            path.display(),
            registry.warnings
        );
    }
}

#[test]
fn the_seed_pages_composite_loads() {
    let registry = build_registry(&read(&root().join(SEED_FIXTURE)), &validate_options())
        .unwrap_or_else(|e| panic!("the seed composite is rejected:\n{}", e.report.to_text()));
    let connector = registry
        .get("auth-and-fetch-user")
        .expect("the seed composite is loaded");
    let steps: Vec<&str> = connector.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(steps, ["auth", "fetch-user"]);
    assert_eq!(connector.steps[0].origin, "https://auth.example.com");
    assert_eq!(connector.steps[1].origin, "https://api.example.com");
    // Only the two secrets the page reads are reported, as warnings.
    let warnings: Vec<String> = registry.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings
        .iter()
        .all(|w| w.starts_with("auth-and-fetch-user › auth › authentication.config.client_")));
}

#[test]
fn the_checked_in_schema_matches_the_model() {
    assert!(
        json_schema() == checked_in_schema(),
        "{SCHEMA_PATH} is out of date with src/registry/model.rs; regenerate it with \
         `cargo run -q -- schema > {SCHEMA_PATH}`"
    );
}

#[test]
fn every_example_and_the_seed_fixture_match_the_schema() {
    let validator = validator();
    for path in registry_files() {
        let instance = read_json(&path);
        if !validator.is_valid(&instance) {
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("  at {}: {e}", e.instance_path()))
                .collect();
            panic!(
                "{} does not match the schema:\n{}",
                path.display(),
                errors.join("\n")
            );
        }
    }
}

#[test]
fn the_schema_rejects_registries_the_loader_rejects() {
    let validator = validator();
    let simple = |extra: Value| {
        let mut connector =
            json!({"name": "Thing", "permalink": "thing", "url": "https://api.example.com/x"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                connector.as_object_mut().unwrap().remove(k);
            } else {
                connector[k] = v.clone();
            }
        }
        json!({ "connectors": [connector] })
    };
    let composite = |steps: Value| json!({"composite_connectors": [{"name": "Flow", "permalink": "flow", "steps": steps}]});
    // The valid baseline passes both.
    let baseline = simple(json!({}));
    assert!(validator.is_valid(&baseline));
    build_registry(&baseline.to_string(), &validate_options()).expect("baseline loads");

    let bad = [
        (
            "a permalink that is not a slug",
            simple(json!({"permalink": "Bad_Link"})),
        ),
        ("a missing url", simple(json!({"url": null}))),
        ("a missing name", simple(json!({"name": null}))),
        ("an empty name", simple(json!({"name": ""}))),
        (
            "a name over 255 characters",
            simple(json!({"name": "n".repeat(256)})),
        ),
        (
            "a url over 2048 characters",
            simple(json!({"url": format!("https://a.com/{}", "x".repeat(2048))})),
        ),
        ("an unknown method", simple(json!({"method": "FETCH"}))),
        (
            "headers that are not a list",
            simple(json!({"headers": "x"})),
        ),
        (
            "a header value over 1000 characters",
            simple(json!({"headers": [{"key": "A", "value": "v".repeat(1001)}]})),
        ),
        (
            "a header without a value",
            simple(json!({"headers": [{"key": "A"}]})),
        ),
        (
            "authentication without a type",
            simple(json!({"authentication": {"config": {}}})),
        ),
        ("a composite with an empty steps list", composite(json!([]))),
        (
            "a composite without a steps field",
            json!({"composite_connectors": [{"name": "Flow", "permalink": "flow"}]}),
        ),
        (
            "a step name that is not a slug",
            composite(json!([{"name": "Fetch User", "url": "https://a.com/x"}])),
        ),
        ("a step without a url", composite(json!([{"name": "a"}]))),
        ("connectors that are not a list", json!({"connectors": {}})),
        ("a top level that is not an object", json!([])),
    ];
    for (what, registry) in bad {
        assert!(
            !validator.is_valid(&registry),
            "the schema accepts {what}: {registry}"
        );
        assert!(
            build_registry(&registry.to_string(), &validate_options()).is_err(),
            "the loader accepts {what}: {registry}"
        );
    }
}

/// The example registry with its origin defaults pointed at `api` and `auth`.
fn example_registry_on(api: &str, auth: &str) -> Value {
    let text = read(&root().join("examples/connectors_registry.json"))
        .replace(
            "default('https://api.example.com')",
            &format!("default('{api}')"),
        )
        .replace(
            "default('https://auth.example.com')",
            &format!("default('{auth}')"),
        );
    serde_json::from_str(&text).unwrap()
}

#[actix_web::test]
async fn the_examples_run_on_their_default_origins_when_the_variables_are_unset() {
    // `echo-payload` and `auth-and-fetch-user` read `{{ get_variable('api_base_url') |
    // default('https://api.example.com') }}`: with the variables unset the default was
    // percent-encoded and every run failed the origin check (security probe item 13).
    let up = crate::common::standard_upstream().await;
    // `member-items` reads the caller; it runs in cli_demo.rs, whose demo has an identity
    // provider.
    let mut registry = example_registry_on(&up.base, &up.base);
    registry["composite_connectors"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["permalink"] != "member-items");
    let app = crate::common::spawn_app(registry).await;

    let reply = app
        .call(
            "POST",
            "/connectors/echo-payload/execute",
            Some(r#"{"n": 1}"#),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["body"], json!(r#"{"received": {"n": 1}}"#));

    let reply = app
        .composite("auth-and-fetch-user", "", r#"{"clientId": "widget"}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"id": "usr_1", "name": "Ada"}));
    assert_eq!(up.log.count("/oauth/token"), 1);
    assert_eq!(up.log.count("/users/me"), 1);
}

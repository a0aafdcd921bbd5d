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
    example_file_on("examples/connectors_registry.json", api, auth)
}

/// The example registry `file` with its origin defaults pointed at `api` and `auth`.
fn example_file_on(file: &str, api: &str, auth: &str) -> Value {
    let text = read(&root().join(file))
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

/// The demo upstream's routes (`connector-runtime mock-upstream`) that
/// `examples/chain_control.json` calls: a token endpoint that takes 40 ms, `/users/me` behind
/// the token, `/items` (`limit`, `q`; `q=outage` answers 503) and `/items/{id}`, and
/// `/echo/{tail}`.
async fn demo_like_upstream() -> crate::common::Upstream {
    use crate::common::Log;
    use actix_web::{web, HttpRequest, HttpResponse};
    use bytes::Bytes;

    fn item(id: &str) -> Value {
        json!({"id": id, "name": format!("Item {id}"), "price": 9.99})
    }
    crate::common::upstream(|cfg| {
        cfg.route(
            "/oauth/token",
            web::post().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    actix_rt::time::sleep(std::time::Duration::from_millis(40)).await;
                    HttpResponse::Ok().json(json!({"access_token": "tok-123", "expires_in": 3600}))
                },
            ),
        )
        .route(
            "/users/me",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    match req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                    {
                        Some("Bearer tok-123") => HttpResponse::Ok()
                            .json(json!({"id": "usr_1", "name": "Ada", "plan": "pro"})),
                        _ => HttpResponse::Unauthorized().json(json!({"error": "bad token"})),
                    }
                },
            ),
        )
        .route(
            "/items",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    let query = crate::common::Received::of(&req, &body).query_pairs();
                    let get = |k: &str| {
                        query
                            .iter()
                            .find(|(key, _)| key == k)
                            .map(|(_, v)| v.clone())
                    };
                    if get("q").as_deref() == Some("outage") {
                        return HttpResponse::ServiceUnavailable().json(json!({"error": "down"}));
                    }
                    let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(5);
                    let items: Vec<Value> =
                        (1..=limit).map(|i| item(&format!("itm_{i:03}"))).collect();
                    HttpResponse::Ok().json(json!({"items": items, "count": limit}))
                },
            ),
        )
        .route(
            "/items/{id}",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    let id = req.match_info().get("id").unwrap_or_default().to_string();
                    HttpResponse::Ok().json(item(&id))
                },
            ),
        )
        .route(
            "/echo/{tail:.*}",
            web::route().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    HttpResponse::Ok().json(json!({"received": String::from_utf8_lossy(&body)}))
                },
            ),
        );
    })
    .await
}

/// One step of an `X-Connector-Timing` header, by name.
fn timing_step<'a>(timing: &'a Value, name: &str) -> &'a Value {
    timing["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {timing}"))
}

fn ends_at(step: &Value) -> f64 {
    step["start_ms"].as_f64().unwrap() + step["duration_ms"].as_f64().unwrap()
}

#[actix_web::test]
async fn the_chain_control_examples_do_what_they_show() {
    let up = demo_like_upstream().await;
    let app = crate::common::spawn_app(example_file_on(
        "examples/chain_control.json",
        &up.base,
        &up.base,
    ))
    .await;

    // member-dashboard (parallel): catalog starts with token, not after it; profile waits
    // for the token it reads; record-view for profile and catalog (depends_on).
    let reply = app
        .composite("member-dashboard", "?limit=2&view_id=v-7", "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        reply.json(),
        json!({"name": "Ada", "items": ["Item itm_001", "Item itm_002"], "view_recorded": true})
    );
    let timing = reply.connector_timing();
    let (token, catalog) = (
        timing_step(&timing, "token"),
        timing_step(&timing, "catalog"),
    );
    let (profile, view) = (
        timing_step(&timing, "profile"),
        timing_step(&timing, "record-view"),
    );
    assert!(
        catalog["start_ms"].as_f64() < Some(ends_at(token)),
        "{timing}"
    );
    assert!(
        profile["start_ms"].as_f64() >= Some(ends_at(token) - 0.5),
        "{timing}"
    );
    let last = ends_at(profile).max(ends_at(catalog));
    assert!(view["start_ms"].as_f64() >= Some(last - 0.5), "{timing}");
    for step in timing["steps"].as_array().unwrap() {
        assert_eq!(step["state"], "ok", "{timing}");
    }
    let views = up.log.to("/echo/dashboard-views");
    assert_eq!(views.len(), 1);
    assert_eq!(
        views[0].header("idempotency-key"),
        Some("dashboard-view-v-7")
    );

    // profile-with-recommendations: skipped unless asked for; a failing upstream is recorded
    // and the chain goes on.
    let reply = app.composite("profile-with-recommendations", "", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"name": "Ada", "recommendations": null})
    );
    let timing = reply.connector_timing();
    assert_eq!(timing_step(&timing, "recommendations")["state"], "skipped");
    let reply = app
        .composite("profile-with-recommendations", "?recommend=yes&q=Item", "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"name": "Ada", "recommendations": ["Item itm_001", "Item itm_002", "Item itm_003"]})
    );
    let reply = app
        .composite(
            "profile-with-recommendations",
            "?recommend=yes&q=outage",
            "",
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"name": "Ada", "recommendations": {"unavailable": "DOWNSTREAM_HTTP_ERROR"}})
    );
    let timing = reply.connector_timing();
    assert_eq!(
        timing_step(&timing, "recommendations")["state"],
        "continued"
    );

    // item-details: one call per id found, item_index in a header and the step's
    // response_body, the results in item order.
    let reply = app.composite("item-details", "?limit=3", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let position = |i: u64| {
        let id = format!("itm_{i:03}");
        json!({"id": id, "name": format!("Item {id}"), "price": 9.99, "position": i})
    };
    assert_eq!(
        reply.json(),
        json!({"count": 3, "items": [position(1), position(2), position(3)]})
    );
    let mut indices: Vec<(String, String)> = (1..=3)
        .map(|i| {
            let calls = up.log.to(&format!("/items/itm_{i:03}"));
            assert_eq!(calls.len(), 1);
            (
                calls[0].path.clone(),
                calls[0]
                    .header("x-item-index")
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    indices.sort();
    assert_eq!(
        indices,
        [
            ("/items/itm_001".to_string(), "0".to_string()),
            ("/items/itm_002".to_string(), "1".to_string()),
            ("/items/itm_003".to_string(), "2".to_string()),
        ]
    );
    let timing = reply.connector_timing();
    assert_eq!(
        timing_step(&timing, "details")["items"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

//! Building a registry (validation, static checks, compiling every template) of 100 and 1,000
//! connectors written as `bench/large_registry.py` writes them: half simple connectors, half
//! two-step composites, every connector's text its own. `cargo bench --bench registry_build`
//! measures; `cargo test --benches` runs each once (the CI smoke mode).
//!
//! `REGISTRY_BUILD_HOLD=N cargo bench --bench registry_build` builds one registry of N
//! connectors, reports the time it took and exits without freeing it (heaptrack's "leaked"
//! is then what a registry holds, by allocation site): a program to run under a heap profiler
//! (this binary has the system allocator, which heaptrack and massif see; the server's
//! mimalloc they do not).

use std::hint::black_box;
use std::sync::Arc;

use connector_runtime::registry::{build_registry, BuildOptions, Registry};
use connector_runtime::template::SecretStore;
use criterion::{criterion_group, BenchmarkId, Criterion};
use serde_json::{json, Value};

const RESOURCES: [&str; 16] = [
    "items",
    "orders",
    "invoices",
    "customers",
    "tickets",
    "projects",
    "accounts",
    "products",
    "shipments",
    "contacts",
    "leads",
    "assets",
    "events",
    "payments",
    "reports",
    "tasks",
];
const FIELDS: [&str; 10] = [
    "id",
    "name",
    "status",
    "created_at",
    "owner",
    "total",
    "currency",
    "email",
    "title",
    "priority",
];
const SECRET_FAMILIES: usize = 50;
const BASE: &str = "http://127.0.0.1:18081";

/// Simple connector `i`, as `bench/large_registry.py` writes it.
fn simple(i: usize) -> Value {
    let res = RESOURCES[i % RESOURCES.len()];
    let family = i % SECRET_FAMILIES;
    let fields: Vec<&str> = (0..3).map(|k| FIELDS[(i + k) % FIELDS.len()]).collect();
    let url = if i == 0 {
        format!("{BASE}/users/me?account={{{{ pathParams.account_id }}}}&expand={{{{ pathParams.expand }}}}")
    } else {
        format!(
            "{BASE}/v{}/{res}/{{{{ pathParams.account_id }}}}/{res}-{i}?expand={{{{ pathParams.expand }}}}",
            1 + i % 3
        )
    };
    let mut connector = json!({
        "name": format!("Get {res} {i}"),
        "permalink": format!("get-{res}-{i}"),
        "url": url,
        "method": "GET",
        "path_parameters": [{"key": "account_id"}, {"key": "expand", "value": "summary"}],
        "query_parameters": [
            {"key": "limit", "value": (10 + i % 40).to_string(), "overridable": true},
            {"key": "fields", "value": fields.join(",")},
            {"key": "since", "value": format!("{{{{ now(-86400 * {}) }}}}", 1 + i % 7)},
        ],
        "headers": [
            {"key": "Accept", "value": "application/json"},
            {"key": "Authorization", "value": format!("Bearer {{{{ get_secret('api_token_{family}') }}}}")},
            {"key": "X-Client", "value": format!("widget-{res}-{}", i % 97)},
        ],
    });
    if i % 5 == 4 {
        connector["method"] = json!("POST");
        connector["headers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "Content-Type", "value": "application/json"}));
        connector["request_body"] = json!(format!(
            "{{\"{res}\": {{\"name\": \"{{{{ body_text | from_json | attr('name') }}}}\", \"quantity\": {{{{ (body_text | from_json).quantity | default(1) }}}}, \"source\": \"connector-{i}\"}}}}"
        ));
    }
    if i % 2 == 0 {
        let picked: Vec<String> = ["id", "name", FIELDS[i % FIELDS.len()]]
            .iter()
            .map(|f| format!("'{f}': doc.{f}"))
            .collect();
        connector["response_body"] = json!(format!(
            "{{% set doc = response.body | from_json %}}{{{{ {{{}, 'connector': {i}}} | tojson }}}}",
            picked.join(", ")
        ));
        connector["response_content_type"] = json!("application/json");
    }
    connector
}

/// Two-step composite `i`, as `bench/large_registry.py` writes it.
fn composite(i: usize) -> Value {
    let res = RESOURCES[(i * 7) % RESOURCES.len()];
    let family = i % SECRET_FAMILIES;
    let mut auth = json!({
        "name": "auth",
        "url": format!("{BASE}/oauth/token"),
        "method": "POST",
        "headers": [
            {"key": "Content-Type", "value": "application/json"},
            {"key": "X-Client-Secret", "value": format!("{{{{ get_secret('client_secret_{family}') }}}}")},
        ],
        "request_body": format!(
            "{{\"client_id\": \"{{{{ request.body_text | from_json | attr('clientId') }}}}\", \"grant_type\": \"client_credentials\", \"scope\": \"{res}:read {res}:write\", \"audience\": \"aud-{i}\"}}"
        ),
    });
    let url = if i == 0 {
        format!("{BASE}/users/me")
    } else {
        format!("{BASE}/{res}/{{{{ steps.auth.body | from_json | attr('account') }}}}/items-{i}")
    };
    let mut fetch = json!({
        "name": "fetch",
        "url": url,
        "method": "GET",
        "headers": [
            {"key": "Authorization", "value": "Bearer {{ steps.auth.body | from_json | attr('access_token') }}"},
            {"key": "X-Request-Source", "value": format!("composite-{i}")},
        ],
        "query_parameters": [
            {"key": "page_size", "value": format!("{{{{ request.query_parameters.page_size | default('{}', true) }}}}", 20 + i % 30)},
            {"key": "view", "value": res},
        ],
    });
    if i % 2 == 1 {
        auth["response_body"] = json!("{{ response.body | from_json | attr('access_token') }}");
        fetch["headers"][0]["value"] = json!("Bearer {{ steps.auth.body }}");
        fetch["url"] = json!(format!("{BASE}/{res}/me/items-{i}"));
    }
    if i % 3 == 0 {
        let field = FIELDS[i % FIELDS.len()];
        fetch["response_body"] = json!(format!(
            "{{% set u = response.body | from_json %}}{{{{ {{'id': u.id, 'name': u.name, '{field}': u.get('{field}'), 'composite': {i}}} | tojson }}}}"
        ));
        fetch["response_content_type"] = json!("application/json");
    }
    json!({"name": format!("Sync {res} {i}"), "permalink": format!("sync-{res}-{i}"), "steps": [auth, fetch]})
}

/// The registry text of `n` connectors (half simple, half composite).
fn registry_text(n: usize) -> String {
    let simple: Vec<Value> = (0..n - n / 2).map(simple).collect();
    let composite: Vec<Value> = (0..n / 2).map(composite).collect();
    json!({"connectors": simple, "composite_connectors": composite}).to_string()
}

/// What a server with the generated registry's secrets builds with.
fn options() -> BuildOptions {
    let mut secrets = SecretStore::new();
    for family in 0..SECRET_FAMILIES {
        secrets.insert(format!("api_token_{family}"), "tok-4f2a9c");
        secrets.insert(format!("client_secret_{family}"), format!("cs-{family}"));
    }
    BuildOptions {
        secrets: Arc::new(secrets),
        allow_http: true,
        ..BuildOptions::default()
    }
}

fn build(text: &str, options: &BuildOptions) -> Registry {
    let registry = build_registry(text, options).expect("the bench registry loads");
    assert!(registry.warnings.is_empty(), "{:?}", registry.warnings);
    registry
}

fn registry_build(c: &mut Criterion) {
    let options = options();
    let mut group = c.benchmark_group("registry_build");
    group.sample_size(10);
    for n in [100, 1000] {
        let text = registry_text(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| black_box(build(text, &options)))
        });
    }
    group.finish();
}

criterion_group!(benches, registry_build);

fn main() {
    if let Some(n) = std::env::var("REGISTRY_BUILD_HOLD")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let text = registry_text(n);
        let started = std::time::Instant::now();
        let registry = build(&text, &options());
        println!(
            "built {} connectors in {:.2} s",
            n,
            started.elapsed().as_secs_f64()
        );
        drop(text);
        // Kept to the end on purpose: heaptrack reports what the registry holds as "leaked",
        // by allocation site.
        std::mem::forget(black_box(registry));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

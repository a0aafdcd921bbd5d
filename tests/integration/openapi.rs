//! `openapi/openapi.json` against the real server:
//!
//! * it is a structurally valid OpenAPI 3.1 document whose `$ref`s all resolve and whose
//!   schemas compile;
//! * the documented paths are exactly the routes `configure` (src/http/mod.rs) mounts, plus
//!   `/metrics` (src/server.rs), with the methods their guards accept;
//! * every documented operation, called on a real server with the console, the operator API
//!   and the webhook on, answers 2xx, and every answer (happy, probing and with those features
//!   off) has a documented status, Content-Type, body schema and headers. A generic
//!   `ROUTE_NOT_FOUND` passes only where the document lists that code for the status.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use serde_json::{json, Value};

const DOCUMENT: &str = include_str!("../../openapi/openapi.json");
const ADMIN_TOKEN: &str = "adm1n-t0ken";
const WEBHOOK_SECRET: &str = "h00k-secret";
const REQUEST_ID: &str = "openapi-check.1";

/// HTTP methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi/openapi.json is JSON")
}

/// The value a local `$ref` (`#/a/b`) points at.
fn pointee<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Follows `$ref`s until a value without one.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                value = pointee(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}"));
            }
            None => return value,
        }
    }
    panic!("$ref chain too long")
}

/// Every `(json pointer, $ref)` in `value`.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        out.push((at.to_string(), r.to_string()));
                    }
                }
                refs(v, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Every `(path, method, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push((path.clone(), method.to_string(), op.clone()));
            }
        }
    }
    ops
}

/// A validator for `schema`, whose `#/components/...` references resolve in `doc`.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let wrapped = json!({"components": doc["components"], "allOf": [schema]});
    jsonschema::draft202012::new(&wrapped)
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
}

fn is_status_key(key: &str) -> bool {
    key == "default"
        || matches!(key.as_bytes(), [b'1'..=b'5', b'X', b'X'])
        || key.parse::<u16>().is_ok_and(|s| (100..600).contains(&s))
}

/// `{name}` segments of a path template.
fn template_names(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_document_is_a_valid_openapi_3_1_description() {
    let doc = document();
    let mut problems = Vec::new();
    let mut fail = |p: String| problems.push(p);

    if !doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1."))
    {
        fail(format!("openapi must be 3.1.x, is {}", doc["openapi"]));
    }
    for key in ["title", "version"] {
        if doc["info"][key].as_str().is_none_or(|v| v.is_empty()) {
            fail(format!("info.{key} must be a non-empty string"));
        }
    }
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, scheme) in &schemes {
        let kind = scheme["type"].as_str().unwrap_or("");
        if !["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"].contains(&kind) {
            fail(format!("security scheme {name}: bad type {kind:?}"));
        }
        if kind == "http" && !scheme["scheme"].is_string() {
            fail(format!("security scheme {name}: http needs `scheme`"));
        }
    }

    // Every $ref is local and resolves.
    let mut all_refs = Vec::new();
    refs(&doc, "", &mut all_refs);
    assert!(!all_refs.is_empty());
    for (at, r) in &all_refs {
        if !r.starts_with("#/") || pointee(&doc, r).is_none() {
            fail(format!("{at}: $ref {r} does not resolve"));
        }
    }

    // Component schemas compile as JSON Schema 2020-12 (the 3.1 dialect).
    for (name, _) in doc["components"]["schemas"].as_object().unwrap() {
        validator(
            &doc,
            &json!({"$ref": format!("#/components/schemas/{name}")}),
        );
    }

    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with('/') {
            fail(format!("path {path} must start with /"));
        }
        for key in item.as_object().unwrap().keys() {
            let known = METHODS.contains(&key.as_str())
                || ["summary", "description", "parameters", "servers", "$ref"]
                    .contains(&key.as_str());
            if !known {
                fail(format!("{path}: unknown path item field {key}"));
            }
        }
        let names = template_names(path);
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let label = format!("{} {path}", method.to_uppercase());
            match op["operationId"].as_str() {
                Some(id) if !id.is_empty() => {
                    if !operation_ids.insert(id.to_string()) {
                        fail(format!("{label}: operationId {id} is not unique"));
                    }
                }
                _ => fail(format!("{label}: no operationId")),
            }
            for tag in op["tags"].as_array().into_iter().flatten() {
                if !tag.as_str().is_some_and(|t| tags.contains(t)) {
                    fail(format!("{label}: tag {tag} is not declared"));
                }
            }
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().unwrap().keys() {
                    if !schemes.contains_key(name) {
                        fail(format!("{label}: security scheme {name} is not declared"));
                    }
                }
            }
            // Parameters: well-formed, unique, and the path ones match the template.
            let mut seen = BTreeSet::new();
            let mut path_params = BTreeSet::new();
            for param in op["parameters"].as_array().into_iter().flatten() {
                let param = resolve(&doc, param);
                let name = param["name"].as_str().unwrap_or("");
                let location = param["in"].as_str().unwrap_or("");
                if name.is_empty() || !["query", "header", "path", "cookie"].contains(&location) {
                    fail(format!("{label}: malformed parameter {param}"));
                }
                if param.get("schema").is_none() && param.get("content").is_none() {
                    fail(format!(
                        "{label}: parameter {name} has neither schema nor content"
                    ));
                }
                if !seen.insert((name.to_ascii_lowercase(), location.to_string())) {
                    fail(format!("{label}: parameter {name} in {location} twice"));
                }
                if location == "path" {
                    if param["required"] != Value::Bool(true) {
                        fail(format!("{label}: path parameter {name} must be required"));
                    }
                    path_params.insert(name.to_string());
                }
                if let Some(schema) = param.get("schema") {
                    validator(&doc, schema);
                }
            }
            if path_params != names {
                fail(format!(
                    "{label}: path parameters {path_params:?} != template {names:?}"
                ));
            }
            if let Some(body) = op.get("requestBody") {
                let body = resolve(&doc, body);
                if body["content"].as_object().is_none_or(|c| c.is_empty()) {
                    fail(format!("{label}: requestBody without content"));
                }
            }
            // Responses: valid status keys, each with a description, media types and
            // compiling schemas, headers with schemas.
            let responses = op["responses"].as_object();
            if responses.is_none_or(|r| r.is_empty()) {
                fail(format!("{label}: no responses"));
            }
            for (status, response) in responses.into_iter().flatten() {
                if !is_status_key(status) {
                    fail(format!("{label}: bad response key {status}"));
                }
                let response = resolve(&doc, response);
                if !response["description"].is_string() {
                    fail(format!("{label} {status}: no description"));
                }
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    if !media.contains('/') {
                        fail(format!("{label} {status}: bad media type {media}"));
                    }
                    if let Some(schema) = content.get("schema") {
                        validator(&doc, schema);
                    }
                }
                for (name, header) in response["headers"].as_object().into_iter().flatten() {
                    let header = resolve(&doc, header);
                    match header.get("schema") {
                        Some(schema) => {
                            validator(&doc, schema);
                        }
                        None => fail(format!("{label} {status}: header {name} has no schema")),
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The text of `src/http/<file>`.
fn http_source(file: &str) -> String {
    let path = format!("{}/src/http/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The first string literal in `text` and what follows it.
fn string_literal(text: &str) -> Option<(String, &str)> {
    let open = text.find('"')?;
    let close = open + 1 + text[open + 1..].find('"')?;
    Some((text[open + 1..close].to_string(), &text[close + 1..]))
}

/// `text` up to the parenthesis that closes the one just before it.
fn call_arguments(text: &str) -> &str {
    let mut depth = 1;
    let mut in_string = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in configure");
}

/// `.route("<path>", web::<method>()...)` calls in `text`, with `prefix` before each path;
/// `None` for `web::route()` (any method).
fn route_calls(text: &str, prefix: &str) -> Vec<(String, Option<String>)> {
    let mut routes = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let (path, after) = string_literal(rest).expect("a route path literal after .route(");
        rest = after;
        let guard = rest.find("web::").expect("web::<method>() after the path");
        let name: String = rest[guard + "web::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let method = match name.as_str() {
            "route" => None,
            "get" | "post" | "put" | "patch" | "delete" | "head" => Some(name),
            other => panic!("route {path}: unknown guard web::{other}()"),
        };
        routes.push((format!("{prefix}{path}"), method));
    }
    routes
}

/// `(path, method)` mounted by `configure`, read from its source: `.route("<path>",
/// web::<method>()...)` calls, and `.service(web::scope("<prefix>")...)` with its own
/// `.route(...)`s and a `default_service(web::to(<module>::<handler>))` that serves the
/// `pub const *_ROUTE: &str = "..."` paths under the prefix declared in `src/http/<module>.rs`
/// (any method).
fn mounted_routes() -> Vec<(String, Option<String>)> {
    let source = http_source("mod.rs");
    let start = source
        .find("pub fn configure(")
        .expect("src/http/mod.rs has `pub fn configure(`");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("configure ends with `}`")];
    // Line comments out; the rest is the method chain.
    let body: String = body
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    for unsupported in [
        ".configure(",
        "web::resource",
        ".default_service(web::route",
    ] {
        assert!(
            !body.contains(unsupported),
            "configure uses `{unsupported}`: teach tests/integration/openapi.rs to read it"
        );
    }
    // Scoped services first, then the plain routes outside them.
    let mut routes = Vec::new();
    let mut plain = String::new();
    let mut rest = body.as_str();
    while let Some(at) = rest.find(".service(") {
        plain.push_str(&rest[..at]);
        let args = call_arguments(&rest[at + ".service(".len()..]);
        rest = &rest[at + ".service(".len() + args.len()..];
        let scope_at = args
            .find("web::scope(")
            .unwrap_or_else(|| panic!("a .service() that is not a web::scope: {args}"));
        let (prefix, inner) =
            string_literal(&args[scope_at..]).expect("a prefix literal in web::scope(...)");
        routes.extend(route_calls(inner, &prefix));
        if let Some(default) = inner.find(".default_service(web::to(") {
            let handler = &inner[default + ".default_service(web::to(".len()..];
            let module = handler
                .split("::")
                .next()
                .filter(|m| m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or_else(|| panic!("scope {prefix}: handler {handler} is not module::fn"));
            let declared: Vec<String> = http_source(&format!("{module}.rs"))
                .lines()
                .filter_map(|line| {
                    let line = line.trim();
                    let (name, value) = line.strip_prefix("pub const ")?.split_once(": &str =")?;
                    name.ends_with("_ROUTE").then_some(())?;
                    string_literal(value).map(|(path, _)| path)
                })
                .collect();
            assert!(
                !declared.is_empty(),
                "scope {prefix} defaults to {module}:: but src/http/{module}.rs declares no \
                 `pub const *_ROUTE: &str` paths"
            );
            for path in declared {
                assert!(
                    path.starts_with(&format!("{prefix}/")),
                    "{path} is not under the scope {prefix}"
                );
                routes.push((path, None));
            }
        }
    }
    plain.push_str(rest);
    routes.extend(route_calls(&plain, ""));
    assert!(routes.len() >= 10, "parsed too few routes: {routes:?}");
    routes
}

#[test]
fn the_documented_paths_are_exactly_the_mounted_routes() {
    let mut mounted = mounted_routes();
    // /metrics is mounted in server.rs (unless --metrics-listen moves it).
    let server = include_str!("../../src/server.rs");
    assert!(
        server.contains(r#".route("/metrics", web::get()"#),
        "src/server.rs no longer mounts GET /metrics: update this test and the document"
    );
    mounted.push(("/metrics".into(), Some("get".into())));

    let doc = document();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, method, _) in operations(&doc) {
        documented.entry(path).or_default().insert(method);
    }
    let mounted_paths: BTreeSet<&str> = mounted.iter().map(|(p, _)| p.as_str()).collect();
    let documented_paths: BTreeSet<&str> = documented.keys().map(String::as_str).collect();
    let undocumented: Vec<_> = mounted_paths.difference(&documented_paths).collect();
    let unmounted: Vec<_> = documented_paths.difference(&mounted_paths).collect();
    assert!(
        undocumented.is_empty() && unmounted.is_empty(),
        "mounted but not documented: {undocumented:?}; documented but not mounted: {unmounted:?}"
    );
    for (path, method) in &mounted {
        let methods = &documented[path];
        match method {
            Some(m) => assert_eq!(
                methods,
                &BTreeSet::from([m.clone()]),
                "{path} is mounted for {m} only"
            ),
            None => assert!(!methods.is_empty(), "{path}"),
        }
    }
    // The catch-all execution routes: every method a simple connector may have, composites
    // POST only.
    assert_eq!(
        documented["/connectors/{permalink}/execute"],
        ["delete", "get", "head", "options", "patch", "post", "put"]
            .map(String::from)
            .into(),
    );
    assert_eq!(
        documented["/connectors/composite/{permalink}/execute"],
        BTreeSet::from(["post".to_string()])
    );
}

/// Whether a response Content-Type matches a documented media range.
fn media_matches(documented: &str, actual: &str) -> bool {
    let actual = actual
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let documented = documented.to_ascii_lowercase();
    let (dm, ds) = documented.split_once('/').unwrap_or((&documented, ""));
    let (am, asub) = actual.split_once('/').unwrap_or((&actual, ""));
    (dm == "*" || dm == am) && (ds == "*" || ds == asub)
}

/// Checks `reply` to `method path_template` against the document; returns what is wrong.
fn conformance(doc: &Value, template: &str, method: &str, reply: &Reply) -> Result<(), String> {
    let op = &doc["paths"][template][method];
    let responses = op["responses"].as_object().unwrap();
    let status = reply.status.to_string();
    let range = format!("{}XX", reply.status / 100);
    let key = [status.as_str(), range.as_str(), "default"]
        .into_iter()
        .find(|k| responses.contains_key(*k))
        .ok_or_else(|| format!("undocumented status {}: {}", reply.status, reply.text()))?;
    let response = resolve(doc, &responses[key]);

    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        let header = resolve(doc, header);
        match reply.header(name) {
            None if header["required"] == Value::Bool(true) => {
                return Err(format!("{status}: required header {name} missing"));
            }
            None => {}
            Some(value) => {
                let v = validator(doc, &header["schema"]);
                if !v.is_valid(&Value::String(value.clone())) {
                    return Err(format!("{status}: header {name}: {value:?} is off-schema"));
                }
            }
        }
    }
    if let Some(id) = reply.header("x-request-id") {
        if id != REQUEST_ID {
            return Err(format!(
                "X-Request-ID {id} is not the caller's {REQUEST_ID}"
            ));
        }
    }

    let content = response["content"].as_object();
    match content {
        None => {
            if !reply.body.is_empty() {
                return Err(format!(
                    "{status}: documented without a body, got {}",
                    reply.text()
                ));
            }
        }
        Some(content) => {
            let actual = reply.header("content-type").unwrap_or_default();
            let (media, spec) = content
                .iter()
                .find(|(m, _)| media_matches(m, &actual))
                .ok_or_else(|| format!("{status}: Content-Type {actual:?} is not documented"))?;
            let json_media = media == "application/json" || media.ends_with("+json");
            if let (true, Some(schema)) = (json_media, spec.get("schema")) {
                let body: Value = serde_json::from_slice(&reply.body)
                    .map_err(|e| format!("{status}: body is not JSON ({e}): {}", reply.text()))?;
                let v = validator(doc, schema);
                let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
                if !errors.is_empty() {
                    let route_not_found = body["errors"]["code"] == "ROUTE_NOT_FOUND";
                    return Err(format!(
                        "{status}: body does not match the schema{}: {}\n  {}",
                        if route_not_found {
                            " (a generic ROUTE_NOT_FOUND where the document does not list it)"
                        } else {
                            ""
                        },
                        body,
                        errors.join("\n  ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// One request to send.
#[derive(Debug, Clone)]
struct Probe {
    template: &'static str,
    method: &'static str,
    uri: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Probe {
    fn new(template: &'static str, method: &'static str, uri: impl Into<String>) -> Self {
        Probe {
            template,
            method,
            uri: uri.into(),
            headers: vec![("X-Request-ID".into(), REQUEST_ID.into())],
            body: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn body(mut self, body: &str) -> Self {
        self.body = Some(body.into());
        self
    }

    async fn send(&self, app: &TestApp) -> Reply {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        app.call(
            &self.method.to_uppercase(),
            &self.uri,
            self.body.as_deref(),
            &headers,
        )
        .await
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The request that should succeed for each documented operation on the full app.
fn happy_probe(doc: &Value, path: &str, method: &str, op: &Value) -> Probe {
    let template: &'static str = leak(path.to_string());
    let method: &'static str = leak(method.to_string());
    let uri = match path {
        "/connectors/{permalink}/execute" => format!("/connectors/echo-{method}/execute?q=1"),
        "/connectors/composite/{permalink}/execute" => {
            "/connectors/composite/echo-chain/execute?q=1".into()
        }
        p => {
            assert!(
                template_names(p).is_empty(),
                "no value for the parameters of {p}"
            );
            p.to_string()
        }
    };
    let mut probe = Probe::new(template, method, uri);
    if path.starts_with("/connectors/") {
        // Every run answers with its documented X-Debug-Request header too.
        probe = probe
            .header("X-Debug-Request", "1")
            .header("X-Admin-Token", ADMIN_TOKEN);
    }
    if op.get("security").is_some() {
        probe = probe.header("Authorization", format!("Bearer {ADMIN_TOKEN}"));
    }
    if path == "/hooks/git" {
        let body = r#"{"zen": "Keep it logically awesome."}"#;
        probe = probe
            .header("X-GitHub-Event", "ping")
            .header(
                "X-Hub-Signature-256",
                connector_runtime::http::hooks::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes()),
            )
            .header("Content-Type", "application/json")
            .body(body);
    } else if let Some(body) = op.get("requestBody") {
        let body = resolve(doc, body);
        assert!(body["content"].get("application/json").is_some(), "{path}");
        probe = probe
            .header("Content-Type", "application/json")
            .body(r#"{"hello": "world"}"#);
    }
    probe
}

/// A simple connector per method, a composite, and one whose upstream is down.
async fn registry() -> (Upstream, Value) {
    let up = standard_upstream().await;
    let echo = format!("{}/echo", up.base);
    let mut connectors: Vec<Value> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        .iter()
        .map(|m| {
            json!({"name": format!("Echo {m}"), "permalink": format!("echo-{}", m.to_lowercase()),
                   "url": echo, "method": m})
        })
        .collect();
    connectors.push(json!({"name": "Item", "permalink": "item", "method": "GET",
        "url": format!("{echo}?item={{{{ pathParams.item_id }}}}"), "path_parameters": [{"key": "item_id"}]}));
    connectors.push(json!({"name": "Down", "permalink": "down", "method": "GET",
        "url": format!("{}/", refused_base())}));
    let registry = json!({
        "connectors": connectors,
        "composite_connectors": [{
            "name": "Echo chain", "permalink": "echo-chain",
            "steps": [
                {"name": "auth", "url": format!("{}/oauth/token", up.base), "method": "POST"},
                {"name": "echo", "url": echo, "method": "POST", "request_body": "{{ request.body_text }}"}
            ]
        }]
    });
    (up, registry)
}

async fn full_app(registry: Value) -> TestApp {
    spawn_app_with(
        registry,
        AppOptions::default().flags(|f| {
            f.console = true;
            f.admin_token = Some(ADMIN_TOKEN.into());
            f.webhook_secret = Some(WEBHOOK_SECRET.into());
        }),
    )
    .await
}

#[actix_web::test]
async fn every_documented_operation_exists_and_answers_as_documented() {
    let doc = document();
    let (_up, registry) = registry().await;
    let app = full_app(registry.clone()).await;
    let mut problems = Vec::new();
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "{} operations", ops.len());
    for (path, method, op) in &ops {
        let probe = happy_probe(&doc, path, method, op);
        let reply = probe.send(&app).await;
        let label = format!("{} {}", probe.method.to_uppercase(), probe.uri);
        if !(200..300).contains(&reply.status) {
            problems.push(format!(
                "{label}: expected 2xx, got {}: {}",
                reply.status,
                reply.text()
            ));
        }
        if let Err(e) = conformance(&doc, path, method, &reply) {
            problems.push(format!("{label}: {e}"));
        }
        if path.starts_with("/connectors/") && reply.header("x-debug-request").is_none() {
            problems.push(format!(
                "{label}: asked with the admin token, no X-Debug-Request"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[actix_web::test]
async fn documented_error_answers_are_real_and_match_the_document() {
    let doc = document();
    let (_up, registry) = registry().await;
    let app = full_app(registry.clone()).await;
    let simple = "/connectors/{permalink}/execute";
    let composite = "/connectors/composite/{permalink}/execute";
    let hook_body = r#"{"ref": "refs/heads/main"}"#;
    let sdk = app.call("GET", "/sdk/connectors-sdk.js", None, &[]).await;
    let etag = sdk.header("etag").expect("the SDK has an ETag");
    let console = app.call("GET", "/console", None, &[]).await;
    let console_etag = console.header("etag").expect("the console has an ETag");
    let probes: Vec<(Probe, u16, Option<&str>)> = vec![
        (
            Probe::new(simple, "get", "/connectors/nope/execute"),
            404,
            Some("CONNECTOR_NOT_FOUND"),
        ),
        (
            Probe::new(simple, "head", "/connectors/nope/execute"),
            404,
            None,
        ),
        (
            Probe::new(simple, "get", "/connectors/echo-post/execute"),
            405,
            Some("METHOD_NOT_ALLOWED"),
        ),
        (
            Probe::new(simple, "post", "/connectors/echo-chain/execute"),
            400,
            Some("CONNECTOR_KIND_MISMATCH"),
        ),
        (
            Probe::new(simple, "get", "/connectors/item/execute"),
            400,
            Some("MISSING_PATH_PARAMETERS"),
        ),
        (
            Probe::new(simple, "get", "/connectors/item/execute")
                .header("X-Path-Params", "item_id=..%2Fetc"),
            400,
            Some("INVALID_PATH_PARAMETERS"),
        ),
        (
            Probe::new(simple, "get", "/connectors/item/execute")
                .header("X-Path-Params", "item_id=itm_1"),
            200,
            None,
        ),
        (
            Probe::new(simple, "get", "/connectors/down/execute")
                .header("X-Debug-Request", "1")
                .header("X-Admin-Token", ADMIN_TOKEN),
            502,
            Some("DOWNSTREAM_NETWORK_ERROR"),
        ),
        (
            Probe::new(simple, "post", "/connectors/echo-post/execute").body(&"x".repeat(2 << 20)),
            413,
            Some("PAYLOAD_TOO_LARGE"),
        ),
        (
            Probe::new(composite, "post", "/connectors/composite/echo-get/execute"),
            400,
            Some("CONNECTOR_KIND_MISMATCH"),
        ),
        (
            Probe::new(composite, "post", "/connectors/composite/nope/execute"),
            404,
            Some("CONNECTOR_NOT_FOUND"),
        ),
        (
            Probe::new("/admin/registry", "get", "/admin/registry"),
            401,
            Some("UNAUTHORIZED"),
        ),
        (
            Probe::new("/admin/registry/sync", "post", "/admin/registry/sync")
                .header("Authorization", "Bearer wrong"),
            401,
            Some("UNAUTHORIZED"),
        ),
        (
            Probe::new("/hooks/git", "post", "/hooks/git").body(hook_body),
            401,
            Some("INVALID_SIGNATURE"),
        ),
        (
            Probe::new("/hooks/git", "post", "/hooks/git")
                .header(
                    "X-Hub-Signature-256",
                    connector_runtime::http::hooks::sign(
                        WEBHOOK_SECRET.as_bytes(),
                        hook_body.as_bytes(),
                    ),
                )
                .body(hook_body),
            202,
            None,
        ),
        (
            Probe::new("/sdk/connectors-sdk.js", "get", "/sdk/connectors-sdk.js")
                .header("If-None-Match", etag),
            304,
            None,
        ),
        (
            Probe::new("/console", "get", "/console").header("If-None-Match", console_etag),
            304,
            None,
        ),
    ];
    let mut problems = Vec::new();
    for (probe, status, code) in &probes {
        let reply = probe.send(&app).await;
        let label = format!("{} {}", probe.method.to_uppercase(), probe.uri);
        if reply.status != *status {
            problems.push(format!(
                "{label}: expected {status}, got {}: {}",
                reply.status,
                reply.text()
            ));
            continue;
        }
        if let Some(code) = code {
            let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            if body["errors"]["code"] != *code {
                problems.push(format!("{label}: expected code {code}, got {body}"));
            }
        }
        if let Err(e) = conformance(&doc, probe.template, probe.method, &reply) {
            problems.push(format!("{label}: {e}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[actix_web::test]
async fn with_the_features_off_every_answer_is_still_documented() {
    // No --console, --admin-token or --webhook-secret, metrics on another listener: those
    // routes answer 404 ROUTE_NOT_FOUND, which the document lists for them.
    let doc = document();
    let (_up, registry) = registry().await;
    let app = spawn_app_with(
        registry,
        AppOptions::default().flags(|f| {
            f.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        }),
    )
    .await;
    let mut problems = Vec::new();
    let mut off = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let probe = happy_probe(&doc, &path, &method, &op);
        let reply = probe.send(&app).await;
        if reply.status == 404 && reply.text().contains("ROUTE_NOT_FOUND") {
            off.insert(path.clone());
        }
        if let Err(e) = conformance(&doc, &path, &method, &reply) {
            problems.push(format!("{} {}: {e}", method.to_uppercase(), probe.uri));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        off,
        [
            "/admin/registry",
            "/admin/registry/sync",
            "/console",
            "/console/api/connectors",
            "/hooks/git",
            "/metrics",
        ]
        .map(String::from)
        .into()
    );
}

#[actix_web::test]
async fn a_run_shed_by_max_in_flight_answers_as_documented() {
    let doc = document();
    let up = upstream(|cfg| {
        cfg.route(
            "/slow",
            // Long enough for the three probes to be shed on a loaded machine.
            actix_web::web::route().to(slow_route(
                std::time::Duration::from_millis(2_000),
                200,
                json!({}),
            )),
        );
    })
    .await;
    let slow = format!("{}/slow", up.base);
    let app = spawn_app_with(
        json!({
            "connectors": [
                {"name": "Slow", "permalink": "slow", "url": slow},
                {"name": "Slow head", "permalink": "slow-head", "url": slow, "method": "HEAD"}
            ],
            "composite_connectors": [{"name": "C", "permalink": "c-slow",
                                      "steps": [{"name": "only", "url": slow}]}]
        }),
        AppOptions::default().flags(|f| f.max_in_flight = 1),
    )
    .await;
    let simple = "/connectors/{permalink}/execute";
    let composite = "/connectors/composite/{permalink}/execute";
    let probes = [
        Probe::new(simple, "get", "/connectors/slow/execute"),
        Probe::new(simple, "head", "/connectors/slow-head/execute"),
        Probe::new(composite, "post", "/connectors/composite/c-slow/execute"),
    ];
    // One run holds the only slot while the probes are shed: they go once its request has
    // reached the upstream (a run takes its slot before it calls the upstream and keeps it
    // until it answers).
    let (held, problems) = tokio::join!(
        app.call("GET", "/connectors/slow/execute", None, &[]),
        async {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while up.log.count("/slow") == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the run never reached the upstream"
                );
                actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let mut problems = Vec::new();
            for probe in &probes {
                let reply = probe.send(&app).await;
                let label = format!("{} {}", probe.method.to_uppercase(), probe.uri);
                if reply.status != 503 || reply.header("retry-after").as_deref() != Some("1") {
                    problems.push(format!(
                        "{label}: expected 503 with Retry-After, got {reply:?}"
                    ));
                }
                if let Err(e) = conformance(&doc, probe.template, probe.method, &reply) {
                    problems.push(format!("{label}: {e}"));
                }
            }
            problems
        }
    );
    assert_eq!(held.status, 200, "{}", held.text());
    assert_eq!(up.log.count("/slow"), 1, "a probe was not shed");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[actix_web::test]
async fn the_server_serves_this_document() {
    let (_up, registry) = registry().await;
    let app = spawn_app(registry).await;
    let reply = app.call("GET", "/openapi.json", None, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(reply.body, DOCUMENT.as_bytes());
}

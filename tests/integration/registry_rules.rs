//! Every field rule and static template check of the registry (docs/spec.md §1-3), one table row
//! each: a minimal registry and the problem it must produce (or that it must load).

use std::sync::Arc;

use connector_runtime::commands::validate::{render, validate_text, Format};
use connector_runtime::registry::model::HttpMethod;
use connector_runtime::registry::{
    build_registry, BuildOptions, CallerIdentity, LoadMode, Problem, Severity,
};
use connector_runtime::template::{SecretStore, Variables};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------
// Registry builders
// ---------------------------------------------------------------------------------------

use crate::common::merged;

/// A valid simple connector `thing` with `extra` merged in.
fn connector(extra: Value) -> Value {
    merged(
        json!({"name": "Thing", "permalink": "thing", "url": "https://api.example.com/x"}),
        extra,
    )
}

/// A file holding one simple connector: `thing` with `extra` merged in.
fn simple(extra: Value) -> Value {
    json!({ "connectors": [connector(extra)] })
}

/// A valid step called `name` with `extra` merged in.
fn step(name: &str, extra: Value) -> Value {
    merged(
        json!({"name": name, "url": "https://api.example.com/x"}),
        extra,
    )
}

/// A file holding one composite connector `flow` with these steps.
fn flow(steps: Vec<Value>) -> Value {
    json!({ "composite_connectors": [{"name": "Flow", "permalink": "flow", "steps": steps}] })
}

/// A simple connector authenticating with `kind` and `config`.
fn with_auth(kind: &str, config: Value) -> Value {
    simple(json!({"authentication": {"type": kind, "config": config}}))
}

/// A complete, valid config of each authentication type.
fn full_auth_config(kind: &str) -> Value {
    match kind {
        "api_key" | "apikey" => json!({"key": "X-API-Key", "value": "k", "in": "header"}),
        "oauth_client_credentials" => json!({
            "client_id": "id", "client_secret": "secret",
            "token_url": "https://auth.example.com/token", "scope": "read"
        }),
        "jwt" => {
            json!({"private_key": "k", "algorithm": "HS256", "claims": {"iss": "me", "exp": 60}})
        }
        "oauth_jwt_bearer" => json!({
            "client_id": "id", "private_key": "k", "token_url": "https://auth.example.com/token",
            "subject": "sub", "audience": "aud", "token_ttl": 3600
        }),
        other => panic!("no config for {other}"),
    }
}

/// The same config without `key`.
fn without(config: Value, key: &str) -> Value {
    merged(config, json!({ key: null }))
}

// ---------------------------------------------------------------------------------------
// Table machinery
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum Expect {
    /// Builds with no problem at all; optionally this permalink is loaded.
    Loads(Option<String>),
    /// This problem is reported (an error rejects the registry; a warning does not).
    Problem {
        severity: Severity,
        connector: String,
        step: Option<String>,
        field: String,
        message: String,
    },
}

struct Case {
    name: String,
    text: String,
    options: BuildOptions,
    expect: Vec<Expect>,
}

fn case(name: &str, registry: Value) -> Case {
    raw(name, &registry.to_string())
}

fn raw(name: &str, text: &str) -> Case {
    Case {
        name: name.to_string(),
        text: text.to_string(),
        options: BuildOptions::default(),
        expect: Vec::new(),
    }
}

impl Case {
    fn problem(
        mut self,
        severity: Severity,
        connector: &str,
        step: Option<&str>,
        field: &str,
        message: &str,
    ) -> Self {
        self.expect.push(Expect::Problem {
            severity,
            connector: connector.to_string(),
            step: step.map(str::to_string),
            field: field.to_string(),
            message: message.to_string(),
        });
        self
    }

    fn error(self, connector: &str, step: Option<&str>, field: &str, message: &str) -> Self {
        self.problem(Severity::Error, connector, step, field, message)
    }

    fn warning(self, connector: &str, step: Option<&str>, field: &str, message: &str) -> Self {
        self.problem(Severity::Warning, connector, step, field, message)
    }

    fn loads(mut self) -> Self {
        self.expect.push(Expect::Loads(None));
        self
    }

    fn loads_as(mut self, permalink: &str) -> Self {
        self.expect.push(Expect::Loads(Some(permalink.to_string())));
        self
    }

    fn serve(mut self) -> Self {
        self.options.mode = LoadMode::Serve;
        self
    }

    fn allow_http(mut self) -> Self {
        self.options.allow_http = true;
        self
    }

    /// For a server whose identity flags give templates `user` and/or `tenant_id`.
    fn identity(mut self, user: bool, tenant_id: bool) -> Self {
        self.options.identity = Some(CallerIdentity { user, tenant_id });
        self
    }

    fn variable(mut self, name: &str, value: &str) -> Self {
        let mut map = Map::new();
        map.insert(name.to_string(), Value::String(value.to_string()));
        self.options.variables = Arc::new(Variables::from_map(map));
        self
    }

    fn secret(mut self, name: &str) -> Self {
        let mut secrets = SecretStore::new();
        secrets.insert(name, "a-secret-value");
        self.options.secrets = Arc::new(secrets);
        self
    }

    /// Runs the case; returns what went wrong, if anything.
    fn check(&self) -> Result<(), String> {
        assert!(
            !self.expect.is_empty(),
            "case '{}' expects nothing",
            self.name
        );
        let result = build_registry(&self.text, &self.options);
        let (loaded, problems): (Option<_>, Vec<Problem>) = match result {
            Ok(registry) => {
                let warnings = registry.warnings.clone();
                (Some(registry), warnings)
            }
            Err(rejected) => (None, rejected.report.problems),
        };
        let shown = || {
            problems
                .iter()
                .map(|p| format!("    {:?} {p}", p.severity))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let expects_error = self.expect.iter().any(|e| {
            matches!(
                e,
                Expect::Problem {
                    severity: Severity::Error,
                    ..
                }
            )
        });
        if expects_error && loaded.is_some() {
            return Err(format!(
                "loaded, but an error was expected; problems:\n{}",
                shown()
            ));
        }
        if !expects_error && loaded.is_none() {
            return Err(format!("was rejected; problems:\n{}", shown()));
        }
        for expect in &self.expect {
            match expect {
                Expect::Loads(permalink) => {
                    if !problems.is_empty() {
                        return Err(format!("loaded with problems:\n{}", shown()));
                    }
                    if let (Some(p), Some(registry)) = (permalink, &loaded) {
                        if registry.get(p).is_none() {
                            return Err(format!("loaded, but without connector '{p}'"));
                        }
                    }
                }
                Expect::Problem {
                    severity,
                    connector,
                    step,
                    field,
                    message,
                } => {
                    let found = problems.iter().any(|p| {
                        p.severity == *severity
                            && p.connector == *connector
                            && p.step == *step
                            && p.field == *field
                            && p.message.contains(message.as_str())
                    });
                    if !found {
                        return Err(format!(
                            "expected {severity:?} at {connector} › {} › {field} containing {message:?}; problems:\n{}",
                            step.as_deref().unwrap_or("-"),
                            shown()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs every case and fails once, listing every case that did not behave.
fn run(cases: Vec<Case>) {
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case name '{}'",
            case.name
        );
        if let Err(why) = case.check() {
            failures.push(format!("- {}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const E: Option<&str> = None;

// ---------------------------------------------------------------------------------------
// Name and permalink
// ---------------------------------------------------------------------------------------

#[test]
fn names_and_permalinks_follow_every_rule() {
    let long_name = "n".repeat(256);
    let long_permalink = "a".repeat(256);
    run(vec![
        case("a minimal connector loads", simple(json!({}))).loads_as("thing"),
        case("name is required", simple(json!({"name": null})))
            .error("thing", E, "name", "missing field `name`"),
        case("name must not be empty", simple(json!({"name": ""})))
            .error("thing", E, "name", "must not be empty"),
        case("name of 255 characters is fine", simple(json!({"name": "n".repeat(255)}))).loads(),
        case("name of 256 characters is too long", simple(json!({"name": long_name})))
            .error("thing", E, "name", "longer than 255"),
        case("permalink must be a slug", simple(json!({"permalink": "Bad_Link"})))
            .error("Bad_Link", E, "permalink", "not a valid permalink"),
        case("permalink cannot have a double hyphen", simple(json!({"permalink": "a--b"})))
            .error("a--b", E, "permalink", "not a valid permalink"),
        case("permalink cannot end with a hyphen", simple(json!({"permalink": "a-"})))
            .error("a-", E, "permalink", "not a valid permalink"),
        case(
            "permalink is derived from the name",
            simple(json!({"name": "Get User", "permalink": null})),
        )
        .loads_as("get-user"),
        case(
            "a name that derives a bad permalink is rejected",
            simple(json!({"name": "My API!", "permalink": null})),
        )
        .error("my-api!", E, "permalink", "derived from the name"),
        case(
            "permalink of 256 characters is too long",
            simple(json!({"permalink": long_permalink.clone()})),
        )
        .error(&long_permalink, E, "permalink", "longer than 255"),
        case(
            "permalinks are unique among simple connectors",
            json!({"connectors": [connector(json!({})), connector(json!({"name": "Other"}))]}),
        )
        .error("thing", E, "permalink", "already used"),
        case(
            "permalinks are unique across simple and composite connectors",
            json!({
                "connectors": [connector(json!({}))],
                "composite_connectors": [{"name": "Thing flow", "permalink": "thing", "steps": [step("a", json!({}))]}]
            }),
        )
        .error("thing", E, "permalink", "unique across simple and composite"),
        case(
            "a derived permalink collides with an explicit one",
            json!({"connectors": [
                connector(json!({"permalink": "get-user"})),
                connector(json!({"name": "Get User", "permalink": null})),
            ]}),
        )
        .error("get-user", E, "permalink", "already used"),
    ]);
}

// ---------------------------------------------------------------------------------------
// URL (docs/spec.md §3)
// ---------------------------------------------------------------------------------------

#[test]
fn urls_follow_every_rule() {
    let long_url = format!("https://api.example.com/{}", "x".repeat(2048));
    run(vec![
        case("url is required", simple(json!({"url": null})))
            .error("thing", E, "url", "missing field `url`"),
        case("url must not be empty", simple(json!({"url": ""})))
            .error("thing", E, "url", "must not be empty"),
        case(
            "url of 2048 characters is fine",
            simple(json!({"url": format!("https://api.example.com/{}", "é".repeat(2048 - 24))})),
        )
        .loads(),
        case("url longer than 2048 characters", simple(json!({"url": long_url})))
            .error("thing", E, "url", "longer than 2048"),
        case("url needs a scheme", simple(json!({"url": "api.example.com/x"})))
            .error("thing", E, "url", "must start with https://"),
        case("url scheme must be http(s)", simple(json!({"url": "ftp://api.example.com/x"})))
            .error("thing", E, "url", "must start with https://"),
        case("url host must not be empty", simple(json!({"url": "https:///x"})))
            .error("thing", E, "url", "host is empty"),
        case(
            "url host cannot come from request data",
            simple(json!({"url": "https://{{ request.body_text }}/x"})),
        )
        .error("thing", E, "url", "scheme and host must be literal"),
        case(
            "url host cannot come from a path parameter",
            simple(json!({
                "url": "https://{{ pathParams.host }}/x",
                "path_parameters": [{"key": "host"}]
            })),
        )
        .error("thing", E, "url", "scheme and host must be literal"),
        case(
            "url origin cannot come from request data",
            simple(json!({"url": "{{ request.body_text }}/x"})),
        )
        .error("thing", E, "url", "scheme and host must be literal"),
        case(
            "url host cannot be partly templated",
            simple(json!({"url": "https://api.{{ get_variable('domain') }}/x"})),
        )
        .error("thing", E, "url", "cannot be partly templated"),
        case(
            "url host cannot hold a template block",
            simple(json!({"url": "https://{% if true %}a.com{% endif %}/x"})),
        )
        .error("thing", E, "url", "template blocks are not allowed"),
        case(
            "url must not carry user info",
            simple(json!({"url": "https://user:pw@api.example.com/x"})),
        )
        .error("thing", E, "url", "user information"),
        case(
            "url host from a set variable loads",
            simple(json!({"url": "https://{{ get_variable('host') }}/x"})),
        )
        .variable("host", "api.example.com")
        .loads(),
        case(
            "url host from a variable with a port loads",
            simple(json!({"url": "https://{{ get_variable('host') }}:8443/x"})),
        )
        .variable("host", "api.example.com")
        .loads(),
        case(
            "url host from a variable may only be followed by a port",
            simple(json!({"url": "https://{{ get_variable('host') }}.evil.com/x"})),
        )
        .error("thing", E, "url", "only a literal :port"),
        case(
            "url host from a variable with a default loads",
            simple(json!({"url": "https://{{ get_variable('host') | default('api.example.com') }}/x"})),
        )
        .loads(),
        case(
            "url host from an unset variable is a warning when validating",
            simple(json!({"url": "https://{{ get_variable('host') }}/x"})),
        )
        .warning("thing", E, "url", "variable 'host', which is not set"),
        case(
            "url host from an unset variable is an error when serving",
            simple(json!({"url": "https://{{ get_variable('host') }}/x"})),
        )
        .serve()
        .error("thing", E, "url", "variable 'host', which is not set"),
        case(
            "url origin from a variable loads",
            simple(json!({"url": "{{ get_variable('base') }}/x"})),
        )
        .variable("base", "https://api.example.com")
        .loads(),
        case(
            "url origin from a variable with a default loads",
            simple(json!({"url": "{{ get_variable('base') | default('https://api.example.com') }}/x"})),
        )
        .loads(),
        case(
            "url origin variable must continue with a slash",
            simple(json!({"url": "{{ get_variable('base') }}x"})),
        )
        .error("thing", E, "url", "must continue with '/'"),
        case(
            "url origin variable must resolve to scheme and host",
            simple(json!({"url": "{{ get_variable('base') }}/x"})),
        )
        .variable("base", "api.example.com")
        .error("thing", E, "url", "not of the form https://host"),
        case(
            "http is a warning when validating",
            simple(json!({"url": "http://api.example.com/x"})),
        )
        .warning("thing", E, "url", "must use https://"),
        case(
            "http is an error when serving",
            simple(json!({"url": "http://api.example.com/x"})),
        )
        .serve()
        .error("thing", E, "url", "must use https://"),
        case(
            "http is allowed when serving with allow_http",
            simple(json!({"url": "http://api.example.com/x"})),
        )
        .serve()
        .allow_http()
        .loads(),
        case(
            "safe is refused in the url",
            simple(json!({"url": "https://api.example.com/echo/{{ request.query_parameters.v | safe }}/tail"})),
        )
        .error("thing", E, "url", "the safe filter is not available in the url: it would insert the value unencoded"),
        case(
            "safe is refused in the query part of a step url",
            flow(vec![step("a", json!({"url": "https://api.example.com/x?q={{ steps | length | string | safe }}"}))]),
        )
        .error("flow", Some("a"), "url", "the safe filter is not available in the url"),
        case(
            "a safe filter block is refused in the url",
            simple(json!({"url": "https://api.example.com/{% filter safe %}{{ request.body_text }}{% endfilter %}"})),
        )
        .error("thing", E, "url", "the safe filter is not available in the url"),
        case(
            "autoescape is refused in the url",
            simple(json!({"url": "https://api.example.com/{% autoescape false %}{{ request.body_text }}{% endautoescape %}"})),
        )
        .error("thing", E, "url", "{% autoescape %} is not available in the url"),
        case(
            "safe is allowed outside the url",
            simple(json!({
                "headers": [{"key": "X-Raw", "value": "{{ request.query_parameters.v | safe }}"}],
                "request_body": "{{ body_text | safe }}"
            })),
        )
        .loads(),
        case(
            "https with a literal port loads",
            simple(json!({"url": "https://api.example.com:8443/x?page={{ request.query_parameters.page }}"})),
        )
        .loads(),
    ]);
}

// ---------------------------------------------------------------------------------------
// Method, headers, query and path parameters
// ---------------------------------------------------------------------------------------

#[test]
fn methods_headers_query_and_path_parameters_follow_every_rule() {
    let kv = |pairs: &[(&str, &str)]| -> Value {
        pairs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect()
    };
    run(vec![
        case(
            "an unknown method is rejected",
            simple(json!({"method": "FETCH"})),
        )
        .error("thing", E, "method", "not a supported method"),
        case(
            "a lowercase method is accepted",
            simple(json!({"method": "post"})),
        )
        .loads(),
        case("every listed method loads", {
            let all: Vec<Value> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
                .iter()
                .map(|m| connector(json!({"name": m, "permalink": m.to_lowercase(), "method": m})))
                .collect();
            json!({ "connectors": all })
        })
        .loads(),
        case(
            "a header key must not be empty",
            simple(json!({"headers": kv(&[("", "v")])})),
        )
        .error("thing", E, "headers[0].key", "must be 1-255 characters"),
        case(
            "a header key must be a valid header name",
            simple(json!({"headers": kv(&[("X Bad", "v")])})),
        )
        .error("thing", E, "headers[0].key", "not a valid HTTP header name"),
        case(
            "the Host header is set by the runtime",
            simple(json!({"headers": kv(&[("Host", "evil.com")])})),
        )
        .error("thing", E, "headers[0].key", "set by the runtime"),
        case(
            "the Content-Length header is set by the runtime",
            simple(json!({"headers": kv(&[("content-length", "3")])})),
        )
        .error("thing", E, "headers[0].key", "set by the runtime"),
        case(
            "the Expect header is set by the runtime",
            simple(json!({"headers": [{"key": "Expect", "value": "100-continue", "overridable": true}]})),
        )
        .error("thing", E, "headers[0].key", "'Expect' is set by the runtime"),
        case(
            "duplicate headers differ only in case",
            simple(json!({"headers": kv(&[("X-Trace", "a"), ("x-trace", "b")])})),
        )
        .error("thing", E, "headers[1].key", "duplicate key 'x-trace'"),
        case(
            "a header value of 1000 characters is fine",
            simple(json!({"headers": kv(&[("X-Long", &"v".repeat(1000))])})),
        )
        .loads(),
        case(
            "a header value is measured in characters not bytes",
            simple(json!({"headers": kv(&[("X-Long", &"é".repeat(1000))])})),
        )
        .loads(),
        case(
            "a header value over 1000 characters is too long",
            simple(json!({"headers": kv(&[("X-Long", &"v".repeat(1001))])})),
        )
        .error("thing", E, "headers[0].value", "longer than 1000"),
        case(
            "a header key over 255 characters is too long",
            simple(json!({"headers": kv(&[(&"k".repeat(256), "v")])})),
        )
        .error("thing", E, "headers[0].key", "must be 1-255 characters"),
        case(
            "duplicate query parameters are rejected",
            simple(json!({"query_parameters": kv(&[("a", "1"), ("a", "2")])})),
        )
        .error("thing", E, "query_parameters[1].key", "duplicate key 'a'"),
        case(
            "query parameter keys are case-sensitive",
            simple(json!({"query_parameters": kv(&[("a", "1"), ("A", "2")])})),
        )
        .loads(),
        case(
            "a query parameter key must not be empty",
            simple(json!({"query_parameters": kv(&[("", "1")])})),
        )
        .error(
            "thing",
            E,
            "query_parameters[0].key",
            "must be 1-255 characters",
        ),
        case(
            "a declared and used path parameter loads",
            simple(json!({
                "url": "https://api.example.com/users/{{ pathParams.user_id }}",
                "path_parameters": [{"key": "user_id", "value": "me", "overridable": true}]
            })),
        )
        .loads(),
        case(
            "a path parameter read with brackets counts as used",
            simple(json!({
                "url": "https://api.example.com/users/{{ pathParams['user_id'] }}",
                "path_parameters": [{"key": "user_id"}]
            })),
        )
        .loads(),
        case(
            "a path parameter name must be an identifier",
            simple(json!({
                "url": "https://api.example.com/x",
                "path_parameters": [{"key": "user-id"}]
            })),
        )
        .error(
            "thing",
            E,
            "path_parameters[0].key",
            "not a valid path parameter name",
        ),
        case(
            "a path parameter name must not start with a digit",
            simple(json!({"path_parameters": [{"key": "1id"}]})),
        )
        .error(
            "thing",
            E,
            "path_parameters[0].key",
            "not a valid path parameter name",
        ),
        case(
            "a path parameter is declared once",
            simple(json!({
                "url": "https://api.example.com/{{ pathParams.id }}",
                "path_parameters": [{"key": "id"}, {"key": "id"}]
            })),
        )
        .error(
            "thing",
            E,
            "path_parameters[1].key",
            "duplicate path parameter 'id'",
        ),
        case(
            "a path parameter default must be a valid value",
            simple(json!({
                "url": "https://api.example.com/{{ pathParams.id }}",
                "path_parameters": [{"key": "id", "value": "../admin"}]
            })),
        )
        .error(
            "thing",
            E,
            "path_parameters[0].value",
            "must not contain '..'",
        ),
        case(
            "a path parameter default must not be empty",
            simple(json!({
                "url": "https://api.example.com/{{ pathParams.id }}",
                "path_parameters": [{"key": "id", "value": ""}]
            })),
        )
        .error("thing", E, "path_parameters[0].value", "1-200 characters"),
        case(
            "a declared but unused path parameter is a warning",
            simple(json!({"path_parameters": [{"key": "id"}]})),
        )
        .warning(
            "thing",
            E,
            "path_parameters",
            "'id' is declared but the url never uses",
        ),
        case(
            "an undeclared path parameter is rejected",
            simple(json!({"url": "https://api.example.com/{{ pathParams.x }}"})),
        )
        .error("thing", E, "url", "path parameter 'x' is not declared"),
        case(
            "path parameters do not exist in composites",
            flow(vec![step(
                "a",
                json!({"url": "https://api.example.com/{{ pathParams.x }}"}),
            )]),
        )
        .error(
            "flow",
            Some("a"),
            "url",
            "path parameters exist only in simple connectors",
        ),
        case(
            "path_parameters is an unknown field in a step",
            flow(vec![step("a", json!({"path_parameters": [{"key": "x"}]}))]),
        )
        .warning(
            "flow",
            Some("a"),
            "path_parameters",
            "unknown field 'path_parameters'",
        ),
    ]);
}

// ---------------------------------------------------------------------------------------
// Authentication (docs/spec.md §4)
// ---------------------------------------------------------------------------------------

#[test]
fn authentication_follows_every_rule() {
    let mut cases = vec![
        case("auth type none loads", with_auth("none", json!({}))).loads(),
        case(
            "auth type none with config is a warning",
            with_auth("none", json!({"key": "x"})),
        )
        .warning("thing", E, "authentication.config.key", "takes no config"),
        case(
            "an unknown auth type is rejected",
            with_auth("basic", json!({"username": "u"})),
        )
        .error(
            "thing",
            E,
            "authentication.type",
            "unknown authentication type 'basic'",
        ),
        case(
            "auth type is required",
            simple(json!({"authentication": {"config": {}}})),
        )
        .error("thing", E, "authentication.type", "missing field `type`"),
        case(
            "the apikey spelling is accepted",
            with_auth("apikey", full_auth_config("apikey")),
        )
        .loads(),
        case(
            "an api key may go in the query",
            with_auth(
                "api_key",
                json!({"key": "api_key", "value": "k", "in": "query"}),
            ),
        )
        .loads(),
        case(
            "an api key cannot go in a cookie",
            with_auth(
                "api_key",
                json!({"key": "X-API-Key", "value": "k", "in": "cookie"}),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.in",
            "'cookie' is not a place",
        ),
        case(
            "an api key cannot go in the Host header",
            with_auth(
                "api_key",
                json!({"key": "Host", "value": "internal.admin.example"}),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.key",
            "'Host' is set by the runtime and cannot be configured",
        ),
        case(
            "an api key cannot go in the Upgrade header, in any case",
            with_auth(
                "api_key",
                json!({"key": "upgrade", "value": "websocket", "in": "header"}),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.key",
            "'upgrade' is set by the runtime",
        ),
        case(
            "an api key cannot go in the Expect header",
            with_auth("apikey", json!({"key": "Expect", "value": "100-continue"})),
        )
        .error(
            "thing",
            E,
            "authentication.config.key",
            "'Expect' is set by the runtime",
        ),
        case(
            "an api key of a step names the step",
            flow(vec![step(
                "a",
                json!({"authentication": {"type": "api_key", "config": {"key": "Transfer-Encoding", "value": "chunked"}}}),
            )]),
        )
        .error(
            "flow",
            Some("a"),
            "authentication.config.key",
            "'Transfer-Encoding' is set by the runtime",
        ),
        case(
            "an api key query parameter may be called host",
            with_auth(
                "api_key",
                json!({"key": "host", "value": "k", "in": "query"}),
            ),
        )
        .loads(),
        case(
            "an api key name must be literal",
            with_auth(
                "api_key",
                json!({"key": "{{ request.body_text }}", "value": "k"}),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.key",
            "must be the literal name",
        ),
        case(
            "an unknown jwt algorithm is rejected",
            with_auth(
                "jwt",
                merged(full_auth_config("jwt"), json!({"algorithm": "XX999"})),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.algorithm",
            "unsupported JWT algorithm 'XX999'",
        ),
        case(
            "an unknown oauth_jwt_bearer algorithm is rejected",
            with_auth(
                "oauth_jwt_bearer",
                merged(
                    full_auth_config("oauth_jwt_bearer"),
                    json!({"algorithm": "none"}),
                ),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.algorithm",
            "unsupported JWT algorithm",
        ),
        case(
            "jwt claims must be an object",
            with_auth(
                "jwt",
                merged(full_auth_config("jwt"), json!({"claims": "x"})),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.claims",
            "must be an object",
        ),
        case(
            "jwt claims are templates and are checked",
            with_auth(
                "jwt",
                merged(
                    full_auth_config("jwt"),
                    json!({"claims": {"sub": "{{ nope }}"}}),
                ),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.claims.sub",
            "unknown variable 'nope'",
        ),
        case(
            "a token_ttl under 60 seconds is rejected",
            with_auth(
                "oauth_jwt_bearer",
                merged(
                    full_auth_config("oauth_jwt_bearer"),
                    json!({"token_ttl": 30}),
                ),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.token_ttl",
            "greater than 60",
        ),
        case(
            "a token_ttl that is not a number is rejected",
            with_auth(
                "oauth_jwt_bearer",
                merged(
                    full_auth_config("oauth_jwt_bearer"),
                    json!({"token_ttl": "soon"}),
                ),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.token_ttl",
            "whole number of seconds",
        ),
        case(
            "a token_ttl given as a numeric string loads",
            with_auth(
                "oauth_jwt_bearer",
                merged(
                    full_auth_config("oauth_jwt_bearer"),
                    json!({"token_ttl": "600"}),
                ),
            ),
        )
        .loads(),
        case(
            "a token_url host cannot come from request data",
            with_auth(
                "oauth_client_credentials",
                merged(
                    full_auth_config("oauth_client_credentials"),
                    json!({"token_url": "https://{{ request.body_text }}/token"}),
                ),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.token_url",
            "scheme and host must be literal",
        ),
        case(
            "a token_url must use https when serving",
            with_auth(
                "oauth_jwt_bearer",
                merged(
                    full_auth_config("oauth_jwt_bearer"),
                    json!({"token_url": "http://auth.example.com/token"}),
                ),
            ),
        )
        .serve()
        .error(
            "thing",
            E,
            "authentication.config.token_url",
            "must use https://",
        ),
        case(
            "a token_url must be a string",
            with_auth(
                "oauth_client_credentials",
                merged(
                    full_auth_config("oauth_client_credentials"),
                    json!({"token_url": 5}),
                ),
            ),
        )
        .error(
            "thing",
            E,
            "authentication.config.token_url",
            "must be a string URL",
        ),
        case(
            "an unknown auth config key is a warning",
            with_auth(
                "api_key",
                merged(full_auth_config("api_key"), json!({"header_name": "X"})),
            ),
        )
        .warning(
            "thing",
            E,
            "authentication.config.header_name",
            "unknown api_key config key",
        ),
        case(
            "an unknown authentication field is a warning",
            simple(json!({"authentication": {"type": "none", "kind": "x"}})),
        )
        .warning("thing", E, "authentication.kind", "unknown field 'kind'"),
        case(
            "auth works in a composite step",
            flow(vec![step(
                "a",
                json!({"authentication": {"type": "jwt", "config": {"private_key": "k"}}}),
            )]),
        )
        .error(
            "flow",
            Some("a"),
            "authentication.config.claims",
            "needs 'claims'",
        ),
    ];
    let required: &[(&str, &[&str])] = &[
        ("api_key", &["key", "value"]),
        (
            "oauth_client_credentials",
            &["client_id", "client_secret", "token_url"],
        ),
        ("jwt", &["private_key", "claims"]),
        (
            "oauth_jwt_bearer",
            &[
                "client_id",
                "private_key",
                "token_url",
                "subject",
                "audience",
            ],
        ),
    ];
    for (kind, keys) in required {
        cases.push(
            case(
                &format!("a complete {kind} config loads"),
                with_auth(kind, full_auth_config(kind)),
            )
            .loads(),
        );
        for key in *keys {
            cases.push(
                case(
                    &format!("{kind} needs {key}"),
                    with_auth(kind, without(full_auth_config(kind), key)),
                )
                .error(
                    "thing",
                    E,
                    &format!("authentication.config.{key}"),
                    &format!("{kind} authentication needs '{key}'"),
                ),
            );
        }
    }
    run(cases);
}

// ---------------------------------------------------------------------------------------
// Templates (docs/spec.md §2)
// ---------------------------------------------------------------------------------------

#[test]
fn templates_pass_every_static_check() {
    let body = |source: &str| simple(json!({"request_body": source}));
    let response = |source: &str| simple(json!({"response_body": source}));
    let header = |source: &str| simple(json!({"headers": [{"key": "X-Value", "value": source}]}));
    let query = |source: &str| simple(json!({"query_parameters": [{"key": "v", "value": source}]}));
    // A composite whose second step, `use`, has `extra` (after `auth` and `fetch-user`, before `later`).
    let chain = |extra: Value| {
        flow(vec![
            step("auth", json!({})),
            step("fetch-user", json!({})),
            step("use", extra),
            step("later", json!({})),
        ])
    };
    let use_body = |source: &str| chain(json!({"request_body": source}));
    let u = Some("use");
    run(vec![
        case("a template syntax error is rejected", body("{{ body_text "))
            .error("thing", E, "request_body", "template syntax error"),
        case("an unclosed block is rejected", body("{% if body_text %}x"))
            .error("thing", E, "request_body", "template syntax error"),
        case(
            "a syntax error in a multi-line template names the line",
            body("line one\n{{ body_text | }}"),
        )
        .error("thing", E, "request_body", "(line 2)"),
        case("an unknown filter is rejected", body("{{ body_text | frm_json }}"))
            .error("thing", E, "request_body", "unknown filter 'frm_json'"),
        case(
            "platform and built-in filters are known",
            body("{{ body_text | from_json | tojson }}{{ 'a' | base64_encode | base64_decode }}{{ [1] | json_encode }}{{ 'x y' | urlencode | default('') | upper }}"),
        )
        .loads(),
        case(
            "an unknown test is rejected",
            body("{% if body_text is shiny %}x{% endif %}"),
        )
        .error("thing", E, "request_body", "unknown test 'shiny'"),
        case("an unknown variable is rejected", body("{{ foo }}"))
            .error("thing", E, "request_body", "unknown variable 'foo'"),
        case(
            "set, if and for bind their names",
            body("{% set n = 1 %}{% for i in [1, 2] %}{{ i + n }}{{ loop.index }}{% endfor %}{% if n %}{{ now() }}{% endif %}"),
        )
        .loads(),
        case("a misspelt step is rejected", use_body("{{ steps.auht.body }}"))
            .error("flow", u, "request_body", "there is no step 'auht'"),
        case(
            "a step cannot read a later step",
            use_body("{{ steps.later.body }}"),
        )
        .error("flow", u, "request_body", "step 'later' runs after this one"),
        case("a step cannot read its own result", use_body("{{ steps.use.body }}"))
            .error("flow", u, "request_body", "cannot read its own result"),
        case(
            "the first step has no step results",
            flow(vec![step("a", json!({"request_body": "{{ steps.b.body }}"})), step("b", json!({}))]),
        )
        .error("flow", Some("a"), "request_body", "this is the first step"),
        case(
            "a hyphenated step read with a dot gets a bracket hint",
            use_body("{{ steps.fetch-user.body }}"),
        )
        .error("flow", u, "request_body", "write steps['fetch-user']"),
        case(
            "a hyphenated step read with brackets loads",
            use_body("{{ steps['fetch-user'].body }} {{ steps[\"fetch-user\"].status_code }}"),
        )
        .loads(),
        case(
            "a step's body, status and headers are readable",
            use_body("{{ steps.auth.body | from_json | attr('token') }}{{ steps.auth.status_code }}{{ steps.auth.headers['content-type'] }}"),
        )
        .loads(),
        case("a step has no other attributes", use_body("{{ steps.auth.bdy }}"))
            .error("flow", u, "request_body", "steps.auth has no attribute 'bdy'"),
        case("request has no other attributes", use_body("{{ request.nope }}"))
            .error("flow", u, "request_body", "request has no attribute 'nope'"),
        case(
            "request attributes are readable",
            use_body("{{ request.body_text }}{{ request.body_raw }}{{ request.query_parameters.page }}"),
        )
        .loads(),
        case(
            "request headers other than Content-Type are hidden",
            use_body("{{ request.headers.Authorization }}"),
        )
        .error("flow", u, "request_body", "exposes only Content-Type, not 'Authorization'"),
        case(
            "request headers Content-Type is readable",
            use_body("{{ request.headers['Content-Type'] }}"),
        )
        .loads(),
        case(
            "response is unknown outside response_body",
            body("{{ response.body }}"),
        )
        .error("thing", E, "request_body", "response is only available in response_body"),
        case(
            "response is readable in response_body",
            response("{{ response.body }}{{ response.status_code }}{{ response.headers }}"),
        )
        .loads(),
        case("response has no other attributes", response("{{ response.json }}"))
            .error("thing", E, "response_body", "response has no attribute 'json'"),
        case("steps do not exist in a simple connector", body("{{ steps.a.body }}"))
            .error("thing", E, "request_body", "steps exist only in composite connectors"),
        case(
            "body_text does not exist in a composite",
            use_body("{{ body_text }}"),
        )
        .error("flow", u, "request_body", "read the caller's body as request.body_text"),
        case(
            "body_text and body_raw are readable in a simple connector",
            body("{{ body_text }}{{ body_raw }}"),
        )
        .loads(),
        case(
            "get_secret is rejected in the url",
            simple(json!({"url": "https://api.example.com/{{ get_secret('k') }}"})),
        )
        .secret("k")
        .error("thing", E, "url", "not in the url"),
        case(
            "get_secret is rejected in request_body",
            body("{{ get_secret('k') }}"),
        )
        .secret("k")
        .error("thing", E, "request_body", "not in request_body"),
        case(
            "get_secret is rejected in response_body",
            response("{{ get_secret('k') }}"),
        )
        .secret("k")
        .error("thing", E, "response_body", "not in response_body"),
        case("get_secret is allowed in a header value", header("Bearer {{ get_secret('k') }}"))
            .secret("k")
            .loads(),
        case("get_secret is allowed in a query value", query("{{ get_secret('k') }}"))
            .secret("k")
            .loads(),
        case(
            "get_secret is allowed in authentication config",
            with_auth("api_key", json!({"key": "X-API-Key", "value": "{{ get_secret('k') }}"})),
        )
        .secret("k")
        .loads(),
        case(
            "get_secret needs a literal name",
            header("{% set n = 'k' %}{{ get_secret(n) }}"),
        )
        .error("thing", E, "headers[0].value", "secret's name as a literal string"),
        case(
            "get_secret cannot be aliased with set",
            header("{% set gs = get_secret %}{{ gs(request.query_parameters.n) }}"),
        )
        .secret("k")
        .error("thing", E, "headers[0].value", "get_secret can only be called directly with a literal name"),
        case(
            "get_secret cannot be passed to a macro",
            header("{% macro m(f) %}{{ f(request.query_parameters.n) }}{% endmacro %}{{ m(get_secret) }}"),
        )
        .error("thing", E, "headers[0].value", "get_secret can only be called directly"),
        case(
            "get_secret cannot be a macro default",
            query("{% macro m(f=get_secret) %}{{ f(request.query_parameters.n) }}{% endmacro %}{{ m() }}"),
        )
        .error("thing", E, "query_parameters[0].value", "get_secret can only be called directly"),
        case(
            "get_secret cannot be stored in a dict",
            header("{{ {'f': get_secret}['f'](request.query_parameters.n) }}"),
        )
        .error("thing", E, "headers[0].value", "get_secret can only be called directly"),
        case(
            "get_secret cannot be stored in a list",
            header("{{ [get_secret][0](request.query_parameters.n) }}"),
        )
        .error("thing", E, "headers[0].value", "get_secret can only be called directly"),
        case(
            "get_secret cannot be bound by with",
            with_auth("api_key", json!({"key": "X-API-Key", "value": "{% with f = get_secret %}{{ f(request.query_parameters.n) }}{% endwith %}"})),
        )
        .error("thing", E, "authentication.config.value", "get_secret can only be called directly"),
        case(
            "get_secret cannot be kept in a namespace",
            header("{% set ns = namespace(f=get_secret) %}{{ ns.f(request.query_parameters.n) }}"),
        )
        .error("thing", E, "headers[0].value", "get_secret can only be called directly"),
        case(
            "get_secret cannot be redefined",
            header("{% set get_secret = get_variable %}{{ get_secret('k') }}"),
        )
        .error("thing", E, "headers[0].value", "get_secret can only be called directly"),
        case(
            "an aliased get_secret in a composite step names the step and field",
            chain(json!({"headers": [{"key": "X-A", "value": "{% set gs = get_secret %}{{ gs(steps.auth.body) }}"}]})),
        )
        .error("flow", u, "headers[0].value", "get_secret can only be called directly"),
        case(
            "get_secret is not a value in a request body either",
            body("{% set gs = get_secret %}{{ gs(body_text) }}"),
        )
        .error("thing", E, "request_body", "get_secret can only be called directly"),
        case(
            "get_secret in a do statement still needs a literal name",
            header("{% do get_secret(request.query_parameters.n) %}x"),
        )
        .error("thing", E, "headers[0].value", "secret's name as a literal string"),
        case(
            "a secret name with a hyphen is rejected",
            header("{{ get_secret('api-key') }}"),
        )
        .error("thing", E, "headers[0].value", "'api-key' is not a valid secret name: secret names are letters, digits and '_'"),
        case(
            "a secret name with a dot is rejected in authentication config",
            with_auth("api_key", json!({"key": "X-API-Key", "value": "{{ get_secret('../api_key') }}"})),
        )
        .error("thing", E, "authentication.config.value", "'../api_key' is not a valid secret name"),
        case(
            "an empty secret name is rejected",
            query("{{ get_secret('') }}"),
        )
        .error("thing", E, "query_parameters[0].value", "'' is not a valid secret name"),
        case(
            "a secret name of letters, digits and underscores loads",
            header("{{ get_secret('Api_Key_2') }}"),
        )
        .secret("Api_Key_2")
        .loads(),
        case(
            "a secret that is not configured is a warning",
            header("{{ get_secret('missing_key') }}"),
        )
        .warning("thing", E, "headers[0].value", "secret 'missing_key' is not configured"),
        case(
            "get_variable needs a literal name",
            body("{% set n = 'k' %}{{ get_variable(n) }}"),
        )
        .error("thing", E, "request_body", "variable's name as a literal string"),
        case(
            "a variable that is not set is a warning",
            body("{{ get_variable('region') }}"),
        )
        .warning("thing", E, "request_body", "variable 'region' is not set"),
        case(
            "jwt_encode is allowed in request_body",
            body("{{ jwt_encode({'sub': 'x'}, 'key', 'HS256') }}"),
        )
        .loads(),
        case(
            "jwt_encode is rejected in response_body",
            response("{{ jwt_encode({'sub': 'x'}, 'key', 'HS256') }}"),
        )
        .error("thing", E, "response_body", "jwt_encode() is not available in response_body"),
        case("include is rejected", body("{% include 'other.txt' %}"))
            .error("thing", E, "request_body", "{% include %}"),
        case(
            "include names its line",
            body("a\nb\n{% include 'other.txt' %}"),
        )
        .error("thing", E, "request_body", "write the template inline (line 3)"),
        case("import is rejected", body("{% import 'm.txt' as m %}"))
            .error("thing", E, "request_body", "{% import %}"),
        case(
            "extends is rejected",
            body("{% extends 'base.txt' %}"),
        )
        .error("thing", E, "request_body", "are not available in registry templates"),
        case(
            "a later step guarded by is defined loads",
            use_body("{{ steps.later is defined }}"),
        )
        .loads(),
        case(
            "an unknown variable guarded by default loads",
            body("{{ foo | default('x') }}"),
        )
        .loads(),
        case(
            "an unknown variable guarded by is defined loads",
            body("{% if foo is defined %}x{% endif %}"),
        )
        .loads(),
        case(
            "an unknown variable called as a function is rejected",
            body("{{ fetch('x') }}"),
        )
        .error("thing", E, "request_body", "unknown variable 'fetch'"),
        case(
            "a template error in a header names the header",
            chain(json!({"headers": [{"key": "A", "value": "ok"}, {"key": "B", "value": "{{ x | nope }}"}]})),
        )
        .error("flow", u, "headers[1].value", "unknown filter 'nope'"),
        case(
            "a template error in a query value names the parameter",
            query("{{ steps.a.body }}"),
        )
        .error("thing", E, "query_parameters[0].value", "steps exist only in composite"),
    ]);
}

// ---------------------------------------------------------------------------------------
// Composite connectors
// ---------------------------------------------------------------------------------------

#[test]
fn composites_follow_every_rule() {
    run(vec![
        case(
            "a composite with steps loads",
            flow(vec![step("auth", json!({})), step("fetch-user", json!({}))]),
        )
        .loads_as("flow"),
        case(
            "a composite permalink is derived from its name",
            json!({"composite_connectors": [{"name": "Auth Flow", "steps": [step("a", json!({}))]}]}),
        )
        .loads_as("auth-flow"),
        case("a composite with no steps is rejected", flow(vec![]))
            .error("flow", E, "steps", "at least one step"),
        case(
            "a composite without a steps field is rejected",
            json!({"composite_connectors": [{"name": "Flow", "permalink": "flow"}]}),
        )
        .error("flow", E, "steps", "at least one step"),
        case(
            "steps must be an array",
            json!({"composite_connectors": [{"name": "Flow", "permalink": "flow", "steps": {}}]}),
        )
        .error("flow", E, "steps", "must be an array"),
        case(
            "a composite name is required",
            json!({"composite_connectors": [{"permalink": "flow", "steps": [step("a", json!({}))]}]}),
        )
        .error("flow", E, "name", "missing field `name`"),
        case(
            "a composite permalink must be a slug",
            json!({"composite_connectors": [{"name": "Flow", "permalink": "Flow!", "steps": [step("a", json!({}))]}]}),
        )
        .error("Flow!", E, "permalink", "not a valid permalink"),
        case(
            "a step name must be a slug",
            flow(vec![step("Fetch User", json!({}))]),
        )
        .error("flow", Some("Fetch User"), "name", "not a valid step name"),
        case(
            "a step name with an underscore is rejected",
            flow(vec![step("fetch_user", json!({}))]),
        )
        .error("flow", Some("fetch_user"), "name", "not a valid step name"),
        case(
            "a step name is required",
            flow(vec![json!({"url": "https://api.example.com/x"})]),
        )
        .error("flow", Some("steps[0]"), "name", "missing field `name`"),
        case(
            "step names are unique",
            flow(vec![step("auth", json!({})), step("auth", json!({}))]),
        )
        .error("flow", Some("auth"), "name", "duplicate step name 'auth'"),
        case(
            "a step url is required",
            flow(vec![step("a", json!({"url": null}))]),
        )
        .error("flow", Some("a"), "url", "missing field `url`"),
        case(
            "a step url follows the url rules",
            flow(vec![step("a", json!({"url": "https://{{ steps.x.body }}/x"}))]),
        )
        .error("flow", Some("a"), "url", "scheme and host must be literal"),
        case(
            "a step method is checked",
            flow(vec![step("a", json!({"method": "GO"}))]),
        )
        .error("flow", Some("a"), "method", "not a supported method"),
        case(
            "response_content_type on a non-last step is a warning",
            flow(vec![
                step("a", json!({"response_content_type": "application/json"})),
                step("b", json!({})),
            ]),
        )
        .warning("flow", Some("a"), "response_content_type", "only the last step's"),
        case(
            "response_content_type on the last step loads",
            flow(vec![
                step("a", json!({})),
                step("b", json!({"response_content_type": "application/json"})),
            ]),
        )
        .loads(),
        case(
            "response_content_type must be one line",
            simple(json!({"response_content_type": "text/plain\r\nX-Evil: 1"})),
        )
        .error("thing", E, "response_content_type", "single-line"),
        case(
            "a step reads the previous step's response_body output",
            flow(vec![
                step("auth", json!({"response_body": "{{ response.body | from_json | attr('access_token') }}"})),
                step("use", json!({"headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body }}"}]})),
            ]),
        )
        .loads(),
    ]);
}

// ---------------------------------------------------------------------------------------
// Unknown fields, type errors, file shape
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_fields_type_errors_and_file_shape_are_reported() {
    run(vec![
        case(
            "an unknown top-level field is a warning",
            json!({"connectors": [], "conectors": []}),
        )
        .warning("-", E, "conectors", "unknown field 'conectors'"),
        case(
            "the $schema field is known",
            json!({"$schema": "./schema.json", "connectors": [connector(json!({}))]}),
        )
        .loads(),
        case(
            "an unknown connector field is a warning",
            simple(json!({"colour": "red"})),
        )
        .warning("thing", E, "colour", "unknown field 'colour'"),
        case(
            "an unknown composite field is a warning",
            json!({"composite_connectors": [{"name": "Flow", "permalink": "flow", "timeout": 5, "steps": [step("a", json!({}))]}]}),
        )
        .warning("flow", E, "timeout", "unknown field 'timeout'"),
        case(
            "an unknown step field is a warning",
            flow(vec![step("a", json!({"retries": 3}))]),
        )
        .warning("flow", Some("a"), "retries", "unknown field 'retries'"),
        case(
            "an unknown header entry field is a warning",
            simple(json!({"headers": [{"key": "A", "value": "b", "secret": true}]})),
        )
        .warning("thing", E, "headers[0].secret", "unknown field 'secret'"),
        case(
            "an unknown query entry field in a step is a warning",
            flow(vec![step("a", json!({"query_parameters": [{"key": "q", "value": "1", "type": "int"}]}))]),
        )
        .warning("flow", Some("a"), "query_parameters[0].type", "unknown field 'type'"),
        case(
            "an unknown path parameter field is a warning",
            simple(json!({
                "url": "https://api.example.com/{{ pathParams.id }}",
                "path_parameters": [{"key": "id", "required": true}]
            })),
        )
        .warning("thing", E, "path_parameters[0].required", "unknown field 'required'"),
        case(
            "a type error names the field",
            simple(json!({"headers": "x"})),
        )
        .error("thing", E, "headers", "invalid type"),
        case(
            "a nested type error names the entry",
            simple(json!({"headers": [{"key": "A", "value": 5}]})),
        )
        .error("thing", E, "headers[0].value", "invalid type"),
        case(
            "a type error in a step names the step and field",
            flow(vec![step("a", json!({})), step("b", json!({"query_parameters": [{"key": "q", "value": "1", "overridable": "yes"}]}))]),
        )
        .error("flow", Some("b"), "query_parameters[0].overridable", "invalid type"),
        case(
            "a missing header value names the entry",
            simple(json!({"headers": [{"key": "A"}]})),
        )
        .error("thing", E, "headers[0].value", "missing field `value`"),
        case(
            "a connector that is not an object is rejected",
            json!({"connectors": ["thing"]}),
        )
        .error("connectors[0]", E, "(connector)", "invalid type"),
        case(
            "a step that is not an object is rejected",
            flow(vec![json!("auth")]),
        )
        .error("flow", Some("steps[0]"), "(step)", "invalid type"),
        case(
            "connectors must be an array",
            json!({"connectors": {"name": "x"}}),
        )
        .error("-", E, "connectors", "must be an array"),
        raw("a JSON syntax error is reported", "{\"connectors\": [")
            .error("-", E, "(file)", "not valid JSON"),
        raw("a top level that is not an object is rejected", "[]")
            .error("-", E, "(file)", "must be a JSON object"),
        raw("an empty file loads", "").loads(),
        raw("a blank file loads", "  \n\t").loads(),
        raw("an empty object loads", "{}").loads(),
        raw("null arrays load", "{\"connectors\": null, \"composite_connectors\": null}").loads(),
    ]);
}

// ---------------------------------------------------------------------------------------
// Whole-report behaviour and output
// ---------------------------------------------------------------------------------------

#[test]
fn an_empty_file_loads_as_an_empty_registry() {
    let registry = build_registry("", &BuildOptions::default()).expect("empty file loads");
    assert!(registry.is_empty());
    assert!(registry.warnings.is_empty());
}

#[test]
fn a_lowercase_method_is_normalised() {
    let registry = build_registry(
        &simple(json!({"method": "patch"})).to_string(),
        &BuildOptions::default(),
    )
    .expect("loads");
    assert_eq!(
        registry.get("thing").unwrap().steps[0].method,
        HttpMethod::PATCH
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let registry = json!({
        "connectors": [
            connector(json!({"permalink": "one", "method": "FETCH"})),
            connector(json!({"permalink": "two", "url": "ftp://x"})),
        ],
        "composite_connectors": [
            {"name": "Three", "permalink": "three", "steps": [
                step("a", json!({})),
                step("b", json!({"request_body": "{{ steps.c.body }}"})),
            ]}
        ]
    });
    let rejected = build_registry(&registry.to_string(), &BuildOptions::default())
        .expect_err("three errors reject the registry");
    let errors: Vec<(&str, Option<&str>, &str)> = rejected
        .report
        .errors()
        .map(|p| (p.connector.as_str(), p.step.as_deref(), p.field.as_str()))
        .collect();
    assert_eq!(
        errors,
        vec![
            ("one", None, "method"),
            ("two", None, "url"),
            ("three", Some("b"), "request_body"),
        ]
    );
    let summary = rejected.to_string();
    assert!(summary.contains("3 errors"), "{summary}");
}

#[test]
fn problems_in_several_fields_of_one_connector_are_all_reported() {
    let registry = simple(json!({
        "url": "https://api.example.com/{{ pathParams.x }}",
        "method": "FETCH",
        "headers": [{"key": "Host", "value": "x"}],
        "request_body": "{{ nope }}",
    }));
    let rejected =
        build_registry(&registry.to_string(), &BuildOptions::default()).expect_err("rejected");
    let fields: Vec<&str> = rejected.report.errors().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["method", "url", "headers[0].key", "request_body"]
    );
}

#[test]
fn text_output_is_one_line_per_problem_naming_connector_step_and_field() {
    let registry = json!({
        "composite_connectors": [{"name": "Auth and Fetch", "permalink": "auth-and-fetch", "steps": [
            step("auth", json!({})),
            step("fetch-user", json!({
                "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body | frm_json }}"}],
                "retries": 2
            })),
        ]}]
    });
    let validation = validate_text(
        &registry.to_string(),
        SecretStore::new(),
        Variables::new(),
        None,
    );
    let text = render(&validation, Format::Text);
    assert_eq!(
        text,
        "error: auth-and-fetch › fetch-user › headers[0].value: unknown filter 'frm_json'\n\
         warning: auth-and-fetch › fetch-user › retries: unknown field 'retries' is ignored (known fields: name, url, method, headers, query_parameters, authentication, request_body, response_body, response_content_type, cache_ttl_seconds, cache, when, on_error, for_each, max_concurrency, retry, timeout_ms, depends_on, rate_limit)\n\
         invalid: 1 error(s), 1 warning(s)\n"
    );

    let simple_text = render(
        &validate_text(
            &simple(json!({"method": "FETCH"})).to_string(),
            SecretStore::new(),
            Variables::new(),
            None,
        ),
        Format::Text,
    );
    assert!(
        simple_text.starts_with("error: thing › method: 'FETCH' is not a supported method"),
        "{simple_text}"
    );
}

#[test]
fn text_output_of_a_valid_registry_ends_with_ok() {
    let validation = validate_text(
        &simple(json!({"url": "http://api.example.com/x"})).to_string(),
        SecretStore::new(),
        Variables::new(),
        None,
    );
    assert_eq!(validation.connectors, 1);
    let text = render(&validation, Format::Text);
    assert!(text.starts_with("warning: thing › url: upstreams must use https://"));
    assert!(
        text.ends_with("ok: 1 connector(s), 1 warning(s)\n"),
        "{text}"
    );
}

#[test]
fn json_output_lists_every_problem_with_its_location() {
    let registry = json!({
        "connectors": [connector(json!({"method": "FETCH", "colour": "red"}))],
        "composite_connectors": [{"name": "Flow", "permalink": "flow", "steps": [
            step("a", json!({"request_body": "{{ steps.a.body }}"}))
        ]}]
    });
    let validation = validate_text(
        &registry.to_string(),
        SecretStore::new(),
        Variables::new(),
        None,
    );
    let doc: Value = serde_json::from_str(&render(&validation, Format::Json)).expect("valid JSON");
    assert_eq!(doc["valid"], json!(false));
    assert_eq!(doc["connectors"], json!(0));
    assert_eq!(doc["errors"], json!(2));
    assert_eq!(doc["warnings"], json!(1));
    let problems = doc["problems"].as_array().expect("problems array");
    assert_eq!(problems.len(), 3);
    assert!(problems.contains(&json!({
        "severity": "warning",
        "connector": "thing",
        "field": "colour",
        "message": "unknown field 'colour' is ignored (known fields: name, permalink, url, method, headers, query_parameters, path_parameters, authentication, request_body, response_body, response_content_type, cache_ttl_seconds, cache, rate_limit)"
    })));
    let method = problems
        .iter()
        .find(|p| p["field"] == "method")
        .expect("method problem");
    assert_eq!(method["severity"], "error");
    assert_eq!(method["connector"], "thing");
    assert!(
        method.get("step").is_none(),
        "no step key for a simple connector"
    );
    let step = problems
        .iter()
        .find(|p| p["connector"] == "flow")
        .expect("step problem");
    assert_eq!(step["step"], "a");
    assert_eq!(step["field"], "request_body");
    assert!(step["message"]
        .as_str()
        .unwrap()
        .contains("cannot read its own result"));
    for p in problems {
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys
            .iter()
            .all(|k| ["severity", "connector", "step", "field", "message"].contains(k)));
    }
}

#[test]
fn json_output_of_a_valid_registry_is_valid() {
    let validation = validate_text(
        &simple(json!({})).to_string(),
        SecretStore::new(),
        Variables::new(),
        None,
    );
    let doc: Value = serde_json::from_str(&render(&validation, Format::Json)).expect("valid JSON");
    assert_eq!(
        doc,
        json!({"valid": true, "connectors": 1, "errors": 0, "warnings": 0, "problems": []})
    );
}

// ---------------------------------------------------------------------------------------
// Caller identity (docs/spec.md §9)
// ---------------------------------------------------------------------------------------

#[test]
fn reads_of_the_caller_need_the_servers_identity_settings() {
    let header = |source: &str| simple(json!({"headers": [{"key": "X-Member", "value": source}]}));
    let in_step = |field: Value| flow(vec![step("auth", json!({})), step("fetch", field)]);
    let f = Some("fetch");
    const NEEDS_USER: &str = "reads user.*, which needs caller identity";
    const NEEDS_TENANT: &str =
        "reads tenant_id, which needs --tenant-id or --identity-tenant-claim";
    run(vec![
        case("user.* loads on a server with identity", header("{{ user.id }}"))
            .identity(true, false)
            .loads(),
        case(
            "every user attribute and profile field by id loads",
            header("{{ user.id }}{{ user.email }}{{ user.first_name }}{{ user.last_name }}{{ user.username }}{{ user.profile_fields.by_id(7) }}{{ user.profile_fields.by_id('7') }}"),
        )
        .identity(true, false)
        .loads(),
        case("tenant_id loads with a tenant", header("{{ tenant_id }}"))
            .identity(false, true)
            .loads(),
        case(
            "user.* is refused without a key source, naming connector, step and field",
            in_step(json!({"headers": [{"key": "X-Member", "value": "{{ user.id }}"}]})),
        )
        .identity(false, true)
        .error("flow", f, "headers[0].value", NEEDS_USER),
        case(
            "tenant_id is refused without a tenant flag",
            in_step(json!({"query_parameters": [{"key": "t", "value": "{{ tenant_id }}"}]})),
        )
        .identity(true, false)
        .error("flow", f, "query_parameters[0].value", NEEDS_TENANT),
        case(
            "a guarded read still needs the setting (it is a read of the caller)",
            header("{{ user.email | default('') }}"),
        )
        .identity(false, false)
        .error("thing", None, "headers[0].value", NEEDS_USER),
        case(
            "reads in the url, auth config and response_body count too",
            simple(json!({
                "url": "https://api.example.com/members/{{ user.id }}",
                "authentication": {"type": "api_key", "config": {"key": "X-Tenant", "value": "{{ tenant_id }}"}},
                "response_body": "{{ user.first_name }}"
            })),
        )
        .identity(false, false)
        .error("thing", None, "url", NEEDS_USER)
        .error("thing", None, "authentication.config.value", NEEDS_TENANT)
        .error("thing", None, "response_body", NEEDS_USER),
        case(
            "without the server's settings (validate without identity flags) a read only warns",
            header("{{ user.id }}{{ tenant_id }}"),
        )
        .warning("thing", None, "headers[0].value", "a server without it refuses this registry")
        .warning("thing", None, "headers[0].value", NEEDS_TENANT),
        case("serving is the same as validating with flags", header("{{ user.id }}"))
            .serve()
            .identity(false, false)
            .error("thing", None, "headers[0].value", NEEDS_USER),
        case("an unknown user attribute is refused", header("{{ user.name }}"))
            .identity(true, false)
            .error(
                "thing",
                None,
                "headers[0].value",
                "user has no attribute 'name'; use id, email, first_name, last_name, username, profile_fields",
            ),
        case(
            "a template's own variable called user is not the caller",
            header("{% set user = {'name': 'x'} %}{{ user.name }}"),
        )
        .identity(false, false)
        .loads(),
    ]);
}

#[test]
fn the_compiled_connector_records_what_it_reads_of_the_caller() {
    let text = json!({
        "connectors": [
            connector(json!({"name": "Plain", "permalink": "plain"})),
            connector(json!({"name": "Member", "permalink": "member", "headers": [{"key": "X-M", "value": "{{ user.id }}"}]})),
            connector(json!({"name": "Tenant", "permalink": "tenant", "request_body": "{{ tenant_id }}"})),
        ],
        "composite_connectors": [{"name": "Flow", "permalink": "flow", "steps": [
            step("auth", json!({})),
            step("fetch", json!({"response_body": "{{ user.email }}{{ tenant_id }}"})),
        ]}]
    })
    .to_string();
    let options = BuildOptions {
        identity: Some(CallerIdentity {
            user: true,
            tenant_id: true,
        }),
        ..BuildOptions::default()
    };
    let registry = build_registry(&text, &options).expect("loads");
    let reads = |p: &str| {
        let r = registry.get(p).unwrap().reads;
        (r.user, r.tenant_id)
    };
    assert_eq!(reads("plain"), (false, false));
    assert_eq!(reads("member"), (true, false));
    assert_eq!(reads("tenant"), (false, true));
    assert_eq!(reads("flow"), (true, true));
}

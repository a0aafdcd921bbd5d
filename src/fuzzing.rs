//! The bodies of the cargo-fuzz targets in `fuzz/fuzz_targets/`, shared with
//! `tests/integration/fuzz_corpus.rs`, which replays every committed input in `fuzz/corpus/<target>/`
//! through the same functions as a normal `cargo test` (no fuzzer, no nightly).
//!
//! Each function takes arbitrary bytes and panics when an invariant breaks; returning
//! normally means the input was handled (accepted or refused) as it should be.
//!
//! - [`registry_build`]: the bytes are a registry file. Building it never panics, and every
//!   URL of a registry that builds, rendered with stand-in request data, either fails or
//!   stays on the origin fixed at load: the host an HTTP client would connect to is that
//!   origin's host.
//! - [`template_render`]: `template \0 JSON context`. The template is checked as each kind of
//!   field, compiled and rendered in the real environment as a URL, a header value and a
//!   response transform, with a small fuel: no panic, no hang, output within the cap, no
//!   context value in an error message.
//! - [`url_build`]: `[URL template \0] value`. The value, hostile, is rendered into the paths
//!   and query strings of fixed URL templates (and of the given one) through the real engine
//!   as [`Field::Url`]: it comes out as exactly one percent-encoded segment or query value
//!   that decodes back to itself, or the render is refused (`.` and `..`); the URL keeps its
//!   origin and gains no `/`, `?`, `&`, `#` or dot segment. The path-parameter rule is
//!   checked on the same value.
//! - [`from_json`]: the bytes are JSON text (lossily UTF-8). `from_json`'s lazily built
//!   value and the value minijinja's own deserializer builds in full either both fail, at the
//!   same line and column, or print, serialize and compare the same.

use std::sync::Arc;

use bytes::Bytes;
use minijinja::Value;

use crate::registry::build::{build_registry, BuildOptions, LoadMode};
use crate::registry::rules::is_valid_path_param_value;
use crate::template::context::RequestView;
use crate::template::{
    analyze, new_environment, ContextKind as ConnectorKind, Field, RenderLimits, Scope,
    SecretStore, TemplateSet, Variables,
};
use crate::upstream::origin::{rendered_url_matches, url_origin, UrlOrigin};

/// Fuel of the fuzzed renders: a tenth of the default, so a hostile input costs well under
/// a second even with the fuzzer's instrumentation, yet plenty for the realistic seeds.
pub(crate) const FUZZ_FUEL: u64 = 100_000;

/// Output cap of the fuzzed renders.
pub(crate) const FUZZ_MAX_OUTPUT: usize = 64 * 1024;

/// A context value that must never appear in an error message.
const SENTINEL: &str = "Zq9SENTINELvX";

fn limits() -> RenderLimits {
    RenderLimits {
        fuel: FUZZ_FUEL,
        max_output_bytes: FUZZ_MAX_OUTPUT,
        ..RenderLimits::default()
    }
}

fn secrets() -> Arc<SecretStore> {
    let mut secrets = SecretStore::new();
    secrets.insert("api_token", "secret-token");
    secrets.insert("client_secret", "cs");
    Arc::new(secrets)
}

fn variables() -> Arc<Variables> {
    let serde_json::Value::Object(map) = serde_json::json!({
        "host": "api.example.com",
        "base_url": "https://api.example.com",
        "region": "eu",
    }) else {
        unreachable!("a JSON object literal")
    };
    Arc::new(Variables::from_map(map))
}

/// Splits `data` at its first NUL byte: (before, after). Without one, `after` is `None`.
fn split_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// The request data templates see in the fuzz targets.
fn request_value(query: Vec<(String, String)>, body: &str) -> Value {
    Value::from_object(RequestView::new(
        Bytes::from(body.to_string()),
        Some("application/json".into()),
        query,
    ))
}

/// `scheme://authority` of `url` as an HTTP client parses it, lower-cased.
fn client_origin(url: &str) -> Option<String> {
    let uri: awc::http::Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?).to_ascii_lowercase())
}

/// The URL invariant of the runtime: a rendered URL that passes [`rendered_url_matches`] (and has its
/// fragment dropped, as a step does) is sent to the origin's host and nowhere else.
fn assert_stays_on_origin(url: &str, origin: &str) {
    if origin.is_empty() || !rendered_url_matches(url, origin) {
        return;
    }
    let sent = url.split('#').next().unwrap_or_default();
    if let Some(parsed) = client_origin(sent) {
        assert_eq!(
            parsed, origin,
            "the URL {sent:?} passed the origin check for {origin:?} but a client would connect to {parsed:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// registry_build
// ---------------------------------------------------------------------------------------

/// Fuzz target `registry_build`: `data` is a registry file.
pub fn registry_build(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let validate = BuildOptions {
        limits: limits(),
        ..BuildOptions::default()
    };
    let serve = BuildOptions {
        secrets: secrets(),
        variables: variables(),
        limits: limits(),
        mode: LoadMode::Serve,
        allow_http: true,
        identity: Some(crate::registry::CallerIdentity {
            user: true,
            tenant_id: true,
        }),
    };
    for options in [validate, serve] {
        let Ok(registry) = build_registry(&text, &options) else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        for connector in registry.connectors() {
            assert!(
                crate::registry::rules::is_slug(&connector.permalink),
                "permalink {:?} is not a slug",
                connector.permalink
            );
            assert!(
                seen.insert(connector.permalink.clone()),
                "duplicate permalink {:?}",
                connector.permalink
            );
            assert!(!connector.steps.is_empty(), "a connector without steps");
            let ctx = stand_in_context(connector);
            for step in &connector.steps {
                if let Ok(url) = registry.templates.render(&step.url, &ctx) {
                    assert_stays_on_origin(&url, &step.origin);
                }
            }
        }
    }
}

/// Variables for rendering a connector's URLs outside a run: every path parameter and
/// query parameter reads `x`, every step answered `{}`.
fn stand_in_context(connector: &crate::registry::Connector) -> Value {
    let path_params = Value::from_pairs(
        connector
            .path_parameters
            .iter()
            .map(|(k, _)| (k.clone(), Value::from("x"))),
    );
    let step = Value::from_pairs([
        ("body", Value::from("{}")),
        ("status_code", Value::from(200)),
        (
            "headers",
            Value::from_pairs([("content-type", "application/json")]),
        ),
    ]);
    let steps = Value::from_pairs(
        connector
            .steps
            .iter()
            .map(|s| (s.name.clone(), step.clone())),
    );
    Value::from_pairs([
        (
            "request",
            request_value(vec![("id".into(), "x".into())], "{}"),
        ),
        ("pathParams", path_params),
        ("steps", steps),
        ("body_text", Value::from("{}")),
        ("body_raw", Value::from_bytes(b"{}".to_vec())),
    ])
}

// ---------------------------------------------------------------------------------------
// template_render
// ---------------------------------------------------------------------------------------

/// Fuzz target `template_render`: `template \0 JSON object` (the context; optional).
///
/// The context's keys become variables, except `request`, which is built like a caller's
/// request from `{"query": {k: v}, "body": "..."}`. A variable `leak` holding a sentinel is
/// always there: no error message may contain it unless the template text does.
pub fn template_render(data: &[u8]) {
    let (source, context) = split_nul(data);
    let source = String::from_utf8_lossy(source);
    let context: serde_json::Map<String, serde_json::Value> = context
        .and_then(|c| serde_json::from_slice(c).ok())
        .unwrap_or_default();
    let mut vars: Vec<(String, Value)> = Vec::new();
    for (key, value) in &context {
        if key == "request" {
            continue;
        }
        vars.push((
            key.clone(),
            serde_json::from_value(value.clone()).unwrap_or_default(),
        ));
    }
    let query: Vec<(String, String)> = context
        .get("request")
        .and_then(|r| r.get("query"))
        .and_then(serde_json::Value::as_object)
        .map(|q| {
            q.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let body = context
        .get("request")
        .and_then(|r| r.get("body"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    vars.push(("request".into(), request_value(query, body)));
    vars.push(("leak".into(), Value::from(SENTINEL)));
    let ctx = Value::from_pairs(vars);

    let mut set = TemplateSet::new(new_environment(secrets(), variables(), limits()), limits());
    let earlier = ["auth".to_string()];
    let later = ["fetch".to_string()];
    let path_params = ["id".to_string()];
    for (i, field) in Field::ALL.into_iter().enumerate() {
        for kind in [ConnectorKind::Composite, ConnectorKind::Simple] {
            let scope = Scope {
                field,
                kind,
                earlier_steps: &earlier,
                current_and_later_steps: &later,
                path_params: &path_params,
                item: field == Field::RequestBody,
            };
            // The load-time checks must not panic; their verdict does not matter here, the
            // render below must be safe either way.
            let _ = analyze(&source, &scope, set.env());
            if field == Field::Url {
                let _ = url_origin(&source);
            }
        }
        // Rendered as three fields that differ in what they allow and how they escape (a URL
        // percent-encodes; `get_secret` only in a header; `jwt_encode` not in a response
        // transform); the other fields render like these.
        if !matches!(field, Field::Url | Field::HeaderValue | Field::ResponseBody) {
            continue;
        }
        let Ok(id) = set.add(&format!("fuzz/{i}/t"), field, &source) else {
            continue;
        };
        match set.render(&id, &ctx) {
            Ok(output) => assert!(
                output.len() <= FUZZ_MAX_OUTPUT,
                "a render of {} bytes passed the {FUZZ_MAX_OUTPUT}-byte cap",
                output.len()
            ),
            Err(e) => assert!(
                source.contains(SENTINEL) || !e.message.contains(SENTINEL),
                "an error message shows a context value: {}",
                e.message
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// url_build
// ---------------------------------------------------------------------------------------

/// Where a fixed URL template interpolates the value.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Path segment `n` (0 is the first segment after the host) is exactly the value.
    Segment(usize),
    /// Query parameter `key` is exactly the value.
    Query(&'static str),
}

/// A fixed URL template rendered with the fuzzed value `v`.
struct UrlCase {
    template: &'static str,
    origin: &'static str,
    /// Slots that hold exactly `v` (percent-encoded); empty when `v` is transformed first.
    slots: &'static [Slot],
    /// `urlencode` keeps `/` (Jinja2's `quote(safe='/')`): the value may add segments there,
    /// but never a query parameter, a fragment or a dot segment.
    quoted: bool,
}

const ORIGIN: &str = "https://api.example.com";

const URL_CASES: &[UrlCase] = &[
    UrlCase {
        template: "https://api.example.com/items/{{ v }}",
        origin: ORIGIN,
        slots: &[Slot::Segment(1)],
        quoted: false,
    },
    UrlCase {
        template: "https://api.example.com/items/{{ v }}?q={{ v }}&page=2",
        origin: ORIGIN,
        slots: &[Slot::Segment(1), Slot::Query("q")],
        quoted: false,
    },
    UrlCase {
        template: "https://api.example.com/{{ v }}/sub/{{ request.query_parameters.id }}?a={{ request.query_parameters.id }}",
        origin: ORIGIN,
        slots: &[Slot::Segment(0), Slot::Segment(2), Slot::Query("a")],
        quoted: false,
    },
    UrlCase {
        template: "https://api.example.com/files/{{ v }}.json?x=1",
        origin: ORIGIN,
        slots: &[],
        quoted: false,
    },
    UrlCase {
        template: "https://api.example.com/items/{{ v ~ '' }}?q={{ v | string }}",
        origin: ORIGIN,
        slots: &[Slot::Segment(1), Slot::Query("q")],
        quoted: false,
    },
    UrlCase {
        template: "https://api.example.com/items/{{ v | e }}",
        origin: ORIGIN,
        slots: &[],
        quoted: false,
    },
    UrlCase {
        template: "https://api.example.com/items/{{ v | lower }}?q={{ v | trim }}",
        origin: ORIGIN,
        slots: &[],
        quoted: false,
    },
    UrlCase {
        template: "{{ get_variable('base_url') }}/items/{{ v }}",
        origin: ORIGIN,
        slots: &[Slot::Segment(1)],
        quoted: false,
    },
    UrlCase {
        template: "https://{{ get_variable('host') }}/items/{{ v }}",
        origin: ORIGIN,
        slots: &[Slot::Segment(1)],
        quoted: false,
    },
    UrlCase {
        template: "https://api.example.com/items/{{ v | urlencode }}?q={{ v | urlencode }}",
        origin: ORIGIN,
        slots: &[],
        quoted: true,
    },
];

/// Percent-decodes `s` to text; `None` if the bytes are not UTF-8.
fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Path segments after the origin, and the query string.
fn split_url(url: &str) -> (Vec<&str>, &str) {
    let rest = url.get(ORIGIN.len()..).unwrap_or_default();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.strip_prefix('/').unwrap_or(path);
    (path.split('/').collect(), query)
}

fn count(s: &str, c: char) -> usize {
    s.matches(c).count()
}

/// Fuzz target `url_build`: `[URL template \0] value`.
pub fn url_build(data: &[u8]) {
    let (template, value) = match split_nul(data) {
        (template, Some(value)) => (Some(String::from_utf8_lossy(template)), value),
        (value, None) => (None, value),
    };
    let v = String::from_utf8_lossy(value).into_owned();

    // The path-parameter rule (docs/spec.md §3) on the same value.
    let rule = is_valid_path_param_value(&v);
    let expected = (1..=200).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        && !v.contains("..")
        && v != ".";
    assert_eq!(rule, expected, "path-parameter rule on {v:?}");

    let mut set = TemplateSet::new(new_environment(secrets(), variables(), limits()), limits());
    let ids: Vec<_> = URL_CASES
        .iter()
        .enumerate()
        .map(|(i, case)| {
            set.add(&format!("url/{i}/url"), Field::Url, case.template)
                .expect("the fixed URL templates compile")
        })
        .collect();
    let ctx = Value::from_pairs([
        ("v", Value::from(v.as_str())),
        ("request", request_value(vec![("id".into(), v.clone())], "")),
    ]);
    let reference = Value::from_pairs([
        ("v", Value::from("x")),
        (
            "request",
            request_value(vec![("id".into(), "x".into())], ""),
        ),
    ]);
    let dot = v == "." || v == "..";
    for (case, id) in URL_CASES.iter().zip(&ids) {
        let skeleton = set
            .render(id, &reference)
            .expect("the fixed URL templates render with a plain value");
        let url = match set.render(id, &ctx) {
            Ok(url) => url,
            Err(e) => {
                // Only a value that is (or, transformed, becomes) `.` or `..` is refused.
                assert!(
                    e.message.starts_with("url:") || case.quoted,
                    "{:?} with {v:?} failed: {}",
                    case.template,
                    e.message
                );
                if case.slots.is_empty() {
                    continue;
                }
                assert!(dot, "{:?} refused {v:?}: {}", case.template, e.message);
                continue;
            }
        };
        assert!(
            !dot || case.slots.is_empty(),
            "{:?} accepted {v:?} as {url:?}",
            case.template
        );
        assert!(
            rendered_url_matches(&url, case.origin),
            "{url:?} left its origin"
        );
        assert_stays_on_origin(&url, case.origin);
        assert!(!url.contains('#'), "{url:?} has a fragment");
        assert_eq!(count(&url, '?'), count(&skeleton, '?'), "{url:?}");
        assert_eq!(count(&url, '&'), count(&skeleton, '&'), "{url:?}");
        assert_eq!(count(&url, '='), count(&skeleton, '='), "{url:?}");
        if !case.quoted {
            assert_eq!(count(&url, '/'), count(&skeleton, '/'), "{url:?}");
        }
        let (segments, query) = split_url(&url);
        assert!(
            !segments.iter().any(|s| *s == "." || *s == ".."),
            "{url:?} has a dot segment"
        );
        for slot in case.slots {
            let got = match slot {
                Slot::Segment(n) => segments.get(*n).copied(),
                Slot::Query(key) => query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(key).and_then(|p| p.strip_prefix('='))),
            };
            let got = got.unwrap_or_else(|| panic!("{url:?} has no {slot:?}"));
            assert_eq!(
                decode(got).as_deref(),
                Some(v.as_str()),
                "{slot:?} of {url:?}"
            );
            if rule {
                // Unreserved characters only: the value is sent exactly as given.
                assert_eq!(got, v, "{slot:?} of {url:?}");
            }
        }
    }

    if let Some(template) = template {
        fuzzed_url_template(&template, &ctx);
    }
}

/// A fuzzed URL template: its origin is worked out as at load, and a render that passes the
/// runtime's origin check must connect to that origin.
fn fuzzed_url_template(template: &str, ctx: &Value) {
    let Ok(origin) = url_origin(template) else {
        return;
    };
    let origin = match origin {
        UrlOrigin::Literal(origin) => origin,
        UrlOrigin::VariableHost {
            scheme,
            variable,
            default,
            port,
        } => match variable_or(&variable, default) {
            Some(host) => format!("{scheme}://{}{port}", host.to_ascii_lowercase()),
            None => return,
        },
        UrlOrigin::VariableOrigin { variable, default } => match variable_or(&variable, default) {
            Some(o) => o.trim_end_matches('/').to_ascii_lowercase(),
            None => return,
        },
    };
    let mut set = TemplateSet::new(new_environment(secrets(), variables(), limits()), limits());
    let Ok(id) = set.add("url/x/url", Field::Url, template) else {
        return;
    };
    if let Ok(url) = set.render(&id, ctx) {
        assert_stays_on_origin(&url, &origin);
    }
}

fn variable_or(name: &str, default: Option<String>) -> Option<String> {
    match variables().get(name) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => None,
        None => default,
    }
}

/// See the module documentation: lazy `from_json` against the fully built value.
pub fn from_json(data: &[u8]) {
    use crate::template::python::{py_json_dumps, py_repr, JsonStyle};
    let text = String::from_utf8_lossy(data).into_owned();
    let eager = serde_json::from_str::<Value>(&text);
    let lazy = crate::template::lazy_json::parse(&Value::from(text.as_str()))
        .expect("a string value is parsed");
    match (lazy, eager) {
        (Err(l), Err(e)) => {
            assert_eq!(
                (l.classify(), l.line(), l.column()),
                (e.classify(), e.line(), e.column()),
                "{l} / {e}"
            );
        }
        (Ok(lazy), Ok(eager)) => {
            let print = |v: &Value| {
                let mut repr = String::new();
                let repr = py_repr(v, &mut repr)
                    .map(|_| repr)
                    .map_err(|e| e.to_string());
                let style = JsonStyle {
                    sort_keys: true,
                    ..JsonStyle::default()
                };
                let json = py_json_dumps(v, style).map_err(|e| e.to_string());
                (repr, json, v.len(), v.is_true())
            };
            assert_eq!(print(&lazy), print(&eager), "{text:?}");
            assert!(lazy == eager, "{text:?}");
        }
        (l, e) => panic!("lazy {:?} but eager {:?} for {text:?}", l.err(), e.err()),
    }
}

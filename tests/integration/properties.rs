//! Properties of the URL rules (docs/spec.md §3), for arbitrary strings: the path-parameter rule
//! accepts exactly `^[A-Za-z0-9._~-]{1,200}$` without `..` (and not `.`), and a value
//! rendered into a URL path segment or query value through the real template engine comes
//! back as itself, in one segment or value, or is refused when it is `.` or `..`.

use connector_runtime::registry::rules::is_valid_path_param_value;
use connector_runtime::template::{Field, RenderLimits, TemplateId, TemplateSet};
use connector_runtime::upstream::origin::rendered_url_matches;
use minijinja::Value;
use proptest::prelude::*;

const ORIGIN: &str = "https://api.example.com";

/// The rule as the spec states it, written independently of the implementation.
fn spec_rule(s: &str) -> bool {
    let count = s.chars().count();
    (1..=200).contains(&count)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
        && !s.contains("..")
        && s != "."
}

/// Strings near the rule's edges: its alphabet with many dots, a few other characters, and
/// lengths around 200.
fn edgy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{0,210}",
        "[.a~]{0,6}",
        "[A-Za-z0-9._~/%?#&= -]{0,12}",
        "[a.]{195,205}",
        any::<String>(),
    ]
}

struct Urls {
    set: TemplateSet,
    path: TemplateId,
    query: TemplateId,
}

fn urls() -> Urls {
    let mut set = template_set();
    let path = set
        .add(
            "p/0/url",
            Field::Url,
            "https://api.example.com/items/{{ v }}/detail",
        )
        .unwrap();
    let query = set
        .add(
            "q/0/url",
            Field::Url,
            "https://api.example.com/items?q={{ v }}&page=1",
        )
        .unwrap();
    Urls { set, path, query }
}

fn ctx(v: &str) -> Value {
    Value::from_pairs([("v", Value::from(v))])
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .expect("the encoding is of UTF-8 text")
        .into_owned()
}

fn is_dot(v: &str) -> bool {
    v == "." || v == ".."
}

/// Where failing cases are kept: `tests/integration/properties.proptest-regressions`.
fn regressions() -> Option<Box<dyn proptest::test_runner::FailurePersistence>> {
    Some(Box::new(
        proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
    ))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        // A failure's seed is written next to this file (properties.proptest-regressions)
        // and re-run first on every later run, so it reproduces: commit the file.
        failure_persistence: regressions(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_path_parameter_rule_is_the_spec_rule(s in edgy()) {
        prop_assert_eq!(is_valid_path_param_value(&s), spec_rule(&s), "{:?}", s);
    }

    #[test]
    fn a_value_in_a_path_segment_is_one_segment_that_decodes_to_itself(v in edgy()) {
        let urls = urls();
        match urls.set.render(&urls.path, &ctx(&v)) {
            Err(e) => {
                prop_assert!(is_dot(&v), "{:?} was refused: {}", v, e.message);
                prop_assert!(e.message.contains("'.' or '..'"), "{}", e.message);
            }
            Ok(url) => {
                prop_assert!(!is_dot(&v), "{:?} was accepted: {}", v, url);
                prop_assert!(rendered_url_matches(&url, ORIGIN), "{}", url);
                let segment = url
                    .strip_prefix("https://api.example.com/items/")
                    .and_then(|rest| rest.strip_suffix("/detail"))
                    .expect("the literal parts are kept");
                prop_assert!(!segment.contains(['/', '?', '#', '&', '=']), "{}", url);
                prop_assert_eq!(decode(segment), v.clone());
                if is_valid_path_param_value(&v) {
                    // Unreserved characters only: a valid path parameter is sent as it is.
                    prop_assert_eq!(segment, v.as_str());
                }
            }
        }
    }

    #[test]
    fn a_value_in_a_query_string_is_one_value_that_decodes_to_itself(v in edgy()) {
        let urls = urls();
        match urls.set.render(&urls.query, &ctx(&v)) {
            Err(_) => prop_assert!(is_dot(&v)),
            Ok(url) => {
                prop_assert!(!is_dot(&v));
                let query = url
                    .strip_prefix("https://api.example.com/items?")
                    .expect("the literal parts are kept");
                prop_assert!(!query.contains('#'), "{}", url);
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
                prop_assert_eq!(
                    pairs,
                    vec![("q".to_string(), v.clone()), ("page".to_string(), "1".to_string())]
                );
            }
        }
    }

    #[test]
    fn urlencode_output_in_a_url_never_adds_a_parameter_a_fragment_or_a_dot_segment(v in edgy()) {
        let urls = urls();
        let mut set = urls.set;
        let id = set
            .add(
                "u/0/url",
                Field::Url,
                "https://api.example.com/files/{{ v | urlencode }}?q={{ v | urlencode }}",
            )
            .unwrap();
        // Only a value with a `.` or `..` segment (urlencode keeps `/`) may be refused;
        // every other one renders and is checked, so the property cannot pass vacuously.
        let rendered = set.render(&id, &ctx(&v));
        if let Err(e) = &rendered {
            prop_assert!(v.split('/').any(is_dot), "{:?} was refused: {}", v, e.message);
        }
        if let Ok(url) = rendered {
            let (path, query) = url.split_once('?').expect("one query string");
            // `urlencode` keeps `/` (as Jinja2's does), which a query value may hold.
            prop_assert!(!query.contains(['?', '#', '&']), "{}", url);
            prop_assert!(!path.contains('#'), "{}", url);
            prop_assert!(
                !path.split('/').any(|s| s == "." || s == ".."),
                "{}",
                url
            );
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
            prop_assert_eq!(pairs, vec![("q".to_string(), v.clone())]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// `from_json` builds values as templates read them (src/template/lazy_json.rs); whatever a
// template does with them must give what the fully built value gives.
// ---------------------------------------------------------------------------------------

/// Arbitrary JSON documents: nested objects (with repeated keys now and then) and arrays of
/// every scalar kind, including numbers at the edges of the integer and float ranges.
fn json_text() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).unwrap()),
        Just("-0".to_string()),
        Just("1e308".to_string()),
        Just("18446744073709551616".to_string()),
        ".{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(r#""esc\"aped \\ \u00e9 \ud83d\ude00""#.to_string()),
    ];
    scalar.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec(("[a-c]{1,2}|items|values|\\\\u0061", inner), 0..16).prop_map(
                |members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\" : {v}"))
                        .collect();
                    format!("{{ {} }}", members.join(","))
                }
            ),
        ]
    })
}

/// Renders the same template over the document, once as `from_json` reads it and once as
/// the value fully built by minijinja's own deserializer (how `from_json` used to build it).
fn lazy_and_eager(set: &mut TemplateSet, template: &str, text: &str) -> (String, String) {
    let eager: Value = serde_json::from_str(text).unwrap();
    let lazy = set
        .add(
            "lazy/0/request_body",
            Field::RequestBody,
            &format!("{{% set d = text | from_json %}}{template}"),
        )
        .unwrap();
    let built = set
        .add(
            "eager/0/request_body",
            Field::RequestBody,
            &format!("{{% set d = eager %}}{template}"),
        )
        .unwrap();
    let ctx = Value::from_pairs([("text", Value::from(text)), ("eager", eager)]);
    let render = |set: &mut TemplateSet, id| match set.render(&id, &ctx) {
        Ok(out) => out,
        Err(e) => format!("error: {}", e.message),
    };
    (render(set, lazy), render(set, built))
}

const READINGS: &str = "{{ d }}|{{ d | tojson }}|{{ d | json_encode }}|{{ d == eager }}|\
{{ d is mapping }}{{ d is sequence }}|{{ d | length if d is mapping or (d is sequence and d is not string) else '' }}|\
{% if d is mapping %}{% for k, v in d | items %}{{ k }}={{ v }};{% endfor %}{{ d | list }}{{ d.get('a') }}{{ d['b'] if 'b' in d }}{{ d | dictsort }}{% endif %}|\
{% if d is sequence and d is not string %}{{ d[-1] if d }}{{ d[1:] }}{{ d | reverse | list }}{{ d | first if d }}{{ 'x' in d }}{% endif %}|\
{{ d | default('none') }}|{{ (d or 'falsy') }}";

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 600,
        failure_persistence: regressions(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn from_json_values_read_as_the_fully_built_ones(text in json_text()) {
        let mut set = template_set();
        let (lazy, eager) = lazy_and_eager(&mut set, READINGS, &text);
        prop_assert_eq!(lazy, eager, "{}", text);
    }
}

fn template_set() -> TemplateSet {
    crate::common::template_set(RenderLimits::default())
}

#[test]
fn from_json_fails_on_the_texts_and_with_the_messages_it_always_did() {
    let mut set = template_set();
    for text in [
        "",
        " ",
        "[1,]",
        "{\"a\":1,}",
        "1e400",
        "[1e400]",
        "[\"\\ud800\"]",
        "\"\\ud83d\\u0041\"",
        "\"a\u{1}b\"",
        "{\"a\" 1}",
        "[1] x",
        "\"\\x\"",
        "{\"a\":[1,{\"b\":nul}]}",
    ] {
        let id = set
            .add(
                "bad/0/request_body",
                Field::RequestBody,
                "{{ text | from_json }}",
            )
            .unwrap();
        let ctx = Value::from_pairs([("text", Value::from(text))]);
        let error = set.render(&id, &ctx).unwrap_err().message;
        let eager = serde_json::from_str::<Value>(text).unwrap_err();
        let expected = format!("line {} column {}", eager.line(), eager.column());
        assert!(
            error.contains("from_json: the input is not valid JSON"),
            "{text:?}: {error}"
        );
        assert!(
            error.contains(&expected),
            "{text:?}: {error} (expected {expected})"
        );
    }
    // Nesting deeper than serde_json's limit of 128 is refused, not built lazily.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let id = set
        .add(
            "deep/0/request_body",
            Field::RequestBody,
            "{{ text | from_json }}",
        )
        .unwrap();
    let error = set
        .render(&id, &Value::from_pairs([("text", Value::from(deep))]))
        .unwrap_err()
        .message;
    assert!(error.contains("not valid JSON"), "{error}");
}

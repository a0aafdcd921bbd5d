//! Properties of the URL rules (SPEC §3), for arbitrary strings: the path-parameter rule
//! accepts exactly `^[A-Za-z0-9._~-]{1,200}$` without `..` (and not `.`), and a value
//! rendered into a URL path segment or query value through the real template engine comes
//! back as itself, in one segment or value, or is refused when it is `.` or `..`.

use std::sync::Arc;

use connector_runtime::registry::build::is_valid_path_param_value;
use connector_runtime::run::step::check_origin;
use connector_runtime::template::{
    new_environment, Field, RenderLimits, SecretStore, TemplateId, TemplateSet, Variables,
};
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
    let limits = RenderLimits::default();
    let mut set = TemplateSet::new(
        new_environment(
            Arc::new(SecretStore::new()),
            Arc::new(Variables::new()),
            limits,
        ),
        limits,
    );
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        // Failures are reported with their minimal input; nothing is written to the tree.
        failure_persistence: None,
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
                prop_assert!(check_origin(&url, ORIGIN, "url").is_ok(), "{}", url);
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
        if let Ok(url) = set.render(&id, &ctx(&v)) {
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

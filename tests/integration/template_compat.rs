//! Template compatibility with Python's Jinja2 3.1, the engine registries are written for.
//!
//! `tests/fixtures/jinja2/cases.json` holds template snippets registry authors write, each
//! with a JSON context; `tests/fixtures/jinja2/expected.json` holds what real Jinja2 renders
//! for them (or that it raises), produced by `python3 scripts/jinja2_fixtures.py`. This test
//! renders every case through the runtime's own environment and compares.
//!
//! Cases listed in [`KNOWN_DIFFERENCES`] are skipped (and printed); the test fails if one of
//! them starts matching, so the list cannot rot. `docs/jinja2-differences.md` explains each.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use connector_runtime::template::{
    new_environment, Field, RenderLimits, SecretStore, TemplateSet, Variables,
};
use serde::Deserialize;

/// Cases whose output differs from Jinja2 on purpose or for a reason we cannot fix here:
/// (case name, one-line reason). Keep in sync with `docs/jinja2-differences.md`.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "undefined_print_blank",
        "[ours] printing an undefined variable is a rendering error, not blank text (docs/spec.md §2)",
    ),
    (
        "undefined_attr_print_blank",
        "[ours] printing a missing attribute is a rendering error, not blank text (docs/spec.md §2)",
    ),
    (
        "index_out_of_range",
        "[ours] a missing list index is undefined and printing it is an error (docs/spec.md §2)",
    ),
    (
        "empty_first_prints_blank",
        "[ours] `first` of an empty list is undefined, and printing undefined is an error",
    ),
    (
        "loop_break_continue",
        "minijinja's loop_controls feature is on; Jinja2 needs the loopcontrols extension",
    ),
    (
        "dict_key_shadowed_by_method",
        "minijinja reads `d.values` as the key; Jinja2 returns the dict method (not fixable)",
    ),
    (
        "percent_operator",
        "minijinja's `%` is numeric only; Python's `'%s' % x` formatting is not available",
    ),
    (
        "base64_decode_invalid",
        "[ours] invalid base64 is an error; Python's b64decode silently drops the bad characters",
    ),
    (
        "base64_decode_unpadded",
        "[ours] missing padding (and URL-safe letters) are accepted; Python's b64decode raises",
    ),
];

/// What `get_variable()` returns; the same dict as `VARIABLES` in scripts/jinja2_fixtures.py.
fn variables() -> serde_json::Map<String, serde_json::Value> {
    match serde_json::json!({
        "base_url": "https://api.example.com",
        "tenant": "acme-eu",
        "page_size": 50,
        "timeout": 2.5,
        "regions": ["eu-west-1", "us-east-1"],
        "features": {"beta": true, "limit": 10},
    }) {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[derive(Deserialize)]
struct Case {
    name: String,
    template: String,
    context: serde_json::Value,
}

#[derive(Deserialize)]
struct Expected {
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: bool,
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jinja2")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Renders one case through the runtime's environment: `Err` carries the error text.
fn render(index: usize, case: &Case) -> Result<String, String> {
    let limits = RenderLimits::default();
    let env = new_environment(
        Arc::new(SecretStore::new()),
        Arc::new(Variables::from_map(variables())),
        limits,
    );
    let mut set = TemplateSet::new(env, limits);
    let id = set
        .add(
            &format!("compat/{index}/case"),
            Field::RequestBody,
            &case.template,
        )
        .map_err(|e| format!("syntax error: {e}"))?;
    let ctx = minijinja::Value::from(minijinja::value::Serde(case.context.clone()));
    set.render(&id, &ctx).map_err(|e| e.message)
}

#[test]
fn templates_render_like_jinja2() {
    let cases: Vec<Case> = serde_json::from_str(&fixture("cases.json")).expect("cases.json");
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&fixture("expected.json")).expect("expected.json");
    assert!(
        cases.len() >= 120,
        "the corpus should hold at least 120 cases"
    );

    let known: BTreeMap<&str, &str> = KNOWN_DIFFERENCES.iter().copied().collect();
    for name in known.keys() {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "KNOWN_DIFFERENCES names a case that does not exist: {name}"
        );
    }

    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut matched = 0;
    for (i, case) in cases.iter().enumerate() {
        let Some(want) = expected.get(&case.name) else {
            failures.push(format!(
                "{}: no expected output; run `python3 scripts/jinja2_fixtures.py`",
                case.name
            ));
            continue;
        };
        let got = render(i, case);
        let same = match (&got, want.error) {
            (Err(_), true) => true,
            (Ok(out), false) => want.output.as_deref() == Some(out.as_str()),
            _ => false,
        };
        let want_text = if want.error {
            "<error>".to_string()
        } else {
            format!("{:?}", want.output.as_deref().unwrap_or_default())
        };
        let got_text = match &got {
            Ok(out) => format!("{out:?}"),
            Err(e) => format!("<error: {e}>"),
        };
        if let Some(reason) = known.get(case.name.as_str()) {
            if same {
                failures.push(format!(
                    "{}: listed in KNOWN_DIFFERENCES ({reason}) but now matches Jinja2; remove it",
                    case.name
                ));
            } else {
                skipped.push(format!(
                    "  {} ({reason})\n    jinja2: {want_text}\n    ours:   {got_text}",
                    case.name
                ));
            }
            continue;
        }
        if same {
            matched += 1;
        } else {
            failures.push(format!(
                "{}\n    template: {:?}\n    jinja2:   {want_text}\n    ours:     {got_text}",
                case.name, case.template
            ));
        }
    }

    println!(
        "{} cases: {matched} match Jinja2, {} known differences",
        cases.len(),
        skipped.len()
    );
    if !skipped.is_empty() {
        println!("known differences (skipped):\n{}", skipped.join("\n"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Jinja2:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

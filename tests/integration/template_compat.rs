//! Template compatibility with Python's Jinja2 3.1, the engine registries are written for.
//!
//! `tests/fixtures/jinja2/cases.json` holds template snippets registry authors write, each
//! with a JSON context (inline, or the name of an entry of `contexts.json`);
//! `tests/fixtures/jinja2/expected.json` holds what real Jinja2 renders for them (or that it
//! raises), produced by `python3 scripts/jinja2_fixtures.py`. This test renders every case
//! through the runtime's own environment, once per `--template-undefined` mode, and compares.
//!
//! Cases listed in [`KNOWN_DIFFERENCES`] are skipped (and printed) in the modes they are
//! listed for; the test fails if one of them starts matching, so the list cannot rot. A
//! strict-mode difference (a missing value is an error, not blank text) must match Jinja2 in
//! lenient mode, which is Jinja2's default `Undefined`. `docs/jinja2-differences.md`
//! explains each.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use connector_runtime::template::{
    new_environment, Field, RenderLimits, SecretStore, TemplateSet, UndefinedMode, Variables,
};
use serde::Deserialize;

/// The modes a known difference shows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    /// Only with `--template-undefined strict` (the default); lenient matches Jinja2.
    Strict,
    /// Only with `--template-undefined lenient`; strict matches Jinja2 (both fail).
    Lenient,
    /// In both modes.
    Both,
}

impl In {
    fn covers(self, mode: UndefinedMode) -> bool {
        match self {
            In::Strict => mode == UndefinedMode::Strict,
            In::Lenient => mode == UndefinedMode::Lenient,
            In::Both => true,
        }
    }
}

/// The reason of every strict-mode difference below that is the rule itself.
const STRICT_RULE: &str =
    "[ours] strict: a missing value is a rendering error (422), never blank text or a guess (docs/spec.md §2); lenient matches Jinja2";

/// Cases whose output differs from Jinja2 on purpose or for a reason we cannot fix here:
/// (case name, modes, one-line reason). Keep in sync with `docs/jinja2-differences.md`.
const KNOWN_DIFFERENCES: &[(&str, In, &str)] = &[
    ("undefined_print_blank", In::Strict, STRICT_RULE),
    ("undefined_attr_print_blank", In::Strict, STRICT_RULE),
    ("index_out_of_range", In::Strict, STRICT_RULE),
    ("empty_first_prints_blank", In::Strict, STRICT_RULE),
    ("undef_iterate_missing", In::Strict, STRICT_RULE),
    ("undef_iterate_missing_else", In::Strict, STRICT_RULE),
    ("undef_missing_key_blank", In::Strict, STRICT_RULE),
    ("undef_missing_index_blank", In::Strict, STRICT_RULE),
    ("undef_missing_item_bracket_blank", In::Strict, STRICT_RULE),
    ("undef_concat_tilde_blank", In::Strict, STRICT_RULE),
    ("undef_upper_blank", In::Strict, STRICT_RULE),
    ("undef_length_zero", In::Strict, STRICT_RULE),
    ("undef_compare_none_false", In::Strict, STRICT_RULE),
    ("undef_string_filter_blank", In::Strict, STRICT_RULE),
    ("undef_join_blank", In::Strict, STRICT_RULE),
    ("undef_in_test_false", In::Strict, STRICT_RULE),
    ("undef_escape_blank", In::Strict, STRICT_RULE),
    ("undef_urlencode_blank", In::Strict, STRICT_RULE),
    ("undef_replace_blank", In::Strict, STRICT_RULE),
    ("undef_set_then_print_blank", In::Strict, STRICT_RULE),
    ("undef_format_method_blank", In::Strict, STRICT_RULE),
    ("undef_percent_blank", In::Strict, STRICT_RULE),
    ("undef_format_filter_blank", In::Strict, STRICT_RULE),
    ("undef_wordcount_zero", In::Strict, STRICT_RULE),
    ("undef_center_spaces", In::Strict, STRICT_RULE),
    ("undef_first_of_missing_blank", In::Strict, STRICT_RULE),
    ("undef_pprint_prints_undefined", In::Strict, STRICT_RULE),
    ("undef_get_variable_missing_blank", In::Strict, STRICT_RULE),
    ("undef_loop_previtem_first_blank", In::Strict, STRICT_RULE),
    ("undef_sort_missing_list", In::Strict, STRICT_RULE),
    ("undef_in_url_blank", In::Strict, STRICT_RULE),
    (
        "undef_less_than_errors",
        In::Lenient,
        "minijinja orders an undefined value before numbers; Jinja2's Undefined raises on <, <=, >, >= (no operator hook)",
    ),
    (
        "loop_break_continue",
        In::Both,
        "minijinja's loop_controls feature is on; Jinja2 needs the loopcontrols extension",
    ),
    (
        "do_tag_unknown_in_jinja2",
        In::Both,
        "minijinja has {% do %}; Jinja2 needs the do extension, which the platform doesn't enable",
    ),
    (
        "dict_key_shadowed_by_method",
        In::Both,
        "minijinja reads `d.values` as the key; Jinja2 returns the dict method (not fixable)",
    ),
    (
        "mut_append_itself_errors_here",
        In::Both,
        "[ours] a list cannot be put into itself (Python prints [[...]]); here it would be a reference cycle never freed",
    ),
    (
        "base64_decode_invalid",
        In::Both,
        "[ours] invalid base64 is an error; Python's b64decode silently drops the bad characters",
    ),
    (
        "base64_decode_unpadded",
        In::Both,
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
    /// The context, or the name of one in contexts.json.
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

/// The runtime's environment in `mode`, with every case compiled into it.
fn template_set(mode: UndefinedMode) -> TemplateSet {
    let limits = RenderLimits {
        undefined: mode,
        ..RenderLimits::default()
    };
    let env = new_environment(
        Arc::new(SecretStore::new()),
        Arc::new(Variables::from_map(variables())),
        limits,
    );
    TemplateSet::new(env, limits)
}

/// Renders one case: `Err` carries the error text.
fn render(
    set: &mut TemplateSet,
    index: usize,
    case: &Case,
    contexts: &BTreeMap<String, serde_json::Value>,
) -> Result<String, String> {
    let id = set
        .add(
            &format!("compat/{index}/case"),
            Field::RequestBody,
            &case.template,
        )
        .map_err(|e| format!("syntax error: {e}"))?;
    let context = match &case.context {
        serde_json::Value::String(name) => contexts
            .get(name)
            .unwrap_or_else(|| panic!("{}: no context '{name}' in contexts.json", case.name))
            .clone(),
        inline => inline.clone(),
    };
    let ctx = minijinja::Value::from(minijinja::value::Serde(context));
    set.render(&id, &ctx).map_err(|e| e.message)
}

/// The outcome of the corpus in one mode.
#[derive(Default)]
struct Outcome {
    matched: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

fn run_corpus(mode: UndefinedMode) -> (usize, Outcome) {
    let cases: Vec<Case> = serde_json::from_str(&fixture("cases.json")).expect("cases.json");
    let contexts: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&fixture("contexts.json")).expect("contexts.json");
    let expected: BTreeMap<String, Expected> =
        serde_json::from_str(&fixture("expected.json")).expect("expected.json");
    let known: BTreeMap<&str, (In, &str)> = KNOWN_DIFFERENCES
        .iter()
        .map(|(name, modes, reason)| (*name, (*modes, *reason)))
        .collect();
    let mut outcome = Outcome::default();
    for name in known.keys() {
        if !cases.iter().any(|c| c.name == *name) {
            outcome.failures.push(format!(
                "KNOWN_DIFFERENCES names a case that does not exist: {name}"
            ));
        }
    }
    let mut set = template_set(mode);
    for (i, case) in cases.iter().enumerate() {
        let Some(want) = expected.get(&case.name) else {
            outcome.failures.push(format!(
                "{}: no expected output; run `python3 scripts/jinja2_fixtures.py`",
                case.name
            ));
            continue;
        };
        let got = render(&mut set, i, case, &contexts);
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
        match known.get(case.name.as_str()) {
            Some((modes, reason)) if modes.covers(mode) => {
                if same {
                    outcome.failures.push(format!(
                        "{}: listed in KNOWN_DIFFERENCES ({reason}) but now matches Jinja2 in {mode:?} mode; remove it or narrow its modes",
                        case.name
                    ));
                } else {
                    outcome.skipped.push(format!(
                        "  {} ({reason})\n    jinja2: {want_text}\n    ours:   {got_text}",
                        case.name
                    ));
                }
            }
            _ if same => outcome.matched += 1,
            listed => outcome.failures.push(format!(
                "{}{}\n    template: {:?}\n    jinja2:   {want_text}\n    ours:     {got_text}",
                case.name,
                if listed.is_some() {
                    " (a strict-mode difference must match Jinja2 in lenient mode)"
                } else {
                    ""
                },
                case.template
            )),
        }
    }
    (cases.len(), outcome)
}

fn check(mode: UndefinedMode) {
    let (total, outcome) = run_corpus(mode);
    println!(
        "{mode:?}: {total} cases: {} match Jinja2, {} known differences",
        outcome.matched,
        outcome.skipped.len()
    );
    if !outcome.skipped.is_empty() {
        println!(
            "known differences (skipped):\n{}",
            outcome.skipped.join("\n")
        );
    }
    assert!(
        outcome.failures.is_empty(),
        "{mode:?} mode: {} of {total} cases differ from Jinja2:\n\n{}",
        outcome.failures.len(),
        outcome.failures.join("\n\n")
    );
    assert!(total >= 560, "the corpus should hold at least 560 cases");
}

#[test]
fn templates_render_like_jinja2_in_strict_mode() {
    check(UndefinedMode::Strict);
}

#[test]
fn templates_render_like_jinja2_in_lenient_mode() {
    check(UndefinedMode::Lenient);
}

#[test]
fn every_known_difference_is_listed_in_the_differences_page() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/jinja2-differences.md"
    ))
    .expect("docs/jinja2-differences.md");
    let missing: Vec<&str> = KNOWN_DIFFERENCES
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|name| !page.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/jinja2-differences.md does not list {missing:?}"
    );
}

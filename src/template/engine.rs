//! One minijinja environment per loaded registry: every template is checked when the
//! registry loads and compiled into it once, the first time a run renders it (a compiled
//! minijinja template takes ~12 KiB however short it is, so a registry of 10,000 connectors
//! compiled up front held over 1 GiB); identical text in the same field is one template, and
//! plain text is never compiled.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};

use super::field::Field;
use super::filters::{self, OWN_ERROR_PREFIXES};
use super::functions;
use super::mutable;
use super::python::{self, py_str};
use super::rewrite::{self, Rewrite};
use super::secrets::{SecretStore, Variables};
use super::shortcut::Shortcut;
use crate::upstream::origin::origin_expression;

/// Bounds on the work one template render may do, and how it treats a missing value.
#[derive(Debug, Clone, Copy)]
pub struct RenderLimits {
    /// minijinja fuel: instructions plus bytes produced; exhausted renders fail with 422.
    pub fuel: u64,
    /// Largest rendered output, in bytes.
    pub max_output_bytes: usize,
    /// What printing a missing variable, attribute, key or index does
    /// (`--template-undefined`).
    pub undefined: UndefinedMode,
}

/// How templates treat a missing variable, attribute, key or index (`--template-undefined`,
/// docs/spec.md §2 and §15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UndefinedMode {
    /// Printing, iterating or passing a missing value on is a rendering error (422
    /// `TEMPLATE_RENDERING_ERROR` naming the field); `{% if %}`, `is defined` and
    /// `| default(...)` still test it. Blank text is never sent upstream by mistake.
    #[default]
    Strict,
    /// Python Jinja2's default `Undefined`: a missing value prints as empty text and iterates
    /// as an empty list; reading an attribute of it, calling it or doing arithmetic with it
    /// is still an error.
    Lenient,
}

impl UndefinedMode {
    /// The minijinja behaviour that renders this mode. `SemiStrict` is `Strict` except that an
    /// undefined value is false in `{% if %}`, as in Jinja2; `Lenient` is exactly Jinja2's
    /// `Undefined` (`Chainable` would also let `missing.attr` through, which Jinja2 refuses).
    pub(crate) fn behavior(self) -> UndefinedBehavior {
        match self {
            UndefinedMode::Strict => UndefinedBehavior::SemiStrict,
            UndefinedMode::Lenient => UndefinedBehavior::Lenient,
        }
    }
}

/// Default fuel of one render (`--template-fuel`): the costliest template work exhausts it
/// in under a second and well under 100 MB, while realistic templates over 5,000 objects
/// need at most 142,000 (measured; README "Resource limits", `tests/integration/hostile_input.rs`).
pub const DEFAULT_TEMPLATE_FUEL: u64 = 1_000_000;

/// Stack for each thread that renders templates, per unit of fuel: the templates may build
/// values nested as deep as their fuel allows (~10 fuel per level in a `{% for %}` with a
/// `{% set ns.x = [ns.x] %}`), and minijinja walks such a value recursively when it compares,
/// prints or frees it, at up to ~500 bytes of stack per level (measured: 100,000 levels of
/// `==`, `| string`, printing and freeing all fit in 64 MiB). Without it, a 2 MiB worker stack
/// overflowed at ~15,000 levels and aborted the process.
pub(crate) const RENDER_STACK_BYTES_PER_FUEL: u64 = 64;

/// The stack a rendering thread needs for `fuel` (see [`RENDER_STACK_BYTES_PER_FUEL`]):
/// 64 MiB for the default fuel, at most 1 GiB. Only the pages a render touches are used.
pub fn render_stack_bytes(fuel: u64) -> usize {
    const MIN: u64 = 64 * 1024 * 1024;
    const MAX: u64 = 1024 * 1024 * 1024;
    fuel.saturating_mul(RENDER_STACK_BYTES_PER_FUEL)
        .clamp(MIN, MAX) as usize
}

impl Default for RenderLimits {
    fn default() -> Self {
        RenderLimits {
            fuel: DEFAULT_TEMPLATE_FUEL,
            max_output_bytes: 10 * 1024 * 1024,
            undefined: UndefinedMode::Strict,
        }
    }
}

/// Stack one level of printing a nested value takes, with room to spare (measured: a map
/// inside a map takes 1-2 KiB per level in a debug build).
const PRINT_STACK_BYTES_PER_LEVEL: usize = 2048;

/// The variable an expression's value is kept in (a name no registry can read: the
/// load-time checks know no such variable).
const EXPRESSION_VALUE: &str = "__expression_value";

/// Deepest nesting of frames (loops, macro calls, `with` blocks) a render may reach.
pub(crate) const RECURSION_LIMIT: usize = 100;

/// A checked template: where it is (its unique internal name) and the template of the
/// environment that renders it, which templates with the same text in the same field share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateId {
    /// Its names, behind one thin pointer: a step holds many ids.
    names: Arc<TemplateNames>,
    /// The output of a template without any Jinja2 syntax, known when it compiles.
    literal: Option<Arc<str>>,
    /// How a template of text and simple expressions renders without the engine.
    shortcut: Option<Arc<Shortcut>>,
}

/// Where a template is and what the environment calls it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TemplateNames {
    /// The unique internal name of this field: its location, for error messages.
    location: Arc<str>,
    /// The name the environment renders it by (the location of the first template with
    /// this text in this field).
    name: Arc<str>,
}

impl TemplateId {
    fn new(location: Arc<str>, name: Arc<str>, literal: Option<Arc<str>>) -> Self {
        TemplateId {
            names: Arc::new(TemplateNames { location, name }),
            literal,
            shortcut: None,
        }
    }

    /// The name the environment renders it by.
    pub(crate) fn name(&self) -> &str {
        &self.names.name
    }

    /// The fixed output of a template that has no Jinja2 syntax at all.
    pub(crate) fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// The registry field this template fills, as errors name it (`headers[0].value`):
    /// the part of its location after `permalink/index/`.
    pub(crate) fn field_path(&self) -> &str {
        let location = &self.names.location;
        let location = location.rsplit('\u{1f}').nth(1).unwrap_or(location);
        location.splitn(3, '/').nth(2).unwrap_or(location)
    }
}

/// The output of `source` if it is plain text: no `{{`, `{%` or `{#`, and no trailing
/// newline (which Jinja2 would drop). Such templates are not rendered at run time.
fn literal_output(source: &str) -> Option<Arc<str>> {
    let plain = !source.contains("{{")
        && !source.contains("{%")
        && !source.contains("{#")
        && !source.ends_with('\n');
    plain.then(|| source.into())
}

/// Why a render failed. The message is safe to show to callers: it names the field, the
/// template expression and the reason, never a value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    /// What went wrong, without values.
    pub message: String,
    /// Whether a JWT signature failed (reported with the JWT scope, not the template one).
    pub jwt_signing: bool,
}

/// The text each template of a registry is compiled from, by name: the environment's loader
/// compiles a template from here the first time it is rendered.
type Sources = Arc<RwLock<HashMap<Arc<str>, Arc<str>>>>;

/// The templates of one registry and the environment that renders them.
pub struct TemplateSet {
    env: Environment<'static>,
    limits: RenderLimits,
    redactor: Option<Arc<SecretStore>>,
    /// The templates compiled from a rewritten text (`%` on strings, lists changed in
    /// place; see [`rewrite`]), by name: their text as written, for error messages and
    /// `X-Debug-Request`. Rendering never looks here.
    rewrites: HashMap<Arc<str>, Rewrite>,
    /// What each template is compiled from (the environment's loader reads it).
    sources: Sources,
    /// The name of the template already added for a field and text: the same text in the
    /// same field (`Bearer {{ get_secret('token') }}` in a thousand connectors) renders
    /// through one template.
    shared: HashMap<(Field, Arc<str>), Arc<str>>,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet")
            .field("limits", &self.limits)
            .finish()
    }
}

/// The environment every registry template runs in: Jinja2 semantics, the platform's
/// filters and functions, the undefined handling `limits.undefined` picks and Python value
/// formatting.
pub fn new_environment(
    secrets: Arc<SecretStore>,
    variables: Arc<Variables>,
    limits: RenderLimits,
) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(limits.undefined.behavior());
    // Python `str`/`dict`/`list` methods: pycompat's, plus the few it lacks.
    env.set_unknown_method_callback(python::unknown_method);
    env.set_auto_escape_callback(|name| match Field::of_template(name) {
        Some(Field::Url) => AutoEscape::Custom("url".into()),
        _ => AutoEscape::None,
    });
    env.set_formatter(python_formatter);
    env.set_fuel(Some(limits.fuel));
    // Deepest nesting of frames (loops, macro calls): 100 is far beyond nested loops in real
    // templates, and a recursive macro (`{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}`) stops
    // there with a clear error after under 512 KiB of stack in a debug build.
    env.set_recursion_limit(RECURSION_LIMIT);
    // Jinja2 keeps whitespace after blocks by default (no trim_blocks): so does this.
    filters::register(&mut env);
    // Jinja2's `sequence` test is "has a length and items": strings and dicts pass too.
    env.add_test("sequence", |v: &Value| {
        matches!(
            v.kind(),
            ValueKind::Undefined
                | ValueKind::String
                | ValueKind::Bytes
                | ValueKind::Seq
                | ValueKind::Map
        )
    });
    functions::register(&mut env, secrets, variables);
    // What `%` and list/dict literals compile into where minijinja has no hook (`rewrite`).
    env.add_function(rewrite::PY_MOD, super::pyformat::py_mod);
    env.add_function(rewrite::PY_MUTABLE, mutable::mutable);
    env
}

/// Characters kept as they are when a value is interpolated into a URL: RFC 3986 unreserved.
const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let url = matches!(state.auto_escape(), AutoEscape::Custom(_));
    if value.is_safe() {
        let text = value.as_str().unwrap_or_default();
        // A "safe" value goes into a URL as it is: `urlencode` output (which keeps `/` and `.`,
        // as Jinja2's does), `get_variable()` values (`| safe` is refused in a URL when the
        // registry loads). Request data piped through
        // `urlencode` (a habit from Jinja2, where nothing is encoded for you) could otherwise
        // add `.`/`..` segments, `../admin`, that move the call to another path upstream.
        if url && has_dot_segment(text) {
            return Err(filters::own_error(
                "url: a value rendered into the URL has a '.' or '..' path segment, which would change the path",
            ));
        }
        return out.write_str(text).map_err(Error::from);
    }
    // A string prints as it is: written from the value, not copied into a buffer first.
    let mut printed = String::new();
    let text = match value.as_str() {
        Some(text) if value.kind() == ValueKind::String => text,
        _ => {
            py_str(value, &mut printed)?;
            printed.as_str()
        }
    };
    if url {
        if text == "." || text == ".." {
            return Err(filters::own_error(
                "url: a value rendered into the URL is '.' or '..', which would change the path",
            ));
        }
        for part in percent_encoding::utf8_percent_encode(text, URL_VALUE) {
            out.write_str(part)?;
        }
        Ok(())
    } else {
        out.write_str(text).map_err(Error::from)
    }
}

/// The text a URL template is compiled from. Everything a URL interpolates is
/// percent-encoded, except its origin expression (`{{ get_variable('base') |
/// default('https://api.example.com') }}`, or the host variable after `https://`), which is
/// wrapped in `{% autoescape false %}` so the variable's value or the literal default is
/// printed as it is: encoded, the documented fallback became `https%3A%2F%2Fapi...` and
/// failed the origin check. Only that exact expression shape is wrapped, and the load-time
/// checks refuse `{% autoescape %}` in a registry's own URL, so request and step data are
/// always encoded. Lines stay where they are, so errors keep pointing at the right line.
pub(crate) fn url_template_source(source: &str) -> String {
    let Some(range) = origin_expression(source) else {
        return source.to_string();
    };
    let tag = &source[range.clone()];
    // The tag's whitespace control moves to the block that now surrounds it.
    let open = if tag.starts_with("{{-") {
        "{%- autoescape false %}"
    } else {
        "{% autoescape false %}"
    };
    let close = if tag.ends_with("-}}") {
        "{% endautoescape -%}"
    } else {
        "{% endautoescape %}"
    };
    format!(
        "{}{open}{tag}{close}{}",
        &source[..range.start],
        &source[range.end..]
    )
}

/// Whether the path part of `text` (before any `?` or `#`) has a `.` or `..` segment.
fn has_dot_segment(text: &str) -> bool {
    let path = text.split(['?', '#']).next().unwrap_or_default();
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

impl TemplateSet {
    /// An empty set in the default environment (no secrets, no variables, default limits),
    /// for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> TemplateSet {
        let limits = RenderLimits::default();
        let env = new_environment(
            Arc::new(SecretStore::new()),
            Arc::new(Variables::new()),
            limits,
        );
        TemplateSet::new(env, limits)
    }

    /// Wraps an environment that templates are added to.
    pub fn new(mut env: Environment<'static>, limits: RenderLimits) -> Self {
        let sources = Sources::default();
        let loader = sources.clone();
        // Called on a template's first render only: minijinja keeps what it compiles.
        env.set_loader(move |name| {
            let sources = loader.read().unwrap_or_else(PoisonError::into_inner);
            Ok(sources.get(name).map(|text| text.to_string()))
        });
        TemplateSet {
            env,
            limits,
            redactor: None,
            rewrites: HashMap::new(),
            sources,
            shared: HashMap::new(),
        }
    }

    /// Scrubs the values of `secrets` from every render error message. Messages are built
    /// from fixed texts and registry template text, never from values; this catches a secret
    /// that a registry author pasted into a template literally.
    pub(crate) fn redacting(mut self, secrets: Arc<SecretStore>) -> Self {
        self.redactor = Some(secrets);
        self
    }

    /// Compiles `source` under a unique `location` for `field`; syntax errors come back
    /// with their line. A URL's origin expression is compiled to print as it is (see
    /// [`url_template_source`]); `%` and lists changed in place are compiled as Python has
    /// them ([`rewrite`]).
    pub fn add(&mut self, location: &str, field: Field, source: &str) -> Result<TemplateId, Error> {
        let location: Arc<str> = field.template_name(location).into();
        let literal = literal_output(source);
        if literal.is_some() {
            // Plain text is its own output: nothing to compile or render.
            return Ok(TemplateId::new(location.clone(), location, literal));
        }
        let compiled = match field {
            Field::Url => url_template_source(source),
            _ => source.to_string(),
        };
        let name = self.compile(&location, field, compiled)?;
        let mut id = TemplateId::new(location, name, literal);
        // A URL's values are percent-encoded by the formatter: the engine renders URLs.
        if !matches!(field, Field::Url) {
            // The environment's copy of the text, unless it was rewritten (`%`, lists).
            let text = self
                .sources
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id.name())
                .filter(|text| ***text == *source)
                .cloned();
            id.shortcut = text.and_then(Shortcut::parse).map(Arc::new);
        }
        Ok(id)
    }

    /// Checks `text` for `field` under `name`, rewritten first when it needs to be, and
    /// gives the name it renders by: that of the same text in the same field added before,
    /// else `name`. Syntax errors are found here (parsing is all that compiling can fail
    /// at); the environment compiles the text the first time it is rendered.
    fn compile(&mut self, name: &Arc<str>, field: Field, text: String) -> Result<Arc<str>, Error> {
        let (text, rewritten) = match rewrite::rewrite(&text) {
            Some(rewritten) => (rewritten.source.clone(), Some(rewritten)),
            None => (text, None),
        };
        let text: Arc<str> = text.into();
        if let Some(shared) = self.shared.get(&(field, text.clone())) {
            return Ok(shared.clone());
        }
        minijinja::machinery::parse(&text, name, minijinja::syntax::SyntaxConfig::default())?;
        match rewritten {
            Some(rewritten) => self.rewrites.insert(name.clone(), rewritten),
            None => self.rewrites.remove(name),
        };
        let replaced = self
            .sources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), text.clone());
        if replaced.is_some() {
            // The same location added again (tests do): its old text is not rendered again.
            self.env.remove_template(name);
            self.shared.retain(|_, shared| shared != name);
        }
        self.shared.insert((field, text), name.clone());
        Ok(name.clone())
    }

    /// Compiles the expression `source` (a `when` or `for_each`) under a unique `location`:
    /// [`TemplateSet::evaluate`] gives its value. `source` must already have passed
    /// [`TemplateSet::check_expression`], so it cannot close the block it is wrapped in.
    pub(crate) fn add_expression(
        &mut self,
        location: &str,
        field: Field,
        source: &str,
    ) -> Result<TemplateId, Error> {
        let location: Arc<str> = field.template_name(location).into();
        // The expression starts on line 1, so an error's line is the expression's.
        let compiled = format!("{{% set {EXPRESSION_VALUE} = ({source}\n) %}}");
        let name = self.compile(&location, field, compiled)?;
        Ok(TemplateId::new(location, name, None))
    }

    /// Why `source` is not one Jinja2 expression, if it is not.
    pub(crate) fn check_expression(&self, source: &str) -> Result<(), String> {
        if source.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if ["{{", "}}", "{%", "%}", "{#", "#}"]
            .iter()
            .any(|tag| source.contains(tag))
        {
            return Err(
                "is a Jinja2 expression, written without {{ }} or {% %} (e.g. steps.auth.status_code == 200)"
                    .into(),
            );
        }
        self.env
            .compile_expression(source)
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "is not a Jinja2 expression: {}",
                    e.detail().unwrap_or("invalid syntax")
                )
            })
    }

    /// Evaluates an expression compiled by [`TemplateSet::add_expression`] with `ctx`.
    pub fn evaluate(&self, id: &TemplateId, ctx: &Value) -> Result<Value, RenderError> {
        let template = self.env.get_template(id.name()).map_err(|e| RenderError {
            message: format!("template is missing from the registry ({})", e.kind()),
            jwt_signing: false,
        })?;
        let captured =
            python::with_text_limit(self.limits.max_output_bytes, self.print_depth(), || {
                template.render_captured(ctx)
            })
            .map_err(|e| self.error(&e, &template))?;
        // A list or dict the expression changed in place leaves the render as a plain value.
        let value = captured
            .state()
            .lookup(EXPRESSION_VALUE)
            .map(|value| mutable::freeze(&value))
            .unwrap_or(Value::UNDEFINED);
        // Lenient mode iterates a missing list as nothing, as Jinja2's `{% for %}` does; strict
        // mode leaves it undefined, which the step refuses as not a list.
        if value.is_undefined()
            && self.limits.undefined == UndefinedMode::Lenient
            && Field::of_template(id.name()) == Some(Field::ForEach)
        {
            return Ok(Value::from(Vec::<Value>::new()));
        }
        Ok(value)
    }

    /// How deep printing a value may go in a render: what the render's stack holds at
    /// [`PRINT_STACK_BYTES_PER_LEVEL`] (32,768 levels for the default fuel). Python's own
    /// `repr()` stops at its recursion limit of 1,000, so no value Jinja2 could print is
    /// refused.
    fn print_depth(&self) -> usize {
        render_stack_bytes(self.limits.fuel) / PRINT_STACK_BYTES_PER_LEVEL
    }

    /// The caller-safe error of a failed render of `template`, quoting its text as written.
    fn error(&self, err: &Error, template: &minijinja::Template<'_, '_>) -> RenderError {
        let mut error = match self.rewrites.get(template.name()) {
            Some(rewritten) => describe_error_in(err, |range| rewritten.original_text(range)),
            None => describe_error(err, template.source()),
        };
        if let Some(secrets) = &self.redactor {
            error.message = secrets.redact(&error.message);
        }
        error
    }

    /// The environment, for static checks (filter and global look-ups).
    pub(crate) fn env(&self) -> &Environment<'static> {
        &self.env
    }

    /// The registry text of a compiled template (for `X-Debug-Request`).
    pub(crate) fn source(&self, id: &TemplateId) -> Option<String> {
        if let Some(literal) = &id.literal {
            return Some(literal.to_string());
        }
        if let Some(rewritten) = self.rewrites.get(id.name()) {
            return Some(rewritten.original.clone());
        }
        let sources = self.sources.read().unwrap_or_else(PoisonError::into_inner);
        sources.get(id.name()).map(|text| text.to_string())
    }

    /// Renders a compiled template with `ctx`.
    pub fn render(&self, id: &TemplateId, ctx: &Value) -> Result<String, RenderError> {
        if let Some(literal) = &id.literal {
            return Ok(literal.to_string());
        }
        if let Some(output) = id
            .shortcut
            .as_ref()
            .and_then(|shortcut| shortcut.render(ctx, self.limits.max_output_bytes))
        {
            return Ok(output);
        }
        let template = self.env.get_template(id.name()).map_err(|e| RenderError {
            message: format!("template is missing from the registry ({})", e.kind()),
            jwt_signing: false,
        })?;
        let output =
            python::with_text_limit(self.limits.max_output_bytes, self.print_depth(), || {
                template.render(ctx)
            })
            .map_err(|e| self.error(&e, &template))?;
        if output.len() > self.limits.max_output_bytes {
            return Err(RenderError {
                message: format!(
                    "the rendered output is larger than {} bytes",
                    self.limits.max_output_bytes
                ),
                jwt_signing: false,
            });
        }
        Ok(output)
    }
}

/// Turns a minijinja error into a caller-safe message: our own filters' details are shown,
/// engine details are reduced to their kind, and the failing expression is quoted from the
/// template source (registry text, never data).
pub(crate) fn describe_error(err: &Error, source: &str) -> RenderError {
    describe_error_in(err, |range| source.get(range))
}

/// [`describe_error`] with the failing expression quoted through `quote`.
fn describe_error_in<'s>(
    err: &Error,
    quote: impl FnOnce(std::ops::Range<usize>) -> Option<&'s str>,
) -> RenderError {
    let detail = err.detail().unwrap_or_default();
    let own = OWN_ERROR_PREFIXES.iter().any(|p| detail.starts_with(p));
    let reason = if own {
        detail.to_string()
    } else {
        match err.kind() {
            ErrorKind::UndefinedError => {
                "a variable, attribute or key used here is undefined".to_string()
            }
            ErrorKind::OutOfFuel => {
                "the template did too much work (fuel limit reached)".to_string()
            }
            ErrorKind::UnknownMethod => detail.to_string(),
            kind => kind.to_string(),
        }
    };
    let snippet = err
        .range()
        .and_then(quote)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && s.len() <= 200);
    let mut message = reason;
    if let Some(snippet) = snippet {
        message.push_str(&format!(" in `{snippet}`"));
    }
    if let Some(line) = err.line() {
        message.push_str(&format!(" (line {line})"));
    }
    RenderError {
        jwt_signing: detail.starts_with("jwt_encode:") && !detail.contains("not available"),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortcut_renders_what_the_engine_renders_or_leaves_it_to_the_engine() {
        let mut set = TemplateSet::for_tests();
        let templates = [
            "{\"client_id\": \"{{ request.body_text | from_json | attr('clientId') }}\"}",
            "Bearer {{ steps.auth.body | from_json | attr('access_token') }}",
            "{{ steps.auth.body | from_json | attr('nested') | attr('deep') }}!",
            "{{ request.method }} {{ user.name }}",
            "{{ steps.auth.body | from_json }}",
            "{{ missing.name }}-{{ user.name }}",
        ];
        let contexts = [
            serde_json::json!({
                "request": {"method": "POST", "body_text": "{\"clientId\": \"widget-42\"}"},
                "steps": {"auth": {"body": "{\"access_token\": \"t-é\\\"x\", \"nested\": {\"deep\": \"d\"}}"}},
                "user": {"name": "Ada {{ not a template }}"},
            }),
            // Numbers, null, a missing key, JSON that is not an object, invalid JSON.
            serde_json::json!({
                "request": {"method": 7, "body_text": "{\"clientId\": 42}"},
                "steps": {"auth": {"body": "[1, 2]"}},
                "user": {"name": null},
            }),
            serde_json::json!({
                "request": {"body_text": "{\"other\": \"x\"}"},
                "steps": {"auth": {"body": "not json"}},
                "user": {},
            }),
        ];
        let (mut shortcuts, mut engine) = (0, 0);
        for (index, source) in templates.iter().enumerate() {
            let id = set
                .add(&format!("t/{index}"), Field::RequestBody, source)
                .unwrap();
            let shortcut = id
                .shortcut
                .as_ref()
                .expect("each template has the simple shape");
            for json in &contexts {
                let ctx = Value::from(minijinja::value::Serde(json.clone()));
                let template = set.env.get_template(id.name()).unwrap();
                let by_engine = template.render(&ctx).map_err(|e| e.kind());
                match shortcut.render(&ctx, usize::MAX) {
                    Some(output) => {
                        shortcuts += 1;
                        assert_eq!(Ok(output), by_engine, "{source} with {json}");
                    }
                    None => engine += 1,
                }
                // Either way, the set renders what the engine renders.
                assert_eq!(
                    set.render(&id, &ctx).ok(),
                    by_engine.ok(),
                    "{source} with {json}"
                );
            }
        }
        assert!(
            shortcuts == 4 && engine == 14,
            "{shortcuts} by shortcut, {engine} by the engine"
        );
        // A URL is always the engine's: its values are percent-encoded.
        let url = set
            .add("t/url", Field::Url, "https://a.example.com/{{ user.name }}")
            .unwrap();
        assert!(url.shortcut.is_none());
    }

    #[test]
    fn a_url_prints_its_origin_expression_as_it_is_and_encodes_the_rest() {
        let mut set = TemplateSet::for_tests();
        let ctx = Value::from(minijinja::value::Serde(serde_json::json!({"v": "a/b c"})));
        for (source, rendered) in [
            (
                "{{ get_variable('base') | default('https://a.example.com:8443') }}/x/{{ v }}",
                "https://a.example.com:8443/x/a%2Fb%20c",
            ),
            // Whitespace control keeps working around the wrapped tag.
            (
                "  {{- get_variable('base') | default('https://a.example.com') }}/{{ v }}",
                "https://a.example.com/a%2Fb%20c",
            ),
            (
                "https://{{ get_variable('host') | default('h.example.com:8443') }}/{{ 'x:y' }}",
                "https://h.example.com:8443/x%3Ay",
            ),
            // Only the origin expression: the same default elsewhere is encoded.
            (
                "https://a.example.com/{{ get_variable('p') | default('b/c') }}",
                "https://a.example.com/b%2Fc",
            ),
        ] {
            let id = set.add("c/0/url", Field::Url, source).unwrap();
            assert_eq!(set.render(&id, &ctx).unwrap(), rendered, "{source}");
        }
    }

    #[test]
    fn a_secret_pasted_into_a_template_never_reaches_an_error_message() {
        let mut secrets = SecretStore::new();
        // The error quotes the failing expression from the template (`.nope_sk_live()`): a
        // secret pasted there literally must still be scrubbed.
        secrets.insert("api_key", "nope_sk_live");
        let secrets = Arc::new(secrets);
        let limits = RenderLimits::default();
        let env = new_environment(secrets.clone(), Arc::new(Variables::new()), limits);
        let mut set = TemplateSet::new(env, limits).redacting(secrets);
        let id = set
            .add("c/0/x", Field::RequestBody, "{{ 'x'.nope_sk_live() }}")
            .unwrap();
        let err = set.render(&id, &Value::from(())).unwrap_err();
        assert!(!err.message.contains("nope_sk_live"), "{}", err.message);
        assert!(err.message.contains("[REDACTED]"), "{}", err.message);
    }
}

//! Templates simple enough to render without the engine: text around expressions that read
//! a value (`{{ request.query.id }}`) or one field of JSON text (`{{ steps.auth.body |
//! from_json | attr('access_token') }}`), the shape most registry headers and bodies have.
//! A shortcut gives the output only when every expression is a defined string; anything
//! else (undefined, a number, a failed parse, an oversized output) is left to the engine,
//! which renders it with its own formatting and errors. Not used for URLs, whose values are
//! percent-encoded by the engine's formatter.

use std::sync::Arc;

use minijinja::value::{Value, ValueKind};

use super::json_cache::{self, JsonCache};

/// A template of text and simple expressions, parsed when the registry loads. Compact, as a
/// large registry holds tens of thousands: the template's own text (shared with the
/// environment's copy) and ranges of it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Shortcut {
    source: Arc<str>,
    parts: Box<[Part]>,
    /// The expressions' names in order, each expression's path names then its JSON keys.
    names: Box<[Span]>,
}

/// A range of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum Part {
    Text(Span),
    /// `a.b.c` (`path` names), then, with `from_json`, `| from_json` and `keys` times
    /// `| attr('key')`.
    Expr {
        path: u16,
        from_json: bool,
        keys: u16,
    },
}

impl Shortcut {
    /// The shortcut of `source`, if it has the simple shape: no blocks, comments, whitespace
    /// control or trailing newline (which Jinja2 drops), and only the expressions above.
    pub(crate) fn parse(source: Arc<str>) -> Option<Shortcut> {
        if source.ends_with('\n') || u32::try_from(source.len()).is_err() {
            return None;
        }
        let mut parts = Vec::new();
        let mut names = Vec::new();
        let mut at = 0;
        while let Some(open) = source[at..].find("{{").map(|i| at + i) {
            push_text(&mut parts, &source, at, open)?;
            let inner = open + 2;
            let close = inner + source[inner..].find("}}")?;
            parts.push(parse_expr(&source, inner, close, &mut names)?);
            at = close + 2;
        }
        push_text(&mut parts, &source, at, source.len())?;
        if !parts.iter().any(|part| matches!(part, Part::Expr { .. })) {
            return None;
        }
        Some(Shortcut {
            source,
            parts: parts.into(),
            names: names.into(),
        })
    }

    /// The output for `ctx`, or `None` for the engine to render (see the module comment).
    pub(crate) fn render(&self, ctx: &Value, max_bytes: usize) -> Option<String> {
        let mut out = String::new();
        let mut names = self.names.iter().map(|span| self.text(*span));
        for part in self.parts.iter() {
            match *part {
                Part::Text(span) => out.push_str(self.text(span)),
                Part::Expr {
                    path,
                    from_json,
                    keys,
                } => {
                    let value = evaluate(ctx, &mut names, path, from_json, keys)?;
                    if value.kind() != ValueKind::String {
                        return None;
                    }
                    out.push_str(value.as_str()?);
                }
            }
            if out.len() > max_bytes {
                return None;
            }
        }
        Some(out)
    }

    fn text(&self, span: Span) -> &str {
        &self.source[span.start as usize..span.end as usize]
    }
}

fn span(start: usize, end: usize) -> Span {
    // Both fit: the source's length does (checked by `parse`).
    Span {
        start: start as u32,
        end: end as u32,
    }
}

fn push_text(parts: &mut Vec<Part>, source: &str, start: usize, end: usize) -> Option<()> {
    let text = &source[start..end];
    if text.contains("{%") || text.contains("{#") {
        return None;
    }
    if !text.is_empty() {
        parts.push(Part::Text(span(start, end)));
    }
    Some(())
}

/// The expression `source[start..end]` (between `{{` and `}}`), its names pushed to `names`.
fn parse_expr(source: &str, start: usize, end: usize, names: &mut Vec<Span>) -> Option<Part> {
    let inner = &source[start..end];
    // `{{-`, `-}}`, `{{+`, `+}}`: whitespace control is the engine's.
    if inner.starts_with(['-', '+']) || inner.ends_with(['-', '+']) {
        return None;
    }
    // Ranges of `source` for sub-slices of it.
    let span_of = |part: &str| {
        let at = part.as_ptr() as usize - source.as_ptr() as usize;
        span(at, at + part.len())
    };
    let mut filters = inner.split('|');
    let mut path = 0u16;
    for (index, name) in filters.next()?.trim().split('.').enumerate() {
        // `none`, `true`, `false` are literals, not variables.
        let literal = ["none", "None", "true", "True", "false", "False"].contains(&name);
        if !is_identifier(name) || (index == 0 && literal) {
            return None;
        }
        names.push(span_of(name));
        path = path.checked_add(1)?;
    }
    let from_json = match filters.next() {
        None => false,
        Some(filter) if filter.trim() == "from_json" => true,
        Some(_) => return None,
    };
    let mut keys = 0u16;
    for filter in filters {
        names.push(span_of(attr_key(filter)?));
        keys = keys.checked_add(1)?;
    }
    Some(Part::Expr {
        path,
        from_json,
        keys,
    })
}

/// The value of one expression, its names taken from `names`.
fn evaluate<'a>(
    ctx: &Value,
    names: &mut impl Iterator<Item = &'a str>,
    path: u16,
    from_json: bool,
    keys: u16,
) -> Option<Value> {
    let mut value = ctx.clone();
    for _ in 0..path {
        value = defined(value.get_attr(names.next()?).ok()?)?;
    }
    if !from_json {
        return Some(value);
    }
    value = parse_json(ctx, &value)?;
    for _ in 0..keys {
        value = defined(value.get_item(&Value::from(names.next()?)).ok()?)?;
    }
    Some(value)
}

/// `from_json` as the filter has it: through the run's cache when the context has one.
fn parse_json(ctx: &Value, text: &Value) -> Option<Value> {
    let parse = || super::filters::parse_json(text);
    let cache = ctx
        .get_attr(json_cache::VARIABLE)
        .ok()
        .and_then(|v| v.downcast_object::<JsonCache>());
    match cache {
        Some(cache) => cache.get_or_parse(text, parse).ok(),
        None => parse().ok(),
    }
}

fn defined(value: Value) -> Option<Value> {
    (!value.is_undefined()).then_some(value)
}

/// The key of ` attr('key') ` (either quote, no escapes).
fn attr_key(filter: &str) -> Option<&str> {
    let args = filter.trim().strip_prefix("attr")?.trim_start();
    let quoted = args.strip_prefix('(')?.strip_suffix(')')?.trim();
    let quote = quoted.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let key = quoted.strip_prefix(quote)?.strip_suffix(quote)?;
    (!key.contains([quote, '\\'])).then_some(key)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simple_shapes_parse_and_the_rest_does_not() {
        for simple in [
            "{{ request.body_text | from_json | attr('clientId') }}",
            "Bearer {{ steps.auth.body|from_json|attr(\"access_token\") }}",
            "{\"client_id\": \"{{ request.query.id }}\"}",
            "{{ a }}{{ b.c }} and {{ d | from_json }}",
        ] {
            assert!(Shortcut::parse(simple.into()).is_some(), "{simple}");
        }
        for engine in [
            "plain text",
            "{{ a }}\n",
            "{% if a %}{{ a }}{% endif %}",
            "{# note #}{{ a }}",
            "{{- a }}",
            "{{ a -}}",
            "{{ a | upper }}",
            "{{ a | from_json | attr(key) }}",
            "{{ a | from_json | attr('k\\'') }}",
            "{{ a['b'] }}",
            "{{ a.0 }}",
            "{{ none }}",
            "{{ a ~ b }}",
            "{{ a | attr('b') }}",
            "{{ a",
        ] {
            assert!(Shortcut::parse(engine.into()).is_none(), "{engine}");
        }
    }
}

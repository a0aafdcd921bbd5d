//! The values templates read: `request`, `steps`, `response`, `pathParams`, `body_text` and
//! `body_raw` (docs/spec.md §2), built once per run from the caller's request and step results.

use std::sync::{Arc, OnceLock};

use awc::http::header::HeaderMap;
use bytes::Bytes;
use minijinja::value::{Enumerator, Object, Value};

/// The caller's request as `request.*` exposes it.
#[derive(Debug)]
pub struct RequestView {
    body: Bytes,
    content_type: Option<String>,
    query: Arc<QueryParameters>,
    body_text: OnceLock<Value>,
}

impl RequestView {
    /// Wraps the caller's body, `Content-Type` and query string pairs.
    pub fn new(body: Bytes, content_type: Option<String>, query: Vec<(String, String)>) -> Self {
        RequestView {
            body,
            content_type,
            query: Arc::new(QueryParameters { pairs: query }),
            body_text: OnceLock::new(),
        }
    }

    /// The caller's body, as sent.
    pub(crate) fn body(&self) -> &Bytes {
        &self.body
    }

    /// The caller's `Content-Type`.
    pub(crate) fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// `body_text`: the body as UTF-8 text, `None` when empty or not UTF-8.
    pub(crate) fn body_text(&self) -> Value {
        self.body_text
            .get_or_init(|| match std::str::from_utf8(&self.body) {
                Ok(text) if !text.is_empty() => Value::from(text),
                _ => Value::from(()),
            })
            .clone()
    }

    /// `body_raw`: the body as bytes, `None` when empty.
    pub(crate) fn body_raw(&self) -> Value {
        if self.body.is_empty() {
            Value::from(())
        } else {
            Value::from_bytes(self.body.to_vec())
        }
    }
}

impl Object for RequestView {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "body_text" => Some(self.body_text()),
            "body_raw" => Some(self.body_raw()),
            "query_parameters" => Some(Value::from_dyn_object(self.query.clone())),
            "headers" => Some(Value::from_object(RequestHeaders {
                content_type: self.content_type.clone(),
            })),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["body_text", "body_raw", "query_parameters", "headers"])
    }
}

/// An undefined value that prints as nothing (instead of failing, as other undefined values
/// do here), while `is defined` is false and `| default(...)` replaces it: Jinja2's plain
/// `Undefined`. minijinja makes one for `a if b` without `else`; it is taken from there.
pub(crate) fn blank_undefined() -> Value {
    static BLANK: OnceLock<Value> = OnceLock::new();
    BLANK
        .get_or_init(|| {
            minijinja::Environment::new()
                .compile_expression("none if false")
                .and_then(|e| e.eval(()))
                .unwrap_or(Value::UNDEFINED)
        })
        .clone()
}

/// `request.query_parameters`: a dict where `.missing_key` reads as blank, as the platform
/// documents (and `is defined` / `| default` see it as undefined); bracket access, `in` and
/// `.get()` behave like a plain dict.
#[derive(Debug)]
pub(crate) struct QueryParameters {
    pairs: Vec<(String, String)>,
}

impl QueryParameters {
    fn lookup(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Object for QueryParameters {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookup(key.as_str()?).map(Value::from)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        Some(
            self.lookup(key)
                .map(Value::from)
                .unwrap_or_else(blank_undefined),
        )
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<Value> = Vec::new();
        for (k, _) in &self.pairs {
            let key = Value::from(k.as_str());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Enumerator::Values(keys)
    }
}

/// `request.headers`: only `Content-Type` is exposed, under any capitalisation.
#[derive(Debug)]
pub(crate) struct RequestHeaders {
    content_type: Option<String>,
}

impl Object for RequestHeaders {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if key.eq_ignore_ascii_case("content-type") {
            self.content_type.as_deref().map(Value::from)
        } else {
            None
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        if self.content_type.is_some() {
            Enumerator::Str(&["Content-Type"])
        } else {
            Enumerator::Empty
        }
    }
}

/// What a finished step (or an upstream response) looks like to templates:
/// `body` (text, `None` when binary), `status_code`, `headers` (lower-case keys).
pub(crate) fn response_value(body: Value, status_code: u16, headers: Value) -> Value {
    Value::from_pairs([
        ("body", body),
        ("status_code", Value::from(status_code)),
        ("headers", headers),
    ])
}

/// `steps.<name>` of a step that answered: its response plus `skipped: false` and
/// `error: none` (docs/spec.md §12).
pub(crate) fn step_value(body: Value, status_code: u16, headers: Value) -> Value {
    Value::from_object(StepValue {
        body,
        status_code,
        headers,
    })
}

/// [`step_value`]: the dict `{body, status_code, headers, skipped: false, error: none}` as
/// a lookup object over its three values. A map built with `Value::from_pairs` cost five
/// key strings and five hashed inserts for every kept step (callgrind, scenario A: ~2,400
/// instructions per run, and as much again to drop it); templates see the same dict.
#[derive(Debug)]
struct StepValue {
    body: Value,
    status_code: u16,
    headers: Value,
}

impl Object for StepValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "body" => self.body.clone(),
            "status_code" => Value::from(self.status_code),
            "headers" => self.headers.clone(),
            "skipped" => Value::from(false),
            "error" => Value::from(()),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["body", "status_code", "headers", "skipped", "error"])
    }
}

/// `steps.<name>` of a skipped step.
pub(crate) fn skipped_step_value() -> Value {
    Value::from_pairs([
        ("body", Value::from(())),
        ("status_code", Value::from(())),
        ("headers", empty_map()),
        ("skipped", Value::from(true)),
        ("error", Value::from(())),
    ])
}

/// `steps.<name>` of a step that failed with `on_error: "continue"`: `error` is
/// `{code, status_code, detail}` (`status_code` none when the upstream never answered).
pub(crate) fn continued_step_value(code: &str, status_code: Option<u16>, detail: &str) -> Value {
    let status = status_code.map_or(Value::from(()), Value::from);
    Value::from_pairs([
        ("body", Value::from(())),
        ("status_code", status.clone()),
        ("headers", empty_map()),
        ("skipped", Value::from(false)),
        (
            "error",
            Value::from_pairs([
                ("code", Value::from(code)),
                ("status_code", status),
                ("detail", Value::from(detail)),
            ]),
        ),
    ])
}

/// `steps.<name>` of a `for_each` step: `body` is the text of the JSON array of the item
/// bodies and `items` each item's `{body, status_code, headers}`.
pub(crate) fn for_each_step_value(body: &str, items: Vec<Value>) -> Value {
    Value::from_pairs([
        ("body", Value::from(body)),
        ("status_code", Value::from(200)),
        ("headers", empty_map()),
        ("items", Value::from(items)),
        ("skipped", Value::from(false)),
        ("error", Value::from(())),
    ])
}

fn empty_map() -> Value {
    Value::from_pairs(std::iter::empty::<(&str, Value)>())
}

/// A response body as templates see it: UTF-8 text, or `None` for binary content.
pub(crate) fn body_value(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(text) => Value::from(text),
        Err(_) => Value::from(()),
    }
}

/// Response headers as templates see them: a dict with lower-case keys (repeated headers
/// joined by `, `). Values are only turned into text when a template reads them.
#[derive(Debug)]
pub(crate) struct ResponseHeaders(pub HeaderMap);

impl Object for ResponseHeaders {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        let mut values = self.0.get_all(name).peekable();
        values.peek()?;
        let joined = values
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        Some(Value::from(joined))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut names: Vec<Value> = Vec::new();
        for name in self.0.keys() {
            let name = Value::from(name.as_str());
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Enumerator::Values(names)
    }
}

/// `headers` of a response as templates see it.
pub(crate) fn headers_value(headers: HeaderMap) -> Value {
    Value::from_object(ResponseHeaders(headers))
}

/// The top-level variables of one render: the run's variables (shared, never copied) plus
/// the few that change per step (`steps`, `response`). Looking a name up is a short scan;
/// nothing is built per render.
#[derive(Debug)]
pub struct TemplateContext {
    base: Arc<Vec<(&'static str, Value)>>,
    extra: Vec<(&'static str, Value)>,
}

impl TemplateContext {
    /// A context of `base` plus `extra`.
    pub fn value(
        base: Arc<Vec<(&'static str, Value)>>,
        extra: Vec<(&'static str, Value)>,
    ) -> Value {
        Value::from_object(TemplateContext { base, extra })
    }
}

impl Object for TemplateContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.extra
            .iter()
            .chain(self.base.iter())
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.extra
                .iter()
                .chain(self.base.iter())
                .filter(|(k, _)| !k.starts_with("__"))
                .map(|(k, _)| Value::from(*k))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;

    #[test]
    fn query_parameters_read_blank_when_missing_but_behave_like_a_dict() {
        let request = Value::from_object(RequestView::new(
            Bytes::from_static(b"{\"a\":1}"),
            Some("application/json".into()),
            vec![("page".into(), "2".into())],
        ));
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        let render =
            |src: &str| env.render_str(src, minijinja::context! { request => request.clone() });
        assert_eq!(
            render("[{{ request.query_parameters.page }}|{{ request.query_parameters.nope }}]")
                .unwrap(),
            "[2|]"
        );
        assert_eq!(
            render("{{ 'nope' in request.query_parameters }}").unwrap(),
            "False"
        );
        assert_eq!(
            render("{{ request.headers['content-type'] }}").unwrap(),
            "application/json"
        );
        assert!(render("{{ request.headers.Authorization }}").is_err());
        assert_eq!(render("{{ request.body_text }}").unwrap(), "{\"a\":1}");
    }
}

//! `X-Debug-Request` (docs/spec.md §14): the resolved request of every step that ran, kept
//! by the run when the caller asked for it and may have it, and answered as one header of
//! at most 16 KiB. Secret values never enter it: the steps render its copy of their
//! request with `get_secret()` giving its own template text.

use std::sync::Mutex;

use serde_json::Value;

/// The answer header, and the request header that asks for it.
pub const HEADER: &str = "X-Debug-Request";

/// The longest header value answered.
pub const MAX_BYTES: usize = 16 * 1024;

/// What marks a value (or, at worst, the header) as cut.
pub const CUT_MARKER: &str = "...[cut]";

/// The requests of one run, by step (and `for_each` item), as the steps resolved them.
#[derive(Debug, Default)]
pub struct DebugLog {
    entries: Mutex<Vec<(usize, usize, Value)>>,
}

impl DebugLog {
    /// Keeps the resolved request of step `index` (its `item`, for a `for_each` call).
    pub(crate) fn push(&self, index: usize, item: Option<usize>, view: Value) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.push((index, item.unwrap_or(0), view));
        }
    }

    /// The header value: a simple connector's request object, or `{"steps": [...]}` for a
    /// composite, in step order; ASCII JSON of at most [`MAX_BYTES`]. None for a simple
    /// connector whose request was never resolved (its template failed): no `null` header.
    pub(crate) fn header_value(&self, composite: bool) -> Option<String> {
        let mut entries = self.entries.lock().map(|e| e.clone()).unwrap_or_default();
        entries.sort_by_key(|(index, item, _)| (*index, *item));
        let mut views = entries.into_iter().map(|(_, _, view)| view);
        let doc = if composite {
            serde_json::json!({ "steps": views.collect::<Vec<_>>() })
        } else {
            views.next()?
        };
        Some(fit(doc, MAX_BYTES))
    }
}

/// `value` as JSON with every non-ASCII character escaped (a header value is ASCII).
fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Halves the longest string of `value` (marking it cut); false when none is worth it.
fn shrink_longest(value: &mut Value) -> bool {
    fn longest(value: &mut Value) -> Option<&mut String> {
        match value {
            Value::String(s) => Some(s),
            Value::Array(items) => items.iter_mut().filter_map(longest).max_by_key(|s| s.len()),
            Value::Object(map) => map.values_mut().filter_map(longest).max_by_key(|s| s.len()),
            _ => None,
        }
    }
    let Some(s) = longest(value) else {
        return false;
    };
    if s.len() <= 2 * CUT_MARKER.len() {
        return false;
    }
    let mut end = s.len() / 2;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(CUT_MARKER);
    true
}

/// `value` as ASCII JSON of at most `max` bytes: its longest strings cut first (the JSON
/// stays whole), the text itself cut only when that is not enough.
fn fit(mut value: Value, max: usize) -> String {
    loop {
        let text = ascii_json(&value);
        if text.len() <= max {
            return text;
        }
        if !shrink_longest(&mut value) {
            let mut text = text;
            text.truncate(max - CUT_MARKER.len());
            text.push_str(CUT_MARKER);
            return text;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_header_is_ascii_json_of_at_most_16_kib() {
        let big = json!({"url": "https://a.test/é", "request_body": "x".repeat(40_000)});
        let text = fit(big, MAX_BYTES);
        assert!(text.len() <= MAX_BYTES && text.is_ascii(), "{}", text.len());
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["url"], "https://a.test/é");
        assert!(parsed["request_body"]
            .as_str()
            .unwrap()
            .ends_with(CUT_MARKER));
        let empty = DebugLog::default();
        assert_eq!(
            empty.header_value(false),
            None,
            "a simple connector that resolved nothing"
        );
        assert_eq!(empty.header_value(true).as_deref(), Some(r#"{"steps":[]}"#));
        let many = Value::Array((0..5000).map(|i| json!(i)).collect());
        let text = fit(many, 1024);
        assert!(text.len() <= 1024 && text.ends_with(CUT_MARKER));
    }
}

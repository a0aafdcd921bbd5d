//! Per-run memo of `from_json`: a step body (or the caller's payload) that several templates
//! parse is parsed once per run. Entries are keyed by the identity of the text value and hold
//! on to it, so a key can never be reused by other text while the run lives.

use std::sync::{Arc, Mutex};

use minijinja::value::{Object, ObjectRepr, Value};
use minijinja::{Error, State};

/// The context variable under which a run's cache is found (not a name templates can use:
/// the load-time checks reject it).
pub(crate) const VARIABLE: &str = "__json_cache";

/// Parsed JSON by source text, for one run.
#[derive(Debug, Default)]
pub(crate) struct JsonCache {
    entries: Mutex<Vec<(Value, Value)>>,
}

impl Object for JsonCache {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
}

fn same_text(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => std::ptr::eq(x.as_ptr(), y.as_ptr()) && x.len() == y.len(),
        _ => false,
    }
}

impl JsonCache {
    /// The parsed value of `source`, parsing it with `parse` the first time.
    pub(crate) fn get_or_parse(
        &self,
        source: &Value,
        parse: impl FnOnce() -> Result<Value, Error>,
    ) -> Result<Value, Error> {
        if source.as_str().is_none_or(|s| s.len() < 32) {
            return parse(); // bytes, or too short to be worth remembering
        }
        if let Some((_, parsed)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(text, _)| same_text(text, source))
        {
            return Ok(parsed.clone());
        }
        let parsed = parse()?;
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((source.clone(), parsed.clone()));
        Ok(parsed)
    }
}

/// The run's cache, if the render has one.
pub(crate) fn of(state: &State<'_, '_>) -> Option<Arc<JsonCache>> {
    state
        .lookup(VARIABLE)
        .and_then(|v| v.downcast_object::<JsonCache>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_parsed_once() {
        let cache = JsonCache::default();
        let text = Value::from("{\"access_token\": \"abcdefghijklmnopqrstuvwxyz\"}");
        let mut parses = 0;
        for _ in 0..3 {
            cache
                .get_or_parse(&text, || {
                    parses += 1;
                    Ok(Value::from(1))
                })
                .unwrap();
        }
        assert_eq!(parses, 1);
        let equal_but_other = Value::from("{\"access_token\": \"abcdefghijklmnopqrstuvwxyz\"}");
        cache
            .get_or_parse(&equal_but_other, || Ok(Value::from(2)))
            .unwrap();
        assert_eq!(cache.entries.lock().unwrap().len(), 2);
    }
}

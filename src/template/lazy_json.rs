//! `from_json` values that are built as templates read them. The text is checked in full
//! first, exactly as an eager parse would (same errors, same nesting limit), but objects and
//! arrays only record where their members are; a member becomes a template value when a
//! template first reads it, and is kept for later reads. A template that reads one field of a
//! large upstream answer no longer pays for building all of it (scenario C in `bench/`).
//!
//! The values behave as the eagerly built ones did: objects are maps in document order (a
//! repeated key keeps its first position and its last value), arrays are sequences, scalars
//! are what `minijinja`'s own deserializer makes of them.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Objects with more members than this get a hash index; smaller ones are searched in order.
const INDEX_FROM: usize = 12;

/// Parses the JSON in `text`, a template string value (its text is shared, not copied),
/// after checking all of it. `None` when `text` is not a string.
pub fn parse(text: &Value) -> Option<Result<Value, serde_json::Error>> {
    let str = text.as_str()?;
    Some(serde_json::from_str::<Checked>(str).map(|_| {
        let source = Arc::new(Source(text.clone()));
        source.value(0..str.len())
    }))
}

/// Whether `value` is an object or array made by [`parse`] (JSON data: it holds no value a
/// template made).
pub(crate) fn is_lazy(value: &Value) -> bool {
    value.downcast_object_ref::<LazyObject>().is_some()
        || value.downcast_object_ref::<LazyArray>().is_some()
}

/// The whole JSON text, shared by every lazy value made from it.
#[derive(Debug)]
struct Source(Value);

impl Source {
    fn text(&self) -> &str {
        self.0.as_str().unwrap_or_default()
    }

    /// The value of the (checked) JSON text at `span`.
    fn value(self: &Arc<Self>, span: Range<usize>) -> Value {
        let raw = self.text()[span.clone()].trim_start();
        match raw.as_bytes().first() {
            Some(b'{') => Value::from_object(LazyObject::new(self, span)),
            Some(b'[') => Value::from_object(LazyArray::new(self, span)),
            // A scalar: what the eager parse made of it.
            _ => serde_json::from_str::<Value>(raw).unwrap_or_else(|e| unreachable_error(&e)),
        }
    }

    /// The offset of `raw`, a slice of this source's text, and its end.
    fn span_of(&self, raw: &RawValue) -> Range<usize> {
        let start = raw.get().as_ptr() as usize - self.text().as_ptr() as usize;
        start..start + raw.get().len()
    }
}

/// The text was checked in full before any lazy value was made, so a member cannot fail to
/// parse; should it ever, the template sees an error value instead of a wrong one.
fn unreachable_error(e: &serde_json::Error) -> Value {
    let category = match e.classify() {
        serde_json::error::Category::Io => "io",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data",
        serde_json::error::Category::Eof => "end of input",
    };
    Value::from(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!("from_json: the input could not be read back ({category})"),
    ))
}

/// A member whose value is built on first read.
struct Member {
    span: Range<usize>,
    value: OnceLock<Value>,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Member({:?})", self.span)
    }
}

impl Member {
    fn new(span: Range<usize>) -> Self {
        Member {
            span,
            value: OnceLock::new(),
        }
    }

    fn get(&self, source: &Arc<Source>) -> Value {
        self.value
            .get_or_init(|| source.value(self.span.clone()))
            .clone()
    }
}

/// A JSON object: its keys (built at once) and members (built when read).
#[derive(Debug)]
struct LazyObject {
    source: Arc<Source>,
    keys: Vec<Value>,
    members: Vec<Member>,
    index: Option<HashMap<Value, usize>>,
}

impl LazyObject {
    fn new(source: &Arc<Source>, span: Range<usize>) -> Self {
        let mut object = LazyObject {
            source: source.clone(),
            keys: Vec::new(),
            members: Vec::new(),
            index: None,
        };
        let text = &source.text()[span];
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let entries = deserializer.deserialize_map(Entries).unwrap_or_default();
        let large = entries.len() > INDEX_FROM;
        let mut index = HashMap::new();
        for (key, raw) in entries {
            let member = Member::new(source.span_of(raw));
            let key = Value::from(key.as_ref());
            // A repeated key keeps its first position and takes the last value.
            let existing = if large {
                index.get(&key).copied()
            } else {
                object.keys.iter().position(|k| k == &key)
            };
            match existing {
                Some(at) => object.members[at] = member,
                None => {
                    if large {
                        index.insert(key.clone(), object.keys.len());
                    }
                    object.keys.push(key);
                    object.members.push(member);
                }
            }
        }
        if large {
            object.index = Some(index);
        }
        object
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&Value::from(key)).copied(),
            None => self.keys.iter().position(|k| k.as_str() == Some(key)),
        }
    }
}

impl Object for LazyObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        let at = self.position(key)?;
        Some(self.members[at].get(&self.source))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_key_value_enumerator(|this| {
            Box::new(
                this.keys
                    .iter()
                    .zip(&this.members)
                    .map(|(key, member)| (key.clone(), member.get(&this.source))),
            )
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.keys.len())
    }
}

/// A JSON array: where its items are (each built when read).
#[derive(Debug)]
struct LazyArray {
    source: Arc<Source>,
    items: Vec<Member>,
}

impl LazyArray {
    fn new(source: &Arc<Source>, span: Range<usize>) -> Self {
        let text = &source.text()[span];
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let items = deserializer
            .deserialize_seq(Items)
            .unwrap_or_default()
            .into_iter()
            .map(|raw| Member::new(source.span_of(raw)))
            .collect();
        LazyArray {
            source: source.clone(),
            items,
        }
    }
}

impl Object for LazyArray {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(self.items.get(key.as_usize()?)?.get(&self.source))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.items.len())
    }
}

/// The members of one object, each as its raw text (nested values are skipped, not built).
struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(std::borrow::Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            entries.push((key.0, map.next_value::<&'de RawValue>()?));
        }
        Ok(entries)
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The items of one array, each as its raw text.
struct Items;

impl<'de> Visitor<'de> for Items {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(item);
        }
        Ok(items)
    }
}

/// The full check: every number, string and escape read as the eager parse reads it (so
/// the same texts fail, with the same messages), nothing kept.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Check)
    }
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = Checked;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(Check)
    }
}

struct Check;

impl<'de> Visitor<'de> for Check {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<IgnoredKey>()?.is_some() {
            map.next_value_seed(Check)?;
        }
        Ok(Checked)
    }
}

/// A key is a string; reading it as one checks its escapes.
struct IgnoredKey;

impl<'de> serde::Deserialize<'de> for IgnoredKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(Check).map(|_| IgnoredKey)
    }
}

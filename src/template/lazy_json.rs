//! `from_json` values that are built as templates read them. The text is checked in full
//! first, exactly as an eager parse would (same errors, same nesting limit), but objects and
//! arrays only record where their members are; a member becomes a template value when a
//! template first reads it, and is kept for later reads. A template that reads one field of a
//! large upstream answer no longer pays for building all of it (scenario C in `bench/`).
//!
//! The values behave as the eagerly built ones did: objects are maps in document order (a
//! repeated key keeps its first position and its last value), arrays are sequences, scalars
//! are what `minijinja`'s own deserializer makes of them.
//!
//! Most answers are plain JSON: no escapes, integers and short decimals, shallow nesting. Such
//! text is checked and its members found in one pass of [`Scan`], which accepts only what
//! serde_json accepts and reads the same way; anything else (an escape, an exponent, a long
//! number, deep nesting, an error) takes serde_json's check and its errors, as before.

use std::borrow::Cow;
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
    if let Some(value) = Scan::whole(str.as_bytes()) {
        let source = Arc::new(Source(text.clone()));
        return Some(Ok(match value {
            Scanned::Object(members) => Value::from_object(LazyObject::build(
                &source,
                members
                    .into_iter()
                    .map(|(key, span)| (Cow::Borrowed(&str[key]), span)),
            )),
            Scanned::Array(items) => Value::from_object(LazyArray::build(&source, items)),
            Scanned::Scalar(span) => source.value(span),
        }));
    }
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
            // A (checked) string without escapes is its text between the quotes.
            Some(b'"') if !raw.contains('\\') => {
                let raw = raw.trim_end();
                Value::from(&raw[1..raw.len() - 1])
            }
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
        let text = &source.text()[span.clone()];
        if let Some(members) = Scan::object_members(text.as_bytes()) {
            return LazyObject::build(
                source,
                members.into_iter().map(|(key, value)| {
                    (
                        Cow::Borrowed(&text[key]),
                        span.start + value.start..span.start + value.end,
                    )
                }),
            );
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let entries = deserializer.deserialize_map(Entries).unwrap_or_default();
        LazyObject::build(
            source,
            entries
                .into_iter()
                .map(|(key, raw)| (key, source.span_of(raw))),
        )
    }

    /// The object of `members` (each key and where its value is), in document order.
    fn build<'k>(
        source: &Arc<Source>,
        members: impl ExactSizeIterator<Item = (Cow<'k, str>, Range<usize>)>,
    ) -> Self {
        let mut object = LazyObject {
            source: source.clone(),
            keys: Vec::with_capacity(members.len()),
            members: Vec::with_capacity(members.len()),
            index: None,
        };
        let large = members.len() > INDEX_FROM;
        let mut index = HashMap::new();
        for (text, span) in members {
            let member = Member::new(span);
            // A repeated key keeps its first position and takes the last value. A small
            // object compares the texts, and makes a key value only for a new key.
            let (existing, key) = if large {
                let key = Value::from(text.as_ref());
                (index.get(&key).copied(), Some(key))
            } else {
                let existing = object
                    .keys
                    .iter()
                    .position(|k| k.as_str() == Some(text.as_ref()));
                (existing, None)
            };
            match existing {
                Some(at) => object.members[at] = member,
                None => {
                    let key = key.unwrap_or_else(|| Value::from(text.as_ref()));
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
        let text = &source.text()[span.clone()];
        if let Some(items) = Scan::array_items(text.as_bytes()) {
            return LazyArray::build(
                source,
                items
                    .into_iter()
                    .map(|item| span.start + item.start..span.start + item.end)
                    .collect(),
            );
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let items = deserializer
            .deserialize_seq(Items)
            .unwrap_or_default()
            .into_iter()
            .map(|raw| source.span_of(raw))
            .collect();
        LazyArray::build(source, items)
    }

    /// The array of the values at `items`.
    fn build(source: &Arc<Source>, items: Vec<Range<usize>>) -> Self {
        LazyArray {
            source: source.clone(),
            items: items.into_iter().map(Member::new).collect(),
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

/// Nesting the one-pass scan descends to; deeper text takes serde_json's check (whose limit
/// of 128 then refuses it, or not, as it always did).
const SCAN_DEPTH: usize = 64;

/// What [`Scan::whole`] found: the members of an object (each key's text, without its quotes,
/// and where its value is), the items of an array, or a scalar.
enum Scanned {
    Object(Vec<(Range<usize>, Range<usize>)>),
    Array(Vec<Range<usize>>),
    Scalar(Range<usize>),
}

/// The bytes that end the plain part of a string: its closing quote, an escape, or a
/// control character (which JSON refuses). One look-up a byte instead of three comparisons.
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// The one-pass check of plain JSON. It accepts a subset of what serde_json accepts, every
/// accepted text means what serde_json reads in it, and it gives up (`None`) on anything
/// else: strings with an escape or a control character, numbers with an exponent or more
/// than 18 integer digits (whose value could be out of range), nesting deeper than
/// [`SCAN_DEPTH`], and every syntax error. Giving up costs nothing but the bytes read: the
/// caller then checks the text with serde_json, which gives the error, if any.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    /// The whole of `bytes`: one value between optional whitespace.
    fn whole(bytes: &'a [u8]) -> Option<Scanned> {
        let mut scan = Scan { bytes, at: 0 };
        scan.whitespace();
        let start = scan.at;
        let scanned = match scan.peek()? {
            b'{' => {
                let mut members = Vec::with_capacity(8);
                scan.object(1, Some(&mut members))?;
                Scanned::Object(members)
            }
            b'[' => {
                let mut items = Vec::with_capacity(8);
                scan.array(1, Some(&mut items))?;
                Scanned::Array(items)
            }
            _ => {
                scan.value(0)?;
                Scanned::Scalar(start..scan.at)
            }
        };
        scan.whitespace();
        (scan.at == bytes.len()).then_some(scanned)
    }

    /// The members of the (checked) object that `bytes` is.
    fn object_members(bytes: &'a [u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
        let mut scan = Scan { bytes, at: 0 };
        let mut members = Vec::with_capacity(8);
        (scan.peek()? == b'{').then_some(())?;
        scan.object(1, Some(&mut members))?;
        Some(members)
    }

    /// The items of the (checked) array that `bytes` is.
    fn array_items(bytes: &'a [u8]) -> Option<Vec<Range<usize>>> {
        let mut scan = Scan { bytes, at: 0 };
        let mut items = Vec::with_capacity(8);
        (scan.peek()? == b'[').then_some(())?;
        scan.array(1, Some(&mut items))?;
        Some(items)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// serde_json's whitespace.
    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// One value at `depth` containers deep.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth + 1, None),
            b'[' => self.array(depth + 1, None),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// A string without escapes or control characters (the text is UTF-8 already): the
    /// range of its text, without the quotes.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.at + 1;
        let rest = self.bytes.get(start..)?;
        let len = rest.iter().position(|&b| STRING_STOP[usize::from(b)])?;
        (rest[len] == b'"').then_some(())?;
        self.at = start + len + 1;
        Some(start..start + len)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at most 18 integer digits: always a finite number.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = self.at;
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.at - digits > 18 {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            let fraction = self.at;
            self.digits();
            (self.at > fraction).then_some(())?;
        }
        match self.peek() {
            Some(b'e' | b'E' | b'0'..=b'9') => None, // an exponent, or a leading zero
            _ => Some(()),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    /// An object (at `{`), `depth` containers deep counting itself; its members go to
    /// `members` when given.
    fn object(
        &mut self,
        depth: usize,
        mut members: Option<&mut Vec<(Range<usize>, Range<usize>)>>,
    ) -> Option<()> {
        (depth <= SCAN_DEPTH).then_some(())?;
        self.at += 1;
        self.whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            (self.peek()? == b'"').then_some(())?;
            let key = self.string()?;
            self.whitespace();
            self.expect(b':')?;
            self.whitespace();
            let start = self.at;
            self.value(depth)?;
            if let Some(members) = members.as_deref_mut() {
                members.push((key, start..self.at));
            }
            self.whitespace();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.whitespace();
                }
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array (at `[`), `depth` containers deep counting itself; where its items are goes
    /// to `items` when given.
    fn array(&mut self, depth: usize, mut items: Option<&mut Vec<Range<usize>>>) -> Option<()> {
        (depth <= SCAN_DEPTH).then_some(())?;
        self.at += 1;
        self.whitespace();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            let start = self.at;
            self.value(depth)?;
            if let Some(items) = items.as_deref_mut() {
                items.push(start..self.at);
            }
            self.whitespace();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.whitespace();
                }
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the one-pass scan takes `text` (else serde_json checks it).
    fn scanned(text: &str) -> bool {
        Scan::whole(text.as_bytes()).is_some()
    }

    #[test]
    fn the_scan_takes_plain_json_and_leaves_the_rest_to_serde_json() {
        for text in [
            "{}",
            " { \"a\" : [1, -2, 0, 3.25, -0.5, true, false, null, {}, []], \"b\": \"x\" } ",
            "[]",
            "\"text\"",
            "-0",
            "123456789012345678",
        ] {
            assert!(scanned(text), "{text}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                "{text}"
            );
        }
        for text in [
            "",
            " ",
            "{\"a\":1,}",
            "[1,]",
            "{\"a\" 1}",
            "[1] x",
            "\"a\\nb\"",
            "\"a\u{1}b\"",
            "1e5",
            "1E5",
            "01",
            "1.",
            "-",
            "1234567890123456789",
            "[nul]",
            "{\"a\":[1,{\"b\":nul}]}",
            "{1:2}",
        ] {
            assert!(!scanned(text), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(SCAN_DEPTH), "]".repeat(SCAN_DEPTH));
        assert!(scanned(&deep));
        let deeper = format!(
            "{}{}",
            "[".repeat(SCAN_DEPTH + 1),
            "]".repeat(SCAN_DEPTH + 1)
        );
        assert!(!scanned(&deeper));
    }

    #[test]
    fn scanned_and_checked_text_build_the_same_values() {
        for text in [
            "{\"a\": {\"b\": [1, 2.5, \"c\"]}, \"a\": -0, \"d\": \"\"}",
            "[{\"x\": null}, [true], \"s\"]",
            " \"plain\" ",
            "-0",
            "7",
        ] {
            let lazy = parse(&Value::from(text)).unwrap().unwrap();
            let eager: Value = serde_json::from_str(text).unwrap();
            assert_eq!(lazy, eager, "{text}");
            assert_eq!(lazy.to_string(), eager.to_string(), "{text}");
        }
    }
}

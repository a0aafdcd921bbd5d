//! Python-compatible text forms of template values: `str()`, `repr()` and `json.dumps()`.
//!
//! Registries are written against Python's Jinja2, where `{{ none }}` prints `None`, a list
//! prints as `['a', 'b']` and `tojson` sorts keys and separates with `", "`. minijinja prints
//! these differently by default, so the runtime formats values here instead.

use std::fmt::Write;

use minijinja::value::{from_args, Tuple, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

thread_local! {
    /// The largest text form built by [`py_repr`] and [`py_json_dumps`] on this thread: the
    /// output cap of the render in progress ([`with_text_limit`]).
    static TEXT_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Runs `f` (a render) with the text forms of values bounded by `limit` bytes.
///
/// Fuel is charged for the text a value prints as only once it is written, so without this a
/// small value that stands for a huge one (`[[range(1000) | list] * 1000] * 1000` is 2,000
/// list slots and 10^9 numbers) is turned into gigabytes of text before anything can stop
/// it. No text larger than the render's output cap can be sent anyway.
pub(crate) fn with_text_limit<R>(limit: usize, depth: usize, f: impl FnOnce() -> R) -> R {
    let previous = TEXT_LIMIT.with(|l| l.replace(limit));
    let previous_depth = DEPTH_LIMIT.with(|l| l.replace(depth));
    let result = f();
    TEXT_LIMIT.with(|l| l.set(previous));
    DEPTH_LIMIT.with(|l| l.set(previous_depth));
    result
}

thread_local! {
    /// The deepest nesting [`py_repr`] (and `pprint`) descends into on this thread: what the
    /// render's stack holds ([`with_text_limit`]); small outside a render.
    static DEPTH_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(2_000) };
}

/// Fails when printing has gone `depth` levels deep: a value nested deeper than the render
/// could have built within its fuel can only be one that contains itself (a namespace
/// given to itself, `{% set ns.me = ns %}`), which would otherwise recurse until the stack
/// overflows and the process aborts.
pub(crate) fn check_depth(depth: usize) -> Result<(), Error> {
    if depth > DEPTH_LIMIT.with(|l| l.get()) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "output: a value is nested too deeply to print (does it contain itself?)",
        ));
    }
    Ok(())
}

/// Fails once `out` has grown past the text limit of the render in progress.
fn check_text_limit(out: &str) -> Result<(), Error> {
    let limit = TEXT_LIMIT.with(|l| l.get());
    if out.len() > limit {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("output: a value's text form is larger than {limit} bytes, the output limit"),
        ));
    }
    Ok(())
}

/// `value[key]`, `None` when there is no such key or index.
pub(crate) fn item(value: &Value, key: &Value) -> Option<Value> {
    value.get_item(key).ok().filter(|v| !v.is_undefined())
}

/// What Python's `str(value)` gives: the text `{{ value }}` renders to.
///
/// An undefined value that reaches here is printed as Jinja2's `Undefined` is: empty. With
/// the runtime's semi-strict mode only the silent undefined of an `if` expression without
/// `else` (`{{ ", " if not loop.last }}`) gets this far; others fail before formatting.
pub(crate) fn py_str(value: &Value, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Bytes | ValueKind::Iterable => {
            py_repr(value, out)?
        }
        _ => scalar(value, out),
    }
    Ok(())
}

/// What Python's `repr(value)` gives: strings quoted, containers recursively.
pub(crate) fn py_repr(value: &Value, out: &mut String) -> Result<(), Error> {
    repr_at(value, out, 0)
}

fn repr_at(value: &Value, out: &mut String, depth: usize) -> Result<(), Error> {
    check_depth(depth)?;
    match value.kind() {
        ValueKind::String => repr_str(value.as_str().unwrap_or_default(), out),
        ValueKind::Bytes => repr_bytes(value.as_bytes().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            // minijinja keeps Jinja2's tuples (`(1, 2)`, `dictsort` and `items()` pairs,
            // `partition`): they print in parentheses, a single item with a comma.
            let tuple = value.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let mut count = 0;
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_at(&item, out, depth + 1)?;
                check_text_limit(out)?;
                count += 1;
            }
            out.push_str(match (tuple, count) {
                (true, 1) => ",)",
                (true, _) => ")",
                _ => "]",
            });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_at(&key, out, depth + 1)?;
                out.push_str(": ");
                repr_at(&value.get_item(&key)?, out, depth + 1)?;
                check_text_limit(out)?;
            }
            out.push('}');
        }
        // Only a silent undefined (an `if` expression without `else`) gets here.
        ValueKind::Undefined => out.push_str("Undefined"),
        _ => scalar(value, out),
    }
    Ok(())
}

fn scalar(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::None | ValueKind::Undefined => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => py_float(f, out),
            Err(_) => write!(out, "{value}").unwrap_or(()),
        },
        _ => write!(out, "{value}").unwrap_or(()),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `1.0` keeps its `.0`, and exponent
/// notation below 1e-4 and from 1e16 on (`1e+16`, `1.5e-05`).
pub(crate) fn py_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

fn is_printable(c: char) -> bool {
    !matches!(c as u32,
        0..=0x1f | 0x7f..=0xa0 | 0xad | 0x2028 | 0x2029 | 0x200b..=0x200f | 0xfeff)
}

fn repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

fn repr_bytes(b: &[u8], out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(quote);
    for &byte in b {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c as char == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    out.push(quote);
}

/// The runtime's unknown-method callback: the Python `str` and `list` methods that
/// `minijinja_contrib::pycompat` lacks (`rsplit`, `zfill`, `ljust`, `rjust`, `center`,
/// `index`, `rindex`, `swapcase`, `partition`, `rpartition`, `removeprefix`,
/// `removesuffix`, `list.index`), then everything pycompat has (`split`, `get`, `items`, ...).
pub(crate) fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let extra =
        match value.kind() {
            // Python's `str.format` (`{:%}`, `{!r}`, Python's text of None and lists).
            ValueKind::String if method == "format" => Some(Value::from(
                super::pyformat::str_format(state, value.as_str().unwrap_or_default(), args)?,
            )),
            ValueKind::String => str_method(value.as_str().unwrap_or_default(), method, args)?,
            ValueKind::Seq if method == "index" => {
                let (wanted,): (&Value,) = from_args(args)?;
                let position = value.try_iter()?.position(|item| item == *wanted);
                Some(Value::from(position.ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "list.index(x): x not in list")
                })?))
            }
            _ => None,
        };
    match extra {
        Some(result) => Ok(result),
        None => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// The widest padding `center`, `ljust`, `rjust` and `zfill` produce: a template cannot
/// make one call allocate more than this (rendered output is capped later anyway).
const MAX_PAD_WIDTH: usize = 1 << 20;

fn check_pad_width(width: usize) -> Result<(), Error> {
    if width > MAX_PAD_WIDTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("padding width is larger than {MAX_PAD_WIDTH}"),
        ));
    }
    Ok(())
}

/// Python's `str.center`/`ljust`/`rjust`: pads to `width` characters with `fill`; like
/// CPython, `center` puts the odd padding character on the left only when `width` is odd.
pub(crate) fn py_pad(s: &str, width: usize, fill: char, align: char) -> Result<String, Error> {
    let len = s.chars().count();
    if len >= width {
        return Ok(s.to_string());
    }
    check_pad_width(width)?;
    let margin = width - len;
    let left = match align {
        '<' => 0,
        '>' => margin,
        _ => margin / 2 + (margin & width & 1),
    };
    let mut out = String::with_capacity(s.len() + margin);
    out.extend(std::iter::repeat_n(fill, left));
    out.push_str(s);
    out.extend(std::iter::repeat_n(fill, margin - left));
    Ok(out)
}

fn str_method(s: &str, method: &str, args: &[Value]) -> Result<Option<Value>, Error> {
    let not_found = || {
        Error::new(
            ErrorKind::InvalidOperation,
            "str.index: substring not found",
        )
    };
    let char_index = |byte: usize| Value::from(s[..byte].chars().count());
    Ok(Some(match method {
        "rsplit" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            let max = maxsplit.filter(|m| *m >= 0).map(|m| m as usize);
            let mut parts: Vec<&str> = match sep {
                Some("") => return Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
                Some(sep) => match max {
                    Some(m) => s.rsplitn(m + 1, sep).collect(),
                    None => s.rsplit(sep).collect(),
                },
                None => {
                    // Whitespace runs; at most `max` splits from the right, the rest kept
                    // whole (with its inner whitespace) and trailing whitespace dropped.
                    let mut parts = Vec::new();
                    let mut rest = s.trim_end();
                    while !rest.is_empty() {
                        if max.is_some_and(|m| parts.len() == m) {
                            parts.push(rest);
                            break;
                        }
                        match rest.rfind(char::is_whitespace) {
                            Some(i) => {
                                let ws = rest[i..].chars().next().map_or(1, char::len_utf8);
                                parts.push(&rest[i + ws..]);
                                rest = rest[..i].trim_end();
                            }
                            None => {
                                parts.push(rest);
                                rest = "";
                            }
                        }
                    }
                    parts
                }
            };
            parts.reverse();
            Value::from_iter(parts.into_iter().map(Value::from))
        }
        "zfill" => {
            let (width,): (usize,) = from_args(args)?;
            let (sign, digits) = match s.strip_prefix(['+', '-']) {
                Some(rest) => (&s[..1], rest),
                None => ("", s),
            };
            let pad = width.saturating_sub(s.chars().count());
            if pad > 0 {
                check_pad_width(width)?;
            }
            Value::from(format!("{sign}{}{digits}", "0".repeat(pad)))
        }
        "ljust" | "rjust" | "center" => {
            let (width, fill): (usize, Option<&str>) = from_args(args)?;
            let fill = match fill.map(|f| {
                let mut chars = f.chars();
                (chars.next(), chars.next())
            }) {
                None => ' ',
                Some((Some(c), None)) => c,
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "the fill character must be exactly one character long",
                    ))
                }
            };
            let align = match method {
                "ljust" => '<',
                "rjust" => '>',
                _ => '^',
            };
            Value::from(py_pad(s, width, fill, align)?)
        }
        "index" => {
            let (sub,): (&str,) = from_args(args)?;
            char_index(s.find(sub).ok_or_else(not_found)?)
        }
        "rindex" => {
            let (sub,): (&str,) = from_args(args)?;
            char_index(s.rfind(sub).ok_or_else(not_found)?)
        }
        "swapcase" => {
            let () = from_args(args)?;
            let mut out = String::with_capacity(s.len());
            for c in s.chars() {
                if c.is_uppercase() {
                    out.extend(c.to_lowercase());
                } else {
                    out.extend(c.to_uppercase());
                }
            }
            Value::from(out)
        }
        "partition" | "rpartition" => {
            let (sep,): (&str,) = from_args(args)?;
            if sep.is_empty() {
                return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"));
            }
            let found = if method == "partition" {
                s.find(sep)
            } else {
                s.rfind(sep)
            };
            let parts = match (found, method) {
                (Some(i), _) => [&s[..i], sep, &s[i + sep.len()..]],
                (None, "partition") => [s, "", ""],
                (None, _) => ["", "", s],
            };
            Value::from(Tuple::from(parts.map(Value::from)))
        }
        "removeprefix" => {
            let (prefix,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(prefix).unwrap_or(s))
        }
        "removesuffix" => {
            let (suffix,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(suffix).unwrap_or(s))
        }
        _ => return Ok(None),
    }))
}

/// Options of Python's `json.dumps` that the template filters use.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JsonStyle {
    /// `sort_keys=True`.
    pub sort_keys: bool,
    /// `indent=N`: newlines and N spaces per level; also switches the item separator to `,`.
    pub indent: Option<usize>,
    /// Escape `<`, `>`, `&` and `'` as `\u00XX`, as Jinja2's `tojson` does for HTML safety.
    pub html_safe: bool,
}

/// Python's `json.dumps(value, ensure_ascii=True, ...)` with the given style.
pub(crate) fn py_json_dumps(value: &Value, style: JsonStyle) -> Result<String, Error> {
    let mut out = String::new();
    json_value(value, style, 0, &mut out)?;
    Ok(out)
}

fn json_value(
    value: &Value,
    style: JsonStyle,
    depth: usize,
    out: &mut String,
) -> Result<(), Error> {
    if depth > 128 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "value is nested too deeply to serialize as JSON",
        ));
    }
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if !value.is_integer() => {
            let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
            if f.is_nan() {
                out.push_str("NaN")
            } else if f.is_infinite() {
                out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
            } else {
                py_float(f, out)
            }
        }
        ValueKind::Number => {
            let _ = write!(out, "{value}");
        }
        ValueKind::String => json_str(value.as_str().unwrap_or_default(), style, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            json_container('[', ']', items.len(), style, depth, out, |i, out| {
                json_value(&items[i], style, depth + 1, out)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<(String, Value)> = value
                .try_iter()?
                .map(|k| {
                    let text = match k.as_str() {
                        Some(s) => s.to_string(),
                        None => {
                            let mut s = String::new();
                            scalar(&k, &mut s);
                            if k.kind() == ValueKind::None {
                                s = "null".into();
                            } else if k.kind() == ValueKind::Bool {
                                s = s.to_lowercase();
                            }
                            s
                        }
                    };
                    (text, k)
                })
                .collect();
            if style.sort_keys {
                keys.sort_by(|a, b| a.0.cmp(&b.0));
            }
            json_container('{', '}', keys.len(), style, depth, out, |i, out| {
                json_str(&keys[i].0, style, out);
                out.push_str(": ");
                json_value(&value.get_item(&keys[i].1)?, style, depth + 1, out)
            })?;
        }
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "undefined value cannot be serialized as JSON",
            ))
        }
        other => {
            return Err(Error::new(
                ErrorKind::BadSerialization,
                format!("a value of type {other} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

fn json_container(
    open: char,
    close: char,
    len: usize,
    style: JsonStyle,
    depth: usize,
    out: &mut String,
    mut item: impl FnMut(usize, &mut String) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(if style.indent.is_some() { "," } else { ", " });
        }
        if let Some(n) = style.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * (depth + 1)));
        }
        item(i, out)?;
        check_text_limit(out)?;
    }
    if let Some(n) = style.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', n * depth));
    }
    out.push(close);
    Ok(())
}

fn json_str(s: &str, style: JsonStyle, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\'' if style.html_safe => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(f: f64) -> String {
        let mut s = String::new();
        py_float(f, &mut s);
        s
    }

    #[test]
    fn floats_print_like_python_repr() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(3.5), "3.5");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(-2.25), "-2.25");
        assert_eq!(float(1e16), "1e+16");
        assert_eq!(float(1.5e-5), "1.5e-05");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(123456789.0), "123456789.0");
        assert_eq!(float(1e15), "1000000000000000.0");
    }

    #[test]
    fn containers_print_like_python_repr() {
        let v = Value::from(minijinja::value::Serde(
            serde_json::json!({"a": [1, "x'y", null, true, 2.0]}),
        ));
        let mut s = String::new();
        py_str(&v, &mut s).unwrap();
        assert_eq!(s, r#"{'a': [1, "x'y", None, True, 2.0]}"#);
    }

    #[test]
    fn json_dumps_matches_python_separators_and_escapes() {
        let v = Value::from(minijinja::value::Serde(
            serde_json::json!({"b": "<é>", "a": 1}),
        ));
        let sorted = JsonStyle {
            sort_keys: true,
            html_safe: true,
            ..Default::default()
        };
        assert_eq!(
            py_json_dumps(&v, sorted).unwrap(),
            r#"{"a": 1, "b": "\u003c\u00e9\u003e"}"#
        );
    }
}

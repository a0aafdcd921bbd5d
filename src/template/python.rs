//! Python-compatible text forms of template values: `str()`, `repr()` and `json.dumps()`.
//!
//! Registries are written against Python's Jinja2, where `{{ none }}` prints `None`, a list
//! prints as `['a', 'b']` and `tojson` sorts keys and separates with `", "`. minijinja prints
//! these differently by default, so the runtime formats values here instead.

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// What Python's `str(value)` gives: the text `{{ value }}` renders to.
pub fn py_str(value: &Value, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Bytes | ValueKind::Iterable => {
            py_repr(value, out)?
        }
        _ => scalar(value, out),
    }
    Ok(())
}

/// What Python's `repr(value)` gives: strings quoted, containers recursively.
pub fn py_repr(value: &Value, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => repr_str(value.as_str().unwrap_or_default(), out),
        ValueKind::Bytes => repr_bytes(value.as_bytes().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&key, out)?;
                out.push_str(": ");
                py_repr(&value.get_item(&key)?, out)?;
            }
            out.push('}');
        }
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
pub fn py_float(f: f64, out: &mut String) {
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

/// Options of Python's `json.dumps` that the template filters use.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonStyle {
    /// `sort_keys=True`.
    pub sort_keys: bool,
    /// `indent=N`: newlines and N spaces per level; also switches the item separator to `,`.
    pub indent: Option<usize>,
    /// Escape `<`, `>`, `&` and `'` as `\u00XX`, as Jinja2's `tojson` does for HTML safety.
    pub html_safe: bool,
}

/// Python's `json.dumps(value, ensure_ascii=True, ...)` with the given style.
pub fn py_json_dumps(value: &Value, style: JsonStyle) -> Result<String, Error> {
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

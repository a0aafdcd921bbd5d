//! Jinja2's `pprint` filter: Python's `pprint.pformat(value)` (width 80, dict keys sorted).
//! A value whose `repr()` fits in the line is printed as that `repr()`; a list, tuple or dict
//! that does not is broken one item per line, and a long string into adjacent literals in
//! parentheses, as `pprint.PrettyPrinter` does.

use std::fmt::Write;

use minijinja::value::{Value, ValueKind};
use minijinja::Error;

use super::python::{check_depth, py_repr};

/// pprint's default line width.
const WIDTH: usize = 80;

/// `pprint.pformat(value)`.
pub(crate) fn pformat(value: &Value) -> Result<String, Error> {
    let mut out = String::new();
    format(value, &mut out, 0, 0, 0)?;
    Ok(out)
}

/// `repr()` with dict keys sorted, at every level (pprint's `_safe_repr`).
fn sorted_repr(value: &Value, out: &mut String) -> Result<(), Error> {
    sorted_repr_at(value, out, 0)
}

fn sorted_repr_at(value: &Value, out: &mut String, depth: usize) -> Result<(), Error> {
    check_depth(depth)?;
    match value.kind() {
        ValueKind::Map => {
            out.push('{');
            for (i, (key, item)) in sorted_items(value)?.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                sorted_repr_at(key, out, depth + 1)?;
                out.push_str(": ");
                sorted_repr_at(item, out, depth + 1)?;
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let tuple = value.is_tuple();
            let items: Vec<Value> = value.try_iter()?.collect();
            out.push(if tuple { '(' } else { '[' });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                sorted_repr_at(item, out, depth + 1)?;
            }
            out.push_str(match (tuple, items.len()) {
                (true, 1) => ",)",
                (true, _) => ")",
                _ => "]",
            });
        }
        _ => py_repr(value, out)?,
    }
    Ok(())
}

/// A dict's items sorted by key, as pprint sorts them (keys of one type by value; mixed types
/// by type name first, as its `_safe_key` falls back to).
fn sorted_items(value: &Value) -> Result<Vec<(Value, Value)>, Error> {
    let mut items: Vec<(Value, Value)> = value
        .try_iter()?
        .map(|key| {
            let item = super::python::item(value, &key).unwrap_or(Value::UNDEFINED);
            (key, item)
        })
        .collect();
    let rank = |v: &Value| match v.kind() {
        ValueKind::Number | ValueKind::Bool => 0,
        ValueKind::String => 1,
        _ => 2,
    };
    items.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    Ok(items)
}

fn repr_of(value: &Value) -> Result<String, Error> {
    let mut out = String::new();
    sorted_repr(value, &mut out)?;
    Ok(out)
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// `PrettyPrinter._format`.
fn format(
    value: &Value,
    out: &mut String,
    indent: usize,
    allowance: usize,
    level: usize,
) -> Result<(), Error> {
    let rep = repr_of(value)?;
    let max_width = WIDTH as isize - indent as isize - allowance as isize;
    if chars(&rep) as isize > max_width {
        match value.kind() {
            ValueKind::Map if value.len().unwrap_or(0) > 0 => {
                return format_dict(value, out, indent, allowance, level + 1)
            }
            ValueKind::Seq | ValueKind::Iterable => {
                return format_seq(value, out, indent, allowance, level + 1)
            }
            ValueKind::String => {
                return format_str(
                    value.as_str().unwrap_or_default(),
                    out,
                    indent,
                    allowance,
                    level + 1,
                )
            }
            _ => {}
        }
    }
    out.push_str(&rep);
    Ok(())
}

/// `_pprint_dict` and `_format_dict_items`.
fn format_dict(
    value: &Value,
    out: &mut String,
    indent: usize,
    allowance: usize,
    level: usize,
) -> Result<(), Error> {
    out.push('{');
    let items = sorted_items(value)?;
    let indent = indent + 1;
    let allowance = allowance + 1;
    let last_index = items.len().saturating_sub(1);
    for (i, (key, item)) in items.iter().enumerate() {
        let last = i == last_index;
        let rep = repr_of(key)?;
        out.push_str(&rep);
        out.push_str(": ");
        format(
            item,
            out,
            indent + chars(&rep) + 2,
            if last { allowance } else { 1 },
            level,
        )?;
        if !last {
            out.push_str(",\n");
            out.extend(std::iter::repeat_n(' ', indent));
        }
    }
    out.push('}');
    Ok(())
}

/// `_pprint_list`, `_pprint_tuple` and `_format_items`.
fn format_seq(
    value: &Value,
    out: &mut String,
    indent: usize,
    allowance: usize,
    level: usize,
) -> Result<(), Error> {
    let items: Vec<Value> = value.try_iter()?.collect();
    let tuple = value.is_tuple();
    let end = match (tuple, items.len()) {
        (true, 1) => ",)",
        (true, _) => ")",
        _ => "]",
    };
    out.push(if tuple { '(' } else { '[' });
    let allowance = allowance + if tuple { end.len() } else { 1 };
    let indent = indent + 1;
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        if i > 0 {
            out.push_str(",\n");
            out.extend(std::iter::repeat_n(' ', indent));
        }
        format(item, out, indent, if last { allowance } else { 1 }, level)?;
    }
    out.push_str(end);
    Ok(())
}

/// Python's `str.splitlines(keepends=True)` for the line breaks JSON text has.
fn lines_keepends(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&s[start..=i]);
                start = i + 1;
            }
            b'\r' => {
                let end = if bytes.get(i + 1) == Some(&b'\n') {
                    i + 1
                } else {
                    i
                };
                lines.push(&s[start..=end]);
                start = end + 1;
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// `re.findall(r'\S*\s*', line)` without its final empty match.
fn words(line: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in line.char_indices() {
        let space = c.is_whitespace();
        if !space && in_space {
            parts.push(&line[start..i]);
            start = i;
        }
        in_space = space;
    }
    if start < line.len() {
        parts.push(&line[start..]);
    }
    parts
}

fn str_repr(s: &str) -> Result<String, Error> {
    repr_of(&Value::from(s))
}

/// `_pprint_str`: a long string as adjacent literals, split at line breaks and spaces.
fn format_str(
    s: &str,
    out: &mut String,
    indent: usize,
    allowance: usize,
    level: usize,
) -> Result<(), Error> {
    let lines = lines_keepends(s);
    let (indent, allowance) = if level == 1 {
        (indent + 1, allowance + 1)
    } else {
        (indent, allowance)
    };
    let max_width = WIDTH as isize - indent as isize;
    let mut max_width1 = max_width;
    let mut chunks: Vec<String> = Vec::new();
    let mut rep = String::new();
    for (i, line) in lines.iter().enumerate() {
        rep = str_repr(line)?;
        if i + 1 == lines.len() {
            max_width1 -= allowance as isize;
        }
        if chars(&rep) as isize <= max_width1 {
            chunks.push(rep.clone());
        } else {
            let parts = words(line);
            let mut max_width2 = max_width;
            let mut current = String::new();
            for (j, part) in parts.iter().enumerate() {
                let candidate = format!("{current}{part}");
                if j + 1 == parts.len() && i + 1 == lines.len() {
                    max_width2 -= allowance as isize;
                }
                if chars(&str_repr(&candidate)?) as isize > max_width2 {
                    if !current.is_empty() {
                        chunks.push(str_repr(&current)?);
                    }
                    current = part.to_string();
                } else {
                    current = candidate;
                }
            }
            if !current.is_empty() {
                chunks.push(str_repr(&current)?);
            }
        }
    }
    if chunks.len() == 1 {
        out.push_str(&rep);
        return Ok(());
    }
    if level == 1 {
        out.push('(');
    }
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        }
        let _ = write!(out, "{chunk}");
    }
    if level == 1 {
        out.push(')');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: serde_json::Value) -> Value {
        Value::from(minijinja::value::Serde(json))
    }

    #[test]
    fn short_values_print_as_their_repr_with_sorted_keys() {
        let v = value(serde_json::json!({"b": 1, "a": [1, 2]}));
        assert_eq!(pformat(&v).unwrap(), "{'a': [1, 2], 'b': 1}");
    }

    #[test]
    fn long_lists_break_one_item_per_line() {
        let users: Vec<_> = (0..3)
            .map(|i| serde_json::json!({"id": i, "email": format!("u{i}@example.com"), "name": format!("user{i}")}))
            .collect();
        let v = value(serde_json::json!({ "users": users }));
        assert_eq!(
            pformat(&v).unwrap(),
            "{'users': [{'email': 'u0@example.com', 'id': 0, 'name': 'user0'},\n           {'email': 'u1@example.com', 'id': 1, 'name': 'user1'},\n           {'email': 'u2@example.com', 'id': 2, 'name': 'user2'}]}"
        );
    }
}

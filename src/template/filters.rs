//! The platform's template filters: `from_json`, `json_encode`, `tojson`, `base64_encode`,
//! `base64_decode`, and Jinja2-exact versions of built-ins whose minijinja form differs
//! (`urlencode`, `int`, `float`, `escape`/`e`) or that minijinja lacks (`truncate`,
//! `wordcount`, `wordwrap`, `center`, `striptags`). Each is covered by a case in
//! `tests/fixtures/jinja2/cases.json`; see `docs/jinja2-differences.md` for what remains.
//!
//! Errors raised here start with the filter's name and never quote the value, so they are
//! safe to show to callers (see [`super::render::RenderError`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};

use super::python::{py_json_dumps, py_pad, py_str, JsonStyle};

/// Prefixes of error details that come from our own filters and functions: only these
/// details are shown to callers, everything else is reduced to its kind.
pub(crate) const OWN_ERROR_PREFIXES: &[&str] = &[
    "from_json:",
    "json_encode:",
    "tojson:",
    "base64_encode:",
    "base64_decode:",
    "get_secret:",
    "get_variable:",
    "jwt_encode:",
    "url:",
    "now:",
    "output:",
    "%:",
    "format:",
    "str.format:",
    "list.",
    "dict.",
    "filesizeformat:",
    "xmlattr:",
    "cycler:",
];

pub(crate) fn own_error(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, detail.into())
}

/// Registers the filters on `env`.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_filter("from_json", from_json);
    env.add_filter("json_encode", json_encode);
    env.add_filter("tojson", tojson);
    env.add_filter("base64_encode", base64_encode);
    env.add_filter("base64_decode", base64_decode);
    env.add_filter("urlencode", urlencode);
    env.add_filter("int", int);
    env.add_filter("float", float);
    env.add_filter("escape", escape);
    env.add_filter("e", escape);
    env.add_filter("truncate", truncate);
    env.add_filter("wordcount", wordcount);
    env.add_filter("wordwrap", wordwrap);
    env.add_filter("center", center);
    env.add_filter("striptags", striptags);
    env.add_filter("format", super::pyformat::format_filter);
    env.add_filter("filesizeformat", filesizeformat);
    env.add_filter("forceescape", forceescape);
    env.add_filter("xmlattr", xmlattr);
    env.add_filter("pprint", pprint);
}

/// In strict mode a missing value cannot become text (it would be sent as blank); in
/// lenient mode it is Jinja2's `Undefined`, whose text is empty. The silent undefined that
/// prints blank on purpose (`request.query_parameters.<missing>`, `a if b` without `else`)
/// passes in both, exactly as minijinja's own filters let it through: the check is theirs.
pub(crate) fn check_defined(state: &State, value: &Value) -> Result<(), Error> {
    if !value.is_undefined() || state.undefined_behavior() == minijinja::UndefinedBehavior::Lenient
    {
        return Ok(());
    }
    <String as minijinja::value::ArgType>::from_state_and_value(Some(state), Some(value))
        .map(|_| ())
}

/// Jinja2's `filesizeformat(value, binary=False)`: `1 Byte`, `999 Bytes`, `1.5 kB` (powers of
/// 1000) or `1.5 KiB` (powers of 1024), one decimal.
pub(crate) fn filesizeformat(
    state: &State,
    value: &Value,
    rest: Rest<Value>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let mut args = Args::new(rest, kwargs);
    let binary = args.next("binary")?.is_some_and(|v| v.is_true());
    args.finish()?;
    let bytes = match value.kind() {
        ValueKind::Undefined => return Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::Bool => f64::from(u8::from(value.is_true())),
        ValueKind::Number => f64::try_from(value.clone()).unwrap_or(f64::NAN),
        ValueKind::String => parse_py_float(value.as_str().unwrap_or_default())
            .ok_or_else(|| own_error("filesizeformat: the text is not a number"))?,
        _ => return Err(own_error("filesizeformat: the input is not a number")),
    };
    let _ = state;
    let base: u128 = if binary { 1024 } else { 1000 };
    let prefixes = if binary {
        ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    } else {
        ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    };
    if bytes == 1.0 {
        return Ok("1 Byte".into());
    }
    if bytes < base as f64 {
        return Ok(format!("{} Bytes", bytes.trunc() as i128));
    }
    let mut unit = base;
    for prefix in prefixes {
        unit *= base;
        if bytes < unit as f64 || prefix == prefixes[prefixes.len() - 1] {
            let scaled = base as f64 * bytes / unit as f64;
            let mut text = String::new();
            if scaled.is_finite() {
                text = format!("{scaled:.1}");
            } else {
                super::python::py_float(scaled, &mut text);
            }
            return Ok(format!("{text} {prefix}"));
        }
    }
    unreachable!("the last prefix always answers")
}

/// Jinja2's `forceescape`: HTML-escapes the text of the value even when it is marked safe.
pub(crate) fn forceescape(state: &State, value: &Value) -> Result<Value, Error> {
    check_defined(state, value)?;
    let text = if value.is_safe() {
        value.as_str().unwrap_or_default().to_string()
    } else {
        text_of(value)?
    };
    escape(state, &Value::from(text))
}

/// Jinja2's `xmlattr(d, autospace=True)`: ` key="value"` pairs, HTML-escaped, skipping `None`
/// and undefined values; a key with whitespace, `/`, `>` or `=` is an error.
pub(crate) fn xmlattr(
    state: &State,
    value: &Value,
    rest: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let mut args = Args::new(rest, kwargs);
    let autospace = args.next("autospace")?.is_none_or(|v| v.is_true());
    args.finish()?;
    if value.kind() != ValueKind::Map {
        check_defined(state, value)?;
        return Err(own_error("xmlattr: the input is not a dict"));
    }
    let mut parts = Vec::new();
    for key in value.try_iter()? {
        let item = super::python::item(value, &key).unwrap_or(Value::UNDEFINED);
        if item.is_none() || item.is_undefined() {
            continue;
        }
        let name = text_of(&key)?;
        if name.chars().any(|c| {
            matches!(
                c,
                ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '/' | '>' | '='
            )
        }) {
            return Err(own_error(
                "xmlattr: an attribute name has whitespace, '/', '>' or '='",
            ));
        }
        let name = escape(state, &key)?;
        let item = escape(state, &item)?;
        parts.push(format!(
            "{}=\"{}\"",
            name.as_str().unwrap_or_default(),
            item.as_str().unwrap_or_default()
        ));
    }
    let mut out = parts.join(" ");
    if autospace && !out.is_empty() {
        out.insert(0, ' ');
    }
    Ok(Value::from(out))
}

/// Jinja2's `pprint`: Python's `pprint.pformat` (80 columns, dict keys sorted).
pub(crate) fn pprint(state: &State, value: &Value) -> Result<String, Error> {
    check_defined(state, value)?;
    super::pprint::pformat(value)
}

/// Jinja2-style optional arguments: the next positional one, else the keyword `name`.
struct Args {
    positional: std::vec::IntoIter<Value>,
    kwargs: Kwargs,
}

impl Args {
    fn new(rest: Rest<Value>, kwargs: Kwargs) -> Self {
        Args {
            positional: rest.0.into_iter(),
            kwargs,
        }
    }

    fn next(&mut self, name: &str) -> Result<Option<Value>, Error> {
        match self.positional.next() {
            Some(v) => Ok(Some(v)),
            None => self.kwargs.get::<Option<Value>>(name),
        }
    }

    fn next_as<T: TryFrom<Value, Error = Error>>(
        &mut self,
        name: &str,
        default: T,
    ) -> Result<T, Error> {
        match self.next(name)? {
            Some(v) if !v.is_none() => T::try_from(v),
            _ => Ok(default),
        }
    }

    fn next_string(&mut self, name: &str, default: &str) -> Result<String, Error> {
        match self.next(name)? {
            Some(v) if v.is_none() => Ok(default.to_string()),
            Some(v) => v.as_str().map(str::to_string).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{name} must be a string"),
                )
            }),
            None => Ok(default.to_string()),
        }
    }

    fn finish(self) -> Result<(), Error> {
        if self.positional.len() > 0 {
            return Err(Error::from(ErrorKind::TooManyArguments));
        }
        self.kwargs.assert_all_used()
    }
}

/// Python's numeric literal underscores: allowed one at a time between digits.
fn strip_underscores(s: &str) -> Option<String> {
    if !s.contains('_') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_'
            && !(i > 0
                && i + 1 < bytes.len()
                && bytes[i - 1].is_ascii_alphanumeric()
                && bytes[i + 1].is_ascii_alphanumeric())
        {
            return None;
        }
    }
    Some(s.replace('_', ""))
}

/// Python's `int(text, base)`: surrounding whitespace, a sign, `0x`/`0o`/`0b` prefixes
/// matching the base, and digit-separating underscores are accepted.
fn parse_py_int(text: &str, base: u32) -> Option<i128> {
    let t = text.trim();
    let (negative, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = body.to_ascii_lowercase();
    let (base, digits) = match (base, lower.get(..2)) {
        (16 | 0, Some("0x")) => (16, &body[2..]),
        (8 | 0, Some("0o")) => (8, &body[2..]),
        (2 | 0, Some("0b")) => (2, &body[2..]),
        (0, _) => (10, body),
        (b, _) => (b, body),
    };
    // `0x_1f` is valid Python; `_12` is not.
    let digits = match digits.strip_prefix('_') {
        Some(rest) if digits.len() < body.len() => rest,
        _ => digits,
    };
    let digits = strip_underscores(digits)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let n = i128::from_str_radix(&digits, base).ok()?;
    Some(if negative { -n } else { n })
}

/// Python's `float(text)`: surrounding whitespace, exponents, `inf`/`nan`, underscores.
fn parse_py_float(text: &str) -> Option<f64> {
    let t = strip_underscores(text.trim())?;
    if t.is_empty() || t.contains(|c: char| c.is_whitespace()) {
        return None;
    }
    t.parse::<f64>().ok()
}

/// `int(float)`: truncates; NaN has no integer value, infinity overflows (an error in
/// Python too).
fn float_to_int(f: f64, default: Value) -> Result<Value, Error> {
    if f.is_nan() {
        Ok(default)
    } else if f.is_infinite() || f.abs() >= 1.7e38 {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            "int: the number is too large to convert to an integer",
        ))
    } else {
        Ok(int_value(f.trunc() as i128))
    }
}

fn int_value(n: i128) -> Value {
    match i64::try_from(n) {
        Ok(small) => Value::from(small),
        Err(_) => Value::from(n),
    }
}

/// Jinja2's `int(value, default=0, base=10)`: never fails on text that is not a number
/// (`'abc' | int` is `0`, `'4.7' | int` is `4`, `none | int` is `0`), unlike minijinja's.
pub(crate) fn int(value: &Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut args = Args::new(rest, kwargs);
    let default = args.next("default")?.unwrap_or(Value::from(0));
    let base: u32 = args.next_as("base", 10)?;
    args.finish()?;
    if !(base == 0 || (2..=36).contains(&base)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "int: base must be 0 or between 2 and 36",
        ));
    }
    let text = match value.kind() {
        ValueKind::Undefined => return Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::Bool => return Ok(Value::from(value.is_true() as i64)),
        ValueKind::Number if value.is_integer() => return Ok(value.clone()),
        ValueKind::Number => {
            let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
            return float_to_int(f, default);
        }
        ValueKind::String => value.as_str().unwrap_or_default(),
        ValueKind::Bytes => match std::str::from_utf8(value.as_bytes().unwrap_or_default()) {
            Ok(text) => text,
            Err(_) => return Ok(default),
        },
        _ => return Ok(default),
    };
    if let Some(n) = parse_py_int(text, base) {
        return Ok(int_value(n));
    }
    match parse_py_float(text) {
        Some(f) => float_to_int(f, default),
        None => Ok(default),
    }
}

/// Jinja2's `float(value, default=0.0)`: text that is not a number gives the default.
pub(crate) fn float(value: &Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut args = Args::new(rest, kwargs);
    let default = args.next("default")?.unwrap_or(Value::from(0.0));
    args.finish()?;
    let parsed = match value.kind() {
        ValueKind::Undefined => return Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::Bool => Some(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).ok(),
        ValueKind::String => parse_py_float(value.as_str().unwrap_or_default()),
        _ => None,
    };
    Ok(parsed.map(Value::from).unwrap_or(default))
}

/// MarkupSafe's `escape`: `&<>'"` become `&amp;`, `&lt;`, `&gt;`, `&#39;`, `&#34;` (minijinja
/// also escapes `/` and spells `'` as `&#x27;`). Safe values pass through unchanged.
///
/// In a URL the result is a plain string, not a "safe" one: a safe string is inserted into a
/// URL unencoded, so `{{ request.query_parameters.id | e }}` would otherwise let request data
/// add path segments, query parameters or a fragment (`../admin?role=admin`). There the
/// HTML-escaped text is percent-encoded like any other value.
pub(crate) fn escape(state: &State, value: &Value) -> Result<Value, Error> {
    check_defined(state, value)?;
    if value.is_safe() {
        return Ok(value.clone());
    }
    let in_url = matches!(state.auto_escape(), AutoEscape::Custom(_));
    let mut text = String::new();
    py_str(value, &mut text)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
    Ok(if in_url {
        Value::from(out)
    } else {
        Value::from_safe_string(out)
    })
}

fn text_of(value: &Value) -> Result<String, Error> {
    let mut text = String::new();
    py_str(value, &mut text)?;
    Ok(text)
}

/// Jinja2's `truncate(s, length=255, killwords=False, end='...', leeway=5)`, counting
/// characters: text within `length + leeway` is kept whole, otherwise it is cut to
/// `length - len(end)` characters (at the last space unless `killwords`) and `end` added.
pub(crate) fn truncate(value: &Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut args = Args::new(rest, kwargs);
    let length: usize = args.next_as("length", 255)?;
    let killwords = args.next("killwords")?.is_some_and(|v| v.is_true());
    let end: String = args.next_string("end", "...")?;
    let leeway: usize = args.next_as("leeway", 5)?;
    args.finish()?;
    let Some(s) = value.as_str() else {
        return match value.kind() {
            ValueKind::Undefined => Ok(value.clone()),
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                "truncate: the input is not a string",
            )),
        };
    };
    let end_len = end.chars().count();
    if length < end_len {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "truncate: length is shorter than the end marker",
        ));
    }
    if s.chars().count() <= length + leeway {
        return Ok(value.clone());
    }
    let cut: String = s.chars().take(length - end_len).collect();
    let kept = if killwords {
        cut.as_str()
    } else {
        cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head)
    };
    Ok(Value::from(format!("{kept}{end}")))
}

/// Jinja2's `wordcount`: the number of `\w+` runs in the text.
pub(crate) fn wordcount(state: &State, value: &Value) -> Result<usize, Error> {
    check_defined(state, value)?;
    let text = text_of(value)?;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    Ok(text
        .split(|c: char| !is_word(c))
        .filter(|w| !w.is_empty())
        .count())
}

/// Jinja2's `center(value, width=80)`: Python's `str.center`.
pub(crate) fn center(state: &State, value: &Value, width: Option<usize>) -> Result<String, Error> {
    check_defined(state, value)?;
    py_pad(&text_of(value)?, width.unwrap_or(80), ' ', '^')
}

/// Jinja2's `striptags`: drops `<!-- -->` comments and `<...>` tags, collapses whitespace
/// and unescapes HTML entities (numeric ones and `amp lt gt quot apos nbsp`).
pub(crate) fn striptags(state: &State, value: &Value) -> Result<String, Error> {
    check_defined(state, value)?;
    let mut text = if value.is_safe() {
        value.as_str().unwrap_or_default().to_string()
    } else {
        text_of(value)?
    };
    for (open, close) in [("<!--", "-->"), ("<", ">")] {
        while let Some(start) = text.find(open) {
            let Some(len) = text[start..].find(close) else {
                break;
            };
            text.replace_range(start..start + len + close.len(), "");
        }
    }
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(unescape_html(&collapsed))
}

fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|semi| *semi <= 10).and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => match entity.strip_prefix('#') {
                    Some(hex) if hex.starts_with(['x', 'X']) => u32::from_str_radix(&hex[1..], 16)
                        .ok()
                        .and_then(char::from_u32),
                    Some(dec) => dec.parse().ok().and_then(char::from_u32),
                    None => None,
                },
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Jinja2's `wordwrap(s, width=79, break_long_words=True, wrapstring=None,
/// break_on_hyphens=True)`: Python's `textwrap.wrap` applied to each line, greedily
/// filling lines with whitespace-separated words (hyphenated words may break after a
/// hyphen between letters), joined with `wrapstring` (default `\n`).
pub(crate) fn wordwrap(value: &Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let mut args = Args::new(rest, kwargs);
    let width: usize = args.next_as("width", 79)?;
    let break_long = args.next("break_long_words")?.is_none_or(|v| v.is_true());
    let wrapstring: String = args.next_string("wrapstring", "\n")?;
    let break_on_hyphens = args.next("break_on_hyphens")?.is_none_or(|v| v.is_true());
    args.finish()?;
    if value.is_undefined() {
        // Jinja2's wordwrap fails on Undefined even in its lenient default.
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    if width == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "wordwrap: width must be positive",
        ));
    }
    let text = text_of(value)?;
    // Each line is wrapped on its own; an empty line stays as an empty paragraph.
    let paragraphs: Vec<String> = text
        .lines()
        .map(|line| {
            wrap_paragraph(wrap_chunks(line, break_on_hyphens), width, break_long).join(&wrapstring)
        })
        .collect();
    Ok(paragraphs.join(&wrapstring))
}

/// Splits a line into textwrap's chunks: whitespace runs and words, words optionally cut
/// after a hyphen that has two letters on each side.
fn wrap_chunks(line: &str, break_on_hyphens: bool) -> Vec<Vec<char>> {
    let mut chunks: Vec<Vec<char>> = Vec::new();
    for c in line.chars() {
        match chunks.last_mut() {
            Some(last) if last[0].is_whitespace() == c.is_whitespace() => last.push(c),
            _ => chunks.push(vec![c]),
        }
    }
    if !break_on_hyphens {
        return chunks;
    }
    let letter = |c: Option<&char>| c.is_some_and(|c| c.is_alphabetic());
    let mut out = Vec::new();
    for chunk in chunks {
        let mut start = 0;
        for i in 0..chunk.len() {
            if chunk[i] == '-'
                && i >= start + 2
                && letter(chunk.get(i - 1))
                && letter(chunk.get(i - 2))
                && letter(chunk.get(i + 1))
                && letter(chunk.get(i + 2))
            {
                out.push(chunk[start..=i].to_vec());
                start = i + 1;
            }
        }
        out.push(chunk[start..].to_vec());
    }
    out
}

/// textwrap's greedy line filling: whitespace at line edges is dropped (except leading
/// whitespace of the first line), over-long words are split when `break_long`.
fn wrap_paragraph(chunks: Vec<Vec<char>>, width: usize, break_long: bool) -> Vec<String> {
    let is_space = |c: &Vec<char>| c.iter().all(|c| c.is_whitespace());
    let mut chunks: Vec<Vec<char>> = chunks.into_iter().rev().collect();
    let mut lines = Vec::new();
    while !chunks.is_empty() {
        let mut line: Vec<Vec<char>> = Vec::new();
        let mut len = 0;
        if !lines.is_empty() && chunks.last().is_some_and(is_space) {
            chunks.pop();
        }
        while let Some(chunk) = chunks.last() {
            if len + chunk.len() <= width {
                len += chunk.len();
                line.extend(chunks.pop());
            } else {
                break;
            }
        }
        if let Some(chunk) = chunks.last_mut() {
            if chunk.len() > width {
                if break_long {
                    let take = (width - len).max(1);
                    let tail = chunk.split_off(take);
                    line.push(std::mem::replace(chunk, tail));
                } else if line.is_empty() {
                    line.extend(chunks.pop());
                }
            }
        }
        if line.last().is_some_and(is_space) {
            line.pop();
        }
        if !line.is_empty() {
            lines.push(line.concat().into_iter().collect());
        }
    }
    lines
}

/// Parses JSON text into a value; invalid JSON fails the run. Within a run, the same text
/// (a step body, the caller's payload) is parsed once ([`super::json_cache`]).
pub(crate) fn from_json(state: &minijinja::State, value: &Value) -> Result<Value, Error> {
    match super::json_cache::of(state) {
        Some(cache) => cache.get_or_parse(value, || parse_json(value)),
        None => parse_json(value),
    }
}

/// `from_json` without the run's cache.
pub(crate) fn parse_json(value: &Value) -> Result<Value, Error> {
    let text: &[u8] = match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().as_bytes(),
        ValueKind::Bytes => value.as_bytes().unwrap_or_default(),
        ValueKind::None | ValueKind::Undefined => {
            return Err(own_error(
                "from_json: the input is None (a binary or empty body?), not JSON text",
            ))
        }
        other => {
            return Err(own_error(format!(
                "from_json: the input is a {other}, not JSON text"
            )))
        }
    };
    // Text is read on demand (see `lazy_json`); bytes are rare and read at once.
    let parsed = match super::lazy_json::parse(value) {
        Some(parsed) => parsed,
        None => serde_json::from_slice::<Value>(text),
    };
    match parsed {
        Ok(parsed) => Ok(parsed),
        Err(e) => Err(own_error(format!(
            "from_json: the input is not valid JSON ({} at line {} column {})",
            match e.classify() {
                serde_json::error::Category::Eof => "unexpected end",
                serde_json::error::Category::Syntax => "syntax error",
                _ => "invalid data",
            },
            e.line(),
            e.column()
        ))),
    }
}

/// `json.dumps(value)`: Python's separators, key order kept, non-ASCII escaped.
pub(crate) fn json_encode(value: &Value) -> Result<String, Error> {
    py_json_dumps(value, JsonStyle::default()).map_err(|e| {
        own_error(format!(
            "json_encode: {}",
            e.detail().unwrap_or("cannot encode")
        ))
    })
}

/// Jinja2's `tojson`: keys sorted, HTML-sensitive characters escaped, optional `indent`.
/// Returns a plain string (not "safe"), so it is still encoded where a URL needs it.
pub(crate) fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    py_json_dumps(
        value,
        JsonStyle {
            sort_keys: true,
            indent,
            html_safe: true,
        },
    )
    .map_err(|e| own_error(format!("tojson: {}", e.detail().unwrap_or("cannot encode"))))
}

/// Standard base64 (with padding) of a string's UTF-8 bytes, or of bytes.
pub(crate) fn base64_encode(value: &Value) -> Result<String, Error> {
    match value.kind() {
        ValueKind::Bytes => Ok(STANDARD.encode(value.as_bytes().unwrap_or_default())),
        ValueKind::Undefined => Err(own_error("base64_encode: the input is undefined")),
        _ => {
            let mut text = String::new();
            py_str(value, &mut text)?;
            Ok(STANDARD.encode(text.as_bytes()))
        }
    }
}

/// Decodes standard or URL-safe base64 (padding optional) to UTF-8 text.
pub(crate) fn base64_decode(value: &Value) -> Result<String, Error> {
    let Some(text) = value.as_str() else {
        return Err(own_error("base64_decode: the input is not a string"));
    };
    let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let normalized = cleaned.replace('-', "+").replace('_', "/");
    let trimmed = normalized.trim_end_matches('=');
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(trimmed)
        .map_err(|_| own_error("base64_decode: the input is not valid base64"))?;
    String::from_utf8(bytes)
        .map_err(|_| own_error("base64_decode: the decoded bytes are not UTF-8 text"))
}

/// Characters Python's `urllib.parse.quote` never escapes.
const QUOTE_SAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');
const QUOTE_SAFE_SLASH: &percent_encoding::AsciiSet = &QUOTE_SAFE.remove(b'/');

fn url_quote(value: &Value, for_qs: bool) -> Result<String, Error> {
    let set = if for_qs { QUOTE_SAFE } else { QUOTE_SAFE_SLASH };
    let encoded = match value
        .as_bytes()
        .filter(|_| value.kind() == ValueKind::Bytes)
    {
        Some(bytes) => percent_encoding::percent_encode(bytes, set).to_string(),
        None => {
            let mut text = String::new();
            py_str(value, &mut text)?;
            percent_encoding::utf8_percent_encode(&text, set).to_string()
        }
    };
    Ok(if for_qs {
        encoded.replace("%20", "+")
    } else {
        encoded
    })
}

/// Jinja2's `urlencode`: a string is quoted keeping `/`; a dict or a list of pairs becomes a
/// query string. The result is already URL-encoded, so it is marked safe and a URL template
/// inserts it unchanged.
pub(crate) fn urlencode(state: &State, value: &Value) -> Result<Value, Error> {
    check_defined(state, value)?;
    let encoded = match value.kind() {
        ValueKind::Map => {
            let mut parts = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                parts.push(format!(
                    "{}={}",
                    url_quote(&key, true)?,
                    url_quote(&item, true)?
                ));
            }
            parts.join("&")
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let mut parts = Vec::new();
            for pair in value.try_iter()? {
                let key = pair.get_item_by_index(0)?;
                let item = pair.get_item_by_index(1)?;
                parts.push(format!(
                    "{}={}",
                    url_quote(&key, true)?,
                    url_quote(&item, true)?
                ));
            }
            parts.join("&")
        }
        _ => url_quote(value, false)?,
    };
    Ok(Value::from_safe_string(encoded))
}

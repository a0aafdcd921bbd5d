//! Python's string formatting, as registries use it: the `%` operator (`'%s-%d' % (a, b)`,
//! `'%(k)s' % d`, and Python's modulo on numbers), Jinja2's `format` filter (which is
//! `value % args`) and `str.format` (with `{:%}`, `{!r}`, `{!a}` and Python's text forms of
//! `None`, lists and dicts).
//!
//! minijinja's `%` is numeric only and has no hook, so a template's `%` operators are
//! compiled into calls of [`py_mod`] (`super::rewrite`). Numbers with a format spec are
//! rendered by minijinja's own formatter, which follows Python's for them; what it lacks
//! (the `%` presentation type, conversions, `%(key)s`, Python's `str()` and `repr()` of
//! values, Python's argument checks) is done here. Errors start with `%:`, `format:` or
//! `str.format:` and name types, never values.

use minijinja::formatting::{format as engine_format, FormatStyle};
use minijinja::value::{from_args, Kwargs, Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind, State};

use super::filters::check_defined;
use super::python::{py_repr, py_str};

/// The widest field (`%1000000s`, `{:>1000000}`) or longest precision one replacement may
/// ask for: a template cannot make one format call allocate without bound.
const MAX_FIELD: usize = 1 << 20;

fn error(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, detail.into())
}

/// Python's name for the type of `value`, as its error messages say it.
fn type_name(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq if value.is_tuple() => "tuple",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

fn check_field(n: usize) -> Result<usize, Error> {
    if n > MAX_FIELD {
        return Err(error(format!(
            "format: a width or precision is larger than {MAX_FIELD}"
        )));
    }
    Ok(n)
}

fn text(value: &Value) -> Result<String, Error> {
    let mut out = String::new();
    py_str(value, &mut out)?;
    Ok(out)
}

fn repr(value: &Value) -> Result<String, Error> {
    let mut out = String::new();
    py_repr(value, &mut out)?;
    Ok(out)
}

/// Python's `ascii()`: `repr()` with every non-ASCII character escaped.
fn ascii(value: &Value) -> Result<String, Error> {
    let mut out = String::new();
    for c in repr(value)?.chars() {
        match c as u32 {
            0..=0x7f => out.push(c),
            n @ 0x80..=0xff => out.push_str(&format!("\\x{n:02x}")),
            n @ 0x100..=0xffff => out.push_str(&format!("\\u{n:04x}")),
            n => out.push_str(&format!("\\U{n:08x}")),
        }
    }
    Ok(out)
}

/// Pads `s` to `width` characters with `fill`; `align` is `<`, `>` or `^` (Python's
/// `format()` puts the odd character of centered padding on the right).
fn pad(s: &str, width: Option<usize>, fill: char, align: char) -> String {
    let len = s.chars().count();
    let Some(width) = width.filter(|w| *w > len) else {
        return s.to_string();
    };
    let margin = width - len;
    let left = match align {
        '<' => 0,
        '^' => margin / 2,
        _ => margin,
    };
    let mut out = String::with_capacity(s.len() + margin);
    out.extend(std::iter::repeat_n(fill, left));
    out.push_str(s);
    out.extend(std::iter::repeat_n(fill, margin - left));
    out
}

fn int_value(n: i128) -> Value {
    match i64::try_from(n) {
        Ok(small) => Value::from(small),
        Err(_) => Value::from(n),
    }
}

// ---------------------------------------------------------------------------------------
// The `%` operator
// ---------------------------------------------------------------------------------------

/// The `%` operator as Python has it: string formatting when the left side is a string,
/// modulo (with the sign of the divisor) when both sides are numbers.
pub(crate) fn py_mod(state: &State, left: &Value, right: &Value) -> Result<Value, Error> {
    match left.kind() {
        ValueKind::String => {
            let fmt = left.as_str().unwrap_or_default();
            let formatted = if right.is_tuple() {
                let items: Vec<Value> = right.try_iter()?.collect();
                percent_format(state, fmt, &items, None)?
            } else {
                // Python treats any non-tuple, non-str right side with item access as a
                // possible mapping: `%(key)s` reads it, and unused arguments are no error.
                let mapping =
                    matches!(right.kind(), ValueKind::Map | ValueKind::Seq).then_some(right);
                percent_format(state, fmt, std::slice::from_ref(right), mapping)?
            };
            Ok(Value::from(formatted))
        }
        ValueKind::Undefined => Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::Number | ValueKind::Bool => numeric_mod(left, right),
        _ => Err(error(format!(
            "%: unsupported operand types for %: '{}' and '{}'",
            type_name(left),
            type_name(right)
        ))),
    }
}

fn as_int(value: &Value) -> Option<i128> {
    match value.kind() {
        ValueKind::Bool => Some(value.is_true() as i128),
        ValueKind::Number if value.is_integer() => i128::try_from(value.clone()).ok(),
        _ => None,
    }
}

fn as_float(value: &Value) -> Option<f64> {
    match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).ok(),
        _ => None,
    }
}

/// Python's `a % b` on numbers: the result has the sign of `b`.
fn numeric_mod(left: &Value, right: &Value) -> Result<Value, Error> {
    if right.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    if let (Some(a), Some(b)) = (as_int(left), as_int(right)) {
        if b == 0 {
            return Err(error("%: integer modulo by zero"));
        }
        let mut r = a.checked_rem(b).unwrap_or(0);
        if r != 0 && ((r < 0) != (b < 0)) {
            r += b;
        }
        return Ok(int_value(r));
    }
    match (as_float(left), as_float(right)) {
        (Some(a), Some(b)) => {
            if b == 0.0 {
                return Err(error("%: float modulo by zero"));
            }
            let mut r = a % b;
            if r != 0.0 {
                if (b < 0.0) != (r < 0.0) {
                    r += b;
                }
            } else {
                r = 0.0f64.copysign(b);
            }
            Ok(Value::from(r))
        }
        _ => Err(error(format!(
            "%: unsupported operand types for %: '{}' and '{}'",
            type_name(left),
            type_name(right)
        ))),
    }
}

/// Python's printf-style formatting, `fmt % args`: `items` are the positional arguments
/// (a tuple's items, or the one value), `mapping` what `%(key)s` reads (a dict given as
/// the one value). As in Python, arguments left over are an error unless there is a mapping.
pub(crate) fn percent_format(
    state: &State,
    fmt: &str,
    items: &[Value],
    mapping: Option<&Value>,
) -> Result<String, Error> {
    let bytes = fmt.as_bytes();
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut next = 0;
    let mut i = 0;
    let mut literal = 0;
    let take = |next: &mut usize| -> Result<Value, Error> {
        let value = items
            .get(*next)
            .cloned()
            .ok_or_else(|| error("%: not enough arguments for format string"))?;
        *next += 1;
        Ok(value)
    };
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        out.push_str(&fmt[literal..i]);
        i += 1;
        if bytes.get(i) == Some(&b'%') {
            out.push('%');
            i += 1;
            literal = i;
            continue;
        }
        // %(key)
        let mut key = None;
        if bytes.get(i) == Some(&b'(') {
            let start = i + 1;
            let mut depth = 1;
            let mut j = start;
            while j < bytes.len() && depth > 0 {
                match bytes[j] {
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            if depth > 0 {
                return Err(error("%: incomplete format key"));
            }
            key = Some(&fmt[start..j - 1]);
            i = j;
        }
        // Flags.
        let (mut left_align, mut sign, mut space, mut alt, mut zero) =
            (false, false, false, false, false);
        while let Some(flag) = bytes.get(i) {
            match flag {
                b'-' => left_align = true,
                b'+' => sign = true,
                b' ' => space = true,
                b'#' => alt = true,
                b'0' => zero = true,
                _ => break,
            }
            i += 1;
        }
        // Width and precision: digits, or `*` for the next argument (a negative `*` width
        // left-aligns, as in Python).
        let number = |i: &mut usize, next: &mut usize| -> Result<Option<(usize, bool)>, Error> {
            if bytes.get(*i) == Some(&b'*') {
                *i += 1;
                let arg = take(next)?;
                let n = as_int(&arg)
                    .filter(|_| arg.kind() == ValueKind::Number)
                    .ok_or_else(|| error("%: * wants int"))?;
                let size = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
                return Ok(Some((check_field(size)?, n < 0)));
            }
            let start = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            if *i == start {
                return Ok(None);
            }
            let n = fmt[start..*i].parse().unwrap_or(usize::MAX);
            Ok(Some((check_field(n)?, false)))
        };
        let width = match number(&mut i, &mut next)? {
            Some((w, negative)) => {
                left_align |= negative;
                Some(w)
            }
            None => None,
        };
        let mut precision = None;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            precision = Some(number(&mut i, &mut next)?.map_or(0, |(p, _)| p));
        }
        while matches!(bytes.get(i), Some(b'h' | b'l' | b'L')) {
            i += 1;
        }
        let Some(&conversion) = bytes.get(i) else {
            return Err(error("%: incomplete format"));
        };
        i += 1;
        literal = i;
        let value = match key {
            Some(key) => {
                let mapping = mapping.ok_or_else(|| error("%: format requires a mapping"))?;
                if mapping.kind() != ValueKind::Map {
                    return Err(error(format!(
                        "%: {} indices must be integers, not str",
                        type_name(mapping)
                    )));
                }
                super::python::item(mapping, &Value::from(key)).ok_or_else(|| {
                    error("%: a %(key) of the format string is not in the mapping")
                })?
            }
            None if conversion == b'%' => Value::UNDEFINED,
            None => take(&mut next)?,
        };
        let spec = PercentSpec {
            left_align,
            sign,
            space,
            alt,
            zero,
            width,
            precision,
        };
        out.push_str(&spec.render(state, conversion, &value)?);
    }
    out.push_str(&fmt[literal..]);
    if mapping.is_none() && next < items.len() {
        return Err(error(
            "%: not all arguments converted during string formatting",
        ));
    }
    Ok(out)
}

/// One `%...x` conversion.
struct PercentSpec {
    left_align: bool,
    sign: bool,
    space: bool,
    alt: bool,
    zero: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

impl PercentSpec {
    fn pad_text(&self, s: &str) -> String {
        pad(s, self.width, ' ', if self.left_align { '<' } else { '>' })
    }

    /// The same spec for minijinja's printf formatter, for a number.
    fn engine_spec(&self, conversion: char) -> String {
        let mut spec = String::from("%");
        for (on, flag) in [
            (self.left_align, '-'),
            (self.sign, '+'),
            (self.space, ' '),
            (self.alt, '#'),
            (self.zero, '0'),
        ] {
            if on {
                spec.push(flag);
            }
        }
        if let Some(w) = self.width {
            spec.push_str(&w.to_string());
        }
        if let Some(p) = self.precision {
            spec.push('.');
            spec.push_str(&p.to_string());
        }
        spec.push(conversion);
        spec
    }

    fn number(&self, conversion: char, value: Value) -> Result<String, Error> {
        engine_format(FormatStyle::Printf, &self.engine_spec(conversion), &[value])
            .map_err(|e| error(format!("%: {}", e.detail().unwrap_or("invalid format"))))
    }

    fn render(&self, state: &State, conversion: u8, value: &Value) -> Result<String, Error> {
        match conversion {
            b's' | b'r' | b'a' => {
                check_defined(state, value)?;
                let mut s = match conversion {
                    b's' => text(value)?,
                    b'r' => repr(value)?,
                    _ => ascii(value)?,
                };
                if let Some(p) = self.precision {
                    if let Some((cut, _)) = s.char_indices().nth(p) {
                        s.truncate(cut);
                    }
                }
                Ok(self.pad_text(&s))
            }
            b'c' => {
                let c = match (as_int(value), value.as_str()) {
                    (Some(n), _) if value.kind() == ValueKind::Number => u32::try_from(n)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| error("%: %c arg not in range(0x110000)"))?,
                    (_, Some(s)) if s.chars().count() == 1 => s.chars().next().unwrap_or(' '),
                    _ => {
                        return Err(error(format!(
                            "%: %c requires an int or a unicode character, not {}",
                            type_name(value)
                        )))
                    }
                };
                Ok(self.pad_text(&c.to_string()))
            }
            b'd' | b'i' | b'u' => {
                let n = match (as_int(value), as_float(value)) {
                    (Some(n), _) => n,
                    (None, Some(f)) if f.is_finite() => f.trunc() as i128,
                    (None, Some(f)) if f.is_nan() => {
                        return Err(error("%: cannot convert float NaN to integer"))
                    }
                    (None, Some(_)) => {
                        return Err(error("%: cannot convert float infinity to integer"))
                    }
                    _ => {
                        return Err(error(format!(
                            "%: %{} format: a real number is required, not {}",
                            conversion as char,
                            type_name(value)
                        )))
                    }
                };
                self.number('d', int_value(n))
            }
            b'o' | b'x' | b'X' => {
                let n = as_int(value).ok_or_else(|| {
                    error(format!(
                        "%: %{} format: an integer is required, not {}",
                        conversion as char,
                        type_name(value)
                    ))
                })?;
                self.number(conversion as char, int_value(n))
            }
            b'e' | b'E' | b'f' | b'F' | b'g' | b'G' => {
                let f = as_float(value).ok_or_else(|| {
                    error(format!("%: must be real number, not {}", type_name(value)))
                })?;
                self.number(conversion as char, Value::from(f))
            }
            _ => Err(error("%: unsupported format character")),
        }
    }
}

/// Jinja2's `format` filter: `value % args`, or `value % kwargs` (a mapping) when keyword
/// arguments are given; both at once is an error, as in Jinja2.
pub(crate) fn format_filter(
    state: &State,
    value: &Value,
    args: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    check_defined(state, value)?;
    let fmt = text(value)?;
    let names: Vec<&str> = kwargs.args().collect();
    if names.is_empty() {
        return percent_format(state, &fmt, &args.0, None).map(Value::from);
    }
    if !args.0.is_empty() {
        return Err(error(
            "format: can't handle positional and keyword arguments at the same time",
        ));
    }
    let mut pairs = Vec::with_capacity(names.len());
    for name in names {
        pairs.push((Value::from(name), kwargs.get::<Value>(name)?));
    }
    let mapping = Value::from_pairs(pairs);
    percent_format(state, &fmt, std::slice::from_ref(&mapping), Some(&mapping)).map(Value::from)
}

// ---------------------------------------------------------------------------------------
// str.format
// ---------------------------------------------------------------------------------------

/// Python's `str.format(*args, **kwargs)` on `fmt`.
pub(crate) fn str_format(state: &State, fmt: &str, args: &[Value]) -> Result<String, Error> {
    let (positional, kwargs): (Rest<Value>, Kwargs) = from_args(args)?;
    let mut formatter = StrFormatter {
        state,
        positional: &positional.0,
        kwargs: &kwargs,
        auto: Numbering::Unset,
    };
    let out = formatter.format(fmt, 2)?;
    // Unused keyword arguments are fine in Python.
    for name in kwargs.args() {
        let _ = kwargs.get::<Value>(name);
    }
    Ok(out)
}

/// Python's rule: `{}` and `{0}` cannot be mixed in one format string.
#[derive(PartialEq)]
enum Numbering {
    Unset,
    Auto(usize),
    Manual,
}

struct StrFormatter<'a, 's> {
    state: &'a State<'a, 's>,
    positional: &'a [Value],
    kwargs: &'a Kwargs,
    auto: Numbering,
}

impl StrFormatter<'_, '_> {
    fn format(&mut self, fmt: &str, depth: usize) -> Result<String, Error> {
        if depth == 0 {
            return Err(error("str.format: Max string recursion exceeded"));
        }
        let bytes = fmt.as_bytes();
        let mut out = String::with_capacity(fmt.len() + 16);
        let mut i = 0;
        let mut literal = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    out.push_str(&fmt[literal..=i]);
                    i += 2;
                    literal = i;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    out.push_str(&fmt[literal..=i]);
                    i += 2;
                    literal = i;
                }
                b'}' => return Err(error("str.format: Single '}' encountered in format string")),
                b'{' => {
                    out.push_str(&fmt[literal..i]);
                    let start = i + 1;
                    let mut nesting = 1;
                    let mut j = start;
                    while j < bytes.len() {
                        match bytes[j] {
                            b'{' => nesting += 1,
                            b'}' => {
                                nesting -= 1;
                                if nesting == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    if nesting > 0 {
                        return Err(error("str.format: expected '}' before end of string"));
                    }
                    let field = self.field(&fmt[start..j], depth)?;
                    out.push_str(&field);
                    i = j + 1;
                    literal = i;
                }
                _ => i += 1,
            }
        }
        out.push_str(&fmt[literal..]);
        Ok(out)
    }

    /// One replacement field (between the braces): `name[!conversion][:spec]`.
    fn field(&mut self, field: &str, depth: usize) -> Result<String, Error> {
        // The name ends at the first `!` or `:` outside `[...]`.
        let bytes = field.as_bytes();
        let mut end = 0;
        let mut in_brackets = false;
        while end < bytes.len() {
            match bytes[end] {
                b'[' => in_brackets = true,
                b']' => in_brackets = false,
                b'!' | b':' if !in_brackets => break,
                _ => {}
            }
            end += 1;
        }
        let name = &field[..end];
        let mut rest = &field[end..];
        let mut conversion = None;
        if let Some(after) = rest.strip_prefix('!') {
            let mut chars = after.chars();
            conversion = chars.next();
            rest = chars.as_str();
            if !(rest.is_empty() || rest.starts_with(':')) {
                return Err(error("str.format: expected ':' after conversion specifier"));
            }
        }
        let spec = rest.strip_prefix(':').unwrap_or(rest);
        let value = self.lookup(name)?;
        let spec = if spec.contains('{') {
            self.format(spec, depth - 1)?
        } else {
            spec.to_string()
        };
        let value = match conversion {
            None => value,
            Some(c) => {
                check_defined(self.state, &value)?;
                Value::from(match c {
                    's' => text(&value)?,
                    'r' => repr(&value)?,
                    'a' => ascii(&value)?,
                    _ => return Err(error("str.format: Unknown conversion specifier")),
                })
            }
        };
        format_value(self.state, &value, &spec)
    }

    /// The value a field name names: `0`, `name`, or empty (the next one), then `.attr` and
    /// `[key]` steps.
    fn lookup(&mut self, name: &str) -> Result<Value, Error> {
        let first_end = name.find(['.', '[']).unwrap_or(name.len());
        let first = &name[..first_end];
        let mut value = if first.is_empty() {
            let index = match self.auto {
                Numbering::Manual => {
                    return Err(error("str.format: cannot switch from manual field specification to automatic field numbering"))
                }
                Numbering::Unset => 0,
                Numbering::Auto(n) => n,
            };
            self.auto = Numbering::Auto(index + 1);
            self.positional_arg(index)?
        } else if first.bytes().all(|b| b.is_ascii_digit()) {
            if matches!(self.auto, Numbering::Auto(_)) {
                return Err(error("str.format: cannot switch from automatic field numbering to manual field specification"));
            }
            self.auto = Numbering::Manual;
            let index = first
                .parse()
                .map_err(|_| error("str.format: Too many decimal digits in format string"))?;
            self.positional_arg(index)?
        } else {
            if !self.kwargs.has(first) {
                return Err(error(
                    "str.format: a named field of the format string is not among the keyword arguments",
                ));
            }
            self.kwargs.peek::<Value>(first)?
        };
        let mut rest = &name[first_end..];
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let attr = &after[..end];
                if attr.is_empty() {
                    return Err(error("str.format: Empty attribute in format string"));
                }
                if value.kind() == ValueKind::Map {
                    // Python's getattr: a dict's keys are not its attributes.
                    return Err(error(
                        "str.format: a dict has no attribute named in the format string (use [key])",
                    ));
                }
                value = value
                    .get_attr(attr)
                    .ok()
                    .filter(|v| !v.is_undefined())
                    .ok_or_else(|| {
                        error(format!(
                            "str.format: a '{}' value has no attribute named in the format string",
                            type_name(&value)
                        ))
                    })?;
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| error("str.format: Missing ']' in format string"))?;
                let key = &after[..end];
                let key = match key.parse::<i64>() {
                    Ok(n) if key.bytes().all(|b| b.is_ascii_digit()) => Value::from(n),
                    _ => Value::from(key),
                };
                value = super::python::item(&value, &key).ok_or_else(|| {
                    error(format!(
                        "str.format: a key or index of the format string is not in the '{}'",
                        type_name(&value)
                    ))
                })?;
                rest = &after[end + 1..];
                if !(rest.is_empty() || rest.starts_with(['.', '['])) {
                    return Err(error(
                        "str.format: Only '.' or '[' may follow ']' in format field specifier",
                    ));
                }
            } else {
                return Err(error("str.format: invalid field name in format string"));
            }
        }
        Ok(value)
    }

    fn positional_arg(&self, index: usize) -> Result<Value, Error> {
        self.positional.get(index).cloned().ok_or_else(|| {
            error(format!(
                "str.format: Replacement index {index} out of range for positional args tuple"
            ))
        })
    }
}

/// A parsed format spec: `[[fill]align][sign][z][#][0][width][grouping][.precision][type]`.
#[derive(Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alternate: bool,
    zero: bool,
    width: Option<usize>,
    grouping: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

impl Spec {
    /// The spec's sign, `#` and grouping, the part the engine's own formatting takes as is.
    fn sign_alternate_grouping(&self) -> String {
        let mut text = String::new();
        text.extend(self.sign);
        if self.alternate {
            text.push('#');
        }
        text.extend(self.grouping);
        text
    }
}

fn parse_spec(spec: &str) -> Result<Spec, Error> {
    let invalid = || error("str.format: Invalid format specifier");
    let chars: Vec<char> = spec.chars().collect();
    let mut out = Spec::default();
    let mut i = 0;
    let is_align = |c: char| matches!(c, '<' | '>' | '=' | '^');
    if chars.len() >= 2 && is_align(chars[1]) {
        out.fill = Some(chars[0]);
        out.align = Some(chars[1]);
        i = 2;
    } else if chars.first().copied().is_some_and(is_align) {
        out.align = Some(chars[0]);
        i = 1;
    }
    if let Some(&c @ ('+' | '-' | ' ')) = chars.get(i) {
        out.sign = Some(c);
        i += 1;
    }
    if chars.get(i) == Some(&'z') {
        i += 1;
    }
    if chars.get(i) == Some(&'#') {
        out.alternate = true;
        i += 1;
    }
    if chars.get(i) == Some(&'0') {
        out.zero = true;
        i += 1;
    }
    let digits = |i: &mut usize| -> Result<Option<usize>, Error> {
        let start = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        if *i == start {
            return Ok(None);
        }
        let n: String = chars[start..*i].iter().collect();
        let n: usize = n.parse().map_err(|_| invalid())?;
        Ok(Some(check_field(n)?))
    };
    out.width = digits(&mut i)?;
    if let Some(&c @ (',' | '_')) = chars.get(i) {
        out.grouping = Some(c);
        i += 1;
    }
    if chars.get(i) == Some(&'.') {
        i += 1;
        out.precision = Some(
            digits(&mut i)?
                .ok_or_else(|| error("str.format: Format specifier missing precision"))?,
        );
    }
    if let Some(&c) = chars.get(i) {
        out.ty = Some(c);
        i += 1;
    }
    if i != chars.len() {
        return Err(invalid());
    }
    Ok(out)
}

/// Python's `format(value, spec)`.
fn format_value(state: &State, value: &Value, spec: &str) -> Result<String, Error> {
    match value.kind() {
        ValueKind::String => format_str(value.as_str().unwrap_or_default(), spec),
        ValueKind::Number => format_number(value, spec),
        ValueKind::Bool if !spec.is_empty() => {
            format_number(&int_value(value.is_true() as i128), spec)
        }
        _ => {
            check_defined(state, value)?;
            if !spec.is_empty() {
                return Err(error(format!(
                    "str.format: unsupported format string passed to {}.__format__",
                    type_name(value)
                )));
            }
            text(value)
        }
    }
}

fn format_str(s: &str, spec: &str) -> Result<String, Error> {
    if spec.is_empty() {
        return Ok(s.to_string());
    }
    let spec = parse_spec(spec)?;
    if spec.sign.is_some() {
        return Err(error(
            "str.format: Sign not allowed in string format specifier",
        ));
    }
    if spec.alternate {
        return Err(error(
            "str.format: Alternate form (#) not allowed in string format specifier",
        ));
    }
    if spec.grouping.is_some() {
        return Err(error("str.format: Cannot specify ',' with 's'."));
    }
    if spec.align == Some('=') {
        return Err(error(
            "str.format: '=' alignment not allowed in string format specifier",
        ));
    }
    if !matches!(spec.ty, None | Some('s')) {
        return Err(error(
            "str.format: Unknown format code for object of type 'str'",
        ));
    }
    let mut s = s;
    if let Some(p) = spec.precision {
        if let Some((cut, _)) = s.char_indices().nth(p) {
            s = &s[..cut];
        }
    }
    let fill = spec.fill.unwrap_or(if spec.zero { '0' } else { ' ' });
    Ok(pad(s, spec.width, fill, spec.align.unwrap_or('<')))
}

fn format_number(value: &Value, spec: &str) -> Result<String, Error> {
    if spec.is_empty() {
        return text(value);
    }
    let parsed = parse_spec(spec)?;
    if spec.contains(['{', '}']) {
        return Err(error("str.format: Invalid format specifier"));
    }
    let integer = value.is_integer();
    let engine = |spec: &str, value: &Value| {
        engine_format(
            FormatStyle::StrFormat,
            &format!("{{:{spec}}}"),
            std::slice::from_ref(value),
        )
        .map_err(|e| {
            error(format!(
                "str.format: {}",
                e.detail().unwrap_or("invalid format")
            ))
        })
    };
    if parsed.align == Some('=') && parsed.ty != Some('%') {
        // minijinja has no `=` alignment: format without the padding, then pad after the sign.
        let mut inner = parsed.sign_alternate_grouping();
        if let Some(p) = parsed.precision {
            inner.push_str(&format!(".{p}"));
        }
        if let Some(ty) = parsed.ty {
            inner.push(ty);
        }
        let body = if inner.is_empty() {
            text(value)?
        } else {
            engine(&inner, value)?
        };
        return Ok(pad_number(&body, &parsed));
    }
    match parsed.ty {
        Some('%') => {
            let f = as_float(value).unwrap_or(f64::NAN) * 100.0;
            let mut inner = parsed.sign_alternate_grouping();
            inner.push_str(&format!(".{}f", parsed.precision.unwrap_or(6)));
            let mut body = engine(&inner, &Value::from(f))?;
            body.push('%');
            Ok(pad_number(&body, &parsed))
        }
        Some('n') => {
            let replaced = format!(
                "{}{}",
                &spec[..spec.len() - 1],
                if integer { 'd' } else { 'g' }
            );
            engine(&replaced, value)
        }
        Some('s') => Err(error(format!(
            "str.format: Unknown format code 's' for object of type '{}'",
            type_name(value)
        ))),
        _ => engine(spec, value),
    }
}

/// Numeric padding: right-aligned by default; `=` (or the `0` flag) pads after the sign.
fn pad_number(body: &str, spec: &Spec) -> String {
    let (fill, align) = match (spec.fill, spec.align, spec.zero) {
        (fill, Some(align), _) => (fill.unwrap_or(' '), align),
        (_, None, true) => ('0', '='),
        (_, None, false) => (' ', '>'),
    };
    if align != '=' {
        return pad(body, spec.width, fill, align);
    }
    let (sign, digits) = match body.chars().next() {
        Some(c @ ('+' | '-' | ' ')) => body.split_at(c.len_utf8()),
        _ => ("", body),
    };
    let width = spec.width.map(|w| w.saturating_sub(sign.chars().count()));
    format!("{sign}{}", pad(digits, width, fill, '>'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str) -> Result<String, String> {
        let mut env = minijinja::Environment::new();
        env.add_function("pymod", py_mod);
        env.render_str(source, ()).map_err(|e| e.to_string())
    }

    #[test]
    fn percent_formats_strings_and_takes_python_modulo_of_numbers() {
        assert_eq!(render("{{ pymod('%s-%d', ('a', 3)) }}").unwrap(), "a-3");
        assert_eq!(render("{{ pymod('%(k)s', {'k': 'v'}) }}").unwrap(), "v");
        assert_eq!(
            render("{{ pymod(-7, 3) }} {{ pymod(7, -3) }}").unwrap(),
            "2 -2"
        );
        assert_eq!(render("{{ pymod(7.5, 2) }}").unwrap(), "1.5");
        assert!(render("{{ pymod('%s %s', ('a',)) }}").is_err());
        assert!(render("{{ pymod('%s', ('a', 'b')) }}").is_err());
        assert!(render("{{ pymod(1, 0) }}").is_err());
    }

    #[test]
    fn a_huge_width_is_refused_before_anything_is_allocated() {
        assert!(render("{{ pymod('%99999999999s', 'x') }}").is_err());
        assert!(render("{{ pymod('%2000000s', 'x') }}").is_err());
    }
}

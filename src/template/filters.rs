//! The platform's template filters: `from_json`, `json_encode`, `tojson`, `base64_encode`,
//! `base64_decode`, and a Jinja2-exact `urlencode`.
//!
//! Errors raised here start with the filter's name and never quote the value, so they are
//! safe to show to callers (see [`super::render::RenderError`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

use super::python::{py_json_dumps, py_str, JsonStyle};

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
];

pub(crate) fn own_error(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, detail.into())
}

/// Registers the filters on `env`.
pub fn register(env: &mut Environment<'static>) {
    env.add_filter("from_json", from_json);
    env.add_filter("json_encode", json_encode);
    env.add_filter("tojson", tojson);
    env.add_filter("base64_encode", base64_encode);
    env.add_filter("base64_decode", base64_decode);
    env.add_filter("urlencode", urlencode);
}

/// Parses JSON text into a value; invalid JSON fails the run.
pub fn from_json(value: &Value) -> Result<Value, Error> {
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
    match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(parsed) => Ok(Value::from(minijinja::value::Serde(parsed))),
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
pub fn json_encode(value: &Value) -> Result<String, Error> {
    py_json_dumps(value, JsonStyle::default()).map_err(|e| {
        own_error(format!(
            "json_encode: {}",
            e.detail().unwrap_or("cannot encode")
        ))
    })
}

/// Jinja2's `tojson`: keys sorted, HTML-sensitive characters escaped, optional `indent`.
/// Returns a plain string (not "safe"), so it is still encoded where a URL needs it.
pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
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
pub fn base64_encode(value: &Value) -> Result<String, Error> {
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
pub fn base64_decode(value: &Value) -> Result<String, Error> {
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
pub fn urlencode(value: &Value) -> Result<Value, Error> {
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

//! Assertions on the contract's answers: the error envelope, timing headers, forms.

use serde_json::Value;

use super::Reply;

/// The error scope of a network failure (refused, reset, timed out, forbidden address, ...).
pub const NETWORK_SCOPE: &str = "Downstream (network/external service)";

/// The error scope of a failure in step `step` (at `index`) of a composite: `scope` with the
/// composite prefix.
pub fn composite_scope(step: &str, index: usize, scope: &str) -> String {
    format!("Composite step '{step}' (index {index}): {scope}")
}

/// Checks that `reply` is the error envelope with `status`, `code` and `scope` (`None`:
/// JSON null), that `success` is false and that `request_id` equals the `X-Request-ID`
/// header. Returns the `errors` object.
#[track_caller]
pub fn assert_envelope(reply: &Reply, status: u16, code: &str, scope: Option<&str>) -> Value {
    assert_eq!(reply.status, status, "unexpected status: {}", reply.text());
    let body = reply.json();
    assert_eq!(body["success"], Value::Bool(false), "{body}");
    let errors = &body["errors"];
    assert_eq!(errors["code"], code, "{body}");
    match scope {
        Some(scope) => assert_eq!(errors["scope"], scope, "{body}"),
        None => assert_eq!(errors["scope"], Value::Null, "{body}"),
    }
    assert!(errors["params"].is_array(), "params must be a list: {body}");
    assert!(errors["detail"].is_string(), "detail must be text: {body}");
    let header = reply
        .header("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-ID header on {body}"));
    assert!(!header.is_empty());
    assert_eq!(body["request_id"], Value::String(header), "{body}");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    errors.clone()
}

/// Whether `s` is 32 lower-case hex digits (a generated request id).
pub fn is_generated_request_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One entry of a `Server-Timing` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingEntry {
    /// Metric name (`step.auth`, `total`, ...).
    pub name: String,
    /// The `dur` value as written.
    pub dur: String,
    /// The `desc` value without its quotes.
    pub desc: String,
}

/// Parses a `Server-Timing` header written as `name;dur=D;desc="X", ...`, failing the
/// test when an entry deviates from that exact shape.
#[track_caller]
pub fn parse_server_timing(header: &str) -> Vec<TimingEntry> {
    header
        .split(", ")
        .map(|entry| {
            let parts: Vec<&str> = entry.split(';').collect();
            assert_eq!(parts.len(), 3, "entry '{entry}' of '{header}'");
            let dur = parts[1]
                .strip_prefix("dur=")
                .unwrap_or_else(|| panic!("no dur= in '{entry}'"));
            let desc = parts[2]
                .strip_prefix("desc=\"")
                .and_then(|d| d.strip_suffix('"'))
                .unwrap_or_else(|| panic!("no desc=\"...\" in '{entry}'"));
            TimingEntry {
                name: parts[0].to_string(),
                dur: dur.to_string(),
                desc: desc.to_string(),
            }
        })
        .collect()
}

/// Checks that `reply` has a `Server-Timing` header whose entries are, in order, the
/// `(name, desc)` pairs of `expected`, each with a `dur` of one decimal. Returns the header
/// and its entries.
#[track_caller]
pub fn assert_server_timing(
    reply: &Reply,
    expected: &[(&str, &str)],
) -> (String, Vec<TimingEntry>) {
    let header = reply
        .header("server-timing")
        .unwrap_or_else(|| panic!("no Server-Timing header: {}", reply.text()));
    let entries = parse_server_timing(&header);
    let shape: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.desc.as_str()))
        .collect();
    assert_eq!(shape, expected, "{header}");
    for e in &entries {
        assert!(is_one_decimal_ms(&e.dur), "dur '{}' in {header}", e.dur);
    }
    (header, entries)
}

/// Whether `s` is `\d+\.\d` (milliseconds with exactly one decimal).
pub fn is_one_decimal_ms(s: &str) -> bool {
    match s.split_once('.') {
        Some((int, frac)) => {
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.len() == 1
                && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The keys of a JSON object, sorted.
#[track_caller]
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// `X-Path-Params` for one key and value (URL-encoded).
pub fn path_params_header(key: &str, value: &str) -> String {
    serde_urlencoded::to_string([(key, value)]).unwrap()
}

/// Form fields of a recorded form-encoded body.
pub fn form_fields(body: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(body).unwrap_or_default()
}

/// The value of form field `name` in a recorded form-encoded body.
pub fn form_field(body: &str, name: &str) -> Option<String> {
    form_fields(body)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// CPU time the calling thread has used so far: `/proc/thread-self/schedstat` (nanoseconds
/// on the CPU), or else user plus system time from `/proc/thread-self/stat` (at 100 ticks a
/// second). Unlike wall time, other threads and processes competing for the cores do not
/// stretch it.
pub fn thread_cpu_time() -> std::time::Duration {
    if let Ok(text) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        if let Some(ns) = text.split_whitespace().next().and_then(|n| n.parse().ok()) {
            return std::time::Duration::from_nanos(ns);
        }
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .expect("/proc/thread-self/stat is readable");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat has the command in parentheses")
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 (utime, stime) of stat(5); `fields` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    std::time::Duration::from_millis(ticks * 10)
}

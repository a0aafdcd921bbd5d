//! Per-step timings and the `Server-Timing` / `X-Connector-Timing` headers (docs/spec.md §6).

use super::cache::CacheStatus;
use crate::error::Code;

use std::fmt::Write;
use std::time::Duration;

/// Where one step spent its time.
#[derive(Debug, Clone, Default)]
pub struct StepTiming {
    /// Step name.
    pub name: String,
    /// Position from 0.
    pub index: usize,
    /// Rendering and preparing the request (including auth).
    pub setup: Duration,
    /// Waiting for the upstream (send and read).
    pub external: Duration,
    /// Rendering `response_body`.
    pub transform: Duration,
    /// Everything.
    pub total: Duration,
    /// Upstream status, when it answered.
    pub status_code: Option<u16>,
    /// How the response cache served the call.
    pub cache: CacheStatus,
    /// Upstream host, for the simple connector's `external` entry.
    pub host: String,
    /// When it started, from the start of the run.
    pub start: Duration,
    /// How it ended.
    pub state: StepState,
    /// Tries of its upstream call (more than 1 after `retry`).
    pub attempts: u32,
    /// Its items' timings, in item order, for a `for_each` step.
    pub items: Option<Vec<ItemTiming>>,
}

/// How a step ended (`state` in `X-Connector-Timing`, docs/spec.md §12).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StepState {
    /// It answered.
    #[default]
    Ok,
    /// Its `when` was false.
    Skipped,
    /// It failed, and so did the run.
    Failed,
    /// It failed with `on_error: "continue"`, and the chain went on.
    Continued,
}

impl StepState {
    /// The state's name in timings and metric labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StepState::Ok => "ok",
            StepState::Skipped => "skipped",
            StepState::Failed => "failed",
            StepState::Continued => "continued",
        }
    }
}

/// One `for_each` item's call.
#[derive(Debug, Clone, Default)]
pub struct ItemTiming {
    /// Position in the list, from 0.
    pub index: usize,
    /// When it started, from the start of the run.
    pub start: Duration,
    /// Its whole duration.
    pub total: Duration,
    /// Upstream status, when it answered.
    pub status_code: Option<u16>,
}

/// A duration printed as milliseconds with one decimal (`120.5`), with integer arithmetic
/// only: this runs for every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ms(pub u64);

impl Ms {
    /// Rounds `d` to tenths of a millisecond.
    pub(crate) fn of(d: Duration) -> Self {
        // A second is a whole number of tenths, so only the nanoseconds are rounded: the
        // same figure as `(as_nanos() + 50_000) / 100_000` without its u128 division.
        Ms(d.as_secs()
            .saturating_mul(10_000)
            .saturating_add(u64::from((d.subsec_nanos() + 50_000) / 100_000)))
    }
}

impl std::fmt::Display for Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// Milliseconds with one decimal, as a number (for logs and tables).
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// The composite connector's `Server-Timing` header value.
pub fn composite_server_timing(steps: &[StepTiming], total: Duration) -> String {
    let mut out = String::with_capacity(64 * (steps.len() + 1));
    for step in steps {
        out.push_str("step.");
        out.push_str(&step.name);
        out.push_str(";dur=");
        push_ms(&mut out, step.total);
        out.push_str(";desc=\"Step: ");
        out.push_str(&step.name);
        // A call the cache served or stored says how (docs/spec.md §10):
        // `desc="Step: x (Cache Hit)"`; one whose answer could not be stored keeps the seed's
        // plain desc.
        if step.cache.involved() {
            out.push_str(" (");
            out.push_str(step.cache.desc());
            out.push(')');
        }
        match (step.state, &step.items) {
            (StepState::Skipped, _) => out.push_str(" (skipped)"),
            (StepState::Continued, _) => out.push_str(" (continued after error)"),
            (_, Some(items)) => {
                out.push_str(" (");
                push_u64(&mut out, items.len() as u64);
                out.push_str(" items)");
            }
            _ => {}
        }
        out.push_str("\", ");
    }
    out.push_str("total;dur=");
    push_ms(&mut out, total);
    out.push_str(";desc=\"Total\"");
    out
}

/// The bytes [`json_str`] escapes: `"`, `\`, control characters and DEL. One look-up a byte
/// instead of four comparisons, for every id and step name of every answer.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == 0x7f || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// Writes `s` as a JSON string (the values here are ids, slugs and host names; quotes,
/// backslashes and control characters are escaped all the same).
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    // Nearly always nothing to escape: copied in one go (pushing char by char cost ~10
    // instructions a character, for every answer).
    if !s.bytes().any(|b| ESCAPED[usize::from(b)]) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // DEL too: these strings become header values (`http::execute::timing_value`).
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Which request a timing header is about: its request id and, when traced, its trace id.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The trace id (32 hex digits), when the request is traced.
    pub trace_id: Option<&'a str>,
}

impl Ids<'_> {
    /// Room for what `open` writes beyond the request id's usual share of a header's
    /// capacity: the trace id's field (a traced header outgrew its buffer and was copied).
    fn len(&self) -> usize {
        self.trace_id.map_or(0, |id| id.len() + 16)
    }

    /// `{"request_id":"…"` and `,"trace_id":"…"` when traced.
    fn open(&self, out: &mut String) {
        out.push_str("{\"request_id\":");
        json_str(out, self.request_id);
        if let Some(trace_id) = self.trace_id {
            // 32 hex digits: nothing to escape.
            out.push_str(",\"trace_id\":\"");
            out.push_str(trace_id);
            out.push('"');
        }
    }
}

/// Appends `n` in decimal: these headers are written for every answer, and `write!` through
/// `core::fmt` costs several times this.
fn push_u64(out: &mut String, mut n: u64) {
    if n < 10 {
        // Most figures here (indexes, tenths, whole milliseconds) are one digit.
        out.push(char::from(b'0' + n as u8));
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Pushed one by one: a few digits cost less so than a UTF-8 check and a copy.
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// Appends `d` as milliseconds with one decimal (as [`Ms`] displays it).
fn push_ms(out: &mut String, d: Duration) {
    let tenths = Ms::of(d).0;
    push_u64(out, tenths / 10);
    out.push('.');
    out.push(char::from(b'0' + (tenths % 10) as u8));
}

/// Appends a status code, or `null`.
fn push_status(out: &mut String, status: Option<u16>) {
    match status {
        Some(code) => push_u64(out, u64::from(code)),
        None => out.push_str("null"),
    }
}

/// The composite connector's `X-Connector-Timing` JSON:
/// `{request_id, total_ms, steps: [{name, index, duration_ms, status_code, cache?, start_ms,
/// state, attempts?, items?}]}`, with `cache` (hit, revalidated, miss) for the calls the cache
/// served or stored, `attempts` after retries and `items` for `for_each` steps.
pub fn composite_connector_timing(ids: Ids<'_>, steps: &[StepTiming], total: Duration) -> String {
    let mut out = String::with_capacity(64 + 110 * steps.len() + ids.len());
    ids.open(&mut out);
    out.push_str(",\"total_ms\":");
    push_ms(&mut out, total);
    out.push_str(",\"steps\":[");
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_str(&mut out, &step.name);
        out.push_str(",\"index\":");
        push_u64(&mut out, step.index as u64);
        out.push_str(",\"duration_ms\":");
        push_ms(&mut out, step.total);
        out.push_str(",\"status_code\":");
        push_status(&mut out, step.status_code);
        if step.cache.involved() {
            out.push_str(",\"cache\":\"");
            out.push_str(step.cache.as_label());
            out.push('"');
        }
        out.push_str(",\"start_ms\":");
        push_ms(&mut out, step.start);
        out.push_str(",\"state\":\"");
        out.push_str(step.state.as_str());
        out.push('"');
        if step.attempts > 1 {
            out.push_str(",\"attempts\":");
            push_u64(&mut out, u64::from(step.attempts));
        }
        if let Some(items) = &step.items {
            out.push_str(",\"items\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"index\":");
                push_u64(&mut out, item.index as u64);
                out.push_str(",\"start_ms\":");
                push_ms(&mut out, item.start);
                out.push_str(",\"duration_ms\":");
                push_ms(&mut out, item.total);
                out.push_str(",\"status_code\":");
                push_status(&mut out, item.status_code);
                out.push('}');
            }
            out.push(']');
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// The simple connector's `Server-Timing` header value.
pub(crate) fn simple_server_timing(step: &StepTiming, total: Duration) -> String {
    let cache = step.cache.desc();
    format!(
        "setup;dur={};desc=\"Setup\", transform;dur={};desc=\"Transform\", cache;dur=0.0;desc=\"{cache}\", external;dur={};desc=\"{}\", total;dur={};desc=\"Total\"",
        Ms::of(step.setup),
        Ms::of(step.transform),
        Ms::of(step.external),
        step.host,
        Ms::of(total)
    )
}

/// The simple connector's `X-Connector-Timing` JSON; `error` names the failure code.
pub(crate) fn simple_connector_timing(
    ids: Ids<'_>,
    step: &StepTiming,
    total: Duration,
    error: Option<Code>,
) -> String {
    let external = Ms::of(step.external);
    let total_ms = Ms::of(total);
    let internal = Ms(total_ms.0.saturating_sub(external.0));
    let mut out = String::with_capacity(320);
    ids.open(&mut out);
    let _ = write!(
        out,
        ",\"total_ms\":{total_ms},\"internal_ms\":{internal},\"external_ms\":{external},\"breakdown\":{{\"setup_ms\":{},\"transform_ms\":{},\"cache_ms\":0.0,\"http_request_ms\":{external}}},\"cache_hit\":{},\"cache\":\"{}\",\"external_host\":",
        Ms::of(step.setup),
        Ms::of(step.transform),
        step.cache == CacheStatus::Hit,
        step.cache.as_label()
    );
    json_str(&mut out, &step.host);
    if let Some(error) = error {
        out.push_str(",\"error\":");
        json_str(&mut out, error.as_str());
        if error == Code::DownstreamTimeout {
            out.push_str(",\"timeout\":true");
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_to_the_tenth_as_the_u128_formula_did() {
        for nanos in [
            0u64,
            49_999,
            50_000,
            99_999,
            149_999,
            150_000,
            999_949_999,
            999_950_000,
            1_000_000_000,
            12_345_678_901,
            86_400_999_999_999,
        ] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(
                Ms::of(d).0,
                ((d.as_nanos() + 50_000) / 100_000) as u64,
                "{nanos}"
            );
        }
        for n in [0u64, 7, 9, 10, 99, 200, 1234, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn json_strings_escape_every_byte_a_header_value_may_not_hold() {
        let mut out = String::new();
        json_str(&mut out, "a\u{7f}b\r\n\"c");
        assert_eq!(out, r#""a\u007fb\u000d\u000a\"c""#);
        assert!(out.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\u{7f}b\r\n\"c"
        );
    }

    #[test]
    fn connector_timing_is_valid_json_with_the_documented_keys() {
        let steps = vec![StepTiming {
            name: "a\"b".into(),
            index: 0,
            total: Duration::from_micros(1_250),
            status_code: Some(200),
            ..Default::default()
        }];
        let doc: serde_json::Value = serde_json::from_str(&composite_connector_timing(
            Ids {
                request_id: "r-1",
                trace_id: None,
            },
            &steps,
            Duration::from_millis(2),
        ))
        .unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"request_id": "r-1", "total_ms": 2.0, "steps": [{"name": "a\"b", "index": 0, "duration_ms": 1.3, "status_code": 200, "start_ms": 0.0, "state": "ok"}]})
        );
        let simple = StepTiming {
            host: "api.example.com".into(),
            external: Duration::from_millis(5),
            ..Default::default()
        };
        let doc: serde_json::Value = serde_json::from_str(&simple_connector_timing(
            Ids {
                request_id: "r-2",
                trace_id: Some("0af7651916cd43dd8448eb211c80319c"),
            },
            &simple,
            Duration::from_millis(7),
            Some(Code::DownstreamTimeout),
        ))
        .unwrap();
        assert_eq!(doc["internal_ms"], serde_json::json!(2.0));
        assert_eq!(doc["breakdown"]["http_request_ms"], serde_json::json!(5.0));
        assert_eq!(doc["timeout"], serde_json::json!(true));
        assert_eq!(doc["external_host"], "api.example.com");
        assert_eq!(doc["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn numbers_are_written_as_core_fmt_writes_them() {
        for n in [0u64, 7, 10, 99, 1_000, 18_446_744_073_709_551_615] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        for micros in [0u64, 49, 50, 999, 1_000, 120_450, 3_600_000_000] {
            let d = Duration::from_micros(micros);
            let mut out = String::new();
            push_ms(&mut out, d);
            assert_eq!(out, Ms::of(d).to_string(), "{micros} µs");
        }
    }

    #[test]
    fn composite_server_timing_matches_the_seed_format() {
        let steps = vec![
            StepTiming {
                name: "auth".into(),
                index: 0,
                total: Duration::from_micros(120_500),
                ..Default::default()
            },
            StepTiming {
                name: "fetch-user".into(),
                index: 1,
                total: Duration::from_micros(85_340),
                ..Default::default()
            },
        ];
        assert_eq!(
            composite_server_timing(&steps, Duration::from_micros(210_090)),
            "step.auth;dur=120.5;desc=\"Step: auth\", step.fetch-user;dur=85.3;desc=\"Step: fetch-user\", total;dur=210.1;desc=\"Total\""
        );
    }
}

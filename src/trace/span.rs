//! One span as it is recorded (docs/spec.md §13): its ids, which its children and upstreams
//! see, and, when it is sampled, its OTLP `Span` message, written field by field as the span
//! learns them (protobuf fields may come in any order: ids, name, kind, start time and the
//! first attributes when it starts, the rest when it ends) and handed to the exporter as it
//! ends.
//!
//! Why not the SDK's `SdkTracer` and spans: each of its spans is built from a `SpanBuilder`
//! (an allocation for the name, a `Vec` of `KeyValue`s), kept as `SpanData` behind a mutex in
//! a context entry, and converted field by field when it ends; callgrind counted ~4,500
//! instructions per span there before a byte was encoded. Here a span is one allocation (its
//! ids and the buffer its message is written into) and ends with one copy into the batch.
//! The SDK still decides sampling (`OTEL_TRACES_SAMPLER`) and gives the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`): see [`super::Tracing::start`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::lock::Lock;
use super::otlp::{self, Attr, Exporter};

/// What children and upstreams see of a span: its trace, its own id, whether the trace is
/// sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    /// The trace id (never all zeros).
    pub trace_id: [u8; 16],
    /// The span id (never all zeros).
    pub span_id: [u8; 8],
    /// The W3C `sampled` flag: the trace is recorded and exported.
    pub sampled: bool,
}

impl SpanIds {
    /// A new span id in the same trace (a child's ids).
    pub(crate) fn child(&self) -> SpanIds {
        SpanIds {
            span_id: random_span_id(),
            ..*self
        }
    }
}

/// A new random trace id (W3C: random, never all zeros). fastrand's per-thread generator:
/// ids must be unique, not secret, and this runs for every request.
pub(crate) fn random_trace_id() -> [u8; 16] {
    let id = fastrand::u128(..);
    (if id == 0 { 1 } else { id }).to_be_bytes()
}

/// A new random span id, never all zeros.
pub(crate) fn random_span_id() -> [u8; 8] {
    let id = fastrand::u64(..);
    (if id == 0 { 1 } else { id }).to_be_bytes()
}

/// The kinds of span made here (OTLP's `SpanKind` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A step of a run.
    Internal = 1,
    /// An execute request.
    Server = 2,
    /// An upstream call.
    Client = 3,
}

/// Where a new span sits: its parent's span id (none for a root) and whether that parent is
/// the caller's (remote).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parentage {
    /// The parent span's id, `None` for the first span of a trace.
    pub span_id: Option<[u8; 8]>,
    /// The parent came from the caller's `traceparent`.
    pub remote: bool,
}

/// A started span, shared by whoever needs its ids (its children, the timing headers); it
/// ends at [`Context::end`], or, ended by nobody, when its last clone is dropped (as the
/// SDK's spans do: a cancelled run's spans still arrive).
#[derive(Debug, Clone)]
pub struct Context(Arc<Open>);

#[derive(Debug)]
struct Open {
    ids: SpanIds,
    /// The caller's W3C `tracestate`, carried by every span of its trace and sent upstream.
    trace_state: Option<Arc<str>>,
    /// The message being written; `None` when the trace is not sampled.
    record: Option<Lock<Record>>,
}

#[derive(Debug)]
struct Record {
    /// The `Span` message's fields so far.
    out: Vec<u8>,
    exporter: &'static Exporter,
    /// Bits 8 and 9 of OTLP's `flags`: whether the parent is known to be remote, and is.
    remote_flags: u32,
    ended: bool,
}

/// What a new span starts with.
pub(crate) struct Start<'a> {
    /// Its ids (a child's: [`SpanIds::child`] of its parent).
    pub ids: SpanIds,
    pub parent: Parentage,
    pub trace_state: Option<Arc<str>>,
    pub kind: Kind,
    /// Its name, as parts written one after the other (no string is built for it).
    pub name: &'a [&'a str],
    /// The attributes it starts with, encoded as the `Span` message's field 9 (see
    /// `super::kept`).
    pub attributes: &'a [u8],
}

impl Context {
    /// Starts a span; `exporter` is where it goes when the trace is sampled. Inlined (as is
    /// what it calls), so that each caller's attribute keys are constants there.
    #[inline(always)]
    pub(crate) fn start(start: Start<'_>, exporter: &'static Exporter) -> Context {
        let record = start.ids.sampled.then(|| {
            Lock::new(Record {
                out: begin(&start),
                exporter,
                remote_flags: 0x100 | if start.parent.remote { 0x200 } else { 0 },
                ended: false,
            })
        });
        Context(Arc::new(Open {
            ids: start.ids,
            trace_state: start.trace_state,
            record,
        }))
    }

    /// Its ids.
    pub(crate) fn ids(&self) -> &SpanIds {
        &self.0.ids
    }

    /// The caller's W3C `tracestate`, if it sent one.
    pub(crate) fn trace_state(&self) -> Option<&Arc<str>> {
        self.0.trace_state.as_ref()
    }

    /// Adds an attribute (nothing once the span has ended, or when it is not sampled).
    #[inline(always)]
    pub(crate) fn attribute(&self, key: &str, value: Attr<'_>) {
        if let Some(record) = &self.0.record {
            let mut record = record.lock();
            if !record.ended {
                otlp::key_value(&mut record.out, 9, key, value);
            }
        }
    }

    /// Ends the span (the first call only): `status` is the HTTP status when one came back,
    /// `error` the failure's type (a code, never a message with data), which makes the
    /// span's status ERROR.
    pub(crate) fn end(&self, status: Option<u16>, error: Option<&str>) {
        if let Some(record) = &self.0.record {
            finish(&mut record.lock(), status, error);
        }
    }

    /// The trace id as 32 lower-case hex digits.
    pub(crate) fn trace_id_hex(&self) -> TraceIdHex {
        TraceIdHex::new(&self.0.ids.trace_id)
    }

    /// The W3C `traceparent` of this span: `00-<trace id>-<span id>-<flags>`.
    pub(crate) fn traceparent(&self) -> [u8; 55] {
        let ids = &self.0.ids;
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex(&ids.trace_id, &mut value[3..35]);
        hex(&ids.span_id, &mut value[36..52]);
        hex(&[u8::from(ids.sampled)], &mut value[53..55]);
        value
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(record) = &mut self.record {
            finish(record.get_mut(), None, None);
        }
    }
}

/// The fields a span's message starts with: ids, parent, name, kind, start time and the
/// attributes it starts with.
#[inline(always)]
fn begin(start: &Start<'_>) -> Vec<u8> {
    let mut out = span_buffer();
    // Ids (fields 1, 2 and 4) as one copy.
    let mut ids = [0u8; 38];
    ids[..2].copy_from_slice(&[0x0a, 16]);
    ids[2..18].copy_from_slice(&start.ids.trace_id);
    ids[18..20].copy_from_slice(&[0x12, 8]);
    ids[20..28].copy_from_slice(&start.ids.span_id);
    let ids_len = match start.parent.span_id {
        Some(parent) => {
            ids[28..30].copy_from_slice(&[0x22, 8]);
            ids[30..].copy_from_slice(&parent);
            38
        }
        None => 28,
    };
    out.extend_from_slice(&ids[..ids_len]);
    if let Some(state) = &start.trace_state {
        otlp::string(&mut out, 3, state);
    }
    otlp::tag(&mut out, 5, 2);
    let name_len: usize = start.name.iter().map(|p| p.len()).sum();
    otlp::varint(&mut out, name_len as u64);
    for part in start.name {
        out.extend_from_slice(part.as_bytes());
    }
    // Kind (field 6) and start time (field 7, fixed64).
    let mut kind_and_start = [0u8; 11];
    kind_and_start[..3].copy_from_slice(&[0x30, start.kind as u8, 0x39]);
    kind_and_start[3..].copy_from_slice(&unix_nanos().to_le_bytes());
    out.extend_from_slice(&kind_and_start);
    out.extend_from_slice(start.attributes);
    out
}

/// The fields a span's message ends with: the status code attribute, the error (attribute
/// and status), the end time, and the flags (sampled: only sampled spans are written; and
/// the bits saying whether the parent is remote).
fn close(out: &mut Vec<u8>, status: Option<u16>, error: Option<&str>, remote_flags: u32) {
    if let Some(status) = status {
        otlp::key_value(
            out,
            9,
            "http.response.status_code",
            Attr::Int(status.into()),
        );
    }
    if let Some(error) = error {
        otlp::key_value(out, 9, "error.type", Attr::Str(error));
        // Status: message 2, code 3 (2: ERROR).
        otlp::nested(out, 15, |out| {
            otlp::string(out, 2, error);
            otlp::uint(out, 3, 2);
        });
    }
    // End time (field 8, fixed64) and flags (field 16, fixed32) as one copy.
    let mut end_and_flags = [0u8; 15];
    end_and_flags[0] = 0x41;
    end_and_flags[1..9].copy_from_slice(&unix_nanos().to_le_bytes());
    end_and_flags[9..11].copy_from_slice(&[0x85, 0x01]);
    end_and_flags[11..].copy_from_slice(&(1 | remote_flags).to_le_bytes());
    out.extend_from_slice(&end_and_flags);
}

/// Closes a span's message and hands it to the exporter, once.
fn finish(record: &mut Record, status: Option<u16>, error: Option<&str>) {
    if record.ended {
        return;
    }
    record.ended = true;
    close(&mut record.out, status, error, record.remote_flags);
    record.exporter.submit(&record.out);
    give_back(std::mem::take(&mut record.out));
}

/// A span's message buffer, and how many ended spans' buffers each thread keeps for the next
/// spans (a run has up to a few open at once; each is ~512 bytes).
const SPAN_BUFFER_BYTES: usize = 512;
const SPARE_BUFFERS: usize = 8;

thread_local! {
    /// Buffers of ended spans, reused by the next spans on this thread: a malloc and a free
    /// of 512 bytes per span cost more than taking one from here.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer for a new span's message: a spare one when this thread has one.
fn span_buffer() -> Vec<u8> {
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        // A server span with a long path is ~400 bytes: room for it without growing.
        .unwrap_or_else(|| Vec::with_capacity(SPAN_BUFFER_BYTES))
}

/// Keeps an ended span's buffer for the next span on this thread (unless it grew past the
/// usual size or enough are kept already).
fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() != SPAN_BUFFER_BYTES {
        return;
    }
    buffer.clear();
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_BUFFERS {
            spare.push(buffer);
        }
    });
}

/// Now, in nanoseconds since the Unix epoch: `clock_gettime` itself (`SystemTime::now()`
/// and `duration_since` cost three times as much, and a span reads the clock twice).
fn unix_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_REALTIME always exists.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
        return SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// A trace id as 32 lower-case hex digits (its form in headers, timing and log lines), on
/// the stack: it is written for every traced run's timing header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceIdHex([u8; 32]);

impl TraceIdHex {
    /// The digits of `id`.
    pub(crate) fn new(id: &[u8; 16]) -> TraceIdHex {
        let mut out = [0u8; 32];
        hex(id, &mut out);
        TraceIdHex(out)
    }

    /// The digits as text.
    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: `new` fills every byte with a hex digit from `HEX_PAIRS`: ASCII, so UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl std::fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two lower-case hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
        i += 1;
    }
    pairs
};

/// `bytes` as lower-case hex into `out` (twice as long): what `{:032x}` gives, without
/// the formatting machinery (this runs for every traced call), a pair of digits per byte.
fn hex(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;

    /// Span `i` of a test batch: a root for 0, else a child of span 1 (remote for odd `i`),
    /// with a long attribute and an error on odd ones.
    fn message(i: u64, long: &str) -> Vec<u8> {
        let n = i.to_string();
        let mut attributes = Vec::new();
        for (key, value) in [
            ("long", Attr::Str(long)),
            ("n", Attr::Int(i as i64)),
            ("neg", Attr::Int(-(i as i64) - 1)),
            ("empty", Attr::Str("")),
        ] {
            otlp::key_value(&mut attributes, 9, key, value);
        }
        let start = Start {
            ids: SpanIds {
                trace_id: (u128::from(i) + 1).to_be_bytes(),
                span_id: (i + 1).to_be_bytes(),
                sampled: true,
            },
            parent: Parentage {
                span_id: (i > 0).then(|| 1u64.to_be_bytes()),
                remote: i % 2 == 1,
            },
            trace_state: (i == 3).then(|| Arc::from("rojo=00f067aa0ba902b7")),
            kind: Kind::Client,
            name: &["span ", &n],
            attributes: &attributes,
        };
        let mut out = begin(&start);
        let error = (i % 2 == 1).then_some("timeout");
        close(
            &mut out,
            Some(200 + i as u16),
            error,
            0x100 | if i % 2 == 1 { 0x200 } else { 0 },
        );
        out
    }

    #[test]
    fn spans_decode_as_the_otlp_schema_whatever_their_lengths() {
        // Lengths that need one, two and three varint bytes.
        for long in ["x".repeat(10), "y".repeat(300), "z".repeat(70_000)] {
            let spans: Vec<Vec<u8>> = (0..40).map(|i| message(i, &long)).collect();
            let mut resource = Vec::new();
            otlp::key_value(
                &mut resource,
                1,
                "service.name",
                Attr::Str("connector-runtime"),
            );
            let body = otlp::request_of(&resource, "", &spans);
            let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            let rs = &decoded.resource_spans[0];
            let service = &rs.resource.as_ref().unwrap().attributes[0];
            assert_eq!(service.key, "service.name");
            let scope = &rs.scope_spans[0];
            assert_eq!(scope.scope.as_ref().unwrap().name, "connector-runtime");
            assert_eq!(scope.spans.len(), 40);
            for (i, s) in scope.spans.iter().enumerate() {
                assert_eq!(s.name, format!("span {i}"));
                assert_eq!(s.span_id, (i as u64 + 1).to_be_bytes());
                assert_eq!(s.trace_id, (i as u128 + 1).to_be_bytes());
                assert_eq!(s.parent_span_id.is_empty(), i == 0);
                assert_eq!(s.kind, 3);
                assert!(s.start_time_unix_nano > 0);
                assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
                let remote = if i % 2 == 1 { 0x200 } else { 0 };
                assert_eq!(s.flags, 0x101 | remote);
                let expected_state = if i == 3 { "rojo=00f067aa0ba902b7" } else { "" };
                assert_eq!(s.trace_state, expected_state);
                let value = |k: &str| {
                    s.attributes
                        .iter()
                        .find(|a| a.key == k)
                        .and_then(|a| a.value.clone())
                        .and_then(|v| v.value)
                };
                assert_eq!(value("long"), Some(Any::StringValue(long.clone())));
                assert_eq!(value("n"), Some(Any::IntValue(i as i64)));
                assert_eq!(value("neg"), Some(Any::IntValue(-(i as i64) - 1)));
                assert_eq!(value("empty"), Some(Any::StringValue(String::new())));
                assert_eq!(
                    value("http.response.status_code"),
                    Some(Any::IntValue(200 + i as i64))
                );
                let status = s.status.clone().unwrap_or_default();
                if i % 2 == 1 {
                    assert_eq!((status.code, status.message.as_str()), (2, "timeout"));
                    assert_eq!(
                        value("error.type"),
                        Some(Any::StringValue("timeout".into()))
                    );
                } else {
                    assert_eq!(status.code, 0);
                    assert_eq!(value("error.type"), None);
                }
            }
        }
    }

    #[test]
    fn the_clock_reads_as_the_system_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let now = unix_nanos();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(before <= now && now <= after, "{before} {now} {after}");
    }

    #[test]
    fn ids_are_never_zero_and_children_keep_the_trace() {
        let ids = SpanIds {
            trace_id: random_trace_id(),
            span_id: random_span_id(),
            sampled: false,
        };
        assert_ne!(ids.trace_id, [0; 16]);
        let child = ids.child();
        assert_eq!((child.trace_id, child.sampled), (ids.trace_id, false));
        assert_ne!(child.span_id, ids.span_id);
        assert_ne!(child.span_id, [0; 8]);
    }
}

//! The OTLP/HTTP span exporter (docs/spec.md §13): a `SpanProcessor` that encodes each span
//! into OTLP protobuf when it ends, on the thread that ended it, and drops it; a thread of its
//! own wraps the encoded spans of a batch in an `ExportTraceServiceRequest` and POSTs it
//! ([`super::http`]). The `OTEL_BSP_*` variables mean what they mean for the SDK's batch
//! processor.
//!
//! Why not the SDK's `BatchSpanProcessor` and opentelemetry-otlp's exporter: the batch
//! processor moves every `SpanData` through a channel into a `Vec` and hands the batch to the
//! exporter, which (opentelemetry-otlp) built the generated proto structs (an allocation per
//! id, name and attribute, the spans regrouped through a map) before prost computed every
//! nested length twice. Callgrind counted 48,000 instructions per two-step run (five spans)
//! there at 100% sampling. The wire format of these dozen messages is small and stable, so it
//! is written here in one pass; the tests decode it with opentelemetry-proto, the generated
//! code of the same schema.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanKind, Status};
use opentelemetry::{Array, Context, InstrumentationScope, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

/// Default time limit of one export (the OpenTelemetry default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The batch settings of the standard variables (the SDK's defaults otherwise).
#[derive(Debug, Clone, Copy)]
struct Batching {
    /// `OTEL_BSP_SCHEDULE_DELAY`: the longest a span waits before it is sent.
    delay: Duration,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans held at most; past it new ones are dropped.
    queue: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per request at most.
    batch: usize,
}

impl Batching {
    fn from_env() -> Self {
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let delay = Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY").unwrap_or(5_000));
        let queue = number("OTEL_BSP_MAX_QUEUE_SIZE")
            .filter(|&n| n > 0)
            .unwrap_or(2_048) as usize;
        let batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
            .filter(|&n| n > 0)
            .unwrap_or(512) as usize;
        Batching {
            delay,
            queue,
            batch: batch.min(queue),
        }
    }
}

/// Encoded spans of one instrumentation scope, sent as one request.
#[derive(Debug)]
struct Chunk {
    scope: InstrumentationScope,
    /// `Span` messages, each as field 2 of `ScopeSpans`.
    spans: Vec<u8>,
    count: usize,
}

/// What the workers hand the export thread.
#[derive(Debug, Default)]
struct Pending {
    /// The chunk spans are being added to.
    open: Option<Chunk>,
    /// Full chunks (or the open one, once the delay passed), oldest first.
    ready: VecDeque<Chunk>,
    /// Spans in `open` and `ready`.
    queued: usize,
    /// Bytes of the last chunk sealed: the next is allocated that large, so it is not
    /// grown (and copied) a few times on its way to a full batch.
    last_chunk: usize,
    /// Spans dropped because the queue was full (the collector is slow or down).
    dropped: u64,
    /// Flushes asked for and done (a flush waits until `flushed` reaches its number).
    flush_asked: u64,
    flushed: u64,
    stop: bool,
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the export thread: a chunk is full, a flush or the stop was asked for.
    wake: Condvar,
    /// Wakes those waiting for a flush or the stop.
    done: Condvar,
    /// The encoded `Resource` message (its fields) and schema URL, set by the provider.
    resource: Mutex<(Vec<u8>, String)>,
    batching: Batching,
    timeout: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    /// Where a worker encodes a span before it takes the lock (the lock is held for a copy).
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Encodes sampled spans as they end and exports them in batches to one OTLP/HTTP endpoint.
#[derive(Debug)]
pub(crate) struct EncodingProcessor {
    shared: Arc<Shared>,
}

impl EncodingProcessor {
    /// A processor exporting to `url` (the full `/v1/traces` URL), with the headers and time
    /// limit of the standard variables (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `..._TIMEOUT`
    /// in ms) and the batching of `OTEL_BSP_*`; its export thread starts here.
    pub(crate) fn new(url: String) -> Result<Self, String> {
        let var = |name: &str| {
            std::env::var(format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
                .or_else(|_| std::env::var(format!("OTEL_EXPORTER_OTLP_{name}")))
                .ok()
                .filter(|v| !v.trim().is_empty())
        };
        let timeout = match var("TIMEOUT") {
            Some(ms) => Duration::from_millis(ms.trim().parse().map_err(|_| {
                format!("OTEL_EXPORTER_OTLP_TIMEOUT: {ms:?} is not a number of milliseconds")
            })?),
            None => DEFAULT_TIMEOUT,
        };
        let mut headers = Vec::new();
        for pair in var("HEADERS").unwrap_or_default().split(',') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
            let name = name.trim();
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_HEADERS: {name:?} is not a header name"
                ));
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_HEADERS: the value of {name} is not a header value"
                ));
            }
            headers.push((name.to_string(), value.into_owned()));
        }
        let mut poster =
            super::http::Poster::new(&url, &headers, "application/x-protobuf", timeout)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
            resource: Mutex::new((Vec::new(), String::new())),
            batching: Batching::from_env(),
            timeout,
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_loop(&thread, &mut poster))
            .map_err(|e| format!("the export thread could not start: {e}"))?;
        Ok(EncodingProcessor { shared })
    }

    /// Asks the thread for a flush (or the stop) and waits up to `timeout` for it.
    fn wait_for(&self, stop: bool, timeout: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + timeout;
        let mut pending = self.shared.lock();
        if pending.stopped {
            return if stop {
                Err(OTelSdkError::AlreadyShutdown)
            } else {
                Ok(())
            };
        }
        pending.flush_asked += 1;
        let asked = pending.flush_asked;
        pending.stop |= stop;
        self.shared.wake.notify_one();
        loop {
            if pending.stopped || (!stop && pending.flushed >= asked) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OTelSdkError::Timeout(timeout));
            }
            pending = self
                .shared
                .done
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl SpanProcessor for EncodingProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            nested(scratch, 2, |out| encode_span(out, &span));
            let batching = self.shared.batching;
            let mut pending = self.shared.lock();
            if pending.stopped || pending.queued >= batching.queue {
                pending.dropped += 1;
                return;
            }
            let same_scope = pending
                .open
                .as_ref()
                .is_some_and(|open| open.scope == span.instrumentation_scope);
            if !same_scope {
                if let Some(open) = pending.open.take() {
                    pending.last_chunk = open.spans.len();
                    pending.ready.push_back(open);
                }
                let capacity = (pending.last_chunk + pending.last_chunk / 8).max(4096);
                pending.open = Some(Chunk {
                    scope: span.instrumentation_scope.clone(),
                    spans: Vec::with_capacity(capacity),
                    count: 0,
                });
            }
            pending.queued += 1;
            let open = pending.open.as_mut().expect("opened above");
            open.spans.extend_from_slice(scratch);
            open.count += 1;
            if open.count >= batching.batch {
                let full = pending.open.take().expect("opened above");
                pending.last_chunk = full.spans.len();
                pending.ready.push_back(full);
                // The thread is woken for a full batch only, never per span.
                self.shared.wake.notify_one();
            }
        });
        // `span` is dropped here, outside the lock.
    }

    fn force_flush(&self) -> OTelSdkResult {
        let limit = self.shared.timeout + self.shared.batching.delay;
        self.wait_for(false, limit)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.wait_for(true, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        let mut out = Vec::new();
        for (key, value) in resource.iter() {
            attribute(&mut out, 1, key.as_str(), value);
        }
        let schema = resource.schema_url().unwrap_or_default().to_string();
        *self
            .shared
            .resource
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (out, schema);
    }
}

/// The export thread: every `OTEL_BSP_SCHEDULE_DELAY` (sooner when a batch is full, a flush
/// or the stop is asked for) it sends what is ready, one request per chunk. A failed export
/// loses its batch, never a run.
fn export_loop(shared: &Shared, poster: &mut super::http::Poster) {
    let delay = shared.batching.delay;
    let mut due = Instant::now() + delay;
    let mut pending = shared.lock();
    loop {
        let now = Instant::now();
        let flush = pending.flush_asked > pending.flushed || pending.stop;
        if now < due && pending.ready.is_empty() && !flush {
            pending = shared
                .wake
                .wait_timeout(pending, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        if now >= due || flush {
            if let Some(open) = pending.open.take() {
                pending.last_chunk = open.spans.len();
                pending.ready.push_back(open);
            }
            due = now + delay;
        }
        let chunks = std::mem::take(&mut pending.ready);
        let asked = pending.flush_asked;
        let stop = pending.stop;
        drop(pending);
        for chunk in chunks {
            let body = {
                let resource = shared.resource.lock().unwrap_or_else(|e| e.into_inner());
                encode_chunk(&resource.0, &resource.1, &chunk)
            };
            let sent = chunk.count;
            shared.lock().queued -= sent;
            match poster.post(&body) {
                Ok(status) if (200..300).contains(&status) => {}
                Ok(status) => tracing::debug!(status, spans = sent, "OTLP export refused"),
                Err(error) => tracing::debug!(%error, spans = sent, "OTLP export failed"),
            }
        }
        pending = shared.lock();
        if flush {
            pending.flushed = pending.flushed.max(asked);
            shared.done.notify_all();
        }
        if stop {
            pending.stopped = true;
            shared.done.notify_all();
            return;
        }
    }
}

/// `ExportTraceServiceRequest` of one chunk's encoded spans: one `ResourceSpans` with one
/// `ScopeSpans`.
fn encode_chunk(resource: &[u8], resource_schema: &str, chunk: &Chunk) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + chunk.spans.len());
    nested(&mut out, 1, |out| {
        bytes(out, 1, resource);
        nested(out, 2, |out| {
            encode_scope(out, &chunk.scope);
            out.extend_from_slice(&chunk.spans);
            string(out, 3, chunk.scope.schema_url().unwrap_or_default());
        });
        string(out, 3, resource_schema);
    });
    out
}

fn encode_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    nested(out, 1, |out| {
        string(out, 1, scope.name());
        string(out, 2, scope.version().unwrap_or_default());
        for kv in scope.attributes() {
            attribute(out, 3, kv.key.as_str(), &kv.value);
        }
    });
}

/// `ExportTraceServiceRequest` of `spans`: one `ResourceSpans`, one `ScopeSpans` per
/// instrumentation scope (in the order they first appear). The tests' reference: what the
/// processor sends is this, a chunk at a time.
#[cfg(test)]
fn encode_request(resource: &[u8], resource_schema: &str, spans: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + spans.len() * 256);
    nested(&mut out, 1, |out| {
        bytes(out, 1, resource);
        let mut scopes: Vec<&opentelemetry::InstrumentationScope> = Vec::new();
        for span in spans {
            if !scopes.contains(&&span.instrumentation_scope) {
                scopes.push(&span.instrumentation_scope);
            }
        }
        for scope in scopes {
            nested(out, 2, |out| {
                encode_scope(out, scope);
                for span in spans.iter().filter(|s| &s.instrumentation_scope == scope) {
                    nested(out, 2, |out| encode_span(out, span));
                }
                string(out, 3, scope.schema_url().unwrap_or_default());
            });
        }
        string(out, 3, resource_schema);
    });
    out
}

fn encode_span(out: &mut Vec<u8>, span: &SpanData) {
    let cx = &span.span_context;
    bytes(out, 1, &cx.trace_id().to_bytes());
    bytes(out, 2, &cx.span_id().to_bytes());
    trace_state(out, 3, cx);
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    uint(out, 6, span_kind(&span.span_kind));
    fixed64(out, 7, unix_nanos(span.start_time));
    fixed64(out, 8, unix_nanos(span.end_time));
    for kv in &span.attributes {
        attribute(out, 9, kv.key.as_str(), &kv.value);
    }
    uint(out, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        nested(out, 11, |out| {
            fixed64(out, 1, unix_nanos(event.timestamp));
            string(out, 2, &event.name);
            for kv in &event.attributes {
                attribute(out, 3, kv.key.as_str(), &kv.value);
            }
            uint(out, 4, u64::from(event.dropped_attributes_count));
        });
    }
    uint(out, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        nested(out, 13, |out| {
            let cx = &link.span_context;
            bytes(out, 1, &cx.trace_id().to_bytes());
            bytes(out, 2, &cx.span_id().to_bytes());
            trace_state(out, 3, cx);
            for kv in &link.attributes {
                attribute(out, 4, kv.key.as_str(), &kv.value);
            }
            uint(out, 5, u64::from(link.dropped_attributes_count));
            fixed32(out, 6, flags(cx, cx.is_remote()));
        });
    }
    uint(out, 14, u64::from(span.links.dropped_count));
    match &span.status {
        Status::Unset => {}
        Status::Ok => nested(out, 15, |out| uint(out, 3, 1)),
        Status::Error { description } => nested(out, 15, |out| {
            string(out, 2, description);
            uint(out, 3, 2);
        }),
    }
    fixed32(out, 16, flags(cx, span.parent_span_is_remote));
}

/// The span's W3C flags, and whether its parent is remote (bits 8 and 9 of OTLP's `flags`).
fn flags(cx: &SpanContext, remote: bool) -> u32 {
    u32::from(cx.trace_flags().to_u8()) | 0x100 | if remote { 0x200 } else { 0 }
}

fn trace_state(out: &mut Vec<u8>, field: u32, cx: &SpanContext) {
    let state = cx.trace_state().header();
    string(out, field, &state);
}

fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A `KeyValue` message as field `field`. Scalars' lengths are known before they are
/// written, so they go out in one pass; arrays go through [`nested`].
fn attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    if short_attribute(out, field, key, value) {
        return;
    }
    let any = match value {
        Value::String(s) => Some(1 + varint_len(s.as_str().len() as u64) + s.as_str().len()),
        Value::Bool(_) => Some(2),
        Value::I64(i) => Some(1 + varint_len(*i as u64)),
        Value::F64(_) => Some(9),
        _ => None,
    };
    let Some(any) = any else {
        nested(out, field, |out| {
            string(out, 1, key);
            nested(out, 2, |out| any_value(out, value));
        });
        return;
    };
    let key_len = if key.is_empty() {
        0
    } else {
        1 + varint_len(key.len() as u64) + key.len()
    };
    tag(out, field, 2);
    varint(out, (key_len + 1 + varint_len(any as u64) + any) as u64);
    string(out, 1, key);
    tag(out, 2, 2);
    varint(out, any as u64);
    any_value(out, value);
}

/// [`attribute`] for what nearly every span attribute is: a one-byte field number, a key
/// and a string or integer value short enough that every length is one byte. Written with
/// four copies and no length computed twice (a quarter of the instructions of the general
/// path, and a span has half a dozen attributes). `false`: not such an attribute.
fn short_attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) -> bool {
    if field > 15 || key.is_empty() || key.len() > 100 {
        return false;
    }
    let kv_tag = (field << 3 | 2) as u8;
    let key_len = key.len() as u8;
    match value {
        Value::String(s) => {
            let s = s.as_str();
            // KeyValue: key (2 + k) + value (2 + AnyValue (2 + v)) must fit in 127.
            let total = 2 + key.len() + 4 + s.len();
            if total > 127 {
                return false;
            }
            out.reserve(2 + total);
            out.extend_from_slice(&[kv_tag, total as u8, 0x0a, key_len]);
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&[0x12, (2 + s.len()) as u8, 0x0a, s.len() as u8]);
            out.extend_from_slice(s.as_bytes());
            true
        }
        // Ports and status codes take two bytes as varints: up to four (2^28) here.
        Value::I64(i) if (0..1 << 28).contains(i) => {
            let len = varint_len(*i as u64);
            let total = 2 + key.len() + 3 + len;
            out.reserve(2 + total);
            out.extend_from_slice(&[kv_tag, total as u8, 0x0a, key_len]);
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&[0x12, (1 + len) as u8, 0x18]);
            varint(out, *i as u64);
            true
        }
        _ => false,
    }
}

/// How many bytes `v` takes as a varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// An `AnyValue`'s fields: string 1, bool 2, int 3, double 4, array 5.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => force_string(out, 1, s.as_str()),
        Value::Bool(b) => {
            tag(out, 2, 0);
            varint(out, u64::from(*b));
        }
        Value::I64(i) => {
            tag(out, 3, 0);
            varint(out, *i as u64);
        }
        Value::F64(f) => {
            tag(out, 4, 1);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Array(array) => nested(out, 5, |out| match array {
            Array::Bool(v) => v.iter().for_each(|b| array_item(out, &Value::Bool(*b))),
            Array::I64(v) => v.iter().for_each(|i| array_item(out, &Value::I64(*i))),
            Array::F64(v) => v.iter().for_each(|f| array_item(out, &Value::F64(*f))),
            Array::String(v) => v
                .iter()
                .for_each(|s| nested(out, 1, |out| force_string(out, 1, s.as_str()))),
            other => array_item(out, &Value::String(other.to_string().into())),
        }),
        other => force_string(out, 1, &other.to_string()),
    }
}

fn array_item(out: &mut Vec<u8>, value: &Value) {
    nested(out, 1, |out| any_value(out, value));
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field written by `body`: its length is patched in afterwards (the body
/// is moved back over the space left for a longer length), so nothing is encoded twice.
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, 2);
    const ROOM: usize = 5;
    let start = out.len();
    out.extend_from_slice(&[0; ROOM]);
    body(out);
    let mut len = out.len() - start - ROOM;
    let mut prefix = [0u8; ROOM];
    let mut used = 0;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            prefix[used] = byte;
            used += 1;
            break;
        }
        prefix[used] = byte | 0x80;
        used += 1;
    }
    out[start..start + used].copy_from_slice(&prefix[..used]);
    if used < ROOM {
        out.copy_within(start + ROOM.., start + used);
        out.truncate(out.len() - (ROOM - used));
    }
}

fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    tag(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// A string field, left out when empty (proto3's default).
fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

/// A string field written even when empty (a oneof member: empty is a value).
fn force_string(out: &mut Vec<u8>, field: u32, s: &str) {
    tag(out, field, 2);
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, 0);
        varint(out, v);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    tag(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;

    fn span(i: u64, long: &str) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(u128::from(i) + 1),
                SpanId::from(i + 1),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: if i == 0 {
                SpanId::INVALID
            } else {
                SpanId::from(1)
            },
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: format!("span {i}").into(),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_000 + i),
            end_time: UNIX_EPOCH + Duration::from_nanos(2_000 + i),
            attributes: vec![
                KeyValue::new("long", long.to_string()),
                KeyValue::new("n", i as i64),
                KeyValue::new("ok", true),
                KeyValue::new("neg", -(i as i64) - 1),
                KeyValue::new("ratio", 0.5),
                KeyValue::new("empty", ""),
            ],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: if i % 2 == 0 {
                Status::Unset
            } else {
                Status::error("timeout")
            },
            instrumentation_scope: InstrumentationScope::builder("connector-runtime").build(),
        }
    }

    #[test]
    fn short_attributes_encode_as_the_general_path_does() {
        let long = "v".repeat(200);
        let values = [
            Value::from("GET"),
            Value::from(""),
            Value::from(long.clone()),
            Value::from("x".repeat(100)),
            Value::I64(0),
            Value::I64(127),
            Value::I64(128),
            Value::I64(18_081),
            Value::I64((1 << 28) - 1),
            Value::I64(1 << 28),
            Value::I64(-1),
            Value::Bool(true),
        ];
        for key in ["k", "http.request.method", ""] {
            for value in &values {
                let mut fast = Vec::new();
                attribute(&mut fast, 9, key, value);
                // The general path alone, as a reference.
                let mut reference = Vec::new();
                nested(&mut reference, 9, |out| {
                    string(out, 1, key);
                    nested(out, 2, |out| any_value(out, value));
                });
                assert_eq!(fast, reference, "{key:?} = {value:?}");
            }
        }
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }

    #[test]
    fn batches_decode_as_the_otlp_schema_whatever_their_lengths() {
        // Lengths that need one, two and three varint bytes.
        for long in ["x".repeat(10), "y".repeat(300), "z".repeat(70_000)] {
            let spans: Vec<SpanData> = (0..40).map(|i| span(i, &long)).collect();
            let mut resource = Vec::new();
            attribute(
                &mut resource,
                1,
                "service.name",
                &Value::from("connector-runtime"),
            );
            let body = encode_request(&resource, "", &spans);
            let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            let rs = &decoded.resource_spans[0];
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            assert_eq!(attrs[0].key, "service.name");
            let scope = &rs.scope_spans[0];
            assert_eq!(scope.scope.as_ref().unwrap().name, "connector-runtime");
            assert_eq!(scope.spans.len(), 40);
            for (i, s) in scope.spans.iter().enumerate() {
                assert_eq!(s.name, format!("span {i}"));
                assert_eq!(s.span_id, (i as u64 + 1).to_be_bytes());
                assert_eq!(s.trace_id, (i as u128 + 1).to_be_bytes());
                assert_eq!(s.parent_span_id.is_empty(), i == 0);
                assert_eq!(s.kind, 3);
                assert_eq!(s.start_time_unix_nano, 1_000 + i as u64);
                assert_eq!(s.end_time_unix_nano, 2_000 + i as u64);
                assert_eq!(s.flags, 0x101);
                let value = |k: &str| {
                    s.attributes
                        .iter()
                        .find(|a| a.key == k)
                        .and_then(|a| a.value.clone())
                        .and_then(|v| v.value)
                };
                assert_eq!(value("long"), Some(Any::StringValue(long.clone())));
                assert_eq!(value("n"), Some(Any::IntValue(i as i64)));
                assert_eq!(value("ok"), Some(Any::BoolValue(true)));
                assert_eq!(value("neg"), Some(Any::IntValue(-(i as i64) - 1)));
                assert_eq!(value("ratio"), Some(Any::DoubleValue(0.5)));
                assert_eq!(value("empty"), Some(Any::StringValue(String::new())));
                let status = s.status.clone().unwrap_or_default();
                if i % 2 == 1 {
                    assert_eq!((status.code, status.message.as_str()), (2, "timeout"));
                } else {
                    assert_eq!(status.code, 0);
                }
            }
        }
    }
}

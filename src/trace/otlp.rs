//! The OTLP/HTTP span exporter (docs/spec.md §13): spans arrive already encoded as OTLP
//! `Span` messages ([`super::span`] writes them as they are recorded); the exporter appends
//! them to the open batch under one short lock, and a thread of its own wraps a full batch in
//! an `ExportTraceServiceRequest` and POSTs it ([`super::http`]). The `OTEL_BSP_*` variables
//! mean what they mean for the SDK's batch processor. Also here: the protobuf writing the
//! spans are made of.
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
use std::time::{Duration, Instant};

use opentelemetry::{Array, Value};
use opentelemetry_sdk::Resource;

use super::lock::Lock;

/// Default time limit of one export (the OpenTelemetry default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The instrumentation scope every span is recorded under.
const SCOPE_NAME: &str = "connector-runtime";

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

/// Encoded spans, each as field 2 of `ScopeSpans`: what one thread encoded since it last
/// handed its spans over.
#[derive(Debug, Default)]
struct Piece {
    spans: Vec<u8>,
    count: usize,
}

/// A thread's piece being filled. Only that thread and, at each batch delay, the export
/// thread lock it, so its lock and its bytes stay in that thread's core's cache instead of
/// moving between the workers' cores five times per run.
#[derive(Debug, Default)]
struct Local {
    piece: Lock<Piece>,
}

/// Spans a thread keeps before it hands them over (fewer when the batch is smaller): ~4 KiB
/// of a [`PIECE_BYTES`] buffer, which stay in the worker's cache while it fills them.
const PIECE_SPANS: usize = 16;

/// A piece's buffer: room for its spans (~250 bytes each in a 2-step chain), and a size
/// class of the allocator that no run's own allocations share. A buffer lives long (sent
/// pieces' buffers are reused); one sized by its spans (~7 KiB) shared mimalloc's pages with
/// awc's request header tables, so a worker's queue of that class held two pages, and
/// the one a run's tables emptied was freed and set up again for the next: two fresh pages
/// per run (callgrind, scenario A traced: 157,786 -> 152,631 instructions per run).
const PIECE_BYTES: usize = 16 << 10;

/// Sent pieces' buffers kept for the workers' next pieces: a worker then writes into memory
/// it has written before, not into fresh pages (which cost page faults and cache misses:
/// tracing's CPU under load was 1.6x its share of instructions before).
const SPARE_BUFFERS: usize = 128;

/// What the workers hand the export thread.
#[derive(Debug, Default)]
struct Pending {
    /// Pieces handed over, oldest first.
    ready: VecDeque<Piece>,
    /// Spans in `ready`.
    queued: usize,
    /// Every thread's piece, emptied at each batch delay (an idle worker's spans still go).
    locals: Vec<Arc<Local>>,
    /// Empty buffers of sent pieces, for the next pieces.
    spare: Vec<Vec<u8>>,
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
    /// The encoded `Resource` message (its fields) and its schema URL.
    resource: (Vec<u8>, String),
    batching: Batching,
    timeout: Duration,
    /// Which exporter this is, for the threads' pieces (never reused).
    id: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `piece` (dropped when the queue is full or the exporter stopped); wakes the
    /// export thread once a batch is ready.
    fn hand_over(&self, pending: &mut Pending, piece: Piece) {
        if piece.count == 0 {
            return;
        }
        if pending.stopped || pending.queued + piece.count > self.batching.queue {
            pending.dropped += piece.count as u64;
            return;
        }
        let was_short = pending.queued < self.batching.batch;
        pending.queued += piece.count;
        pending.ready.push_back(piece);
        if was_short && pending.queued >= self.batching.batch {
            self.wake.notify_one();
        }
    }

    /// Hands over what every thread holds (at a batch delay, a flush, the stop).
    fn collect_locals(&self) {
        let locals = self.lock().locals.clone();
        for local in locals {
            let piece = std::mem::take(&mut *local.piece.lock());
            self.hand_over(&mut self.lock(), piece);
        }
    }
}

/// Ids of exporters (a thread's pieces are per exporter).
static NEXT_EXPORTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// This thread's piece of each exporter it has submitted to.
    static LOCALS: RefCell<Vec<(u64, Arc<Local>)>> = const { RefCell::new(Vec::new()) };
}

/// Exports encoded spans in batches to one OTLP/HTTP endpoint.
#[derive(Debug)]
pub(crate) struct Exporter {
    shared: Arc<Shared>,
}

impl Exporter {
    /// An exporter to `url` (the full `/v1/traces` URL) for the spans of `resource`, with
    /// the headers and time limit of the standard variables
    /// (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `..._TIMEOUT` in ms) and the batching of
    /// `OTEL_BSP_*`; its export thread starts here.
    pub(crate) fn new(url: String, resource: &Resource) -> Result<Self, String> {
        Self::with_batching(url, resource, Batching::from_env())
    }

    fn with_batching(url: String, resource: &Resource, batching: Batching) -> Result<Self, String> {
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
        let mut encoded = Vec::new();
        for (key, value) in resource.iter() {
            attribute(&mut encoded, 1, key.as_str(), value);
        }
        let schema = resource.schema_url().unwrap_or_default().to_string();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
            resource: (encoded, schema),
            batching,
            timeout,
            id: NEXT_EXPORTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_loop(&thread, &mut poster))
            .map_err(|e| format!("the export thread could not start: {e}"))?;
        Ok(Exporter { shared })
    }

    /// Queues one encoded `Span` message (its fields): it is copied into this thread's
    /// piece; a full piece is handed over under the shared lock, and the export thread is
    /// woken only when a batch is ready. A full queue (the collector is slow or down) drops
    /// the piece.
    pub(crate) fn submit(&self, span: &[u8]) {
        // This thread's piece is used where it lies, not through a clone of its `Arc`: a
        // clone and a drop were two locked instructions per span. (`add` takes no
        // thread-local, so holding the borrow across it cannot panic.)
        let added = LOCALS.try_with(|locals| {
            let mut locals = locals.borrow_mut();
            let at = match locals.iter().position(|(id, _)| *id == self.shared.id) {
                Some(at) => at,
                None => {
                    let local = Arc::new(Local::default());
                    self.shared.lock().locals.push(local.clone());
                    locals.push((self.shared.id, local));
                    locals.len() - 1
                }
            };
            self.add(&locals[at].1, span);
        });
        if added.is_err() {
            // A span ended while its thread is being torn down (its thread-locals are gone):
            // it goes alone.
            let mut piece = Piece::default();
            bytes(&mut piece.spans, 2, span);
            piece.count = 1;
            self.shared.hand_over(&mut self.shared.lock(), piece);
        }
    }

    /// Copies `span` into `local`'s piece; hands the piece over when it is full.
    fn add(&self, local: &Local, span: &[u8]) {
        let cap = PIECE_SPANS.min(self.shared.batching.batch);
        let full = {
            let mut piece = local.piece.lock();
            if piece.spans.capacity() == 0 {
                piece.spans.reserve(PIECE_BYTES.max(cap * (span.len() + 3)));
            }
            bytes(&mut piece.spans, 2, span);
            piece.count += 1;
            (piece.count >= cap).then(|| std::mem::take(&mut *piece))
        };
        if let Some(full) = full {
            let spare = {
                let mut pending = self.shared.lock();
                self.shared.hand_over(&mut pending, full);
                pending.spare.pop()
            };
            if let Some(spare) = spare {
                let mut piece = local.piece.lock();
                if piece.spans.capacity() == 0 {
                    piece.spans = spare;
                }
            }
        }
    }

    /// Sends what is queued and stops the export thread, waiting up to the export time
    /// limit plus the batch delay for it.
    pub(crate) fn shutdown(&self) {
        let limit = self.shared.timeout + self.shared.batching.delay;
        if let Err(error) = self.wait_for(true, limit) {
            tracing::debug!(error, "OTLP exporter did not stop in time");
        }
    }

    /// Asks the thread for a flush (or the stop) and waits up to `timeout` for it.
    fn wait_for(&self, stop: bool, timeout: Duration) -> Result<(), &'static str> {
        let deadline = Instant::now() + timeout;
        let mut pending = self.shared.lock();
        if pending.stopped {
            return Ok(());
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
                return Err("timed out");
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

/// The export thread: every `OTEL_BSP_SCHEDULE_DELAY` (sooner when a batch is full, a flush
/// or the stop is asked for) it sends what is ready, one request per chunk. A failed export
/// loses its batch, never a run.
fn export_loop(shared: &Shared, poster: &mut super::http::Poster) {
    let delay = shared.batching.delay;
    let batch = shared.batching.batch;
    let mut due = Instant::now() + delay;
    let mut pending = shared.lock();
    loop {
        let now = Instant::now();
        let flush = pending.flush_asked > pending.flushed || pending.stop;
        if now < due && pending.queued < batch && !flush {
            pending = shared
                .wake
                .wait_timeout(pending, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let asked = pending.flush_asked;
        let stop = pending.stop;
        let everything = now >= due || flush;
        drop(pending);
        if everything {
            shared.collect_locals();
            due = now + delay;
        }
        // Requests of at most `batch` spans, each made of whole pieces (a piece holds at
        // most `batch` spans), sent as they are: the pieces are not copied again.
        let mut sent: Vec<Piece> = Vec::new();
        loop {
            let mut pending = shared.lock();
            for piece in sent.drain(..) {
                if pending.spare.len() < SPARE_BUFFERS {
                    let mut buffer = piece.spans;
                    buffer.clear();
                    pending.spare.push(buffer);
                }
            }
            let mut pieces = Vec::new();
            let mut count = 0;
            while let Some(next) = pending.ready.front() {
                if !pieces.is_empty() && count + next.count > batch {
                    break;
                }
                count += next.count;
                pieces.extend(pending.ready.pop_front());
            }
            // Between batch delays only full batches go: `batch` spans, or as many as whole
            // pieces make before the next would pass it.
            if pieces.is_empty() || (!everything && count < batch && pending.ready.is_empty()) {
                for piece in pieces.into_iter().rev() {
                    pending.ready.push_front(piece);
                }
                break;
            }
            pending.queued -= count;
            drop(pending);
            let spans_len = pieces.iter().map(|p| p.spans.len()).sum();
            let (prefix, suffix) = envelope(&shared.resource.0, &shared.resource.1, spans_len);
            let mut parts: Vec<&[u8]> = Vec::with_capacity(pieces.len() + 2);
            parts.push(&prefix);
            parts.extend(pieces.iter().map(|p| p.spans.as_slice()));
            parts.push(&suffix);
            match poster.post(&parts) {
                Ok(status) if (200..300).contains(&status) => {}
                Ok(status) => tracing::debug!(status, spans = count, "OTLP export refused"),
                Err(error) => tracing::debug!(%error, spans = count, "OTLP export failed"),
            }
            sent = pieces;
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

/// What goes before and after a chunk's encoded spans to make them an
/// `ExportTraceServiceRequest` (one `ResourceSpans` with one `ScopeSpans`): its lengths are
/// known from the spans' length, so the spans themselves are never copied again.
fn envelope(resource: &[u8], resource_schema: &str, spans_len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut scope = Vec::with_capacity(64);
    nested(&mut scope, 1, |out| {
        string(out, 1, SCOPE_NAME);
        string(out, 2, env!("CARGO_PKG_VERSION"));
    });
    let mut resource_field = Vec::with_capacity(resource.len() + 8);
    bytes(&mut resource_field, 1, resource);
    let mut suffix = Vec::new();
    string(&mut suffix, 3, resource_schema);
    let scope_spans = scope.len() + spans_len;
    let resource_spans =
        resource_field.len() + 1 + varint_len(scope_spans as u64) + scope_spans + suffix.len();
    let mut prefix = Vec::with_capacity(resource_field.len() + scope.len() + 16);
    tag(&mut prefix, 1, 2);
    varint(&mut prefix, resource_spans as u64);
    prefix.extend_from_slice(&resource_field);
    tag(&mut prefix, 2, 2);
    varint(&mut prefix, scope_spans as u64);
    prefix.extend_from_slice(&scope);
    (prefix, suffix)
}

/// An attribute value as spans record it: what every attribute of ours is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Attr<'a> {
    /// A string value.
    Str(&'a str),
    /// An integer value.
    Int(i64),
}

impl<'a> From<&'a str> for Attr<'a> {
    fn from(s: &'a str) -> Self {
        Attr::Str(s)
    }
}

impl From<i64> for Attr<'_> {
    fn from(i: i64) -> Self {
        Attr::Int(i)
    }
}

/// A `KeyValue` message with a non-empty `key` as field `field`, in one pass: its lengths
/// are computed before it is written, nothing is patched or moved.
/// Inlined into its callers, whose keys are constants: the key's copy and the lengths are
/// then worked out at compile time.
#[inline(always)]
pub(crate) fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: Attr<'_>) {
    // What nearly every attribute is: a one-byte field and every length one byte, written
    // as fixed-size stores and two copies, no length computed as a varint.
    if field < 16 {
        let tag = (field << 3 | 2) as u8;
        match value {
            Attr::Str(s) if key.len() + s.len() <= 121 => {
                // key (2 + k) + value (2 + AnyValue (2 + v)) <= 127
                let total = key.len() + s.len() + 6;
                out.reserve(2 + total);
                out.extend_from_slice(&[tag, total as u8, 0x0a, key.len() as u8]);
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(&[0x12, (2 + s.len()) as u8, 0x0a, s.len() as u8]);
                out.extend_from_slice(s.as_bytes());
                return;
            }
            // Ports, indexes and status codes: a varint of at most three bytes (< 2^21; a
            // port such as 18081 needs three).
            Attr::Int(i) if (0..1 << 21).contains(&i) && key.len() <= 100 => {
                let v = i as u32;
                let n = 1 + usize::from(v >= 1 << 7) + usize::from(v >= 1 << 14);
                let total = key.len() + 5 + n;
                out.reserve(2 + total);
                out.extend_from_slice(&[tag, total as u8, 0x0a, key.len() as u8]);
                out.extend_from_slice(key.as_bytes());
                let more = |bytes_after: usize| if n > bytes_after { 0x80 } else { 0 };
                let value = [
                    0x12,
                    (1 + n) as u8,
                    0x18,
                    (v & 0x7f) as u8 | more(1),
                    ((v >> 7) & 0x7f) as u8 | more(2),
                    (v >> 14) as u8,
                ];
                out.extend_from_slice(&value[..3 + n]);
                return;
            }
            _ => {}
        }
    }
    key_value_varint(out, field, key, value);
}

/// [`key_value`] with lengths of more than one byte.
#[inline(never)]
fn key_value_varint(out: &mut Vec<u8>, field: u32, key: &str, value: Attr<'_>) {
    let any = match value {
        Attr::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
        Attr::Int(i) => 1 + varint_len(i as u64),
    };
    let total = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    out.reserve(total + 3);
    tag(out, field, 2);
    varint(out, total as u64);
    out.push(0x0a);
    varint(out, key.len() as u64);
    out.extend_from_slice(key.as_bytes());
    out.push(0x12);
    varint(out, any as u64);
    match value {
        Attr::Str(s) => force_string(out, 1, s),
        Attr::Int(i) => {
            out.push(0x18);
            varint(out, i as u64);
        }
    }
}

/// A `KeyValue` message as field `field`. Scalars' lengths are known before they are
/// written, so they go out in one pass; arrays go through [`nested`].
fn attribute(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
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

pub(super) fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field written by `body`: its length is patched in afterwards (the body
/// is moved back over the space left for a longer length), so nothing is encoded twice.
pub(super) fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
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

pub(super) fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    tag(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// A string field, left out when empty (proto3's default).
pub(super) fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

/// A string field written even when empty (a oneof member: empty is a value).
fn force_string(out: &mut Vec<u8>, field: u32, s: &str) {
    tag(out, field, 2);
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, 0);
        varint(out, v);
    }
}

/// `ExportTraceServiceRequest` of `spans` (encoded `Span` messages) of `resource`, as the
/// export thread sends one: the tests' way to decode what spans write.
#[cfg(test)]
pub(super) fn request_of(resource: &[u8], schema: &str, spans: &[Vec<u8>]) -> Vec<u8> {
    let mut chunk = Vec::new();
    for span in spans {
        bytes(&mut chunk, 2, span);
    }
    let (prefix, suffix) = envelope(resource, schema, chunk.len());
    [prefix, chunk, suffix].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_encode_as_the_general_path_does() {
        let long = "v".repeat(200);
        let values = [
            Attr::Str("GET"),
            Attr::Str(""),
            Attr::Str(&long),
            Attr::Str(&"x".repeat(100)),
            Attr::Int(0),
            Attr::Int(127),
            Attr::Int(128),
            Attr::Int((1 << 14) - 1),
            Attr::Int(1 << 14),
            Attr::Int(18_081),
            Attr::Int((1 << 21) - 1),
            Attr::Int(1 << 21),
            Attr::Int((1 << 28) - 1),
            Attr::Int(1 << 28),
            Attr::Int(-1),
            Attr::Int(i64::MIN),
        ];
        let edge_value = "e".repeat(121 - "http.request.method".len());
        let over_edge = "e".repeat(122 - "http.request.method".len());
        let values: Vec<Attr<'_>> = values
            .into_iter()
            .chain([Attr::Str(&edge_value), Attr::Str(&over_edge)])
            .collect();
        for key in [
            "k",
            "http.request.method",
            &"k".repeat(100),
            &"k".repeat(101),
            &"k".repeat(130),
        ] {
            for &value in &values {
                let mut fast = Vec::new();
                key_value(&mut fast, 9, key, value);
                let general = match value {
                    Attr::Str(s) => Value::from(s.to_string()),
                    Attr::Int(i) => Value::I64(i),
                };
                let mut reference = Vec::new();
                attribute(&mut reference, 9, key, &general);
                assert_eq!(fast, reference, "{key:?} = {value:?}");
            }
        }
    }

    #[test]
    fn the_envelope_is_what_nesting_the_spans_gives() {
        let mut resource = Vec::new();
        key_value(
            &mut resource,
            1,
            "service.name",
            Attr::Str("connector-runtime"),
        );
        for spans_len in [0, 3, 127, 128, 300, 70_000] {
            for (resource, schema) in [
                (&resource[..], "https://opentelemetry.io/schemas/1.26.0"),
                (&[][..], ""),
            ] {
                let spans: Vec<u8> = (0..spans_len).map(|i| i as u8).collect();
                let mut reference = Vec::new();
                nested(&mut reference, 1, |out| {
                    bytes(out, 1, resource);
                    nested(out, 2, |out| {
                        nested(out, 1, |out| {
                            string(out, 1, SCOPE_NAME);
                            string(out, 2, env!("CARGO_PKG_VERSION"));
                        });
                        out.extend_from_slice(&spans);
                    });
                    string(out, 3, schema);
                });
                let (prefix, suffix) = envelope(resource, schema, spans.len());
                assert_eq!([prefix, spans, suffix].concat(), reference, "{spans_len}");
            }
        }
    }

    #[test]
    fn every_span_of_every_thread_arrives_in_batches_of_at_most_the_batch_size() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        // A collector: every request's spans, by request.
        let collector = std::thread::spawn(move || {
            let mut batches: Vec<Vec<Vec<u8>>> = Vec::new();
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return batches;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header == "\r\n" {
                        break;
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                let spans = request.resource_spans[0].scope_spans[0]
                    .spans
                    .iter()
                    .map(|s| s.span_id.clone())
                    .collect();
                batches.push(spans);
                writer
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
            }
        });
        let batching = Batching {
            delay: Duration::from_millis(50),
            queue: 10_000,
            batch: 7,
        };
        let exporter = Arc::new(
            Exporter::with_batching(url, &Resource::builder_empty().build(), batching).unwrap(),
        );
        // Three threads, 40 spans each; one more span after a pause (sent by the delay).
        let threads: Vec<_> = (0..3u8)
            .map(|t| {
                let exporter = exporter.clone();
                std::thread::spawn(move || {
                    for i in 0..40u8 {
                        let mut span = Vec::new();
                        bytes(&mut span, 2, &[t, i, 0, 0, 0, 0, 0, 1]);
                        exporter.submit(&span);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        std::thread::sleep(Duration::from_millis(200));
        let mut last = Vec::new();
        bytes(&mut last, 2, &[9, 9, 0, 0, 0, 0, 0, 1]);
        exporter.submit(&last);
        exporter.shutdown();
        drop(exporter);
        let batches = collector.join().unwrap();
        assert!(
            batches.iter().all(|b| !b.is_empty() && b.len() <= 7),
            "{batches:?}"
        );
        let mut all: Vec<Vec<u8>> = batches.concat();
        all.sort();
        let mut expected: Vec<Vec<u8>> = (0..3u8)
            .flat_map(|t| (0..40u8).map(move |i| vec![t, i, 0, 0, 0, 0, 0, 1]))
            .chain([vec![9, 9, 0, 0, 0, 0, 0, 1]])
            .collect();
        expected.sort();
        assert_eq!(all, expected, "every span once");
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }
}

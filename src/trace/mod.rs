//! Traces (docs/spec.md §13): OpenTelemetry spans exported over OTLP/HTTP (protobuf) — a
//! SERVER span per execute request, a child per step, a CLIENT span per upstream call — and
//! W3C trace context taken from callers and sent to upstreams. Off, at the cost of one
//! `Option` check per request, when no endpoint is configured.

use std::sync::Arc;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Config, SamplingDecision, ShouldSample};
use opentelemetry_sdk::Resource;

mod current;
mod http;
mod kept;
mod lock;
mod otlp;
mod span;

pub(crate) use current::{trace_id as current_trace_id, InTrace};
pub(crate) use otlp::Attr;
pub use span::Context;
pub(crate) use span::TraceIdHex;
use span::{Kind, Parentage, SpanIds, Start};

/// Whether upstream calls carry the trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Propagation {
    /// Every upstream call carries `traceparent` / `tracestate` of its CLIENT span.
    #[default]
    On,
    /// Upstreams see no trace context.
    Off,
}

/// The tracing flags (the standard `OTEL_*` variables configure the rest).
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// OTLP/HTTP endpoint to export traces to (`/v1/traces` is appended unless present);
    /// without it `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`;
    /// with none of them tracing is off.
    #[arg(long, env = "CONNECTOR_RUNTIME_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Whether upstream calls carry W3C `traceparent` / `tracestate`.
    #[arg(long, env = "CONNECTOR_RUNTIME_TRACE_PROPAGATION", value_enum, default_value_t = Propagation::On)]
    pub trace_propagation: Propagation,
    /// Link to a trace UI: an http(s) URL template with `{trace_id}` (e.g.
    /// `http://localhost:16686/trace/{trace_id}`), which the console fills in with a traced
    /// run's trace id. Checked at start; used only when tracing is on.
    #[arg(long, env = "CONNECTOR_RUNTIME_TRACE_UI_URL")]
    pub trace_ui_url: Option<String>,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("tracing: {0}")]
pub struct TraceError(String);

/// The process's tracer: where spans go, whether upstreams see the context, and the trace
/// UI the console links to.
pub struct Tracing {
    /// Leaked on purpose: there is one per process, and a span holding a plain reference to
    /// it, not an `Arc`, spares every span two atomic updates of one counter that all workers
    /// share (callgrind does not see them; on this 2-core VM `perf` put ~0.3 samples per
    /// thousand runs on that `lock incq` alone: the counter's cache line moves between cores).
    exporter: &'static otlp::Exporter,
    /// The SDK's sampler of `OTEL_TRACES_SAMPLER` / `_ARG` (default: parent-based, always
    /// on), asked once per trace: see [`Tracing::server`].
    sampler: Box<dyn ShouldSample>,
    propagate: bool,
    ui_url: Option<Arc<str>>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("propagate", &self.propagate)
            .field("ui_url", &self.ui_url)
            .finish()
    }
}

/// What `--trace-ui-url` must contain.
const TRACE_ID_PLACEHOLDER: &str = "{trace_id}";

/// Checks `--trace-ui-url`: an http or https URL with a host, no credentials (every console
/// visitor sees it), and `{trace_id}` somewhere in it. `None` when not set (or blank).
fn ui_url(args: &TraceArgs) -> Result<Option<Arc<str>>, TraceError> {
    let Some(template) = args.trace_ui_url.as_deref().map(str::trim) else {
        return Ok(None);
    };
    if template.is_empty() {
        return Ok(None);
    }
    let refuse = |shown: &str, why: &str| {
        TraceError(format!(
            "--trace-ui-url {shown}{why}; give an http(s) URL template such as \
             http://localhost:16686/trace/{TRACE_ID_PLACEHOLDER}"
        ))
    };
    let quoted = format!("{template:?} ");
    if !template.contains(TRACE_ID_PLACEHOLDER) {
        return Err(refuse(&quoted, "has no {trace_id} placeholder"));
    }
    let lower = template.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(refuse(&quoted, "is not an http:// or https:// URL"));
    }
    // A sample id in place of the placeholder: what the console will open must be a URL.
    let sample = template.replace(TRACE_ID_PLACEHOLDER, "0af7651916cd43dd8448eb211c80319c");
    let uri: actix_web::http::Uri = sample
        .parse()
        .map_err(|_| refuse(&quoted, "is not a valid URL once {trace_id} is filled in"))?;
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.contains('@') {
        // Not echoed: the value holds a password.
        return Err(refuse(
            "",
            "carries credentials (user:password@), which every console visitor would see",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse(&quoted, "has no host"));
    }
    Ok(Some(template.into()))
}

/// The `/v1/traces` URL traces go to, from the flag or the standard variables (the
/// signal-specific one verbatim, the general one with `/v1/traces` appended); `None`:
/// tracing off.
fn endpoint(args: &TraceArgs) -> Option<String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let with_path = |url: &str| {
        let url = url.trim().trim_end_matches('/');
        if url.ends_with("/v1/traces") {
            url.to_string()
        } else {
            format!("{url}/v1/traces")
        }
    };
    match &args.otlp_endpoint {
        Some(url) if !url.trim().is_empty() => Some(with_path(url)),
        _ => set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(|url| url.trim().to_string())
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT").map(|url| with_path(&url))),
    }
}

impl Tracing {
    /// Starts the exporter when an endpoint is configured; `Ok(None)` when tracing is off.
    /// Spans are encoded as they end and sent in batches from the exporter's own thread
    /// (`OTEL_BSP_SCHEDULE_DELAY`, default 5 s); a collector that is down loses spans, never
    /// a run.
    pub fn start(args: &TraceArgs) -> Result<Option<Arc<Tracing>>, TraceError> {
        // Checked even when tracing is off, so a bad value is found before it is needed.
        let ui_url = ui_url(args)?;
        let Some(url) = endpoint(args) else {
            return Ok(None);
        };
        let mut resource = Resource::builder();
        // The default service name, unless the standard variables give one.
        let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attrs| {
                attrs
                    .split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        if !named {
            resource = resource.with_service_name("connector-runtime");
        }
        let exporter = otlp::Exporter::new(url, &resource.build()).map_err(TraceError)?;
        Ok(Some(Arc::new(Tracing {
            exporter: Box::leak(Box::new(exporter)),
            sampler: Config::default().sampler,
            propagate: args.trace_propagation == Propagation::On,
            ui_url,
        })))
    }

    /// The `--trace-ui-url` template (with `{trace_id}`), when one is configured.
    pub fn ui_url(&self) -> Option<&str> {
        self.ui_url.as_deref()
    }

    /// The SERVER span of one execute request, continuing the caller's trace when its
    /// `traceparent` is valid. The sampler decides here, once per trace: a step or call
    /// span has a local parent of the same trace, for which every sampler of
    /// `OTEL_TRACES_SAMPLER` decides as it did for this one (parent-based ones follow the
    /// parent, `traceidratio` looks at the same trace id, always_on/off never change).
    pub(crate) fn server(
        &self,
        headers: &HeaderMap,
        method: &str,
        route: &'static str,
        path: &str,
    ) -> Context {
        // Only a request that carries a `traceparent` pays for the propagator's context.
        let caller = headers
            .contains_key(&TRACEPARENT)
            .then(|| TraceContextPropagator::new().extract(&RequestHeaders(headers)))
            .filter(|cx| cx.span().span_context().is_valid());
        let (trace_id, parent) = match &caller {
            Some(cx) => {
                let span = cx.span();
                let context = span.span_context();
                (
                    context.trace_id().to_bytes(),
                    Parentage {
                        span_id: Some(context.span_id().to_bytes()),
                        remote: true,
                    },
                )
            }
            None => (
                span::random_trace_id(),
                Parentage {
                    span_id: None,
                    remote: false,
                },
            ),
        };
        // The span's name for the sampler, on the stack (the span writes it in parts).
        let mut name_buf = [0u8; 96];
        let name_len = method.len() + 1 + route.len();
        let name = if name_len <= name_buf.len() {
            name_buf[..method.len()].copy_from_slice(method.as_bytes());
            name_buf[method.len()] = b' ';
            name_buf[method.len() + 1..name_len].copy_from_slice(route.as_bytes());
            // SAFETY: two `str`s joined by an ASCII space are UTF-8 (checking it again cost
            // ~120 instructions per run).
            unsafe { std::str::from_utf8_unchecked(&name_buf[..name_len]) }
        } else {
            route
        };
        let decision = self.sampler.should_sample(
            caller.as_ref(),
            TraceId::from_bytes(trace_id),
            name,
            &SpanKind::Server,
            &[],
            &[],
        );
        let state = decision.trace_state.header();
        let ids = SpanIds {
            trace_id,
            span_id: span::random_span_id(),
            sampled: decision.decision == SamplingDecision::RecordAndSample,
        };
        let trace_state = (!state.is_empty()).then(|| state.into());
        let cx = kept::server(method, route, path, |encoded| {
            Context::start(
                Start {
                    ids,
                    parent,
                    trace_state,
                    kind: Kind::Server,
                    name: &[method, " ", route],
                    attributes: encoded,
                },
                self.exporter,
            )
        });
        // A sampler's own attributes (the SDK's samplers give none).
        for kv in &decision.attributes {
            if let opentelemetry::Value::I64(i) = kv.value {
                cx.attribute(kv.key.as_str(), Attr::Int(i));
            } else {
                cx.attribute(kv.key.as_str(), Attr::Str(&kv.value.as_str()));
            }
        }
        cx
    }

    /// A span under `parent`, in its trace, with its `attributes` encoded (`kept`).
    #[inline(always)]
    fn child(&self, parent: &Context, kind: Kind, name: &[&str], attributes: &[u8]) -> Context {
        let ids = parent.ids();
        Context::start(
            Start {
                ids: ids.child(),
                parent: Parentage {
                    span_id: Some(ids.span_id),
                    remote: false,
                },
                trace_state: parent.trace_state().cloned(),
                kind,
                name,
                attributes,
            },
            self.exporter,
        )
    }

    /// The span of one step, under the run's SERVER span.
    pub(crate) fn step(&self, run: &Context, connector: &str, step: &str, index: usize) -> Context {
        kept::step(connector, step, index, |encoded| {
            self.child(run, Kind::Internal, &["step ", step], encoded)
        })
    }

    /// A CLIENT span for one upstream call under `parent`, and the headers that carry its
    /// context upstream (none with `--trace-propagation off`).
    pub(crate) fn client(
        &self,
        parent: &Context,
        method: &str,
        url: &str,
    ) -> (Context, ContextHeaders) {
        let cx = kept::client(method, url, |encoded| {
            self.child(parent, Kind::Client, &[method], encoded)
        });
        let mut headers = ContextHeaders::none();
        if self.propagate {
            traceparent_headers(&cx, &mut headers);
        }
        (cx, headers)
    }

    /// Sends what is still buffered and stops the exporter (at shutdown).
    pub fn shutdown(&self) {
        self.exporter.shutdown();
    }
}

/// The trace context headers of one upstream call (none, `traceparent`, or both), held
/// without an allocation.
pub(crate) struct ContextHeaders {
    items: [(HeaderName, HeaderValue); 2],
    len: usize,
}

impl ContextHeaders {
    fn none() -> Self {
        const EMPTY: (HeaderName, HeaderValue) = (TRACEPARENT, HeaderValue::from_static(""));
        ContextHeaders {
            items: [EMPTY, EMPTY],
            len: 0,
        }
    }

    fn push(&mut self, name: HeaderName, value: HeaderValue) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    /// The headers, in order.
    pub(crate) fn as_slice(&self) -> &[(HeaderName, HeaderValue)] {
        &self.items[..self.len]
    }
}

/// The W3C trace context headers.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Where an upstream call's CLIENT span goes: the tracer and the parent (a step's span),
/// `None` when the call is not traced.
pub(crate) type Parent<'a> = Option<(&'a Tracing, &'a Context)>;

/// Ends the span of `cx`: `status` is the HTTP status when one came back, `error` the
/// failure's type (a code, never a message with data).
pub(crate) fn end(cx: &Context, status: Option<u16>, error: Option<&str>) {
    cx.end(status, error);
}

/// Ends the span it holds if it is dropped before [`EndOnDrop::disarm`] (its future was
/// dropped: a time limit passed, or the run was cancelled), marked as cancelled.
pub(crate) struct EndOnDrop(pub Option<Context>);

impl EndOnDrop {
    /// The context back, the span still open.
    pub(crate) fn disarm(mut self) -> Context {
        self.0.take().expect("an EndOnDrop is disarmed once")
    }
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(cx) = self.0.take() {
            end(&cx, None, Some("cancelled"));
        }
    }
}

/// Adds an attribute to the span of `cx`.
#[inline(always)]
pub(crate) fn attribute<'v>(cx: &Context, key: &'static str, value: impl Into<Attr<'v>>) {
    cx.attribute(key, value.into());
}

/// The trace id of `cx`, as 32 hex digits.
pub(crate) fn trace_id(cx: &Context) -> TraceIdHex {
    cx.trace_id_hex()
}

/// W3C `traceparent` (and `tracestate`, when there is one) of the span of `cx`
/// (`00-<trace id>-<span id>-<flags>`), as `TraceContextPropagator` writes them, formatted
/// by hand: the propagator goes through `format!` and a header map for each call.
fn traceparent_headers(cx: &Context, headers: &mut ContextHeaders) {
    let value = header_bytes(&cx.traceparent());
    // SAFETY: a traceparent is hex digits and dashes (see `Context::traceparent`): visible
    // ASCII, which is all `HeaderValue` requires. (Debug builds check it all the same.)
    headers.push(TRACEPARENT, unsafe {
        HeaderValue::from_maybe_shared_unchecked(value)
    });
    if let Some(state) = cx.trace_state() {
        if let Ok(value) = HeaderValue::from_str(state) {
            headers.push(TRACESTATE, value);
        }
    }
}

/// Room for ~70 `traceparent` values in each of a thread's header buffers.
const HEADER_ARENA_BYTES: usize = 4096;

thread_local! {
    /// The rest of this thread's current header buffer, which `header_bytes` cuts values from.
    static HEADER_ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// `value` as `Bytes` cut from this thread's header buffer: a clone (awc's request takes
/// one) and a drop count a shared reference instead of a malloc and a free each (a `Bytes`
/// copied from a slice allocates, and allocates again on its first clone); the buffer is
/// freed once the last value cut from it is dropped.
fn header_bytes(value: &[u8]) -> Bytes {
    HEADER_ARENA
        .try_with(|arena| {
            let mut arena = arena.borrow_mut();
            if arena.capacity() < value.len() {
                *arena = BytesMut::with_capacity(HEADER_ARENA_BYTES.max(value.len()));
            }
            arena.extend_from_slice(value);
            arena.split().freeze()
        })
        .unwrap_or_else(|_| Bytes::copy_from_slice(value))
}

struct RequestHeaders<'a>(&'a HeaderMap);

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cut_from_the_arena_keep_their_bytes_across_refills() {
        // Enough values to fill several buffers; every one is kept and checked at the end,
        // so a value overwritten by a later cut or a refill would show.
        let values: Vec<(Vec<u8>, Bytes)> = (0..500u32)
            .map(|i| {
                let text = format!("00-{:032x}-{:016x}-01", u128::from(i) * 7919, i);
                let bytes = header_bytes(text.as_bytes());
                (text.into_bytes(), bytes)
            })
            .collect();
        for (text, bytes) in &values {
            assert_eq!(&bytes[..], &text[..]);
            assert_eq!(&bytes.clone()[..], &text[..]);
        }
        // A value longer than a whole buffer still comes back whole.
        let long = vec![b'a'; HEADER_ARENA_BYTES + 10];
        assert_eq!(&header_bytes(&long)[..], &long[..]);
    }
}

//! Traces (docs/spec.md §13): OpenTelemetry spans exported over OTLP/HTTP (protobuf) — a
//! SERVER span per execute request, a child per step, a CLIENT span per upstream call — and
//! W3C trace context taken from callers and sent to upstreams. Off, at the cost of one
//! `Option` check per request, when no endpoint is configured.

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

mod http;
mod otlp;

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
    provider: SdkTracerProvider,
    tracer: SdkTracer,
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
        let processor = otlp::EncodingProcessor::new(url).map_err(TraceError)?;
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
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("connector-runtime");
        Ok(Some(Arc::new(Tracing {
            provider,
            tracer,
            propagate: args.trace_propagation == Propagation::On,
            ui_url,
        })))
    }

    /// The `--trace-ui-url` template (with `{trace_id}`), when one is configured.
    pub fn ui_url(&self) -> Option<&str> {
        self.ui_url.as_deref()
    }

    /// The SERVER span of one execute request, continuing the caller's trace when its
    /// `traceparent` is valid.
    pub(crate) fn server(
        &self,
        headers: &HeaderMap,
        method: &str,
        route: &'static str,
        path: &str,
    ) -> Context {
        let parent = TraceContextPropagator::new().extract(&RequestHeaders(headers));
        let span = self
            .tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method_name(method)),
                KeyValue::new("http.route", route),
                KeyValue::new("url.path", path.to_string()),
            ])
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// The span of one step, under the run's SERVER span.
    pub(crate) fn step(&self, run: &Context, connector: &str, step: &str, index: usize) -> Context {
        let span = self
            .tracer
            .span_builder(format!("step {step}"))
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("connector.permalink", connector.to_string()),
                KeyValue::new("connector.step.name", step.to_string()),
                KeyValue::new("connector.step.index", index as i64),
            ])
            .start_with_context(&self.tracer, run);
        run.with_span(span)
    }

    /// A CLIENT span for one upstream call under `parent`, and the headers that carry its
    /// context upstream (none with `--trace-propagation off`).
    pub(crate) fn client(
        &self,
        parent: &Context,
        method: &str,
        url: &str,
    ) -> (Context, Vec<(HeaderName, HeaderValue)>) {
        // By hand: `split_once("://")` runs a substring searcher for every call.
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or(url);
        let host = &rest[..rest
            .bytes()
            .position(|b| b == b'/' || b == b'?')
            .unwrap_or(rest.len())];
        let (address, port) = match host.bytes().rposition(|b| b == b':') {
            Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
                (&host[..i], host[i + 1..].parse::<i64>().ok())
            }
            _ => (host, None),
        };
        let method = method_name(method);
        let mut attributes = Vec::with_capacity(3);
        attributes.push(KeyValue::new("http.request.method", method.clone()));
        attributes.push(KeyValue::new("server.address", address.to_string()));
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", port));
        }
        let span = self
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        let cx = parent.with_span(span);
        let mut headers = Vec::with_capacity(if self.propagate { 2 } else { 0 });
        if self.propagate {
            traceparent_headers(&cx, &mut headers);
        }
        (cx, headers)
    }

    /// Sends what is still buffered and stops the exporter (at shutdown).
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// `method` as a span name or attribute value: the standard methods without an allocation.
fn method_name(method: &str) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
    ];
    match STANDARD.iter().find(|m| **m == method) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(method.to_string()),
    }
}

/// Where an upstream call's CLIENT span goes: the tracer and the parent (a step's span),
/// `None` when the call is not traced.
pub(crate) type Parent<'a> = Option<(&'a Tracing, &'a Context)>;

/// Ends the span of `cx`: `status` is the HTTP status when one came back, `error` the
/// failure's type (a code, never a message with data).
pub(crate) fn end(cx: &Context, status: Option<u16>, error: Option<&str>) {
    let span = cx.span();
    if let Some(status) = status {
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if let Some(error) = error {
        span.set_attribute(KeyValue::new("error.type", error.to_string()));
        span.set_status(Status::error(error.to_string()));
    }
    span.end();
}

/// Ends the span it holds if it is dropped before [`EndOnDrop::disarm`] (its future was
/// dropped: a time limit passed, or the run was cancelled), marked as cancelled.
pub(crate) struct EndOnDrop(pub Option<Context>);

impl EndOnDrop {
    /// The context back, the span still open.
    pub(crate) fn disarm(mut self) -> Context {
        self.0.take().unwrap_or_default()
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
pub(crate) fn attribute(cx: &Context, key: &'static str, value: impl Into<opentelemetry::Value>) {
    cx.span().set_attribute(KeyValue::new(key, value));
}

/// The trace id of `cx`, as 32 hex digits.
pub(crate) fn trace_id(cx: &Context) -> String {
    let mut out = [0u8; 32];
    hex(&cx.span().span_context().trace_id().to_bytes(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `bytes` as lower-case hex into `out` (twice as long): what `{:032x}` gives, without
/// the formatting machinery (this runs for every traced call).
fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
}

/// W3C `traceparent` (and `tracestate`, when there is one) of the span of `cx`
/// (`00-<trace id>-<span id>-<flags>`), as `TraceContextPropagator` writes them, formatted
/// by hand: the propagator goes through `format!` and a header map for each call.
fn traceparent_headers(cx: &Context, headers: &mut Vec<(HeaderName, HeaderValue)>) {
    let span = cx.span();
    let context = span.span_context();
    if !context.is_valid() {
        return;
    }
    let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&context.trace_id().to_bytes(), &mut value[3..35]);
    hex(&context.span_id().to_bytes(), &mut value[36..52]);
    hex(&[context.trace_flags().to_u8() & 1], &mut value[53..55]);
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.push((HeaderName::from_static("traceparent"), value));
    }
    let state = context.trace_state().header();
    if !state.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&state) {
            headers.push((HeaderName::from_static("tracestate"), value));
        }
    }
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

//! The OTLP/HTTP span exporter (docs/spec.md §13): each batch the SDK's batch thread hands
//! over is encoded straight into the protobuf of an `ExportTraceServiceRequest` and POSTed
//! with reqwest's blocking client (the client opentelemetry-otlp uses off a tokio runtime).
//!
//! Why not opentelemetry-otlp's exporter: it first builds the generated proto structs (an
//! allocation per id, name and attribute, the spans regrouped through a map) and prost then
//! computes every nested length twice. Callgrind counted 48,000 instructions per two-step run
//! (five spans) there at 100% sampling — more than half of what tracing cost a run. The
//! wire format of these dozen messages is small and stable, so it is written here in one pass;
//! the tests decode it with opentelemetry-proto, the generated code of the same schema.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanKind, Status};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// Default time limit of one export (the OpenTelemetry default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exports spans to one OTLP/HTTP traces endpoint.
#[derive(Debug)]
pub(crate) struct OtlpExporter {
    client: reqwest::blocking::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    /// The encoded `Resource` message (its fields, without tag and length).
    resource: Vec<u8>,
    /// The resource's schema URL.
    resource_schema: String,
}

impl OtlpExporter {
    /// An exporter to `url` (the full `/v1/traces` URL), with the headers and time limit of
    /// the standard variables (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `..._TIMEOUT` in ms).
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
        let mut headers = reqwest::header::HeaderMap::new();
        for pair in var("HEADERS").unwrap_or_default().split(',') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
            let name =
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                    format!("OTEL_EXPORTER_OTLP_HEADERS: {name:?} is not a header name")
                })?;
            let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                format!("OTEL_EXPORTER_OTLP_HEADERS: the value of {name} is not a header value")
            })?;
            headers.insert(name, value);
        }
        // Built on a thread of its own: the blocking client starts (and, when dropped,
        // stops) a runtime, which a tokio runtime's thread must not do.
        let client = std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
        })
        .join()
        .map_err(|_| "the HTTP client could not be built".to_string())?
        .map_err(|e| format!("the HTTP client could not be built: {e}"))?;
        Ok(OtlpExporter {
            client,
            url,
            headers,
            resource: Vec::new(),
            resource_schema: String::new(),
        })
    }

    fn send(&self, body: Vec<u8>) -> OTelSdkResult {
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .map_err(|e| OTelSdkError::InternalFailure(format!("OTLP export failed: {e}")))?;
        let status = response.status();
        // Read the (small) answer so the connection can be reused.
        let _ = response.bytes();
        if status.is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "OTLP export answered HTTP {status}"
            )))
        }
    }
}

impl SpanExporter for OtlpExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = if batch.is_empty() {
            Ok(())
        } else {
            self.send(encode_request(
                &self.resource,
                &self.resource_schema,
                &batch,
            ))
        };
        std::future::ready(result)
    }

    fn set_resource(&mut self, resource: &Resource) {
        let mut out = Vec::new();
        for (key, value) in resource.iter() {
            attribute(&mut out, 1, key.as_str(), value);
        }
        self.resource = out;
        self.resource_schema = resource.schema_url().unwrap_or_default().to_string();
    }
}

/// `ExportTraceServiceRequest` of `spans`: one `ResourceSpans`, one `ScopeSpans` per
/// instrumentation scope (in the order they first appear).
pub(crate) fn encode_request(
    resource: &[u8],
    resource_schema: &str,
    spans: &[SpanData],
) -> Vec<u8> {
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
                nested(out, 1, |out| {
                    string(out, 1, scope.name());
                    string(out, 2, scope.version().unwrap_or_default());
                    for kv in scope.attributes() {
                        attribute(out, 3, kv.key.as_str(), &kv.value);
                    }
                });
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

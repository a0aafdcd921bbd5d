//! Sends one rendered request upstream and reads the response, bounded in time and size,
//! retrying connection failures of idempotent requests within the same time limit.

use std::time::{Duration, Instant};

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use awc::http::Method;
use bytes::Bytes;

use super::resolver::{ForbiddenAddress, NoAddresses};
use super::transport::{MockKey, Transport};
use crate::trace::Parent;

/// Who makes an upstream call: its mock key (for the test transport) and where its CLIENT
/// span goes (when traced).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    /// The step (or its token request) the call is for.
    pub key: MockKey<'a>,
    /// The tracer and the step's span, when the run is traced.
    pub trace: Parent<'a>,
}

/// A fully rendered upstream request.
#[derive(Debug, Clone)]
pub(crate) struct OutboundRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL with its query string.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body, if any.
    pub body: Option<Bytes>,
}

/// What the upstream answered.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl UpstreamResponse {
    /// The response's Content-Type, if any.
    pub(crate) fn content_type(&self) -> Option<&str> {
        self.headers
            .get(awc::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

/// Why an upstream call failed. Messages are safe to show: no body, no secret.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The step's time limit passed, in milliseconds. A `u64`, not `as_millis()`'s `u128`:
    /// a `u128` aligns every future that holds this error to 16 bytes, and the allocator's
    /// aligned path costs each boxed step several times the plain one.
    #[error("the upstream did not answer within {0} ms")]
    Timeout(u64),
    /// The address policy forbids the upstream.
    #[error("{0}")]
    Forbidden(String),
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Network(String),
    /// The body exceeded the size cap.
    #[error("the upstream response is larger than the {0}-byte limit")]
    TooLarge(usize),
    /// The URL could not be parsed.
    #[error("the rendered URL is not valid: {0}")]
    InvalidUrl(String),
}

impl UpstreamError {
    /// The failure's type for a span's `error.type` (a fixed word, never data).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Forbidden(_) => "address_forbidden",
            UpstreamError::Network(_) => "network",
            UpstreamError::TooLarge(_) => "response_too_large",
            UpstreamError::InvalidUrl(_) => "invalid_url",
        }
    }
}

/// When to try an upstream call again: only after a failure while *connecting* (refused,
/// reset or unreachable, DNS failure, connect timeout), when not one byte of the request can
/// have reached the upstream, and only for idempotent methods. Never after the address
/// policy refused the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0 = no retries).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one, up to [`MAX_RETRY_BACKOFF`].
    pub backoff: Duration,
}

/// The longest wait between two attempts, whatever `--upstream-retry-backoff-ms` says.
pub(crate) const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(1);

impl RetryPolicy {
    /// No retries (token requests, and `--upstream-retries 0`).
    pub(crate) const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        backoff: Duration::ZERO,
    };

    /// The wait before retry number `retry` (0-based): `backoff * 2^retry`, capped.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(MAX_RETRY_BACKOFF)
    }

    /// Whether requests with `method` may be sent twice: GET, HEAD, PUT, DELETE and OPTIONS
    /// (RFC 9110 §9.2.2). POST and PATCH never are.
    pub(crate) fn allows(method: &Method) -> bool {
        matches!(
            *method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        )
    }
}

/// One failed attempt, and whether it failed before any of the request was written.
struct FailedAttempt {
    error: UpstreamError,
    /// True only for failures while connecting (see [`connect_failure_is_retryable`]).
    before_send: bool,
}

impl From<UpstreamError> for FailedAttempt {
    fn from(error: UpstreamError) -> Self {
        FailedAttempt {
            error,
            before_send: false,
        }
    }
}

/// Sends `request` through `transport`, allowing `timeout` for everything (connect, send,
/// read) and at most `max_bytes` of body. No retries. `key` names the mock that answers it
/// when the transport is a mock set.
pub(crate) async fn send(
    transport: &Transport,
    caller: Caller<'_>,
    request: &OutboundRequest,
    timeout: Duration,
    max_bytes: usize,
) -> Result<UpstreamResponse, UpstreamError> {
    send_with_retry(
        transport,
        caller,
        request,
        timeout,
        max_bytes,
        RetryPolicy::NONE,
        |_, _| {},
    )
    .await
}

/// Like [`send`], retrying as `retry` allows. `timeout` covers every attempt and every wait
/// between them: a retry whose wait would not end before the deadline is not made (the
/// connection failure is reported instead of a time-out). `on_retry(n, error)` is called
/// before retry `n` (1-based) with the error that caused it. A mock transport answers at
/// once, from the mock `key` names, and never touches the network.
pub(crate) async fn send_with_retry(
    transport: &Transport,
    caller: Caller<'_>,
    request: &OutboundRequest,
    timeout: Duration,
    max_bytes: usize,
    retry: RetryPolicy,
    on_retry: impl FnMut(u32, &UpstreamError),
) -> Result<UpstreamResponse, UpstreamError> {
    let Caller { key, trace } = caller;
    match transport {
        Transport::Network(client) => {
            send_over(client, request, timeout, max_bytes, retry, trace, on_retry).await
        }
        Transport::Mock(mocks) => mocks.answer(key, request),
        Transport::Record(client, mocks) => {
            let result =
                send_over(client, request, timeout, max_bytes, retry, trace, on_retry).await;
            mocks.record(key, request, result.as_ref().ok());
            result
        }
    }
}

/// [`send_with_retry`] over the network with `client`.
async fn send_over(
    client: &awc::Client,
    request: &OutboundRequest,
    timeout: Duration,
    max_bytes: usize,
    retry: RetryPolicy,
    trace: Parent<'_>,
    mut on_retry: impl FnMut(u32, &UpstreamError),
) -> Result<UpstreamResponse, UpstreamError> {
    let deadline = Instant::now() + timeout;
    let retries = if RetryPolicy::allows(&request.method) {
        retry.retries
    } else {
        0
    };
    let attempts = async {
        let mut done = 0;
        loop {
            let failed = match traced_exchange(client, request, max_bytes, trace).await {
                Ok(response) => return Ok(response),
                Err(failed) => failed,
            };
            let delay = retry.delay(done);
            let again = failed.before_send
                // Belt and braces: a policy refusal is never retried, however it surfaced.
                && !matches!(failed.error, UpstreamError::Forbidden(_))
                && done < retries
                && Instant::now() + delay < deadline;
            if !again {
                return Err(failed.error);
            }
            done += 1;
            on_retry(done, &failed.error);
            actix_rt::time::sleep(delay).await;
        }
    };
    match actix_rt::time::timeout(timeout, attempts).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

/// One attempt, as a CLIENT span when traced (docs/spec.md §13): the span's context goes
/// upstream in `traceparent` / `tracestate`, its status says how the attempt ended.
async fn traced_exchange(
    client: &awc::Client,
    request: &OutboundRequest,
    max_bytes: usize,
    trace: Parent<'_>,
) -> Result<UpstreamResponse, FailedAttempt> {
    match trace {
        None => exchange(client, request, max_bytes, &[]).await,
        // Boxed: an untraced call does not carry the span's state.
        Some((tracing, parent)) => {
            Box::pin(exchange_in_span(
                client, request, max_bytes, tracing, parent,
            ))
            .await
        }
    }
}

/// [`traced_exchange`] with a tracer: the attempt inside its CLIENT span.
async fn exchange_in_span(
    client: &awc::Client,
    request: &OutboundRequest,
    max_bytes: usize,
    tracing: &crate::trace::Tracing,
    parent: &crate::trace::Context,
) -> Result<UpstreamResponse, FailedAttempt> {
    let (cx, context_headers) = tracing.client(parent, request.method.as_str(), &request.url);
    let attempt = exchange(client, request, max_bytes, context_headers.as_slice());
    // A span whose attempt is dropped (time limit, cancelled run) still ends.
    let guard = crate::trace::EndOnDrop(Some(cx));
    let result = attempt.await;
    let cx = guard.disarm();
    match &result {
        Ok(response) => {
            let error = (response.status >= 400).then(|| response.status.to_string());
            crate::trace::end(&cx, Some(response.status), error.as_deref());
        }
        Err(failed) => crate::trace::end(&cx, None, Some(failed.error.kind())),
    }
    result
}

/// One attempt: connect (or reuse a pooled connection), send, read the whole body.
async fn exchange(
    client: &awc::Client,
    request: &OutboundRequest,
    max_bytes: usize,
    extra: &[(HeaderName, HeaderValue)],
) -> Result<UpstreamResponse, FailedAttempt> {
    let mut builder = client.request(request.method.clone(), request.url.as_str());
    for (name, value) in request.headers.iter().chain(extra) {
        builder = builder.append_header((name.clone(), value.clone()));
    }
    if !request.headers.iter().any(|(name, _)| name == HOST) {
        if let Some(host) = host_header(&request.url) {
            builder = builder.insert_header((HOST, host));
        }
    }
    let sent = match &request.body {
        Some(body) => builder.send_body(body.clone()).await,
        None => builder.send().await,
    };
    let mut response = sent.map_err(|e| FailedAttempt {
        before_send: matches!(&e, SendRequestError::Connect(c) if connect_failure_is_retryable(c)),
        error: classify_send_error(e),
    })?;
    let body = response
        .body()
        .limit(max_bytes)
        .await
        .map_err(|e| match e {
            PayloadError::Overflow => UpstreamError::TooLarge(max_bytes),
            other => UpstreamError::Network(format!(
                "reading the upstream response failed ({})",
                payload_reason(&other)
            )),
        })?;
    let status = response.status().as_u16();
    // The headers are moved out of the response head rather than copied.
    let mut headers = HeaderMap::new();
    let _ = response.map_body(|head, payload| {
        std::mem::swap(&mut headers, &mut head.headers);
        payload
    });
    Ok(UpstreamResponse {
        status,
        headers,
        body,
    })
}

/// The `Host` header awc would add itself (its h1 sender: the URL's host, and its port
/// unless that is 80 or 443), taken from the URL's text: awc's own way parses the host out of
/// the URI again and formats it, about 800 instructions per call. `None` for the shapes
/// left to awc (user info, an IPv6 literal, another scheme).
fn host_header(url: &str) -> Option<HeaderValue> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains(['@', '[']) {
        return None;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if matches!(port.parse::<u16>(), Ok(80 | 443)) => host,
        _ => authority,
    };
    HeaderValue::from_str(host).ok()
}

/// Whether a failure to get a connection may be retried. awc reports these before it writes
/// anything, so the upstream cannot have seen the request: DNS failures, connect time-outs and
/// TCP/TLS-handshake I/O errors (refused, reset, unreachable). Not retried: the address
/// policy's refusal, and `InvalidData` — a TLS certificate or protocol rejection, which
/// would fail the same way again.
fn connect_failure_is_retryable(e: &ConnectError) -> bool {
    match e {
        ConnectError::Resolver(inner) => !inner.is::<ForbiddenAddress>(),
        ConnectError::NoRecords | ConnectError::Timeout => true,
        ConnectError::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

fn payload_reason(e: &PayloadError) -> &'static str {
    match e {
        PayloadError::Incomplete(_) => "the connection closed before the body was complete",
        PayloadError::EncodingCorrupted => "the content encoding is corrupted",
        PayloadError::Overflow => "the body is too large",
        PayloadError::UnknownLength => "the body length is unknown",
        PayloadError::Http2Payload(_) => "HTTP/2 stream error",
        PayloadError::Io(_) => "I/O error",
        _ => "invalid body",
    }
}

fn classify_send_error(e: SendRequestError) -> UpstreamError {
    match e {
        SendRequestError::Url(u) => UpstreamError::InvalidUrl(u.to_string()),
        SendRequestError::Connect(ConnectError::Resolver(inner)) => {
            if let Some(forbidden) = inner.downcast_ref::<ForbiddenAddress>() {
                UpstreamError::Forbidden(forbidden.to_string())
            } else if let Some(none) = inner.downcast_ref::<NoAddresses>() {
                UpstreamError::Network(none.to_string())
            } else {
                UpstreamError::Network("the upstream host name could not be resolved".into())
            }
        }
        SendRequestError::Connect(ConnectError::NoRecords) => {
            UpstreamError::Network("the upstream host name has no address records".into())
        }
        SendRequestError::Connect(ConnectError::Timeout) => {
            UpstreamError::Network("connecting to the upstream timed out".into())
        }
        SendRequestError::Connect(ConnectError::Io(io)) => UpstreamError::Network(format!(
            "could not connect to the upstream ({})",
            io_reason(&io)
        )),
        SendRequestError::Connect(other) => {
            UpstreamError::Network(format!("could not connect to the upstream ({other})"))
        }
        SendRequestError::Send(io) => UpstreamError::Network(format!(
            "sending the request upstream failed ({})",
            io_reason(&io)
        )),
        SendRequestError::Response(_) => {
            UpstreamError::Network("the upstream's answer is not valid HTTP".into())
        }
        SendRequestError::Timeout => UpstreamError::Network("the upstream timed out".into()),
        SendRequestError::Body(_) => {
            UpstreamError::Network("sending the request body failed".into())
        }
        _ => UpstreamError::Network("the upstream exchange failed".into()),
    }
}

fn io_reason(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::ConnectionAborted => "connection aborted",
        K::TimedOut => "timed out",
        K::UnexpectedEof => "connection closed early",
        K::InvalidData => "TLS or protocol error",
        _ => "I/O error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_is_the_one_awc_would_send() {
        // awc's h1 sender: the URI's host, with its port unless that is 80 or 443.
        let by_awc = |url: &str| {
            let uri: awc::http::Uri = url.parse().unwrap();
            let host = uri.host().unwrap();
            match uri.port_u16() {
                None | Some(80) | Some(443) => host.to_string(),
                Some(port) => format!("{host}:{port}"),
            }
        };
        for url in [
            "http://127.0.0.1:18081/oauth/token",
            "https://api.example.com/v1/users?id=7",
            "http://api.example.com:80/x",
            "https://api.example.com:443",
            "http://api.example.com:443/x",
            "https://api.example.com:8443?q=1",
            "http://Api.Example.COM:080/x",
            "http://h.example.com#frag",
        ] {
            let ours = host_header(url).unwrap();
            assert_eq!(ours.to_str().unwrap(), by_awc(url), "{url}");
        }
        // Left to awc.
        for url in [
            "http://user:pw@h.example.com/",
            "http://[::1]:8080/",
            "ftp://h/",
        ] {
            assert!(host_header(url).is_none(), "{url}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = RetryPolicy {
            retries: 10,
            backoff: Duration::from_millis(50),
        };
        let delays: Vec<u128> = (0..7).map(|n| retry.delay(n).as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry.delay(40), MAX_RETRY_BACKOFF);
    }

    #[test]
    fn only_idempotent_methods_are_retried() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(RetryPolicy::allows(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH] {
            assert!(!RetryPolicy::allows(&m), "{m}");
        }
    }

    #[test]
    fn only_failures_to_connect_are_retryable_and_never_a_policy_refusal() {
        use std::io::{Error, ErrorKind};
        let forbidden = ConnectError::Resolver(Box::new(ForbiddenAddress {
            host: "internal.test".into(),
        }));
        assert!(!connect_failure_is_retryable(&forbidden));
        let dns = ConnectError::Resolver(Box::new(Error::other("SERVFAIL")));
        assert!(connect_failure_is_retryable(&dns));
        assert!(connect_failure_is_retryable(&ConnectError::Timeout));
        let refused = ConnectError::Io(Error::from(ErrorKind::ConnectionRefused));
        assert!(connect_failure_is_retryable(&refused));
        let bad_certificate = ConnectError::Io(Error::from(ErrorKind::InvalidData));
        assert!(!connect_failure_is_retryable(&bad_certificate));
        assert!(!connect_failure_is_retryable(&ConnectError::Unresolved));
    }
}

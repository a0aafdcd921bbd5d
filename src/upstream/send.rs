//! Sends one rendered request upstream and reads the response, bounded in time and size.

use std::time::Duration;

use awc::error::{ConnectError, PayloadError, SendRequestError};
use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use awc::http::Method;
use bytes::Bytes;

use super::resolver::{ForbiddenAddress, NoAddresses};

/// A fully rendered upstream request.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
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
pub struct UpstreamResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl UpstreamResponse {
    /// The response's Content-Type, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(awc::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

/// Why an upstream call failed. Messages are safe to show: no body, no secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The step's time limit passed.
    #[error("the upstream did not answer within {0} ms")]
    Timeout(u128),
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

/// Sends `request` with `client`, allowing `timeout` for everything (connect, send, read)
/// and at most `max_bytes` of body.
pub async fn send(
    client: &awc::Client,
    request: &OutboundRequest,
    timeout: Duration,
    max_bytes: usize,
) -> Result<UpstreamResponse, UpstreamError> {
    let exchange = async {
        let mut builder = client.request(request.method.clone(), request.url.as_str());
        for (name, value) in &request.headers {
            builder = builder.append_header((name.clone(), value.clone()));
        }
        let sent = match &request.body {
            Some(body) => builder.send_body(body.clone()).await,
            None => builder.send().await,
        };
        let mut response = sent.map_err(classify_send_error)?;
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
    };
    match actix_rt::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout(timeout.as_millis())),
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

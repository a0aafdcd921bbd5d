//! Reading a request body within bounds: at most `max_bytes`, within `timeout`, with memory
//! allocated as the bytes arrive.
//!
//! A declared `Content-Length` is only ever used to refuse a body that says up front that it
//! is too large; it is never used to size a buffer. Otherwise, a peer that declares 1 MiB and
//! sends two bytes would make the runtime hold 1 MiB for as long as it keeps the connection
//! open (the 2026-12 security probe grew the RSS by 1.1 GB with 1,000 such sockets).
//!
//! The timeout bounds the whole body, not the gap between two reads: a peer trickling one
//! byte a second would otherwise hold its buffer, and whatever slot the caller took for it,
//! indefinitely.

use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::HttpRequest;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::error::Code;
use crate::run::input::RequestError;

/// How much of a body is read, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body accepted, in bytes (declared or sent).
    pub max_bytes: usize,
    /// Time the whole body gets to arrive, from the first read.
    pub timeout: Duration,
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body is larger than `limit` bytes: declared so, or sent so (chunked).
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The whole body did not arrive within `timeout`.
    #[error("the request body did not arrive within {} ms", timeout.as_millis())]
    TimedOut {
        /// The limit.
        timeout: Duration,
    },
    /// The body could not be read: the connection broke, or its framing is invalid.
    #[error("the request body could not be read")]
    Broken,
}

impl BodyError {
    /// The envelope code: `PAYLOAD_TOO_LARGE` (413), `REQUEST_BODY_TIMEOUT` (408) or
    /// `INVALID_REQUEST_BODY` (400).
    pub(crate) fn code(&self) -> Code {
        match self {
            BodyError::TooLarge { .. } => Code::PayloadTooLarge,
            BodyError::TimedOut { .. } => Code::RequestBodyTimeout,
            BodyError::Broken => Code::InvalidRequestBody,
        }
    }
}

impl From<BodyError> for RequestError {
    fn from(e: BodyError) -> Self {
        RequestError::new(e.code(), e.to_string())
    }
}

/// The `Content-Length` a request declares, if it declares a valid one.
pub(crate) fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the body of `req` from `payload` (a `web::Payload`, or any stream of chunks) within
/// `limits`.
///
/// A declared `Content-Length` over the limit is refused before anything is read. Memory
/// grows with the bytes received (at most doubling, never past `max_bytes`), never from the
/// declared length.
pub(crate) async fn read_body<S>(
    req: &HttpRequest,
    payload: S,
    limits: BodyLimits,
) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    collect(declared_length(req), payload, limits)
        .await
        .map(Bytes::from)
}

/// [`read_body`] without the request: `declared` is the length the peer announced.
async fn collect<S>(
    declared: Option<u64>,
    mut payload: S,
    limits: BodyLimits,
) -> Result<Vec<u8>, BodyError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let limit = limits.max_bytes;
    let too_large = BodyError::TooLarge { limit };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let read = async {
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                // actix's own cap on a payload (not set on our routes, but the same answer).
                PayloadError::Overflow => too_large,
                _ => BodyError::Broken,
            })?;
            let needed = body.len() + chunk.len();
            if needed > limit {
                return Err(too_large);
            }
            if needed > body.capacity() {
                // Amortized growth like Vec's own, but capped at the limit: a body just under
                // it never holds twice the limit.
                let target = needed.max(body.capacity().saturating_mul(2)).min(limit);
                body.reserve_exact(target - body.len());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match actix_rt::time::timeout(limits.timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(BodyError::TimedOut {
            timeout: limits.timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    const MIB: usize = 1024 * 1024;

    fn limits(max_bytes: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            timeout: Duration::from_secs(5),
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[actix_rt::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = collect(Some(11), chunks(&[b"hello", b" ", b"world"]), limits(11))
            .await
            .unwrap();
        assert_eq!(body, b"hello world");
        let empty = collect(None, chunks(&[]), limits(0)).await.unwrap();
        assert!(empty.is_empty());
    }

    #[actix_rt::test]
    async fn a_declared_length_sizes_nothing() {
        // 1 MiB declared, 10 bytes sent: the buffer holds about what arrived, not what was
        // announced (BytesMut::with_capacity(declared) held the whole MiB per connection).
        let body = collect(Some(MIB as u64), chunks(&[b"0123456789"]), limits(MIB))
            .await
            .unwrap();
        assert_eq!(body.len(), 10);
        assert!(body.capacity() < 4096, "capacity {}", body.capacity());
    }

    #[actix_rt::test]
    async fn growth_never_passes_the_limit() {
        let part: &'static [u8] = &[b'x'; 1000];
        let parts = vec![part; 1000];
        let body = collect(None, chunks(&parts), limits(1_000_000))
            .await
            .unwrap();
        assert_eq!(body.len(), 1_000_000);
        assert!(body.capacity() <= 1_000_000, "capacity {}", body.capacity());
    }

    #[actix_rt::test]
    async fn too_large_is_the_same_declared_or_sent() {
        let declared = collect(Some(12), chunks(&[b"hello world!"]), limits(11)).await;
        assert_eq!(declared, Err(BodyError::TooLarge { limit: 11 }));
        // Chunked: nothing declared, the limit is passed while reading.
        let sent = collect(None, chunks(&[b"hello", b" world!"]), limits(11)).await;
        assert_eq!(sent, Err(BodyError::TooLarge { limit: 11 }));
        let e = sent.unwrap_err().code();
        assert_eq!((e.status(), e.as_str()), (413, "PAYLOAD_TOO_LARGE"));
    }

    #[actix_rt::test]
    async fn a_broken_body_is_invalid() {
        let broken = stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(PayloadError::Incomplete(None)),
        ]);
        let result = collect(None, broken, limits(MIB)).await;
        assert_eq!(result, Err(BodyError::Broken));
        let e = result.unwrap_err().code();
        assert_eq!((e.status(), e.as_str()), (400, "INVALID_REQUEST_BODY"));
    }

    #[actix_rt::test]
    async fn a_slow_body_times_out_as_a_whole() {
        // A byte every 40 ms never leaves a read waiting long, but the body as a whole takes
        // far longer than the 200 ms it is given.
        let trickle = Box::pin(stream::unfold(0, |n| async move {
            actix_rt::time::sleep(Duration::from_millis(40)).await;
            (n < 100).then_some((Ok(Bytes::from_static(b"x")), n + 1))
        }));
        let started = std::time::Instant::now();
        let limits = BodyLimits {
            max_bytes: MIB,
            timeout: Duration::from_millis(200),
        };
        let result = collect(None, trickle, limits).await;
        assert_eq!(
            result,
            Err(BodyError::TimedOut {
                timeout: Duration::from_millis(200)
            })
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let e = result.unwrap_err().code();
        assert_eq!((e.status(), e.as_str()), (408, "REQUEST_BODY_TIMEOUT"));
    }
}

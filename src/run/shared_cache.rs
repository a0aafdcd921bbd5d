//! The response cache's entries in the shared state (docs/spec.md §11): an answer stored by
//! one replica is written to Redis (sealed, under the SHA-256 of its key) for as long as it can
//! serve or be revalidated, and a replica that misses looks there before calling upstream.
//! An entry is its `http-cache-semantics` policy (JSON), the forced freshness, and the answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use super::cache::Stored;
use crate::upstream::UpstreamResponse;

/// The layout written before everything else, so a change of it reads as a miss.
const VERSION: u8 = 1;
/// How long an answer that can only be revalidated (stale, with a validator) is kept in Redis.
pub(crate) const KEEP_STALE: Duration = Duration::from_secs(600);

/// The Redis name of the entry under `key`.
pub(crate) fn name(key: &[u8]) -> String {
    crate::shared_state::key_name("cache", key)
}

/// `stored` as bytes.
pub(crate) fn encode(stored: &Stored) -> Option<Vec<u8>> {
    let policy = serde_json::to_vec(&stored.policy).ok()?;
    let response = &stored.response;
    let mut out = Vec::with_capacity(policy.len() + response.body.len() + 256);
    out.push(VERSION);
    out.extend_from_slice(&u32::try_from(policy.len()).ok()?.to_le_bytes());
    out.extend_from_slice(&policy);
    let forced = stored
        .forced_until
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    out.extend_from_slice(&forced.to_le_bytes());
    out.extend_from_slice(&response.status.to_le_bytes());
    out.extend_from_slice(&u32::try_from(response.headers.len()).ok()?.to_le_bytes());
    for (name, value) in &response.headers {
        let name = name.as_str().as_bytes();
        out.extend_from_slice(&u16::try_from(name.len()).ok()?.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&u32::try_from(value.len()).ok()?.to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(&response.body);
    Some(out)
}

/// Reads what [`encode`] wrote; `None` for anything else.
pub(crate) fn decode(bytes: &[u8]) -> Option<Stored> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let policy_len = r.u32()? as usize;
    let policy = serde_json::from_slice(r.take(policy_len)?).ok()?;
    let forced = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let forced_until = (forced != 0).then(|| UNIX_EPOCH + Duration::from_millis(forced));
    let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let count = r.u32()?;
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name_len = u16::from_le_bytes(r.take(2)?.try_into().ok()?) as usize;
        let name = HeaderName::from_bytes(r.take(name_len)?).ok()?;
        let value_len = r.u32()? as usize;
        let value = HeaderValue::from_bytes(r.take(value_len)?).ok()?;
        headers.append(name, value);
    }
    Some(Stored {
        policy,
        forced_until,
        response: UpstreamResponse {
            status,
            headers,
            body: Bytes::copy_from_slice(r.0),
        },
    })
}

/// How long Redis keeps `stored`: while it is fresh, and a while longer when it can be
/// revalidated; `None` when it is not worth writing.
pub(crate) fn keep_for(stored: &Stored, now: SystemTime) -> Option<Duration> {
    let fresh = stored.policy.time_to_live(now);
    let forced = stored
        .forced_until
        .and_then(|t| t.duration_since(now).ok())
        .unwrap_or_default();
    let validators = ["etag", "last-modified"]
        .iter()
        .any(|h| stored.response.headers.contains_key(*h));
    let keep = fresh.max(forced)
        + if validators {
            KEEP_STALE
        } else {
            Duration::ZERO
        };
    (!keep.is_zero()).then_some(keep)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

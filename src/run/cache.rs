//! The response cache of GET/HEAD simple connectors with `cache_ttl_seconds`: keyed by the
//! whole rendered request (method, URL, headers including credentials, body), 2xx answers
//! only, bounded by the total size of the cached bodies.

use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::upstream::{OutboundRequest, UpstreamResponse};

/// A cached answer and when it stops being fresh.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    expires: Instant,
    response: UpstreamResponse,
}

/// Weighs entries by their size, so the cache is bounded in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BySize;

impl Weighter<Vec<u8>, Cached> for BySize {
    fn weight(&self, key: &Vec<u8>, value: &Cached) -> u64 {
        (key.len() + value.response.body.len() + 256) as u64
    }
}

/// Cached upstream answers, shared by every worker.
pub struct ResponseCache {
    entries: Cache<Vec<u8>, Cached, BySize>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("bytes", &self.entries.weight())
            .finish()
    }
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of keys and bodies.
    pub(crate) fn new(max_bytes: u64) -> Self {
        ResponseCache {
            entries: Cache::with_weighter(1024, max_bytes.max(1), BySize),
        }
    }

    /// The key of a rendered request: every part that can change the answer, credentials
    /// included, so two callers never share an answer meant for different credentials.
    pub(crate) fn key(request: &OutboundRequest) -> Vec<u8> {
        let mut key = Vec::with_capacity(request.url.len() + 64 * request.headers.len() + 16);
        key.extend_from_slice(request.method.as_str().as_bytes());
        key.push(0);
        key.extend_from_slice(request.url.as_bytes());
        for (name, value) in &request.headers {
            key.push(0);
            key.extend_from_slice(name.as_str().as_bytes());
            key.push(b':');
            key.extend_from_slice(value.as_bytes());
        }
        key.push(0);
        if let Some(body) = &request.body {
            key.extend_from_slice(body);
        }
        key
    }

    /// A fresh answer for `key`, if one is cached.
    pub(crate) fn get(&self, key: &[u8]) -> Option<UpstreamResponse> {
        let cached = self.entries.get(key)?;
        if cached.expires > Instant::now() {
            Some(cached.response)
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// Keeps a 2xx `response` for `ttl`.
    pub(crate) fn insert(&self, key: Vec<u8>, response: &UpstreamResponse, ttl: Duration) {
        if (200..300).contains(&response.status) {
            self.entries.insert(
                key,
                Cached {
                    expires: Instant::now() + ttl,
                    response: response.clone(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
    use awc::http::Method;
    use bytes::Bytes;

    fn request(token: &'static str) -> OutboundRequest {
        OutboundRequest {
            method: Method::GET,
            url: "https://api.example.com/items/1".into(),
            headers: vec![(
                HeaderName::from_static("authorization"),
                HeaderValue::from_static(token),
            )],
            body: None,
        }
    }

    fn answer(status: u16) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn answers_are_kept_per_credential_for_their_ttl_and_only_when_2xx() {
        let cache = ResponseCache::new(1 << 20);
        let (alice, bob) = (
            ResponseCache::key(&request("Bearer a")),
            ResponseCache::key(&request("Bearer b")),
        );
        assert_ne!(alice, bob);
        cache.insert(alice.clone(), &answer(200), Duration::from_secs(60));
        assert!(cache.get(&alice).is_some());
        assert!(cache.get(&bob).is_none());
        cache.insert(bob.clone(), &answer(503), Duration::from_secs(60));
        assert!(cache.get(&bob).is_none());
        cache.insert(bob.clone(), &answer(200), Duration::from_millis(0));
        assert!(cache.get(&bob).is_none(), "expired answers are not served");
    }
}

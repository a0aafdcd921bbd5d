//! The OAuth token cache: tokens kept until shortly before they expire, keyed by everything
//! that identifies a grant, with at most one token request in flight per key (concurrent
//! runs wait for it and share the result).

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// A token as the token endpoint gave it.
#[derive(Debug, Clone)]
pub(crate) struct FetchedToken {
    /// The bearer token.
    pub access_token: String,
    /// How long to reuse it (`None`: do not cache).
    pub cache_for: Option<Duration>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: Arc<str>,
    expires_at: Instant,
}

#[derive(Debug, Default)]
struct TokenSlot {
    current: RwLock<Option<CachedToken>>,
    refill: tokio::sync::Mutex<()>,
}

impl TokenSlot {
    fn valid(&self) -> Option<Arc<str>> {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|t| t.expires_at > Instant::now())
            .map(|t| t.token.clone())
    }
}

/// Whether a token came from the cache or was just fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenOrigin {
    /// Served from the cache.
    Cached,
    /// Fetched from the token endpoint (this run, or a concurrent run it waited for).
    Fetched,
}

/// Tokens by grant key.
#[derive(Debug, Default)]
pub struct TokenCache {
    slots: DashMap<String, Arc<TokenSlot>>,
}

impl TokenCache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn slot(&self, key: &str) -> Arc<TokenSlot> {
        if let Some(slot) = self.slots.get(key) {
            return slot.clone();
        }
        self.slots.entry(key.to_string()).or_default().clone()
    }

    /// The cached token for `key`, or the one `fetch` gets. Only one `fetch` per key runs
    /// at a time; runs that arrive meanwhile wait and reuse its token.
    pub(crate) async fn get<F, Fut, E>(
        &self,
        key: &str,
        fetch: F,
    ) -> Result<(Arc<str>, TokenOrigin), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, E>>,
    {
        let slot = self.slot(key);
        if let Some(token) = slot.valid() {
            return Ok((token, TokenOrigin::Cached));
        }
        let _refill = slot.refill.lock().await;
        if let Some(token) = slot.valid() {
            return Ok((token, TokenOrigin::Fetched));
        }
        let fetched = fetch().await?;
        let token: Arc<str> = fetched.access_token.into();
        if let Some(ttl) = fetched.cache_for.filter(|d| !d.is_zero()) {
            *slot.current.write().unwrap_or_else(|e| e.into_inner()) = Some(CachedToken {
                token: token.clone(),
                expires_at: Instant::now() + ttl,
            });
        }
        Ok((token, TokenOrigin::Fetched))
    }

    /// Drops `token` for `key` (an upstream rejected it), unless a newer one replaced it.
    pub(crate) fn invalidate(&self, key: &str, token: &str) {
        if let Some(slot) = self.slots.get(key) {
            let mut current = slot.current.write().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|t| &*t.token == token) {
                *current = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[actix_rt::test]
    async fn concurrent_callers_share_one_fetch_and_invalidate_forces_a_new_one() {
        let cache = Arc::new(TokenCache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            handles.push(actix_rt::spawn(async move {
                cache
                    .get("k", || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        actix_rt::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(FetchedToken {
                            access_token: "t1".into(),
                            cache_for: Some(Duration::from_secs(60)),
                        })
                    })
                    .await
                    .unwrap()
                    .0
            }));
        }
        for h in handles {
            assert_eq!(&*h.await.unwrap(), "t1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        cache.invalidate("k", "t1");
        let (token, origin) = cache
            .get("k", || async {
                Ok::<_, ()>(FetchedToken {
                    access_token: "t2".into(),
                    cache_for: None,
                })
            })
            .await
            .unwrap();
        assert_eq!((&*token, origin), ("t2", TokenOrigin::Fetched));
    }
}

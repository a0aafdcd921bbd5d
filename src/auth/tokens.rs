//! The OAuth token cache: tokens kept until shortly before they expire, keyed by everything
//! that identifies a grant, with at most one token request in flight per key (concurrent
//! runs wait for it and share the result). With shared state (docs/spec.md §11) the token
//! lives in Redis too, sealed, and one request per key runs across every replica: the first
//! takes a lock with an expiry and fetches, the others poll Redis until the token lands (or
//! the lock expires, when one of them takes it over). Redis away: this replica fetches its own.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::shared_state::{key_name, Op, SharedState};

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

    fn keep(&self, token: Arc<str>, ttl: Duration) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(CachedToken {
            token,
            expires_at: Instant::now() + ttl,
        });
    }
}

/// Whether a token came from the cache or was just fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenOrigin {
    /// Served from this replica's cache.
    Cached,
    /// Served from the shared state (fetched by another replica, or earlier).
    Shared,
    /// Fetched from the token endpoint (this run, or a concurrent run it waited for).
    Fetched,
}

/// How often a replica waiting for another's token request looks in Redis.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Tokens by grant key.
#[derive(Debug, Default)]
pub struct TokenCache {
    slots: DashMap<String, Arc<TokenSlot>>,
    shared: Option<Arc<SharedState>>,
}

/// A token as Redis keeps it (sealed): when it expires (ms since the Unix epoch), then the token.
fn encode(token: &str, ttl: Duration) -> Vec<u8> {
    let expires = SystemTime::now() + ttl;
    let ms = expires
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = Vec::with_capacity(8 + token.len());
    out.extend_from_slice(&ms.to_le_bytes());
    out.extend_from_slice(token.as_bytes());
    out
}

/// The token and how long it is still good for; `None` when it has expired.
fn decode(stored: &[u8]) -> Option<(Arc<str>, Duration)> {
    let (ms, token) = stored.split_at_checked(8)?;
    let expires = UNIX_EPOCH + Duration::from_millis(u64::from_le_bytes(ms.try_into().ok()?));
    let left = expires.duration_since(SystemTime::now()).ok()?;
    let token = std::str::from_utf8(token).ok()?;
    (!left.is_zero() && !token.is_empty()).then(|| (Arc::from(token), left))
}

impl TokenCache {
    /// An empty cache; tokens are shared through `shared` when given.
    pub(crate) fn new(shared: Option<Arc<SharedState>>) -> Self {
        TokenCache {
            slots: DashMap::new(),
            shared,
        }
    }

    fn slot(&self, key: &str) -> Arc<TokenSlot> {
        if let Some(slot) = self.slots.get(key) {
            return slot.clone();
        }
        self.slots.entry(key.to_string()).or_default().clone()
    }

    /// The cached token for `key`, or the one `fetch` gets. Only one `fetch` per key runs
    /// at a time (across replicas when the state is shared; `fetch_within` bounds one fetch,
    /// and so how long another replica's lock is honoured); runs that arrive meanwhile wait
    /// and reuse its token.
    pub(crate) async fn get<F, Fut, E>(
        &self,
        key: &str,
        fetch_within: Duration,
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
        let mut fetch = Some(fetch);
        if let Some(shared) = &self.shared {
            // `None`: Redis is away, so this replica fetches its own.
            if let Some(result) =
                Self::from_cluster(shared, &slot, key, fetch_within, &mut fetch).await
            {
                return result;
            }
        }
        let fetch = fetch.take().expect("not fetched yet");
        let fetched = fetch().await?;
        Ok((Self::keep(&slot, fetched), TokenOrigin::Fetched))
    }

    fn keep(slot: &TokenSlot, fetched: FetchedToken) -> Arc<str> {
        let token: Arc<str> = fetched.access_token.into();
        if let Some(ttl) = fetched.cache_for.filter(|d| !d.is_zero()) {
            slot.keep(token.clone(), ttl);
        }
        token
    }

    /// The token through the cluster: Redis' copy, or this replica fetches it under the
    /// cluster's lock, or waits for the replica that holds it. `None` when Redis is away
    /// (`fetch` not used).
    async fn from_cluster<F, Fut, E>(
        shared: &SharedState,
        slot: &TokenSlot,
        key: &str,
        fetch_within: Duration,
        fetch: &mut Option<F>,
    ) -> Option<Result<(Arc<str>, TokenOrigin), E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FetchedToken, E>>,
    {
        let name = key_name("token", key.as_bytes());
        let lock = key_name("token-lock", key.as_bytes());
        // A holder has this long to fetch and write the token; then its lock expires and a
        // waiter takes over.
        let lock_for = fetch_within + Duration::from_secs(1);
        let give_up = Instant::now() + lock_for + Duration::from_millis(500);
        let stored = |plain: Option<Vec<u8>>| {
            let (token, left) = decode(&plain?)?;
            slot.keep(token.clone(), left);
            Some(Ok((token, TokenOrigin::Shared)))
        };
        loop {
            let found = shared.get_sealed(Op::TokenGet, &name).await.ok()?;
            if let Some(done) = stored(found) {
                return Some(done);
            }
            match shared.try_lock(&lock, lock_for).await.ok()? {
                Some(held) => {
                    // Another replica may have written it between the read and the lock.
                    if let Ok(found) = shared.get_sealed(Op::TokenGet, &name).await {
                        if let Some(done) = stored(found) {
                            shared.unlock(&lock, &held).await;
                            return Some(done);
                        }
                    }
                    let fetch = fetch.take().expect("fetched once");
                    let result = match fetch().await {
                        Ok(fetched) => {
                            if let Some(ttl) = fetched.cache_for.filter(|d| !d.is_zero()) {
                                let plain = encode(&fetched.access_token, ttl);
                                let _ = shared.put_sealed(Op::TokenPut, &name, &plain, ttl).await;
                            }
                            Ok((Self::keep(slot, fetched), TokenOrigin::Fetched))
                        }
                        Err(e) => Err(e),
                    };
                    shared.unlock(&lock, &held).await;
                    return Some(result);
                }
                None if Instant::now() >= give_up => return None,
                None => tokio::time::sleep(POLL_EVERY).await,
            }
        }
    }

    /// Drops `token` for `key` (an upstream rejected it), unless a newer one replaced it;
    /// in the shared state too.
    pub(crate) async fn invalidate(&self, key: &str, token: &str) {
        if let Some(slot) = self.slots.get(key) {
            let mut current = slot.current.write().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|t| &*t.token == token) {
                *current = None;
            }
        }
        if let Some(shared) = &self.shared {
            let name = key_name("token", key.as_bytes());
            if let Ok(Some(plain)) = shared.get_sealed(Op::TokenGet, &name).await {
                if decode(&plain).is_some_and(|(t, _)| &*t == token) {
                    let _ = shared.delete(Op::TokenPut, &name).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn stored_tokens_round_trip_until_they_expire() {
        let (token, left) = decode(&encode("t1", Duration::from_secs(60))).unwrap();
        assert_eq!(&*token, "t1");
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60));
        let mut expired = encode("t1", Duration::ZERO);
        expired[..8].copy_from_slice(&1u64.to_le_bytes());
        assert!(decode(&expired).is_none());
        assert!(decode(b"short").is_none());
    }

    #[actix_rt::test]
    async fn concurrent_callers_share_one_fetch_and_invalidate_forces_a_new_one() {
        let cache = Arc::new(TokenCache::new(None));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            handles.push(actix_rt::spawn(async move {
                cache
                    .get("k", Duration::from_secs(1), || async {
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
        cache.invalidate("k", "t1").await;
        let (token, origin) = cache
            .get("k", Duration::from_secs(1), || async {
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

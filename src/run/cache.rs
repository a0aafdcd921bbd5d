//! The response cache (docs/spec.md §10): an RFC 9111 *shared* cache of GET and HEAD calls,
//! as the platform caches. Freshness, `Vary`, `no-store`, `no-cache`, `private`,
//! `must-revalidate`, the `Authorization` rule and revalidation are decided by
//! `http-cache-semantics`; this module keys, stores, collapses concurrent misses and keeps
//! the cache bounded in bytes.
//!
//! The key is the whole rendered request without its credential, plus the credential's
//! identity (the api key, or every input of the grant): answers for different credentials
//! or members never mix, and a hit needs no token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use awc::http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, ETAG, EXPIRES, LAST_MODIFIED,
};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use tokio::sync::watch;

use super::shared_cache;
use crate::events::{CacheEvicted, CacheSized};
use crate::metrics::Metrics;
use crate::shared_state::{Op, SharedState};
use crate::upstream::{OutboundRequest, UpstreamResponse};

/// Statuses stored (the platform's: docs/spec.md §10).
const STORED_STATUSES: [u16; 3] = [200, 301, 308];
/// How long a key whose answer could not be stored goes straight upstream, without waiting
/// behind a request in flight for the same key (Varnish's hit-for-pass).
const PASS_FOR: Duration = Duration::from_secs(30);
/// How many such keys are remembered.
const PASS_KEYS: usize = 16_384;
/// The largest `Age` and freshness lifetime taken as they are (RFC 9111 §1.2.2: greater
/// values are taken as 2^31 seconds).
const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// How a call's answer was found (the `result` label and the `Server-Timing` desc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStatus {
    /// The call is not cached (not GET/HEAD, or `cache: "off"`).
    #[default]
    Off,
    /// A fresh stored answer was served.
    Hit,
    /// A stale stored answer was revalidated: the upstream answered 304.
    Revalidated,
    /// The upstream was called and its answer stored.
    Miss,
    /// The upstream was called and its answer may not be stored.
    Uncacheable,
}

impl CacheStatus {
    /// The `result` label of `connector_response_cache_requests_total`.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            CacheStatus::Off => "off",
            CacheStatus::Hit => "hit",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Miss => "miss",
            CacheStatus::Uncacheable => "uncacheable",
        }
    }

    /// Whether the cache served or stored the answer (what composite timings report).
    pub(crate) fn involved(self) -> bool {
        matches!(
            self,
            CacheStatus::Hit | CacheStatus::Revalidated | CacheStatus::Miss
        )
    }

    /// The `Server-Timing` desc: `Cache Hit`, `Cache Revalidated` or `Cache Miss`.
    pub(crate) fn desc(self) -> &'static str {
        match self {
            CacheStatus::Hit => "Cache Hit",
            CacheStatus::Revalidated => "Cache Revalidated",
            CacheStatus::Off | CacheStatus::Miss | CacheStatus::Uncacheable => "Cache Miss",
        }
    }
}

/// A stored answer and what decides its reuse.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(super) policy: CachePolicy,
    /// `cache_ttl_seconds` freshness, for an answer the upstream gave none.
    pub(super) forced_until: Option<SystemTime>,
    pub(super) response: UpstreamResponse,
}

/// What the cache holds for a key.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// An answer and its policy.
    Stored(Arc<Stored>),
}

/// What a look-up found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A fresh answer: serve it.
    Fresh(UpstreamResponse),
    /// A stored answer that must be revalidated: send the request with `conditional`.
    Stale {
        /// The stored answer.
        stored: Arc<Stored>,
        /// `If-None-Match` / `If-Modified-Since`.
        conditional: Vec<(HeaderName, HeaderValue)>,
    },
    /// Nothing stored: the first caller calls upstream, the others wait for it.
    Miss,
    /// The key's answers cannot be stored: call upstream at once.
    Pass,
}

/// Weighs entries by their size, so the cache is bounded in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BySize;

impl Weighter<Vec<u8>, Entry> for BySize {
    fn weight(&self, key: &Vec<u8>, value: &Entry) -> u64 {
        let Entry::Stored(s) = value;
        let stored = s.response.body.len()
            + s.response
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 32)
                .sum::<usize>()
            + 512;
        (key.len() + stored) as u64
    }
}

/// Counts evictions.
#[derive(Clone)]
pub(crate) struct Evictions(Arc<Metrics>);

impl Lifecycle<Vec<u8>, Entry> for Evictions {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), _: Vec<u8>, _: Entry) {
        CacheEvicted.emit(&self.0);
    }
}

/// Cached upstream answers, shared by every worker.
pub struct ResponseCache {
    entries: Cache<Vec<u8>, Entry, BySize, DefaultHashBuilder, Evictions>,
    /// Keys whose last answer could not be stored, until when they go straight upstream
    /// (bounded by count, apart from the answers' byte budget: a busy uncacheable connector
    /// never evicts stored answers).
    passes: Cache<Vec<u8>, Instant>,
    /// Keys being fetched, each with the channel its waiters watch (closed when done).
    in_flight: Mutex<HashMap<Vec<u8>, watch::Sender<()>>>,
    metrics: Arc<Metrics>,
    /// Other replicas' answers, and where this one's go (docs/spec.md §11).
    cluster: Option<Arc<SharedState>>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("bytes", &self.entries.weight())
            .finish()
    }
}

/// A caller fetching a key that others may wait for; they are woken when it is dropped.
#[derive(Debug)]
pub(crate) struct Flight<'c> {
    cache: &'c ResponseCache,
    key: Vec<u8>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // Dropping the sender closes the channel: every waiter wakes.
        if let Ok(mut in_flight) = self.cache.in_flight.lock() {
            in_flight.remove(&self.key);
        }
    }
}

/// The options of a shared cache; no heuristic freshness (an API answer without
/// `Cache-Control` or `Expires` is not guessed fresh from its `Last-Modified`).
fn options() -> CacheOptions {
    CacheOptions {
        shared: true,
        cache_heuristic: 0.0,
        ..CacheOptions::default()
    }
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of keys and answers, each answer at most
    /// `max_answer_bytes` (`--max-response-bytes`) long; shared with other replicas through
    /// `cluster` when given.
    pub(crate) fn new(
        max_bytes: u64,
        max_answer_bytes: usize,
        metrics: Arc<Metrics>,
        cluster: Option<Arc<SharedState>>,
    ) -> Self {
        let max_bytes = max_bytes.max(1);
        // The bound is split over shards, and a shard refuses an entry larger than its
        // share: enough shards for concurrency, few enough that the largest answer fits.
        let largest = (max_answer_bytes as u64).saturating_add(64 * 1024);
        let shards = (max_bytes / largest).clamp(1, 32) as usize;
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(1024)
            .weight_capacity(max_bytes)
            .shards(shards)
            .build()
            .expect("valid cache options");
        ResponseCache {
            entries: Cache::with_options(
                options,
                BySize,
                DefaultHashBuilder::default(),
                Evictions(metrics.clone()),
            ),
            passes: Cache::new(PASS_KEYS),
            in_flight: Mutex::new(HashMap::new()),
            metrics,
            cluster,
        }
    }

    /// Looks for `key` in the shared state (after a miss here, as the one caller leading
    /// its fetch) and keeps what another replica stored: whether there was something.
    pub(crate) async fn load_from_cluster(&self, key: &[u8]) -> bool {
        let Some(cluster) = &self.cluster else {
            return false;
        };
        let Ok(Some(bytes)) = cluster
            .get_sealed(Op::CacheGet, &shared_cache::name(key))
            .await
        else {
            return false;
        };
        let Some(stored) = shared_cache::decode(&bytes) else {
            return false;
        };
        self.entries
            .insert(key.to_vec(), Entry::Stored(Arc::new(stored)));
        true
    }

    /// Writes `stored` to the shared state, in the background (the run does not wait).
    fn share(&self, key: &[u8], stored: &Stored) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let (Some(bytes), Some(ttl)) = (
            shared_cache::encode(stored),
            shared_cache::keep_for(stored, SystemTime::now()),
        ) else {
            return;
        };
        let cluster = cluster.clone();
        let name = shared_cache::name(key);
        actix_rt::spawn(async move {
            let _ = cluster.put_sealed(Op::CachePut, &name, &bytes, ttl).await;
        });
    }

    /// The key of a call: its namespace (the connector's `permalink` and the step's
    /// `index`), the request without its credential (method, URL, headers, body) and the
    /// credential's `identity`.
    pub(crate) fn key(
        permalink: &str,
        index: usize,
        request: &OutboundRequest,
        identity: &str,
    ) -> Vec<u8> {
        let mut key = Vec::with_capacity(
            permalink.len() + request.url.len() + 64 * request.headers.len() + identity.len() + 24,
        );
        key.extend_from_slice(permalink.as_bytes());
        key.push(0);
        key.extend_from_slice(&index.to_le_bytes());
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
        key.extend_from_slice(identity.as_bytes());
        key.push(0);
        if let Some(body) = &request.body {
            key.extend_from_slice(body);
        }
        key
    }

    /// What is stored for `key`, for `request` (without its credential; `authorization`:
    /// the credential is an `Authorization` header).
    pub(crate) fn lookup(
        &self,
        key: &[u8],
        request: &OutboundRequest,
        authorization: bool,
    ) -> Lookup {
        if let Some(until) = self.passes.get(key) {
            if Instant::now() < until {
                return Lookup::Pass;
            }
            self.passes.remove(key);
        }
        let Some(Entry::Stored(stored)) = self.entries.get(key) else {
            return Lookup::Miss;
        };
        let now = SystemTime::now();
        if stored.forced_until.is_some_and(|until| now < until) {
            return Lookup::Fresh(stored.response.clone());
        }
        let Some(parts) = request_parts(request, authorization) else {
            return Lookup::Miss;
        };
        match stored.policy.before_request(&parts, now) {
            BeforeRequest::Fresh(_) => Lookup::Fresh(stored.response.clone()),
            BeforeRequest::Stale {
                request,
                matches: true,
            } => {
                let conditional = ["if-none-match", "if-modified-since"]
                    .into_iter()
                    .filter_map(|name| {
                        let value = request.headers.get(name)?;
                        Some((
                            HeaderName::from_static(name),
                            HeaderValue::from_bytes(value.as_bytes()).ok()?,
                        ))
                    })
                    .collect::<Vec<_>>();
                if conditional.is_empty() {
                    // Nothing to revalidate with: fetch it anew.
                    Lookup::Miss
                } else {
                    Lookup::Stale {
                        stored,
                        conditional,
                    }
                }
            }
            BeforeRequest::Stale { matches: false, .. } => Lookup::Miss,
        }
    }

    /// Leads the fetch of `key`, or waits for the caller leading it: `Some` to the leader,
    /// `None` once the leader is done (look the key up again; what it could not store, each
    /// waiter then fetches itself, at once).
    pub(crate) async fn lead_or_wait(&self, key: &[u8]) -> Option<Flight<'_>> {
        let mut waiter = {
            let mut in_flight = self.in_flight.lock().ok()?;
            match in_flight.get(key) {
                Some(sender) => sender.subscribe(),
                None => {
                    in_flight.insert(key.to_vec(), watch::channel(()).0);
                    return Some(Flight {
                        cache: self,
                        key: key.to_vec(),
                    });
                }
            }
        };
        // Nothing is ever sent: this returns when the leader drops the sender.
        let _ = waiter.changed().await;
        None
    }

    /// Stores the answer to `request` (without its credential; `authorization` as for
    /// [`ResponseCache::lookup`]) under `key` if RFC 9111 allows it, or with `forced_ttl`
    /// when the upstream gave no freshness and did not forbid storing.
    pub(crate) fn store(
        &self,
        key: Vec<u8>,
        request: &OutboundRequest,
        authorization: bool,
        response: &UpstreamResponse,
        forced_ttl: Option<Duration>,
    ) -> CacheStatus {
        let status = match self.storable(request, authorization, response, forced_ttl) {
            Some(stored) => {
                self.passes.remove(&key);
                self.share(&key, &stored);
                self.entries.insert(key, Entry::Stored(Arc::new(stored)));
                CacheStatus::Miss
            }
            None => {
                self.entries.remove(&key);
                self.passes.insert(key, Instant::now() + PASS_FOR);
                CacheStatus::Uncacheable
            }
        };
        CacheSized {
            bytes: self.entries.weight(),
        }
        .emit(&self.metrics);
        status
    }

    /// Whether `response` could be stored at all: it carries a caching header (most API
    /// answers carry none, and need no policy built), or the call forces a freshness.
    pub(crate) fn may_store(response: &UpstreamResponse, forced_ttl: Option<Duration>) -> bool {
        let has = |name: &HeaderName| response.headers.contains_key(name);
        forced_ttl.is_some()
            || has(&CACHE_CONTROL)
            || has(&EXPIRES)
            || has(&ETAG)
            || has(&LAST_MODIFIED)
    }

    fn storable(
        &self,
        request: &OutboundRequest,
        authorization: bool,
        response: &UpstreamResponse,
        forced_ttl: Option<Duration>,
    ) -> Option<Stored> {
        if !Self::may_store(response, forced_ttl) || vary_star(&response.headers) {
            return None;
        }
        let now = SystemTime::now();
        let response_parts = response_parts(response.status, &response.headers)?;
        let policy = CachePolicy::new_options(
            &request_parts(request, authorization)?,
            &response_parts,
            now,
            options(),
        );
        let forced_until = forced_until(&response_parts, forced_ttl, now);
        let has = |name: &HeaderName| response.headers.contains_key(name);
        let validators = has(&ETAG) || has(&LAST_MODIFIED);
        let by_rfc = policy.is_storable()
            && STORED_STATUSES.contains(&response.status)
            && (!policy.time_to_live(now).is_zero() || validators);
        (by_rfc || forced_until.is_some()).then(|| Stored {
            policy,
            forced_until,
            response: response.clone(),
        })
    }

    /// The upstream answered `response` to the revalidation of `stored` (sent as
    /// `request`, without its credential): a matching 304 refreshes the stored answer
    /// (its headers, its freshness, `forced_ttl` again) and serves it; anything else is a
    /// new answer (`None`: send it and store it as a miss).
    pub(crate) fn revalidated(
        &self,
        key: &[u8],
        stored: &Stored,
        request: &OutboundRequest,
        authorization: bool,
        response: &UpstreamResponse,
        forced_ttl: Option<Duration>,
    ) -> Option<UpstreamResponse> {
        if response.status != 304 {
            return None;
        }
        let now = SystemTime::now();
        let after = stored.policy.after_response(
            &request_parts(request, authorization)?,
            &response_parts(response.status, &response.headers)?,
            now,
        );
        let AfterResponse::NotModified(policy, parts) = after else {
            return None;
        };
        let mut refreshed = stored.response.clone();
        refreshed.headers = header_map_from(&parts.headers);
        let merged = response_parts(refreshed.status, &refreshed.headers)?;
        let stored = Stored {
            policy,
            forced_until: forced_until(&merged, forced_ttl, now),
            response: refreshed.clone(),
        };
        self.share(key, &stored);
        self.entries
            .insert(key.to_vec(), Entry::Stored(Arc::new(stored)));
        CacheSized {
            bytes: self.entries.weight(),
        }
        .emit(&self.metrics);
        Some(refreshed)
    }
}

/// Until when `cache_ttl_seconds` keeps an answer fresh: for a stored status whose headers
/// give no freshness (`max-age`, `s-maxage`, `Expires`) and do not forbid reuse
/// (`no-store`, `no-cache`, `private`).
fn forced_until(
    response: &http::response::Parts,
    forced_ttl: Option<Duration>,
    now: SystemTime,
) -> Option<SystemTime> {
    let ttl = forced_ttl?;
    let headers = &response.headers;
    let explicit = headers.contains_key("expires")
        || directive(headers, "max-age")
        || directive(headers, "s-maxage");
    let forbidden = ["no-store", "no-cache", "private"]
        .iter()
        .any(|d| directive(headers, d));
    let status_ok = STORED_STATUSES.contains(&response.status.as_u16());
    (!explicit && !forbidden && status_ok).then(|| now + ttl)
}

/// Whether the `Cache-Control` of `headers` has `directive` (names only, already lower-case
/// in [`response_parts`]; values are the policy's business).
fn directive(headers: &http::HeaderMap, directive: &str) -> bool {
    headers
        .get_all("cache-control")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            d.split('=')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case(directive))
        })
}

/// `Vary: *`: no later request can be known to match.
fn vary_star(headers: &HeaderMap) -> bool {
    headers
        .get_all("vary")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*")
}

// The upstream client speaks `http` 0.2 (awc), the policy `http` 1: these copy between them.

/// The request as the policy sees it: without its credential (so that the URI and `Vary`
/// match the look-ups, which happen before any credential exists), with a stand-in
/// `Authorization` when the credential is one (the shared-cache rule for authenticated
/// requests applies; the key already tells credentials apart).
fn request_parts(request: &OutboundRequest, authorization: bool) -> Option<http::request::Parts> {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.url.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    if authorization && !request.headers.iter().any(|(n, _)| n == "authorization") {
        builder = builder.header("authorization", "credential");
    }
    builder.body(()).ok().map(|r| r.into_parts().0)
}

/// The answer as the policy sees it, normalised as RFC 9111 asks of a cache: `Cache-Control`
/// directive names compared without case (§5.2), and delta-seconds (`Age`, `max-age`,
/// `s-maxage`) beyond 2^31 taken as 2^31 (§1.2.2).
fn response_parts(status: u16, headers: &HeaderMap) -> Option<http::response::Parts> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        let name = name.as_str();
        let value = match name {
            "cache-control" => {
                let Ok(text) = value.to_str() else {
                    continue;
                };
                normalised_cache_control(text)
            }
            "age" => {
                let Ok(text) = value.to_str() else {
                    continue;
                };
                delta_seconds(text.trim()).unwrap_or_else(|| text.to_string())
            }
            _ => {
                builder = builder.header(name, value.as_bytes());
                continue;
            }
        };
        builder = builder.header(name, value);
    }
    builder.body(()).ok().map(|r| r.into_parts().0)
}

/// `text` as a delta-seconds capped at 2^31, if it is one (digits only).
fn delta_seconds(text: &str) -> Option<String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let capped = text
        .parse::<u64>()
        .map_or(MAX_DELTA_SECONDS, |n| n.min(MAX_DELTA_SECONDS));
    Some(capped.to_string())
}

/// A `Cache-Control` value with lower-case directive names and capped delta-seconds.
fn normalised_cache_control(text: &str) -> String {
    text.split(',')
        .map(|directive| {
            let directive = directive.trim();
            match directive.split_once('=') {
                Some((name, value)) => {
                    let name = name.trim().to_ascii_lowercase();
                    let value = value.trim();
                    let value = match name.as_str() {
                        "max-age" | "s-maxage" => {
                            delta_seconds(value).unwrap_or_else(|| value.to_string())
                        }
                        _ => value.to_string(),
                    };
                    format!("{name}={value}")
                }
                None => directive.to_ascii_lowercase(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn header_map_from(headers: &http::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::http::Method;
    use bytes::Bytes;

    fn request(token: &'static str) -> OutboundRequest {
        OutboundRequest {
            method: Method::GET,
            url: "https://api.example.com/items/1".into(),
            headers: vec![(
                HeaderName::from_static("x-token"),
                HeaderValue::from_static(token),
            )],
            body: None,
        }
    }

    fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> UpstreamResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        UpstreamResponse {
            status,
            headers: map,
            body: Bytes::from_static(b"{}"),
        }
    }

    fn cache() -> ResponseCache {
        ResponseCache::new(1 << 20, 64 * 1024, Metrics::new(), None)
    }

    #[test]
    fn keys_differ_by_namespace_request_and_credential_identity() {
        let key = |ns, token, identity| ResponseCache::key(ns, 0, &request(token), identity);
        let base = key("a/0", "t", "");
        assert_ne!(base, key("b/0", "t", ""));
        assert_ne!(base, key("a/0", "u", ""));
        assert_ne!(base, key("a/0", "t", "api-key-1"));
        assert_eq!(base, key("a/0", "t", ""));
    }

    #[test]
    fn fresh_answers_are_served_and_others_are_not_stored() {
        let cache = cache();
        let req = request("t");
        let key = ResponseCache::key("c", 0, &req, "");
        assert!(matches!(cache.lookup(&key, &req, false), Lookup::Miss));
        let fresh = answer(200, &[("cache-control", "max-age=60")]);
        assert_eq!(
            cache.store(key.clone(), &req, false, &fresh, None),
            CacheStatus::Miss
        );
        assert!(matches!(cache.lookup(&key, &req, false), Lookup::Fresh(_)));
        for headers in [
            &[("cache-control", "no-store, max-age=60")][..],
            &[("cache-control", "private, max-age=60")],
            &[("cache-control", "max-age=60"), ("vary", "*")],
            &[],
        ] {
            let key = ResponseCache::key("other", 0, &req, &format!("{headers:?}"));
            assert_eq!(
                cache.store(key.clone(), &req, false, &answer(200, headers), None),
                CacheStatus::Uncacheable,
                "{headers:?}"
            );
            assert!(matches!(cache.lookup(&key, &req, false), Lookup::Pass));
        }
        let key = ResponseCache::key("status", 0, &req, "");
        let server_error = answer(503, &[("cache-control", "max-age=60")]);
        assert_eq!(
            cache.store(key, &req, false, &server_error, None),
            CacheStatus::Uncacheable
        );
    }

    #[test]
    fn a_forced_ttl_applies_only_where_the_upstream_gives_no_freshness_nor_forbids_it() {
        let cache = cache();
        let req = request("t");
        let ttl = Some(Duration::from_secs(60));
        let key = |n: &str| ResponseCache::key(n, 0, &req, "");
        assert_eq!(
            cache.store(key("none"), &req, false, &answer(200, &[]), ttl),
            CacheStatus::Miss
        );
        assert!(matches!(
            cache.lookup(&key("none"), &req, false),
            Lookup::Fresh(_)
        ));
        let no_store = answer(200, &[("cache-control", "no-store")]);
        assert_eq!(
            cache.store(key("ns"), &req, false, &no_store, ttl),
            CacheStatus::Uncacheable
        );
        // An explicit max-age=0 with a validator is revalidated, never forced fresh.
        let zero = answer(200, &[("cache-control", "max-age=0"), ("etag", "\"v1\"")]);
        assert_eq!(
            cache.store(key("zero"), &req, false, &zero, ttl),
            CacheStatus::Miss
        );
        assert!(matches!(
            cache.lookup(&key("zero"), &req, false),
            Lookup::Stale { .. }
        ));
    }

    #[test]
    fn a_stale_answer_is_revalidated_and_a_304_refreshes_it() {
        let cache = cache();
        let req = request("t");
        let key = ResponseCache::key("c", 0, &req, "");
        let first = answer(200, &[("cache-control", "no-cache"), ("etag", "\"v1\"")]);
        cache.store(key.clone(), &req, false, &first, None);
        let Lookup::Stale {
            stored,
            conditional,
        } = cache.lookup(&key, &req, false)
        else {
            panic!("no-cache must be revalidated");
        };
        assert_eq!(conditional[0].0, "if-none-match");
        assert_eq!(conditional[0].1, "\"v1\"");
        let not_modified = answer(304, &[("etag", "\"v1\""), ("cache-control", "max-age=60")]);
        let served = cache
            .revalidated(&key, &stored, &req, false, &not_modified, None)
            .expect("a matching 304 serves the stored answer");
        assert_eq!(served.status, 200);
        assert_eq!(served.body, first.body);
        assert!(matches!(cache.lookup(&key, &req, false), Lookup::Fresh(_)));
        // A 304 naming another validator does not refresh anything.
        let other = answer(304, &[("etag", "\"v2\"")]);
        assert!(cache
            .revalidated(&key, &stored, &req, false, &other, None)
            .is_none());
    }
}

//! The issuer's signing keys (docs/spec.md §9): a JWKS fetched over HTTP(S) or read from a
//! file, kept in memory behind an `ArcSwap` (read without locks on the hot path), fetched
//! again for a token whose `kid` is unknown — at most once per 30 s, the fetch at start not
//! counting — and every refresh interval in the background. When a fetch fails the last
//! good keys keep serving.
//!
//! Only verification keys for the allowed algorithms are kept: a JWK whose `alg` is not
//! allowed (HS*, RSA-OAEP, ES512, ...), whose type or curve fits no allowed algorithm, whose
//! `use` is not `sig`, or that cannot be read is ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::args::KeySource;

/// Time limit of one JWKS fetch (connect, answer and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two fetches for an unknown `kid`.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Largest JWKS read, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys read from one JWKS (the rest are ignored).
pub const MAX_KEYS: usize = 64;
/// RSA moduli accepted, in bits: shorter ones are weak, longer ones beyond what the RSA
/// verifier takes.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// Why a JWKS could not be read. Messages carry no key material and no URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The fetch took longer than its limit.
    #[error("the JWKS fetch took longer than {0:?}")]
    Timeout(Duration),
    /// The endpoint could not be reached or its answer not read.
    #[error("the JWKS endpoint could not be reached: {0}")]
    Unreachable(String),
    /// The endpoint answered with a status other than 2xx (redirects are not followed).
    #[error("the JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The answer is larger than [`MAX_JWKS_BYTES`].
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// The file could not be read.
    #[error("the JWKS file could not be read: {0}")]
    File(String),
    /// Not a JSON object with a `keys` array.
    #[error("the JWKS is not a JSON object with a \"keys\" array")]
    NotJwks,
    /// No key is usable for verification (every one was ignored, or there are none).
    #[error("the JWKS has no usable signing key ({ignored} ignored; keys must be RSA (2048-4096 bits), EC P-256/P-384 or Ed25519, for signatures)")]
    NoUsableKeys {
        /// How many keys were ignored.
        ignored: usize,
    },
}

/// One verification key.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    kid: Option<String>,
    /// The algorithms this key verifies: the JWK's `alg`, or every allowed algorithm its
    /// type and curve fit.
    algorithms: &'static [Algorithm],
    key: DecodingKey,
}

/// What a lookup found.
pub(crate) enum Lookup<'a> {
    /// The key to verify with.
    Found(&'a DecodingKey),
    /// The `kid` names keys, none of them for this algorithm.
    WrongAlgorithm,
    /// No key has this `kid`.
    Unknown,
}

/// The usable keys of one JWKS.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    ignored: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .field("ignored", &self.ignored)
            .finish()
    }
}

impl KeySet {
    /// Reads a JWKS document. Keys that are unusable are counted in [`KeySet::ignored`];
    /// a set with no usable key is an error.
    pub fn parse(json: &[u8]) -> Result<KeySet, JwksError> {
        let doc: Value = serde_json::from_slice(json).map_err(|_| JwksError::NotJwks)?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotJwks)?;
        let mut set = KeySet::default();
        for (i, jwk) in keys.iter().enumerate() {
            match (i < MAX_KEYS).then(|| usable_key(jwk)).flatten() {
                Some(key) => set.keys.push(key),
                None => set.ignored += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKeys {
                ignored: set.ignored,
            });
        }
        Ok(set)
    }

    /// How many usable keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (only for the empty default).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys of the document were ignored.
    pub fn ignored(&self) -> usize {
        self.ignored
    }

    /// The key ids of the usable keys (`None` for a key without one).
    pub fn kids(&self) -> Vec<Option<&str>> {
        self.keys.iter().map(|k| k.kid.as_deref()).collect()
    }

    /// Whether a key has this id.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key for a token with `kid` and `alg`. A token without `kid` may use the only key
    /// of a set that has one key.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        let mut named = false;
        let candidates: Box<dyn Iterator<Item = &VerificationKey>> = match kid {
            Some(kid) => Box::new(
                self.keys
                    .iter()
                    .filter(move |k| k.kid.as_deref() == Some(kid)),
            ),
            None if self.keys.len() == 1 => Box::new(self.keys.iter()),
            None => return Lookup::Unknown,
        };
        for key in candidates {
            named = true;
            if key.algorithms.contains(&alg) {
                return Lookup::Found(&key.key);
            }
        }
        if named {
            Lookup::WrongAlgorithm
        } else {
            Lookup::Unknown
        }
    }
}

/// The key `jwk` describes, if it is a usable verification key.
fn usable_key(jwk: &Value) -> Option<VerificationKey> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).ok()?;
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    // The algorithms the key's type and curve fit.
    let fits: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let bits = unsigned_bits(&URL_SAFE_NO_PAD.decode(&rsa.n).ok()?);
            let e = URL_SAFE_NO_PAD.decode(&rsa.e).ok()?;
            if !RSA_BITS.contains(&bits) || e.is_empty() || e.len() > 8 {
                return None;
            }
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => {
            // The Ed25519 verifier reads exactly 32 bytes (and panics on fewer).
            if okp.curve != EllipticCurve::Ed25519
                || URL_SAFE_NO_PAD.decode(&okp.x).ok()?.len() != 32
            {
                return None;
            }
            &[Algorithm::EdDSA]
        }
        // Symmetric keys (HS*) are never verification keys here.
        _ => return None,
    };
    let algorithms = match common.key_algorithm {
        None => fits,
        Some(stated) => {
            let alg = key_algorithm(stated)?;
            let at = fits.iter().position(|a| *a == alg)?;
            &fits[at..=at]
        }
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    // An EC point off its curve or an invalid Ed25519 point fails here, when the verifier is
    // made, rather than on every token.
    if jsonwebtoken::crypto::verify("AA", b"probe", &key, algorithms[0]).is_err() {
        return None;
    }
    Some(VerificationKey {
        kid: common.key_id.clone(),
        algorithms,
        key,
    })
}

/// The allowed algorithm a JWK `alg` names.
fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The bit length of a big-endian unsigned integer.
fn unsigned_bits(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    (bytes.len() - first - 1) * 8 + (8 - bytes[first].leading_zeros() as usize)
}

/// What made a fetch happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchTrigger {
    /// The fetch at start.
    Start,
    /// The periodic refresh.
    Periodic,
    /// A token named an unknown `kid`.
    UnknownKey,
}

impl FetchTrigger {
    /// A bounded metric label.
    pub fn as_label(&self) -> &'static str {
        match self {
            FetchTrigger::Start => "start",
            FetchTrigger::Periodic => "periodic",
            FetchTrigger::UnknownKey => "unknown_kid",
        }
    }
}

/// A JWKS was fetched and its keys now serve.
#[derive(Debug, Clone)]
pub struct KeysFetched {
    /// Why.
    pub trigger: FetchTrigger,
    /// Usable keys.
    pub keys: usize,
    /// Keys ignored.
    pub ignored: usize,
    /// How long the fetch took.
    pub duration: Duration,
}

/// A fetch failed; the last good keys keep serving.
#[derive(Debug, Clone)]
pub struct KeysFetchFailed {
    /// Why the fetch happened.
    pub trigger: FetchTrigger,
    /// What went wrong.
    pub error: JwksError,
    /// How long the fetch took.
    pub duration: Duration,
    /// How many keys keep serving.
    pub keys_kept: usize,
}

/// A token named an unknown `kid` less than 30 s after the last such refetch: no fetch.
#[derive(Debug, Clone)]
pub struct KeyRefetchLimited {
    /// Time since the last refetch for an unknown `kid`.
    pub since_last: Duration,
}

/// The events of the key store, for the lead's `events.rs` to emit.
#[derive(Debug, Clone)]
pub enum KeyEvent {
    /// See [`KeysFetched`].
    Fetched(KeysFetched),
    /// See [`KeysFetchFailed`].
    FetchFailed(KeysFetchFailed),
    /// See [`KeyRefetchLimited`].
    RefetchLimited(KeyRefetchLimited),
}

impl KeyEvent {
    /// A bounded metric label of the outcome.
    pub fn as_label(&self) -> &'static str {
        match self {
            KeyEvent::Fetched(_) => "fetched",
            KeyEvent::FetchFailed(_) => "failed",
            KeyEvent::RefetchLimited(_) => "limited",
        }
    }
}

/// Receives the key store's events.
pub type KeyObserver = Arc<dyn Fn(&KeyEvent) + Send + Sync>;

/// The observer used until one is given: one log line per event (no URL, no key material).
pub fn log_key_event(event: &KeyEvent) {
    match event {
        KeyEvent::Fetched(e) => tracing::debug!(
            trigger = e.trigger.as_label(),
            keys = e.keys,
            ignored = e.ignored,
            ms = e.duration.as_millis() as u64,
            "identity keys fetched"
        ),
        KeyEvent::FetchFailed(e) => tracing::warn!(
            trigger = e.trigger.as_label(),
            error = %e.error,
            keys_kept = e.keys_kept,
            "identity keys: fetch failed, the last good keys keep serving"
        ),
        KeyEvent::RefetchLimited(e) => tracing::debug!(
            since_last_ms = e.since_last.as_millis() as u64,
            "identity keys: unknown kid, refetch limited"
        ),
    }
}

/// Settings of a key store; the defaults are the contract's.
#[derive(Clone)]
pub struct KeyStoreOptions {
    /// Time limit of one fetch.
    pub fetch_timeout: Duration,
    /// Least time between two fetches for an unknown `kid`.
    pub unknown_kid_interval: Duration,
    /// Receives the store's events.
    pub observer: KeyObserver,
}

impl Default for KeyStoreOptions {
    fn default() -> Self {
        KeyStoreOptions {
            fetch_timeout: FETCH_TIMEOUT,
            unknown_kid_interval: UNKNOWN_KID_REFETCH_INTERVAL,
            observer: Arc::new(log_key_event),
        }
    }
}

impl std::fmt::Debug for KeyStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStoreOptions")
            .field("fetch_timeout", &self.fetch_timeout)
            .field("unknown_kid_interval", &self.unknown_kid_interval)
            .finish_non_exhaustive()
    }
}

/// The issuer's current keys and how to fetch them again.
pub struct KeyStore {
    source: KeySource,
    current: ArcSwap<KeySet>,
    /// Held while a fetch is in flight (fetches never overlap); holds the time of the last
    /// fetch for an unknown `kid`.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    options: KeyStoreOptions,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.current.load())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Fetches (or reads) the keys once, within the fetch time limit: the store starts only
    /// with usable keys.
    pub async fn load(source: KeySource, options: KeyStoreOptions) -> Result<KeyStore, JwksError> {
        let started = Instant::now();
        let result = fetch(&source, options.fetch_timeout).await;
        let duration = started.elapsed();
        match result {
            Ok(set) => {
                (options.observer)(&KeyEvent::Fetched(KeysFetched {
                    trigger: FetchTrigger::Start,
                    keys: set.len(),
                    ignored: set.ignored(),
                    duration,
                }));
                Ok(Self::with_keys(source, set, options))
            }
            Err(error) => {
                (options.observer)(&KeyEvent::FetchFailed(KeysFetchFailed {
                    trigger: FetchTrigger::Start,
                    error: error.clone(),
                    duration,
                    keys_kept: 0,
                }));
                Err(error)
            }
        }
    }

    /// A store that starts with `keys` (already read), fetching again from `source`.
    pub fn with_keys(source: KeySource, keys: KeySet, options: KeyStoreOptions) -> KeyStore {
        KeyStore {
            source,
            current: ArcSwap::from_pointee(keys),
            fetching: tokio::sync::Mutex::new(None),
            options,
        }
    }

    /// The keys serving now (read without locks).
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    pub(crate) fn load_keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// The keys serving now, as an `Arc` to keep.
    pub(crate) fn load_full_keys(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Fetches the keys now (the periodic refresh); on failure the current keys stay.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _fetching = self.fetching.lock().await;
        self.fetch_and_swap(FetchTrigger::Periodic).await
    }

    /// For a token whose `kid` is unknown: fetches the keys again unless the last such fetch
    /// was less than the interval ago, and says whether `kid` is known now. A fetch in flight
    /// is waited for (and may bring the key) instead of starting another.
    pub async fn refetch_for(&self, kid: &str) -> bool {
        let mut last = self.fetching.lock().await;
        if self.current.load().has_kid(kid) {
            return true;
        }
        if let Some(since_last) = last.map(|t| t.elapsed()) {
            if since_last < self.options.unknown_kid_interval {
                (self.options.observer)(&KeyEvent::RefetchLimited(KeyRefetchLimited {
                    since_last,
                }));
                return false;
            }
        }
        *last = Some(Instant::now());
        // A failure is reported by the event; the last good keys stay.
        let _ = self.fetch_and_swap(FetchTrigger::UnknownKey).await;
        self.current.load().has_kid(kid)
    }

    async fn fetch_and_swap(&self, trigger: FetchTrigger) -> Result<usize, JwksError> {
        let started = Instant::now();
        let result = fetch(&self.source, self.options.fetch_timeout).await;
        let duration = started.elapsed();
        match result {
            Ok(set) => {
                let keys = set.len();
                (self.options.observer)(&KeyEvent::Fetched(KeysFetched {
                    trigger,
                    keys,
                    ignored: set.ignored(),
                    duration,
                }));
                self.current.store(Arc::new(set));
                Ok(keys)
            }
            Err(error) => {
                (self.options.observer)(&KeyEvent::FetchFailed(KeysFetchFailed {
                    trigger,
                    error: error.clone(),
                    duration,
                    keys_kept: self.current.load().len(),
                }));
                Err(error)
            }
        }
    }

    /// Refreshes the keys every `every` on the current actix (or tokio local) runtime, until
    /// the store is dropped or the task is aborted.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> actix_rt::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        actix_rt::spawn(async move {
            loop {
                actix_rt::time::sleep(every).await;
                let Some(store) = store.upgrade() else {
                    break;
                };
                let _ = store.refresh().await;
            }
        })
    }
}

/// Reads the key set from `source` within `limit`.
async fn fetch(source: &KeySource, limit: Duration) -> Result<KeySet, JwksError> {
    match source {
        KeySource::File(path) => read_file(path.clone()),
        KeySource::Url(url) => actix_rt::time::timeout(limit, fetch_url(url))
            .await
            .map_err(|_| JwksError::Timeout(limit))?,
    }
}

fn read_file(path: PathBuf) -> Result<KeySet, JwksError> {
    let text = std::fs::read(&path).map_err(|e| JwksError::File(e.kind().to_string()))?;
    if text.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    KeySet::parse(&text)
}

async fn fetch_url(url: &str) -> Result<KeySet, JwksError> {
    // rustls needs its process-wide crypto provider (ring) before the first TLS client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A client of its own (the upstream one enforces the upstream address policy, which is
    // not for the operator's IdP), made per fetch: fetches are minutes apart.
    let client = awc::Client::builder()
        .disable_redirects()
        // The whole fetch is timed by the caller (connect, answer and body together).
        .disable_timeout()
        .no_default_headers()
        .add_default_header((
            "User-Agent",
            concat!("connector-runtime/", env!("CARGO_PKG_VERSION")),
        ))
        .finish();
    let mut response = client
        .get(url)
        .insert_header(("Accept", "application/jwk-set+json, application/json"))
        .send()
        .await
        .map_err(|e| JwksError::Unreachable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(JwksError::Status(response.status().as_u16()));
    }
    let body = response
        .body()
        .limit(MAX_JWKS_BYTES)
        .await
        .map_err(|e| match e {
            awc::error::PayloadError::Overflow => JwksError::TooLarge,
            other => JwksError::Unreachable(other.to_string()),
        })?;
    KeySet::parse(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/keys/rsa.pub.pem");
    const P256_PUBLIC: &str = include_str!("../../tests/fixtures/keys/p256.pub.pem");
    const P384_PUBLIC: &str = include_str!("../../tests/fixtures/keys/p384.pub.pem");
    const ED_PUBLIC: &str = include_str!("../../tests/fixtures/keys/ed25519.pub.pem");

    /// The JWK of a PEM public key (jsonwebtoken's own conversion: the integration tests
    /// derive theirs independently, from the DER).
    fn jwk(pem: &str, kind: &str, kid: &str, alg: Option<&str>) -> Value {
        let key = match kind {
            "rsa" => DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            "ec" => DecodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => DecodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        };
        let mut v = serde_json::to_value(Jwk::from_decoding_key(&key, None).unwrap()).unwrap();
        v["kid"] = json!(kid);
        if let Some(alg) = alg {
            v["alg"] = json!(alg);
        }
        v
    }

    fn set(keys: Vec<Value>) -> Result<KeySet, JwksError> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn each_key_type_is_read_with_the_algorithms_it_fits() {
        let s = set(vec![
            jwk(RSA_PUBLIC, "rsa", "r", None),
            jwk(P256_PUBLIC, "ec", "p256", None),
            jwk(P384_PUBLIC, "ec", "p384", None),
            jwk(ED_PUBLIC, "ed", "ed", None),
        ])
        .unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.ignored(), 0);
        assert!(matches!(
            s.find(Some("r"), Algorithm::PS512),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.find(Some("r"), Algorithm::ES256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            s.find(Some("p256"), Algorithm::ES256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.find(Some("p256"), Algorithm::ES384),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            s.find(Some("p384"), Algorithm::ES384),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.find(Some("ed"), Algorithm::EdDSA),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.find(Some("nope"), Algorithm::EdDSA),
            Lookup::Unknown
        ));
        // Without a kid, only a set of one key has an answer.
        assert!(matches!(s.find(None, Algorithm::EdDSA), Lookup::Unknown));
        let one = set(vec![jwk(ED_PUBLIC, "ed", "ed", None)]).unwrap();
        assert!(matches!(one.find(None, Algorithm::EdDSA), Lookup::Found(_)));
    }

    #[test]
    fn a_stated_alg_narrows_the_key_to_it() {
        let s = set(vec![jwk(RSA_PUBLIC, "rsa", "r", Some("PS256"))]).unwrap();
        assert!(matches!(
            s.find(Some("r"), Algorithm::PS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            s.find(Some("r"), Algorithm::RS256),
            Lookup::WrongAlgorithm
        ));
    }

    #[test]
    fn keys_outside_the_allow_list_are_ignored() {
        let good = jwk(ED_PUBLIC, "ed", "ed", None);
        let mut enc = jwk(RSA_PUBLIC, "rsa", "enc", None);
        enc["use"] = json!("enc");
        let mut sign_only = jwk(RSA_PUBLIC, "rsa", "ops", None);
        sign_only["key_ops"] = json!(["sign"]);
        let mut short_ed = jwk(ED_PUBLIC, "ed", "short", None);
        short_ed["x"] = json!("AAAA");
        let mut off_curve = jwk(P256_PUBLIC, "ec", "off", None);
        off_curve["y"] = off_curve["x"].clone();
        let mut small_rsa = jwk(RSA_PUBLIC, "rsa", "small", None);
        small_rsa["n"] = json!(URL_SAFE_NO_PAD.encode([0xc5u8; 128]));
        let s = set(vec![
            good,
            json!({"kty": "oct", "kid": "hs", "k": "c2VjcmV0", "alg": "HS256"}),
            jwk(RSA_PUBLIC, "rsa", "hs-alg", Some("HS256")),
            jwk(RSA_PUBLIC, "rsa", "oaep", Some("RSA-OAEP")),
            jwk(P256_PUBLIC, "ec", "mismatch", Some("ES384")),
            jwk(RSA_PUBLIC, "rsa", "odd", Some("XY999")),
            enc,
            sign_only,
            short_ed,
            off_curve,
            small_rsa,
            json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AA"}),
            json!({"kty": "weird", "kid": "w"}),
            json!("not a key"),
        ])
        .unwrap();
        assert_eq!(s.kids(), vec![Some("ed")]);
        assert_eq!(s.ignored(), 14);
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        assert_eq!(KeySet::parse(b"[]").unwrap_err(), JwksError::NotJwks);
        assert_eq!(
            KeySet::parse(b"{\"keys\": 1}").unwrap_err(),
            JwksError::NotJwks
        );
        assert_eq!(KeySet::parse(b"<html>").unwrap_err(), JwksError::NotJwks);
        assert_eq!(
            set(vec![]).unwrap_err(),
            JwksError::NoUsableKeys { ignored: 0 }
        );
        assert_eq!(
            set(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]).unwrap_err(),
            JwksError::NoUsableKeys { ignored: 1 }
        );
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(unsigned_bits(&[]), 0);
        assert_eq!(unsigned_bits(&[0, 0]), 0);
        assert_eq!(unsigned_bits(&[1]), 1);
        assert_eq!(unsigned_bits(&[0, 0x80, 0]), 16);
        assert_eq!(unsigned_bits(&[0xff; 256]), 2048);
    }

    #[actix_rt::test]
    async fn a_file_source_is_read_at_start_and_on_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let write = |keys: Vec<Value>| {
            std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
        };
        write(vec![jwk(ED_PUBLIC, "ed", "one", None)]);
        let store = KeyStore::load(KeySource::File(path.clone()), KeyStoreOptions::default())
            .await
            .unwrap();
        assert!(store.current().has_kid("one"));
        write(vec![jwk(ED_PUBLIC, "ed", "two", None)]);
        assert_eq!(store.refresh().await, Ok(1));
        assert!(store.current().has_kid("two"));
        // A broken file keeps the last good keys.
        std::fs::write(&path, "{").unwrap();
        assert_eq!(store.refresh().await, Err(JwksError::NotJwks));
        assert!(store.current().has_kid("two"));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(store.refresh().await, Err(JwksError::File(_))));
        assert!(store.current().has_kid("two"));
        // And a missing file at start is an error.
        let missing = KeyStore::load(KeySource::File(path), KeyStoreOptions::default()).await;
        assert!(matches!(missing, Err(JwksError::File(_))));
    }

    #[actix_rt::test]
    async fn unknown_kid_refetches_are_limited_and_the_start_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let write = |kid: &str| {
            let keys = json!({ "keys": [jwk(ED_PUBLIC, "ed", kid, None)] });
            std::fs::write(&path, keys.to_string()).unwrap();
        };
        write("one");
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = events.clone();
        let options = KeyStoreOptions {
            observer: Arc::new(move |e: &KeyEvent| seen.lock().unwrap().push(e.as_label())),
            ..KeyStoreOptions::default()
        };
        let store = KeyStore::load(KeySource::File(path.clone()), options)
            .await
            .unwrap();
        write("two");
        assert!(
            store.refetch_for("two").await,
            "the first unknown kid refetches at once"
        );
        write("three");
        assert!(
            !store.refetch_for("three").await,
            "a second one within 30 s does not"
        );
        // A kid that is known by now needs no fetch.
        assert!(store.refetch_for("two").await);
        assert_eq!(
            *events.lock().unwrap(),
            vec!["fetched", "fetched", "limited"]
        );
    }
}

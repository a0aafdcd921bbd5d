//! Caller identity (docs/spec.md §9): the host page obtains a signed token (JWT) for its
//! signed-in member, the widget SDK sends it as `Authorization: Bearer <token>` (or, with
//! `--identity-cookie`, in a cookie), and the runtime verifies it against the issuer's keys
//! to expose `user.*` and `tenant_id` to templates.
//!
//! - [`args`]: the flags ([`IdentityArgs`]) and their checks.
//! - [`jwks`]: the issuer's keys ([`KeyStore`]): fetched, kept, refreshed.
//! - [`verify`]: the checks of one token ([`IdentityError`] names the one that failed).
//! - [`caller`]: the verified [`Caller`] and its template value.
//!
//! [`Identity`] ties them together: built from the flags, it extracts the token of a request
//! and verifies it.

pub mod args;
pub mod caller;
pub mod jwks;
pub mod verify;

use std::sync::Arc;

use actix_web::http::header::{HeaderMap, AUTHORIZATION, COOKIE};

pub use args::{IdentityArgs, IdentityConfigError, KeySource, TenantSource};
pub use caller::Caller;
pub use jwks::{JwksError, KeyEvent, KeySet, KeyStore, KeyStoreOptions};
pub use verify::{IdentityError, Malformed};

use jwks::Lookup;
use verify::{ClaimRules, TokenHeader};

/// Why identity could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityStartError {
    /// The flags do not fit together.
    #[error(transparent)]
    Config(#[from] IdentityConfigError),
    /// The keys could not be fetched or read at start.
    #[error("caller identity: {0}")]
    Keys(#[from] JwksError),
}

/// The outcome of identifying one request, for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// A token was sent and verified.
    Verified,
    /// No token was sent.
    Missing,
    /// A token was sent and failed this check.
    Invalid(IdentityError),
}

impl VerifyOutcome {
    /// The outcome of [`Identity::authenticate`]'s result.
    pub fn of(result: &Result<Option<Caller>, IdentityError>) -> Self {
        match result {
            Ok(Some(_)) => VerifyOutcome::Verified,
            Ok(None) => VerifyOutcome::Missing,
            Err(e) => VerifyOutcome::Invalid(*e),
        }
    }

    /// A bounded metric label: `verified`, `missing` or the failed check's label.
    pub fn as_label(&self) -> &'static str {
        match self {
            VerifyOutcome::Verified => "verified",
            VerifyOutcome::Missing => "missing",
            VerifyOutcome::Invalid(e) => e.as_label(),
        }
    }
}

/// Caller identity as configured: the issuer's keys, the claim rules, where tokens come from.
/// Shared by every worker (`Arc<Identity>`); verifying reads the keys without locks.
pub struct Identity {
    rules: ClaimRules,
    keys: Arc<KeyStore>,
    cookie: Option<String>,
    required: bool,
    refresh: Option<std::time::Duration>,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("rules", &self.rules)
            .field("keys", &self.keys)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// Tokens verified lately, so that a page calling several connectors with one token pays
/// for its signature once: an entry serves only while the key set that verified it is the
/// one serving (a refresh or refetch swaps it, which drops every entry's use), while the
/// token still passes its time checks, and for at most [`VERIFIED_FOR_SECS`].
struct VerifiedTokens(quick_cache::sync::Cache<String, Verified, TokenWeight>);

/// One verified token.
#[derive(Clone)]
struct Verified {
    caller: Caller,
    keys: Arc<KeySet>,
    until: u64,
}

/// Weighs entries by their token's length, so the cache is bounded in bytes.
#[derive(Clone, Copy)]
struct TokenWeight;

impl quick_cache::Weighter<String, Verified> for TokenWeight {
    fn weight(&self, token: &String, _: &Verified) -> u64 {
        token.len() as u64 + 512
    }
}

/// Longest a verification is reused, in seconds.
pub const VERIFIED_FOR_SECS: u64 = 300;
/// Bytes the verified tokens may take.
const VERIFIED_BYTES: u64 = 4 << 20;

impl VerifiedTokens {
    fn new() -> Self {
        VerifiedTokens(quick_cache::sync::Cache::with_weighter(
            1024,
            VERIFIED_BYTES,
            TokenWeight,
        ))
    }

    /// The caller of `token`, if it was verified with `keys` and still passes at `now`.
    fn get(&self, token: &str, keys: &Arc<KeySet>, now: u64) -> Option<Caller> {
        let hit = self.0.get(token)?;
        (Arc::ptr_eq(&hit.keys, keys) && now <= hit.until).then_some(hit.caller)
    }
}

impl Identity {
    /// Identity from the flags: `None` when no key source is configured. Checks the flags
    /// and fetches (or reads) the keys once, within 5 s; a failure there is an error, so a
    /// wrong URL or file is seen at start rather than as refused tokens.
    pub async fn start(args: &IdentityArgs) -> Result<Option<Identity>, IdentityStartError> {
        Self::start_with(args, KeyStoreOptions::default()).await
    }

    /// [`Identity::start`] with key store settings of the caller's (an observer for the
    /// key events, shorter limits in tests).
    pub async fn start_with(
        args: &IdentityArgs,
        options: KeyStoreOptions,
    ) -> Result<Option<Identity>, IdentityStartError> {
        args.validate()?;
        let Some(source) = args.key_source() else {
            return Ok(None);
        };
        let keys = KeyStore::load(source, options).await?;
        Ok(Some(Self::with_store(args, Arc::new(keys))))
    }

    /// Identity from (validated) flags with a key store already loaded.
    pub fn with_store(args: &IdentityArgs, keys: Arc<KeyStore>) -> Identity {
        Identity {
            rules: ClaimRules::new(
                args.identity_issuer.clone().unwrap_or_default(),
                args.identity_audience.as_deref(),
                args.identity_leeway_secs,
                args.tenant_source(),
            ),
            keys,
            cookie: args.identity_cookie.clone(),
            required: args.identity_required,
            refresh: args.refresh_interval(),
            verified: VerifiedTokens::new(),
        }
    }

    /// Whether every connector needs a verified caller (`--identity-required`).
    pub fn required(&self) -> bool {
        self.required
    }

    /// Where `tenant_id` comes from.
    pub fn tenant_source(&self) -> &TenantSource {
        self.rules.tenant()
    }

    /// The key store.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Starts the periodic refresh of the keys (`--identity-jwks-refresh-secs`) on the
    /// current actix runtime; `None` when it is off. The task ends when the key store is
    /// dropped, or when aborted.
    pub fn spawn_refresh(&self) -> Option<actix_rt::task::JoinHandle<()>> {
        self.refresh.map(|every| self.keys.spawn_refresh(every))
    }

    /// The token a request carries: `Authorization: Bearer <token>`, else the
    /// `--identity-cookie` cookie. `Ok(None)` when there is none; an `Authorization` header
    /// that is not one `Bearer <token>` is a malformed token (a credential was sent, so it
    /// is not ignored).
    pub fn extract<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, IdentityError> {
        extract_token(headers, self.cookie.as_deref())
    }

    /// Extracts and verifies the request's token: `Ok(None)` when none is sent.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, IdentityError> {
        match self.extract(headers)? {
            Some(token) => self.verify(token).await.map(Some),
            None => Ok(None),
        }
    }

    /// Verifies `token`. A `kid` that no current key has makes the keys be fetched again
    /// (at most once per 30 s; concurrent callers wait for the fetch in flight), then the
    /// token is checked against the keys it brought.
    pub async fn verify(&self, token: &str) -> Result<Caller, IdentityError> {
        if let Some(caller) = self.verified_before(token) {
            return Ok(caller);
        }
        let header = verify::read_header(token)?;
        match self.verify_with_current(token, &header) {
            Err(IdentityError::UnknownKey) => {}
            other => return other,
        }
        match &header.kid {
            Some(kid) if self.keys.refetch_for(kid).await => {
                self.verify_with_current(token, &header)
            }
            _ => Err(IdentityError::UnknownKey),
        }
    }

    /// Verifies `token` with the keys serving now, never fetching: an unknown `kid` is
    /// [`IdentityError::UnknownKey`] at once. The hot path of [`Identity::verify`].
    pub fn verify_now(&self, token: &str) -> Result<Caller, IdentityError> {
        if let Some(caller) = self.verified_before(token) {
            return Ok(caller);
        }
        let header = verify::read_header(token)?;
        self.verify_with_current(token, &header)
    }

    /// [`Identity::verify_now`] without reusing an earlier verification: what a token's first
    /// call costs (the benchmarks measure it).
    pub fn verify_afresh(&self, token: &str) -> Result<Caller, IdentityError> {
        let header = verify::read_header(token)?;
        self.verify_with_current(token, &header)
    }

    /// The caller of `token` if it was verified lately with the keys serving now.
    fn verified_before(&self, token: &str) -> Option<Caller> {
        let keys = self.keys.load_keys();
        self.verified
            .get(token, &keys, jsonwebtoken::get_current_timestamp())
    }

    fn verify_with_current(
        &self,
        token: &str,
        header: &TokenHeader,
    ) -> Result<Caller, IdentityError> {
        let keys = self.keys.load_full_keys();
        let (caller, until) = match keys.find(header.kid.as_deref(), header.alg) {
            Lookup::Found(key) => self.rules.verify_until(token, header, key)?,
            Lookup::WrongAlgorithm => return Err(IdentityError::Algorithm),
            Lookup::Unknown => return Err(IdentityError::UnknownKey),
        };
        let now = jsonwebtoken::get_current_timestamp();
        self.verified.0.insert(
            token.to_string(),
            Verified {
                caller: caller.clone(),
                keys,
                until: until.min(now.saturating_add(VERIFIED_FOR_SECS)),
            },
        );
        Ok(caller)
    }
}

/// The token of a request (see [`Identity::extract`]).
pub fn extract_token<'h>(
    headers: &'h HeaderMap,
    cookie: Option<&str>,
) -> Result<Option<&'h str>, IdentityError> {
    let mut authorization = headers.get_all(AUTHORIZATION);
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err(Malformed::Authorization.into());
        }
        // A header value is visible ASCII, tabs and bytes over 0x7f, so it is text exactly
        // when it is ASCII: checked a word at a time rather than byte by byte as `to_str`
        // does (a member token is ~600 bytes: ~6,000 instructions per request, callgrind).
        let bytes = value.as_bytes();
        if !bytes.is_ascii() {
            return Err(Malformed::Authorization.into());
        }
        let value = std::str::from_utf8(bytes).map_err(|_| Malformed::Authorization)?;
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or(Malformed::Authorization)?;
        let token = token.trim_start();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
            return Err(Malformed::Authorization.into());
        }
        return Ok(Some(token));
    }
    let Some(name) = cookie else {
        return Ok(None);
    };
    for header in headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            let Some((n, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if n.trim() == name {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                // An emptied cookie (a signed-out page) is no token.
                return Ok((!v.is_empty()).then_some(v));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_bearer_header_carries_the_token() {
        let h = headers(&[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(extract_token(&h, None), Ok(Some("abc.def.ghi")));
        let h = headers(&[("authorization", "bearer   abc.def.ghi ")]);
        assert_eq!(extract_token(&h, None), Ok(Some("abc.def.ghi")));
        assert_eq!(extract_token(&headers(&[]), Some("t")), Ok(None));
    }

    #[test]
    fn other_authorization_headers_are_malformed() {
        let bad = Err(IdentityError::Malformed(Malformed::Authorization));
        for value in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "abc.def.ghi",
        ] {
            assert_eq!(
                extract_token(&headers(&[("authorization", value)]), None),
                bad,
                "{value}"
            );
        }
        let two = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        assert_eq!(extract_token(&two, None), bad);
    }

    #[test]
    fn the_cookie_is_read_only_when_configured_and_the_header_wins() {
        let h = headers(&[("cookie", "theme=dark; member_token=\"a.b.c\"; x=1")]);
        assert_eq!(extract_token(&h, None), Ok(None));
        assert_eq!(extract_token(&h, Some("member_token")), Ok(Some("a.b.c")));
        assert_eq!(extract_token(&h, Some("member")), Ok(None));
        let split = headers(&[("cookie", "theme=dark"), ("cookie", "member_token=d.e.f")]);
        assert_eq!(
            extract_token(&split, Some("member_token")),
            Ok(Some("d.e.f"))
        );
        let both = headers(&[
            ("cookie", "member_token=d.e.f"),
            ("authorization", "Bearer a.b.c"),
        ]);
        assert_eq!(
            extract_token(&both, Some("member_token")),
            Ok(Some("a.b.c"))
        );
        let emptied = headers(&[("cookie", "member_token=; theme=dark")]);
        assert_eq!(extract_token(&emptied, Some("member_token")), Ok(None));
    }

    #[test]
    fn identity_is_shared_by_every_worker() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Identity>();
        shared::<Caller>();
    }

    #[test]
    fn outcomes_have_labels() {
        assert_eq!(
            VerifyOutcome::of(&Ok(Some(Caller::default()))).as_label(),
            "verified"
        );
        assert_eq!(VerifyOutcome::of(&Ok(None)).as_label(), "missing");
        assert_eq!(
            VerifyOutcome::of(&Err(IdentityError::UnknownKey)).as_label(),
            "unknown_key"
        );
    }
}

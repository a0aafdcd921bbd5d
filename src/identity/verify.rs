//! Verifying a caller token (docs/spec.md §9): its size, header and algorithm first, then —
//! with the issuer's key its `kid` names — the signature (jsonwebtoken), then the claims:
//! `iss`, `aud`, `exp`, `nbf` and `iat`, with the leeway applied to the three times.
//!
//! Errors name the failed check and never carry the token or a claim value.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::args::TenantSource;
use super::caller::Caller;

/// Largest token accepted, in bytes (the whole compact JWS).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Algorithms a caller token may use: RSA (PKCS#1 v1.5 and PSS), ECDSA on P-256 and P-384,
/// and EdDSA. `none` and every HMAC algorithm are refused whatever the key.
pub const ALLOWED_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The allowed algorithm named `name` (JOSE names are case-sensitive).
pub fn allowed_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Why a caller token was refused: one variant per check of docs/spec.md §9. The message
/// starts with the check's name and never contains the token or a claim value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// `exp` is past (beyond the leeway).
    #[error("expired: the token's exp is in the past")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("not yet valid: the token's nbf or iat is in the future")]
    NotYetValid,
    /// `iss` is missing, not a string, or not the configured issuer.
    #[error("issuer: the token's iss is not the issuer this server trusts")]
    Issuer,
    /// `aud` is missing or does not contain the configured audience.
    #[error("audience: the token's aud does not contain this server's audience")]
    Audience,
    /// The signature does not verify with the key the token names.
    #[error("signature: the token's signature does not verify")]
    Signature,
    /// The `kid` names no key of the issuer (after the one refetch allowed).
    #[error("unknown key: the token's kid names no key of the issuer")]
    UnknownKey,
    /// `alg` is not allowed (`none`, HS*, unknown) or not the algorithm of the key.
    #[error("algorithm: the token's alg is not accepted for its key")]
    Algorithm,
    /// The token is not a well-formed JWS/JWT (or the Authorization header is not Bearer).
    #[error("malformed: {0}")]
    Malformed(Malformed),
}

/// What was malformed; names claims, never their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is larger than 8 KiB")]
    TooLarge,
    /// Not three dot-separated base64url parts.
    #[error("the token is not three base64url parts")]
    Encoding,
    /// The header is not a JSON object with a string `alg` (and a string `kid`, if any).
    #[error("the token's header is not a JOSE header")]
    Header,
    /// The header lists critical extensions (`crit`), none of which this server implements.
    #[error("the token's header has critical extensions (crit)")]
    Critical,
    /// The claims are not a JSON object.
    #[error("the token's claims are not a JSON object")]
    Claims,
    /// No numeric `exp`.
    #[error("the token has no numeric exp claim")]
    NoExpiry,
    /// A claim of the wrong type (`sub` a number, `profile_fields` not an object, ...).
    #[error("the token's {0} claim has the wrong type")]
    ClaimType(&'static str),
    /// The `--identity-tenant-claim` claim is neither a string nor an integer.
    #[error("the token's tenant claim is neither a string nor an integer")]
    TenantClaimType,
    /// The `Authorization` header is not one `Bearer <token>`.
    #[error("the Authorization header is not one 'Bearer <token>'")]
    Authorization,
}

impl IdentityError {
    /// The name of the failed check, as docs/spec.md §9 spells it (`detail` names it).
    pub fn check(&self) -> &'static str {
        match self {
            IdentityError::Expired => "expired",
            IdentityError::NotYetValid => "not yet valid",
            IdentityError::Issuer => "issuer",
            IdentityError::Audience => "audience",
            IdentityError::Signature => "signature",
            IdentityError::UnknownKey => "unknown key",
            IdentityError::Algorithm => "algorithm",
            IdentityError::Malformed(_) => "malformed",
        }
    }

    /// A bounded metric label.
    pub fn as_label(&self) -> &'static str {
        match self {
            IdentityError::Expired => "expired",
            IdentityError::NotYetValid => "not_yet_valid",
            IdentityError::Issuer => "issuer",
            IdentityError::Audience => "audience",
            IdentityError::Signature => "signature",
            IdentityError::UnknownKey => "unknown_key",
            IdentityError::Algorithm => "algorithm",
            IdentityError::Malformed(_) => "malformed",
        }
    }
}

impl From<Malformed> for IdentityError {
    fn from(m: Malformed) -> Self {
        IdentityError::Malformed(m)
    }
}

/// What the header of a token says, once its shape and algorithm are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// The algorithm (one of [`ALLOWED_ALGORITHMS`]).
    pub alg: Algorithm,
    /// The key id, if the header names one.
    pub kid: Option<String>,
}

/// The header fields read before the signature: only `alg`, `kid` and `crit` matter.
#[derive(serde::Deserialize)]
struct RawHeader {
    alg: Value,
    #[serde(default)]
    kid: Option<Value>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Checks the token's size and shape and reads its header: `alg` must be allowed.
pub fn read_header(token: &str) -> Result<TokenHeader, IdentityError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Malformed::TooLarge.into());
    }
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::Encoding.into());
    };
    // An empty signature is a shape `alg: none` tokens have: it is refused as the algorithm
    // it is (below), or as a signature that does not verify.
    if header.is_empty()
        || claims.is_empty()
        || ![header, claims, signature]
            .iter()
            .all(|p| p.bytes().all(base64url))
    {
        return Err(Malformed::Encoding.into());
    }
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Malformed::Encoding)?;
    let raw: RawHeader = serde_json::from_slice(&json).map_err(|_| Malformed::Header)?;
    let alg = raw.alg.as_str().ok_or(Malformed::Header)?;
    let alg = allowed_algorithm(alg).ok_or(IdentityError::Algorithm)?;
    if raw.crit.is_some() {
        return Err(Malformed::Critical.into());
    }
    let kid = match raw.kid {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(Malformed::Header.into()),
    };
    // jsonwebtoken reads the header again with its own type; refuse here what it would refuse.
    jsonwebtoken::decode_header(token).map_err(|_| Malformed::Header)?;
    Ok(TokenHeader { alg, kid })
}

/// The claim checks and the caller they build: issuer, audience, leeway, tenant source.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    issuer: String,
    leeway: u64,
    tenant: TenantSource,
    /// One `Validation` per allowed algorithm, built once so that verifying allocates no
    /// hash sets.
    validations: Vec<(Algorithm, Validation)>,
}

impl ClaimRules {
    /// Rules for tokens of `issuer`, for `audience` when given, with `leeway` seconds.
    pub fn new(
        issuer: impl Into<String>,
        audience: Option<&str>,
        leeway: u64,
        tenant: TenantSource,
    ) -> Self {
        let issuer = issuer.into();
        let validations = ALLOWED_ALGORITHMS
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = leeway;
                v.validate_exp = true;
                v.validate_nbf = true;
                v.set_issuer(&[issuer.as_str()]);
                let mut required = vec!["exp", "iss"];
                match audience {
                    Some(aud) => {
                        v.set_audience(&[aud]);
                        required.push("aud");
                    }
                    // Without --identity-audience, `aud` is not checked at all.
                    None => v.validate_aud = false,
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        ClaimRules {
            issuer,
            leeway,
            tenant,
            validations,
        }
    }

    /// The tenant source callers are built with.
    pub fn tenant(&self) -> &TenantSource {
        &self.tenant
    }

    fn validation(&self, alg: Algorithm) -> &Validation {
        &self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .expect("every allowed algorithm has a validation")
            .1
    }

    /// Verifies `token` (whose header is `header`) with `key`, which the caller chose for
    /// the header's `kid` and `alg`, and builds the caller from its claims.
    pub fn verify(
        &self,
        token: &str,
        header: &TokenHeader,
        key: &DecodingKey,
    ) -> Result<Caller, IdentityError> {
        self.verify_until(token, header, key)
            .map(|(caller, _)| caller)
    }

    /// [`ClaimRules::verify`], with the last second (Unix time) at which the token still
    /// passes the time checks: its `exp` plus the leeway.
    pub fn verify_until(
        &self,
        token: &str,
        header: &TokenHeader,
        key: &DecodingKey,
    ) -> Result<(Caller, u64), IdentityError> {
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, self.validation(header.alg))
                .map_err(|e| map_error(e.kind()))?;
        let claims = data.claims;
        // jsonwebtoken accepts an array `iss` that contains the issuer; the contract is
        // equality with one string.
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(IdentityError::Issuer);
        }
        // jsonwebtoken does not read `iat`: a token issued in the future is not yet valid.
        if let Some(iat) = claims.get("iat") {
            let iat = numeric_date(iat).ok_or(Malformed::ClaimType("iat"))?;
            if iat > jsonwebtoken::get_current_timestamp().saturating_add(self.leeway) {
                return Err(IdentityError::NotYetValid);
            }
        }
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(Malformed::NoExpiry)?;
        let caller = Caller::from_claims(&claims, &self.tenant)?;
        Ok((caller, exp.saturating_add(self.leeway)))
    }
}

/// A JWT NumericDate (seconds, possibly fractional, not negative), as jsonwebtoken reads
/// `exp` and `nbf`.
fn numeric_date(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

/// The check a jsonwebtoken error is.
fn map_error(kind: &ErrorKind) -> IdentityError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => IdentityError::Signature,
        ErrorKind::ExpiredSignature => IdentityError::Expired,
        ErrorKind::ImmatureSignature => IdentityError::NotYetValid,
        ErrorKind::InvalidIssuer => IdentityError::Issuer,
        ErrorKind::InvalidAudience => IdentityError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => IdentityError::Issuer,
            "aud" => IdentityError::Audience,
            _ => Malformed::NoExpiry.into(),
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "nbf" => Malformed::ClaimType("nbf").into(),
            _ => Malformed::ClaimType("exp").into(),
        },
        // A key of another family than the algorithm's.
        ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => IdentityError::Algorithm,
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => Malformed::Claims.into(),
        _ => Malformed::Encoding.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const ED_PRIVATE: &str = include_str!("../../tests/fixtures/keys/ed25519.pem");
    const ED_PUBLIC: &str = include_str!("../../tests/fixtures/keys/ed25519.pub.pem");
    const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/keys/rsa.pem");
    const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/keys/rsa.pub.pem");
    const ISS: &str = "https://idp.example.com/";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn ed_token(claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed".into());
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        encode(&header, &claims, &key).unwrap()
    }

    fn ed_key() -> DecodingKey {
        DecodingKey::from_ed_pem(ED_PUBLIC.as_bytes()).unwrap()
    }

    fn rules(audience: Option<&str>) -> ClaimRules {
        ClaimRules::new(ISS, audience, 60, TenantSource::None)
    }

    fn check(token: &str, rules: &ClaimRules) -> Result<Caller, IdentityError> {
        let header = read_header(token)?;
        rules.verify(token, &header, &ed_key())
    }

    /// A token with a header of our choosing and an arbitrary signature.
    fn raw_token(header: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(json!({"iss": ISS, "exp": now() + 60}).to_string());
        format!("{h}.{c}.c2ln")
    }

    #[test]
    fn a_valid_token_gives_its_caller() {
        let t = ed_token(json!({"iss": ISS, "sub": "m-1", "exp": now() + 300, "iat": now()}));
        let caller = check(&t, &rules(None)).unwrap();
        assert_eq!(caller.id.as_deref(), Some("m-1"));
        assert_eq!(
            read_header(&t).unwrap(),
            TokenHeader {
                alg: Algorithm::EdDSA,
                kid: Some("ed".into())
            }
        );
    }

    #[test]
    fn the_leeway_applies_to_exp_nbf_and_iat() {
        let r = rules(None);
        let within =
            ed_token(json!({"iss": ISS, "exp": now() - 30, "nbf": now() + 30, "iat": now() + 30}));
        check(&within, &r).unwrap();
        let expired = ed_token(json!({"iss": ISS, "exp": now() - 120}));
        assert_eq!(check(&expired, &r).unwrap_err(), IdentityError::Expired);
        let nbf = ed_token(json!({"iss": ISS, "exp": now() + 600, "nbf": now() + 120}));
        assert_eq!(check(&nbf, &r).unwrap_err(), IdentityError::NotYetValid);
        let iat = ed_token(json!({"iss": ISS, "exp": now() + 600, "iat": now() + 120}));
        assert_eq!(check(&iat, &r).unwrap_err(), IdentityError::NotYetValid);
        let zero = ClaimRules::new(ISS, None, 0, TenantSource::None);
        let just_expired = ed_token(json!({"iss": ISS, "exp": now() - 2}));
        assert_eq!(
            check(&just_expired, &zero).unwrap_err(),
            IdentityError::Expired
        );
    }

    #[test]
    fn exp_is_required_and_times_must_be_numbers() {
        let r = rules(None);
        let no_exp = ed_token(json!({"iss": ISS}));
        assert_eq!(
            check(&no_exp, &r).unwrap_err(),
            IdentityError::Malformed(Malformed::NoExpiry)
        );
        let text_exp = ed_token(json!({"iss": ISS, "exp": "tomorrow"}));
        assert_eq!(
            check(&text_exp, &r).unwrap_err(),
            IdentityError::Malformed(Malformed::NoExpiry)
        );
        let text_nbf = ed_token(json!({"iss": ISS, "exp": now() + 60, "nbf": "now"}));
        assert_eq!(
            check(&text_nbf, &r).unwrap_err(),
            IdentityError::Malformed(Malformed::ClaimType("nbf"))
        );
        let text_iat = ed_token(json!({"iss": ISS, "exp": now() + 60, "iat": "now"}));
        assert_eq!(
            check(&text_iat, &r).unwrap_err(),
            IdentityError::Malformed(Malformed::ClaimType("iat"))
        );
    }

    #[test]
    fn the_issuer_must_be_the_one_string() {
        let r = rules(None);
        for iss in [
            json!("https://evil.example.com/"),
            json!([ISS, "other"]),
            json!(5),
        ] {
            let t = ed_token(json!({"iss": iss, "exp": now() + 60}));
            assert_eq!(check(&t, &r).unwrap_err(), IdentityError::Issuer, "{iss}");
        }
        let none = ed_token(json!({"exp": now() + 60}));
        assert_eq!(check(&none, &r).unwrap_err(), IdentityError::Issuer);
    }

    #[test]
    fn the_audience_is_checked_only_when_configured() {
        let with = rules(Some("widgets"));
        for aud in [json!("widgets"), json!(["other", "widgets"])] {
            let t = ed_token(json!({"iss": ISS, "exp": now() + 60, "aud": aud}));
            check(&t, &with).unwrap();
            check(&t, &rules(None)).unwrap();
        }
        for aud in [
            Some(json!("other")),
            Some(json!(["a", "b"])),
            Some(json!(7)),
            None,
        ] {
            let mut claims = json!({"iss": ISS, "exp": now() + 60});
            if let Some(aud) = &aud {
                claims["aud"] = aud.clone();
            }
            let t = ed_token(claims);
            assert_eq!(
                check(&t, &with).unwrap_err(),
                IdentityError::Audience,
                "{aud:?}"
            );
        }
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key_is_looked_up() {
        for alg in [
            "none", "HS256", "HS384", "HS512", "ES512", "rs256", "RSA-OAEP",
        ] {
            let t = raw_token(&json!({"alg": alg, "kid": "ed"}));
            assert_eq!(
                read_header(&t).unwrap_err(),
                IdentityError::Algorithm,
                "{alg}"
            );
        }
        // `alg: none` as RFC 7519 writes it, with an empty signature.
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let c = URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#);
        assert_eq!(
            read_header(&format!("{h}.{c}.")).unwrap_err(),
            IdentityError::Algorithm
        );
        // An allowed alg with an empty signature does not verify.
        let good = ed_token(json!({"iss": ISS, "exp": now() + 60}));
        let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
        assert_eq!(
            check(&unsigned, &rules(None)).unwrap_err(),
            IdentityError::Signature
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"iss": ISS, "exp": now() + 60}),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert_eq!(read_header(&forged).unwrap_err(), IdentityError::Algorithm);
        // Even past the header check, jsonwebtoken refuses an HMAC alg for an RSA key.
        let header = TokenHeader {
            alg: Algorithm::RS256,
            kid: None,
        };
        let rsa = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
        assert!(rules(None).verify(&forged, &header, &rsa).is_err());
    }

    #[test]
    fn a_signature_of_another_key_or_algorithm_does_not_verify() {
        let rsa_signed = encode(
            &Header::new(Algorithm::RS256),
            &json!({"iss": ISS, "exp": now() + 60}),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        let header = read_header(&rsa_signed).unwrap();
        // RS256 header checked against an Ed25519 key: the key family does not match.
        assert_eq!(
            rules(None)
                .verify(&rsa_signed, &header, &ed_key())
                .unwrap_err(),
            IdentityError::Algorithm
        );
        // A flipped signature byte.
        let good = ed_token(json!({"iss": ISS, "exp": now() + 60}));
        let (rest, sig) = good.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[0] ^= 1;
        let bad = format!("{rest}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            check(&bad, &rules(None)).unwrap_err(),
            IdentityError::Signature
        );
        // Claims swapped under a valid signature.
        let other = ed_token(json!({"iss": ISS, "exp": now() + 60, "sub": "admin"}));
        let claims = other.split('.').nth(1).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = claims;
        assert_eq!(
            check(&parts.join("."), &rules(None)).unwrap_err(),
            IdentityError::Signature
        );
    }

    #[test]
    fn malformed_tokens_are_named_as_such() {
        let cases: Vec<(String, Malformed)> = vec![
            ("".into(), Malformed::Encoding),
            ("abc".into(), Malformed::Encoding),
            ("a.b".into(), Malformed::Encoding),
            (".b.c".into(), Malformed::Encoding),
            ("a..c".into(), Malformed::Encoding),
            ("a.b.c.d".into(), Malformed::Encoding),
            ("a b.c.d".into(), Malformed::Encoding),
            ("e30=.e30.c2ln".into(), Malformed::Encoding),
            (raw_token(&json!(["RS256"])), Malformed::Header),
            (raw_token(&json!({"kid": "x"})), Malformed::Header),
            (raw_token(&json!({"alg": 256})), Malformed::Header),
            (
                raw_token(&json!({"alg": "EdDSA", "kid": 5})),
                Malformed::Header,
            ),
            (
                raw_token(&json!({"alg": "EdDSA", "crit": ["b64"], "b64": false})),
                Malformed::Critical,
            ),
            ("x".repeat(MAX_TOKEN_BYTES + 1), Malformed::TooLarge),
        ];
        for (token, reason) in cases {
            assert_eq!(
                read_header(&token).unwrap_err(),
                IdentityError::Malformed(reason),
                "{}",
                &token[..token.len().min(40)]
            );
        }
        // Claims that are not an object, under a valid signature.
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        let t = encode(&Header::new(Algorithm::EdDSA), &json!([1, 2]), &key).unwrap();
        assert_eq!(
            check(&t, &rules(None)).unwrap_err(),
            IdentityError::Malformed(Malformed::Claims)
        );
    }

    #[test]
    fn messages_name_the_check_and_nothing_else() {
        let all = [
            IdentityError::Expired,
            IdentityError::NotYetValid,
            IdentityError::Issuer,
            IdentityError::Audience,
            IdentityError::Signature,
            IdentityError::UnknownKey,
            IdentityError::Algorithm,
            IdentityError::Malformed(Malformed::ClaimType("sub")),
        ];
        for e in all {
            assert!(e.to_string().starts_with(e.check()), "{e}");
            assert!(e
                .as_label()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}

//! JSON Web Token signing shared by the `jwt` and `oauth_jwt_bearer` authentication types
//! and the `jwt_encode()` template function.
//!
//! The header is built here so that registries may add any `jwt_headers` (such as `kid` or
//! `x5t`); the signature itself comes from `jsonwebtoken`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value};

/// Algorithms accepted in registries, in the spelling registries use.
pub const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Why a token could not be signed. Messages never include key material or claims.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The algorithm name is not one of [`ALGORITHMS`].
    #[error("unsupported JWT algorithm '{0}'; use one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA")]
    UnknownAlgorithm(String),
    /// The key does not fit the algorithm (e.g. not a PEM key for RS256).
    #[error("the signing key is not a valid {expected} for {algorithm}")]
    BadKey {
        /// The algorithm.
        algorithm: String,
        /// What kind of key the algorithm needs.
        expected: &'static str,
    },
    /// The claims are not a JSON object.
    #[error("JWT claims must be an object of names to values")]
    ClaimsNotObject,
    /// The signature operation failed.
    #[error("signing the JWT with {0} failed")]
    Signing(String),
}

/// Parses an algorithm name as registries write it.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, JwtError> {
    if !ALGORITHMS.contains(&name) {
        return Err(JwtError::UnknownAlgorithm(name.to_string()));
    }
    name.parse()
        .map_err(|_| JwtError::UnknownAlgorithm(name.to_string()))
}

fn encoding_key(algorithm: Algorithm, name: &str, key: &str) -> Result<EncodingKey, JwtError> {
    use jsonwebtoken::AlgorithmFamily as F;
    let (result, expected) = match algorithm.family() {
        F::Hmac => return Ok(EncodingKey::from_secret(key.as_bytes())),
        F::Rsa => (
            EncodingKey::from_rsa_pem(key.as_bytes()),
            "PEM RSA private key",
        ),
        F::Ec => (
            EncodingKey::from_ec_pem(key.as_bytes()),
            "PEM EC private key (PKCS#8)",
        ),
        F::Ed => (
            EncodingKey::from_ed_pem(key.as_bytes()),
            "PEM Ed25519 private key",
        ),
    };
    result.map_err(|_| JwtError::BadKey {
        algorithm: name.to_string(),
        expected,
    })
}

/// Numeric-looking `exp`, `iat` and `nbf` claims become integers, as the platform does.
pub fn normalize_time_claims(claims: &mut Map<String, Value>) {
    for name in ["exp", "iat", "nbf"] {
        if let Some(value) = claims.get_mut(name) {
            let as_int = match value {
                Value::Number(n) if n.is_f64() => n.as_f64().map(|f| f as i64),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64),
                _ => None,
            };
            if let Some(i) = as_int {
                *value = Value::from(i);
            }
        }
    }
}

/// Signs `claims` with `key` and `algorithm`; `extra_headers` are merged into the header
/// (`alg` always reflects the algorithm used).
pub fn sign(
    claims: &Value,
    key: &str,
    algorithm: &str,
    extra_headers: Option<&Map<String, Value>>,
) -> Result<String, JwtError> {
    let alg = parse_algorithm(algorithm)?;
    let Value::Object(claims) = claims else {
        return Err(JwtError::ClaimsNotObject);
    };
    let mut claims = claims.clone();
    normalize_time_claims(&mut claims);
    let mut header = Map::new();
    header.insert("alg".into(), Value::from(algorithm));
    header.insert("typ".into(), Value::from("JWT"));
    if let Some(extra) = extra_headers {
        for (k, v) in extra {
            if k != "alg" {
                header.insert(k.clone(), v.clone());
            }
        }
    }
    let encoded_header = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    let encoded_claims = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
    let message = format!("{encoded_header}.{encoded_claims}");
    let key = encoding_key(alg, algorithm, key)?;
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg)
        .map_err(|_| JwtError::Signing(algorithm.to_string()))?;
    Ok(format!("{message}.{signature}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn hs256_tokens_verify_and_carry_extra_headers() {
        let claims = serde_json::json!({"sub": "svc", "exp": "4102444800.0"});
        let mut extra = Map::new();
        extra.insert("kid".into(), Value::from("k1"));
        let token = sign(&claims, "s3cret", "HS256", Some(&extra)).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        let data =
            decode::<Value>(&token, &DecodingKey::from_secret(b"s3cret"), &validation).unwrap();
        assert_eq!(data.claims["exp"], Value::from(4102444800i64));
        assert_eq!(data.header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn bad_keys_and_algorithms_are_named_without_key_material() {
        let err = sign(&serde_json::json!({}), "not a pem", "RS256", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the signing key is not a valid PEM RSA private key for RS256"
        );
        assert!(matches!(
            sign(&serde_json::json!({}), "k", "none", None),
            Err(JwtError::UnknownAlgorithm(_))
        ));
    }
}

//! JSON Web Token signing shared by the `jwt` and `oauth_jwt_bearer` authentication types
//! and the `jwt_encode()` template function.
//!
//! The header is built here so that registries may add any `jwt_headers` (such as `kid` or
//! `x5t`); the signature itself comes from `jsonwebtoken`, except ES512 (ECDSA on P-521),
//! which it lacks and RustCrypto's `p521` signs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value};

/// Algorithms accepted in registries, in the spelling registries use.
pub(crate) const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "ES512", "EdDSA",
];

/// A signing algorithm a registry may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigningAlgorithm {
    /// One that `jsonwebtoken` signs.
    Jose(Algorithm),
    /// ES512: ECDSA on P-521 with SHA-512.
    Es512,
}

/// Why a token could not be signed. Messages never include key material or claims.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    /// The algorithm name is not one of [`ALGORITHMS`].
    #[error("unsupported JWT algorithm '{0}'; use one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA")]
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
pub(crate) fn parse_algorithm(name: &str) -> Result<SigningAlgorithm, JwtError> {
    if !ALGORITHMS.contains(&name) {
        return Err(JwtError::UnknownAlgorithm(name.to_string()));
    }
    if name == "ES512" {
        return Ok(SigningAlgorithm::Es512);
    }
    name.parse()
        .map(SigningAlgorithm::Jose)
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
pub(crate) fn normalize_time_claims(claims: &mut Map<String, Value>) {
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
pub(crate) fn sign(
    claims: &Value,
    key: &str,
    algorithm: &str,
    extra_headers: Option<&Map<String, Value>>,
) -> Result<String, JwtError> {
    let signing = parse_algorithm(algorithm)?;
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
    let signature = match signing {
        SigningAlgorithm::Jose(alg) => {
            let key = encoding_key(alg, algorithm, key)?;
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg)
                .map_err(|_| JwtError::Signing(algorithm.to_string()))?
        }
        SigningAlgorithm::Es512 => sign_es512(message.as_bytes(), key)?,
    };
    Ok(format!("{message}.{signature}"))
}

/// ES512 (RFC 7518 §3.4): ECDSA P-521 over SHA-512, the signature being R and S as two
/// 66-byte big-endian integers, base64url-encoded. The key is a PEM P-521 private key,
/// PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`, as `openssl ecparam`
/// writes it).
fn sign_es512(message: &[u8], pem: &str) -> Result<String, JwtError> {
    use p521::ecdsa::signature::Signer;
    use p521::pkcs8::DecodePrivateKey;
    let secret = p521::SecretKey::from_pkcs8_pem(pem)
        .ok()
        .or_else(|| p521::SecretKey::from_sec1_pem(pem).ok())
        .ok_or_else(|| JwtError::BadKey {
            algorithm: "ES512".to_string(),
            expected: "PEM P-521 EC private key (PKCS#8 or SEC1)",
        })?;
    let signing_key = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes())
        .map_err(|_| JwtError::Signing("ES512".to_string()))?;
    let signature: p521::ecdsa::Signature = signing_key
        .try_sign(message)
        .map_err(|_| JwtError::Signing("ES512".to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(signature.to_bytes()))
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

    /// Test-only keys made with openssl (tests/fixtures/keys/): (private, public) PEM.
    fn key_pair(algorithm: &str) -> (&'static str, &'static str) {
        macro_rules! pair {
            ($name:literal) => {
                (
                    include_str!(concat!("../tests/fixtures/keys/", $name, ".pem")),
                    include_str!(concat!("../tests/fixtures/keys/", $name, ".pub.pem")),
                )
            };
        }
        match &algorithm[..2] {
            "RS" | "PS" => pair!("rsa"),
            "Ed" => pair!("ed25519"),
            _ => match algorithm {
                "ES256" => pair!("p256"),
                "ES384" => pair!("p384"),
                _ => pair!("p521"),
            },
        }
    }

    fn header_of(token: &str) -> Value {
        let header = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
    }

    #[test]
    fn every_listed_algorithm_signs_a_token_its_public_key_verifies() {
        let claims = serde_json::json!({"sub": "svc", "exp": 4102444800i64});
        for &algorithm in ALGORITHMS {
            let (private, public) = if algorithm.starts_with("HS") {
                ("s3cret", "s3cret")
            } else {
                key_pair(algorithm)
            };
            let token = sign(&claims, private, algorithm, None)
                .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
            assert_eq!(header_of(&token)["alg"], algorithm);
            if algorithm == "ES512" {
                verify_es512(&token, public);
                continue;
            }
            let alg: Algorithm = algorithm.parse().unwrap();
            let key = match &algorithm[..2] {
                "HS" => DecodingKey::from_secret(public.as_bytes()),
                "RS" | "PS" => DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
                "ES" => DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
                _ => DecodingKey::from_ed_pem(public.as_bytes()).unwrap(),
            };
            let data = decode::<Value>(&token, &key, &Validation::new(alg))
                .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
            assert_eq!(data.claims["sub"], "svc", "{algorithm}");
        }
    }

    /// Verifies an ES512 token as RFC 7518 §3.4 defines it, with the public key only.
    fn verify_es512(token: &str, public_pem: &str) {
        use p521::ecdsa::signature::Verifier;
        use p521::pkcs8::DecodePublicKey;
        let (message, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert_eq!(signature.len(), 132, "R and S, 66 bytes each");
        let public = p521::PublicKey::from_public_key_pem(public_pem).unwrap();
        let verifying_key = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).unwrap();
        let signature = p521::ecdsa::Signature::from_slice(&signature).unwrap();
        verifying_key
            .verify(message.as_bytes(), &signature)
            .expect("the ES512 signature verifies");
        let mut tampered = message.to_string();
        tampered.push('x');
        assert!(verifying_key
            .verify(tampered.as_bytes(), &signature)
            .is_err());
    }

    #[test]
    fn es512_takes_sec1_keys_as_openssl_ecparam_writes_them() {
        let private = include_str!("../tests/fixtures/keys/p521.sec1.pem");
        let public = include_str!("../tests/fixtures/keys/p521.sec1.pub.pem");
        let token = sign(&serde_json::json!({"sub": "svc"}), private, "ES512", None).unwrap();
        verify_es512(&token, public);
    }

    #[test]
    fn es512_refuses_other_keys_without_quoting_them() {
        for key in [key_pair("ES256").0, key_pair("RS256").0, "not a pem"] {
            let err = sign(&serde_json::json!({}), key, "ES512", None).unwrap_err();
            assert_eq!(
                err.to_string(),
                "the signing key is not a valid PEM P-521 EC private key (PKCS#8 or SEC1) for ES512"
            );
        }
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

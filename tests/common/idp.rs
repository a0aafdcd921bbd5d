//! A test identity provider for caller identity (docs/spec.md §9): JWKs derived from the
//! test keys of tests/fixtures/keys/ by reading their DER here (not by the library under
//! test), tokens signed with jsonwebtoken (or crafted by hand, for forgeries), and a JWKS
//! endpoint on 127.0.0.1 whose answer (document and status) can be swapped while it runs.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::upstreams::{upstream, Log, Upstream};

// ---------------------------------------------------------------------------------------
// JWKs from public keys: the SubjectPublicKeyInfo DER read by hand.
// ---------------------------------------------------------------------------------------

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// One DER TLV: (tag, content, rest).
fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = der[0];
    let (len, header) = match der[1] {
        n if n < 0x80 => (n as usize, 2),
        n => {
            let count = (n & 0x7f) as usize;
            let len = der[2..2 + count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + count)
        }
    };
    (tag, &der[header..header + len], &der[header + len..])
}

/// The algorithm OID (and its parameters) and the public key bits of an SPKI.
fn spki(pem: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let der = pem_der(pem);
    let (tag, spki, _) = tlv(&der);
    assert_eq!(tag, 0x30);
    let (tag, algorithm, rest) = tlv(spki);
    assert_eq!(tag, 0x30);
    let (tag, oid, params) = tlv(algorithm);
    assert_eq!(tag, 0x06);
    let params = if params.is_empty() {
        Vec::new()
    } else {
        let (_, p, _) = tlv(params);
        p.to_vec()
    };
    let (tag, bits, _) = tlv(rest);
    assert_eq!(tag, 0x03);
    assert_eq!(bits[0], 0, "no unused bits");
    (oid.to_vec(), params, bits[1..].to_vec())
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519_OID: &[u8] = &[0x2b, 0x65, 0x70];

/// The public JWK of a PEM public key, with `kid` (and `alg` when given).
pub fn jwk(public_pem: &str, kid: &str, alg: Option<&str>) -> Value {
    let (oid, params, key) = spki(public_pem);
    let mut jwk = if oid == RSA_ENCRYPTION {
        let (_, rsa, _) = tlv(&key);
        let (_, n, rest) = tlv(rsa);
        let (_, e, _) = tlv(rest);
        let n = n.strip_prefix(&[0u8]).unwrap_or(n);
        json!({"kty": "RSA", "n": b64(n), "e": b64(e)})
    } else if oid == EC_PUBLIC_KEY {
        let (crv, size) = match params.as_slice() {
            p if p == PRIME256V1 => ("P-256", 32),
            p if p == SECP384R1 => ("P-384", 48),
            other => panic!("curve {other:?}"),
        };
        assert_eq!(key[0], 0x04, "an uncompressed point");
        assert_eq!(key.len(), 1 + 2 * size);
        json!({"kty": "EC", "crv": crv, "x": b64(&key[1..1 + size]), "y": b64(&key[1 + size..])})
    } else if oid == ED25519_OID {
        assert_eq!(key.len(), 32);
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&key)})
    } else {
        panic!("key type {oid:?}");
    };
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

// ---------------------------------------------------------------------------------------
// Tokens.
// ---------------------------------------------------------------------------------------

/// Now, in Unix seconds.
pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// The signing key of `alg` from a PEM private key (for HS256: the PEM text itself as the
/// HMAC secret, the classic key-confusion forgery).
pub fn encoding_key(alg: Algorithm, private_pem: &str) -> EncodingKey {
    match alg {
        Algorithm::HS256 => EncodingKey::from_secret(private_pem.as_bytes()),
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap()
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
    }
}

/// A token over `claims` signed with `alg` and the PEM private key, naming `kid`.
pub fn sign(alg: Algorithm, private_pem: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &encoding_key(alg, private_pem)).unwrap()
}

/// A token whose header and claims are given as JSON, with `signature` as its third part.
pub fn raw(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `token` with its claims replaced by `claims` and its signature kept: a forgery whose
/// signature no longer matches what it signs.
pub fn with_claims_swapped(token: &str, claims: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    parts[1] = b64(claims.to_string().as_bytes());
    parts.join(".")
}

/// An Ed25519 private key (PKCS#8) made from a seed: a key the issuer never published.
pub fn stranger_ed25519() -> EncodingKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[7u8; 32]);
    EncodingKey::from_ed_der(&der)
}

// ---------------------------------------------------------------------------------------
// The JWKS endpoint.
// ---------------------------------------------------------------------------------------

/// What the endpoint serves at `/jwks`: a JSON document (or raw text) with a status
/// (200 unless set).
#[derive(Clone)]
pub struct Served {
    body: Arc<Mutex<String>>,
    status: Arc<AtomicU16>,
}

impl Served {
    /// Serves `doc` with 200.
    pub fn new(doc: &Value) -> Self {
        Served {
            body: Arc::new(Mutex::new(doc.to_string())),
            status: Arc::new(AtomicU16::new(200)),
        }
    }

    /// Serves `doc` from now on.
    pub fn set(&self, doc: &Value) {
        *self.body.lock().unwrap() = doc.to_string();
    }

    /// Serves `text` from now on.
    pub fn set_text(&self, text: &str) {
        *self.body.lock().unwrap() = text.into();
    }

    /// Answers with `status` from now on (an outage: 500, 503, ...).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

/// An upstream on 127.0.0.1 whose `GET /jwks` answers what `served` holds; every fetch is
/// recorded in its log.
pub async fn jwks_endpoint(served: &Served) -> Upstream {
    let served = served.clone();
    upstream(move |cfg| {
        let served = served.clone();
        cfg.route(
            "/jwks",
            web::get().to(move |req: HttpRequest, log: web::Data<Log>| {
                log.record(&req, b"");
                let body = served.body.lock().unwrap().clone();
                let status = served.status.load(Ordering::SeqCst);
                async move {
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .content_type("application/json")
                        .body(body)
                }
            }),
        );
    })
    .await
}

/// A running test identity provider: its JWKS endpoint and what it serves.
pub struct Idp {
    /// What `/jwks` answers.
    pub served: Served,
    /// The endpoint.
    pub endpoint: Upstream,
}

impl Idp {
    /// Starts an endpoint serving `jwks`.
    pub async fn start(jwks: &Value) -> Idp {
        let served = Served::new(jwks);
        let endpoint = jwks_endpoint(&served).await;
        Idp { served, endpoint }
    }

    /// The `--identity-jwks-url` of this provider.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.endpoint.base)
    }

    /// How many times `/jwks` was fetched.
    pub fn fetches(&self) -> usize {
        self.endpoint.log.count("/jwks")
    }
}

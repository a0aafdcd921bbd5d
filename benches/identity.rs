//! Micro-benchmarks of caller identity (docs/spec.md §9): verifying one token with the keys
//! in memory — header, key lookup, signature, claims and the `Caller` — for RS256 (2048-bit
//! key), ES256 and EdDSA, plus building the `user` template value and parsing a fetched JWKS. `cargo bench --bench identity`
//! measures; `cargo test --benches` runs each once.

use std::hint::black_box;
use std::sync::Arc;

use connector_runtime::identity::{
    Identity, IdentityArgs, KeySet, KeySource, KeyStore, KeyStoreOptions,
};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{json, Value};

const ISS: &str = "https://members.example.com/";
const RSA: (&str, &str) = (
    include_str!("../tests/fixtures/keys/rsa.pem"),
    include_str!("../tests/fixtures/keys/rsa.pub.pem"),
);
const P256: (&str, &str) = (
    include_str!("../tests/fixtures/keys/p256.pem"),
    include_str!("../tests/fixtures/keys/p256.pub.pem"),
);
const ED25519: (&str, &str) = (
    include_str!("../tests/fixtures/keys/ed25519.pem"),
    include_str!("../tests/fixtures/keys/ed25519.pub.pem"),
);

fn jwk(key: DecodingKey, kid: &str) -> Value {
    let mut jwk = serde_json::to_value(Jwk::from_decoding_key(&key, None).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk
}

/// A JWKS with an RSA, a P-256 and an Ed25519 key, as an issuer serves it.
fn jwks_text() -> String {
    json!({"keys": [
        jwk(DecodingKey::from_rsa_pem(RSA.1.as_bytes()).unwrap(), "rsa-1"),
        jwk(DecodingKey::from_ec_pem(P256.1.as_bytes()).unwrap(), "ec-1"),
        jwk(DecodingKey::from_ed_pem(ED25519.1.as_bytes()).unwrap(), "ed-1"),
    ]})
    .to_string()
}

/// An identity with the keys of [`jwks_text`] in memory (nothing is fetched).
fn identity() -> Identity {
    let keys = KeySet::parse(jwks_text().as_bytes()).unwrap();
    let args = IdentityArgs {
        identity_issuer: Some(ISS.into()),
        identity_jwks_file: Some("/nonexistent/jwks.json".into()),
        identity_audience: Some("widgets".into()),
        identity_tenant_claim: Some("community".into()),
        ..IdentityArgs::default()
    };
    let store = KeyStore::with_keys(
        KeySource::File("/nonexistent/jwks.json".into()),
        keys,
        KeyStoreOptions::default(),
    );
    Identity::with_store(&args, Arc::new(store))
}

/// A typical member token: the §9 claims and a few profile fields.
fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": ISS, "aud": "widgets", "sub": "member-17", "exp": now + 3600, "iat": now,
        "email": "ada@example.com", "given_name": "Ada", "family_name": "Lovelace",
        "preferred_username": "ada", "community": "c-9",
        "profile_fields": {"3": "Engineering", "12": 42, "19": "Berlin"}
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, &claims, key).unwrap()
}

fn verify(c: &mut Criterion) {
    let identity = identity();
    let rs256 = token(
        Algorithm::RS256,
        "rsa-1",
        &EncodingKey::from_rsa_pem(RSA.0.as_bytes()).unwrap(),
    );
    let eddsa = token(
        Algorithm::EdDSA,
        "ed-1",
        &EncodingKey::from_ed_pem(ED25519.0.as_bytes()).unwrap(),
    );
    let es256 = token(
        Algorithm::ES256,
        "ec-1",
        &EncodingKey::from_ec_pem(P256.0.as_bytes()).unwrap(),
    );
    let mut group = c.benchmark_group("identity: verify one token");
    // The same token again (a page calling several connectors): its verification is reused.
    identity.verify_now(&rs256).unwrap();
    group.bench_function("RS256 again (verification reused)", |b| {
        b.iter(|| identity.verify_now(black_box(&rs256)).unwrap())
    });
    group.bench_function("ES256 (P-256)", |b| {
        b.iter(|| identity.verify_afresh(black_box(&es256)).unwrap())
    });
    group.bench_function("RS256 (2048-bit)", |b| {
        b.iter(|| identity.verify_afresh(black_box(&rs256)).unwrap())
    });
    group.bench_function("EdDSA (Ed25519)", |b| {
        b.iter(|| identity.verify_afresh(black_box(&eddsa)).unwrap())
    });
    // The signature check alone (jsonwebtoken), the floor under the figures above.
    for (name, token, key, alg) in [
        (
            "baseline: RS256 signature only",
            &rs256,
            DecodingKey::from_rsa_pem(RSA.1.as_bytes()).unwrap(),
            Algorithm::RS256,
        ),
        (
            "baseline: EdDSA signature only",
            &eddsa,
            DecodingKey::from_ed_pem(ED25519.1.as_bytes()).unwrap(),
            Algorithm::EdDSA,
        ),
    ] {
        let (message, signature) = token.rsplit_once('.').unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                assert!(jsonwebtoken::crypto::verify(
                    black_box(signature),
                    black_box(message.as_bytes()),
                    &key,
                    alg
                )
                .unwrap())
            })
        });
    }
    group.finish();
    let caller = identity.verify_now(&eddsa).unwrap();
    c.bench_function("identity: user template value", |b| {
        b.iter(|| black_box(&caller).template_value())
    });
    // What a JWKS fetch costs besides the network: parsing the document and its keys (done
    // at start, on refresh and for an unknown kid; never per request).
    let text = jwks_text();
    c.bench_function("identity: parse a JWKS of 3 keys", |b| {
        b.iter(|| KeySet::parse(black_box(text.as_bytes())).unwrap())
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);

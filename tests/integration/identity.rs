//! Caller identity (docs/spec.md §9) against a real JWKS endpoint on 127.0.0.1: tokens signed
//! here with the test keys of tests/fixtures/keys/ (RSA, EC P-256 and P-384, Ed25519), whose
//! JWKs are derived from the public keys' DER by tests/common/idp.rs (not by the library under
//! test).

use crate::common::idp::{b64, jwk, jwks_endpoint, now, raw, sign, stranger_ed25519, Served};
use crate::common::keys::{ED25519, P256, P384, RSA};
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::web;
use connector_runtime::identity::jwks::{JwksError, KeyStoreOptions};
use connector_runtime::identity::{
    Caller, Identity, IdentityArgs, IdentityError, IdentityStartError, Malformed,
};
use jsonwebtoken::{encode, Algorithm, Header};
use serde_json::{json, Value};

use crate::common::{slow_route, upstream, Upstream};

const ISS: &str = "https://members.example.com/";
const AUD: &str = "widgets";

/// The JWKS served at start: an RSA key, a P-256 key and an Ed25519 key.
fn initial_jwks() -> Value {
    json!({"keys": [
        jwk(RSA.1, "rsa-1", None),
        jwk(P256.1, "ec-1", Some("ES256")),
        jwk(ED25519.1, "ed-1", Some("EdDSA")),
    ]})
}

// ---------------------------------------------------------------------------------------
// Tokens.
// ---------------------------------------------------------------------------------------

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "member-17", "exp": now() + 300, "iat": now(),
        "email": "ada@example.com", "given_name": "Ada", "family_name": "Lovelace",
        "preferred_username": "ada", "profile_fields": {"3": "Engineering", "12": 42},
        "community": "c-9"
    })
}

/// `claims` with `changes` merged in (a `null` change removes the claim).
fn claims_with(changes: Value) -> Value {
    crate::common::merged(claims(), changes)
}

fn ed(claims: &Value) -> String {
    sign(Algorithm::EdDSA, ED25519.0, "ed-1", claims)
}

// ---------------------------------------------------------------------------------------
// The JWKS endpoint and the identity under test.
// ---------------------------------------------------------------------------------------

fn args(jwks_url: String) -> IdentityArgs {
    IdentityArgs {
        identity_issuer: Some(ISS.into()),
        identity_jwks_url: Some(jwks_url),
        identity_audience: Some(AUD.into()),
        identity_cookie: Some("member_token".into()),
        identity_tenant_claim: Some("community".into()),
        ..IdentityArgs::default()
    }
}

/// The endpoint, what it serves, and an identity started against it.
async fn setup() -> (Upstream, Served, Identity) {
    let served = Served::new(&initial_jwks());
    let endpoint = jwks_endpoint(&served).await;
    let identity = Identity::start(&args(format!("{}/jwks", endpoint.base)))
        .await
        .expect("identity starts")
        .expect("identity is configured");
    assert_eq!(endpoint.log.count("/jwks"), 1, "fetched once at start");
    (endpoint, served, identity)
}

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

fn expected_caller() -> Caller {
    Caller {
        id: Some("member-17".into()),
        email: Some("ada@example.com".into()),
        first_name: Some("Ada".into()),
        last_name: Some("Lovelace".into()),
        username: Some("ada".into()),
        profile_fields: json!({"3": "Engineering", "12": 42})
            .as_object()
            .unwrap()
            .clone(),
        tenant_id: Some("c-9".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn tokens_of_every_key_type_verify_and_give_the_caller() {
    let (_endpoint, _served, identity) = setup().await;
    let c = claims();
    for (alg, private, kid) in [
        (Algorithm::RS256, RSA.0, "rsa-1"),
        (Algorithm::RS512, RSA.0, "rsa-1"),
        (Algorithm::PS256, RSA.0, "rsa-1"),
        (Algorithm::ES256, P256.0, "ec-1"),
        (Algorithm::EdDSA, ED25519.0, "ed-1"),
    ] {
        let token = sign(alg, private, kid, &c);
        let caller = identity
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(caller, expected_caller(), "{alg:?}");
    }
    // From the Authorization header and from the cookie.
    let token = ed(&c);
    let bearer = headers(&[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(
        identity.authenticate(&bearer).await,
        Ok(Some(expected_caller()))
    );
    let cookie = headers(&[("cookie", &format!("theme=dark; member_token={token}"))]);
    assert_eq!(
        identity.authenticate(&cookie).await,
        Ok(Some(expected_caller()))
    );
    assert_eq!(identity.authenticate(&headers(&[])).await, Ok(None));
    // What templates see.
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
    let caller = identity.verify(&token).await.unwrap();
    let out = env
        .render_str(
            "{{ user.id }}/{{ user.profile_fields.by_id(3) }}/{{ user.profile_fields.by_id('12') }}/{{ user.profile_fields.by_id(4) | default('none') }}/{{ tenant_id }}",
            minijinja::context! {
                user => caller.template_value(),
                tenant_id => identity.tenant_source().template_value(Some(&caller)),
            },
        )
        .unwrap();
    assert_eq!(out, "member-17/Engineering/42/none/c-9");
}

#[actix_web::test]
async fn each_failed_check_is_refused_with_its_variant() {
    let (endpoint, _served, identity) = setup().await;
    let malformed = |m| IdentityError::Malformed(m);
    let forged_claims = {
        // A valid signature over other claims.
        let good = ed(&claims());
        let other = ed(&claims_with(json!({"sub": "admin"})));
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = other.split('.').nth(1).unwrap();
        parts.join(".")
    };
    let stranger = {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed-1".into());
        encode(&header, &claims(), &stranger_ed25519()).unwrap()
    };
    let huge = ed(&claims_with(json!({"padding": "x".repeat(9000)})));
    let cases: Vec<(&str, String, IdentityError)> = vec![
        (
            "expired",
            ed(&claims_with(json!({"exp": now() - 3600}))),
            IdentityError::Expired,
        ),
        (
            "not yet valid (nbf)",
            ed(&claims_with(json!({"nbf": now() + 3600}))),
            IdentityError::NotYetValid,
        ),
        (
            "not yet valid (iat)",
            ed(&claims_with(json!({"iat": now() + 3600}))),
            IdentityError::NotYetValid,
        ),
        (
            "other issuer",
            ed(&claims_with(json!({"iss": "https://evil.example.com/"}))),
            IdentityError::Issuer,
        ),
        (
            "no issuer",
            ed(&claims_with(json!({"iss": null}))),
            IdentityError::Issuer,
        ),
        (
            "other audience",
            ed(&claims_with(json!({"aud": ["other", "more"]}))),
            IdentityError::Audience,
        ),
        (
            "no audience",
            ed(&claims_with(json!({"aud": null}))),
            IdentityError::Audience,
        ),
        (
            "unknown key",
            sign(Algorithm::EdDSA, ED25519.0, "ed-404", &claims()),
            IdentityError::UnknownKey,
        ),
        ("forged claims", forged_claims, IdentityError::Signature),
        (
            "another key's signature",
            stranger,
            IdentityError::Signature,
        ),
        (
            "alg none",
            raw(&json!({"alg": "none", "kid": "ed-1"}), &claims(), ""),
            IdentityError::Algorithm,
        ),
        (
            "HS256 keyed with the RSA public key",
            sign(Algorithm::HS256, RSA.1, "rsa-1", &claims()),
            IdentityError::Algorithm,
        ),
        (
            "HS256 keyed with the Ed25519 JWK's x",
            sign(
                Algorithm::HS256,
                initial_jwks()["keys"][2]["x"].as_str().unwrap(),
                "ed-1",
                &claims(),
            ),
            IdentityError::Algorithm,
        ),
        (
            "an allowed alg that is not the key's",
            sign(Algorithm::ES384, P384.0, "ec-1", &claims()),
            IdentityError::Algorithm,
        ),
        (
            "RS256 under an EdDSA kid",
            sign(Algorithm::RS256, RSA.0, "ed-1", &claims()),
            IdentityError::Algorithm,
        ),
        (
            "not a JWT",
            "not-a-jwt".into(),
            malformed(Malformed::Encoding),
        ),
        (
            "header not JSON",
            format!("{}.e30.c2ln", b64(b"{alg")),
            malformed(Malformed::Header),
        ),
        ("oversized", huge, malformed(Malformed::TooLarge)),
        (
            "sub a number",
            ed(&claims_with(json!({"sub": 17}))),
            malformed(Malformed::ClaimType("sub")),
        ),
        (
            "email an array",
            ed(&claims_with(json!({"email": ["a@b.c"]}))),
            malformed(Malformed::ClaimType("email")),
        ),
        (
            "profile_fields not an object",
            ed(&claims_with(json!({"profile_fields": [1, 2]}))),
            malformed(Malformed::ClaimType("profile_fields")),
        ),
        (
            "tenant claim an object",
            ed(&claims_with(json!({"community": {"id": 1}}))),
            malformed(Malformed::TenantClaimType),
        ),
        (
            "exp missing",
            ed(&claims_with(json!({"exp": null}))),
            malformed(Malformed::NoExpiry),
        ),
        (
            "exp a string",
            ed(&claims_with(json!({"exp": "soon"}))),
            malformed(Malformed::NoExpiry),
        ),
    ];
    for (name, token, expected) in &cases {
        let err = identity.verify(token).await.unwrap_err();
        assert_eq!(err, *expected, "{name}");
        // The message names the check and carries neither the token nor a claim value.
        let message = err.to_string();
        assert!(message.starts_with(err.check()), "{name}: {message}");
        for leak in ["member-17", "ada@example.com", "Engineering", "evil", "c-9"] {
            assert!(!message.contains(leak), "{name}: {message}");
        }
        assert!(!message.contains(&token[..token.len().min(20)]), "{name}");
    }
    // The one unknown kid refetched once; nothing else fetched.
    assert_eq!(endpoint.log.count("/jwks"), 2);
    // A garbled Authorization header is a credential that fails, not a missing one.
    let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
    assert_eq!(
        identity.authenticate(&basic).await,
        Err(malformed(Malformed::Authorization))
    );
}

#[actix_web::test]
async fn a_rotated_key_is_fetched_for_its_kid_at_most_once_per_30_seconds() {
    let (endpoint, served, identity) = setup().await;
    // The issuer rotates a P-384 key in.
    let mut rotated = initial_jwks();
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwk(P384.1, "ec-2", None));
    served.set(&rotated);
    let token = sign(Algorithm::ES384, P384.0, "ec-2", &claims());
    assert_eq!(identity.verify_now(&token), Err(IdentityError::UnknownKey));
    assert_eq!(endpoint.log.count("/jwks"), 1, "verify_now never fetches");
    assert_eq!(identity.verify(&token).await, Ok(expected_caller()));
    assert_eq!(
        endpoint.log.count("/jwks"),
        2,
        "one refetch for the new kid"
    );
    // Known now, and the old keys still serve: no further fetch.
    identity.verify(&token).await.unwrap();
    identity.verify(&ed(&claims())).await.unwrap();
    assert_eq!(endpoint.log.count("/jwks"), 2);
    // A second rotation within 30 s: the new kid is served but not fetched.
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwk(P256.1, "ec-3", Some("ES256")));
    served.set(&rotated);
    let third = sign(Algorithm::ES256, P256.0, "ec-3", &claims());
    assert_eq!(
        identity.verify(&third).await,
        Err(IdentityError::UnknownKey)
    );
    assert_eq!(endpoint.log.count("/jwks"), 2, "no refetch within 30 s");
    // The periodic refresh is not limited and brings it.
    assert_eq!(identity.keys().refresh().await, Ok(5));
    assert_eq!(endpoint.log.count("/jwks"), 3);
    assert_eq!(identity.verify_now(&third), Ok(expected_caller()));
}

#[actix_web::test]
async fn concurrent_tokens_with_a_new_kid_share_one_fetch() {
    let (endpoint, served, identity) = setup().await;
    let mut rotated = initial_jwks();
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwk(P384.1, "ec-2", None));
    served.set(&rotated);
    let token = sign(Algorithm::ES384, P384.0, "ec-2", &claims());
    let results = futures_util::future::join_all((0..8).map(|_| identity.verify(&token))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(endpoint.log.count("/jwks"), 2);
}

#[actix_web::test]
async fn the_last_good_keys_keep_serving_when_fetches_fail() {
    let (endpoint, served, identity) = setup().await;
    let token = ed(&claims());
    // A broken document, then an answer without usable keys: the keys stay.
    served.set_text("<html>maintenance</html>");
    assert_eq!(identity.keys().refresh().await, Err(JwksError::NotJwks));
    served.set(&json!({"keys": [{"kty": "oct", "kid": "hs", "k": "c2VjcmV0", "alg": "HS256"}]}));
    assert_eq!(
        identity.keys().refresh().await,
        Err(JwksError::NoUsableKeys { ignored: 1 })
    );
    assert_eq!(identity.verify(&token).await, Ok(expected_caller()));
    // The endpoint goes away.
    endpoint.stop().await;
    assert!(matches!(
        identity.keys().refresh().await,
        Err(JwksError::Unreachable(_))
    ));
    assert_eq!(identity.verify(&token).await, Ok(expected_caller()));
    for (alg, private, kid) in [
        (Algorithm::RS256, RSA.0, "rsa-1"),
        (Algorithm::ES256, P256.0, "ec-1"),
    ] {
        identity
            .verify(&sign(alg, private, kid, &claims()))
            .await
            .unwrap();
    }
    // An unknown kid meanwhile: the refetch fails, the answer is unknown key, the keys stay.
    let unknown = sign(Algorithm::EdDSA, ED25519.0, "ed-2", &claims());
    assert_eq!(
        identity.verify(&unknown).await,
        Err(IdentityError::UnknownKey)
    );
    assert_eq!(identity.keys().current().len(), 3);
    identity.verify(&token).await.unwrap();
}

#[actix_web::test]
async fn the_keys_are_refreshed_in_the_background() {
    let served = Served::new(&initial_jwks());
    let endpoint = jwks_endpoint(&served).await;
    let mut a = args(format!("{}/jwks", endpoint.base));
    a.identity_jwks_refresh_secs = 1;
    let identity = Identity::start(&a).await.unwrap().unwrap();
    let task = identity.spawn_refresh().expect("refresh is on");
    let mut rotated = initial_jwks();
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwk(P384.1, "ec-2", None));
    served.set(&rotated);
    let token = sign(Algorithm::ES384, P384.0, "ec-2", &claims());
    let started = std::time::Instant::now();
    while endpoint.log.count("/jwks") < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no periodic fetch"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the interval"
    );
    // The fetch may still be being read: give it a moment to swap the keys in.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(identity.verify_now(&token), Ok(expected_caller()));
    task.abort();
    // With refresh off there is no task.
    a.identity_jwks_refresh_secs = 0;
    let off = Identity::start(&a).await.unwrap().unwrap();
    assert!(off.spawn_refresh().is_none());
}

#[actix_web::test]
async fn start_fails_when_no_usable_keys_can_be_had() {
    // Not configured: no identity.
    assert!(Identity::start(&IdentityArgs::default())
        .await
        .unwrap()
        .is_none());
    // A 404.
    let served = Served::new(&initial_jwks());
    let endpoint = jwks_endpoint(&served).await;
    let missing = Identity::start(&args(format!("{}/nope", endpoint.base))).await;
    assert_eq!(
        missing.unwrap_err(),
        IdentityStartError::Keys(JwksError::Status(404))
    );
    // Only keys outside the allow-list.
    served.set(&json!({"keys": [
        {"kty": "oct", "kid": "hs", "k": "c2VjcmV0"},
        jwk(RSA.1, "enc", Some("RSA-OAEP")),
    ]}));
    let unusable = Identity::start(&args(format!("{}/jwks", endpoint.base))).await;
    assert_eq!(
        unusable.unwrap_err(),
        IdentityStartError::Keys(JwksError::NoUsableKeys { ignored: 2 })
    );
    // An endpoint that does not answer in time (the limit is 5 s; shortened here).
    let slow = upstream(|cfg| {
        cfg.route(
            "/jwks",
            web::get().to(slow_route(Duration::from_secs(10), 200, initial_jwks())),
        );
    })
    .await;
    let options = KeyStoreOptions {
        fetch_timeout: Duration::from_millis(300),
        ..KeyStoreOptions::default()
    };
    let started = std::time::Instant::now();
    let timed_out = Identity::start_with(&args(format!("{}/jwks", slow.base)), options).await;
    assert!(matches!(
        timed_out.unwrap_err(),
        IdentityStartError::Keys(JwksError::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
    // A bad combination of flags is named before anything is fetched.
    let no_issuer = IdentityArgs {
        identity_issuer: None,
        ..args(format!("{}/jwks", endpoint.base))
    };
    assert!(matches!(
        Identity::start(&no_issuer).await.unwrap_err(),
        IdentityStartError::Config(_)
    ));
}

#[actix_web::test]
async fn a_jwks_file_works_like_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, initial_jwks().to_string()).unwrap();
    let a = IdentityArgs {
        identity_issuer: Some(ISS.into()),
        identity_jwks_file: Some(path.clone()),
        identity_tenant_claim: Some("community".into()),
        ..IdentityArgs::default()
    };
    let identity = Identity::start(&a).await.unwrap().unwrap();
    // No --identity-audience: aud is not checked.
    let token = sign(
        Algorithm::PS384,
        RSA.0,
        "rsa-1",
        &claims_with(json!({"aud": "other"})),
    );
    assert_eq!(identity.verify(&token).await, Ok(expected_caller()));
    // A key added to the file is read for its unknown kid.
    let mut rotated = initial_jwks();
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwk(P384.1, "ec-2", Some("ES384")));
    std::fs::write(&path, rotated.to_string()).unwrap();
    let new = sign(Algorithm::ES384, P384.0, "ec-2", &claims());
    assert_eq!(identity.verify(&new).await, Ok(expected_caller()));
}

#[actix_web::test]
async fn an_https_url_is_fetched_over_tls() {
    // A plain-HTTP server behind an https:// URL: the client starts a TLS handshake (which
    // the server cannot answer) instead of sending the request in clear.
    let served = Served::new(&initial_jwks());
    let endpoint = jwks_endpoint(&served).await;
    let result = Identity::start(&args(format!("https://127.0.0.1:{}/jwks", endpoint.port))).await;
    assert!(
        matches!(
            result,
            Err(IdentityStartError::Keys(JwksError::Unreachable(_)))
        ),
        "{result:?}"
    );
    assert_eq!(endpoint.log.count("/jwks"), 0, "no request in clear");
}

#[actix_web::test]
async fn a_token_verified_once_is_reused_only_while_its_keys_serve_and_it_is_valid() {
    // A page sends one token with every call: its signature is checked once, but the reuse
    // never outlives the token (exp + leeway) nor the key set that verified it.
    let served = Served::new(&initial_jwks());
    let endpoint = jwks_endpoint(&served).await;
    let mut a = args(format!("{}/jwks", endpoint.base));
    a.identity_leeway_secs = 0;
    let identity = Identity::start(&a).await.unwrap().unwrap();

    // Reused (what that saves is measured by `cargo bench --bench identity`): the same
    // answer every time.
    let token = sign(Algorithm::RS256, RSA.0, "rsa-1", &claims());
    for _ in 0..3 {
        assert_eq!(identity.verify_now(&token), Ok(expected_caller()));
    }

    // Never past exp (leeway 0 here): a token valid for one more second stops verifying.
    let short = sign(
        Algorithm::EdDSA,
        ED25519.0,
        "ed-1",
        &claims_with(json!({"exp": now() + 1})),
    );
    assert!(identity.verify_now(&short).is_ok());
    actix_rt::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(identity.verify_now(&short), Err(IdentityError::Expired));

    // A key set swapped in (here by a refetch for an unknown kid) drops every reuse: a
    // token of a key that left the set is refused at once.
    let rotated = json!({"keys": [jwk(P384.1, "ec-2", None)]});
    served.set(&rotated);
    let newcomer = sign(Algorithm::ES384, P384.0, "ec-2", &claims());
    assert_eq!(identity.verify(&newcomer).await, Ok(expected_caller()));
    assert_eq!(identity.verify_now(&token), Err(IdentityError::UnknownKey));
}

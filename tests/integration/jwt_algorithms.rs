//! Every JWT algorithm of docs/spec.md §4 through the real server: `jwt` authentication and
//! `jwt_encode()` sign with a key from the secrets, and the upstream verifies the token with
//! the public key only (ES512 with RustCrypto's P-521 verifier, the rest with jsonwebtoken).

use crate::common::keys::{ED25519, P256, P384, P521, RSA};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use crate::common::{echo_upstream, spawn_app_with, AppOptions};

/// Algorithm, secret name, and the test-only key pair (tests/fixtures/keys/, made with openssl).
const ALGORITHMS: &[(&str, &str, &str, &str)] = &[
    ("HS256", "hs", HS_KEY, HS_KEY),
    ("HS384", "hs", HS_KEY, HS_KEY),
    ("HS512", "hs", HS_KEY, HS_KEY),
    ("RS256", "rsa", RSA.0, RSA.1),
    ("RS384", "rsa", RSA.0, RSA.1),
    ("RS512", "rsa", RSA.0, RSA.1),
    ("PS256", "rsa", RSA.0, RSA.1),
    ("PS384", "rsa", RSA.0, RSA.1),
    ("PS512", "rsa", RSA.0, RSA.1),
    ("ES256", "p256", P256.0, P256.1),
    ("ES384", "p384", P384.0, P384.1),
    ("ES512", "p521", P521.0, P521.1),
    ("EdDSA", "ed25519", ED25519.0, ED25519.1),
];

const HS_KEY: &str = "an-hmac-key-of-reasonable-length-0123456789";

/// Verifies `token` with the public key and returns its claims; panics if it does not verify.
fn verify(token: &str, algorithm: &str, public_pem: &str) -> Value {
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], algorithm);
    if algorithm == "ES512" {
        use p521::ecdsa::signature::Verifier;
        use p521::pkcs8::DecodePublicKey;
        let (message, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let public = p521::PublicKey::from_public_key_pem(public_pem).unwrap();
        p521::ecdsa::VerifyingKey::from_affine(*public.as_affine())
            .unwrap()
            .verify(
                message.as_bytes(),
                &p521::ecdsa::Signature::from_slice(&signature).unwrap(),
            )
            .expect("the ES512 token verifies");
        let claims = token.split('.').nth(1).unwrap();
        return serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    }
    let key = match &algorithm[..2] {
        "HS" => DecodingKey::from_secret(public_pem.as_bytes()),
        "RS" | "PS" => DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap(),
        "ES" => DecodingKey::from_ec_pem(public_pem.as_bytes()).unwrap(),
        _ => DecodingKey::from_ed_pem(public_pem.as_bytes()).unwrap(),
    };
    let alg: Algorithm = algorithm.parse().unwrap();
    decode::<Value>(token, &key, &Validation::new(alg))
        .unwrap_or_else(|e| panic!("{algorithm}: the token does not verify: {e}"))
        .claims
}

#[actix_web::test]
async fn jwt_auth_and_jwt_encode_sign_with_every_algorithm() {
    let up = echo_upstream().await;
    let mut connectors = Vec::new();
    for (algorithm, secret, _, _) in ALGORITHMS {
        let slug = algorithm.to_lowercase();
        connectors.push(json!({
            "name": format!("auth {slug}"), "permalink": format!("auth-{slug}"),
            "url": format!("{}/echo", up.base),
            "authentication": {"type": "jwt", "config": {
                "private_key": format!("{{{{ get_secret('{secret}') }}}}"),
                "algorithm": algorithm,
                "claims": {"sub": "{{ request.query_parameters.user }}", "exp": "{{ now() + 300 }}"}}}
        }));
        connectors.push(json!({
            "name": format!("encode {slug}"), "permalink": format!("encode-{slug}"),
            "url": format!("{}/echo", up.base),
            "headers": [{"key": "X-Assertion", "value": format!(
                "{{{{ jwt_encode({{'sub': request.query_parameters.user, 'exp': now() + 300}}, get_secret('{secret}'), '{algorithm}') }}}}"
            )}]
        }));
    }
    let mut options = AppOptions::default();
    for (_, secret, private, _) in ALGORITHMS {
        if !options.secrets.iter().any(|(name, _)| name == secret) {
            options = options.secret(secret, private);
        }
    }
    let app = spawn_app_with(json!({ "connectors": connectors }), options).await;

    for (algorithm, _, _, public) in ALGORITHMS {
        let slug = algorithm.to_lowercase();
        for (permalink, header) in [
            (format!("auth-{slug}"), "authorization"),
            (format!("encode-{slug}"), "x-assertion"),
        ] {
            let before = up.log.to("/echo").len();
            let reply = app
                .call(
                    "GET",
                    &format!("/connectors/{permalink}/execute?user=u-{slug}"),
                    None,
                    &[],
                )
                .await;
            assert_eq!(reply.status, 200, "{permalink}: {}", reply.text());
            let call = up.log.to("/echo").remove(before);
            let value = call.header(header).expect("the token was sent").to_string();
            let token = value.strip_prefix("Bearer ").unwrap_or(&value);
            let claims = verify(token, algorithm, public);
            assert_eq!(claims["sub"], format!("u-{slug}"), "{permalink}");
            assert!(claims["exp"].is_i64(), "{permalink}: exp is an integer");
        }
    }
}

#[actix_web::test]
async fn a_key_that_does_not_fit_its_algorithm_is_a_422_that_names_the_algorithm_not_the_key() {
    let up = echo_upstream().await;
    let registry = json!({"connectors": [{
        "name": "Mismatch", "permalink": "mismatch", "url": format!("{}/echo", up.base),
        "authentication": {"type": "jwt", "config": {
            "private_key": "{{ get_secret('p256') }}", "algorithm": "ES512",
            "claims": {"sub": "svc"}}}
    }]});
    let app = spawn_app_with(registry, AppOptions::default().secret("p256", P256.0)).await;
    let reply = app
        .call("GET", "/connectors/mismatch/execute", None, &[])
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let text = reply.text();
    assert!(text.contains("JWT_SIGNING_ERROR"), "{text}");
    assert!(text.contains("ES512"), "{text}");
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains("MIG"),
        "{text}"
    );
    assert!(up.log.to("/echo").is_empty(), "nothing is sent");
}

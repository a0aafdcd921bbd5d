//! The mock's identity provider (docs/spec.md §9): a built-in signing key, its JWKS (served
//! at [`JWKS_PATH`]) and tokens for one demo member, so that `demo` can run a connector that
//! reads `user.*` with nothing to set up. `connector-runtime demo token` prints such a token.
//!
//! The key is public knowledge (it is in this file): it is only ever trusted by `demo`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::identity::IdentityArgs;

/// The demo issuer (`iss`) and audience (`aud`) of its tokens.
pub(crate) const ISSUER: &str = "connector-runtime-demo";
/// Where the mock upstream serves the demo's JWKS.
pub(crate) const JWKS_PATH: &str = "/demo-idp/jwks.json";
/// The `tenant_id` the demo serves.
pub(crate) const TENANT_ID: &str = "demo-community";

/// The demo's Ed25519 signing key (made for the demo; trusted by nothing else).
const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAdofne6sanuRUb1ojDlU9hkWBzmio4h+6zG2jozGVB1
-----END PRIVATE KEY-----";
/// Its public half, as the JWK `x` (base64url of the 32-byte key).
const PUBLIC_X: &str = "-KgBKNXRfxzGn7pTovXoM2l7_ZHvO8u9jqyRypPwbfw";
/// The key's `kid`.
const KID: &str = "demo-1";

/// The demo's JWKS document.
pub(crate) fn jwks() -> Value {
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID, "x": PUBLIC_X}]})
}

/// The demo member a token describes.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// `sub` (`user.id`).
    pub sub: String,
    /// `email` (`user.email`).
    pub email: String,
    /// Seconds the token is valid.
    pub ttl_secs: u64,
}

impl Default for Member {
    fn default() -> Self {
        Member {
            sub: "member-1001".into(),
            email: "ada@example.com".into(),
            ttl_secs: 12 * 3600,
        }
    }
}

/// A token for `member`, signed with the demo key.
pub(crate) fn token(member: &Member) -> Result<String, crate::jwt::JwtError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": member.sub,
        "email": member.email,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "preferred_username": "ada",
        "profile_fields": {"7": "Analytical Engine team"},
        "iat": now,
        "exp": now + member.ttl_secs,
    });
    sign(&claims)
}

/// `claims` signed with the demo key (its `kid` in the header); `connector-runtime test`
/// signs the `user` of its cases this way.
pub(crate) fn sign(claims: &Value) -> Result<String, crate::jwt::JwtError> {
    let headers = json!({"kid": KID});
    crate::jwt::sign(claims, PRIVATE_KEY, "EdDSA", headers.as_object())
}

/// The identity flags of a server trusting the demo key, fetched from `jwks_url`.
pub(crate) fn identity_args(jwks_url: String) -> IdentityArgs {
    IdentityArgs {
        identity_issuer: Some(ISSUER.into()),
        identity_jwks_url: Some(jwks_url),
        identity_audience: Some(ISSUER.into()),
        tenant_id: Some(TENANT_ID.into()),
        ..IdentityArgs::default()
    }
}

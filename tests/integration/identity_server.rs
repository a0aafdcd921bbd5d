//! Caller identity through the real server (docs/spec.md §9): `user.*` and `tenant_id` in
//! every template of simple and composite connectors, the 401 refusals, the cookie source,
//! key rotation and JWKS outages, the load-time refusal and the metrics. Tokens are signed
//! here with the test keys (tests/common/idp.rs) and verified against a JWKS endpoint on
//! 127.0.0.1; a recording upstream on 127.0.0.1 shows what each template sent.

use std::time::{Duration, Instant};

use actix_web::web;
use connector_runtime::config::ServeArgs;
use connector_runtime::server::{Application, StartError};
use jsonwebtoken::{encode, Algorithm, Header};
use serde_json::{json, Value};

use crate::common::idp::{jwk, now, raw, sign, stranger_ed25519, with_claims_swapped, Idp};
use crate::common::keys::{ED25519, P256, P384, RSA};
use crate::common::process::metric_sum;
use crate::common::*;

const ISS: &str = "https://members.example.com/";
const AUD: &str = "widgets";
const TENANT_CLAIM: &str = "community";

// The member the tokens name: distinctive values, so that a leak is found by searching.
const SUB: &str = "m-4711";
const EMAIL: &str = "ada.lovelace@example.com";
const GIVEN: &str = "Augusta";
const FAMILY: &str = "Lovelace";
const USERNAME: &str = "countess_ada";
const DEPT: &str = "Analytical Engine";
const TENANT: &str = "community-9";

/// Every claim value a token of these tests carries (and a few that forged ones carry):
/// none may appear in an error body or in /metrics.
const CLAIM_VALUES: [&str; 10] = [
    SUB,
    EMAIL,
    GIVEN,
    FAMILY,
    USERNAME,
    DEPT,
    TENANT,
    "https://evil.example.com/",
    "other-audience",
    "forged-admin-99",
];

/// The JWKS at start: an RSA key, a P-256 key and an Ed25519 key.
fn jwks() -> Value {
    json!({"keys": [
        jwk(RSA.1, "rsa-1", Some("RS256")),
        jwk(P256.1, "ec-1", Some("ES256")),
        jwk(ED25519.1, "ed-1", Some("EdDSA")),
    ]})
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": SUB, "exp": now() + 300, "iat": now(),
        "email": EMAIL, "given_name": GIVEN, "family_name": FAMILY,
        "preferred_username": USERNAME, "profile_fields": {"7": DEPT, "12": 42},
        "community": TENANT
    })
}

/// `claims()` with `changes` merged in (a `null` change removes the claim).
fn claims_with(changes: Value) -> Value {
    crate::common::merged(claims(), changes)
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, RSA.0, "rsa-1", claims)
}

fn es256(claims: &Value) -> String {
    sign(Algorithm::ES256, P256.0, "ec-1", claims)
}

fn eddsa(claims: &Value) -> String {
    sign(Algorithm::EdDSA, ED25519.0, "ed-1", claims)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Identity flags for `idp`: issuer, JWKS URL, audience and the tenant claim.
fn identity_flags(idp: &Idp) -> impl FnOnce(&mut ServeArgs) + 'static {
    let url = idp.jwks_url();
    move |f| {
        f.identity.identity_issuer = Some(ISS.into());
        f.identity.identity_jwks_url = Some(url);
        f.identity.identity_audience = Some(AUD.into());
        f.identity.identity_tenant_claim = Some(TENANT_CLAIM.into());
    }
}

/// Starts the server on `registry` with the identity flags of `idp`, then `more`.
async fn serve(registry: Value, idp: &Idp, more: impl FnOnce(&mut ServeArgs) + 'static) -> TestApp {
    let identity = identity_flags(idp);
    spawn_app_with(
        registry,
        AppOptions::default().flags(move |f| {
            identity(f);
            more(f);
        }),
    )
    .await
}

/// An upstream that records and echoes every request, whatever its path.
async fn recording_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route("/{tail:.*}", web::route().to(echo_route()));
    })
    .await
}

/// The composite `member-flow`: step `first` reads nothing of the caller; step `second`
/// reads `user.*` and `tenant_id` in its URL path, headers, query values and body.
fn member_flow(base: &str) -> Value {
    json!({
        "name": "Member flow", "permalink": "member-flow",
        "steps": [
            {"name": "first", "url": format!("{base}/first")},
            {
                "name": "second", "method": "POST",
                "url": format!("{base}/members/") + "{{ user.id }}/tenants/{{ tenant_id }}?fixed=1",
                "headers": [
                    {"key": "X-Member-Id", "value": "{{ user.id }}"},
                    {"key": "X-Member-Email", "value": "{{ user.email }}"},
                    {"key": "X-Member-Name", "value": "{{ user.first_name }} {{ user.last_name }}"},
                    {"key": "X-Member-Username", "value": "{{ user.username }}"},
                    {"key": "X-Member-Dept", "value": "{{ user.profile_fields.by_id(7) }}"},
                    {"key": "X-Tenant", "value": "{{ tenant_id }}"}
                ],
                "query_parameters": [
                    {"key": "member", "value": "{{ user.id }}"},
                    {"key": "email", "value": "{{ user.email }}"},
                    {"key": "dept", "value": "{{ user.profile_fields.by_id('7') }}"},
                    {"key": "tenant", "value": "{{ tenant_id }}"}
                ],
                "request_body": concat!(
                    "{\"id\": {{ user.id | tojson }}, \"email\": {{ user.email | tojson }}, ",
                    "\"first_name\": {{ user.first_name | tojson }}, ",
                    "\"last_name\": {{ user.last_name | tojson }}, ",
                    "\"username\": {{ user.username | tojson }}, ",
                    "\"dept_by_int\": {{ user.profile_fields.by_id(7) | tojson }}, ",
                    "\"dept_by_str\": {{ user.profile_fields.by_id('7') | tojson }}, ",
                    "\"level\": {{ user.profile_fields.by_id(12) }}, ",
                    "\"tenant\": {{ tenant_id | tojson }}}"
                )
            }
        ]
    })
}

/// `member-card` (reads `user` in a header, the api_key config and response_body), `plain`
/// (reads nothing of the caller), `tenant-only` (reads `tenant_id` only) and `member-flow`.
fn member_registry(base: &str) -> Value {
    json!({
        "connectors": [
            {
                "name": "Member card", "permalink": "member-card",
                "url": format!("{base}/card"),
                "headers": [{"key": "X-Member", "value": "{{ user.id }}"}],
                "authentication": {"type": "api_key", "config": {
                    "key": "X-Api-Key", "value": "key-for-{{ user.id }}", "in": "header"}},
                "response_body": "{\"greeting\": \"Hello {{ user.first_name }}\", \"upstream_status\": {{ response.status_code }}}"
            },
            {"name": "Plain", "permalink": "plain", "url": format!("{base}/plain")},
            {
                "name": "Tenant only", "permalink": "tenant-only", "url": format!("{base}/tenant"),
                "headers": [{"key": "X-Tenant", "value": "{{ tenant_id }}"}]
            }
        ],
        "composite_connectors": [member_flow(base)]
    })
}

async fn card(app: &TestApp, headers: &[(&str, &str)]) -> Reply {
    app.call("GET", "/connectors/member-card/execute", None, headers)
        .await
}

async fn plain(app: &TestApp, headers: &[(&str, &str)]) -> Reply {
    app.call("GET", "/connectors/plain/execute", None, headers)
        .await
}

async fn flow(app: &TestApp, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    app.call(
        "POST",
        "/connectors/composite/member-flow/execute",
        Some("{}"),
        &all,
    )
    .await
}

/// The one request the upstream received last.
fn last(up: &Upstream) -> Received {
    up.log.all().pop().expect("the upstream received a request")
}

/// Fails when `text` contains a claim value, `token` or any long part of it.
#[track_caller]
fn assert_no_claim_or_token(text: &str, token: &str) {
    for value in CLAIM_VALUES {
        assert!(!text.contains(value), "claim value {value:?} in {text}");
    }
    if !token.is_empty() {
        assert!(!text.contains(token), "the token is in {text}");
        for part in token.split('.').filter(|p| p.len() >= 8) {
            assert!(!text.contains(part), "a part of the token is in {text}");
        }
    }
}

/// Checks `reply` is the refusal of a token that failed `check`.
#[track_caller]
fn assert_invalid(reply: &Reply, check: &str, token: &str) {
    let errors = assert_envelope(reply, 401, "IDENTITY_INVALID", None);
    assert_eq!(
        reply.header("www-authenticate").as_deref(),
        Some(r#"Bearer error="invalid_token""#),
        "{check}"
    );
    let detail = errors["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("the caller token was refused: {check}: ")),
        "{check}: {detail}"
    );
    assert_no_claim_or_token(&reply.text(), token);
}

/// Checks `reply` is the refusal of a run that needs a caller and has none.
#[track_caller]
fn assert_required(reply: &Reply) -> String {
    let errors = assert_envelope(reply, 401, "IDENTITY_REQUIRED", None);
    assert_eq!(
        reply.header("www-authenticate").as_deref(),
        Some("Bearer"),
        "no error= without a token"
    );
    errors["detail"].as_str().unwrap().to_string()
}

/// The composite's second request carries the member's claims in every place.
#[track_caller]
fn assert_second_step_saw_the_member(second: &Received, tenant: &str) {
    assert_eq!(second.method, "POST");
    assert_eq!(second.path, format!("/members/{SUB}/tenants/{tenant}"));
    let header = |name: &str| second.header(name).map(str::to_string);
    assert_eq!(header("x-member-id").as_deref(), Some(SUB));
    assert_eq!(header("x-member-email").as_deref(), Some(EMAIL));
    assert_eq!(
        header("x-member-name"),
        Some(format!("{GIVEN} {FAMILY}")),
        "both names"
    );
    assert_eq!(header("x-member-username").as_deref(), Some(USERNAME));
    assert_eq!(header("x-member-dept").as_deref(), Some(DEPT));
    assert_eq!(header("x-tenant").as_deref(), Some(tenant));
    let query: Vec<(String, String)> = second.query_pairs();
    let expected: Vec<(String, String)> = [
        ("fixed", "1"),
        ("member", SUB),
        ("email", EMAIL),
        ("dept", DEPT),
        ("tenant", tenant),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(query, expected, "{}", second.query);
    let body: Value = serde_json::from_str(&second.body)
        .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", second.body));
    assert_eq!(
        body,
        json!({
            "id": SUB, "email": EMAIL, "first_name": GIVEN, "last_name": FAMILY,
            "username": USERNAME, "dept_by_int": DEPT, "dept_by_str": DEPT, "level": 42,
            "tenant": tenant
        })
    );
    assert_eq!(second.header("authorization"), None);
}

// ---------------------------------------------------------------------------------------
// 1. Claims reach every template.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn claims_reach_every_template_for_rsa_ec_and_ed25519_tokens() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |_| {}).await;
    for (alg, token) in [
        ("RS256", rs256(&claims())),
        ("ES256", es256(&claims())),
        ("EdDSA", eddsa(&claims())),
    ] {
        let before = up.log.all().len();
        let reply = flow(&app, &[("Authorization", &bearer(&token))]).await;
        assert_eq!(reply.status, 200, "{alg}: {}", reply.text());
        assert_eq!(
            reply.header("cache-control").as_deref(),
            Some("private, no-store"),
            "{alg}: a member's answer is never kept by a shared cache"
        );
        let sent = up.log.all();
        assert_eq!(sent.len(), before + 2, "{alg}: both steps ran");
        let (first, second) = (&sent[before], &sent[before + 1]);
        assert_eq!(first.path, "/first", "{alg}");
        assert_eq!(
            first.header("authorization"),
            None,
            "{alg}: the caller's token never reaches an upstream"
        );
        assert_second_step_saw_the_member(second, TENANT);

        // A simple connector: a header, the api_key config and response_body.
        let reply = card(&app, &[("Authorization", &bearer(&token))]).await;
        assert_eq!(reply.status, 200, "{alg}: {}", reply.text());
        assert_eq!(
            reply.json(),
            json!({"greeting": format!("Hello {GIVEN}"), "upstream_status": 200}),
            "{alg}"
        );
        let sent = last(&up);
        assert_eq!(sent.path, "/card");
        assert_eq!(sent.header("x-member"), Some(SUB), "{alg}");
        assert_eq!(
            sent.header("x-api-key").map(str::to_string),
            Some(format!("key-for-{SUB}")),
            "{alg}"
        );
        assert_eq!(sent.header("authorization"), None, "{alg}");
    }
    // The JWKS was fetched once, at start: every key was known.
    assert_eq!(idp.fetches(), 1);
}

#[actix_web::test]
async fn a_static_tenant_id_is_the_same_for_every_caller_and_needs_no_token() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    // Identity on, tenant_id from --tenant-id (the token's community claim is not read).
    let app = serve(member_registry(&up.base), &idp, |f| {
        f.identity.identity_tenant_claim = None;
        f.identity.tenant_id = Some("acme-static".into());
    })
    .await;
    let token = es256(&claims());
    let reply = flow(&app, &[("Authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_second_step_saw_the_member(&last(&up), "acme-static");
    // A connector that reads only a static tenant_id needs no caller.
    let reply = app.execute("tenant-only").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last(&up).header("x-tenant"), Some("acme-static"));

    // Identity off altogether: --tenant-id alone serves tenant_id.
    let tenant_only = json!({"connectors": [member_registry(&up.base)["connectors"][2].clone()]});
    let app = spawn_app_with(
        tenant_only,
        AppOptions::default().flags(|f| f.identity.tenant_id = Some("acme-alone".into())),
    )
    .await;
    let reply = app.execute("tenant-only").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last(&up).header("x-tenant"), Some("acme-alone"));
}

// ---------------------------------------------------------------------------------------
// 2. Absent claims are undefined.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn absent_claims_are_undefined_to_default_and_is_defined() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let registry = json!({"connectors": [
        {
            "name": "Greeting", "permalink": "greeting", "method": "POST",
            "url": format!("{}/greet", up.base),
            "headers": [
                {"key": "X-Email", "value": "{{ user.email | default('none') }}"},
                {"key": "X-Dept", "value": "{{ user.profile_fields.by_id(7) | default('no-dept') }}"},
                {"key": "X-Tenant", "value": "{{ tenant_id | default('no-tenant') }}"}
            ],
            "request_body": "{% if user.username is defined %}username={{ user.username }}{% else %}no username{% endif %}"
        },
        {
            "name": "Strict", "permalink": "strict", "url": format!("{}/strict", up.base),
            "headers": [{"key": "X-Email", "value": "{{ user.email }}"}]
        }
    ]});
    let app = serve(registry, &idp, |_| {}).await;
    let minimal = eddsa(&json!({"iss": ISS, "aud": AUD, "sub": SUB, "exp": now() + 300}));
    let greet = |token: String| {
        let app = &app;
        async move {
            app.call(
                "POST",
                "/connectors/greeting/execute",
                Some(""),
                &[("Authorization", &bearer(&token))],
            )
            .await
        }
    };
    let reply = greet(minimal.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = last(&up);
    assert_eq!(sent.header("x-email"), Some("none"));
    assert_eq!(sent.header("x-dept"), Some("no-dept"));
    assert_eq!(sent.header("x-tenant"), Some("no-tenant"));
    assert_eq!(sent.body, "no username");
    // The same templates with every claim present.
    let reply = greet(eddsa(&claims())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = last(&up);
    assert_eq!(sent.header("x-email"), Some(EMAIL));
    assert_eq!(sent.header("x-dept"), Some(DEPT));
    assert_eq!(sent.header("x-tenant"), Some(TENANT));
    assert_eq!(sent.body, format!("username={USERNAME}"));
    // Printing an absent claim unguarded is a rendering error, as any undefined value is;
    // its detail carries no claim value.
    let before = up.log.all().len();
    let reply = app
        .call(
            "GET",
            "/connectors/strict/execute",
            None,
            &[("Authorization", &bearer(&minimal))],
        )
        .await;
    assert_envelope(
        &reply,
        422,
        "TEMPLATE_RENDERING_ERROR",
        Some("Configuration (template rendering)"),
    );
    assert_no_claim_or_token(&reply.text(), &minimal);
    assert_eq!(up.log.all().len(), before, "nothing was sent");
}

// ---------------------------------------------------------------------------------------
// 3. Every failed check, through the server.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn every_failed_check_is_401_identity_invalid_naming_the_check() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |_| {}).await;
    let good = rs256(&claims());
    let forged = with_claims_swapped(&good, &claims_with(json!({"sub": "forged-admin-99"})));
    let stranger = {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed-1".into());
        encode(&header, &claims(), &stranger_ed25519()).unwrap()
    };
    let huge = eddsa(&claims_with(json!({"padding": "x".repeat(9000)})));
    assert!(huge.len() > 8 * 1024);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            es256(&claims_with(json!({"exp": now() - 3600}))),
            "expired",
        ),
        (
            "nbf beyond the leeway",
            es256(&claims_with(json!({"nbf": now() + 3600}))),
            "not yet valid",
        ),
        (
            "other issuer",
            rs256(&claims_with(json!({"iss": "https://evil.example.com/"}))),
            "issuer",
        ),
        (
            "other audience",
            eddsa(&claims_with(json!({"aud": "other-audience"}))),
            "audience",
        ),
        (
            "a key the JWKS does not have",
            sign(Algorithm::ES384, P384.0, "ec-404", &claims()),
            "unknown key",
        ),
        ("payload altered", forged, "signature"),
        ("another key under a known kid", stranger, "signature"),
        (
            "alg none",
            raw(
                &json!({"alg": "none", "typ": "JWT", "kid": "ed-1"}),
                &claims(),
                "",
            ),
            "algorithm",
        ),
        (
            "HS256 keyed with the RSA public key PEM",
            sign(Algorithm::HS256, RSA.1, "rsa-1", &claims()),
            "algorithm",
        ),
        ("two parts", "abc.def".into(), "malformed"),
        ("not base64url", "e30=.e30.c2ln".into(), "malformed"),
        ("oversized", huge, "malformed"),
        (
            "sub a number",
            eddsa(&claims_with(json!({"sub": 4711}))),
            "malformed",
        ),
        (
            "profile_fields a string",
            eddsa(&claims_with(json!({"profile_fields": DEPT}))),
            "malformed",
        ),
    ];
    for (name, token, check) in &cases {
        let reply = card(&app, &[("Authorization", &bearer(token))]).await;
        assert_invalid(&reply, check, token);
        let detail = reply.errors()["detail"].as_str().unwrap().to_string();
        match *name {
            "oversized" => assert!(detail.contains("larger than 8 KiB"), "{detail}"),
            "sub a number" => assert!(detail.contains("sub claim"), "{detail}"),
            "profile_fields a string" => {
                assert!(detail.contains("profile_fields claim"), "{detail}")
            }
            _ => {}
        }
        // The composite is refused the same way, before its first step.
        let reply = flow(&app, &[("Authorization", &bearer(token))]).await;
        assert_invalid(&reply, check, token);
    }
    // Not a Bearer credential at all.
    let basic = "dXNlcjpwYXNzd29yZA==";
    let reply = card(&app, &[("Authorization", &format!("Basic {basic}"))]).await;
    assert_invalid(&reply, "malformed", basic);
    assert!(
        reply.errors()["detail"]
            .as_str()
            .unwrap()
            .contains("Authorization header"),
        "{}",
        reply.text()
    );
    assert!(
        up.log.all().is_empty(),
        "no refused run reached an upstream"
    );
    // Only the unknown kid made the keys be fetched again (once).
    assert_eq!(idp.fetches(), 2);
    // And a good token still works after all that.
    assert_eq!(
        card(&app, &[("Authorization", &bearer(&good))])
            .await
            .status,
        200
    );
}

// ---------------------------------------------------------------------------------------
// 4. Missing tokens, and connectors that do not read the caller.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_connector_reading_the_caller_needs_a_token_and_others_fail_closed() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |_| {}).await;
    let detail = assert_required(&card(&app, &[]).await);
    assert!(detail.contains("Authorization: Bearer"), "{detail}");
    assert!(detail.contains("member-card"), "{detail}");
    assert_required(&flow(&app, &[]).await);
    // tenant_id from a claim needs the caller too.
    assert_required(&app.execute("tenant-only").await);
    assert!(up.log.all().is_empty(), "the upstream saw no request");

    // `plain` reads nothing of the caller: it runs without a token...
    let reply = plain(&app, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // ... and with a valid one (which goes no further than the runtime) ...
    let reply = plain(&app, &[("Authorization", &bearer(&eddsa(&claims())))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last(&up).header("authorization"), None);
    // ... but a token that is sent is verified: an invalid one is refused (fail closed).
    let sent = up.log.all().len();
    let expired = eddsa(&claims_with(json!({"exp": now() - 3600})));
    assert_invalid(
        &plain(&app, &[("Authorization", &bearer(&expired))]).await,
        "expired",
        &expired,
    );
    assert_invalid(
        &plain(&app, &[("Authorization", "Basic dXNlcjpwYXNz")]).await,
        "malformed",
        "",
    );
    assert_eq!(up.log.all().len(), sent);

    // --identity-required: every connector needs a verified caller.
    let strict = serve(member_registry(&up.base), &idp, |f| {
        f.identity.identity_required = true;
    })
    .await;
    assert_required(&plain(&strict, &[]).await);
    assert_eq!(up.log.all().len(), sent);
    let reply = plain(&strict, &[("Authorization", &bearer(&es256(&claims())))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

// ---------------------------------------------------------------------------------------
// 5. The caller's Authorization is consumed.
// ---------------------------------------------------------------------------------------

/// Connectors with an overridable `Authorization` of their own: `own-auth` (also reads
/// `user`), `own-auth-plain` (does not) and the composite `own-auth-flow`.
fn own_auth_registry(base: &str, with_user: bool) -> Value {
    let own =
        json!({"key": "Authorization", "value": "Bearer connector-own-key", "overridable": true});
    let mut connectors = vec![json!({
        "name": "Own auth plain", "permalink": "own-auth-plain",
        "url": format!("{base}/own-plain"), "headers": [own.clone()]
    })];
    if with_user {
        connectors.push(json!({
            "name": "Own auth", "permalink": "own-auth", "url": format!("{base}/own"),
            "headers": [own.clone(), {"key": "X-Member", "value": "{{ user.id }}"}]
        }));
    }
    json!({
        "connectors": connectors,
        "composite_connectors": [{
            "name": "Own auth flow", "permalink": "own-auth-flow",
            "steps": [{"name": "only", "url": format!("{base}/own-flow"), "headers": [own]}]
        }]
    })
}

#[actix_web::test]
async fn the_callers_authorization_never_overrides_a_connector_header() {
    let up = recording_upstream().await;
    // The registry rules accept an overridable Authorization, and without identity the
    // caller's value does replace the configured one (so the test below means something).
    let without = spawn_app(own_auth_registry(&up.base, false)).await;
    let reply = without
        .call(
            "GET",
            "/connectors/own-auth-plain/execute",
            None,
            &[("Authorization", "Bearer caller-value")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        last(&up).header("authorization"),
        Some("Bearer caller-value")
    );

    let idp = Idp::start(&jwks()).await;
    let app = serve(own_auth_registry(&up.base, true), &idp, |_| {}).await;
    let token = rs256(&claims());
    let auth = bearer(&token);
    for (method, path) in [
        ("GET", "/connectors/own-auth/execute"),
        ("GET", "/connectors/own-auth-plain/execute"),
        ("POST", "/connectors/composite/own-auth-flow/execute"),
    ] {
        let reply = app
            .call(method, path, Some(""), &[("Authorization", &auth)])
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let sent = last(&up);
        assert_eq!(
            sent.header("authorization"),
            Some("Bearer connector-own-key"),
            "{path}"
        );
        assert!(
            sent.headers.iter().all(|(_, v)| !v.contains(&token)),
            "{path}: the caller's token reached the upstream"
        );
    }
    assert_eq!(last(&up).path, "/own-flow");
    // Without a token the connector's own value is sent as usual.
    let reply = app
        .call("GET", "/connectors/own-auth-plain/execute", None, &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        last(&up).header("authorization"),
        Some("Bearer connector-own-key")
    );
}

// ---------------------------------------------------------------------------------------
// 6. The identity cookie.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_identity_cookie_is_used_only_from_allowed_origins_or_the_same_origin() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |f| {
        f.identity.identity_cookie = Some("member_token".into());
        f.allow_origin = vec!["https://widgets.example".into()];
    })
    .await;
    let token = eddsa(&claims());
    let cookie = format!("theme=dark; member_token={token}");
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut headers: Vec<(&str, String)> = vec![("Cookie", cookie.clone())];
        headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        headers
    };
    let run = |headers: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            card(app, &headers).await
        }
    };

    // From an allowed origin: the member's values.
    let reply = run(with(&[("Origin", "https://widgets.example")])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["greeting"], format!("Hello {GIVEN}"));
    let sent = last(&up);
    assert_eq!(sent.header("x-member"), Some(SUB));
    assert_eq!(sent.header("cookie"), None, "the cookie goes no further");
    // The runtime's own pages: no Origin, Sec-Fetch-Site: same-origin.
    let reply = run(with(&[("Sec-Fetch-Site", "same-origin")])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last(&up).header("x-member"), Some(SUB));

    let sent = up.log.all().len();
    // Another origin: the cookie is ignored (a page there cannot act as the member).
    for extra in [
        vec![("Origin", "https://evil.example")],
        vec![
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![("Origin", "https://widgets.example.evil.example")],
    ] {
        let reply = run(with(&extra)).await;
        let detail = assert_required(&reply);
        assert!(detail.contains("--allow-origin"), "{extra:?}: {detail}");
        assert_no_claim_or_token(&reply.text(), &token);
    }
    // Neither Origin nor Sec-Fetch-Site (a script off any page, or an old browser).
    assert_required(&run(with(&[])).await);
    // An invalid cookie from another origin is ignored, not verified.
    let expired = eddsa(&claims_with(json!({"exp": now() - 3600})));
    let reply = plain(
        &app,
        &[
            ("Cookie", &format!("member_token={expired}")),
            ("Origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // From an allowed origin it is verified, and refused.
    let reply = card(
        &app,
        &[
            ("Cookie", &format!("member_token={expired}")),
            ("Origin", "https://widgets.example"),
        ],
    )
    .await;
    assert_invalid(&reply, "expired", &expired);
    assert_eq!(up.log.all().len(), sent + 1, "only `plain` ran");
}

#[actix_web::test]
async fn the_identity_cookie_with_any_origin_allowed_does_not_start() {
    let idp = Idp::start(&jwks()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, member_registry("http://127.0.0.1:9").to_string()).unwrap();
    let mut args = ServeArgs::for_registry(&path);
    args.listen = "127.0.0.1:0".parse().unwrap();
    args.allow_private_upstreams = true;
    identity_flags(&idp)(&mut args);
    args.identity.identity_cookie = Some("member_token".into());
    args.allow_origin = vec!["https://widgets.example".into(), "*".into()];
    match Application::build(args).await {
        Ok(_) => panic!("the server started with --identity-cookie and --allow-origin '*'"),
        Err(e) => {
            assert!(matches!(e, StartError::Config(_)), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("--identity-cookie") && text.contains("--allow-origin '*'"),
                "{text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. Key rotation and JWKS outages.
// ---------------------------------------------------------------------------------------

/// `/metrics` of `app`.
async fn metrics_text(app: &TestApp) -> String {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 200);
    reply.text()
}

/// The value of `connector_identity_jwks_fetches_total{trigger, result}`.
async fn jwks_fetches(app: &TestApp, trigger: &str, result: &str) -> f64 {
    metric_sum(
        &metrics_text(app).await,
        "connector_identity_jwks_fetches_total",
        &[
            &format!("trigger=\"{trigger}\""),
            &format!("result=\"{result}\""),
        ],
    )
}

/// Waits (polling /metrics, up to 10 s) until the JWKS fetch counter reaches `at_least`.
async fn wait_for_fetches(app: &TestApp, trigger: &str, result: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while jwks_fetches(app, trigger, result).await < at_least {
        assert!(
            Instant::now() < deadline,
            "no {trigger}/{result} fetch:\n{}",
            metrics_text(app).await
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rotated_jwks() -> Value {
    let mut rotated = jwks();
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwk(P384.1, "ec-2", Some("ES384")));
    rotated
}

#[actix_web::test]
async fn a_rotated_key_is_fetched_for_its_unknown_kid_and_kept_when_the_jwks_goes_away() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |f| {
        f.identity.identity_jwks_refresh_secs = 0;
    })
    .await;
    assert_eq!(idp.fetches(), 1);
    // The issuer rotates a P-384 key in and signs with it.
    idp.served.set(&rotated_jwks());
    let rotated = sign(Algorithm::ES384, P384.0, "ec-2", &claims());
    let reply = card(&app, &[("Authorization", &bearer(&rotated))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last(&up).header("x-member"), Some(SUB));
    assert_eq!(idp.fetches(), 2, "one refetch for the unknown kid");
    assert_eq!(jwks_fetches(&app, "unknown_kid", "fetched").await, 1.0);
    // The JWKS endpoint goes away: every key fetched so far keeps verifying.
    idp.endpoint.stop().await;
    for token in [
        rotated.clone(),
        rs256(&claims()),
        es256(&claims()),
        eddsa(&claims()),
    ] {
        let reply = card(&app, &[("Authorization", &bearer(&token))]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // Another unknown kid within 30 s is not fetched for.
    let third = sign(Algorithm::ES384, P384.0, "ec-3", &claims());
    assert_invalid(
        &card(&app, &[("Authorization", &bearer(&third))]).await,
        "unknown key",
        &third,
    );
    assert_eq!(jwks_fetches(&app, "unknown_kid", "limited").await, 1.0);
    assert_eq!(idp.fetches(), 2);
}

#[actix_web::test]
async fn the_last_good_keys_serve_through_a_jwks_outage() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |f| {
        f.identity.identity_jwks_refresh_secs = 1;
    })
    .await;
    let known = [rs256(&claims()), es256(&claims()), eddsa(&claims())];
    // The endpoint answers 500: a periodic fetch fails, the keys stay.
    idp.served.set_status(500);
    wait_for_fetches(&app, "periodic", "failed", 1.0).await;
    for token in &known {
        let reply = card(&app, &[("Authorization", &bearer(token))]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // A token with an unknown kid meanwhile: the refetch fails, the token is refused as
    // an unknown key, and the known keys still serve.
    let unknown = sign(Algorithm::ES384, P384.0, "ec-2", &claims());
    assert_invalid(
        &card(&app, &[("Authorization", &bearer(&unknown))]).await,
        "unknown key",
        &unknown,
    );
    assert_eq!(jwks_fetches(&app, "unknown_kid", "failed").await, 1.0);
    // Then the endpoint is gone altogether (connections refused).
    let failed = jwks_fetches(&app, "periodic", "failed").await;
    idp.endpoint.stop().await;
    wait_for_fetches(&app, "periodic", "failed", failed + 1.0).await;
    for token in &known {
        let reply = card(&app, &[("Authorization", &bearer(token))]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(last(&up).header("x-member"), Some(SUB));
    }
}

// ---------------------------------------------------------------------------------------
// 8. Load-time refusal.
// ---------------------------------------------------------------------------------------

/// Why `serve` on `registry` with flags `configure` does not start.
async fn start_error(registry: &Value, configure: impl FnOnce(&mut ServeArgs)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, registry.to_string()).unwrap();
    let mut args = ServeArgs::for_registry(&path);
    args.listen = "127.0.0.1:0".parse().unwrap();
    args.allow_private_upstreams = true;
    configure(&mut args);
    match Application::build(args).await {
        Ok(_) => panic!("the server started on {registry}"),
        Err(e) => {
            assert!(matches!(e, StartError::Registry { .. }), "{e}");
            e.to_string()
        }
    }
}

/// A composite `flow` whose step `second` reads `read` in its second header.
fn reading_registry(base: &str, read: &str) -> Value {
    json!({"composite_connectors": [{
        "name": "Flow", "permalink": "flow",
        "steps": [
            {"name": "first", "url": format!("{base}/first")},
            {"name": "second", "url": format!("{base}/second"), "headers": [
                {"key": "X-Fixed", "value": "literal"},
                {"key": "X-Read", "value": format!("{{{{ {read} }}}}")}
            ]}
        ]
    }]})
}

#[actix_web::test]
async fn a_registry_reading_the_caller_without_identity_flags_is_refused_at_start() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let user = reading_registry(&up.base, "user.id");
    let tenant = reading_registry(&up.base, "tenant_id");

    let text = start_error(&user, |_| {}).await;
    assert!(
        text.contains(
            "error: flow › second › headers[1].value: reads user.*, which needs caller identity"
        ),
        "{text}"
    );
    let text = start_error(&tenant, |_| {}).await;
    assert!(
        text.contains("error: flow › second › headers[1].value: reads tenant_id, which needs --tenant-id or --identity-tenant-claim"),
        "{text}"
    );
    // Identity alone does not give tenant_id.
    let url = idp.jwks_url();
    let text = start_error(&tenant, move |f| {
        f.identity.identity_issuer = Some(ISS.into());
        f.identity.identity_jwks_url = Some(url);
    })
    .await;
    assert!(
        text.contains("flow › second › headers[1].value: reads tenant_id"),
        "{text}"
    );
    // Every other template field is named the same way (simple connectors: no step).
    let simple = json!({"connectors": [{
        "name": "Card", "permalink": "card", "url": format!("{}/card", up.base),
        "authentication": {"type": "api_key", "config": {"key": "X-Key", "value": "{{ user.id }}"}},
        "response_body": "{{ user.first_name }}"
    }]});
    let text = start_error(&simple, |_| {}).await;
    for field in ["authentication.config.value", "response_body"] {
        assert!(
            text.contains(&format!("error: card › {field}: reads user.*")),
            "{field}: {text}"
        );
    }

    // With the flags, both start and run.
    let app = serve(user, &idp, |_| {}).await;
    let reply = app
        .call(
            "POST",
            "/connectors/composite/flow/execute",
            Some("{}"),
            &[("Authorization", &bearer(&eddsa(&claims())))],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last(&up).header("x-read"), Some(SUB));
    let app = spawn_app_with(
        tenant,
        AppOptions::default().flags(|f| f.identity.tenant_id = Some("t-1".into())),
    )
    .await;
    let reply = app
        .call(
            "POST",
            "/connectors/composite/flow/execute",
            Some("{}"),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(last(&up).header("x-read"), Some("t-1"));
}

// ---------------------------------------------------------------------------------------
// 9. Metrics.
// ---------------------------------------------------------------------------------------

/// The value of `connector_identity_verifications_total{result}`.
fn verifications(text: &str, result: &str) -> f64 {
    metric_sum(
        text,
        "connector_identity_verifications_total",
        &[&format!("result=\"{result}\"")],
    )
}

/// Every `result` of `connector_identity_verifications_total`, as docs/spec.md names them.
const RESULTS: [&str; 10] = [
    "verified",
    "missing",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "signature",
    "unknown_key",
    "algorithm",
    "malformed",
];

#[actix_web::test]
async fn verifications_are_counted_by_result_without_claim_values() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |_| {}).await;
    let text = metrics_text(&app).await;
    for result in RESULTS {
        let series = format!("connector_identity_verifications_total{{result=\"{result}\"}} 0");
        assert!(text.lines().any(|l| l == series), "no {series}:\n{text}");
    }
    assert_eq!(jwks_fetches(&app, "start", "fetched").await, 1.0, "{text}");

    let good = es256(&claims());
    let expired = eddsa(&claims_with(json!({"exp": now() - 3600})));
    for _ in 0..2 {
        assert_eq!(
            card(&app, &[("Authorization", &bearer(&good))])
                .await
                .status,
            200
        );
        assert_eq!(
            card(&app, &[("Authorization", &bearer(&expired))])
                .await
                .status,
            401
        );
        // A connector that does not read the caller, without a token: nothing to count.
        assert_eq!(plain(&app, &[]).await.status, 200);
    }
    // A token sent to it is verified, and counted.
    assert_eq!(
        plain(&app, &[("Authorization", &bearer(&good))])
            .await
            .status,
        200
    );
    assert_eq!(card(&app, &[]).await.status, 401);

    let text = metrics_text(&app).await;
    let counts: Vec<(&str, f64)> = RESULTS
        .iter()
        .map(|r| (*r, verifications(&text, r)))
        .collect();
    let expected: Vec<(&str, f64)> = RESULTS
        .iter()
        .map(|r| {
            let n = match *r {
                "verified" => 3.0,
                "expired" => 2.0,
                "missing" => 1.0,
                _ => 0.0,
            };
            (*r, n)
        })
        .collect();
    assert_eq!(counts, expected, "{text}");
    assert_eq!(jwks_fetches(&app, "start", "fetched").await, 1.0);
    assert_no_claim_or_token(&text, &good);
    assert_no_claim_or_token(&text, &expired);
}

// ---------------------------------------------------------------------------------------
// The response cache never mixes members (docs/spec.md §10: the key is the rendered request).
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn cached_answers_never_go_to_another_member() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let registry = json!({"connectors": [
        {
            "name": "Profile", "permalink": "profile", "url": format!("{}/profile", up.base),
            "headers": [{"key": "X-Member", "value": "{{ user.id }}"}],
            "cache_ttl_seconds": 60
        },
        {
            "name": "Badge", "permalink": "badge", "url": format!("{}/badge", up.base),
            "response_body": "badge of {{ user.id }}", "cache_ttl_seconds": 60
        }
    ]});
    let app = serve(registry, &idp, |_| {}).await;
    let ada = bearer(&eddsa(&claims()));
    let other = bearer(&eddsa(&claims_with(json!({"sub": "m-0042"}))));
    let run = |permalink: &'static str, auth: String| {
        let app = &app;
        async move {
            let reply = app
                .call(
                    "GET",
                    &format!("/connectors/{permalink}/execute"),
                    None,
                    &[("Authorization", &auth)],
                )
                .await;
            assert_eq!(reply.status, 200, "{permalink}: {}", reply.text());
            reply
        }
    };
    // The member is in the request: each member has an entry of their own.
    for _ in 0..2 {
        let reply = run("profile", ada.clone()).await;
        assert_eq!(reply.json()["headers"]["x-member"], SUB);
    }
    assert_eq!(
        up.log.count("/profile"),
        1,
        "the second run was a cache hit"
    );
    let reply = run("profile", other.clone()).await;
    assert_eq!(reply.json()["headers"]["x-member"], "m-0042");
    assert_eq!(up.log.count("/profile"), 2, "another member is another key");
    assert_eq!(
        run("profile", ada.clone()).await.json()["headers"]["x-member"],
        SUB
    );
    assert_eq!(up.log.count("/profile"), 2);
    // The member only in response_body: the upstream answer is shared (same request) but
    // the template is rendered for each run's own member.
    assert_eq!(
        run("badge", ada.clone()).await.text(),
        format!("badge of {SUB}")
    );
    assert_eq!(run("badge", other.clone()).await.text(), "badge of m-0042");
    assert_eq!(up.log.count("/badge"), 1, "one upstream answer, cached");
}

#[actix_web::test]
async fn a_malformed_authorization_header_is_counted_as_malformed() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |_| {}).await;
    // A token that is not three parts: counted (the extraction worked, verification failed).
    assert_eq!(
        card(&app, &[("Authorization", "Bearer abc.def")])
            .await
            .status,
        401
    );
    assert_eq!(verifications(&metrics_text(&app).await, "malformed"), 1.0);
    // A credential that is not a Bearer token: refused as malformed in the same way, so it
    // must be counted the same way.
    for value in ["Basic dXNlcjpwYXNz", "Bearer a b", "Bearer"] {
        let reply = card(&app, &[("Authorization", value)]).await;
        assert_invalid(&reply, "malformed", "");
    }
    assert_eq!(verifications(&metrics_text(&app).await, "malformed"), 4.0);
}

// ---------------------------------------------------------------------------------------
// The flags reach the checks; the keys are needed at start; reloads are checked too.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_leeway_and_the_audience_follow_their_flags() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let just_expired = eddsa(&claims_with(json!({"exp": now() - 30})));
    let soon_valid = eddsa(&claims_with(json!({"nbf": now() + 30})));
    let other_aud = eddsa(&claims_with(json!({"aud": "other-audience"})));
    let no_aud = eddsa(&claims_with(json!({"aud": null})));
    // Defaults: 60 s of leeway, the audience checked.
    let app = serve(member_registry(&up.base), &idp, |_| {}).await;
    for token in [&just_expired, &soon_valid] {
        let reply = card(&app, &[("Authorization", &bearer(token))]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_invalid(
        &card(&app, &[("Authorization", &bearer(&no_aud))]).await,
        "audience",
        &no_aud,
    );
    // No leeway; no --identity-audience.
    let strict = serve(member_registry(&up.base), &idp, |f| {
        f.identity.identity_leeway_secs = 0;
        f.identity.identity_audience = None;
    })
    .await;
    assert_invalid(
        &card(&strict, &[("Authorization", &bearer(&just_expired))]).await,
        "expired",
        &just_expired,
    );
    assert_invalid(
        &card(&strict, &[("Authorization", &bearer(&soon_valid))]).await,
        "not yet valid",
        &soon_valid,
    );
    for token in [&other_aud, &no_aud] {
        let reply = card(&strict, &[("Authorization", &bearer(token))]).await;
        assert_eq!(reply.status, 200, "aud is not checked: {}", reply.text());
    }
}

#[actix_web::test]
async fn the_server_does_not_start_without_usable_keys() {
    let idp = Idp::start(&jwks()).await;
    let build = |idp: &Idp| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connectors_registry.json");
        std::fs::write(&path, member_registry("http://127.0.0.1:9").to_string()).unwrap();
        let mut args = ServeArgs::for_registry(&path);
        args.listen = "127.0.0.1:0".parse().unwrap();
        args.allow_private_upstreams = true;
        identity_flags(idp)(&mut args);
        async move {
            let built = Application::build(args).await;
            drop(dir);
            match built {
                Ok(_) => panic!("the server started without its keys"),
                Err(e) => {
                    assert!(matches!(e, StartError::Identity(_)), "{e}");
                    e.to_string()
                }
            }
        }
    };
    idp.served.set_status(503);
    let text = build(&idp).await;
    assert!(text.contains("HTTP 503"), "{text}");
    idp.served.set_status(200);
    idp.served
        .set(&json!({"keys": [{"kty": "oct", "kid": "hs", "k": "c2VjcmV0", "alg": "HS256"}]}));
    let text = build(&idp).await;
    assert!(text.contains("no usable signing key"), "{text}");
    assert!(
        !text.contains(&idp.jwks_url()),
        "no URL in the message: {text}"
    );
    assert_eq!(idp.fetches(), 2);
}

#[actix_web::test]
async fn a_published_registry_reading_the_caller_is_checked_as_at_start() {
    let up = recording_upstream().await;
    let app = spawn_app_with(
        json!({"connectors": [{"name": "Plain", "permalink": "plain", "url": format!("{}/plain", up.base)}]}),
        AppOptions::default().flags(|f| {
            f.registry_poll_secs = 0;
            f.admin_token = Some("admin-t0ken".into());
        }),
    )
    .await;
    std::fs::write(
        &app.registry_path,
        reading_registry(&up.base, "user.id").to_string(),
    )
    .unwrap();
    let reply = app
        .call(
            "POST",
            "/admin/registry/sync",
            None,
            &[("Authorization", "Bearer admin-t0ken")],
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let body = reply.json();
    let errors = body["sync"]["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|p| p["connector"] == "flow"
            && p["step"] == "second"
            && p["field"] == "headers[1].value"
            && p["message"].as_str().unwrap().starts_with("reads user.*")),
        "{body}"
    );
    // The previous registry keeps serving.
    assert_eq!(plain(&app, &[]).await.status, 200);
    let reply = app
        .call(
            "POST",
            "/connectors/composite/flow/execute",
            Some("{}"),
            &[],
        )
        .await;
    assert_envelope(&reply, 404, "CONNECTOR_NOT_FOUND", None);
}

#[actix_web::test]
async fn answers_to_allowed_origins_allow_credentials_for_the_identity_cookie() {
    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let app = serve(member_registry(&up.base), &idp, |f| {
        f.identity.identity_cookie = Some("member_token".into());
        f.allow_origin = vec!["https://widgets.example".into()];
    })
    .await;
    let cookie = format!("member_token={}", eddsa(&claims()));
    // The preflight a credentialed cross-origin fetch makes (for its Content-Type).
    let preflight = app
        .call(
            "OPTIONS",
            "/connectors/composite/member-flow/execute",
            None,
            &[
                ("Origin", "https://widgets.example"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
        )
        .await;
    assert!(preflight.status < 300, "{}", preflight.text());
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some("https://widgets.example")
    );
    assert_eq!(
        preflight
            .header("access-control-allow-credentials")
            .as_deref(),
        Some("true"),
        "preflight"
    );
    // The credentialed call itself: the browser shows the answer only with both headers.
    let reply = card(
        &app,
        &[("Origin", "https://widgets.example"), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("access-control-allow-origin").as_deref(),
        Some("https://widgets.example")
    );
    assert_eq!(
        reply.header("access-control-allow-credentials").as_deref(),
        Some("true"),
        "answer"
    );
}

// ---------------------------------------------------------------------------------------
// The real binary: the flags as an operator types them, and its production JSON log.
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn the_binary_takes_the_identity_flags_and_logs_no_token_or_claim() {
    use crate::common::process::ServerProcess;

    let up = recording_upstream().await;
    let idp = Idp::start(&jwks()).await;
    let registry = member_registry(&up.base);
    let flags: Vec<String> = [
        "--identity-issuer",
        ISS,
        "--identity-jwks-url",
        &idp.jwks_url(),
        "--identity-audience",
        AUD,
        "--identity-tenant-claim",
        TENANT_CLAIM,
        "--identity-cookie",
        "member_token",
        "--allow-origin",
        "https://widgets.example",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The start blocks until /readyz answers; the upstreams serve from their own threads.
    let server = actix_web::rt::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        ServerProcess::start(&registry, &flags)
    })
    .await
    .unwrap();
    let client = awc::Client::default();
    let call = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut req = client.request(method.parse().unwrap(), format!("{}{path}", server.base));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        async move {
            let mut res = req.send_body("{}").await.unwrap();
            let body = res.body().await.unwrap();
            (
                res.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    };
    let token = rs256(&claims());
    let (status, body) = call(
        "POST",
        "/connectors/composite/member-flow/execute",
        &[
            ("Authorization", &bearer(&token)),
            ("Content-Type", "application/json"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_second_step_saw_the_member(&last(&up), TENANT);
    let cookie = format!("member_token={token}");
    let (status, body) = call(
        "GET",
        "/connectors/member-card/execute",
        &[("Cookie", &cookie), ("Origin", "https://widgets.example")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let expired = eddsa(&claims_with(json!({"exp": now() - 3600})));
    let (status, body) = call(
        "GET",
        "/connectors/member-card/execute",
        &[("Authorization", &bearer(&expired))],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("refused: expired"), "{body}");
    let (status, _) = call("GET", "/connectors/member-card/execute", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(idp.fetches(), 1);

    // Every line is JSON; the refusals are logged; no token or claim value is.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("IDENTITY_REQUIRED") {
        assert!(Instant::now() < deadline, "{}", server.log_tail(20));
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let log = server.log();
    assert!(log.contains("IDENTITY_INVALID"), "{log}");
    for line in log.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_no_claim_or_token(line, &token);
        assert_no_claim_or_token(line, &expired);
    }
}

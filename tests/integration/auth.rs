//! Authentication types against real upstreams: api_key (header, query, `apikey`), jwt,
//! oauth_client_credentials with its token cache (single flight, expiry, cache key, 401
//! refresh-and-retry, token endpoint failure) and oauth_jwt_bearer.

use std::time::Duration;

use crate::common::{
    assert_envelope, echo_route, echo_upstream, form_field, json_route, slow_route, spawn_app,
    spawn_app_with, token_upstream, upstream, AppOptions, Reply, TestApp, Upstream, NETWORK_SCOPE,
};
use actix_web::web;
use jsonwebtoken::{decode, Algorithm, DecodingKey, TokenData, Validation};
use serde_json::{json, Value};

const HS_KEY: &str = "hs256-test-key-0123456789abcdef";

fn oauth_config(base: &str, client_id: &str) -> Value {
    json!({"type": "oauth_client_credentials", "config": {
        "client_id": client_id,
        "client_secret": "{{ get_secret('client_secret') }}",
        "token_url": format!("{base}/oauth/token")
    }})
}

fn oauth_app_options() -> AppOptions {
    AppOptions::default().secret("client_secret", "cs-1")
}

/// Runs simple GET connector `permalink` and returns the status.
async fn run(app: &TestApp, permalink: &str) -> u16 {
    app.execute(permalink).await.status
}

fn data_connector(base: &str, permalink: &str, client_id: &str) -> Value {
    json!({"name": permalink, "permalink": permalink, "url": format!("{base}/data"),
           "authentication": oauth_config(base, client_id)})
}

/// Connector `data` (client `cid`) and composite `permalink` whose step `fetch` calls `/data`
/// with OAuth client `client_id`, after a step `first` calling `/data` without
/// authentication when `plain_first`.
fn data_and_composite(base: &str, permalink: &str, client_id: &str, plain_first: bool) -> Value {
    let mut steps = Vec::new();
    if plain_first {
        steps.push(json!({"name": "first", "url": format!("{base}/data")}));
    }
    steps.push(json!({"name": "fetch", "url": format!("{base}/data"),
                      "authentication": oauth_config(base, client_id)}));
    json!({
        "connectors": [data_connector(base, "data", "cid")],
        "composite_connectors": [{"name": permalink, "permalink": permalink, "steps": steps}]
    })
}

/// Starts the app (with the OAuth client secret) on connector `data` of `up`, client `cid`.
async fn data_app(up: &Upstream) -> TestApp {
    let registry = json!({"connectors": [data_connector(&up.base, "data", "cid")]});
    spawn_app_with(registry, oauth_app_options()).await
}

/// Sends `GET path` `times` times, one after the other, checking each answer is a 200.
async fn assert_runs_ok(app: &TestApp, path: &str, times: usize) {
    for _ in 0..times {
        let reply = app.get(path).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
}

/// Checks that `reply` is a 502 `DOWNSTREAM_HTTP_ERROR` envelope with `scope`; returns its
/// `errors`.
#[track_caller]
fn assert_http_error(reply: &Reply, scope: &str) -> Value {
    assert_envelope(reply, 502, "DOWNSTREAM_HTTP_ERROR", Some(scope))
}

/// An upstream whose `POST /oauth/token` answers `token_status` with `token_body` and whose
/// `GET /data` answers 200 `{"data": "yes"}`.
async fn fixed_token_upstream(token_status: u16, token_body: Value) -> Upstream {
    upstream(move |cfg| {
        cfg.route(
            "/oauth/token",
            web::post().to(json_route(token_status, token_body.clone())),
        )
        .route(
            "/data",
            web::get().to(json_route(200, json!({"data": "yes"}))),
        );
    })
    .await
}

/// Decodes `token` signed with [`HS_KEY`] (HS256) under `validation`, failing the test with
/// `what` when it does not verify.
#[track_caller]
fn decode_hs256(token: &str, validation: &Validation, what: &str) -> TokenData<Value> {
    decode::<Value>(
        token,
        &DecodingKey::from_secret(HS_KEY.as_bytes()),
        validation,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[actix_web::test]
async fn an_api_key_goes_in_the_configured_header() {
    let up = echo_upstream().await;
    let registry = json!({"connectors": [{
        "name": "Keyed", "permalink": "keyed", "url": format!("{}/echo", up.base),
        "authentication": {"type": "api_key", "config": {
            "key": "X-API-Key", "value": "{{ get_secret('api_key') }}", "in": "header"}}
    }]});
    let app = spawn_app_with(registry, AppOptions::default().secret("api_key", "k-123")).await;
    let reply = app.execute("keyed").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = &up.log.to("/echo")[0];
    assert_eq!(received.header("x-api-key"), Some("k-123"));
    assert_eq!(received.query, "");
}

#[actix_web::test]
async fn an_api_key_goes_in_the_query_and_the_apikey_spelling_works() {
    let up = echo_upstream().await;
    let registry = json!({"connectors": [
        {"name": "In query", "permalink": "in-query", "url": format!("{}/echo?fixed=1", up.base),
         "authentication": {"type": "api_key", "config": {
             "key": "api_key", "value": "{{ get_secret('api_key') }}", "in": "query"}}},
        {"name": "Old spelling", "permalink": "old-spelling", "url": format!("{}/echo", up.base),
         "authentication": {"type": "apikey", "config": {
             "key": "X-Key", "value": "{{ get_secret('api_key') }}"}}}
    ]});
    let app = spawn_app_with(registry, AppOptions::default().secret("api_key", "k 1&2")).await;
    assert_eq!(app.execute("in-query").await.status, 200);
    assert_eq!(app.execute("old-spelling").await.status, 200);
    let calls = up.log.to("/echo");
    assert_eq!(
        calls[0].query_pairs(),
        vec![
            ("fixed".to_string(), "1".to_string()),
            ("api_key".to_string(), "k 1&2".to_string())
        ]
    );
    assert_eq!(calls[0].header("api_key"), None);
    // `apikey` without `in` defaults to a header.
    assert_eq!(calls[1].header("x-key"), Some("k 1&2"));
    assert_eq!(calls[1].query, "");
}

#[actix_web::test]
async fn jwt_auth_sends_a_bearer_token_that_verifies_and_has_integer_exp() {
    let up = echo_upstream().await;
    let registry = json!({"connectors": [{
        "name": "Jwt", "permalink": "jwt", "url": format!("{}/echo", up.base),
        "authentication": {"type": "jwt", "config": {
            "private_key": "{{ get_secret('hs_key') }}", "algorithm": "HS256",
            "claims": {"iss": "connector-runtime", "sub": "{{ request.query_parameters.user }}",
                       "exp": "{{ now() + 300 }}", "iat": "{{ now() }}", "scope": ["a", "b"]},
            "jwt_headers": {"kid": "key-1"}}}
    }]});
    let app = spawn_app_with(registry, AppOptions::default().secret("hs_key", HS_KEY)).await;
    assert_runs_ok(&app, "/connectors/jwt/execute?user=u-9", 2).await;
    let calls = up.log.to("/echo");
    let token = calls[0]
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("a bearer token")
        .to_string();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let data = decode_hs256(&token, &validation, "the token verifies with the HS256 key");
    assert_eq!(data.header.kid.as_deref(), Some("key-1"));
    assert_eq!(data.claims["iss"], "connector-runtime");
    assert_eq!(data.claims["sub"], "u-9");
    assert_eq!(data.claims["scope"], json!(["a", "b"]));
    assert!(
        data.claims["exp"].is_i64() || data.claims["exp"].is_u64(),
        "{}",
        data.claims
    );
    assert!(
        data.claims["iat"].is_i64() || data.claims["iat"].is_u64(),
        "{}",
        data.claims
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = data.claims["exp"].as_i64().unwrap();
    assert!(
        (now + 290..=now + 310).contains(&exp),
        "exp {exp}, now {now}"
    );
    // A wrong key does not verify it.
    assert!(decode::<Value>(&token, &DecodingKey::from_secret(b"other"), &validation).is_err());
    // Every call has its own Authorization header (that each is signed anew is
    // jwt_auth_signs_every_call_with_that_calls_claims).
    assert!(calls[1]
        .header("authorization")
        .unwrap()
        .starts_with("Bearer "));
}

/// The bearer token of `received` (an upstream request), decoded with the HS256 key.
fn hs256_claims(received: &crate::common::Received) -> (String, Value) {
    let token = received
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("a bearer token")
        .to_string();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = decode_hs256(&token, &validation, "the token verifies").claims;
    (token, claims)
}

#[actix_web::test]
async fn jwt_auth_signs_every_call_with_that_calls_claims() {
    // HS256 over the same claims gives the same token, so "signed on every call" shows in
    // what differs between calls: a claim from the call's own request data, and the time.
    // A token kept from an earlier call would carry that call's `sub` and `iat`.
    let up = echo_upstream().await;
    let registry = json!({"connectors": [{
        "name": "Jwt", "permalink": "jwt", "url": format!("{}/echo", up.base),
        "authentication": {"type": "jwt", "config": {
            "private_key": "{{ get_secret('hs_key') }}", "algorithm": "HS256",
            "claims": {"sub": "{{ request.query_parameters.user }}",
                       "iat": "{{ now() }}", "exp": "{{ now() + 300 }}"}}}
    }]});
    let app = spawn_app_with(registry, AppOptions::default().secret("hs_key", HS_KEY)).await;
    for user in ["u-1", "u-2"] {
        let reply = app
            .get(&format!("/connectors/jwt/execute?user={user}"))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let calls = up.log.to("/echo");
    let (first, first_claims) = hs256_claims(&calls[0]);
    let (second, second_claims) = hs256_claims(&calls[1]);
    assert_eq!(first_claims["sub"], "u-1");
    assert_eq!(
        second_claims["sub"], "u-2",
        "the second call got the first call's token"
    );
    assert_ne!(first, second);
    // The same request data once the clock has moved past the first token's second (waited
    // for on the clock, not for a fixed time): a new token with a later `iat`.
    let first_iat = first_claims["iat"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64)
        <= first_iat
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock did not move"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = app.get("/connectors/jwt/execute?user=u-1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (third, third_claims) = hs256_claims(&up.log.to("/echo")[2]);
    assert_eq!(third_claims["sub"], "u-1");
    assert!(
        third_claims["iat"].as_i64().unwrap() > first_iat,
        "{third_claims} was signed no later than {first_claims}"
    );
    assert_ne!(third, first);
}

#[actix_web::test]
async fn oauth_jwt_bearer_posts_a_signed_assertion_and_caches_the_token() {
    let up = upstream(|cfg| {
        cfg.route(
            "/oauth/token",
            web::post().to(json_route(
                200,
                json!({"access_token": "jb-token", "expires_in": 3600}),
            )),
        )
        .route("/echo", web::route().to(echo_route()));
    })
    .await;
    let registry = json!({"connectors": [{
        "name": "Jwt bearer", "permalink": "jwt-bearer", "url": format!("{}/echo", up.base),
        "authentication": {"type": "oauth_jwt_bearer", "config": {
            "client_id": "svc-client", "private_key": "{{ get_secret('hs_key') }}",
            "algorithm": "HS256", "token_url": format!("{}/oauth/token", up.base),
            "subject": "user@example.com", "audience": "https://auth.example.com/token",
            "additional_claims": {"tenant": "t1"}}}
    }]});
    let app = spawn_app_with(registry, AppOptions::default().secret("hs_key", HS_KEY)).await;
    assert_runs_ok(&app, "/connectors/jwt-bearer/execute", 3).await;
    let grants = up.log.to("/oauth/token");
    assert_eq!(grants.len(), 1, "the token must be cached");
    let grant = &grants[0];
    assert_eq!(
        grant.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        grant.body.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
        ),
        "{}",
        grant.body
    );
    assert_eq!(
        form_field(&grant.body, "grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let assertion = form_field(&grant.body, "assertion").unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["https://auth.example.com/token"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let data = decode_hs256(&assertion, &validation, "the assertion verifies");
    assert_eq!(data.claims["iss"], "svc-client");
    assert_eq!(data.claims["sub"], "user@example.com");
    assert_eq!(data.claims["aud"], "https://auth.example.com/token");
    assert_eq!(data.claims["tenant"], "t1");
    let (exp, iat) = (
        data.claims["exp"].as_i64().unwrap(),
        data.claims["iat"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 180);
    for call in up.log.to("/echo") {
        assert_eq!(call.header("authorization"), Some("Bearer jb-token"));
    }
}

#[actix_web::test]
async fn concurrent_runs_share_a_single_token_request() {
    let up = token_upstream(Duration::from_millis(100), 3600, &["tok-1"]).await;
    let app = data_app(&up).await;
    let runs = (0..20).map(|_| app.call("GET", "/connectors/data/execute", None, &[]));
    let replies = futures_util::future::join_all(runs).await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(up.log.count("/oauth/token"), 1);
    assert_eq!(up.log.count("/data"), 20);
    let grant = &up.log.to("/oauth/token")[0];
    assert_eq!(
        form_field(&grant.body, "grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(form_field(&grant.body, "client_id").as_deref(), Some("cid"));
    assert_eq!(
        form_field(&grant.body, "client_secret").as_deref(),
        Some("cs-1")
    );
    assert_eq!(form_field(&grant.body, "scope"), None);
}

#[actix_web::test]
async fn a_token_is_refreshed_once_it_expires() {
    // expires_in 61 → cached for 1 s.
    let up = token_upstream(Duration::ZERO, 61, &["tok-1", "tok-2"]).await;
    let app = data_app(&up).await;
    assert_runs_ok(&app, "/connectors/data/execute", 2).await;
    assert_eq!(up.log.count("/oauth/token"), 1, "reused while fresh");
    actix_rt::time::sleep(Duration::from_millis(1_200)).await;
    assert_runs_ok(&app, "/connectors/data/execute", 1).await;
    assert_eq!(up.log.count("/oauth/token"), 2, "refetched after expiry");
    let data = up.log.to("/data");
    assert_eq!(data[1].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(data[2].header("authorization"), Some("Bearer tok-2"));
}

#[actix_web::test]
async fn an_upstream_401_refreshes_the_token_and_retries_once() {
    // The upstream rejects tok-1 (say, revoked early) and accepts tok-2.
    let up = token_upstream(Duration::ZERO, 3600, &["tok-2"]).await;
    let app = data_app(&up).await;
    let reply = app.execute("data").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"data": "yes"}));
    assert_eq!(up.log.count("/oauth/token"), 2);
    let data = up.log.to("/data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(data[1].header("authorization"), Some("Bearer tok-2"));
    // The fresh token is the cached one now.
    let again = app.execute("data").await;
    assert_eq!(again.status, 200);
    assert_eq!(up.log.count("/oauth/token"), 2);
}

#[actix_web::test]
async fn a_persistent_401_is_a_502_after_exactly_one_retry() {
    let up = token_upstream(Duration::ZERO, 3600, &[]).await;
    let registry = data_and_composite(&up.base, "c-data", "cid-2", false);
    let app = spawn_app_with(registry, oauth_app_options()).await;
    let reply = app.execute("data").await;
    let errors = assert_http_error(&reply, "Downstream (HTTP error)");
    assert_eq!(errors["detail"], "the upstream answered HTTP 401");
    assert_eq!(up.log.count("/data"), 2, "one call and one retry");
    assert_eq!(up.log.count("/oauth/token"), 2);
    assert!(!reply.text().contains("invalid_token"));

    let reply = app.composite("c-data", "", "").await;
    assert_http_error(
        &reply,
        "Composite step 'fetch' (index 0): Downstream (HTTP error)",
    );
    assert_eq!(up.log.count("/data"), 4);
    assert_eq!(up.log.count("/oauth/token"), 4);
}

#[actix_web::test]
async fn a_401_without_oauth_is_not_retried() {
    let up = token_upstream(Duration::ZERO, 3600, &[]).await;
    let registry = json!({"connectors": [{
        "name": "Plain", "permalink": "plain", "url": format!("{}/data", up.base),
        "headers": [{"key": "Authorization", "value": "Bearer static"}]
    }]});
    let app = spawn_app(registry).await;
    let reply = app.execute("plain").await;
    assert_http_error(&reply, "Downstream (HTTP error)");
    assert_eq!(up.log.count("/data"), 1);
}

#[actix_web::test]
async fn a_failing_token_endpoint_is_a_502_http_error_and_the_upstream_is_not_called() {
    let up = fixed_token_upstream(401, json!({"error": "invalid_client"})).await;
    let registry = data_and_composite(&up.base, "c", "cid", true);
    let app = spawn_app_with(registry, oauth_app_options()).await;
    let reply = app.execute("data").await;
    let errors = assert_http_error(&reply, "Downstream (HTTP error)");
    assert_eq!(errors["detail"], "the token endpoint answered HTTP 401");
    assert!(!reply.text().contains("invalid_client"));
    assert_eq!(up.log.count("/data"), 0);

    let reply = app.composite("c", "", "").await;
    assert_http_error(
        &reply,
        "Composite step 'fetch' (index 1): Downstream (HTTP error)",
    );
    assert_eq!(up.log.count("/data"), 1, "only the first step called");
    // Failures are not cached: each run asks again.
    assert_eq!(up.log.count("/oauth/token"), 2);
}

#[actix_web::test]
async fn a_token_endpoint_without_an_access_token_is_a_502() {
    let up = fixed_token_upstream(200, json!({"nope": 1})).await;
    let app = data_app(&up).await;
    let reply = app.execute("data").await;
    assert_envelope(&reply, 502, "DOWNSTREAM_NETWORK_ERROR", Some(NETWORK_SCOPE));
    assert_eq!(up.log.count("/data"), 0);
}

#[actix_web::test]
async fn a_slow_token_endpoint_times_out_with_a_504() {
    let up = upstream(|cfg| {
        cfg.route(
            "/oauth/token",
            web::post().to(slow_route(
                Duration::from_millis(5_000),
                200,
                json!({"access_token": "late"}),
            )),
        );
    })
    .await;
    let registry = json!({"connectors": [data_connector(&up.base, "data", "cid")]});
    let app = spawn_app_with(
        registry,
        oauth_app_options().flags(|f| f.token_timeout_ms = 200),
    )
    .await;
    let started = std::time::Instant::now();
    let reply = app.execute("data").await;
    assert_envelope(&reply, 504, "DOWNSTREAM_TIMEOUT", Some(NETWORK_SCOPE));
    // The token timeout (200 ms), not the token endpoint (5 s), ended it; slack for load.
    assert!(
        started.elapsed() < Duration::from_millis(3_000),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn tokens_are_cached_per_client_id_secret_url_and_scope() {
    let up = token_upstream(Duration::ZERO, 3600, &["tok-1", "tok-2", "tok-3", "tok-4"]).await;
    let base = up.base.clone();
    let mut scoped = data_connector(&base, "scoped", "cid-a");
    scoped["authentication"]["config"]["scope"] = json!("read");
    let mut other_secret = data_connector(&base, "other-secret", "cid-a");
    other_secret["authentication"]["config"]["client_secret"] = json!("another-secret");
    let registry = json!({"connectors": [
        data_connector(&base, "a", "cid-a"),
        data_connector(&base, "a-again", "cid-a"),
        data_connector(&base, "b", "cid-b"),
        scoped,
        other_secret,
    ]});
    let app = spawn_app_with(registry, oauth_app_options()).await;
    assert_eq!(run(&app, "a").await, 200);
    assert_eq!(run(&app, "a-again").await, 200);
    assert_eq!(up.log.count("/oauth/token"), 1, "same grant, same token");
    assert_eq!(run(&app, "b").await, 200);
    assert_eq!(up.log.count("/oauth/token"), 2, "another client_id");
    assert_eq!(run(&app, "scoped").await, 200);
    assert_eq!(up.log.count("/oauth/token"), 3, "another scope");
    assert_eq!(run(&app, "other-secret").await, 200);
    assert_eq!(up.log.count("/oauth/token"), 4, "another client_secret");
    for p in ["a", "b", "scoped", "other-secret"] {
        assert_eq!(run(&app, p).await, 200);
    }
    assert_eq!(up.log.count("/oauth/token"), 4, "all four cached");
    let client_ids: Vec<Option<String>> = up
        .log
        .to("/oauth/token")
        .iter()
        .map(|r| form_field(&r.body, "client_id"))
        .collect();
    assert_eq!(
        client_ids,
        vec![
            Some("cid-a".into()),
            Some("cid-b".into()),
            Some("cid-a".into()),
            Some("cid-a".into())
        ]
    );
}

#[actix_web::test]
async fn tokens_are_cached_per_token_url() {
    let first = token_upstream(Duration::ZERO, 3600, &["tok-1"]).await;
    let second = token_upstream(Duration::ZERO, 3600, &["tok-1"]).await;
    let mut other_url = data_connector(&first.base, "other-url", "cid");
    other_url["authentication"]["config"]["token_url"] =
        json!(format!("{}/oauth/token", second.base));
    let registry = json!({"connectors": [data_connector(&first.base, "same", "cid"), other_url]});
    let app = spawn_app_with(registry, oauth_app_options()).await;
    for p in [
        "/connectors/same/execute",
        "/connectors/other-url/execute",
        "/connectors/same/execute",
    ] {
        assert_eq!(app.call("GET", p, None, &[]).await.status, 200, "{p}");
    }
    assert_eq!(first.log.count("/oauth/token"), 1);
    assert_eq!(second.log.count("/oauth/token"), 1);
}

#[actix_web::test]
async fn concurrent_runs_rejected_with_401_share_one_refresh() {
    // Every run first gets tok-1, which the upstream rejects; the refresh must happen once.
    let up = token_upstream(Duration::from_millis(100), 3600, &["tok-2"]).await;
    let app = data_app(&up).await;
    let runs = (0..10).map(|_| app.call("GET", "/connectors/data/execute", None, &[]));
    for reply in futures_util::future::join_all(runs).await {
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(up.log.count("/oauth/token"), 2);
    let accepted = up
        .log
        .to("/data")
        .iter()
        .filter(|r| r.header("authorization") == Some("Bearer tok-2"))
        .count();
    assert_eq!(accepted, 10);
}

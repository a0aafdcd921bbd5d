//! The seed's auth-and-fetch chain and how steps feed each other.

use crate::common::{spawn_app, standard_upstream};
use serde_json::json;

fn auth_and_fetch(base: &str) -> serde_json::Value {
    json!({"composite_connectors": [{
        "name": "Auth and Fetch User",
        "permalink": "auth-and-fetch-user",
        "steps": [
            {"name": "auth", "url": format!("{base}/oauth/token"), "method": "POST",
             "headers": [{"key": "Content-Type", "value": "application/json"}],
             "request_body": "{\"client_id\": \"{{ request.body_text | from_json | attr('clientId') }}\"}"},
            {"name": "fetch-user", "url": format!("{base}/users/me"), "method": "GET",
             "headers": [{"key": "Authorization", "value": "Bearer {{ steps.auth.body | from_json | attr('access_token') }}"}]}
        ]
    }]})
}

#[actix_web::test]
async fn the_seed_auth_and_fetch_chain_returns_the_last_steps_response() {
    let up = standard_upstream().await;
    let app = spawn_app(auth_and_fetch(&up.base)).await;
    let reply = app
        .composite("auth-and-fetch-user", "", r#"{"clientId":"widget-42"}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"id": "usr_1", "name": "Ada"}));
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    let token_requests = up.log.to("/oauth/token");
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0].body, r#"{"client_id": "widget-42"}"#);
    assert_eq!(
        up.log.to("/users/me")[0].header("authorization"),
        Some("Bearer tok-123")
    );
}

#[actix_web::test]
async fn a_failing_step_stops_the_chain_and_is_named_in_the_scope() {
    let up = standard_upstream().await;
    let mut registry = auth_and_fetch(&up.base);
    registry["composite_connectors"][0]["steps"][1]["headers"][0]["value"] = json!("Bearer wrong");
    let app = spawn_app(registry).await;
    let reply = app
        .composite("auth-and-fetch-user", "", r#"{"clientId":"w"}"#)
        .await;
    assert_eq!(reply.status, 502);
    let errors = reply.errors();
    assert_eq!(errors["code"], "DOWNSTREAM_HTTP_ERROR");
    assert_eq!(
        errors["scope"],
        "Composite step 'fetch-user' (index 1): Downstream (HTTP error)"
    );
    assert!(
        !reply.text().contains("tok-123"),
        "earlier step data leaked: {}",
        reply.text()
    );
    assert!(
        !reply.text().contains("bad token"),
        "upstream body leaked: {}",
        reply.text()
    );
    let timing = reply.header("server-timing").unwrap();
    assert!(timing.starts_with("step.auth;dur="), "{timing}");
    assert!(timing.contains("step.fetch-user;dur="), "{timing}");
}

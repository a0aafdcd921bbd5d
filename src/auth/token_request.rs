//! Requests an OAuth access token: a form POST to the token endpoint, answered with JSON
//! (or, from some providers, a form-encoded body).

use std::time::Duration;

use awc::http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use awc::http::Method;
use bytes::Bytes;

use super::tokens::FetchedToken;
use super::AuthEnv;
use crate::error::{Code, StepFailure};
use crate::events::TokenFetchFailed;
use crate::upstream::transport::MockKey;
use crate::upstream::{send, Caller, OutboundRequest};

/// Tokens are reused until this long before they expire.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How long a token whose endpoint states no `expires_in` is taken to live.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// POSTs `form` to `token_url` and reads the token. It is cached until [`EXPIRY_MARGIN`]
/// before the end of its lifetime: the endpoint's `expires_in`, capped by `max_lifetime`
/// when given (`oauth_jwt_bearer`'s `token_ttl`).
pub(crate) async fn request_token(
    env: &AuthEnv<'_>,
    token_url: &str,
    form: Vec<(&'static str, String)>,
    max_lifetime: Option<Duration>,
) -> Result<FetchedToken, StepFailure> {
    let result = fetch(env, token_url, form, max_lifetime).await;
    if let Err(failure) = &result {
        TokenFetchFailed {
            code: failure.code,
            detail: &failure.detail,
        }
        .emit(env.metrics);
    }
    result
}

async fn fetch(
    env: &AuthEnv<'_>,
    token_url: &str,
    form: Vec<(&'static str, String)>,
    max_lifetime: Option<Duration>,
) -> Result<FetchedToken, StepFailure> {
    let body = serde_urlencoded::to_string(&form).map_err(|_| {
        StepFailure::new(Code::UnexpectedError, "could not encode the token request")
    })?;
    let request = OutboundRequest {
        method: Method::POST,
        url: token_url.to_string(),
        headers: vec![
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            ),
            (ACCEPT, HeaderValue::from_static("application/json")),
        ],
        body: Some(Bytes::from(body)),
    };
    let response = send(
        env.client,
        Caller {
            key: MockKey {
                name: env.mock_name,
                token: true,
            },
            trace: env.trace,
        },
        &request,
        env.token_timeout,
        env.max_response_bytes,
    )
    .await
    .map_err(|e| {
        let mut failure = StepFailure::from(e);
        failure.detail = format!("token request: {}", failure.detail);
        failure
    })?;
    if response.status >= 400 {
        return Err(StepFailure::http(response.status, "the token endpoint"));
    }
    let (access_token, expires_in) =
        parse_token(&response.body, response.headers.get(CONTENT_TYPE)).ok_or_else(|| {
            StepFailure::new(
                Code::DownstreamNetworkError,
                "the token endpoint's answer has no access_token",
            )
        })?;
    let lifetime = expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIFETIME);
    let lifetime = max_lifetime.map_or(lifetime, |max| lifetime.min(max));
    let cache_for = Some(lifetime.saturating_sub(EXPIRY_MARGIN));
    Ok(FetchedToken {
        access_token,
        cache_for,
    })
}

fn parse_token(body: &[u8], content_type: Option<&HeaderValue>) -> Option<(String, Option<u64>)> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        let token = map.get("access_token")?.as_str()?.to_string();
        let expires = map
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        return Some((token, expires));
    }
    let form_like = content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("x-www-form-urlencoded") || v.starts_with("text/plain"));
    if form_like {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
        let token = pairs.iter().find(|(k, _)| k == "access_token")?.1.clone();
        let expires = pairs
            .iter()
            .find(|(k, _)| k == "expires_in")
            .and_then(|(_, v)| v.parse().ok());
        return Some((token, expires));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_json_and_form_answers() {
        assert_eq!(
            parse_token(br#"{"access_token":"a","expires_in":120}"#, None),
            Some(("a".into(), Some(120)))
        );
        let form = HeaderValue::from_static("application/x-www-form-urlencoded");
        assert_eq!(
            parse_token(b"access_token=b&expires_in=30", Some(&form)),
            Some(("b".into(), Some(30)))
        );
        assert_eq!(parse_token(b"{}", None), None);
    }
}

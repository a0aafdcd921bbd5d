//! Authentication of upstream calls (docs/spec.md §4): `api_key`, `oauth_client_credentials`,
//! `jwt` and `oauth_jwt_bearer`. Config values are rendered per call; OAuth tokens come from
//! the shared [`tokens::TokenCache`].

pub(crate) mod token_request;
pub(crate) mod tokens;

use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use minijinja::Value;
use serde_json::Map;

use crate::error::{Code, StepFailure};
use crate::events::TokenLookedUp;
use crate::registry::compiled::{ApiKeyPlacement, Auth, ConfigValue};
use crate::template::{TemplateId, TemplateSet};
use tokens::{TokenCache, TokenOrigin};

/// What authentication adds to the outbound request.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    /// A header (e.g. `Authorization: Bearer ...` or `X-API-Key`).
    Header(HeaderName, HeaderValue),
    /// A query parameter.
    Query(String, String),
}

/// A credential and, for OAuth, the cache entry it came from (so a 401 can drop it).
#[derive(Debug, Clone)]
pub(crate) struct AppliedAuth {
    /// What to add to the request.
    pub credential: Credential,
    /// `(cache key, token)` for OAuth grants.
    pub token: Option<(String, String)>,
}

/// What authentication needs from the run.
pub(crate) struct AuthEnv<'a> {
    /// The registry's templates.
    pub templates: &'a TemplateSet,
    /// The step's template context.
    pub ctx: &'a Value,
    /// This worker's upstream transport.
    pub client: &'a crate::upstream::Transport,
    /// The step name (or simple connector's permalink) whose `"<name>.token"` mock answers
    /// a token request when the transport is a mock set.
    pub mock_name: &'a str,
    /// The shared token cache.
    pub tokens: &'a TokenCache,
    /// Time limit of a token request.
    pub token_timeout: Duration,
    /// Largest token response accepted.
    pub max_response_bytes: usize,
    /// Token cache hits, misses and fetch errors are counted here.
    pub metrics: &'a crate::metrics::Metrics,
    /// Where token requests' CLIENT spans go, when traced.
    pub trace: crate::trace::Parent<'a>,
}

impl AuthEnv<'_> {
    /// Renders one config template; errors carry the template's field.
    pub(crate) fn render(&self, id: &TemplateId) -> Result<String, StepFailure> {
        self.templates
            .render(id, self.ctx)
            .map_err(|e| StepFailure::from_render(id, &e))
    }

    /// Renders a token URL and checks it stays on the origin fixed at load.
    fn token_url(&self, id: &TemplateId, origin: &str) -> Result<String, StepFailure> {
        let url = self.render(id)?;
        if !crate::upstream::origin::rendered_url_matches(&url, origin) {
            return Err(StepFailure::new(
                Code::TemplateRenderingError,
                "authentication.config.token_url: the rendered URL does not start with its configured scheme and host",
            ));
        }
        Ok(url)
    }

    fn render_tree(&self, value: &ConfigValue) -> Result<serde_json::Value, StepFailure> {
        Ok(match value {
            ConfigValue::Template(id) => serde_json::Value::String(self.render(id)?),
            ConfigValue::Literal(v) => v.clone(),
            ConfigValue::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| self.render_tree(i))
                    .collect::<Result<_, _>>()?,
            ),
            ConfigValue::Object(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), self.render_tree(v)?);
                }
                serde_json::Value::Object(map)
            }
        })
    }

    fn render_map(
        &self,
        value: Option<&ConfigValue>,
    ) -> Result<Option<Map<String, serde_json::Value>>, StepFailure> {
        match value.map(|v| self.render_tree(v)).transpose()? {
            Some(serde_json::Value::Object(map)) => Ok(Some(map)),
            _ => Ok(None),
        }
    }
}

/// The credential of an OAuth grant's token, counted as a cache hit or miss.
fn oauth_applied(
    env: &AuthEnv<'_>,
    key: String,
    token: &str,
    origin: TokenOrigin,
) -> Result<AppliedAuth, StepFailure> {
    count_token(env, origin);
    Ok(AppliedAuth {
        credential: bearer(token)?,
        token: Some((key, token.to_string())),
    })
}

fn count_token(env: &AuthEnv<'_>, origin: TokenOrigin) {
    TokenLookedUp {
        hit: origin != TokenOrigin::Fetched,
    }
    .emit(env.metrics);
}

fn bearer(token: &str) -> Result<Credential, StepFailure> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map(|v| Credential::Header(AUTHORIZATION, v))
        .map_err(|_| {
            StepFailure::new(
                Code::DownstreamNetworkError,
                "the token endpoint returned a token that is not a valid header value",
            )
        })
}

fn sign_failure(e: crate::jwt::JwtError) -> StepFailure {
    StepFailure::new(Code::JwtSigningError, format!("JWT signing failed: {e}"))
}

/// An authentication with its config rendered, before any token is fetched or JWT signed:
/// what [`Prepared::identity`] names is all a response cache needs to know (docs/spec.md
/// §10: a cache hit runs no authentication).
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    /// `api_key`: the credential itself.
    Credential(Credential),
    /// `jwt`: signed on every call.
    Jwt {
        identity: String,
        private_key: String,
        algorithm: String,
        claims: serde_json::Value,
        headers: Option<Map<String, serde_json::Value>>,
    },
    /// `oauth_client_credentials`: a token of the cache or one fetch.
    ClientCredentials {
        key: String,
        token_url: String,
        form: Vec<(&'static str, String)>,
    },
    /// `oauth_jwt_bearer`: a token of the cache, or an assertion signed and exchanged.
    JwtBearer {
        key: String,
        token_url: String,
        client_id: String,
        private_key: String,
        subject: String,
        audience: String,
        algorithm: String,
        extra: Option<Map<String, serde_json::Value>>,
        headers: Option<Map<String, serde_json::Value>>,
        max_lifetime: Duration,
    },
}

/// Renders the config of `auth` (templates only: nothing is fetched or signed).
pub(crate) fn prepare(auth: &Auth, env: &AuthEnv<'_>) -> Result<Prepared, StepFailure> {
    match auth {
        Auth::ApiKey {
            key,
            value,
            placement,
        } => {
            let value = env.render(value)?;
            let credential = match placement {
                ApiKeyPlacement::Query => Credential::Query(key.clone(), value),
                ApiKeyPlacement::Header => {
                    let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                        StepFailure::new(
                            Code::TemplateRenderingError,
                            "the api_key header name is invalid",
                        )
                    })?;
                    let value = HeaderValue::from_str(&value).map_err(|_| {
                        StepFailure::new(
                            Code::TemplateRenderingError,
                            "authentication.config.value renders to a value with a line break or control character",
                        )
                    })?;
                    Credential::Header(name, value)
                }
            };
            Ok(Prepared::Credential(credential))
        }
        Auth::OAuthClientCredentials {
            client_id,
            client_secret,
            token_url,
            token_origin,
            scope,
        } => {
            let client_id = env.render(client_id)?;
            let client_secret = env.render(client_secret)?;
            let token_url = env.token_url(token_url, token_origin)?;
            let scope = scope
                .as_ref()
                .map(|s| env.render(s))
                .transpose()?
                .filter(|s| !s.is_empty());
            let key = format!(
                "cc\0{client_id}\0{client_secret}\0{token_url}\0{}",
                scope.as_deref().unwrap_or("")
            );
            let mut form = vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", client_id),
                ("client_secret", client_secret),
            ];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            Ok(Prepared::ClientCredentials {
                key,
                token_url,
                form,
            })
        }
        Auth::Jwt {
            private_key,
            algorithm,
            claims,
            jwt_headers,
        } => {
            let private_key = env.render(private_key)?;
            let claims = env.render_tree(claims)?;
            let headers = env.render_map(jwt_headers.as_ref())?;
            let identity =
                serde_json::json!(["jwt", private_key, algorithm, claims, headers]).to_string();
            Ok(Prepared::Jwt {
                identity,
                private_key,
                algorithm: algorithm.clone(),
                claims,
                headers,
            })
        }
        Auth::OAuthJwtBearer {
            client_id,
            private_key,
            token_url,
            token_origin,
            subject,
            audience,
            token_ttl,
            algorithm,
            additional_claims,
            jwt_headers,
        } => {
            let client_id = env.render(client_id)?;
            let private_key = env.render(private_key)?;
            let token_url = env.token_url(token_url, token_origin)?;
            let subject = env.render(subject)?;
            let audience = env.render(audience)?;
            let extra = env.render_map(additional_claims.as_ref())?;
            let headers = env.render_map(jwt_headers.as_ref())?;
            // Every input of the assertion is part of the key: connectors that differ in a
            // claim (a scope), a header or the algorithm must never share a token.
            let key = serde_json::json!([
                "jwt-bearer",
                client_id,
                token_url,
                subject,
                audience,
                private_key,
                algorithm,
                extra,
                headers,
                token_ttl,
            ])
            .to_string();
            Ok(Prepared::JwtBearer {
                key,
                token_url,
                client_id,
                private_key,
                subject,
                audience,
                algorithm: algorithm.clone(),
                extra,
                headers,
                max_lifetime: Duration::from_secs(*token_ttl),
            })
        }
    }
}

impl Prepared {
    /// What tells this credential from any other, without fetching or signing it: the
    /// api key itself, or every input of the grant or signature. Two calls with the same
    /// identity send the same credential (or tokens of the same grant).
    pub(crate) fn identity(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Prepared::Credential(Credential::Header(name, value)) => format!(
                "header\0{}\0{}",
                name.as_str(),
                String::from_utf8_lossy(value.as_bytes())
            )
            .into(),
            Prepared::Credential(Credential::Query(key, value)) => {
                format!("query\0{key}\0{value}").into()
            }
            Prepared::Jwt { identity, .. } => identity.as_str().into(),
            Prepared::ClientCredentials { key, .. } | Prepared::JwtBearer { key, .. } => {
                key.as_str().into()
            }
        }
    }

    /// The authentication as `X-Debug-Request` shows it (docs/spec.md §14), from a config
    /// rendered with secrets as their template text: its type and rendered config. A
    /// client secret or private key written into the registry itself (not read with
    /// `get_secret()`) is shown as `[hidden]`.
    pub(crate) fn describe(&self) -> serde_json::Value {
        use serde_json::json;
        let hidden = |value: &str| {
            if value.contains("get_secret(") {
                value.to_string()
            } else {
                "[hidden]".to_string()
            }
        };
        match self {
            Prepared::Credential(Credential::Header(name, value)) => json!({
                "type": "api_key",
                "placement": "header",
                "key": name.as_str(),
                "value": String::from_utf8_lossy(value.as_bytes()),
            }),
            Prepared::Credential(Credential::Query(key, value)) => json!({
                "type": "api_key",
                "placement": "query",
                "key": key,
                "value": value,
            }),
            Prepared::Jwt {
                private_key,
                algorithm,
                claims,
                headers,
                ..
            } => json!({
                "type": "jwt",
                "algorithm": algorithm,
                "claims": claims,
                "jwt_headers": headers,
                "private_key": hidden(private_key),
            }),
            Prepared::ClientCredentials {
                token_url, form, ..
            } => {
                let mut config = Map::new();
                config.insert("type".into(), "oauth_client_credentials".into());
                config.insert("token_url".into(), token_url.clone().into());
                for (name, value) in form.iter().filter(|(n, _)| *n != "grant_type") {
                    let value = if *name == "client_secret" {
                        hidden(value)
                    } else {
                        value.clone()
                    };
                    config.insert((*name).into(), value.into());
                }
                serde_json::Value::Object(config)
            }
            Prepared::JwtBearer {
                token_url,
                client_id,
                private_key,
                subject,
                audience,
                algorithm,
                extra,
                headers,
                max_lifetime,
                ..
            } => json!({
                "type": "oauth_jwt_bearer",
                "token_url": token_url,
                "client_id": client_id,
                "subject": subject,
                "audience": audience,
                "algorithm": algorithm,
                "additional_claims": extra,
                "jwt_headers": headers,
                "token_ttl": max_lifetime.as_secs(),
                "private_key": hidden(private_key),
            }),
        }
    }

    /// Whether the credential is an `Authorization` header (the shared-cache rule for
    /// authenticated requests applies to its answers).
    pub(crate) fn sends_authorization_header(&self) -> bool {
        match self {
            Prepared::Credential(Credential::Header(name, _)) => name == AUTHORIZATION,
            Prepared::Credential(Credential::Query(..)) => false,
            Prepared::Jwt { .. }
            | Prepared::ClientCredentials { .. }
            | Prepared::JwtBearer { .. } => true,
        }
    }

    /// Produces the credential: a token of the cache (or fetched), or a JWT signed now.
    pub(crate) async fn apply(&self, env: &AuthEnv<'_>) -> Result<AppliedAuth, StepFailure> {
        match self {
            Prepared::Credential(credential) => Ok(AppliedAuth {
                credential: credential.clone(),
                token: None,
            }),
            Prepared::ClientCredentials {
                key,
                token_url,
                form,
            } => {
                let (token, origin) = env
                    .tokens
                    .get(key, env.token_timeout, || {
                        token_request::request_token(env, token_url, form.clone(), None)
                    })
                    .await?;
                oauth_applied(env, key.clone(), &token, origin)
            }
            Prepared::Jwt {
                private_key,
                algorithm,
                claims,
                headers,
                ..
            } => {
                let token = crate::jwt::sign(claims, private_key, algorithm, headers.as_ref())
                    .map_err(sign_failure)?;
                Ok(AppliedAuth {
                    credential: bearer(&token)?,
                    token: None,
                })
            }
            Prepared::JwtBearer {
                key,
                token_url,
                client_id,
                private_key,
                subject,
                audience,
                algorithm,
                extra,
                headers,
                max_lifetime,
            } => {
                let (token, origin) = env
                    .tokens
                    .get(key, env.token_timeout, || async {
                        let now = crate::template::functions::unix_now();
                        let mut claims = extra.clone().unwrap_or_default();
                        claims.insert("iss".into(), client_id.clone().into());
                        claims.insert("sub".into(), subject.clone().into());
                        claims.insert("aud".into(), audience.clone().into());
                        claims.insert("iat".into(), now.into());
                        claims.insert("exp".into(), (now + 180).into());
                        let assertion = crate::jwt::sign(
                            &serde_json::Value::Object(claims),
                            private_key,
                            algorithm,
                            headers.as_ref(),
                        )
                        .map_err(sign_failure)?;
                        let form = vec![
                            (
                                "grant_type",
                                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                            ),
                            ("assertion", assertion),
                        ];
                        token_request::request_token(env, token_url, form, Some(*max_lifetime))
                            .await
                    })
                    .await?;
                oauth_applied(env, key.clone(), &token, origin)
            }
        }
    }
}

//! `authentication` (docs/spec.md §4): the type, its config keys, and each config value compiled.

use serde_json::{Map, Value};

use super::{checked, Builder, CallSite, Checked, Reported};
use crate::registry::compiled::{ApiKeyPlacement, Auth, ConfigValue};
use crate::registry::model::AuthenticationDef;
use crate::registry::rules::{is_header_name, is_runtime_header};
use crate::template::{Field, TemplateId};

/// The authentication types a registry can name in `authentication.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    /// `none`.
    None,
    /// `api_key`, or its old spelling `apikey`.
    ApiKey,
    /// `oauth_client_credentials`.
    OAuthClientCredentials,
    /// `jwt`.
    Jwt,
    /// `oauth_jwt_bearer`.
    OAuthJwtBearer,
}

impl AuthKind {
    /// The type named `name`, if there is one.
    fn parse(name: &str) -> Option<AuthKind> {
        Some(match name {
            "none" => AuthKind::None,
            "api_key" | "apikey" => AuthKind::ApiKey,
            "oauth_client_credentials" => AuthKind::OAuthClientCredentials,
            "jwt" => AuthKind::Jwt,
            "oauth_jwt_bearer" => AuthKind::OAuthJwtBearer,
            _ => return None,
        })
    }

    /// The config keys this type needs.
    fn required_keys(self) -> &'static [&'static str] {
        match self {
            AuthKind::None => &[],
            AuthKind::ApiKey => &["key", "value"],
            AuthKind::OAuthClientCredentials => &["client_id", "client_secret", "token_url"],
            AuthKind::Jwt => &["private_key", "claims"],
            AuthKind::OAuthJwtBearer => &[
                "client_id",
                "private_key",
                "token_url",
                "subject",
                "audience",
            ],
        }
    }

    /// The config keys this type may have.
    fn optional_keys(self) -> &'static [&'static str] {
        match self {
            AuthKind::None => &[],
            AuthKind::ApiKey => &["in"],
            AuthKind::OAuthClientCredentials => &["scope"],
            AuthKind::Jwt => &["algorithm", "jwt_headers"],
            AuthKind::OAuthJwtBearer => {
                &["token_ttl", "algorithm", "additional_claims", "jwt_headers"]
            }
        }
    }
}

impl<'o> Builder<'o> {
    /// Checks and compiles a call's `authentication`: `Ok(None)` for type `none`.
    pub(super) fn auth(
        &mut self,
        site: &CallSite<'_>,
        def: &AuthenticationDef,
    ) -> Checked<Option<Auth>> {
        let Some(kind) = AuthKind::parse(&def.kind) else {
            self.report.error(&site.at, "authentication.type", format!(
                "unknown authentication type '{}'; use none, api_key, oauth_client_credentials, jwt or oauth_jwt_bearer",
                def.kind
            ));
            return Err(Reported);
        };
        self.config_keys(site, kind, def)?;
        let config = &def.config;
        match kind {
            AuthKind::None => Ok(None),
            AuthKind::ApiKey => self.api_key(site, config).map(Some),
            AuthKind::OAuthClientCredentials => {
                self.oauth_client_credentials(site, config).map(Some)
            }
            AuthKind::Jwt => self.jwt(site, config).map(Some),
            AuthKind::OAuthJwtBearer => self.oauth_jwt_bearer(site, config).map(Some),
        }
    }

    /// Reports missing required config keys (errors) and unknown ones (warnings).
    fn config_keys(
        &mut self,
        site: &CallSite<'_>,
        kind: AuthKind,
        def: &AuthenticationDef,
    ) -> Checked<()> {
        // Messages name the type as the registry spells it (`apikey` stays `apikey`).
        let name = def.kind.as_str();
        let (required, optional) = (kind.required_keys(), kind.optional_keys());
        let mut ok = true;
        for key in required {
            if !def.config.contains_key(*key) {
                self.report.error(
                    &site.at,
                    format!("authentication.config.{key}"),
                    format!("{name} authentication needs '{key}' in its config"),
                );
                ok = false;
            }
        }
        for key in def.config.keys() {
            if required.contains(&key.as_str()) || optional.contains(&key.as_str()) {
                continue;
            }
            let message = if kind == AuthKind::None {
                "authentication type 'none' takes no config; this key is ignored".to_string()
            } else {
                let known: Vec<&str> = required.iter().chain(optional).copied().collect();
                format!(
                    "unknown {name} config key '{key}' is ignored (known: {})",
                    known.join(", ")
                )
            };
            self.report
                .warning(&site.at, format!("authentication.config.{key}"), message);
        }
        checked(ok, ())
    }

    /// Compiles the config value `key` (a string or number) as a template.
    fn config_template(
        &mut self,
        site: &CallSite<'_>,
        config: &Map<String, Value>,
        key: &str,
    ) -> Checked<TemplateId> {
        let field_path = format!("authentication.config.{key}");
        match config.get(key) {
            Some(Value::String(s)) => self.template(site, &field_path, Field::AuthConfig, s),
            Some(Value::Number(n)) => {
                self.template(site, &field_path, Field::AuthConfig, &n.to_string())
            }
            _ => {
                self.report.error(&site.at, field_path, "must be a string");
                Err(Reported)
            }
        }
    }

    fn api_key(&mut self, site: &CallSite<'_>, config: &Map<String, Value>) -> Checked<Auth> {
        let placement = match config.get("in").and_then(Value::as_str).unwrap_or("header") {
            "header" => Ok(ApiKeyPlacement::Header),
            "query" => Ok(ApiKeyPlacement::Query),
            other => {
                self.report.error(
                    &site.at,
                    "authentication.config.in",
                    format!("'{other}' is not a place for an API key; use \"header\" or \"query\""),
                );
                Err(Reported)
            }
        };
        let key = match config.get("key") {
            Some(Value::String(k)) if is_header_name(k) && !k.contains("{{") => Ok(k.clone()),
            _ => {
                self.report.error(&site.at, "authentication.config.key",
                    "must be the literal name of the header or query parameter that carries the key");
                Err(Reported)
            }
        };
        // The header an API key goes in follows the rules of configured headers: `Host`,
        // `Upgrade`, `Expect` and the rest are the runtime's.
        if let (Ok(key), Ok(ApiKeyPlacement::Header)) = (&key, placement) {
            if is_runtime_header(key) {
                self.report.error(
                    &site.at,
                    "authentication.config.key",
                    format!("'{key}' is set by the runtime and cannot be configured"),
                );
                return Err(Reported);
            }
        }
        let value = self.config_template(site, config, "value")?;
        Ok(Auth::ApiKey {
            key: key?,
            value,
            placement: placement?,
        })
    }

    fn oauth_client_credentials(
        &mut self,
        site: &CallSite<'_>,
        config: &Map<String, Value>,
    ) -> Checked<Auth> {
        let client_id = self.config_template(site, config, "client_id");
        let client_secret = self.config_template(site, config, "client_secret");
        let token = self.token_url(site, config);
        let scope = if config.contains_key("scope") {
            Some(self.config_template(site, config, "scope")?)
        } else {
            None
        };
        let (token_url, token_origin) = token?;
        Ok(Auth::OAuthClientCredentials {
            client_id: client_id?,
            client_secret: client_secret?,
            token_url,
            token_origin,
            scope,
        })
    }

    fn jwt(&mut self, site: &CallSite<'_>, config: &Map<String, Value>) -> Checked<Auth> {
        let private_key = self.config_template(site, config, "private_key");
        let algorithm = self.algorithm(site, config);
        let claims = self.config_tree(site, "claims", config.get("claims"), true);
        let jwt_headers = self.optional_tree(site, "jwt_headers", config);
        Ok(Auth::Jwt {
            private_key: private_key?,
            algorithm: algorithm?,
            claims: claims?,
            jwt_headers: jwt_headers?,
        })
    }

    fn oauth_jwt_bearer(
        &mut self,
        site: &CallSite<'_>,
        config: &Map<String, Value>,
    ) -> Checked<Auth> {
        let client_id = self.config_template(site, config, "client_id");
        let private_key = self.config_template(site, config, "private_key");
        let subject = self.config_template(site, config, "subject");
        let audience = self.config_template(site, config, "audience");
        let token = self.token_url(site, config);
        let algorithm = self.algorithm(site, config);
        let token_ttl = self.token_ttl(site, config);
        let additional_claims = self.optional_tree(site, "additional_claims", config);
        let jwt_headers = self.optional_tree(site, "jwt_headers", config);
        let (token_url, token_origin) = token?;
        Ok(Auth::OAuthJwtBearer {
            client_id: client_id?,
            private_key: private_key?,
            token_url,
            token_origin,
            subject: subject?,
            audience: audience?,
            token_ttl: token_ttl?,
            algorithm: algorithm?,
            additional_claims: additional_claims?,
            jwt_headers: jwt_headers?,
        })
    }

    /// `token_ttl`: whole seconds above 60 (a number or a numeric string), 3600 when absent.
    fn token_ttl(&mut self, site: &CallSite<'_>, config: &Map<String, Value>) -> Checked<u64> {
        let Some(v) = config.get("token_ttl") else {
            return Ok(3600);
        };
        match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        {
            Some(ttl) if ttl > 60 => Ok(ttl),
            _ => {
                self.report.error(
                    &site.at,
                    "authentication.config.token_ttl",
                    "must be a whole number of seconds greater than 60",
                );
                Err(Reported)
            }
        }
    }

    fn token_url(
        &mut self,
        site: &CallSite<'_>,
        config: &Map<String, Value>,
    ) -> Checked<(TemplateId, String)> {
        match config.get("token_url") {
            Some(Value::String(url)) => self.url(
                site,
                "authentication.config.token_url",
                Field::AuthConfig,
                url,
            ),
            _ => {
                self.report.error(
                    &site.at,
                    "authentication.config.token_url",
                    "must be a string URL",
                );
                Err(Reported)
            }
        }
    }

    /// The JWT signing algorithm (RS256 when absent).
    fn algorithm(&mut self, site: &CallSite<'_>, config: &Map<String, Value>) -> Checked<String> {
        let algorithm = match config.get("algorithm") {
            None => "RS256",
            Some(Value::String(a)) => a.as_str(),
            Some(_) => "",
        };
        match crate::jwt::parse_algorithm(algorithm) {
            Ok(_) => Ok(algorithm.to_string()),
            Err(e) => {
                self.report
                    .error(&site.at, "authentication.config.algorithm", e.to_string());
                Err(Reported)
            }
        }
    }

    /// An optional object of templates (`jwt_headers`, `additional_claims`).
    fn optional_tree(
        &mut self,
        site: &CallSite<'_>,
        key: &str,
        config: &Map<String, Value>,
    ) -> Checked<Option<ConfigValue>> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(None),
            value => self.config_tree(site, key, value, true).map(Some),
        }
    }

    /// Compiles a JSON config value whose strings are templates.
    fn config_tree(
        &mut self,
        site: &CallSite<'_>,
        path: &str,
        value: Option<&Value>,
        must_be_object: bool,
    ) -> Checked<ConfigValue> {
        let field_path = format!("authentication.config.{path}");
        match value {
            Some(Value::Object(map)) => {
                let mut entries = Vec::new();
                let mut ok = true;
                for (k, v) in map {
                    match self.config_tree(site, &format!("{path}.{k}"), Some(v), false) {
                        Ok(c) => entries.push((k.clone(), c)),
                        Err(Reported) => ok = false,
                    }
                }
                checked(ok, ConfigValue::Object(entries))
            }
            _ if must_be_object => {
                self.report.error(&site.at, field_path, "must be an object");
                Err(Reported)
            }
            Some(Value::String(s)) => self
                .template(site, &field_path, Field::AuthConfig, s)
                .map(ConfigValue::Template),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.config_tree(site, &format!("{path}[{i}]"), Some(item), false) {
                        Ok(c) => out.push(c),
                        Err(Reported) => ok = false,
                    }
                }
                checked(ok, ConfigValue::Array(out))
            }
            Some(other) => Ok(ConfigValue::Literal(other.clone())),
            None => Ok(ConfigValue::Literal(Value::Null)),
        }
    }
}

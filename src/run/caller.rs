//! Who calls: the caller identity of one run (docs/spec.md §9). The [`IdentityGate`] decides,
//! from the connector's reads and the server's identity settings, whether a run needs a
//! verified caller, verifies the token a request carries, and gives templates `user` and
//! `tenant_id`.

use std::sync::Arc;

use actix_web::http::header::{HeaderMap, AUTHORIZATION, COOKIE};
use minijinja::Value;

use super::input::RequestError;
use crate::error::Code;
use crate::events::CallerIdentified;
use crate::identity::{Caller, Identity, IdentityArgs, TenantSource, VerifyOutcome};
use crate::metrics::Metrics;
use crate::registry::Connector;

/// What templates of one run see of the caller: `user` and `tenant_id`, each only when the
/// connector reads it and it is defined.
#[derive(Debug, Default, Clone)]
pub struct CallerVars {
    /// `user`, the verified caller.
    pub user: Option<Value>,
    /// `tenant_id`.
    pub tenant_id: Option<Value>,
}

/// Whether a request that carries its token in the identity cookie comes from a page that
/// may use it (CSRF: the browser sends a cookie on its own, whoever made the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieUse {
    /// The request comes from an origin of `--allow-origin`, or from the runtime's own
    /// pages (`Sec-Fetch-Site: same-origin`).
    Allowed,
    /// Any other request: the cookie is ignored.
    Refused,
}

/// The server's caller identity settings, shared by every worker.
#[derive(Debug)]
pub struct IdentityGate {
    identity: Option<Arc<Identity>>,
    tenant: TenantSource,
    cookie: Option<String>,
}

impl IdentityGate {
    /// The gate of a server with `identity` (started from `args`; `None` when off).
    pub fn new(identity: Option<Arc<Identity>>, args: &IdentityArgs) -> Self {
        IdentityGate {
            identity,
            tenant: args.tenant_source(),
            cookie: args.identity_cookie.clone(),
        }
    }

    /// Whether a caller header is consumed by identity: with identity on, `Authorization`
    /// (and the `Cookie` header when the token may come from a cookie) never overrides a
    /// connector's header and never reaches an upstream.
    pub(crate) fn consumes(&self, header: &str) -> bool {
        self.identity.is_some()
            && (header.eq_ignore_ascii_case(AUTHORIZATION.as_str())
                || (self.cookie.is_some() && header.eq_ignore_ascii_case(COOKIE.as_str())))
    }

    /// Identifies the caller of a run of `connector`: verifies the token `headers` carry
    /// (a token that is sent is always verified), refuses a run that needs a verified caller
    /// without one, and returns what its templates see.
    pub(crate) async fn identify(
        &self,
        connector: &Connector,
        headers: &HeaderMap,
        cookie_use: impl FnOnce() -> CookieUse,
        request_id: &str,
        metrics: &Metrics,
    ) -> Result<CallerVars, RequestError> {
        let Some(identity) = &self.identity else {
            // No identity: the registry cannot read `user` (refused at load); `tenant_id`
            // can only be the static one.
            return Ok(self.vars(connector, None));
        };
        let needs_caller = identity.required()
            || connector.reads.user
            || (connector.reads.tenant_id && matches!(self.tenant, TenantSource::Claim(_)));
        let (result, sent, from_cookie) = match identity.extract(headers) {
            // A credential was sent, but not one `Bearer <token>`: a malformed token.
            Err(e) => (Err(e), true, false),
            Ok(token) => {
                let from_cookie = token.is_some() && !headers.contains_key(AUTHORIZATION);
                let token = token.filter(|_| !from_cookie || cookie_use() == CookieUse::Allowed);
                let result = match token {
                    Some(token) => identity.verify(token).await.map(Some),
                    None => Ok(None),
                };
                (result, token.is_some(), from_cookie)
            }
        };
        if sent || needs_caller {
            CallerIdentified {
                request_id,
                outcome: VerifyOutcome::of(&result),
            }
            .emit(metrics);
        }
        match result {
            Err(e) => Err(invalid(&e)),
            Ok(None) if needs_caller => Err(self.required(connector, from_cookie)),
            Ok(caller) => Ok(self.vars(connector, caller.as_ref())),
        }
    }

    fn vars(&self, connector: &Connector, caller: Option<&Caller>) -> CallerVars {
        CallerVars {
            user: caller
                .filter(|_| connector.reads.user)
                .map(Caller::template_value),
            tenant_id: connector
                .reads
                .tenant_id
                .then(|| self.tenant.tenant_id(caller).map(Value::from))
                .flatten(),
        }
    }

    fn required(&self, connector: &Connector, cookie_ignored: bool) -> RequestError {
        let mut detail = format!(
            "'{}' needs a signed-in member: send their token as Authorization: Bearer <token>",
            connector.permalink
        );
        if cookie_ignored {
            detail.push_str(
                " (the identity cookie is accepted only from origins allowed by --allow-origin)",
            );
        }
        RequestError::new(Code::IdentityRequired, detail)
    }
}

/// The refusal of a token that failed `check`: names the check, never the token.
fn invalid(check: &crate::identity::IdentityError) -> RequestError {
    RequestError::new(
        Code::IdentityInvalid,
        format!("the caller token was refused: {check}"),
    )
}

//! The one table of error codes (docs/spec.md §6): every code the runtime answers with,
//! once, with its HTTP status, its envelope scope and the bounded metric label of the
//! outcome it counts as. Everything else — run failures, request refusals, the envelope,
//! metrics, timing headers — reads these columns; no code is compared as a string.

use std::fmt;

use crate::template::{RenderError, TemplateId};
use crate::upstream::UpstreamError;

/// The scope of every failure that happened talking to the upstream's network.
const NETWORK: Option<&str> = Some("Downstream (network/external service)");

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident => $code:literal, $status:literal, $scope:expr, $label:literal; )*) => {
        /// An error code of the contract's envelope.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[$doc])* $name, )*
        }

        impl Code {
            /// Every code, in table order.
            #[cfg(test)]
            const ALL: &'static [Code] = &[$(Code::$name),*];

            /// The machine-readable code (`errors.code`).
            pub(crate) const fn as_str(self) -> &'static str {
                match self { $(Code::$name => $code,)* }
            }

            /// The HTTP status answered.
            pub(crate) const fn status(self) -> u16 {
                match self { $(Code::$name => $status,)* }
            }

            /// The envelope's scope before any composite-step prefix; `None` for request
            /// errors, which happen before any step runs (`scope: null`).
            pub(crate) const fn scope(self) -> Option<&'static str> {
                match self { $(Code::$name => $scope,)* }
            }

            /// The `outcome` label of `connector_runs_total` (and of step metrics) that a
            /// run ending with this code counts as.
            pub(crate) const fn outcome_label(self) -> &'static str {
                match self { $(Code::$name => $label,)* }
            }
        }
    };
}

error_codes! {
    // Run failures: a step ran and failed (docs/spec.md §6).
    /// The upstream answered 4xx or 5xx.
    DownstreamHttpError => "DOWNSTREAM_HTTP_ERROR", 502, Some("Downstream (HTTP error)"), "downstream_http_error";
    /// Connecting, sending or reading failed.
    DownstreamNetworkError => "DOWNSTREAM_NETWORK_ERROR", 502, NETWORK, "downstream_network_error";
    /// The step's time limit passed.
    DownstreamTimeout => "DOWNSTREAM_TIMEOUT", 504, NETWORK, "timeout";
    /// The upstream body exceeded `--max-response-bytes`.
    DownstreamResponseTooLarge => "DOWNSTREAM_RESPONSE_TOO_LARGE", 502, NETWORK, "response_too_large";
    /// The upstream's address is refused by the address policy.
    UpstreamAddressForbidden => "UPSTREAM_ADDRESS_FORBIDDEN", 502, NETWORK, "downstream_network_error";
    /// A template failed to render.
    TemplateRenderingError => "TEMPLATE_RENDERING_ERROR", 422, Some("Configuration (template rendering)"), "template_error";
    /// A simple connector's `response_body` failed to render.
    ResponseTemplateRenderingError => "RESPONSE_TEMPLATE_RENDERING_ERROR", 422, Some("Configuration (response template rendering)"), "template_error";
    /// A `for_each` list is longer than `--max-fanout`.
    FanOutTooLarge => "FAN_OUT_TOO_LARGE", 422, Some("Configuration (for_each)"), "template_error";
    /// A `rate_limit` quota is used up (docs/spec.md §11): refused before any upstream call,
    /// with `Retry-After`.
    RateLimited => "RATE_LIMITED", 429, Some("Rate limit"), "rate_limited";
    /// Signing a JWT failed.
    JwtSigningError => "JWT_SIGNING_ERROR", 422, Some("Authentication (JWT signing)"), "jwt_error";
    /// Anything the runtime did not expect.
    UnexpectedError => "UNEXPECTED_ERROR", 500, Some("Unexpected error"), "unexpected_error";

    // Request errors: refused before any step ran.
    /// The connection asked to be upgraded.
    UpgradeNotSupported => "UPGRADE_NOT_SUPPORTED", 400, None, "client_error";
    /// No registry has loaded yet.
    RegistryNotLoaded => "REGISTRY_NOT_LOADED", 503, None, "client_error";
    /// No connector has this permalink.
    ConnectorNotFound => "CONNECTOR_NOT_FOUND", 404, None, "client_error";
    /// A simple connector called on the composite route, or the other way round.
    ConnectorKindMismatch => "CONNECTOR_KIND_MISMATCH", 400, None, "client_error";
    /// The connector is called with another method than its own.
    MethodNotAllowed => "METHOD_NOT_ALLOWED", 405, None, "client_error";
    /// The query string is not URL encoding, or has too many parameters.
    InvalidQueryString => "INVALID_QUERY_STRING", 400, None, "client_error";
    /// A path parameter breaks the path parameter rule.
    InvalidPathParameters => "INVALID_PATH_PARAMETERS", 400, None, "client_error";
    /// A declared path parameter has no value.
    MissingPathParameters => "MISSING_PATH_PARAMETERS", 400, None, "client_error";
    /// The request body is larger than `--max-request-bytes`, however it is framed.
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", 413, None, "client_error";
    /// The request body could not be read.
    InvalidRequestBody => "INVALID_REQUEST_BODY", 400, None, "client_error";
    /// The request body did not arrive within the body read timeout.
    RequestBodyTimeout => "REQUEST_BODY_TIMEOUT", 408, None, "client_error";
    /// `--max-in-flight` runs are already in flight.
    Overloaded => "OVERLOADED", 503, None, "overloaded";
    /// No route has this path.
    RouteNotFound => "ROUTE_NOT_FOUND", 404, None, "client_error";
    /// The operator API needs its bearer token.
    Unauthorized => "UNAUTHORIZED", 401, None, "client_error";
    /// The connector needs a verified caller and the request carries no token.
    IdentityRequired => "IDENTITY_REQUIRED", 401, None, "client_error";
    /// The caller token failed a check (the detail names it).
    IdentityInvalid => "IDENTITY_INVALID", 401, None, "client_error";
    /// A push webhook's signature is missing or wrong.
    InvalidSignature => "INVALID_SIGNATURE", 401, None, "client_error";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed step: its code and a caller-safe detail (no secret, no body, no step data).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct StepFailure {
    /// Which failure (one of the run-failure rows of [`Code`]).
    pub code: Code,
    /// What happened, safe to show.
    pub detail: String,
    /// Seconds after which the call may be made again (`Retry-After` of `RATE_LIMITED`).
    pub retry_after: Option<u64>,
}

impl StepFailure {
    /// A failure with `code` and `detail`.
    pub(crate) fn new(code: Code, detail: impl Into<String>) -> Self {
        StepFailure {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The same failure, telling the caller to retry after `seconds`.
    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The upstream (`what`) answered `status`.
    pub(crate) fn http(status: u16, what: &str) -> Self {
        StepFailure::new(
            Code::DownstreamHttpError,
            format!("{what} answered HTTP {status}"),
        )
    }

    /// Whether `on_error: "continue"` may record this failure and go on: a failed call
    /// (an upstream's 4xx/5xx, network, timeout, size), not a broken template.
    pub(crate) fn is_call_failure(&self) -> bool {
        matches!(
            self.code,
            Code::DownstreamHttpError
                | Code::DownstreamNetworkError
                | Code::DownstreamTimeout
                | Code::DownstreamResponseTooLarge
                | Code::UpstreamAddressForbidden
                | Code::RateLimited
        )
    }

    /// A template of the step failed to render: the failure names the template's field.
    pub(crate) fn from_render(id: &TemplateId, e: &RenderError) -> Self {
        let code = if e.jwt_signing {
            Code::JwtSigningError
        } else {
            Code::TemplateRenderingError
        };
        StepFailure::new(code, format!("{}: {}", id.field_path(), e.message))
    }
}

impl From<UpstreamError> for StepFailure {
    fn from(e: UpstreamError) -> Self {
        let code = match &e {
            UpstreamError::Timeout(_) => Code::DownstreamTimeout,
            UpstreamError::Forbidden(_) => Code::UpstreamAddressForbidden,
            UpstreamError::Network(_) => Code::DownstreamNetworkError,
            UpstreamError::TooLarge(_) => Code::DownstreamResponseTooLarge,
            UpstreamError::InvalidUrl(_) => Code::TemplateRenderingError,
        };
        StepFailure::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_written_once_and_in_capitals() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_'));
            assert!((400..600).contains(&code.status()));
        }
    }

    #[test]
    fn run_failures_have_a_scope_and_request_errors_have_none() {
        assert_eq!(
            Code::DownstreamHttpError.scope(),
            Some("Downstream (HTTP error)")
        );
        assert_eq!(Code::DownstreamTimeout.status(), 504);
        assert_eq!(Code::ConnectorNotFound.scope(), None);
        assert_eq!(Code::Overloaded.outcome_label(), "overloaded");
    }
}

//! Why a run failed, and how that maps to the contract's status, code and scope (SPEC §6).

use crate::upstream::UpstreamError;

/// The kinds of run failure, each with one status, code and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The upstream answered 4xx/5xx.
    DownstreamHttp,
    /// Connecting, sending or reading failed.
    DownstreamNetwork,
    /// The step's time limit passed.
    Timeout,
    /// The upstream body exceeded the size cap.
    ResponseTooLarge,
    /// The upstream address is not allowed by the address policy.
    AddressForbidden,
    /// A template failed to render.
    TemplateRendering,
    /// A simple connector's `response_body` failed to render.
    ResponseTemplateRendering,
    /// Signing a JWT failed.
    JwtSigning,
    /// Anything else.
    Unexpected,
}

impl FailureKind {
    /// HTTP status returned to the caller.
    pub fn status(self) -> u16 {
        match self {
            FailureKind::DownstreamHttp
            | FailureKind::DownstreamNetwork
            | FailureKind::ResponseTooLarge
            | FailureKind::AddressForbidden => 502,
            FailureKind::Timeout => 504,
            FailureKind::TemplateRendering
            | FailureKind::ResponseTemplateRendering
            | FailureKind::JwtSigning => 422,
            FailureKind::Unexpected => 500,
        }
    }

    /// Machine-readable code of the envelope.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::DownstreamHttp => "DOWNSTREAM_HTTP_ERROR",
            FailureKind::DownstreamNetwork => "DOWNSTREAM_NETWORK_ERROR",
            FailureKind::Timeout => "DOWNSTREAM_TIMEOUT",
            FailureKind::ResponseTooLarge => "DOWNSTREAM_RESPONSE_TOO_LARGE",
            FailureKind::AddressForbidden => "UPSTREAM_ADDRESS_FORBIDDEN",
            FailureKind::TemplateRendering => "TEMPLATE_RENDERING_ERROR",
            FailureKind::ResponseTemplateRendering => "RESPONSE_TEMPLATE_RENDERING_ERROR",
            FailureKind::JwtSigning => "JWT_SIGNING_ERROR",
            FailureKind::Unexpected => "UNEXPECTED_ERROR",
        }
    }

    /// Scope of the envelope, before any composite-step prefix.
    pub fn scope(self) -> &'static str {
        match self {
            FailureKind::DownstreamHttp => "Downstream (HTTP error)",
            FailureKind::DownstreamNetwork
            | FailureKind::Timeout
            | FailureKind::ResponseTooLarge
            | FailureKind::AddressForbidden => "Downstream (network/external service)",
            FailureKind::TemplateRendering => "Configuration (template rendering)",
            FailureKind::ResponseTemplateRendering => "Configuration (response template rendering)",
            FailureKind::JwtSigning => "Authentication (JWT signing)",
            FailureKind::Unexpected => "Unexpected error",
        }
    }

    /// Bounded metric label of the outcome.
    pub fn outcome_label(self) -> &'static str {
        match self {
            FailureKind::DownstreamHttp => "downstream_http_error",
            FailureKind::DownstreamNetwork | FailureKind::AddressForbidden => {
                "downstream_network_error"
            }
            FailureKind::Timeout => "timeout",
            FailureKind::ResponseTooLarge => "response_too_large",
            FailureKind::TemplateRendering | FailureKind::ResponseTemplateRendering => {
                "template_error"
            }
            FailureKind::JwtSigning => "jwt_error",
            FailureKind::Unexpected => "unexpected_error",
        }
    }
}

/// A failed step: what kind, and a caller-safe detail (no secret, no body, no step data).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct StepFailure {
    /// The kind.
    pub kind: FailureKind,
    /// What happened, safe to show.
    pub detail: String,
    /// The upstream status, for HTTP errors.
    pub upstream_status: Option<u16>,
}

impl StepFailure {
    /// A failure of `kind` with `detail`.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        StepFailure {
            kind,
            detail: detail.into(),
            upstream_status: None,
        }
    }

    /// The upstream answered `status`.
    pub fn http(status: u16, what: &str) -> Self {
        StepFailure {
            kind: FailureKind::DownstreamHttp,
            detail: format!("{what} answered HTTP {status}"),
            upstream_status: Some(status),
        }
    }
}

impl From<UpstreamError> for StepFailure {
    fn from(e: UpstreamError) -> Self {
        let kind = match &e {
            UpstreamError::Timeout(_) => FailureKind::Timeout,
            UpstreamError::Forbidden(_) => FailureKind::AddressForbidden,
            UpstreamError::Network(_) => FailureKind::DownstreamNetwork,
            UpstreamError::TooLarge(_) => FailureKind::ResponseTooLarge,
            UpstreamError::InvalidUrl(_) => FailureKind::TemplateRendering,
        };
        StepFailure::new(kind, e.to_string())
    }
}

/// A failed run: the failure and, for composites, which step failed.
#[derive(Debug, Clone)]
pub struct RunError {
    /// What failed.
    pub failure: StepFailure,
    /// `(name, index)` of the failing composite step.
    pub step: Option<(String, usize)>,
}

impl RunError {
    /// The envelope's scope: prefixed with `Composite step '<name>' (index <N>): ` in a
    /// composite.
    pub fn scope(&self) -> String {
        match &self.step {
            Some((name, index)) => format!(
                "Composite step '{name}' (index {index}): {}",
                self.failure.kind.scope()
            ),
            None => self.failure.kind.scope().to_string(),
        }
    }
}

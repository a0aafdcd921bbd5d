//! The contract's error envelope (docs/spec.md §6):
//! `{"success": false, "errors": {code, detail, scope, params}, "request_id": "..."}`, and
//! [`ErrorResponse`], the error type handlers return so that they can use `?`.

use std::fmt;

use actix_web::http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::overload::RETRY_AFTER_SECS;
use crate::error::Code;
use crate::run::input::RequestError;
use crate::run::RunError;

/// One error answer.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// Which error; gives the HTTP status.
    pub code: Code,
    /// What happened, safe to show.
    pub detail: String,
    /// Where it failed (`None` for request errors such as 400/404).
    pub scope: Option<String>,
    /// Keys the error is about (e.g. the path parameters that are missing).
    pub params: Vec<String>,
}

impl Envelope {
    /// An error with `code`'s own scope (none for request errors).
    pub(crate) fn new(code: Code, detail: impl Into<String>) -> Self {
        Envelope {
            code,
            detail: detail.into(),
            scope: code.scope().map(str::to_string),
            params: Vec::new(),
        }
    }

    /// With `params`.
    pub(crate) fn with_params(mut self, params: Vec<String>) -> Self {
        self.params = params;
        self
    }

    /// The envelope of a failed run.
    pub(crate) fn from_run(error: &RunError) -> Self {
        Envelope {
            code: error.failure.code,
            detail: error.failure.detail.clone(),
            scope: Some(error.scope()),
            params: error
                .failure
                .retry_after
                .map(|s| vec![format!("retry_after={s}")])
                .unwrap_or_default(),
        }
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body.
    pub(crate) fn body(&self, request_id: &str) -> String {
        json!({
            "success": false,
            "errors": {
                "code": self.code.as_str(),
                "detail": self.detail,
                "scope": self.scope,
                "params": self.params,
            },
            "request_id": request_id,
        })
        .to_string()
    }

    /// An HTTP response carrying the envelope and the request id; an `OVERLOADED` answer
    /// also says when to retry (`Retry-After`), an `UNAUTHORIZED` or identity one how to
    /// authenticate (`WWW-Authenticate`, RFC 6750).
    pub(crate) fn response(&self, request_id: &str) -> HttpResponse {
        let mut builder = HttpResponse::build(
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        );
        builder
            .content_type("application/json")
            .insert_header((super::request_id::HEADER, request_id));
        match self.code {
            Code::Overloaded => {
                builder.insert_header((RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS)));
            }
            Code::RateLimited => {
                let seconds = self
                    .params
                    .iter()
                    .find_map(|p| p.strip_prefix("retry_after="))
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(1);
                builder.insert_header((RETRY_AFTER, HeaderValue::from(seconds)));
            }
            Code::Unauthorized | Code::IdentityRequired => {
                builder.insert_header((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Code::IdentityInvalid => {
                builder.insert_header((
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                ));
            }
            _ => {}
        }
        builder.body(self.body(request_id))
    }

    /// This envelope as the error answer to request `request_id`.
    pub(crate) fn at(self, request_id: &str) -> ErrorResponse {
        ErrorResponse {
            envelope: self,
            request_id: request_id.to_string(),
        }
    }
}

impl From<RequestError> for Envelope {
    fn from(e: RequestError) -> Self {
        Envelope::new(e.code, e.detail).with_params(e.params)
    }
}

/// An envelope answered for one request: the error type of handlers, so they use `?`.
#[derive(Debug)]
pub(crate) struct ErrorResponse {
    /// The answer.
    pub envelope: Envelope,
    /// The request's id (`X-Request-ID` and `request_id`).
    pub request_id: String,
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.envelope.code, self.envelope.detail)
    }
}

impl ResponseError for ErrorResponse {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.envelope.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        self.envelope.response(&self.request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StepFailure;

    /// No input reaches `UNEXPECTED_ERROR` (every place that can produce it needs an actor of
    /// the runtime itself to have stopped), so its answer is pinned here.
    #[test]
    fn an_unexpected_failure_is_a_500_with_its_scope_and_no_detail_of_the_step() {
        let error = RunError {
            failure: StepFailure::new(Code::UnexpectedError, "the step executor stopped"),
            step: Some(("fetch".into(), 1)),
            item: None,
        };
        let response = Envelope::from_run(&error).response("r-1");
        assert_eq!(response.status().as_u16(), 500);
        let body: serde_json::Value =
            serde_json::from_str(&Envelope::from_run(&error).body("r-1")).unwrap();
        assert_eq!(body["errors"]["code"], "UNEXPECTED_ERROR");
        assert_eq!(
            body["errors"]["scope"],
            "Composite step 'fetch' (index 1): Unexpected error"
        );
        assert_eq!(body["request_id"], "r-1");
    }
}

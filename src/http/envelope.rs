//! The contract's error envelope (SPEC §6):
//! `{"success": false, "errors": {code, detail, scope, params}, "request_id": "..."}`.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::json;

use crate::run::RunError;

/// One error answer.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code.
    pub code: &'static str,
    /// What happened, safe to show.
    pub detail: String,
    /// Where it failed (`None` for request errors such as 400/404).
    pub scope: Option<String>,
    /// Keys the error is about (e.g. the path parameters that are missing).
    pub params: Vec<String>,
}

impl Envelope {
    /// A request error without scope.
    pub fn request(status: u16, code: &'static str, detail: impl Into<String>) -> Self {
        Envelope {
            status,
            code,
            detail: detail.into(),
            scope: None,
            params: Vec::new(),
        }
    }

    /// With `params`.
    pub fn with_params(mut self, params: Vec<String>) -> Self {
        self.params = params;
        self
    }

    /// The envelope of a failed run.
    pub fn from_run(error: &RunError) -> Self {
        Envelope {
            status: error.failure.kind.status(),
            code: error.failure.kind.code(),
            detail: error.failure.detail.clone(),
            scope: Some(error.scope()),
            params: Vec::new(),
        }
    }

    /// The JSON body.
    pub fn body(&self, request_id: &str) -> String {
        json!({
            "success": false,
            "errors": {
                "code": self.code,
                "detail": self.detail,
                "scope": self.scope,
                "params": self.params,
            },
            "request_id": request_id,
        })
        .to_string()
    }

    /// An HTTP response carrying the envelope and the request id.
    pub fn response(&self, request_id: &str) -> HttpResponse {
        HttpResponse::build(
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .content_type("application/json")
        .insert_header((super::request_id::HEADER, request_id))
        .body(self.body(request_id))
    }
}

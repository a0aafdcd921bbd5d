//! The operator API (off unless `--admin-token` is set): `GET /admin/registry` shows the
//! build status, `POST /admin/registry/sync` syncs now. Bearer token, compared in constant time.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::envelope::{Envelope, ErrorResponse};
use super::{request_id, AppState};
use crate::error::Code;
use crate::registry::actor::GetStatus;
use crate::registry::{Sync, SyncReason};

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Refuses the request unless the operator API is on and it carries the admin bearer token.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ErrorResponse> {
    let id = request_id::of(req);
    let Some(token) = &state.operator.admin_token else {
        return Err(super::feature_off_error("operator API", "--admin-token").at(&id));
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Envelope::new(Code::Unauthorized, "a valid admin bearer token is required").at(&id))
    }
}

fn actor_gone(req: &HttpRequest) -> ErrorResponse {
    Envelope::new(Code::UnexpectedError, "the registry actor is not running")
        .at(&request_id::of(req))
}

/// `GET /admin/registry`: `{state, source, revision, loaded_at, error, errors, warnings, connectors, last_sync}`.
pub(crate) async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ErrorResponse> {
    authorize(&req, &state)?;
    let status = state
        .operator
        .registry_actor
        .send(GetStatus)
        .await
        .map_err(|_| actor_gone(&req))?;
    Ok(HttpResponse::Ok().json(status))
}

/// `POST /admin/registry/sync`: syncs now and answers with the outcome (422 when rejected).
pub(crate) async fn sync(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ErrorResponse> {
    authorize(&req, &state)?;
    let actor = &state.operator.registry_actor;
    let outcome = actor
        .send(Sync(SyncReason::Admin))
        .await
        .map_err(|_| actor_gone(&req))?;
    let status = actor.send(GetStatus).await.ok();
    Ok(match outcome {
        Ok(record) => HttpResponse::Ok().json(json!({"sync": record, "status": status})),
        Err(error) => HttpResponse::UnprocessableEntity().json(json!({
            "sync": {"result": "failed", "error": error.to_string(), "errors": error.problems()},
            "status": status,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}

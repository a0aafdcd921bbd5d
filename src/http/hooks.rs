//! `POST /hooks/git`: a push webhook (GitHub style). The `X-Hub-Signature-256` HMAC of the
//! body is verified in constant time; pushes to other branches are ignored; a push to the
//! watched branch triggers a sync and is answered 202 at once.

use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::envelope::Envelope;
use super::{request_id, AppState};
use crate::error::Code;
use crate::registry::{Sync, SyncReason};

/// Largest webhook body accepted (GitHub caps payloads at 25 MB; pushes are far smaller).
pub const MAX_WEBHOOK_BYTES: usize = 5 * 1024 * 1024;

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub fn signature_is_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature header value for `body` (for clients and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `POST /hooks/git`.
pub async fn git_push(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = request_id::of(&req);
    let Some(secret) = &state.operator.webhook_secret else {
        return super::feature_off(&req, "push webhook", "--webhook-secret");
    };
    let body = match super::execute::read_body(&req, payload, MAX_WEBHOOK_BYTES).await {
        Ok(body) => body,
        Err(refused) => return Envelope::from(refused).response(&id),
    };
    let signature = req
        .headers()
        .get("X-Hub-Signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signature_is_valid(secret.as_bytes(), &body, signature) {
        tracing::warn!("push webhook with a missing or wrong signature ignored");
        return Envelope::new(
            Code::InvalidSignature,
            "X-Hub-Signature-256 is missing or does not match the webhook secret",
        )
        .response(&id);
    }
    let event = req
        .headers()
        .get("X-GitHub-Event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("push");
    if event == "ping" {
        return HttpResponse::Ok().json(json!({"status": "pong"}));
    }
    let pushed = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("ref").and_then(|r| r.as_str()).map(str::to_string));
    if let (Some(branch), Some(pushed)) = (&state.operator.branch, &pushed) {
        let watched = format!("refs/heads/{branch}");
        if *pushed != watched {
            return HttpResponse::Ok().json(json!({"status": "ignored", "reason": format!("push to {pushed}; watching {watched}")}));
        }
    }
    state
        .operator
        .registry_actor
        .do_send(Sync(SyncReason::Webhook));
    tracing::info!(
        pushed = pushed.as_deref().unwrap_or("-"),
        "push webhook: sync triggered"
    );
    HttpResponse::Accepted().json(json!({"status": "accepted"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_right_secret_and_body() {
        let sig = sign(b"It's a Secret to Everybody", b"Hello, World!");
        // The example from GitHub's webhook documentation.
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(signature_is_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &sig
        ));
        assert!(!signature_is_valid(b"other", b"Hello, World!", &sig));
        assert!(!signature_is_valid(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            &sig
        ));
        assert!(!signature_is_valid(b"k", b"x", "sha1=abc"));
        assert!(!signature_is_valid(b"k", b"x", ""));
    }
}

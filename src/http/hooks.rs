//! `POST /hooks/git`: a push webhook (GitHub style). The `X-Hub-Signature-256` HMAC of the
//! body is verified in constant time; pushes to other branches are ignored; a push to the
//! watched branch triggers a sync and is answered 202 at once.
//!
//! Anyone who can reach the route can send to it, so what an unverified request may cost is
//! bounded before the signature is checked:
//! - a request without a well-formed signature header is refused before its body is read;
//! - at most [`WEBHOOK_BODIES_AT_ONCE`] bodies are read at once over all workers (more get
//!   503 with `Retry-After`), each up to [`MAX_WEBHOOK_BYTES`] (413 beyond, declared or
//!   chunked) within [`WEBHOOK_BODY_TIMEOUT`] (408 beyond), with memory allocated as the
//!   bytes arrive;
//! - a delivery id (`X-GitHub-Delivery`) seen lately is answered without syncing, and syncs
//!   are coalesced by the registry actor, so replays cannot pile up `git fetch` runs.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::body::{read_body, BodyLimits};
use super::envelope::Envelope;
use super::overload::RETRY_AFTER_SECS;
use super::{request_id, AppState};
use crate::error::Code;
use crate::registry::actor::{PushOutcome, SignedPush, WebhookBodySlot, WEBHOOK_BODIES_AT_ONCE};
use crate::run::input::RequestError;

/// Largest webhook body accepted. GitHub caps payloads at 25 MB, but a push's payload lists
/// at most 20 commits (2,048 with `commits_url` paging) and is a few KiB to a few hundred KiB;
/// this server reads only `ref` from it.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

/// Time a webhook body gets to arrive whole. GitHub sends a delivery in one go and waits 10 s
/// for the answer; only a deliberately slow sender needs longer.
pub const WEBHOOK_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits the webhook's body is read within.
pub(crate) const WEBHOOK_BODY_LIMITS: BodyLimits = BodyLimits {
    max_bytes: MAX_WEBHOOK_BYTES,
    timeout: WEBHOOK_BODY_TIMEOUT,
};

/// Whether `signature` has the form `sha256=<64 hex digits>`: the only form that can match,
/// checked before the body is read.
pub(crate) fn signature_is_well_formed(signature: &str) -> bool {
    signature
        .strip_prefix("sha256=")
        .map(str::trim)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub(crate) fn signature_is_valid(secret: &[u8], body: &[u8], signature: &str) -> bool {
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

fn invalid_signature(id: &str) -> HttpResponse {
    Envelope::new(
        Code::InvalidSignature,
        "X-Hub-Signature-256 is missing or does not match the webhook secret",
    )
    .response(id)
}

fn unavailable(id: &str, detail: &str) -> HttpResponse {
    // The envelope of `OVERLOADED` carries `Retry-After`.
    Envelope::new(Code::Overloaded, detail)
        .with_params(vec![format!("retry_after={RETRY_AFTER_SECS}")])
        .response(id)
}

/// `POST /hooks/git`.
pub(crate) async fn git_push(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let id = request_id::of(&req);
    let Some(secret) = &state.operator.webhook_secret else {
        return super::feature_off(&req, "push webhook", "--webhook-secret");
    };
    let signature = req
        .headers()
        .get("X-Hub-Signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // No signature, no body read: an unsigned sender costs neither memory nor a read slot.
    if !signature_is_well_formed(signature) {
        tracing::warn!("push webhook without a well-formed signature ignored");
        return invalid_signature(&id);
    }
    let actor = &state.operator.registry_actor;
    // Held until the body is verified.
    let slot = match actor.send(WebhookBodySlot).await {
        Ok(Some(slot)) => slot,
        Ok(None) => {
            tracing::warn!(
                at_once = WEBHOOK_BODIES_AT_ONCE,
                "push webhook refused: the most bodies read at once are being read"
            );
            return unavailable(
                &id,
                &format!(
                    "{WEBHOOK_BODIES_AT_ONCE} webhook deliveries are being read; retry shortly"
                ),
            );
        }
        Err(_) => return unavailable(&id, "the registry actor is not running"),
    };
    let body = match read_body(&req, payload, WEBHOOK_BODY_LIMITS).await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(error = %error, "push webhook body refused");
            return Envelope::from(RequestError::from(error)).response(&id);
        }
    };
    if !signature_is_valid(secret.as_bytes(), &body, signature) {
        tracing::warn!("push webhook with a wrong signature ignored");
        return invalid_signature(&id);
    }
    drop(slot);
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
    // The signature covers the body only, not this header: remembering ids stops a plain
    // replay; one with a new id costs one coalesced sync of the branch head (never an older
    // revision: the head is always fetched, whatever the body says).
    let delivery = req
        .headers()
        .get("X-GitHub-Delivery")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match actor
        .send(SignedPush {
            delivery: delivery.clone(),
        })
        .await
    {
        Ok(PushOutcome::SyncRequested) => {
            tracing::info!(
                pushed = pushed.as_deref().unwrap_or("-"),
                delivery = delivery.as_deref().unwrap_or("-"),
                "push webhook: sync triggered"
            );
            HttpResponse::Accepted().json(json!({"status": "accepted"}))
        }
        Ok(PushOutcome::Replayed) => {
            tracing::info!(
                delivery = delivery.as_deref().unwrap_or("-"),
                "push webhook: delivery id already seen; not synced again"
            );
            HttpResponse::Ok().json(json!({
                "status": "duplicate",
                "reason": "this X-GitHub-Delivery id was already received; POST /admin/registry/sync syncs on demand",
            }))
        }
        Err(_) => unavailable(&id, "the registry actor is not running"),
    }
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
        assert!(signature_is_well_formed(&sig));
        assert!(signature_is_well_formed(
            &sig.to_uppercase().replace("SHA256=", "sha256=")
        ));
        for malformed in [
            "",
            "sha256=",
            "sha1=abc",
            "SHA256=00",
            "sha256=zz",
            &sig[..70],
        ] {
            assert!(!signature_is_well_formed(malformed), "{malformed}");
        }
    }
}

//! `X-Request-ID`: kept from the caller when it is a sensible id, generated otherwise.

use actix_web::HttpRequest;

/// The header name.
pub(crate) const HEADER: &str = "X-Request-ID";

/// Longest caller-supplied id that is kept.
const MAX_LEN: usize = 128;

/// Whether a caller's id is kept: 1–128 characters of `A-Z a-z 0-9 . _ : -`.
pub(crate) fn is_valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random id: 32 hex digits.
pub(crate) fn generate() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// The request's id: the caller's `X-Request-ID` if valid, else a new one.
pub(crate) fn of(req: &HttpRequest) -> String {
    req.headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid(v))
        .map(str::to_string)
        .unwrap_or_else(generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sensible_ids_are_kept() {
        assert!(is_valid("req-123_abc.def:1"));
        assert!(!is_valid(""));
        assert!(!is_valid("has space"));
        assert!(!is_valid(&"a".repeat(129)));
        assert_eq!(generate().len(), 32);
    }
}

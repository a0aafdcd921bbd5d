//! `X-Request-ID`: kept from the caller when it is a sensible id, generated otherwise.

use actix_web::HttpRequest;

/// The header name.
pub(crate) const HEADER: &str = "X-Request-ID";

/// [`HEADER`] as a header name (written in lower case, as `HeaderName` keeps it), so
/// answering does not parse it again.
pub(crate) const HEADER_NAME: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-request-id");

/// Longest caller-supplied id that is kept.
const MAX_LEN: usize = 128;

/// Whether a caller's id is kept: 1–128 characters of `A-Z a-z 0-9 . _ : -`.
pub(crate) fn is_valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random id: 32 hex digits (written by hand: `format!` with two `{:016x}` cost
/// about 1,000 instructions, for every request).
pub(crate) fn generate() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (half, n) in [fastrand::u64(..), fastrand::u64(..)]
        .into_iter()
        .enumerate()
    {
        for i in 0..16 {
            digits[half * 16 + i] = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    // Hex digits: always UTF-8.
    String::from_utf8(digits.to_vec()).unwrap_or_default()
}

/// The request's id: the caller's `X-Request-ID` if valid, else a new one.
pub(crate) fn of(req: &HttpRequest) -> String {
    req.headers()
        .get(HEADER_NAME)
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
        let id = generate();
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(generate(), id);
    }
}

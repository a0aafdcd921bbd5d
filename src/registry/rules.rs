//! The registry's limits and the rules for its literal names and values (docs/spec.md §1, §3), shared
//! by the loader, the run path (path parameter values) and the fuzz targets.

/// Longest name, permalink, header key or query key.
pub(crate) const MAX_NAME_LEN: usize = 255;
/// Longest URL template.
pub(crate) const MAX_URL_LEN: usize = 2048;
/// Longest header or query value template.
pub(crate) const MAX_VALUE_LEN: usize = 1000;
/// Longest response cache lifetime.
pub(crate) const MAX_CACHE_TTL_SECS: u64 = 86_400;
/// Most `for_each` items of one step in flight at once.
pub(crate) const MAX_FOR_EACH_CONCURRENCY: u64 = 16;
/// `max_concurrency` when a `for_each` step sets none.
pub(crate) const DEFAULT_FOR_EACH_CONCURRENCY: usize = 4;
/// Most tries of one step (`retry.attempts`).
pub(crate) const MAX_RETRY_ATTEMPTS: u32 = 5;
/// Longest `retry.backoff_ms`.
pub(crate) const MAX_RETRY_BACKOFF_MS: u64 = 10_000;
/// `retry.backoff_ms` when a step sets none.
pub(crate) const DEFAULT_RETRY_BACKOFF_MS: u64 = 100;
/// What `retry` retries when it names nothing.
pub(crate) const DEFAULT_RETRY_STATUSES: &[u16] = &[502, 503, 504];
/// Longest `timeout_ms` of a step (five minutes).
pub(crate) const MAX_STEP_TIMEOUT_MS: u64 = 300_000;
/// Longest path parameter value (docs/spec.md §3).
pub(crate) const MAX_PATH_PARAM_VALUE_LEN: usize = 200;

/// Headers the runtime sets or controls itself; a registry may not configure them, neither
/// in `headers` nor as the header an `api_key` goes in. `Expect` is one: with
/// `Expect: 100-continue` the client holds the body back for an interim answer, and the step
/// stalls until it times out.
pub(crate) const RUNTIME_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
];

/// Whether `s` matches `^[a-z0-9]+(?:-[a-z0-9]+)*$` (permalinks and step names).
pub(crate) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Whether `s` is a valid path parameter value (docs/spec.md §3): 1–200 of `[A-Za-z0-9._~-]`,
/// not `.` or `..`, and nothing containing `..`.
pub fn is_valid_path_param_value(s: &str) -> bool {
    (1..=MAX_PATH_PARAM_VALUE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        && !s.contains("..")
        && s != "."
}

/// Whether `s` can name a path parameter, read as `pathParams.NAME`: an identifier of ASCII
/// letters, digits and `_`, not starting with a digit, at most [`MAX_NAME_LEN`] long.
pub(crate) fn is_path_param_name(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `s` is an HTTP header name (an RFC 9110 token).
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether the header `name` (any case) is one of the [`RUNTIME_HEADERS`].
pub(crate) fn is_runtime_header(name: &str) -> bool {
    RUNTIME_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

/// Whether the header `name` (any case) tells upstreams the client's address (`Forwarded`,
/// `X-Forwarded-*`). Upstreams trust these, so a caller must never choose them: they may
/// be configured, but not as overridable.
pub(crate) fn is_forwarding_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-forwarded-") || lower == "forwarded"
}

/// Most calls a `rate_limit` may allow per period.
pub(crate) const MAX_RATE_LIMIT_REQUESTS: u32 = 1_000_000;
/// Longest `rate_limit` period, in seconds (a day).
pub(crate) const MAX_RATE_LIMIT_SECONDS: u32 = 86_400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_headers_match_in_any_case() {
        for name in ["Host", "upgrade", "Content-Length", "EXPECT"] {
            assert!(is_runtime_header(name), "{name}");
        }
        for name in ["Authorization", "X-API-Key", "Accept"] {
            assert!(!is_runtime_header(name), "{name}");
        }
    }

    #[test]
    fn path_parameter_names_are_identifiers() {
        assert!(is_path_param_name("user_id"));
        assert!(is_path_param_name("_x1"));
        for bad in ["", "1id", "user-id", "a.b", &"k".repeat(256)] {
            assert!(!is_path_param_name(bad), "{bad}");
        }
    }
}

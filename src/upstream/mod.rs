//! Calling upstreams: the address policy (SSRF protection), the policy-enforcing resolver,
//! the per-worker HTTP client, and sending one request with time and size limits.

pub mod client;
pub mod policy;
pub mod resolver;
pub mod send;

pub use client::{build_client, ClientSettings};
pub use policy::AddressPolicy;
pub use send::{
    send, send_with_retry, OutboundRequest, RetryPolicy, UpstreamError, UpstreamResponse,
};

/// Whether a rendered `url` stays on the `origin` (`scheme://host[:port]`) fixed when the
/// registry loaded: it starts with it (any case) and the origin ends there. An empty origin
/// (not known at load) always matches.
pub fn url_stays_on_origin(url: &str, origin: &str) -> bool {
    origin.is_empty()
        || (url.len() >= origin.len()
            && url.as_bytes()[..origin.len()].eq_ignore_ascii_case(origin.as_bytes())
            && matches!(
                url.as_bytes().get(origin.len()),
                None | Some(b'/' | b'?' | b'#')
            ))
}

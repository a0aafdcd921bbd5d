//! Calling upstreams: the URL origin rule, the address policy (SSRF protection), the
//! policy-enforcing resolver, the per-worker HTTP client and its TLS roots, and sending one
//! request with time and size limits, through the [`Transport`] (the network, or a test's
//! mocks).

pub mod client;
pub mod origin;
pub mod policy;
pub(crate) mod resolver;
pub(crate) mod send;
pub mod tls;
pub mod transport;

pub use client::{build_client, ClientSettings};
pub use policy::AddressPolicy;
pub(crate) use send::{
    send, send_with_retry, Caller, OutboundRequest, RetryPolicy, UpstreamError, UpstreamResponse,
};
pub use transport::Transport;

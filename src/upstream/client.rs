//! The upstream HTTP client: one awc client per worker thread, sharing nothing but its
//! settings. Redirects are not followed, DNS goes through [`PolicyResolver`], and time
//! limits are applied per step by the caller.

use std::time::Duration;

use actix_tls::connect::{Connector as TcpConnector, Resolver};

use super::policy::AddressPolicy;
use super::resolver::{PolicyResolver, ResolveOverrides};

/// Settings of the upstream client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Address policy.
    pub policy: AddressPolicy,
    /// Static DNS answers.
    pub overrides: ResolveOverrides,
    /// Time allowed to connect (DNS, TCP and TLS).
    pub connect_timeout: Duration,
    /// Most simultaneous upstream connections per worker (0 = no limit).
    pub max_connections: usize,
}

/// The `User-Agent` sent upstream.
pub const USER_AGENT: &str = concat!("connector-runtime/", env!("CARGO_PKG_VERSION"));

/// Installs the process-wide rustls crypto provider (ring); safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a client for the current thread.
pub fn build_client(settings: &ClientSettings) -> awc::Client {
    install_crypto_provider();
    let resolver = PolicyResolver::new(settings.policy, settings.overrides.clone());
    let tcp = TcpConnector::new(Resolver::custom(resolver)).service();
    let connector = awc::Connector::new()
        .connector(tcp)
        .timeout(settings.connect_timeout)
        .handshake_timeout(settings.connect_timeout)
        .limit(settings.max_connections)
        .conn_keep_alive(Duration::from_secs(30))
        .conn_lifetime(Duration::from_secs(300));
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .disable_timeout()
        .no_default_headers()
        .add_default_header(("User-Agent", USER_AGENT))
        .finish()
}

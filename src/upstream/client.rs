//! The upstream HTTP client: one awc client per worker thread, sharing nothing but its
//! settings (and the TLS configuration, see [`super::tls`]). Redirects are not followed, DNS
//! goes through [`PolicyResolver`], and time limits are applied per step by the caller.
//! Connections, TLS ones included, are pooled per worker and kept alive between calls.

use std::sync::Arc;
use std::time::Duration;

use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection, Connector as TcpConnector, ConnectorService, Resolver,
};
use actix_web::dev::Service;
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;

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
    /// TLS: the trusted roots (`--upstream-ca-file` added to Mozilla's) and ALPN, built once
    /// by [`super::tls::client_config`] and shared by every worker's client.
    pub tls: Arc<rustls::ClientConfig>,
}

/// The `User-Agent` sent upstream.
pub(crate) const USER_AGENT: &str = concat!("connector-runtime/", env!("CARGO_PKG_VERSION"));

/// Installs the process-wide rustls crypto provider (ring); safe to call more than once.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a client for the current thread.
pub fn build_client(settings: &ClientSettings) -> awc::Client {
    install_crypto_provider();
    let resolver = PolicyResolver::new(settings.policy, settings.overrides.clone());
    let tcp = PolicyConnector {
        resolver: resolver.clone(),
        inner: TcpConnector::new(Resolver::custom(resolver)).service(),
    };
    let connector = awc::Connector::new()
        .connector(tcp)
        .rustls_0_23(settings.tls.clone())
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

/// The TCP connector with every host resolved (and checked) by the [`PolicyResolver`]
/// first. actix-tls skips custom resolvers for hosts that are IPv4 literals
/// (`https://127.0.0.1/`), so the policy must run before it: the checked addresses are set
/// on the request and the inner connector connects to exactly those.
#[derive(Clone)]
struct PolicyConnector {
    resolver: PolicyResolver,
    inner: ConnectorService,
}

impl Service<ConnectInfo<Uri>> for PolicyConnector {
    type Response = Connection<Uri, actix_rt::net::TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, ConnectError>>;

    actix_web::dev::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let resolver = self.resolver.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let addrs = resolver
                .resolve(req.hostname(), req.port())
                .await
                .map_err(ConnectError::Resolver)?;
            inner.call(req.set_addrs(addrs)).await
        })
    }
}

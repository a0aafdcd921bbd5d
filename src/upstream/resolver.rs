//! DNS resolution that enforces the address policy: every resolved address is checked, a
//! mixed public/private answer is rejected, and the connection is made to exactly the
//! addresses that were checked (no second lookup, so no DNS-rebinding window).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_tls::connect::Resolve;
use futures_util::future::LocalBoxFuture;

use super::policy::{parse_ip_host, AddressPolicy};

/// The upstream resolved to an address the policy forbids.
#[derive(Debug, thiserror::Error)]
#[error("the upstream host '{host}' resolves to a private, loopback, link-local or otherwise non-public address, which upstreams may not use (only --allow-private-upstreams permits it)")]
pub(crate) struct ForbiddenAddress {
    /// The host name that was looked up.
    pub host: String,
}

/// The host has no address records.
#[derive(Debug, thiserror::Error)]
#[error("the upstream host '{0}' has no address records")]
pub(crate) struct NoAddresses(pub String);

/// Static host → address answers that stand in for DNS (`--resolve host=ip`), as curl's
/// `--resolve` does; used by tests and for pinning an upstream.
pub(crate) type ResolveOverrides = Arc<HashMap<String, Vec<IpAddr>>>;

/// Parses `host=ip[,ip...]` entries.
pub(crate) fn parse_overrides(entries: &[String]) -> Result<ResolveOverrides, String> {
    let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for entry in entries {
        let (host, ips) = entry
            .split_once('=')
            .ok_or_else(|| format!("--resolve '{entry}' must look like host=1.2.3.4"))?;
        for ip in ips.split(',') {
            let ip: IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| format!("--resolve '{entry}': '{ip}' is not an IP address"))?;
            map.entry(host.trim().to_ascii_lowercase())
                .or_default()
                .push(ip);
        }
    }
    Ok(Arc::new(map))
}

/// A resolver that applies [`AddressPolicy`] to what it resolves.
#[derive(Debug, Clone)]
pub(crate) struct PolicyResolver {
    policy: AddressPolicy,
    overrides: ResolveOverrides,
}

impl PolicyResolver {
    /// A resolver for `policy`, answering overridden hosts from `overrides`.
    pub(crate) fn new(policy: AddressPolicy, overrides: ResolveOverrides) -> Self {
        PolicyResolver { policy, overrides }
    }

    /// Resolves and checks `host`; the addresses returned are the ones to connect to.
    pub(crate) async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Box<dyn StdError>> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        let addrs: Vec<SocketAddr> = if let Some(ips) = self.overrides.get(&key) {
            ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
        } else if let Some(ip) = parse_ip_host(&key) {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((key.as_str(), port))
                .await?
                .collect()
        };
        if addrs.is_empty() {
            return Err(Box::new(NoAddresses(host.to_string())));
        }
        if addrs.iter().any(|a| !self.policy.allows(a.ip())) {
            return Err(Box::new(ForbiddenAddress {
                host: host.to_string(),
            }));
        }
        Ok(addrs)
    }
}

impl Resolve for PolicyResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn StdError>>> {
        Box::pin(self.resolve(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn private_answers_are_rejected_and_public_ones_pass() {
        let overrides = parse_overrides(&[
            "internal.test=10.0.0.5".to_string(),
            "mixed.test=93.184.216.34,127.0.0.1".to_string(),
            "public.test=93.184.216.34".to_string(),
        ])
        .unwrap();
        let strict = PolicyResolver::new(
            AddressPolicy {
                allow_private: false,
            },
            overrides.clone(),
        );
        assert!(strict
            .resolve("internal.test", 443)
            .await
            .unwrap_err()
            .is::<ForbiddenAddress>());
        assert!(strict
            .resolve("mixed.test", 443)
            .await
            .unwrap_err()
            .is::<ForbiddenAddress>());
        assert!(strict
            .resolve("2130706433", 443)
            .await
            .unwrap_err()
            .is::<ForbiddenAddress>());
        assert_eq!(
            strict.resolve("PUBLIC.test", 443).await.unwrap(),
            vec!["93.184.216.34:443".parse().unwrap()]
        );
        let relaxed = PolicyResolver::new(
            AddressPolicy {
                allow_private: true,
            },
            overrides,
        );
        assert!(relaxed.resolve("internal.test", 80).await.is_ok());
    }
}

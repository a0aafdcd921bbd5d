//! Which upstream addresses the runtime may connect to (SPEC §3): public unicast only,
//! unless `--allow-private-upstreams` is given for local development and tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The upstream address policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Whether loopback, private, link-local and similar addresses are allowed.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_forbidden(ip)
    }
}

/// Whether `ip` is loopback, private, link-local, CGNAT, unspecified, multicast, broadcast,
/// documentation, benchmarking, reserved, a cloud metadata address, or an IPv6 form that
/// embeds one of those (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, including the 169.254.169.254 metadata service
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
        || (a == 100 && b == 100 && c == 100) // Alibaba metadata 100.100.100.200
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_forbidden_v4(v4);
    }
    let seg = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x0100 && seg[1] == 0 && seg[2] == 0 && seg[3] == 0) // discard-only
        || (seg[0] == 0xfd00 && seg[1] == 0x0ec2) // AWS metadata fd00:ec2::254
}

/// The IPv4 address an IPv6 address stands for, when it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let tail = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4); // ::ffff:a.b.c.d
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail); // ::a.b.c.d (deprecated IPv4-compatible)
    }
    if seg[0] == 0x0064 && seg[1] == 0xff9b {
        return Some(tail); // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
    }
    if seg[0] == 0x2002 {
        // 6to4 2002:a.b.c.d::/48
        return Some(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    if seg[0] == 0x2001 && seg[1] == 0 {
        // Teredo: the client's address is stored inverted in the last 32 bits
        let raw = u32::from(tail) ^ 0xffff_ffff;
        return Some(Ipv4Addr::from(raw));
    }
    None
}

/// Parses a host as an IP address in any spelling a resolver would accept: dotted quad,
/// a single decimal or hex number (`2130706433`, `0x7f000001`), octal parts (`0177.0.0.1`),
/// short forms (`127.1`), and bracketed or bare IPv6.
pub fn parse_ip_host(host: &str) -> Option<IpAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let numbers: Option<Vec<u64>> = parts.iter().map(|p| parse_inet_number(p)).collect();
    let numbers = numbers?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) {
        return None;
    }
    let width = 8 * (4 - leading.len() as u32);
    if width < 64 && *last >= (1u64 << width) {
        return None;
    }
    let mut value: u64 = 0;
    for (i, n) in leading.iter().enumerate() {
        value |= n << (24 - 8 * i as u32);
    }
    value |= last;
    u32::try_from(value)
        .ok()
        .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
}

fn parse_inet_number(part: &str) -> Option<u64> {
    if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if part.len() > 1 && part.starts_with('0') {
        u64::from_str_radix(&part[1..], 8).ok()
    } else {
        part.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden(s.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.3.4",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "64:ff9b::a9fe:a9fe",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "2002:7f00:1::",
            "fd00:ec2::254",
            "::127.0.0.1",
        ] {
            assert!(forbidden(ip), "{ip} must be forbidden");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(!forbidden(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn odd_ip_spellings_are_recognised() {
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(parse_ip_host("2130706433"), lo);
        assert_eq!(parse_ip_host("0x7f000001"), lo);
        assert_eq!(parse_ip_host("0177.0.0.1"), lo);
        assert_eq!(parse_ip_host("127.1"), lo);
        assert_eq!(parse_ip_host("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip_host("api.example.com"), None);
        assert_eq!(parse_ip_host("1.2.3.4.5"), None);
    }
}

//! Which upstream addresses the runtime may connect to (docs/spec.md §3): public unicast only,
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
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_forbidden(ip)
    }
}

/// Whether `ip` is loopback, private, link-local, CGNAT, unspecified, multicast, broadcast,
/// documentation, benchmarking, reserved, a cloud metadata address, or an IPv6 form that
/// embeds one of those (IPv4-mapped, SIIT, IPv4-compatible, NAT64, 6to4, Teredo).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

/// The IPv4 ranges refused, as (network, prefix length). The ranges do not overlap, so each
/// line is the only one refusing its addresses (the unit tests pin every line).
const FORBIDDEN_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),  // "this network", including 0.0.0.0
    (Ipv4Addr::new(10, 0, 0, 0), 8), // private
    (Ipv4Addr::new(100, 64, 0, 0), 10), // CGNAT, including Alibaba's metadata 100.100.100.200
    (Ipv4Addr::new(127, 0, 0, 0), 8), // loopback
    (Ipv4Addr::new(168, 63, 129, 16), 32), // Azure's metadata / wireserver (public space)
    (Ipv4Addr::new(169, 254, 0, 0), 16), // link-local, including the 169.254.169.254 metadata
    (Ipv4Addr::new(172, 16, 0, 0), 12), // private
    (Ipv4Addr::new(192, 0, 0, 0), 24), // IETF protocol assignments (Oracle's 192.0.0.192)
    (Ipv4Addr::new(192, 0, 2, 0), 24), // documentation TEST-NET-1
    (Ipv4Addr::new(192, 88, 99, 0), 24), // 6to4 relay anycast (deprecated)
    (Ipv4Addr::new(192, 168, 0, 0), 16), // private
    (Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24), // documentation TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4), // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4), // reserved, including broadcast 255.255.255.255
];

/// The IPv6 ranges refused outright, as (network, prefix length); IPv6 forms that embed an
/// IPv4 address are judged by that address instead (see [`embedded_v4`]).
const FORBIDDEN_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),                         // ::
    (Ipv6Addr::LOCALHOST, 128),                           // ::1
    (Ipv6Addr::new(0x0100, 0, 0, 0, 0, 0, 0, 0), 64),     // discard-only
    (Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0), 48),   // benchmarking
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28),  // ORCHID (deprecated)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),     // documentation (RFC 9637)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local, including AWS's fd00:ec2::254
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site-local (deprecated)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    FORBIDDEN_V4.iter().any(|(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
        ip & mask == u32::from(*net)
    })
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_forbidden_v4(v4);
    }
    let ip = u128::from(ip);
    FORBIDDEN_V6.iter().any(|(net, len)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
        ip & mask == u128::from(*net)
    })
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
    if seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(tail); // ::ffff:0:a.b.c.d (SIIT, IPv4-translated)
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
pub(crate) fn parse_ip_host(host: &str) -> Option<IpAddr> {
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

    /// One or more addresses of every refused range, each with the range it stands for.
    /// Written out by hand, not derived from the tables: deleting or narrowing any line of
    /// `FORBIDDEN_V4`, `FORBIDDEN_V6` or `embedded_v4` leaves one of these allowed.
    const REFUSED: &[(&str, &[&str])] = &[
        ("this network 0/8", &["0.0.0.0", "0.1.2.3", "0.255.255.255"]),
        ("private 10/8", &["10.0.0.0", "10.0.0.1", "10.255.255.255"]),
        (
            "CGNAT 100.64/10",
            &["100.64.0.0", "100.64.0.1", "100.127.255.255"],
        ),
        ("Alibaba metadata", &["100.100.100.200"]),
        ("loopback 127/8", &["127.0.0.1", "127.255.255.254"]),
        ("Azure metadata", &["168.63.129.16"]),
        ("link-local 169.254/16", &["169.254.0.1", "169.254.255.255"]),
        ("AWS/GCP/Azure/OCI metadata", &["169.254.169.254"]),
        (
            "private 172.16/12",
            &["172.16.0.0", "172.16.3.4", "172.31.255.255"],
        ),
        (
            "IETF protocol assignments 192.0.0/24",
            &["192.0.0.0", "192.0.0.255"],
        ),
        ("Oracle metadata", &["192.0.0.192"]),
        (
            "documentation 192.0.2/24",
            &["192.0.2.0", "192.0.2.1", "192.0.2.255"],
        ),
        (
            "6to4 relay anycast 192.88.99/24",
            &["192.88.99.0", "192.88.99.1", "192.88.99.255"],
        ),
        (
            "private 192.168/16",
            &["192.168.0.0", "192.168.1.1", "192.168.255.255"],
        ),
        (
            "benchmarking 198.18/15",
            &["198.18.0.0", "198.18.0.1", "198.19.255.255"],
        ),
        (
            "documentation 198.51.100/24",
            &["198.51.100.0", "198.51.100.7", "198.51.100.255"],
        ),
        (
            "documentation 203.0.113/24",
            &["203.0.113.0", "203.0.113.9", "203.0.113.255"],
        ),
        (
            "multicast 224/4",
            &["224.0.0.0", "224.0.0.1", "239.255.255.255"],
        ),
        (
            "reserved 240/4",
            &["240.0.0.0", "250.1.2.3", "255.255.255.254"],
        ),
        ("broadcast", &["255.255.255.255"]),
        ("IPv6 unspecified", &["::"]),
        ("IPv6 loopback", &["::1"]),
        (
            "discard-only 100::/64",
            &["100::", "100::1", "100::ffff:ffff:ffff:ffff"],
        ),
        (
            "benchmarking 2001:2::/48",
            &["2001:2::", "2001:2::1", "2001:2:0:ffff:ffff:ffff:ffff:ffff"],
        ),
        (
            "ORCHID 2001:10::/28",
            &[
                "2001:10::",
                "2001:10::1",
                "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
        ),
        (
            "documentation 2001:db8::/32",
            &[
                "2001:db8::",
                "2001:db8::1",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
        ),
        (
            "documentation 3fff::/20",
            &[
                "3fff::",
                "3fff::1",
                "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
        ),
        (
            "unique local fc00::/7",
            &[
                "fc00::",
                "fc00::1",
                "fd12::1",
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
        ),
        ("AWS metadata", &["fd00:ec2::254"]),
        ("GCP metadata", &["fd20:ce::254"]),
        (
            "link-local fe80::/10",
            &[
                "fe80::",
                "fe80::1",
                "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
        ),
        (
            "site-local fec0::/10",
            &[
                "fec0::",
                "fec0::1",
                "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
        ),
        (
            "IPv6 multicast ff00::/8",
            &[
                "ff00::",
                "ff02::1",
                "ff0e::1",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
        ),
        (
            "IPv4-mapped",
            &[
                "::ffff:127.0.0.1",
                "::ffff:7f00:1",
                "::ffff:169.254.169.254",
                "::ffff:192.0.2.1",
            ],
        ),
        (
            "SIIT ::ffff:0:a.b.c.d",
            &[
                "::ffff:0:7f00:1",
                "::ffff:0:127.0.0.1",
                "::ffff:0:a9fe:a9fe",
            ],
        ),
        (
            "IPv4-compatible",
            &["::127.0.0.1", "::10.0.0.1", "::169.254.169.254"],
        ),
        (
            "NAT64",
            &[
                "64:ff9b::7f00:1",
                "64:ff9b::a9fe:a9fe",
                "64:ff9b:1::c0a8:101",
            ],
        ),
        (
            "6to4",
            &["2002:7f00:1::", "2002:a00:1::1", "2002:c000:201::"],
        ),
        // Teredo: server 65.54.227.120, client 127.0.0.1 stored inverted (0x80fffffe).
        (
            "Teredo",
            &["2001:0:4136:e378:8000:63bf:80ff:fffe", "2001::f5ff:fffe"],
        ),
    ];

    /// Public neighbours of the refused ranges (one past each end, where that is public)
    /// and public addresses embedded in the IPv6 forms: a range that grew too wide, or an
    /// embedding refused wholesale, makes one of these refused.
    const ALLOWED: &[&str] = &[
        "1.0.0.0",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "168.63.129.15",
        "168.63.129.17",
        "169.253.255.255",
        "169.255.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.0",
        "192.0.3.0",
        "192.88.98.255",
        "192.88.100.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "198.51.99.255",
        "198.51.101.0",
        "203.0.112.255",
        "203.0.114.0",
        "223.255.255.255",
        "2606:4700::1111",
        "2001:1::1",
        "2001:2:1::",
        "2001:3::1",
        "2001:20::1",
        "2001:db7:ffff::1",
        "2001:db9::1",
        "3ffe:ffff::1",
        "3fff:1000::",
        "fbff:ffff::1",
        "::ffff:8.8.8.8",
        "::ffff:0:808:808",
        "64:ff9b::808:808",
        "2002:808:808::",
        // Teredo with the public client 8.8.8.8 (stored inverted: f7f7:f7f7).
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
    ];

    #[test]
    fn every_refused_range_is_refused() {
        let mut allowed = Vec::new();
        for (range, ips) in REFUSED {
            for ip in *ips {
                if !forbidden(ip) {
                    allowed.push(format!("{ip} ({range})"));
                }
            }
        }
        assert!(
            allowed.is_empty(),
            "allowed but must be refused: {allowed:?}"
        );
    }

    #[test]
    fn public_neighbours_of_the_refused_ranges_are_allowed() {
        let refused: Vec<&str> = ALLOWED.iter().copied().filter(|ip| forbidden(ip)).collect();
        assert!(refused.is_empty(), "refused but public: {refused:?}");
    }

    #[test]
    fn the_policy_refuses_only_when_private_upstreams_are_not_allowed() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        let strict = AddressPolicy {
            allow_private: false,
        };
        let relaxed = AddressPolicy {
            allow_private: true,
        };
        assert!(!strict.allows(lo));
        assert!(strict.allows(public));
        assert!(relaxed.allows(lo));
        assert!(relaxed.allows(public));
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

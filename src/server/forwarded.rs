//! The client's address behind reverse proxies. Only a peer in `RELAY_TRUSTED_PROXIES` is
//! believed, and then the address is the right-most one of `Forwarded` (RFC 7239) or, without
//! it, `X-Forwarded-For` that is not itself a trusted proxy: each proxy appends the address it
//! saw, so everything left of the first untrusted hop may be forged.

use std::net::{IpAddr, SocketAddr};

use crate::error::Invalid;
use crate::http::{Fields, decimal, header_values};

/// An address or network: `10.0.0.0/8`, `127.0.0.1`, `2001:db8::/32`, `::1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, Invalid> {
        let bad = || {
            Invalid(format!(
                "{s:?} is not an address or network like 10.0.0.0/8"
            ))
        };
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v6), 128),
                },
            }
        };
        let ((net, width), (addr, addr_width)) = (bits(self.net), bits(ip));
        if width != addr_width {
            return false;
        }
        let keep = u32::from(self.prefix);
        keep == 0 || (net >> (width - keep)) == (addr >> (width - keep))
    }
}

/// What the record's `remote` field says about a request from `peer`.
pub fn remote(peer: SocketAddr, headers: &Fields, trusted: &[Cidr]) -> String {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer.ip()) {
        return peer_text(peer);
    }
    let hops = hops(headers);
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return ip.to_string(),
            None => return hop.clone(), // "unknown" or an obfuscated identifier
        }
    }
    hops.first()
        .and_then(|h| parse_hop(h))
        .map_or_else(|| peer_text(peer), |ip| ip.to_string())
}

/// `peer` as `Display` writes it; an IPv4 one without going through `fmt` (every webhook's
/// record carries one, and this is most of a request's small copies otherwise).
fn peer_text(peer: SocketAddr) -> String {
    let SocketAddr::V4(v4) = peer else {
        return peer.to_string();
    };
    let mut out = Vec::with_capacity(21);
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        // Up to three digits, pushed (a `decimal` call per octet was 100 instructions).
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
    out.push(b':');
    decimal(v4.port().into(), &mut out);
    String::from_utf8(out).unwrap_or_else(|_| peer.to_string())
}

/// The addresses the proxies recorded, left (client) to right (nearest proxy).
fn hops(headers: &Fields) -> Vec<String> {
    let forwarded: Vec<String> = header_values(headers, "forwarded")
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| v.trim().trim_matches('"').to_owned())
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    header_values(headers, "x-forwarded-for")
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect()
}

/// An address as a proxy writes it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), (*v).into()))
            .collect()
    }

    #[test]
    fn peers_read_as_display_writes_them() {
        for peer in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.40:8080",
            "1.2.3.4:5",
            "100.105.9.99:10",
            "109.200.250.7:65000",
            "[::1]:443",
            "[2001:db8::7%3]:1",
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            assert_eq!(peer_text(peer), peer.to_string());
        }
    }

    #[test]
    fn networks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.200.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            c.contains("::ffff:10.0.0.1".parse().unwrap()),
            "v4-mapped v6"
        );
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "1.2.3.4/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_right_most_untrusted_hop() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let local = [Cidr::parse("127.0.0.0/8").unwrap()];
        let xff = h(&[
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
            ("X-Forwarded-For", "10.0.0.2"),
        ]);
        assert_eq!(remote(peer, &xff, &[]), "127.0.0.1:5000", "nobody trusted");
        assert_eq!(remote(peer, &xff, &local), "10.0.0.2");
        let both = [local[0], Cidr::parse("10.0.0.0/8").unwrap()];
        assert_eq!(
            remote(peer, &xff, &both),
            "203.0.113.7",
            "the forged 6.6.6.6 is ignored"
        );
        let fwd = h(&[(
            "Forwarded",
            r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#,
        )]);
        assert_eq!(remote(peer, &fwd, &local), "2001:db8::1");
        let unknown = h(&[("Forwarded", "for=unknown")]);
        assert_eq!(remote(peer, &unknown, &local), "unknown");
        assert_eq!(remote(peer, &h(&[]), &local), "127.0.0.1:5000", "no header");
        let untrusted: SocketAddr = "198.51.100.1:1".parse().unwrap();
        assert_eq!(remote(untrusted, &xff, &local), "198.51.100.1:1");
    }
}

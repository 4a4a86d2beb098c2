//! Which webhook targets are allowed.
//!
//! Targets must be http(s) and, unless the operator allows private targets, resolve only
//! to public addresses: a subscriber must not make clickhook call into its own network
//! (loopback, private ranges, link-local and cloud metadata, CGNAT, multicast, reserved).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

use crate::error::ApiError;

pub fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b)))
}

/// IPv6 addresses that carry an IPv4 address are judged by the IPv4 address they carry:
/// IPv4-compatible (`::a.b.c.d`), -mapped (`::ffff:a.b.c.d`), -translated (`::ffff:0:a.b.c.d`),
/// NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) and Teredo (`2001::/32`, server and client).
/// Unique-local, link- and site-local, multicast, documentation, discard and local-use NAT64
/// ranges are never public.
pub fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    let carried: &[Ipv4Addr] = match s {
        [0, 0, 0, 0, 0, 0, hi, lo] | [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => &[v4(hi, lo)],
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => &[v4(hi, lo)],
        [0x2002, hi, lo, ..] => &[v4(hi, lo)],
        [0x2001, 0, server_hi, server_lo, _, _, hi, lo] => &[v4(server_hi, server_lo), v4(!hi, !lo)],
        _ => &[],
    };
    if !carried.is_empty() {
        return carried.iter().all(|a| is_public_v4(*a));
    }
    !(ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] & 0xfff0) == 0x3ff0 // documentation (3fff::/20)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, local use and what the well-known prefix does not carry
        || (s[0] == 0x100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard
        || s[0] == 0) // the rest of ::/16: reserved
}

pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// Parses a target URL: http or https, with a host, at most 2000 bytes.
pub fn parse_target(raw: &str) -> Result<Url, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ApiError::required("target_url"));
    }
    if raw.len() > 2000 {
        return Err(ApiError::wrong_param("target_url is longer than 2000 bytes."));
    }
    let url = Url::parse(raw).map_err(|e| ApiError::wrong_param(format!("target_url is not a valid URL: {e}.")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::wrong_param("target_url must be an http or https URL."));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::wrong_param("target_url has no host."));
    }
    Ok(url)
}

/// Resolves the target's host and refuses it if any address is not public.
pub async fn check_public(url: &Url) -> Result<(), ApiError> {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let refused = |ip: IpAddr| {
        ApiError::wrong_param(format!(
            "target_url resolves to {ip}, a private or reserved address; clickhook delivers only to public addresses \
             unless started with --allow-private-targets."
        ))
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_public(ip) { Ok(()) } else { Err(refused(ip)) };
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| ApiError::wrong_param(format!("target_url's host {host:?} does not resolve.")))?
        .collect();
    if addrs.is_empty() {
        return Err(ApiError::wrong_param(format!("target_url's host {host:?} does not resolve.")));
    }
    match addrs.iter().map(|a| a.ip()).find(|ip| !is_public(*ip)) {
        Some(ip) => Err(refused(ip)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it() {
        for ip in [
            "::127.0.0.1",               // IPv4-compatible
            "::a9fe:a9fe",               // compatible, 169.254.169.254
            "::ffff:0:127.0.0.1",        // IPv4-translated
            "::ffff:10.0.0.1",           // IPv4-mapped
            "64:ff9b::a9fe:a9fe",        // NAT64
            "64:ff9b:1::8.8.8.8",        // NAT64, local use
            "2002:7f00:1::1",            // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1",         // 6to4 of 169.254.169.254
            "2001:0:7f00:1::1",          // Teredo server 127.0.0.1
            "2001:0:808:808::80ff:fefe", // Teredo client ~0x80fffefe = 127.0.1.1
            "fec0::1",                   // site local
            "3fff::1",                   // documentation
            "2001:db8::1",               // documentation
            "fc00::1",                   // unique local
            "ff0e::1",                   // multicast
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["::8.8.8.8", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1", "2001:0:808:808::f7f7:f7f7"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn loopback_names_are_refused() {
        assert!(check_public(&parse_target("http://localhost:9000/x").unwrap()).await.is_err());
        assert!(check_public(&parse_target("http://127.0.0.1/x").unwrap()).await.is_err());
        assert!(check_public(&parse_target("http://[::1]/x").unwrap()).await.is_err());
        assert!(parse_target("ftp://x.example").is_err());
        assert!(parse_target("not a url").is_err());
    }
}

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

pub fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x64 && s[1] == 0xff9b)
        || (s[0] == 0x100 && s[1] == 0 && s[2] == 0 && s[3] == 0))
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

    #[tokio::test]
    async fn loopback_names_are_refused() {
        assert!(check_public(&parse_target("http://localhost:9000/x").unwrap()).await.is_err());
        assert!(check_public(&parse_target("http://127.0.0.1/x").unwrap()).await.is_err());
        assert!(check_public(&parse_target("http://[::1]/x").unwrap()).await.is_err());
        assert!(parse_target("ftp://x.example").is_err());
        assert!(parse_target("not a url").is_err());
    }
}

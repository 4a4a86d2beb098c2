//! An account's own tracking domains: which names may be added, what a DNS check makes of a
//! domain, and which host an account's new links are issued on.
//!
//! A domain is followed only once verified: it resolves (by CNAME or by address) to the host of
//! `--public-url`. Verification is re-checked periodically. One lookup that fails for a reason of
//! the network (a timeout, SERVFAIL) says nothing and changes nothing; a verified domain that
//! answers wrongly [`FAILURES_TO_INVALID`] checks in a row becomes invalid, so a DNS change
//! being rolled out does not break every link at once.

use std::net::IpAddr;

use super::{wire_enum, Millis, ParseError};

wire_enum!(DomainStatus, "tracking domain status" {
    /// Added; not yet seen pointing at clickhook.
    Pending = "pending",
    /// Points at clickhook: its links are followed, and `/tls/ask` says yes.
    Verified = "verified",
    /// Was verified, then stopped pointing at clickhook.
    Invalid = "invalid",
});

/// Tracking domains one account may have.
pub const MAX_DOMAINS_PER_ACCOUNT: usize = 20;

/// Wrong answers in a row after which a verified domain is no longer followed.
pub const FAILURES_TO_INVALID: i32 = 3;

/// A host name as DNS and the `Host` header know it: lower case, ASCII (IDNA applied), no
/// trailing dot, at least two labels, not an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ParseError::required("domain"));
        }
        let bare = trimmed.strip_suffix('.').unwrap_or(trimmed);
        let invalid = |why: &str| ParseError::invalid(format!("{raw:?} is not a domain name: {why}."));
        if bare.contains(['/', ':', '@', '?', '#', ' ', '*']) {
            return Err(invalid("give the bare host name, like t.example.com, without scheme, port, path or wildcard"));
        }
        let name = match url::Host::parse(bare) {
            Ok(url::Host::Domain(d)) => d,
            Ok(_) => return Err(invalid("it is an IP address")),
            Err(e) => return Err(invalid(&e.to_string())),
        };
        if name.len() > 253 {
            return Err(invalid("longer than 253 characters"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("it needs at least two labels, like t.example.com"));
        }
        for label in &labels {
            let ok_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("each label is 1 to 63 letters, digits or inner hyphens"));
            }
        }
        if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
            return Err(invalid("its last label is a number"));
        }
        Ok(DomainName(name))
    }

    /// A stored name, already parsed once.
    pub fn from_stored(name: String) -> Self {
        DomainName(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DomainName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingDomain {
    pub id: i64,
    pub account_id: i64,
    pub domain: DomainName,
    pub status: DomainStatus,
    /// New links are issued on this domain while it is verified.
    pub is_default: bool,
    pub created_at: Millis,
    pub checked_at: Option<Millis>,
    pub verified_at: Option<Millis>,
    /// Wrong answers in a row since the last right one.
    pub failures: i32,
    /// What the last check that did not verify found.
    pub last_error: Option<String>,
}

/// What adding a domain came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainAdded {
    Created(TrackingDomain),
    /// An account (this one or another) has it already.
    Taken,
    /// The account has [`MAX_DOMAINS_PER_ACCOUNT`].
    TooMany,
}

/// Where tracked links must point: `--public-url`'s host, and what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower case; an IP literal when `--public-url` names an address.
    pub host: String,
    pub addresses: Vec<IpAddr>,
}

/// What a DNS lookup of a tracking domain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The names its CNAME chain went through and the addresses at its end.
    Answered { cnames: Vec<String>, addresses: Vec<IpAddr> },
    /// NXDOMAIN, or no address record.
    NoRecords,
    /// The lookup itself failed (timeout, SERVFAIL, no resolver): no answer either way.
    Failed(String),
}

/// Whether the answer points at the target: a CNAME to its host, or an address of it.
pub fn points_at(lookup: &Lookup, target: &Target) -> Result<(), String> {
    match lookup {
        Lookup::Answered { cnames, addresses } => {
            if cnames.iter().any(|c| c.trim_end_matches('.').eq_ignore_ascii_case(&target.host)) {
                return Ok(());
            }
            if addresses.iter().any(|a| target.addresses.iter().any(|t| t.to_canonical() == a.to_canonical())) {
                return Ok(());
            }
            let found: Vec<String> =
                cnames.iter().map(|c| format!("CNAME {c}")).chain(addresses.iter().map(|a| a.to_string())).collect();
            Err(format!("resolves to {}, not to {}", found.join(", "), target.host))
        }
        Lookup::NoRecords => Err("no CNAME, A or AAAA record".into()),
        Lookup::Failed(e) => Err(format!("the lookup failed: {e}")),
    }
}

impl TrackingDomain {
    /// The domain after a check at `now` found `lookup`: verified once it points at the target;
    /// a failed lookup changes only the error shown.
    pub fn checked(mut self, lookup: &Lookup, target: &Target, now: Millis) -> TrackingDomain {
        self.checked_at = Some(now);
        match points_at(lookup, target) {
            Ok(()) => {
                if self.status != DomainStatus::Verified {
                    self.verified_at = Some(now);
                }
                self.status = DomainStatus::Verified;
                self.failures = 0;
                self.last_error = None;
            }
            Err(why) => {
                self.last_error = Some(why);
                if !matches!(lookup, Lookup::Failed(_)) {
                    self.failures = self.failures.saturating_add(1);
                    if self.status == DomainStatus::Verified && self.failures >= FAILURES_TO_INVALID {
                        self.status = DomainStatus::Invalid;
                    }
                }
            }
        }
        self
    }
}

/// The host an account's new links are issued on: its default domain while verified, else its
/// oldest verified one; `None` means `--public-url`.
pub fn link_host(domains: &[TrackingDomain]) -> Option<&DomainName> {
    let verified = || domains.iter().filter(|d| d.status == DomainStatus::Verified);
    verified().find(|d| d.is_default).or_else(|| verified().min_by_key(|d| d.id)).map(|d| &d.domain)
}

/// The DNS record an account creates for a domain: a CNAME to the target's host, or an A/AAAA
/// record when `--public-url` names an address.
pub fn record_to_create(target: &Target) -> (&'static str, &str) {
    let bare = target.host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => ("A", bare),
        Ok(IpAddr::V6(_)) => ("AAAA", bare),
        Err(_) => ("CNAME", bare),
    }
}

/// The host part of a `Host` header or authority (`name:port`, `[v6]:port`), without a
/// trailing dot; `None` when malformed.
pub fn host_of(authority: &str) -> Option<&str> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        &authority[..rest.find(']')? + 2]
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(status: DomainStatus) -> TrackingDomain {
        TrackingDomain {
            id: 1,
            account_id: 1,
            domain: DomainName::parse("t.example.com").unwrap(),
            status,
            is_default: false,
            created_at: 0,
            checked_at: None,
            verified_at: None,
            failures: 0,
            last_error: None,
        }
    }

    fn target() -> Target {
        Target { host: "links.clickhook.example".into(), addresses: vec!["192.0.2.10".parse().unwrap()] }
    }

    fn answered(cnames: &[&str], addresses: &[&str]) -> Lookup {
        Lookup::Answered {
            cnames: cnames.iter().map(|c| c.to_string()).collect(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn names_parse_to_lower_case_ascii() {
        assert_eq!(DomainName::parse(" T.Example.COM. ").unwrap().as_str(), "t.example.com");
        assert_eq!(DomainName::parse("t.bücher.de").unwrap().as_str(), "t.xn--bcher-kva.de");
        for bad in [
            "",
            "localhost",
            "https://t.example.com",
            "t.example.com:443",
            "t.example.com/c",
            "*.example.com",
            "192.0.2.1",
            "[::1]",
            "-t.example.com",
            "t..example.com",
            "t.example.123",
            "t_x.example.com",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(DomainName::parse(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn a_cname_to_the_host_or_one_of_its_addresses_verifies() {
        assert_eq!(points_at(&answered(&["links.clickhook.example."], &[]), &target()), Ok(()));
        assert_eq!(points_at(&answered(&[], &["192.0.2.10"]), &target()), Ok(()));
        assert_eq!(points_at(&answered(&[], &["::ffff:192.0.2.10"]), &target()), Ok(()));
        let wrong = points_at(&answered(&["elsewhere.example"], &["198.51.100.1"]), &target()).unwrap_err();
        assert_eq!(wrong, "resolves to CNAME elsewhere.example, 198.51.100.1, not to links.clickhook.example");
        assert!(points_at(&Lookup::NoRecords, &target()).is_err());
    }

    #[test]
    fn a_check_verifies_and_repeated_wrong_answers_invalidate() {
        let ok = domain(DomainStatus::Pending).checked(&answered(&[], &["192.0.2.10"]), &target(), 5);
        assert_eq!((ok.status, ok.verified_at, ok.checked_at), (DomainStatus::Verified, Some(5), Some(5)));

        let mut d = ok.clone();
        for n in 1..FAILURES_TO_INVALID {
            d = d.checked(&Lookup::NoRecords, &target(), 10);
            assert_eq!((d.status, d.failures), (DomainStatus::Verified, n), "one wrong answer is not enough");
        }
        d = d.checked(&Lookup::Failed("timeout".into()), &target(), 11);
        assert_eq!(d.status, DomainStatus::Verified, "a failed lookup says nothing");
        assert_eq!(d.failures, FAILURES_TO_INVALID - 1);
        d = d.checked(&Lookup::NoRecords, &target(), 12);
        assert_eq!(d.status, DomainStatus::Invalid);
        let back = d.checked(&answered(&["links.clickhook.example"], &[]), &target(), 20);
        assert_eq!((back.status, back.failures, back.verified_at), (DomainStatus::Verified, 0, Some(20)));

        let pending = domain(DomainStatus::Pending).checked(&Lookup::NoRecords, &target(), 1);
        assert_eq!(pending.status, DomainStatus::Pending);
        assert_eq!(pending.last_error.as_deref(), Some("no CNAME, A or AAAA record"));
    }

    #[test]
    fn links_go_on_the_verified_default_else_the_oldest_verified() {
        let mut a = domain(DomainStatus::Verified);
        let mut b = domain(DomainStatus::Verified);
        b.id = 2;
        b.domain = DomainName::parse("u.example.com").unwrap();
        assert_eq!(link_host(&[b.clone(), a.clone()]).unwrap().as_str(), "t.example.com");
        b.is_default = true;
        assert_eq!(link_host(&[a.clone(), b.clone()]).unwrap().as_str(), "u.example.com");
        b.status = DomainStatus::Invalid;
        assert_eq!(link_host(&[a.clone(), b.clone()]).unwrap().as_str(), "t.example.com");
        a.status = DomainStatus::Pending;
        assert_eq!(link_host(&[a, b]), None);
    }

    #[test]
    fn hosts_lose_their_port_and_trailing_dot() {
        assert_eq!(host_of("t.example.com"), Some("t.example.com"));
        assert_eq!(host_of("t.example.com.:8080"), Some("t.example.com"));
        assert_eq!(host_of("127.0.0.1:80"), Some("127.0.0.1"));
        assert_eq!(host_of("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_of("[::1]"), Some("[::1]"));
        assert_eq!(host_of("a:b:c"), None);
        assert_eq!(host_of(""), None);
    }
}

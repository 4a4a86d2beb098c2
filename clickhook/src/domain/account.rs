//! Accounts: a tenant's name, time zone, snippet labels and bot-click filter.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Millis, ParseError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    /// Snippet slot (1..=15) → label.
    pub snippet_labels: BTreeMap<u8, String>,
    pub click_filter: ClickFilter,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Chosen by the operator (the `firm_id` an integration knows), or given by the store.
    pub id: Option<i64>,
    pub name: String,
    pub timezone: String,
}

/// The largest id clickhook gives or accepts: JavaScript clients hold integers up to 2^53 − 1.
pub const MAX_ID: i64 = (1 << 53) - 1;

/// An account id an operator chose.
pub fn parse_account_id(id: i64) -> Result<i64, ParseError> {
    if (1..=MAX_ID).contains(&id) {
        Ok(id)
    } else {
        Err(ParseError::invalid(format!("An account id is from 1 to {MAX_ID}, not {id}.")))
    }
}

/// The fields a change to an account sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub snippet_labels: Option<BTreeMap<u8, String>>,
    pub click_filter: Option<ClickFilter>,
}

impl AccountPatch {
    /// The account as it is after this change.
    pub fn apply(self, mut a: Account) -> Account {
        if let Some(v) = self.name {
            a.name = v;
        }
        if let Some(v) = self.timezone {
            a.timezone = v;
        }
        if let Some(v) = self.snippet_labels {
            a.snippet_labels = v;
        }
        if let Some(v) = self.click_filter {
            a.click_filter = v;
        }
        a
    }
}

/// Per-account settings of the bot-click filter (`click_filter` in `/rest/v2/account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickFilter {
    /// A click sooner than this after the email was sent is a scanner's.
    pub min_seconds_after_send: u32,
    /// Clicks on different links of one email within this many seconds are a scanner's.
    pub burst_seconds: u32,
    /// Add an invisible link to tracked HTML; whoever follows it is not a person.
    pub honeypot: bool,
    /// Send webhooks for bot clicks too (they are always recorded).
    pub deliver_bot_clicks: bool,
    /// Judge by the shipped lists of crawler user agents and scanner networks.
    pub known_scanners: bool,
    /// User agents (substrings, any case) the shipped lists never judge: the account knows them.
    pub trusted_user_agents: Vec<String>,
    /// Networks the shipped lists never judge. Addresses are kept to /24 (IPv4) and /48 (IPv6)
    /// unless the server keeps them whole, so narrower networks match nothing then.
    pub trusted_networks: Vec<IpNetwork>,
    /// User agents (substrings, any case) that make a click a bot's for this account.
    pub distrusted_user_agents: Vec<String>,
    /// Networks whose clicks are bots' for this account.
    pub distrusted_networks: Vec<IpNetwork>,
}

impl Default for ClickFilter {
    fn default() -> Self {
        ClickFilter {
            min_seconds_after_send: 10,
            burst_seconds: 3,
            honeypot: false,
            deliver_bot_clicks: false,
            known_scanners: true,
            trusted_user_agents: Vec::new(),
            trusted_networks: Vec::new(),
            distrusted_user_agents: Vec::new(),
            distrusted_networks: Vec::new(),
        }
    }
}

impl ClickFilter {
    /// Longest burst window accepted; the event of every click waits this long at most.
    pub const MAX_BURST_SECONDS: u32 = 60;

    /// Entries in each of the account's own lists, at most; and bytes in a user-agent entry.
    pub const MAX_ENTRIES: usize = 100;
    pub const MAX_ENTRY_BYTES: usize = 200;

    pub fn burst_window_ms(&self) -> Millis {
        i64::from(self.burst_seconds) * 1000
    }

    /// What a filter must be to be stored.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.burst_seconds > Self::MAX_BURST_SECONDS {
            return Err(ParseError::invalid(format!("burst_seconds is at most {}.", Self::MAX_BURST_SECONDS)));
        }
        if self.min_seconds_after_send > 86_400 {
            return Err(ParseError::invalid("min_seconds_after_send is at most 86400."));
        }
        let lists = [
            ("trusted_user_agents", self.trusted_user_agents.len()),
            ("trusted_networks", self.trusted_networks.len()),
            ("distrusted_user_agents", self.distrusted_user_agents.len()),
            ("distrusted_networks", self.distrusted_networks.len()),
        ];
        if let Some((name, _)) = lists.iter().find(|(_, n)| *n > Self::MAX_ENTRIES) {
            return Err(ParseError::invalid(format!("{name} holds at most {} entries.", Self::MAX_ENTRIES)));
        }
        for (name, list) in [
            ("trusted_user_agents", &self.trusted_user_agents),
            ("distrusted_user_agents", &self.distrusted_user_agents),
        ] {
            if list.iter().any(|e| e.trim().is_empty() || e.len() > Self::MAX_ENTRY_BYTES) {
                return Err(ParseError::invalid(format!(
                    "{name}: each entry is a non-blank substring of at most {} bytes.",
                    Self::MAX_ENTRY_BYTES
                )));
            }
        }
        Ok(())
    }

    /// The account's distrusted user-agent entry the user agent contains, if any.
    pub fn distrusted_user_agent(&self, ua: &str) -> Option<&str> {
        self.distrusted_user_agents.iter().find(|e| contains_ignoring_case(ua, e)).map(String::as_str)
    }

    /// The account's distrusted network that holds `ip`, if any.
    pub fn distrusted_network(&self, ip: &str) -> Option<&IpNetwork> {
        let ip = ip.parse().ok()?;
        self.distrusted_networks.iter().find(|n| n.contains(ip))
    }

    /// Whether the account trusts this user agent or network: the shipped lists do not judge it.
    pub fn trusts(&self, ua: &str, ip: &str) -> bool {
        self.trusted_user_agents.iter().any(|e| contains_ignoring_case(ua, e))
            || ip.parse().is_ok_and(|ip| self.trusted_networks.iter().any(|n| n.contains(ip)))
    }
}

fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.trim().as_bytes());
    !n.is_empty() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// An IP network, `ADDR/LEN`; its address is kept as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    pub addr: IpAddr,
    pub len: u8,
}

impl IpNetwork {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let len = u32::from(self.len);
        match (ip.to_canonical(), self.addr) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNetwork {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Self, ParseError> {
        let bad =
            |why: &str| ParseError::invalid(format!("{raw:?} is not a network ({why}); expected e.g. 192.0.2.0/24."));
        let (addr, len) = raw.trim().split_once('/').ok_or_else(|| bad("no /length"))?;
        let addr: IpAddr = addr.parse().map_err(|_| bad("bad address"))?;
        let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
        if len > if addr.is_ipv4() { 32 } else { 128 } {
            return Err(bad("prefix length too long"));
        }
        Ok(IpNetwork { addr, len })
    }
}

impl std::fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        raw.parse().map_err(|e: ParseError| serde::de::Error::custom(e.msg))
    }
}

/// An IANA time zone name (`Europe/Warsaw`).
pub fn parse_timezone(raw: &str) -> Result<chrono_tz::Tz, ParseError> {
    raw.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        ParseError::invalid(format!("Unknown time zone {raw:?}; expected an IANA name such as Europe/Warsaw."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let a = Account {
            id: 1,
            name: "A".into(),
            timezone: "UTC".into(),
            snippet_labels: BTreeMap::new(),
            click_filter: ClickFilter::default(),
            created_at: 5,
        };
        let b = AccountPatch { name: Some("B".into()), ..Default::default() }.apply(a.clone());
        assert_eq!(b, Account { name: "B".into(), ..a });
    }
}

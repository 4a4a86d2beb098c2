//! Deciding whether a person made a click.
//!
//! A pure function of the click, the clicks near it and the account's settings, so the
//! settler can judge in batches and tests can judge without a server. Any one signal makes
//! a click a bot's; every signal that fired is kept as a reason.

use std::net::IpAddr;

use super::recent::{Around, BURST, HONEYPOT_NEARBY};
use crate::domain::Verdict;
use crate::store::PendingClick;

/// Lists of scanner user agents and networks (`data/scanners.txt`).
#[derive(Debug, Clone, Default)]
pub struct ScannerLists {
    /// The `ua:` entries in one automaton: a user agent is read once, not once per entry.
    user_agent_matcher: Option<aho_corasick::AhoCorasick>,
    networks: Vec<(IpAddr, u8)>,
}

pub const BUILT_IN: &str = include_str!("../../data/scanners.txt");

impl ScannerLists {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lists = ScannerLists::default();
        let mut user_agents = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            if let Some(ua) = line.strip_prefix("ua:") {
                user_agents.push(ua.trim().to_string());
            } else if let Some(net) = line.strip_prefix("net:") {
                let (ip, len) = net.trim().split_once('/').ok_or_else(|| bad("network without /length"))?;
                let ip: IpAddr = ip.parse().map_err(|_| bad("bad address"))?;
                let len: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
                if len > if ip.is_ipv4() { 32 } else { 128 } {
                    return Err(bad("prefix length too long"));
                }
                lists.networks.push((ip, len));
            } else {
                return Err(bad("expected `ua:` or `net:`"));
            }
        }
        lists.user_agent_matcher = Some(
            aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&user_agents)
                .map_err(|e| format!("user agent list: {e}"))?,
        );
        Ok(lists)
    }

    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).expect("the built-in scanner list parses")
    }

    /// Whether the user agent contains an entry of the list, ignoring ASCII case.
    pub fn user_agent_matches(&self, ua: &str) -> bool {
        self.user_agent_matcher.as_ref().is_some_and(|m| m.is_match(ua))
    }

    pub fn network_matches(&self, ip: &str) -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return false;
        };
        self.networks.iter().any(|(net, len)| in_network(ip, *net, *len))
    }
}

fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The verdict and the reasons that decided it. `around` is what the judged clicks on the
/// same email within the burst window show.
pub fn classify(c: &PendingClick, around: Around, lists: &ScannerLists) -> (Verdict, Vec<String>) {
    let f = &c.filter;
    let mut reasons = Vec::new();
    if c.head {
        reasons.push("head_request".to_string());
    }
    if c.honeypot {
        reasons.push("honeypot_link".to_string());
    }
    let since_send = c.at - c.email_sent_at;
    if since_send < i64::from(f.min_seconds_after_send) * 1000 {
        reasons.push(format!("clicked_{}s_after_send", since_send.max(0) / 1000));
    }
    if f.burst_seconds > 0 && around.other_link {
        reasons.push(BURST.to_string());
    }
    if !c.honeypot && around.honeypot {
        reasons.push(HONEYPOT_NEARBY.to_string());
    }
    if f.known_scanners {
        if c.user_agent.trim().is_empty() {
            reasons.push("empty_user_agent".to_string());
        } else if lists.user_agent_matches(&c.user_agent) {
            reasons.push("scanner_user_agent".to_string());
        }
        if c.ip.as_deref().is_some_and(|ip| lists.network_matches(ip)) {
            reasons.push("scanner_network".to_string());
        }
    }
    if reasons.is_empty() {
        (Verdict::Human, vec!["no_bot_signal".to_string()])
    } else {
        (Verdict::Bot, reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClickFilter;
    use crate::domain::Verdict::{Bot as BOT, Human as HUMAN};
    use crate::store::NearbyClick;

    fn click(at: i64, link_no: i64) -> PendingClick {
        PendingClick {
            id: 1,
            account_id: 1,
            email_id: 7,
            link_no,
            at,
            head: false,
            ip: Some("203.0.113.0".into()),
            user_agent: "Mozilla/5.0 (Macintosh) Safari/605".into(),
            email_sent_at: 0,
            honeypot: false,
            url: "https://x.example".into(),
            filter: ClickFilter::default(),
        }
    }

    /// What the classifier sees of these judged clicks, as the settler would show it.
    fn around(c: &PendingClick, judged: &[NearbyClick]) -> Around {
        let mut recent = crate::click::recent::RecentClicks::default();
        let window = i64::from(c.filter.burst_seconds) * 1000;
        recent.load(c.email_id, window, judged);
        recent.around(c.email_id, c.at, window, c.link_no)
    }

    fn near(at: i64, link_no: i64) -> NearbyClick {
        NearbyClick {
            click_id: 100 + link_no,
            email_id: 7,
            link_no,
            at,
            honeypot: false,
            released: false,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn a_late_single_click_is_human() {
        let lists = ScannerLists::built_in();
        assert_eq!(
            classify(&click(3_600_000, 1), around(&click(3_600_000, 1), &[near(3_600_000, 1)]), &lists).0,
            HUMAN
        );
    }

    #[test]
    fn each_signal_on_its_own_makes_a_bot() {
        let lists = ScannerLists::built_in();
        let late = 3_600_000;
        let mut c = click(late, 1);
        c.head = true;
        assert_eq!(classify(&c, around(&c, &[]), &lists), (BOT, vec!["head_request".to_string()]));
        assert_eq!(classify(&click(4_000, 1), around(&click(4_000, 1), &[]), &lists).1, ["clicked_4s_after_send"]);
        assert_eq!(
            classify(&click(late, 1), around(&click(late, 1), &[near(late + 2_000, 2)]), &lists).1,
            ["burst_of_links"]
        );
        assert_eq!(classify(&click(late, 1), around(&click(late, 1), &[near(late + 9_000, 2)]), &lists).0, HUMAN);
        let mut c = click(late, 1);
        c.user_agent = "Mozilla/5.0 (compatible; BingPreview/1.0b)".into();
        assert_eq!(classify(&c, around(&c, &[]), &lists).1, ["scanner_user_agent"]);
        let mut c = click(late, 1);
        c.ip = Some("148.163.150.0".into());
        assert_eq!(classify(&c, around(&c, &[]), &lists).1, ["scanner_network"]);
        let mut c = click(late, 1);
        c.honeypot = true;
        assert_eq!(classify(&c, around(&c, &[]), &lists).1, ["honeypot_link"]);
        let hp = NearbyClick { honeypot: true, ..near(late + 500, 3) };
        assert_eq!(classify(&click(late, 1), around(&click(late, 1), &[hp]), &lists).1, ["honeypot_hit_nearby"]);
    }

    #[test]
    fn settings_switch_signals_off() {
        let lists = ScannerLists::built_in();
        let mut c = click(2_000, 1);
        c.filter.min_seconds_after_send = 0;
        c.filter.burst_seconds = 0;
        c.user_agent = "curl/8".into();
        c.filter.known_scanners = false;
        assert_eq!(classify(&c, around(&c, &[near(2_000, 2)]), &lists).0, HUMAN);
    }

    #[test]
    fn list_parsing() {
        assert!(ScannerLists::parse("net: 10.0.0.0").is_err());
        assert!(ScannerLists::parse("net: 10.0.0.0/33").is_err());
        assert!(ScannerLists::parse("oops").is_err());
        let l = ScannerLists::parse("net: 2001:db8::/32\nua: X").unwrap();
        assert!(l.network_matches("2001:db8:1::"));
        assert!(!l.network_matches("2001:db9::"));
        assert!(l.user_agent_matches("a x b"));
        assert!(l.user_agent_matches("A X B"), "case does not matter");
        assert!(!l.user_agent_matches("a y b"));
    }
}

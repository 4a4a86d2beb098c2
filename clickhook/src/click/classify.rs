//! Deciding whether a person made a click.
//!
//! A pure function of the click, the clicks near it and the account's settings, so the
//! settler can judge in batches and tests can judge without a server. Any one signal makes
//! a click a bot's; every signal that fired is kept as a reason.

use super::recent::{Around, BURST, HONEYPOT_NEARBY};
pub use super::scanners::ScannerLists;
use crate::domain::Verdict;
use crate::store::PendingClick;

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
    let ip = c.ip.as_deref().unwrap_or_default();
    if let Some(entry) = f.distrusted_user_agent(&c.user_agent) {
        reasons.push(format!("account_user_agent:{entry}"));
    }
    if let Some(entry) = f.distrusted_network(ip) {
        reasons.push(format!("account_network:{entry}"));
    }
    if f.known_scanners && !f.trusts(&c.user_agent, ip) {
        if c.user_agent.trim().is_empty() {
            reasons.push("empty_user_agent".to_string());
        } else if let Some(entry) = lists.user_agent_entry(&c.user_agent) {
            reasons.push(format!("scanner_user_agent:{entry}"));
        }
        if let Some(entry) = lists.network_entry(ip) {
            reasons.push(format!("scanner_network:{entry}"));
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
    use crate::store::{JudgedClick, NearbyClick};
    use std::collections::HashMap;

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
            filter: ClickFilter::default().into(),
            placed: None,
        }
    }

    /// What the classifier sees of these judged clicks, as the settler would show it.
    fn around(c: &PendingClick, judged: &[NearbyClick]) -> Around {
        let mut recent = crate::click::recent::RecentClicks::default();
        let window = i64::from(c.filter.burst_seconds) * 1000;
        let history: Vec<JudgedClick> =
            judged.iter().map(|n| JudgedClick { account_id: 1, click: n.clone() }).collect();
        recent.load(HashMap::from([(1, window)]), &history, c.at);
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
        assert_eq!(classify(&c, around(&c, &[]), &lists).1, ["scanner_user_agent:bingpreview"]);
        let mut c = click(late, 1);
        c.ip = Some("148.163.150.0".into());
        assert_eq!(classify(&c, around(&c, &[]), &lists).1, ["scanner_network:148.163.128.0/19"]);
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
        std::sync::Arc::make_mut(&mut c.filter).min_seconds_after_send = 0;
        std::sync::Arc::make_mut(&mut c.filter).burst_seconds = 0;
        c.user_agent = "curl/8".into();
        std::sync::Arc::make_mut(&mut c.filter).known_scanners = false;
        assert_eq!(classify(&c, around(&c, &[near(2_000, 2)]), &lists).0, HUMAN);
    }

    #[test]
    fn an_account_trusts_and_distrusts_its_own_entries() {
        let lists = ScannerLists::built_in();
        let mut c = click(3_600_000, 1);
        c.user_agent = "Mozilla/5.0 (compatible; Mimecast URL Protect)".into();
        c.ip = Some("148.163.150.0".into());
        std::sync::Arc::make_mut(&mut c.filter).trusted_networks = vec!["148.163.150.0/24".parse().unwrap()];
        assert_eq!(classify(&c, around(&c, &[]), &lists), (HUMAN, vec!["no_bot_signal".to_string()]));
        std::sync::Arc::make_mut(&mut c.filter).trusted_networks.clear();
        std::sync::Arc::make_mut(&mut c.filter).trusted_user_agents = vec!["MIMECAST".into()];
        assert_eq!(classify(&c, around(&c, &[]), &lists).0, HUMAN, "a trusted user agent");
        c.head = true;
        assert_eq!(classify(&c, around(&c, &[]), &lists).1, ["head_request"], "behaviour still counts");
        let mut c = click(3_600_000, 1);
        std::sync::Arc::make_mut(&mut c.filter).distrusted_user_agents = vec!["safari/605".into()];
        std::sync::Arc::make_mut(&mut c.filter).distrusted_networks = vec!["203.0.0.0/8".parse().unwrap()];
        assert_eq!(
            classify(&c, around(&c, &[]), &lists).1,
            ["account_user_agent:safari/605", "account_network:203.0.0.0/8"]
        );
    }
}

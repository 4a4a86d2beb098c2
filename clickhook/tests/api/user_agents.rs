//! The user-agent signal measured on public corpora (`tests/data`, renewed by
//! `data/refresh.sh`): each user agent clicks once, on an email sent a day earlier, from an
//! address on no list, so that only the user agent can decide.
//!
//! - crawler-user-agents' examples must be judged bots at least as often as isbot judges them;
//! - real browsers' user agents (the `user-agents` package) at most 0.5% of the time.

use clickhook::click::classify::{classify, ScannerLists};
use clickhook::click::recent::Around;
use clickhook::domain::{ClickFilter, Verdict};
use clickhook::store::PendingClick;

#[derive(serde::Deserialize)]
struct Corpus {
    source: String,
    isbot_version: String,
    user_agents: Vec<Sample>,
}

#[derive(serde::Deserialize)]
struct Sample {
    ua: String,
    isbot: bool,
}

fn corpus(name: &str) -> Corpus {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn judged_bot(lists: &ScannerLists, ua: &str) -> bool {
    let day = 86_400_000;
    let click = PendingClick {
        id: 1,
        account_id: 1,
        email_id: 1,
        link_no: 1,
        at: 2 * day,
        head: false,
        ip: Some("203.0.113.0".into()),
        user_agent: ua.to_string(),
        email_sent_at: day,
        honeypot: false,
        url: "https://example.com/".into(),
        filter: ClickFilter::default().into(),
        placed: None,
    };
    classify(&click, Around::default(), lists).0 == Verdict::Bot
}

#[test]
fn crawlers_are_caught_as_often_as_isbot_catches_them_and_browsers_pass() {
    let lists = ScannerLists::built_in();
    let crawlers = corpus("crawler-user-agents.json");
    let caught: Vec<&Sample> = crawlers.user_agents.iter().filter(|s| judged_bot(&lists, &s.ua)).collect();
    let by_isbot = crawlers.user_agents.iter().filter(|s| s.isbot).count();
    let n = crawlers.user_agents.len();
    let missed: Vec<&str> =
        crawlers.user_agents.iter().filter(|s| !judged_bot(&lists, &s.ua)).map(|s| s.ua.as_str()).collect();
    eprintln!(
        "crawler examples ({}): {n}; judged bots {} ({:.2}%), isbot {} {by_isbot} ({:.2}%); missed: {missed:?}",
        crawlers.source,
        caught.len(),
        100.0 * caught.len() as f64 / n as f64,
        crawlers.isbot_version,
        100.0 * by_isbot as f64 / n as f64
    );
    assert!(caught.len() >= by_isbot, "{} of {n} caught, isbot catches {by_isbot}", caught.len());

    let browsers = corpus("browser-user-agents.json");
    let flagged: Vec<&str> =
        browsers.user_agents.iter().filter(|s| judged_bot(&lists, &s.ua)).map(|s| s.ua.as_str()).collect();
    let n = browsers.user_agents.len();
    let isbot_flagged = browsers.user_agents.iter().filter(|s| s.isbot).count();
    eprintln!(
        "browsers ({}): {n}; judged bots {} ({:.2}%), isbot {isbot_flagged}; flagged: {flagged:?}",
        browsers.source,
        flagged.len(),
        100.0 * flagged.len() as f64 / n as f64
    );
    assert!(n >= 500, "a corpus of real browsers, not a handful");
    assert!(flagged.len() * 200 <= n, "{} of {n} browsers judged bots: {flagged:?}", flagged.len());
}

/// The strings the old hand-kept list missed, each judged with the entry that caught it.
#[test]
fn googles_fetchers_are_caught_and_named() {
    let lists = ScannerLists::built_in();
    for ua in [
        "Mediapartners-Google",
        "APIs-Google (+https://developers.google.com/webmasters/APIs-Google.html)",
        "Feedfetcher-Google; (+http://www.google.com/feedfetcher.html; 1 subscribers; feed-id=728742641706423)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/W.X.Y.Z Mobile Safari/537.36 (compatible; Google-InspectionTool/1.0)",
    ] {
        let entry = lists.user_agent_entry(ua);
        assert!(entry.is_some(), "{ua} is not caught");
        assert!(judged_bot(&lists, ua));
    }
}

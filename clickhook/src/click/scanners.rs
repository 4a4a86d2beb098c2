//! The lists a click's user agent and network are judged by.
//!
//! User agents: clickhook's own entries for mail-security scanners and link previews
//! (`data/scanners.txt`, each with its source) on top of isbot's maintained patterns
//! (`data/isbot-patterns.json`; source, version and licence inside; `data/refresh.sh` renews
//! it). Networks: the published ranges in `data/scanners.txt`.
//!
//! Every entry becomes one pattern of a single `RegexSet`, so a user agent is read once however
//! many entries there are, and a person's (which matches none) costs one pass. isbot writes
//! some patterns with lookaround, which that engine lacks: the set holds them without it (a
//! pattern that matches more), and `fancy_regex` confirms the whole pattern only when that
//! part matched. Patterns are read as JavaScript reads them: case-insensitive, ASCII classes.

use std::net::IpAddr;

use regex::bytes::RegexSet;

use crate::domain::account::IpNetwork;

pub const BUILT_IN: &str = include_str!("../../data/scanners.txt");
pub const ISBOT: &str = include_str!("../../data/isbot-patterns.json");

/// The user-agent entries and networks that make a click a scanner's.
#[derive(Debug, Clone)]
pub struct ScannerLists {
    user_agents: UserAgents,
    networks: Vec<IpNetwork>,
}

#[derive(Debug, Clone)]
struct UserAgents {
    /// Every entry, lookaround removed, in entry order.
    any: RegexSet,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// As the list writes it: what a reason names.
    name: String,
    /// The whole pattern, for one written with lookaround.
    confirm: Option<fancy_regex::Regex>,
}

/// isbot's file: its patterns (and, for people, where they come from).
#[derive(serde::Deserialize)]
struct IsbotFile {
    patterns: Vec<String>,
}

impl ScannerLists {
    /// clickhook's own list (`ua:` substrings, `net:` networks, one a line) on top of isbot's
    /// patterns.
    pub fn parse(own: &str) -> Result<Self, String> {
        let isbot: IsbotFile = serde_json::from_str(ISBOT).map_err(|e| format!("isbot patterns: {e}"))?;
        Self::parse_with(own, &isbot.patterns)
    }

    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).expect("the built-in scanner lists parse")
    }

    fn parse_with(own: &str, patterns: &[String]) -> Result<Self, String> {
        let mut names = Vec::new();
        let mut networks = Vec::new();
        for (n, line) in own.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            if let Some(ua) = line.strip_prefix("ua:") {
                names.push((ua.trim().to_string(), regex::escape(ua.trim())));
            } else if let Some(net) = line.strip_prefix("net:") {
                networks.push(net.trim().parse::<IpNetwork>().map_err(|e| bad(&e.msg))?);
            } else {
                return Err(bad("expected `ua:` or `net:`"));
            }
        }
        names.extend(patterns.iter().map(|p| (p.clone(), from_javascript(p))));
        let mut entries = Vec::new();
        let mut cores = Vec::new();
        for (name, pattern) in names {
            let core = without_lookaround(&pattern);
            let confirm = if core == pattern {
                None
            } else {
                let whole = fancy_regex::Regex::new(&format!("(?i){pattern}"))
                    .map_err(|e| format!("user agent pattern {pattern:?}: {e}"))?;
                Some(whole)
            };
            cores.push(core);
            entries.push(Entry { name, confirm });
        }
        let any = regex::bytes::RegexSetBuilder::new(&cores)
            .case_insensitive(true)
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build()
            .map_err(|e| format!("user agent patterns: {e}"))?;
        Ok(ScannerLists { user_agents: UserAgents { any, entries }, networks })
    }

    /// The first entry (clickhook's own before isbot's) that the user agent matches.
    pub fn user_agent_entry(&self, ua: &str) -> Option<&str> {
        let UserAgents { any, entries } = &self.user_agents;
        if !any.is_match(ua.as_bytes()) {
            return None;
        }
        any.matches(ua.as_bytes()).into_iter().map(|i| &entries[i]).find_map(|e| match &e.confirm {
            Some(whole) => whole.is_match(ua).unwrap_or(false).then_some(e.name.as_str()),
            None => Some(e.name.as_str()),
        })
    }

    pub fn user_agent_matches(&self, ua: &str) -> bool {
        self.user_agent_entry(ua).is_some()
    }

    /// The first listed network that holds the address.
    pub fn network_entry(&self, ip: &str) -> Option<&IpNetwork> {
        let ip = ip.parse::<IpAddr>().ok()?;
        self.networks.iter().find(|n| n.contains(ip))
    }

    pub fn network_matches(&self, ip: &str) -> bool {
        self.network_entry(ip).is_some()
    }
}

/// A JavaScript pattern as the `regex` crate reads it: in a class, a `-` beside a class escape
/// (`[\w\d-.]`) is a literal hyphen in JavaScript and an error here.
fn from_javascript(pattern: &str) -> String {
    let b = pattern.as_bytes();
    let shorthand = |i: usize| b.get(i) == Some(&b'\\') && b.get(i + 1).is_some_and(|c| b"wdsWDS".contains(c));
    let mut out = String::with_capacity(pattern.len() + 4);
    let (mut i, mut class) = (0, false);
    let mut after_shorthand = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            after_shorthand = class && shorthand(i);
            out.push_str(&pattern[i..i + 2]);
            i += 2;
            continue;
        }
        match c {
            b'[' if !class => class = true,
            b']' if class => class = false,
            b'-' if class && (after_shorthand || shorthand(i + 1)) => {
                out.push_str("\\-");
                i += 1;
                after_shorthand = false;
                continue;
            }
            _ => {}
        }
        after_shorthand = false;
        let ch = pattern[i..].chars().next().expect("not at the end");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The pattern with its lookaround groups (`(?=…)`, `(?!…)`, `(?<=…)`, `(?<!…)`) removed:
/// it matches wherever the whole pattern does, and more.
fn without_lookaround(pattern: &str) -> String {
    let b = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &pattern[i..];
        let opens = ["(?=", "(?!", "(?<=", "(?<!"].iter().find(|o| rest.starts_with(**o));
        if let Some(open) = opens {
            // Skip to the group's closing parenthesis, minding escapes, classes and nesting.
            let (mut depth, mut j, mut class) = (0usize, i + open.len(), false);
            while j < b.len() {
                match b[j] {
                    b'\\' => j += 1,
                    b'[' if !class => class = true,
                    b']' if class => class = false,
                    b'(' if !class => depth += 1,
                    b')' if !class && depth == 0 => break,
                    b')' if !class => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
            continue;
        }
        let c = rest.chars().next().expect("not at the end");
        out.push(c);
        if c == '\\' {
            if let Some(next) = rest[1..].chars().next() {
                out.push(next);
                i += next.len_utf8();
            }
        }
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn javascript_hyphens_beside_class_escapes_are_literal() {
        assert_eq!(from_javascript(r"[\w\d-.]+"), r"[\w\d\-.]+");
        assert_eq!(from_javascript(r"[-\w]"), r"[\-\w]");
        assert_eq!(from_javascript(r"[a-z][\w-]+"), r"[a-z][\w\-]+");
        assert_eq!(from_javascript(r"a-b\-c"), r"a-b\-c", "outside a class nothing changes");
    }

    #[test]
    fn lookaround_comes_off_and_is_confirmed() {
        assert_eq!(without_lookaround("(?<! cu)bots?(?:\\b|_)"), "bots?(?:\\b|_)");
        assert_eq!(without_lookaround("(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))"), "google");
        assert_eq!(without_lookaround("a\\(?!b"), "a\\(?!b", "an escaped parenthesis opens nothing");
        assert_eq!(without_lookaround("x(?![)])y"), "xy");
        let l = ScannerLists::parse_with("", &["(?<!cam)scan".into()]).unwrap();
        assert_eq!(l.user_agent_entry("x camscan y"), None);
        assert_eq!(l.user_agent_entry("x CamScan y"), None, "in any case");
        assert_eq!(l.user_agent_entry("x urlscan y"), Some("(?<!cam)scan"));
        let l = ScannerLists::parse("").unwrap();
        assert!(l.user_agent_matches("Mozilla/5.0 (compatible; Googlebot/2.1)"));
        let pixel =
            "Mozilla/5.0 (Linux; Android 14; Google Pixel 8) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36";
        assert_eq!(l.user_agent_entry(pixel), None);
    }

    #[test]
    fn own_entries_come_first_and_are_named() {
        let l = ScannerLists::built_in();
        let ua = "Mozilla/5.0 (compatible; Mimecast URL Protect bot)";
        assert_eq!(l.user_agent_entry(ua), Some("mimecast"));
        assert!(l.user_agent_matches("Mediapartners-Google"), "missed by the old list");
        assert!(l.user_agent_matches("Mozilla/5.0 (compatible; Google-InspectionTool/1.0)"));
        assert_eq!(l.network_entry("148.163.150.0").map(|n| n.to_string()).as_deref(), Some("148.163.128.0/19"));
    }

    #[test]
    fn list_parsing() {
        assert!(ScannerLists::parse("net: 10.0.0.0").is_err());
        assert!(ScannerLists::parse("net: 10.0.0.0/33").is_err());
        assert!(ScannerLists::parse("oops").is_err());
        let l = ScannerLists::parse("net: 2001:db8::/32\nua: X(").unwrap();
        assert!(l.network_matches("2001:db8:1::"));
        assert!(!l.network_matches("2001:db9::"));
        assert!(l.user_agent_matches("a x( b"), "an entry is a substring, not a pattern");
        assert!(l.user_agent_matches("A X( B"), "case does not matter");
    }
}

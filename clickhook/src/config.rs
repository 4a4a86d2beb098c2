//! Settings of a running server, after the command line has been parsed.

use std::sync::Arc;
use std::time::Duration;

use crate::click::classify::ScannerLists;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `--db`: an SQLite path or a `postgres://` URL.
    pub db: String,
    pub listen: String,
    /// Base of tracked links, without a trailing slash.
    pub public_url: String,
    pub max_body_bytes: usize,
    pub trust_proxy: bool,
    pub full_ip: bool,
    pub allow_private_targets: bool,
    pub batch_window: Duration,
    pub retry_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    /// A subscription failing without a success for this long is disabled.
    pub disable_after: Duration,
    /// Attempts in flight at once to one subscription, on one node.
    pub endpoint_concurrency: usize,
    /// How far settling (verdicts, then events) may fall behind the clicks before it stops
    /// yielding to them: a burst shorter than this is taken at full speed, a longer overload
    /// slows the clicks down instead of growing the outbox.
    pub max_settle_lag: Duration,
    pub scanners: Arc<ScannerLists>,
}

impl Settings {
    /// Defaults for a server on `db`, as `clickhook serve` has them.
    pub fn new(db: impl Into<String>) -> Self {
        Settings {
            db: db.into(),
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            max_body_bytes: 32 * 1024 * 1024,
            trust_proxy: false,
            full_ip: false,
            allow_private_targets: false,
            batch_window: Duration::from_secs(1),
            retry_schedule: default_retry_schedule(),
            delivery_timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(5 * 86_400),
            endpoint_concurrency: 4,
            max_settle_lag: Duration::from_secs(60),
            scanners: Arc::new(ScannerLists::built_in()),
        }
    }
}

/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 27.6 hours in all.
pub fn default_retry_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 36000].into_iter().map(Duration::from_secs).collect()
}

/// Parses `5s,5m,30m,2h` (units ms, s, m, h, d).
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',').map(|p| parse_duration(p.trim())).collect()
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s:?}: expected a number and a unit, like 5s"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("bad duration unit in {s:?}: use ms, s, m, h or d")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(parse_schedule("5s,5m,2h").unwrap(), [5, 300, 7200].map(Duration::from_secs));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("").is_err());
    }
}

//! Settings of a running server: the `serve` flags, parsed once. Their defaults exist only
//! here, in [`ServeArgs`]; [`Settings::new`] takes them from it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

use crate::click::classify::ScannerLists;
use crate::domain::parse_duration;
use crate::domain::retention::{Keep, Retention};
use crate::store::Durability;

/// `clickhook serve`'s flags. Each also reads `CLICKHOOK_<FLAG>`.
/// Where `serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to listen on (host:port).
    #[arg(long, env = "CLICKHOOK_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Serve /metrics, /healthz, /docs and /tls/ask on this address only (host:port), off the
    /// public one that tracked links use; without it they are on --listen.
    #[arg(long, env = "CLICKHOOK_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Base URL of tracked links, as recipients reach this service (default: http:// and the
    /// --listen address, 127.0.0.1 for an address listening on all interfaces).
    #[arg(long, env = "CLICKHOOK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "CLICKHOOK_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Memory all request bodies being read may take together; a request beyond it waits a
    /// moment, then gets 503.
    #[arg(long, env = "CLICKHOOK_MAX_BODY_MEMORY", default_value_t = 256 * 1024 * 1024)]
    pub max_body_memory: usize,
    /// A client must send a request's headers within this long (counted from when it may
    /// start one, so it also ends an HTTP/1 connection idle between requests).
    #[arg(long, env = "CLICKHOOK_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A connection with no byte either way and no request in flight for this long is closed.
    #[arg(long, env = "CLICKHOOK_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open connections at most (and no more than the open-files limit allows); at the cap the
    /// longest-idle connection makes room for a new one.
    #[arg(long, env = "CLICKHOOK_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Take the client address from X-Forwarded-For (only behind your own proxy).
    #[arg(long, env = "CLICKHOOK_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// Keep full client IP addresses instead of anonymised ones.
    #[arg(long, env = "CLICKHOOK_FULL_IP")]
    pub full_ip: bool,
    /// Allow webhook targets on loopback and private networks.
    #[arg(long, env = "CLICKHOOK_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Events within this window go to a target in one POST.
    #[arg(long, env = "CLICKHOOK_BATCH_WINDOW", default_value = "1s", value_parser = parse_duration)]
    pub batch_window: Duration,
    /// Delays between delivery attempts, comma-separated.
    #[arg(long, env = "CLICKHOOK_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = parse_schedule)]
    pub retry_schedule: Schedule,
    /// `process`: a click is answered once committed, which survives the process being killed;
    /// `power`: also wait for fsync, which survives power loss, at a cost in throughput.
    #[arg(long, env = "CLICKHOOK_DURABILITY", default_value = "process")]
    pub durability: Durability,
    /// Give up on a delivery attempt after this long.
    #[arg(long, env = "CLICKHOOK_DELIVERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub delivery_timeout: Duration,
    /// Disable a subscription that has failed without a success for this long.
    #[arg(long, env = "CLICKHOOK_DISABLE_AFTER", default_value = "5d", value_parser = parse_duration)]
    pub disable_after: Duration,
    /// Attempts in flight at once to one subscription.
    #[arg(long, env = "CLICKHOOK_ENDPOINT_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub endpoint_concurrency: u16,
    /// How far webhooks may fall behind the clicks under overload: a burst shorter than this
    /// is redirected at full speed and settled afterwards; beyond it, settling takes its share
    /// of the machine and clicks slow down, so the outbox stays bounded.
    #[arg(long, env = "CLICKHOOK_MAX_SETTLE_LAG", default_value = "60s", value_parser = parse_duration)]
    pub max_settle_lag: Duration,
    /// A file of scanner entries to use instead of the built-in data/scanners.txt (same format);
    /// isbot's patterns apply either way.
    #[arg(long, env = "CLICKHOOK_SCANNER_LIST")]
    pub scanner_list: Option<PathBuf>,
    /// Days raw clicks are kept once judged and released (0: forever; a duration with a unit,
    /// like 12h, also works).
    #[arg(long, env = "CLICKHOOK_RETAIN_CLICKS", default_value = "180", value_name = "DAYS", value_parser = parse_keep)]
    pub retain_clicks: Keep,
    /// Days delivered batches, their attempts and the events only they read are kept (0:
    /// forever; a duration with a unit, like 12h, also works).
    #[arg(long, env = "CLICKHOOK_RETAIN_DELIVERIES", default_value = "30", value_name = "DAYS", value_parser = parse_keep)]
    pub retain_deliveries: Keep,
    /// The DNS server that checks tracking domains (host:port, or an address for port 53);
    /// without it, the system's resolvers (/etc/resolv.conf).
    #[arg(long, env = "CLICKHOOK_RESOLVER", value_parser = parse_resolver)]
    pub resolver: Option<SocketAddr>,
    /// How often each tracking domain's DNS is checked again.
    #[arg(long, env = "CLICKHOOK_RECHECK_DOMAINS", default_value = "10m", value_parser = parse_duration)]
    pub recheck_domains: Duration,
}

/// Delays between delivery attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

#[derive(Debug, Clone)]
pub struct Settings {
    /// `--db`: an SQLite path or a `postgres://` URL.
    pub db: String,
    pub listen: String,
    /// Where /metrics and /healthz are served when not on `listen`.
    pub admin_listen: Option<String>,
    /// Base of tracked links, without a trailing slash; empty means this listener's address.
    pub public_url: String,
    pub max_body_bytes: usize,
    pub max_body_memory: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
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
    /// How long old raw rows are kept (`retention`).
    pub retention: Retention,
    /// The DNS server tracking domains are checked with; `None`: the system's.
    pub resolver: Option<SocketAddr>,
    pub recheck_domains: Duration,
}

impl Settings {
    /// The settings `clickhook serve` runs with when given no flags (environment ignored).
    pub fn new(db: impl Into<String>) -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cmd = Defaults::command().mut_args(|a| a.env(None));
        let matches = cmd.get_matches_from(["serve"]);
        let args = ServeArgs::from_arg_matches(&matches).expect("the serve flags' defaults parse");
        Self::from_args(db, args).expect("the serve flags' defaults are valid")
    }

    /// Settings from parsed flags; reads the scanner list a flag names.
    pub fn from_args(db: impl Into<String>, a: ServeArgs) -> anyhow::Result<Self> {
        let public_url = a.public_url.unwrap_or_else(|| default_public_url(&a.listen));
        let public_url = public_url.trim_end_matches('/').to_string();
        url::Url::parse(&public_url).map_err(|e| anyhow::anyhow!("--public-url is not a URL: {e}"))?;
        let scanners = match &a.scanner_list {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("--scanner-list {}: {e}", path.display()))?;
                ScannerLists::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => ScannerLists::built_in(),
        };
        Ok(Settings {
            db: db.into(),
            listen: a.listen,
            admin_listen: a.admin_listen,
            public_url,
            max_body_bytes: a.max_body_bytes,
            max_body_memory: a.max_body_memory,
            header_read_timeout: a.header_read_timeout,
            idle_timeout: a.idle_timeout,
            max_connections: a.max_connections.max(1),
            trust_proxy: a.trust_proxy,
            full_ip: a.full_ip,
            allow_private_targets: a.allow_private_targets,
            batch_window: a.batch_window,
            retry_schedule: a.retry_schedule.0,
            delivery_timeout: a.delivery_timeout,
            disable_after: a.disable_after,
            endpoint_concurrency: usize::from(a.endpoint_concurrency),
            max_settle_lag: a.max_settle_lag,
            scanners: Arc::new(scanners),
            retention: Retention { clicks: a.retain_clicks, deliveries: a.retain_deliveries },
            resolver: a.resolver,
            recheck_domains: a.recheck_domains.max(Duration::from_millis(100)),
        })
    }
}

/// Where tracked links point when `--public-url` is not given: the listener, reached locally
/// when it listens on every interface.
pub fn default_public_url(listen: &str) -> String {
    let local = match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_string(),
    };
    format!("http://{local}")
}

fn parse_keep(raw: &str) -> Result<Keep, String> {
    Keep::parse(raw).map_err(|e| e.to_string())
}

/// `--resolver`'s value: `host:port`, or an address for port 53.
pub fn parse_resolver(raw: &str) -> Result<SocketAddr, String> {
    raw.parse::<SocketAddr>()
        .or_else(|_| raw.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{raw:?} is not an address (127.0.0.1:53, [::1]:5353, or an address for port 53)"))
}

/// Parses `5s,5m,30m,2h` (units ms, s, m, h, d).
pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    s.split(',').map(|p| parse_duration(p.trim())).collect::<Result<_, _>>().map(Schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(parse_schedule("5s,5m,2h").unwrap().0, [5, 300, 7200].map(Duration::from_secs));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("").is_err());
    }

    #[test]
    fn resolvers() {
        assert_eq!(parse_resolver("127.0.0.1:5353").unwrap().to_string(), "127.0.0.1:5353");
        assert_eq!(parse_resolver("::1").unwrap().to_string(), "[::1]:53");
        assert!(parse_resolver("dns.example").is_err());
    }

    #[test]
    fn the_public_url_follows_the_listener() {
        assert_eq!(default_public_url("127.0.0.1:9090"), "http://127.0.0.1:9090");
        assert_eq!(default_public_url("0.0.0.0:80"), "http://127.0.0.1:80");
        assert_eq!(default_public_url("[::]:8080"), "http://[::1]:8080");
    }

    #[test]
    fn defaults_come_from_the_flags() {
        let s = Settings::new("x.db");
        assert_eq!(s.retry_schedule, [5, 300, 1800, 7200, 18000, 36000, 36000].map(Duration::from_secs));
        assert_eq!((s.listen.as_str(), s.public_url.as_str()), ("127.0.0.1:8080", "http://127.0.0.1:8080"));
        assert_eq!((s.batch_window, s.max_settle_lag), (Duration::from_secs(1), Duration::from_secs(60)));
        assert_eq!(s.endpoint_concurrency, 4);
    }
}

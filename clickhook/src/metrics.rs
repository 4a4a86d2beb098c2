//! The process's metrics, kept and rendered by prometheus-client (OpenMetrics text at
//! `GET /metrics`).
//!
//! Every handle is made once, here. Recording is an atomic add for a counter and an
//! uncontended lock for a histogram: a click records one of each. Values that live in the
//! store (clicks waiting, the delivery backlog) are read at scrape time by the handler and
//! rendered with [`render`]; the process's own (memory, CPU, descriptors) by [`Process`].
//! The registry ends each help text with a full stop: the texts here have none.

use std::sync::LazyLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{text, DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    pub clicks_human: Counter,
    pub clicks_bot: Counter,
    pub clicks_recorded: Counter,
    pub invalid_tokens: Counter,
    pub click_failures: Counter,
    pub redirect_seconds: Histogram,
    pub commit_batch: Histogram,
    pub events_written: Counter,
    pub deliveries_ok: Counter,
    pub deliveries_failed_attempts: Counter,
    pub deliveries_exhausted: Counter,
    pub delivery_seconds: Histogram,
    /// 1 while settling is more than `--max-settle-lag` behind the clicks and shares the machine.
    pub settling_behind: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabel {
    subscription: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    store: &'static str,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let clicks = Family::<VerdictLabel, Counter>::default();
        registry.register("clickhook_clicks", "Clicks settled, by verdict", clicks.clone());
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register("clickhook_deliveries", "Webhook attempts by outcome", deliveries.clone());
        let verdict = |v| clicks.get_or_create(&VerdictLabel { verdict: v }).clone();
        let outcome = |o| deliveries.get_or_create(&OutcomeLabel { outcome: o }).clone();
        let m = Metrics {
            clicks_human: verdict("human"),
            clicks_bot: verdict("bot"),
            deliveries_ok: outcome("success"),
            deliveries_failed_attempts: outcome("failed_attempt"),
            deliveries_exhausted: outcome("exhausted"),
            clicks_recorded: Counter::default(),
            invalid_tokens: Counter::default(),
            click_failures: Counter::default(),
            events_written: Counter::default(),
            redirect_seconds: Histogram::new([0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            commit_batch: Histogram::new((0..13).map(|i| f64::from(1 << i))),
            delivery_seconds: Histogram::new([0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
            settling_behind: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("clickhook_clicks_recorded", "Clicks committed and redirected", m.clicks_recorded.clone());
        r.register(
            "clickhook_invalid_tokens",
            "Requests for /c/ with a token that did not verify",
            m.invalid_tokens.clone(),
        );
        r.register(
            "clickhook_click_failures",
            "Clicks answered 503 because the store failed",
            m.click_failures.clone(),
        );
        r.register(
            "clickhook_events",
            "link_clicked events this process wrote to the outbox",
            m.events_written.clone(),
        );
        r.register(
            "clickhook_redirect_seconds",
            "Time from request to redirect, commit included",
            m.redirect_seconds.clone(),
        );
        r.register("clickhook_commit_batch_size", "Writes folded into one group commit", m.commit_batch.clone());
        r.register("clickhook_delivery_attempt_seconds", "Latency of webhook attempts", m.delivery_seconds.clone());
        r.register(
            "clickhook_settling_behind",
            "1 while settling is more than --max-settle-lag behind the clicks and takes its share of the \
             machine (redirects slow down)",
            m.settling_behind.clone(),
        );
        r.register_collector(Box::new(Process));
        Metrics { registry, ..m }
    }

    pub fn observe_commit(&self, size: usize) {
        if size > 0 {
            self.commit_batch.observe(size as f64);
        }
    }
}

/// What the store says at scrape time.
pub struct StoreReading<'a> {
    pub backend: &'static str,
    /// Clicks not yet judged, or judged and held for their burst window.
    pub clicks_pending: i64,
    /// Of those, judged and held in the settler's memory (their rows still unjudged).
    pub clicks_held: i64,
    /// Age of the oldest event not yet delivered, in seconds.
    pub oldest_undelivered_seconds: i64,
    /// Events not yet delivered, by subscription id.
    pub backlog: &'a [(i64, i64)],
}

/// The whole exposition: the process's metrics, then the store's reading.
pub fn render(store: &StoreReading) -> String {
    let mut scrape = Registry::default();
    scrape.register(
        "clickhook_build",
        "The version running and the store it runs on",
        Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION"), store: store.backend }),
    );
    scrape.register(
        "clickhook_outbox_pending_clicks",
        "Clicks waiting for their verdict and event",
        ConstGauge::new(store.clicks_pending),
    );
    scrape.register(
        "clickhook_settler_held_clicks",
        "Of the pending clicks, those judged and held in this node's memory for their burst window",
        ConstGauge::new(store.clicks_held),
    );
    scrape.register(
        "clickhook_oldest_undelivered_event_seconds",
        "Age of the oldest event not yet delivered",
        ConstGauge::new(store.oldest_undelivered_seconds),
    );
    let backlog = Family::<SubscriptionLabel, Gauge>::default();
    for (subscription, events) in store.backlog {
        backlog.get_or_create(&SubscriptionLabel { subscription: *subscription }).set(*events);
    }
    scrape.register("clickhook_delivery_backlog_events", "Events not yet delivered, by subscription", backlog);
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = text::encode_registry(&mut out, &METRICS.registry)
        .and_then(|()| text::encode_registry(&mut out, &scrape))
        .and_then(|()| text::encode_eof(&mut out));
    out
}

/// The process's own metrics under their conventional names (`process_*`), read from `/proc`
/// at each scrape.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessReading::now() else {
            return Ok(());
        };
        let counter = |e: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            let c = ConstCounter::new(v);
            c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
        };
        let gauge = |e: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
        };
        counter(&mut encoder, "process_cpu_seconds", "CPU time used, user and system.", p.cpu_seconds)?;
        gauge(&mut encoder, "process_resident_memory_bytes", "Resident memory.", p.resident_bytes)?;
        gauge(&mut encoder, "process_virtual_memory_bytes", "Virtual memory.", p.virtual_bytes)?;
        gauge(&mut encoder, "process_open_fds", "Open file descriptors.", p.open_fds)?;
        gauge(&mut encoder, "process_max_fds", "The limit on open file descriptors.", p.max_fds)?;
        gauge(&mut encoder, "process_threads", "Threads.", p.threads)?;
        gauge(&mut encoder, "process_start_time_seconds", "Start time, Unix seconds.", p.start_time_seconds)?;
        Ok(())
    }
}

/// One reading of `/proc/self`.
#[derive(Debug, PartialEq)]
struct ProcessReading {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    open_fds: i64,
    max_fds: i64,
    threads: i64,
    start_time_seconds: i64,
}

impl ProcessReading {
    fn now() -> Option<Self> {
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes into the struct it is given.
        let max_fds = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 => i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX),
            _ => -1,
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64);
        Self::parse(&stat, &boot, ticks, page, open_fds, max_fds)
    }

    /// From `/proc/self/stat` (fields after the command's closing parenthesis) and the boot
    /// time in `/proc/stat`.
    fn parse(stat: &str, proc_stat: &str, ticks: i64, page: i64, open_fds: i64, max_fds: i64) -> Option<Self> {
        let after_name = &stat[stat.rfind(')')? + 2..];
        // Field 3 of proc(5) is the first here: utime is 14, so index 11.
        let f: Vec<&str> = after_name.split_ascii_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
        let ticks = ticks.max(1);
        let boot: i64 = proc_stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())?;
        Some(ProcessReading {
            cpu_seconds: (num(11)? + num(12)?) as f64 / ticks as f64,
            threads: num(17)?,
            start_time_seconds: boot + num(19)? / ticks,
            virtual_bytes: num(20)?,
            resident_bytes: num(21)? * page,
            open_fds,
            max_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_reading_from_proc_text() {
        let stat = "4242 (click hook) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 \
                    12000 123456789 3000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";
        let r = ProcessReading::parse(stat, "cpu 1 2 3\nbtime 1700000000\n", 100, 4096, 12, 1024).unwrap();
        assert_eq!(
            r,
            ProcessReading {
                cpu_seconds: 3.0,
                threads: 7,
                start_time_seconds: 1_700_000_120,
                virtual_bytes: 123_456_789,
                resident_bytes: 3000 * 4096,
                open_fds: 12,
                max_fds: 1024,
            }
        );
    }

    #[test]
    fn counters_are_counters_and_the_text_ends_as_openmetrics_does() {
        METRICS.clicks_human.inc();
        let text = render(&StoreReading {
            backend: "sqlite",
            clicks_pending: 3,
            clicks_held: 2,
            oldest_undelivered_seconds: 0,
            backlog: &[(7, 5)],
        });
        assert!(text.contains("# TYPE clickhook_clicks counter\n"), "{text}");
        assert!(text.contains("clickhook_clicks_total{verdict=\"human\"} "), "{text}");
        assert!(text.contains("# TYPE clickhook_events counter\n"), "{text}");
        assert!(text.contains("clickhook_redirect_seconds_bucket{le=\"0.001\"} "), "{text}");
        assert!(text.contains("clickhook_build_info{version=\""), "{text}");
        assert!(text.contains("clickhook_outbox_pending_clicks 3\n"), "{text}");
        assert!(text.contains("clickhook_settler_held_clicks 2\n"), "{text}");
        assert!(text.contains("clickhook_delivery_backlog_events{subscription=\"7\"} 5\n"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

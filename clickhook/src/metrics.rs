//! Process-wide counters, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Plain atomics: recording a value on the click path is one relaxed add.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.total.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let total = self.total.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {total}");
    }
}

pub struct Metrics {
    pub clicks_human: AtomicU64,
    pub clicks_bot: AtomicU64,
    pub clicks_recorded: AtomicU64,
    pub invalid_tokens: AtomicU64,
    pub click_failures: AtomicU64,
    pub redirect_seconds: Histogram,
    pub commit_batch: Histogram,
    pub deliveries_ok: AtomicU64,
    pub deliveries_failed_attempts: AtomicU64,
    pub deliveries_exhausted: AtomicU64,
    pub delivery_seconds: Histogram,
    /// 1 while settling is more than `--max-settle-lag` behind the clicks and shares the machine.
    pub settling_behind: AtomicU64,
}

pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| Metrics {
    clicks_human: AtomicU64::new(0),
    clicks_bot: AtomicU64::new(0),
    clicks_recorded: AtomicU64::new(0),
    invalid_tokens: AtomicU64::new(0),
    click_failures: AtomicU64::new(0),
    redirect_seconds: Histogram::new(&[0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
    commit_batch: Histogram::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0]),
    deliveries_ok: AtomicU64::new(0),
    deliveries_failed_attempts: AtomicU64::new(0),
    deliveries_exhausted: AtomicU64::new(0),
    delivery_seconds: Histogram::new(&[0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
    settling_behind: AtomicU64::new(0),
});

impl Metrics {
    pub fn observe_commit(&self, size: usize) {
        if size > 0 {
            self.commit_batch.observe(size as f64);
        }
    }

    /// `gauges` are values read at scrape time (outbox depth and the like).
    pub fn render(&self, gauges: &[(&str, &str, i64)]) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, labels: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name}{labels} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP clickhook_clicks_total Clicks settled, by verdict.\n# TYPE clickhook_clicks_total counter"
        );
        let _ = writeln!(out, "clickhook_clicks_total{{verdict=\"human\"}} {}", self.clicks_human.load(Relaxed));
        let _ = writeln!(out, "clickhook_clicks_total{{verdict=\"bot\"}} {}", self.clicks_bot.load(Relaxed));
        counter(
            &mut out,
            "clickhook_clicks_recorded_total",
            "Clicks committed and redirected.",
            "",
            self.clicks_recorded.load(Relaxed),
        );
        counter(
            &mut out,
            "clickhook_invalid_tokens_total",
            "Requests for /c/ with a token that did not verify.",
            "",
            self.invalid_tokens.load(Relaxed),
        );
        counter(
            &mut out,
            "clickhook_click_failures_total",
            "Clicks answered 503 because the store failed.",
            "",
            self.click_failures.load(Relaxed),
        );
        self.redirect_seconds.render(
            &mut out,
            "clickhook_redirect_seconds",
            "Time from request to redirect, commit included.",
        );
        self.commit_batch.render(&mut out, "clickhook_commit_batch_size", "Writes folded into one group commit.");
        let _ = writeln!(
            out,
            "# HELP clickhook_deliveries_total Webhook attempts by outcome.\n# TYPE clickhook_deliveries_total counter"
        );
        let _ = writeln!(out, "clickhook_deliveries_total{{outcome=\"success\"}} {}", self.deliveries_ok.load(Relaxed));
        let _ = writeln!(
            out,
            "clickhook_deliveries_total{{outcome=\"failed_attempt\"}} {}",
            self.deliveries_failed_attempts.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "clickhook_deliveries_total{{outcome=\"exhausted\"}} {}",
            self.deliveries_exhausted.load(Relaxed)
        );
        self.delivery_seconds.render(&mut out, "clickhook_delivery_attempt_seconds", "Latency of webhook attempts.");
        let _ = writeln!(
            out,
            "# HELP clickhook_settling_behind 1 while settling is more than --max-settle-lag behind the clicks \
             and takes its share of the machine (redirects slow down).\n# TYPE clickhook_settling_behind gauge\n\
             clickhook_settling_behind {}",
            self.settling_behind.load(Relaxed)
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

//! The delivery worker: batches events, POSTs them, retries, and records every attempt.
//!
//! Each round it cuts due batches, leases the deliveries it has room for, and runs each
//! attempt as its own task: a slow or dead endpoint holds only its own slots (a per-endpoint
//! cap), never the others'. Everything it knows lives in the store — batches, leases, the
//! retry time of each — so memory stays flat however large a backlog grows, and a node that
//! dies leaves leases that expire (or, on SQLite, are dropped at the next start).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::{sign, target};
use crate::config::Settings;
use crate::domain::delivery::{AttemptResult, MAX_BATCH};
use crate::domain::{now_millis, AttemptOutcome};
use crate::metrics::METRICS;
use crate::store::{Attempt, ClaimRoom, Claimed, DynStore};
const MAX_IN_FLIGHT: usize = 256;
const RESPONSE_EXCERPT: usize = 1024;

pub fn user_agent() -> String {
    format!("clickhook/{}", env!("CARGO_PKG_VERSION"))
}

/// Resolves target hosts, refusing private addresses unless allowed: the check is made on the
/// very addresses the connection will use, so a DNS answer that changed cannot slip past it.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|a| !target::is_public(a.ip())) {
                    return Err(
                        format!("refused: {} resolves to the private address {}", name.as_str(), bad.ip()).into()
                    );
                }
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

pub fn client(settings: &Settings) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.delivery_timeout)
        .connect_timeout(settings.delivery_timeout.min(Duration::from_secs(10)))
        .user_agent(user_agent())
        .dns_resolver(Arc::new(GuardedResolver { allow_private: settings.allow_private_targets }))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

struct Result_ {
    status: Option<u16>,
    error: Option<String>,
    response: String,
    retry_after: Option<Duration>,
    latency: Duration,
}

/// One POST of one batch.
async fn post(client: &reqwest::Client, settings: &Settings, c: &Claimed) -> Result_ {
    let started = Instant::now();
    let fail = |error: String| Result_ {
        status: None,
        error: Some(error),
        response: String::new(),
        retry_after: None,
        latency: started.elapsed(),
    };
    // IP literals never reach the resolver: check them here.
    if !settings.allow_private_targets {
        if let Some(host) = url::Url::parse(&c.target_url).ok().and_then(|u| u.host_str().map(str::to_string)) {
            if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                if !target::is_public(ip) {
                    return fail(format!("refused: {ip} is a private address"));
                }
            }
        }
    }
    let timestamp = now_millis() / 1000;
    let Some(signature) = sign::sign(&c.secret, &c.msg_id, timestamp, c.body.as_bytes()) else {
        return fail("the subscription's secret is not a valid whsec_ secret".into());
    };
    let sent = client
        .post(&c.target_url)
        .header("content-type", "application/json")
        .header("webhook-id", &c.msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(c.body.clone())
        .send()
        .await;
    match sent {
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            fail(format!("{kind}: {detail}"))
        }
        Ok(res) => {
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read at most a little more than we keep, within what remains of the timeout.
            let mut excerpt = Vec::new();
            let mut res = res;
            while excerpt.len() < RESPONSE_EXCERPT {
                match tokio::time::timeout(Duration::from_secs(1), res.chunk()).await {
                    Ok(Ok(Some(chunk))) => excerpt.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            excerpt.truncate(RESPONSE_EXCERPT);
            Result_ {
                status: Some(status),
                error: None,
                response: String::from_utf8_lossy(&excerpt).into_owned(),
                retry_after,
                latency: started.elapsed(),
            }
        }
    }
}

/// Per-endpoint and total attempts in flight on this node.
#[derive(Default)]
struct InFlight {
    by_subscription: HashMap<i64, usize>,
    total: usize,
}

/// How often the worker looks for new events and due retries when nothing tells it sooner.
const POLL_MS: i64 = 50;
const POLL: Duration = Duration::from_millis(POLL_MS as u64);

pub async fn run(store: DynStore, settings: Arc<Settings>, mut shutdown: watch::Receiver<bool>) {
    let client = client(&settings);
    let inflight = Arc::new(Mutex::new(InFlight::default()));
    let wake = Arc::new(Notify::new());
    let window = settings.batch_window.as_millis() as i64;
    // Covers the attempt (bounded by the timeout) and recording its outcome; a node that dies
    // holds its batches no longer than this before another node sends them again.
    let lease = (settings.delivery_timeout + Duration::from_secs(10)).as_millis() as i64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let now = now_millis();
        let next_close = store.cut_batches(now, window, MAX_BATCH).await.unwrap_or_else(|e| {
            tracing::warn!("cutting batches failed: {e}");
            None
        });
        let room = {
            let f = inflight.lock().unwrap();
            ClaimRoom {
                total: MAX_IN_FLIGHT.saturating_sub(f.total) as i64,
                per_subscription: settings.endpoint_concurrency as i64,
                in_flight: f.by_subscription.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (*s, *n as i64)).collect(),
            }
        };
        // A batch claimed beyond its endpoint's cap would be read for nothing and let go again.
        let claimed = if room.total == 0 {
            Vec::new()
        } else {
            store.claim_deliveries(now, lease, room).await.unwrap_or_default()
        };
        let mut unclaimed = Vec::new();
        for c in claimed {
            {
                let mut f = inflight.lock().unwrap();
                let n = f.by_subscription.entry(c.subscription_id).or_default();
                if *n >= settings.endpoint_concurrency {
                    unclaimed.push(c.id);
                    continue;
                }
                *n += 1;
                f.total += 1;
            }
            let (store, settings, client, inflight, wake) =
                (store.clone(), settings.clone(), client.clone(), inflight.clone(), wake.clone());
            tasks.spawn(async move {
                let r = post(&client, &settings, &c).await;
                let now = now_millis();
                let outcome = AttemptOutcome::of(r.status, c.tries, r.retry_after, &settings.retry_schedule, now);
                if outcome != AttemptOutcome::Delivered {
                    tracing::warn!(
                        subscription = c.subscription_id,
                        delivery = c.id,
                        status = ?r.status,
                        error = r.error.as_deref().unwrap_or(""),
                        "delivery attempt failed"
                    );
                }
                METRICS.delivery_seconds.observe(r.latency.as_secs_f64());
                match outcome {
                    AttemptOutcome::Delivered => METRICS.deliveries_ok.inc(),
                    AttemptOutcome::Exhausted => METRICS.deliveries_exhausted.inc(),
                    _ => METRICS.deliveries_failed_attempts.inc(),
                };
                let attempt = Attempt {
                    delivery_id: c.id,
                    subscription_id: c.subscription_id,
                    latency_ms: r.latency.as_millis() as i64,
                    response: r.response,
                    result: AttemptResult {
                        at: now,
                        status_code: r.status,
                        error: r.error,
                        outcome,
                        disable_after_ms: settings.disable_after.as_millis() as i64,
                    },
                };
                // The lease covers a store hiccup; if it never records, the batch is sent again (at least once).
                for _ in 0..5 {
                    match store.finish_attempt(attempt.clone()).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!("recording a delivery attempt failed: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                let mut f = inflight.lock().unwrap();
                if let Some(n) = f.by_subscription.get_mut(&c.subscription_id) {
                    *n -= 1;
                }
                f.total -= 1;
                wake.notify_one();
            });
        }
        if !unclaimed.is_empty() {
            let _ = store.release_leases(unclaimed).await;
        }
        while tasks.try_join_next().is_some() {}
        if *shutdown.borrow() {
            break;
        }
        // Come back when the earliest open window closes (a batch is due then), else poll.
        let nap = next_close.map_or(POLL, |t| Duration::from_millis((t - now_millis()).clamp(1, POLL_MS) as u64));
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    // In-flight attempts finish (bounded by the timeout); their leases would otherwise linger.
    let _ = tokio::time::timeout(settings.delivery_timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

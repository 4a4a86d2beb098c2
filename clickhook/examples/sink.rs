//! A webhook receiver for the delivery benchmarks: answers 200 at once and counts.
//!
//! `cargo run --release --example sink -- 127.0.0.1:9100`; `GET /stats` answers
//! `{"requests": N, "events": N, "first_ms": T, "last_ms": T, "latency_p50_ms": L, "latency_p99_ms": L,
//! "latency_events": N}`: Unix ms of the first and last POST, and how long after its click
//! (the element's `timestamp`) each element arrived, over the elements received since the last
//! `POST /mark` (or the start). A timestamp has whole seconds, so a latency reads up to a
//! second long; the percentiles are in steps of 100 ms.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::{get, post};

/// Latency buckets of 100 ms, up to 10 minutes (the last one holds everything longer).
const BUCKETS: usize = 6000;

struct Stats {
    requests: AtomicU64,
    events: AtomicU64,
    first_ms: AtomicI64,
    last_ms: AtomicI64,
    latency: Mutex<Vec<u64>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The click times of a batch's elements, in Unix ms.
fn click_times(body: &[u8]) -> Vec<i64> {
    let text = String::from_utf8_lossy(body);
    text.split("\"timestamp\":\"")
        .skip(1)
        .filter_map(|rest| rest.get(..24))
        .filter_map(|t| chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%z").ok())
        .map(|t| t.timestamp_millis())
        .collect()
}

fn percentile(buckets: &[u64], p: f64) -> i64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = ((total as f64) * p).ceil() as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return (i as i64 + 1) * 100;
        }
    }
    (BUCKETS as i64) * 100
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".into());
    let stats = Arc::new(Stats {
        requests: AtomicU64::new(0),
        events: AtomicU64::new(0),
        first_ms: AtomicI64::new(0),
        last_ms: AtomicI64::new(0),
        latency: Mutex::new(vec![0; BUCKETS]),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (s1, s2) = (stats.clone(), stats.clone());
        let app = axum::Router::new()
            .route(
                "/hook",
                post(move |body: Bytes| {
                    let s = s1.clone();
                    async move {
                        // Elements of the array: one "method" key each.
                        let n = body.windows(9).filter(|w| w == b"\"method\":").count() as u64;
                        s.events.fetch_add(n, Relaxed);
                        s.requests.fetch_add(1, Relaxed);
                        let now = now_ms();
                        let _ = s.first_ms.compare_exchange(0, now, Relaxed, Relaxed);
                        s.last_ms.store(now, Relaxed);
                        let times = click_times(&body);
                        let mut latency = s.latency.lock().unwrap();
                        for at in times {
                            latency[(((now - at).max(0) / 100) as usize).min(BUCKETS - 1)] += 1;
                        }
                        "ok"
                    }
                }),
            )
            .route(
                "/mark",
                post(move || {
                    let s = s2.clone();
                    async move {
                        s.latency.lock().unwrap().iter_mut().for_each(|n| *n = 0);
                        "marked"
                    }
                }),
            )
            .route(
                "/stats",
                get(move || {
                    let s = stats.clone();
                    async move {
                        let latency = s.latency.lock().unwrap().clone();
                        format!(
                            "{{\"requests\": {}, \"events\": {}, \"first_ms\": {}, \"last_ms\": {}, \
                             \"latency_p50_ms\": {}, \"latency_p99_ms\": {}, \"latency_events\": {}}}",
                            s.requests.load(Relaxed),
                            s.events.load(Relaxed),
                            s.first_ms.load(Relaxed),
                            s.last_ms.load(Relaxed),
                            percentile(&latency, 0.5),
                            percentile(&latency, 0.99),
                            latency.iter().sum::<u64>()
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        println!("sink listening on http://{addr}");
        axum::serve(listener, app).await.unwrap();
    });
}

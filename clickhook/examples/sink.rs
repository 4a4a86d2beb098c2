//! A webhook receiver for the delivery benchmark: answers 200 at once and counts.
//!
//! `cargo run --release --example sink -- 127.0.0.1:9100`; `GET /stats` answers
//! `{"requests": N, "events": N, "first_ms": T, "last_ms": T}` (Unix ms of the first and last POST).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use axum::body::Bytes;
use axum::routing::{get, post};

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    events: AtomicU64,
    first_ms: AtomicI64,
    last_ms: AtomicI64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".into());
    let stats = Arc::new(Stats::default());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let s1 = stats.clone();
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
                        "ok"
                    }
                }),
            )
            .route(
                "/stats",
                get(move || {
                    let s = stats.clone();
                    async move {
                        format!(
                            "{{\"requests\": {}, \"events\": {}, \"first_ms\": {}, \"last_ms\": {}}}",
                            s.requests.load(Relaxed),
                            s.events.load(Relaxed),
                            s.first_ms.load(Relaxed),
                            s.last_ms.load(Relaxed)
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        println!("sink listening on http://{addr}");
        axum::serve(listener, app).await.unwrap();
    });
}

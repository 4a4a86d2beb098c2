//! Pruning old raw rows in the background (`serve --retain-clicks`, `--retain-deliveries`).
//!
//! What may go is `domain::retention`'s to say; this runs it: every minute, step after step of
//! `PRUNE_STEP` rows until nothing due is left, or the server stops. While clicks flow, pruning
//! takes spare CPU only: flat out beside a saturating click load it cost that load a third of
//! its rate, and at a fixed share of the time a seventh; waiting for a moment without clicks
//! instead (none comes under a steady load) let it fall behind any load above 500 clicks a
//! second (bench/RESULTS.md).

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::domain::now_millis;
use crate::domain::retention::{Retention, PRUNE_STEP};
use crate::domain::Millis;
use crate::store::{DynStore, StoreResult};

/// Rows one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub clicks: u64,
    pub deliveries: u64,
    pub events: u64,
}

/// Prunes until `stop`, a pass at start and then every minute (`Retention::pass_every`).
pub async fn run(store: DynStore, retention: Retention, mut stop: watch::Receiver<bool>) {
    loop {
        match prune_until(&store, retention, now_millis(), &|| *stop.borrow()).await {
            Ok(p) if p != Pruned::default() => tracing::info!(?p, "old rows pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!("pruning old rows: {e}"),
        }
        store.yield_to_clicks().await;
        if let Err(e) = store.reclaim().await {
            tracing::warn!("reclaiming the space of deleted rows: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(retention.pass_every()) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One pass, as if it were `now`: everything due goes.
pub async fn prune(store: &DynStore, retention: Retention, now: Millis) -> StoreResult<Pruned> {
    prune_until(store, retention, now, &|| false).await
}

/// One pass that ends early, between two steps, once `stopped` (the server shuts down).
async fn prune_until(
    store: &DynStore,
    retention: Retention,
    now: Millis,
    stopped: &(dyn Fn() -> bool + Sync),
) -> StoreResult<Pruned> {
    let mut pruned = Pruned::default();
    if let Some(before) = retention.clicks_before(now) {
        // Only counted clicks are pruned: the statistics outlive them.
        store.count_released().await?;
        pruned.clicks = steps(store, stopped, || store.prune_clicks(before, PRUNE_STEP)).await?;
    }
    if let Some(before) = retention.deliveries_before(now) {
        pruned.deliveries = steps(store, stopped, || store.prune_deliveries(before, PRUNE_STEP)).await?;
        for account in store.list_accounts().await? {
            let floor = store.event_use(account.id).await?.floor();
            pruned.events +=
                steps(store, stopped, || store.prune_events(account.id, floor, before, PRUNE_STEP)).await?;
        }
    }
    Ok(pruned)
}

/// While clicks flow, pruning waits this many times as long as its last step took before the
/// next, so that it holds SQLite's writer a fifth of the time at most.
const WAIT_PER_STEP_TIME: u32 = 4;

/// Runs `step` until it removes nothing. In a lull of the clicks a step follows the last at
/// once. While they flow, each step waits while the cores it runs on are busy
/// (`Scheduling::defer_to_clicks`: a saturating burst is not slowed) and steps stay short and
/// apart; below saturation pruning keeps up with any rate the clicks can be settled at.
async fn steps<F, Fut>(store: &DynStore, stopped: &(dyn Fn() -> bool + Sync), mut step: F) -> StoreResult<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<u64>>,
{
    let mut total = 0;
    let mut last = Duration::ZERO;
    while !stopped() {
        store.defer_to_clicks(last * WAIT_PER_STEP_TIME).await;
        let started = Instant::now();
        let removed = step().await?;
        last = started.elapsed();
        tracing::debug!(removed, ms = last.as_secs_f64() * 1000.0, "pruning step");
        match removed {
            0 => return Ok(total),
            n => total += n,
        }
    }
    Ok(total)
}

//! Pruning old raw rows in the background (`serve --retain-clicks`, `--retain-deliveries`).
//!
//! What may go is `domain::retention`'s to say; this runs it: every minute, step after step of
//! `PRUNE_STEP` rows until nothing due is left. Before each step it waits for a lull in the
//! clicks (at most `BACKGROUND_PARK`, 2 s): pruning at full speed beside a click load cost that
//! load a third of its rate (bench/RESULTS.md), while a step per lull keeps up with a backlog
//! that builds at 500 rows a second of sustained load, and clears it in any quiet minute.

use std::time::Duration;

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

/// Prunes until `stop`, a pass at start and then every minute.
pub async fn run(store: DynStore, retention: Retention, mut stop: watch::Receiver<bool>) {
    loop {
        match prune(&store, retention, now_millis()).await {
            Ok(p) if p != Pruned::default() => tracing::info!(?p, "old rows pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!("pruning old rows: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One pass, as if it were `now`: everything due goes.
pub async fn prune(store: &DynStore, retention: Retention, now: Millis) -> StoreResult<Pruned> {
    let mut pruned = Pruned::default();
    if let Some(before) = retention.clicks_before(now) {
        pruned.clicks = steps(store, || store.prune_clicks(before, PRUNE_STEP)).await?;
    }
    if let Some(before) = retention.deliveries_before(now) {
        pruned.deliveries = steps(store, || store.prune_deliveries(before, PRUNE_STEP)).await?;
        for account in store.list_accounts().await? {
            let floor = store.event_use(account.id).await?.floor();
            pruned.events += steps(store, || store.prune_events(account.id, floor, before, PRUNE_STEP)).await?;
        }
    }
    Ok(pruned)
}

/// Runs `step` until it removes nothing, each step in a lull of the clicks.
async fn steps<F, Fut>(store: &DynStore, mut step: F) -> StoreResult<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<u64>>,
{
    let mut total = 0;
    loop {
        store.yield_to_clicks().await;
        match step().await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

//! Settling clicks: verdict, reasons and event, once the burst window has closed.
//!
//! Runs in the background on every node. A click row without a verdict is an outbox
//! entry; settling writes its verdict and its `link_clicked` event in one transaction,
//! and only once (`verdict IS NULL` guards the update), so nodes may race harmlessly.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::classify::{classify, ScannerLists, BOT, HUMAN};
use crate::metrics::METRICS;
use crate::store::{DynStore, Millis, NearbyClick, Settlement, StoreResult};

const BATCH: i64 = 2000;

pub async fn run(store: DynStore, lists: Arc<ScannerLists>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let settled = match settle_once(&store, &lists, crate::store::now_millis()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("settling clicks failed: {e}");
                0
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if settled < BATCH as usize {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Settles the due clicks among the oldest pending ones; returns how many.
pub async fn settle_once(
    store: &DynStore,
    lists: &ScannerLists,
    now: Millis,
) -> StoreResult<usize> {
    let pending = store.pending_clicks(BATCH).await?;
    let due: Vec<_> = pending
        .into_iter()
        .filter(|c| c.account_id == 0 || c.at + i64::from(c.filter.burst_seconds) * 1000 <= now)
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let mut email_ids: Vec<i64> = due.iter().map(|c| c.email_id).collect();
    email_ids.sort_unstable();
    email_ids.dedup();
    let window = due
        .iter()
        .map(|c| i64::from(c.filter.burst_seconds) * 1000)
        .max()
        .unwrap_or(0);
    let from = due.iter().map(|c| c.at).min().unwrap_or(0) - window;
    let to = due.iter().map(|c| c.at).max().unwrap_or(0) + window;
    let mut nearby: HashMap<i64, Vec<NearbyClick>> = HashMap::new();
    for n in store.clicks_near(email_ids.clone(), from, to).await? {
        nearby.entry(n.email_id).or_default().push(n);
    }
    let judged: Vec<_> = due
        .iter()
        .map(|c| {
            if c.account_id == 0 {
                // The email was deleted after the click: keep the click, there is nothing to send.
                return (HUMAN, vec!["email_deleted".to_string()]);
            }
            classify(
                c,
                nearby
                    .get(&c.email_id)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                lists,
            )
        })
        .collect();
    let mut wanted: Vec<i64> = due
        .iter()
        .zip(&judged)
        .filter(|(c, (v, _))| c.account_id != 0 && (*v == HUMAN || c.filter.deliver_bot_clicks))
        .map(|(c, _)| c.email_id)
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let contexts = if wanted.is_empty() {
        HashMap::new()
    } else {
        store.event_contexts(wanted).await?
    };
    let settlements: Vec<Settlement> = due
        .iter()
        .zip(judged)
        .map(|(c, (verdict, reasons))| {
            let deliver = verdict == HUMAN || c.filter.deliver_bot_clicks;
            let event = contexts
                .get(&c.email_id)
                .filter(|_| deliver)
                .map(|ctx| crate::event::link_clicked(ctx, &c.url, c.at).to_string());
            Settlement {
                click_id: c.id,
                account_id: c.account_id,
                verdict,
                reasons,
                event,
            }
        })
        .collect();
    let humans = settlements.iter().filter(|s| s.verdict == HUMAN).count() as u64;
    let bots = settlements.iter().filter(|s| s.verdict == BOT).count() as u64;
    let n = settlements.len();
    store.settle_clicks(settlements).await?;
    METRICS.clicks_human.fetch_add(humans, Relaxed);
    METRICS.clicks_bot.fetch_add(bots, Relaxed);
    Ok(n)
}

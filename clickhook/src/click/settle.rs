//! Settling clicks, off the request path: judge them, then release their events.
//!
//! A click row without a verdict is an outbox entry. Settling runs in two phases, on one
//! node at a time. Redirects come first: while clicks flow, settling yields to them, and a
//! burst of clicks is taken at full speed. But not for ever: once the oldest unjudged click is
//! older than `--max-settle-lag`, settling stops yielding and takes its share of the machine
//! until it has caught up, so under sustained overload clicks slow down instead of the outbox
//! growing without bound. (The backlog is then at most that lag's worth of clicks at full speed;
//! clearing it while clicks keep coming takes a few times as long.)
//!
//! 1. **Judge** the oldest unjudged clicks, in order, against the judged clicks on the same
//!    email within the burst window. A click that reveals a burst or a honeypot hit also
//!    overrules the earlier clicks it implicates, as long as they are still held. Judged clicks
//!    are held in memory ([`super::holding`]), their rows still unjudged, or, when that memory
//!    is full, in the store.
//! 2. **Release** held clicks once the judging frontier has passed their burst window: the
//!    verdict becomes final and, for a person's click (or any, with `deliver_bot_clicks`), its
//!    `link_clicked` event is written, in one transaction with the release (and, for a click
//!    held in memory, with its verdict).
//! 3. **Count** released clicks in the statistics: in the release's transaction, or, where the
//!    store counts behind the release (`StatsStore::count_released`), a pass once a second.
//!
//! One node settles at a time (`Store::settler_turn`), so it can remember the recent verdicts
//! it made ([`super::recent`]) and hold the clicks it judged instead of reading them back every
//! round. Every write is still guarded (`verdict IS NULL`, `released = 0`): a settler that lost
//! its turn mid-round cannot judge or release a click twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::classify::{classify, ScannerLists};
use super::holding::{Holding, Kept};
use super::recent::{RecentClicks, Seen, BURST, HONEYPOT_NEARBY};
use crate::domain::click::{overrule, Verdict};
use crate::domain::stats::Counted;
use crate::domain::{now_millis, Millis};
use crate::event::LinkClicked;
use crate::metrics::METRICS;
use crate::store::{
    DynStore, HeldClick, HeldVerdict, Judgement, NearbyClick, Overrule, PendingClick, Release, StoreError, StoreResult,
};

/// Clicks per round. Where settling shares the one writer with clicks (SQLite), each of its
/// transactions delays the clicks queued behind it: while clicks flow and settling keeps up,
/// rounds stay small enough that a transaction takes about a millisecond of CPU (measured:
/// rounds of 4000 held the writer 20-40 ms, the click path's p99; rounds of 64 starved
/// delivery). Otherwise, and while settling is behind, when clicks are to slow down anyway, a
/// round's cost is mostly fixed (its commit writes the pages it touched, spread over every
/// email's burst history and the outbox's indexes), so the bigger the better: behind, rounds of
/// 256 settled about 17,000 clicks a second on SQLite and 2,500 on PostgreSQL, rounds of 4000
/// about 40,000 and 11,000.
const BUSY_BATCH: i64 = 256;
const MAX_BATCH: i64 = 4000;

fn batch_size(store: &DynStore, behind: bool) -> i64 {
    if !behind && store.background_may_starve() && store.clicks_flowing() {
        BUSY_BATCH
    } else {
        MAX_BATCH
    }
}

/// Whether settling is behind after a round: the oldest click it found unjudged is older than
/// `max_lag`. Judging lags by a round at least, so an empty outbox is never behind.
fn is_behind(oldest_unjudged: Option<Millis>, now: Millis, max_lag: Millis) -> bool {
    oldest_unjudged.is_some_and(|at| now - at > max_lag)
}

/// Clicks are stamped before they are committed; one stamped a little earlier may commit a
/// little later. Releases wait this much longer than the window so such a click is judged first.
const COMMIT_SKEW_MS: Millis = 250;

/// How often a node that does not settle checks whether the settling node is still there.
const STANDBY: Duration = Duration::from_secs(1);

/// How often released clicks are counted where the store counts them behind the release: the
/// statistics lag by at most this (a query counts first), and each pass writes a busy rollup
/// row once for all the rounds released since the last.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// What the settler remembers between rounds while it keeps its turn.
#[derive(Default)]
pub struct Memory {
    recent: RecentClicks,
    holding: Holding,
}

impl Memory {
    /// Others may have judged, or what this node held was never stored: start afresh.
    pub fn forget(&mut self) {
        self.recent.forget();
        self.holding.forget();
    }
}

pub async fn run(
    store: DynStore,
    lists: Arc<ScannerLists>,
    max_lag: Millis,
    held: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut memory = Memory::default();
    let mut last_turn = None;
    let mut behind = false;
    let mut counted_at = std::time::Instant::now();
    loop {
        if !behind {
            tokio::select! {
                _ = store.yield_to_clicks() => {}
                _ = shutdown.changed() => return,
            }
        }
        let turn = store.settler_turn().await.unwrap_or_else(|e| {
            tracing::warn!("cannot tell whether this node settles clicks: {e}");
            None
        });
        if turn != last_turn {
            // Others may have judged since this node last settled: its memory is stale.
            memory.forget();
            held.store(0, Ordering::Relaxed);
            last_turn = turn;
        }
        if turn.is_none() {
            // Another node settles; stand by to take over should it die.
            tokio::select! {
                _ = tokio::time::sleep(STANDBY) => continue,
                _ = shutdown.changed() => return,
            }
        }
        let batch = batch_size(&store, behind);
        let busy = match settle_once(&store, &lists, &mut memory, now_millis(), batch).await {
            Ok(round) => {
                if is_behind(round.oldest_unjudged, now_millis(), max_lag) != behind {
                    behind = !behind;
                    tracing::info!(
                        behind,
                        "settling {} the clicks",
                        if behind { "fell behind" } else { "caught up with" }
                    );
                    store.settle_urgently(behind);
                    METRICS.settling_behind.set(i64::from(behind));
                }
                store.settled(round.moved);
                round.moved
            }
            Err(e) => {
                tracing::warn!("settling clicks failed: {e}");
                0
            }
        };
        held.store(memory.holding.len(), Ordering::Relaxed);
        if counted_at.elapsed() >= COUNT_EVERY {
            counted_at = std::time::Instant::now();
            if let Err(e) = store.count_released().await {
                tracing::warn!("counting released clicks failed: {e}");
            }
        }
        if *shutdown.borrow() {
            return;
        }
        // Caught up: look again a little later rather than spin on an empty outbox.
        if busy < batch as usize {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// What a round did.
pub struct Round {
    /// Clicks judged or released, whichever is more.
    pub moved: usize,
    /// When the oldest click still unjudged at the start of the round was made.
    pub oldest_unjudged: Option<Millis>,
}

/// One round of both phases. On an error the memory is forgotten: the clicks it held are
/// unjudged in the store, and the next round judges them again.
pub async fn settle_once(
    store: &DynStore,
    lists: &ScannerLists,
    memory: &mut Memory,
    now: Millis,
    batch: i64,
) -> StoreResult<Round> {
    let round = round(store, lists, memory, now, batch).await;
    if round.is_err() {
        memory.forget();
    }
    round
}

async fn round(
    store: &DynStore,
    lists: &ScannerLists,
    memory: &mut Memory,
    now: Millis,
    batch: i64,
) -> StoreResult<Round> {
    let t0 = std::time::Instant::now();
    let pending = store.pending_clicks(batch, memory.holding.ids()).await?;
    let t1 = std::time::Instant::now();
    let oldest_unjudged = pending.first().map(|c| c.at);
    // Nothing older than the oldest unjudged click can still be overruled by it.
    let frontier = pending.iter().map(|c| c.at).min().unwrap_or(now).min(now) - COMMIT_SKEW_MS;
    let judged = judge(store, lists, pending, memory).await?;
    let t2 = std::time::Instant::now();
    let (released, took) = release(store, &mut memory.holding, frontier, batch).await?;
    if judged + released > 0 {
        tracing::debug!(
            judged,
            released,
            read_ms = (t1 - t0).as_millis() as u64,
            judge_ms = (t2 - t1).as_millis() as u64,
            release_ms = t2.elapsed().as_millis() as u64,
            held_ms = took.held.as_millis() as u64,
            contexts_ms = took.contexts.as_millis() as u64,
            write_ms = took.write.as_millis() as u64,
            held_in_memory = memory.holding.len(),
            "settled a round"
        );
    }
    Ok(Round { moved: judged.max(released), oldest_unjudged })
}

fn as_nearby(c: &PendingClick) -> NearbyClick {
    NearbyClick {
        click_id: c.id,
        email_id: c.email_id,
        link_no: c.link_no,
        at: c.at,
        honeypot: c.honeypot,
        released: false,
        reasons: Vec::new(),
    }
}

async fn judge(
    store: &DynStore,
    lists: &ScannerLists,
    pending: Vec<PendingClick>,
    memory: &mut Memory,
) -> StoreResult<usize> {
    if pending.is_empty() {
        return Ok(0);
    }
    let oldest = pending.iter().map(|c| c.at).min().unwrap_or(0);
    // Clicked in the moment before this node saw the email deleted: nothing of it is kept.
    let orphans: Vec<i64> = pending.iter().filter(|c| c.account_id == 0).map(|c| c.id).collect();
    if !orphans.is_empty() {
        store.forget_orphan_clicks(orphans).await?;
    }
    let pending: Vec<PendingClick> = pending.into_iter().filter(|c| c.account_id != 0).collect();
    let window_of = |c: &PendingClick| c.filter.burst_window_ms();
    if !memory.recent.loaded() {
        let windows = store.burst_windows().await?;
        let history = store.judged_since(RecentClicks::history_from(&windows, oldest)).await?;
        memory.recent.load(windows, &history, oldest);
    }
    if !pending.iter().all(|c| memory.recent.keeps(c.account_id, window_of(c))) {
        // An account's burst window grew since the history was read: the clicks just beyond the
        // old window are not in memory. Judge nothing; the next round starts afresh.
        memory.forget();
        return Ok(0);
    }
    let Memory { recent, holding } = memory;
    let touched: HashSet<i64> = pending.iter().map(|c| c.email_id).collect();

    let mut judged: Vec<Judgement> = Vec::with_capacity(pending.len());
    // Where each click of this round sits in `judged`: what is pinned on it changes it there.
    let mut position: HashMap<i64, usize> = HashMap::with_capacity(pending.len());
    // Earlier clicks held in the store to overrule, each with its new reasons in the order
    // they arose.
    let mut overruled: Vec<(i64, Vec<String>)> = Vec::new();
    let mut overruled_at: HashMap<i64, usize> = HashMap::new();
    for c in &pending {
        let window = window_of(c);
        let (verdict, reasons) = classify(c, recent.around(c.email_id, c.at, window, c.link_no), lists);
        let burst = reasons.iter().any(|r| r == BURST);
        for (click_id, reason) in recent.pin(c.email_id, c.at, window, c.link_no, burst, c.honeypot) {
            match position.get(&click_id) {
                // Judged in this round: change it here.
                Some(&i) => {
                    let j = &mut judged[i];
                    if j.verdict == Verdict::Human {
                        j.reasons.clear();
                    }
                    j.verdict = Verdict::Bot;
                    j.reasons.push(reason.to_string());
                }
                // Judged before and held in memory: change it there.
                None if holding.overrule(click_id, &[reason.to_string()]) => {}
                // Judged before and held in the store (or released already): overrule it
                // there, where it applies only while still held.
                None => {
                    let i = *overruled_at.entry(click_id).or_insert_with(|| {
                        overruled.push((click_id, Vec::new()));
                        overruled.len() - 1
                    });
                    if !overruled[i].1.iter().any(|r| r == reason) {
                        overruled[i].1.push(reason.to_string());
                    }
                }
            }
        }
        position.insert(c.id, judged.len());
        let has = |r: &str| reasons.iter().any(|x| x == r);
        let seen = Seen {
            id: c.id,
            link_no: c.link_no,
            at: c.at,
            honeypot: c.honeypot,
            open_burst: !has(BURST),
            open_honeypot: !has(HONEYPOT_NEARBY),
        };
        recent.push(c.email_id, c.account_id, seen);
        judged.push(Judgement { click: as_nearby(c), verdict, reasons });
    }
    let n = judged.len();
    let overruled = overrules(store, overruled).await?;
    if holding.has_room(n) {
        // Held here until released: nothing to write but the overrules of clicks held there.
        if !overruled.is_empty() {
            store.judge_clicks(Vec::new(), overruled).await?;
        }
        for (c, j) in pending.into_iter().zip(judged) {
            holding.keep(Kept::new(c, j.verdict, j.reasons));
        }
    } else {
        store.judge_clicks(judged, overruled).await?;
    }
    recent.end_round(touched, oldest);
    Ok(n)
}

/// The earlier clicks' verdicts once the new reasons are pinned on them: read outside the
/// writing transaction, merged by `domain::click::overrule`, written guarded by what was read.
async fn overrules(store: &DynStore, pinned: Vec<(i64, Vec<String>)>) -> StoreResult<Vec<Overrule>> {
    if pinned.is_empty() {
        return Ok(Vec::new());
    }
    let held: HashMap<i64, HeldVerdict> =
        store.held_verdicts(pinned.iter().map(|p| p.0).collect()).await?.into_iter().map(|h| (h.click_id, h)).collect();
    let mut out = Vec::with_capacity(held.len());
    for (click_id, new) in pinned {
        let Some(h) = held.get(&click_id) else { continue };
        let stored: Vec<String> = serde_json::from_str(&h.reasons).map_err(|e| StoreError::corrupt("reasons", e))?;
        let (verdict, reasons) = overrule(h.verdict, &stored, &new);
        out.push(Overrule { click_id, verdict, reasons, was: h.reasons.clone() });
    }
    Ok(out)
}

/// Where a release's time went: reading the held clicks, their events' contexts, the write.
#[derive(Default)]
struct ReleaseTook {
    held: Duration,
    contexts: Duration,
    write: Duration,
}

async fn release(
    store: &DynStore,
    holding: &mut Holding,
    frontier: Millis,
    batch: i64,
) -> StoreResult<(usize, ReleaseTook)> {
    let mut took = ReleaseTook::default();
    let t = std::time::Instant::now();
    // Those held in the store (an empty index range unless memory was full, or another
    // settler held them) and those held here.
    let mut stored = store.held_clicks(frontier, batch).await?;
    took.held = t.elapsed();
    stored.retain(|c| c.rule.due(c.at, frontier));
    let kept = holding.take_due(frontier, batch as usize);
    if stored.is_empty() && kept.is_empty() {
        return Ok((0, took));
    }
    // Those held here carry the judgement their release writes; those held in the store do not.
    let held: Vec<(HeldClick, Option<Judgement>)> = stored
        .into_iter()
        .map(|c| (c, None))
        .chain(kept.into_iter().map(|k| {
            let judged = k.judgement();
            (k.click, Some(judged))
        }))
        .collect();
    let mut wanted: Vec<i64> =
        held.iter().filter(|(c, _)| c.account_id != 0 && c.rule.delivers(c.verdict)).map(|(c, _)| c.email_id).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let t = std::time::Instant::now();
    let contexts = if wanted.is_empty() { HashMap::new() } else { store.event_contexts(wanted).await? };
    took.contexts = t.elapsed();
    // The prospect's part of the element is serialized once per email, not once per click.
    let elements: HashMap<i64, LinkClicked> = contexts.iter().map(|(id, ctx)| (*id, LinkClicked::new(ctx))).collect();
    let releases: Vec<Release> = held
        .into_iter()
        .map(|(c, judged)| {
            let human = c.verdict == Verdict::Human;
            let event = elements
                .get(&c.email_id)
                .filter(|_| c.rule.delivers(c.verdict))
                .map(|element| element.render(&c.url, c.at));
            Release {
                click_id: c.id,
                account_id: c.account_id,
                clicked_at: c.at,
                human,
                event,
                counted: c.placed.map(|p| Counted {
                    account_id: c.account_id,
                    campaign_id: p.campaign_id,
                    step: p.step,
                    prospect_id: p.prospect_id,
                    url: c.url,
                    at: c.at,
                    human,
                    reasons: c.reasons,
                }),
                judged,
            }
        })
        .collect();
    let humans = releases.iter().filter(|r| r.human).count() as u64;
    let events = releases.iter().filter(|r| r.event.is_some()).count() as u64;
    let n = releases.len();
    let t = std::time::Instant::now();
    store.release_clicks(releases).await?;
    took.write = t.elapsed();
    METRICS.clicks_human.inc_by(humans);
    METRICS.clicks_bot.inc_by(n as u64 - humans);
    METRICS.events_written.inc_by(events);
    Ok((n, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_only_when_the_oldest_unjudged_click_is_older_than_the_bound() {
        assert!(!is_behind(None, 100_000, 5_000), "an empty outbox is never behind");
        assert!(!is_behind(Some(95_000), 100_000, 5_000), "exactly the bound is not behind");
        assert!(is_behind(Some(94_999), 100_000, 5_000));
        assert!(!is_behind(Some(100_500), 100_000, 5_000), "a click stamped after now (skew) is not behind");
    }
}

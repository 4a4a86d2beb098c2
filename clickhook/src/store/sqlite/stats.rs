//! Click statistics on SQLite: the rollups' reads, and how released clicks are added.
//!
//! Released clicks are counted behind the release, in passes over the clicks in id order from
//! `stats_cursor`, not in each release's transaction. Under load a release round of a few
//! hundred clicks touched most of the current quarter hour's rollup rows, and committing those
//! pages was the largest single cost of the pipeline's writes (`bench/statement_costs.py`); a
//! pass writes each row once however many rounds touched it. Every click below the cursor is
//! counted, or not released yet: a pass steps over clicks held for long (or, before a query,
//! over every one not released), and the release of a click below the cursor counts it itself.

use std::collections::BTreeSet;

use async_trait::async_trait;
use rusqlite::{params, params_from_iter, Connection};

use super::sql::{all, bind, exec, ids_json, value, DIALECT};
use super::SqliteStore;
use crate::domain::stats::{self, Counted, Rollup};
use crate::domain::{now_millis, Millis};
use crate::store::error::StoreResult;
use crate::store::lists::Where;
use crate::store::parts::StatsStore;
use crate::store::records::{Release, StatsQuery, StatsRows};
use crate::store::rows::{self, Columns};
use crate::store::stats_sql::{self, stats_sql};

/// Adds a released batch to the rollups, in the caller's transaction.
pub(super) fn add_rollup(conn: &Connection, mut r: Rollup) -> StoreResult<()> {
    if r.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = r.accounts.keys().copied().collect();
    let exist: BTreeSet<i64> =
        all(conn, "SELECT id FROM campaigns WHERE id IN (SELECT value FROM json_each(?1))", [ids_json(&ids)], |r| {
            r.int(0)
        })?
        .into_iter()
        .collect();
    r.retain_campaigns(&exist);
    for (b, n) in &r.series {
        exec(conn, stats_sql::ADD_SERIES, params![b.campaign_id, b.span.code(), b.start, n.human, n.bot])?;
    }
    for ((b, step, url), n) in &r.links {
        exec(conn, stats_sql::ADD_LINK, params![b.campaign_id, b.span.code(), b.start, step, url, n.human, n.bot])?;
    }
    for ((b, reason), n) in &r.reasons {
        exec(conn, stats_sql::ADD_REASON, params![b.campaign_id, b.span.code(), b.start, reason, n])?;
    }
    for (b, step, prospect) in &r.clickers {
        exec(conn, stats_sql::add_clicker(b.span), params![b.campaign_id, b.start, step, prospect])?;
    }
    Ok(())
}

/// Clicks a counting pass reads at most.
const COUNT_CHUNK: i64 = 50_000;

/// A background pass stops at the first click not released yet that was made after this long
/// ago (its release is near, and counted by a later pass); older ones it steps over.
const STUCK_AFTER: Millis = 5 * 60 * 1000;

/// How far a pass goes.
#[derive(Clone, Copy)]
pub(super) enum Reach {
    /// The background's: stop at a recent click not yet released (judged or not).
    Background { now: Millis },
    /// A query's or a deletion's: every released click, stepping over those not released yet,
    /// up to `settle_frontier.released_below` (all released clicks are below it).
    Released,
}

/// Where a pass from `?1` ends: at most a chunk on; before the first click not released made
/// at or after `?3`; with `?4`, past the last released click; never before it starts, and never
/// past the newest click (ids above it are not taken yet).
const PASS_END: &str = "SELECT max(?1, min(?1 + ?2, \
     coalesce((SELECT min(id) FROM clicks WHERE id >= ?1 AND id < ?1 + ?2 AND released = 0 AND at >= ?3), ?1 + ?2), \
     CASE WHEN ?4 THEN (SELECT released_below FROM settle_frontier) ELSE ?1 + ?2 END, \
     (SELECT coalesce(max(id), 0) + 1 FROM clicks)))";

const COUNTED_COLUMNS: &str = "SELECT c.id, e.account_id, e.campaign_id, e.step, e.prospect_id, \
     coalesce(l.url, ''), c.at, c.verdict, c.reasons FROM clicks c JOIN emails e ON e.id = c.email_id \
     LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no";

/// A counting pass as read: the ids it covers, the released clicks among them (those whose
/// email is gone count nowhere), and the ones it steps over, not released yet.
pub(super) struct Pass {
    from: i64,
    to: i64,
    clicks: Vec<Counted>,
    skipped: Vec<i64>,
}

/// Reads the next pass (`None`: nothing to count); on a reader, or on the writer inside its
/// transaction.
pub(super) fn read_pass(conn: &Connection, reach: Reach) -> StoreResult<Option<Pass>> {
    let from: i64 = value(conn, "SELECT next FROM stats_cursor", [])?;
    let (stop_at, released_only) = match reach {
        Reach::Background { now } => (now - STUCK_AFTER, false),
        Reach::Released => (Millis::MAX, true),
    };
    let to: i64 = value(conn, PASS_END, params![from, COUNT_CHUNK, stop_at, released_only])?;
    if to <= from {
        return Ok(None);
    }
    let released = format!("{COUNTED_COLUMNS} WHERE c.id >= ?1 AND c.id < ?2 AND c.released = 1 ORDER BY c.id");
    let clicks = all(conn, &released, [from, to], rows::counted)?.into_iter().map(|c| c.1).collect();
    let skipped =
        all(conn, "SELECT id FROM clicks WHERE id >= ?1 AND id < ?2 AND released = 0", [from, to], |r| r.int(0))?;
    Ok(Some(Pass { from, to, clicks, skipped }))
}

/// Writes a pass read before, in the caller's transaction, unless the cursor moved since (a
/// deletion counted first): then nothing is written, and false returned. Clicks the pass
/// stepped over that were released in the meantime are counted here; those released later
/// are below the cursor, and counted by their release ([`count_releases`]).
pub(super) fn apply_pass(conn: &Connection, mut pass: Pass) -> StoreResult<bool> {
    if exec(conn, "UPDATE stats_cursor SET next = ?2 WHERE next = ?1", [pass.from, pass.to])? == 0 {
        return Ok(false);
    }
    if !pass.skipped.is_empty() {
        let sql = format!("{COUNTED_COLUMNS} WHERE c.id IN (SELECT value FROM json_each(?1)) AND c.released = 1");
        pass.clicks.extend(all(conn, &sql, [ids_json(&pass.skipped)], rows::counted)?.into_iter().map(|c| c.1));
    }
    add_rollup(conn, Rollup::of(&pass.clicks))?;
    Ok(true)
}

/// Counts every released click not counted yet, in the caller's transaction: what deletes
/// clicks does this first, so that clicks once released stay counted.
pub(super) fn count_now(conn: &Connection) -> StoreResult<()> {
    while let Some(pass) = read_pass(conn, Reach::Released)? {
        apply_pass(conn, pass)?;
    }
    Ok(())
}

/// In a release's transaction: counts the released clicks that a pass has stepped over.
pub(super) fn count_releases<'a>(
    conn: &Connection,
    released: impl IntoIterator<Item = &'a Release>,
) -> StoreResult<()> {
    let below: i64 = value(conn, "SELECT next FROM stats_cursor", [])?;
    add_rollup(conn, Rollup::of(released.into_iter().filter(|r| r.click_id < below).filter_map(|r| r.counted.as_ref())))
}

impl SqliteStore {
    /// Passes until caught up (or a deletion moved the cursor meanwhile).
    async fn count(&self, reach: Reach) -> StoreResult<()> {
        loop {
            let Some(pass) = self.read(move |conn| read_pass(conn, reach)).await? else { return Ok(()) };
            let full = pass.to - pass.from >= COUNT_CHUNK;
            if !(self.write_background(move |conn| apply_pass(conn, pass)).await? && full) {
                return Ok(());
            }
        }
    }
}

/// Counts emails sent, in the caller's transaction.
pub(super) fn add_emails(conn: &Connection, emails: impl IntoIterator<Item = (i64, i64, i64)>) -> StoreResult<()> {
    for ((b, step), n) in stats::emails_rollup(emails) {
        exec(conn, stats_sql::ADD_EMAILS, params![b.campaign_id, b.span.code(), b.start, step, n])?;
    }
    Ok(())
}

/// Counts what a store from before statistics released and sent, in the migration's
/// transaction, a chunk at a time, with the rules the settler and the email path use.
pub(super) fn backfill(conn: &Connection) -> StoreResult<()> {
    let released = stats_sql::RELEASED_AFTER.replace("{yes}", DIALECT.yes);
    let mut after = 0;
    loop {
        let chunk = all(conn, &released, params![after, stats_sql::BACKFILL_CHUNK], rows::counted)?;
        let Some(last) = chunk.last() else { break };
        after = last.0;
        add_rollup(conn, Rollup::of(chunk.iter().map(|c| &c.1)))?;
    }
    let mut after = 0;
    loop {
        let chunk = all(conn, stats_sql::EMAILS_AFTER, params![after, stats_sql::BACKFILL_CHUNK], |r| {
            Ok((r.int(0)?, r.int(1)?, r.int(2)?, r.int(3)?))
        })?;
        let Some(last) = chunk.last() else { break };
        after = last.0;
        add_emails(conn, chunk.iter().map(|e| (e.1, e.2, e.3)))?;
    }
    Ok(())
}

fn rows<T>(conn: &Connection, w: &Where, map: impl Fn(&dyn Columns) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    all(conn, &w.sql, params_from_iter(bind(w, &[])), map)
}

#[async_trait]
impl StatsStore for SqliteStore {
    async fn stats(&self, q: StatsQuery) -> StoreResult<StatsRows> {
        // What was released before this call is in the numbers.
        self.count(Reach::Released).await?;
        self.read(move |conn| {
            let sql = stats_sql(&DIALECT, &q);
            Ok(StatsRows {
                emails: rows(conn, &sql.emails, |r| Ok((r.int(0)?, r.int(1)?)))?,
                links: rows(conn, &sql.links, |r| Ok((r.int(0)?, r.text(1)?, r.int(2)?, r.int(3)?)))?,
                reasons: rows(conn, &sql.reasons, |r| Ok((r.text(0)?, r.int(1)?)))?,
                clickers: {
                    let mut pairs = Vec::new();
                    for part in &sql.clickers {
                        pairs.extend(rows(conn, part, |r| Ok((r.int(0)?, r.int(1)?)))?);
                    }
                    pairs
                },
                series: rows(conn, &sql.series, |r| Ok((r.int(0)?, r.int(1)?, r.int(2)?)))?,
            })
        })
        .await
    }

    async fn count_released(&self) -> StoreResult<()> {
        self.count(Reach::Background { now: now_millis() }).await
    }
}

//! Click statistics on SQLite: the rollups' reads, and how a released batch is added.

use std::collections::BTreeSet;

use async_trait::async_trait;
use rusqlite::{params, params_from_iter, Connection};

use super::sql::{all, bind, exec, ids_json, DIALECT};
use super::SqliteStore;
use crate::domain::stats::{self, Rollup};
use crate::store::error::StoreResult;
use crate::store::lists::Where;
use crate::store::parts::StatsStore;
use crate::store::records::{StatsQuery, StatsRows};
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
}

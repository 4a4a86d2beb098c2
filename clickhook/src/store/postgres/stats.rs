//! Click statistics on PostgreSQL: the rollups' reads, and how a released batch is added.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::future::try_join_all;
use tokio_postgres::types::ToSql;

use super::pool::{all, bind, exec, numbered, pg, Param, DIALECT, Q};
use super::PgStore;
use crate::domain::stats::{self, Rollup, Span};
use crate::store::error::StoreResult;
use crate::store::lists::Where;
use crate::store::parts::StatsStore;
use crate::store::records::{StatsQuery, StatsRows};
use crate::store::rows::{self, Columns};
use crate::store::stats_sql::{self, stats_sql};

type Values = Vec<Box<dyn ToSql + Sync + Send>>;

macro_rules! values {
    ($($v:expr),+) => { vec![$(Box::new($v) as Box<dyn ToSql + Sync + Send>),+] };
}

/// Adds a released batch to the rollups, in the caller's transaction. The upserts go out
/// together: the connection pipelines them, so a batch costs a round trip or two, not one
/// per row.
pub(super) async fn add_rollup(tx: &impl Q, mut r: Rollup) -> StoreResult<()> {
    if r.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = r.accounts.keys().copied().collect();
    let exist: BTreeSet<i64> =
        all(tx, "SELECT id FROM campaigns WHERE id = ANY($1)", &[&ids], |r| r.int(0)).await?.into_iter().collect();
    r.retain_campaigns(&exist);
    let (add_series, add_link, add_reason) =
        (numbered(stats_sql::ADD_SERIES), numbered(stats_sql::ADD_LINK), numbered(stats_sql::ADD_REASON));
    let (clicker_quarter, clicker_day) =
        (numbered(stats_sql::add_clicker(Span::Quarter)), numbered(stats_sql::add_clicker(Span::Day)));
    let clicker_sql = |span: Span| if span == Span::Day { clicker_day.as_str() } else { clicker_quarter.as_str() };
    let mut statements: Vec<(&str, Values)> = Vec::new();
    for (b, n) in &r.series {
        statements.push((&add_series, values![b.campaign_id, b.span.code(), b.start, n.human, n.bot]));
    }
    for ((b, step, url), n) in &r.links {
        statements
            .push((&add_link, values![b.campaign_id, b.span.code(), b.start, *step, url.clone(), n.human, n.bot]));
    }
    for ((b, reason), n) in &r.reasons {
        statements.push((&add_reason, values![b.campaign_id, b.span.code(), b.start, reason.clone(), *n]));
    }
    for (b, step, prospect) in &r.clickers {
        statements.push((clicker_sql(b.span), values![b.campaign_id, b.start, *step, *prospect]));
    }
    let params: Vec<Vec<Param>> =
        statements.iter().map(|(_, v)| v.iter().map(|x| x.as_ref() as Param).collect()).collect();
    let writes = statements.iter().zip(&params).map(|((sql, _), p)| exec(tx, sql, p));
    try_join_all(writes).await.map(drop)
}

/// Counts emails sent, in the caller's transaction.
pub(super) async fn add_emails(tx: &impl Q, emails: impl IntoIterator<Item = (i64, i64, i64)>) -> StoreResult<()> {
    let sql = numbered(stats_sql::ADD_EMAILS);
    let rows: Vec<[i64; 5]> = stats::emails_rollup(emails)
        .into_iter()
        .map(|((b, step), n)| [b.campaign_id, b.span.code(), b.start, step, n])
        .collect();
    let params: Vec<Vec<Param>> = rows.iter().map(|v| v.iter().map(|x| x as Param).collect()).collect();
    try_join_all(params.iter().map(|p| exec(tx, &sql, p))).await.map(drop)
}

/// Counts what a store from before statistics released and sent, in the migration's
/// transaction, a chunk at a time, with the rules the settler and the email path use.
pub(super) async fn backfill(tx: &impl Q) -> StoreResult<()> {
    let released = numbered(&stats_sql::RELEASED_AFTER.replace("{yes}", DIALECT.yes));
    let mut after = 0i64;
    loop {
        let chunk = all(tx, &released, &[&after, &stats_sql::BACKFILL_CHUNK], rows::counted).await?;
        let Some(last) = chunk.last() else { break };
        after = last.0;
        add_rollup(tx, Rollup::of(chunk.iter().map(|c| &c.1))).await?;
    }
    let emails = numbered(stats_sql::EMAILS_AFTER);
    let mut after = 0i64;
    loop {
        let chunk = all(tx, &emails, &[&after, &stats_sql::BACKFILL_CHUNK], |r| {
            Ok((r.int(0)?, r.int(1)?, r.int(2)?, r.int(3)?))
        })
        .await?;
        let Some(last) = chunk.last() else { break };
        after = last.0;
        add_emails(tx, chunk.iter().map(|e| (e.1, e.2, e.3))).await?;
    }
    Ok(())
}

async fn rows<T>(c: &impl Q, w: &Where, map: impl Fn(&dyn Columns) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    let values = bind(w);
    let params: Vec<Param> = values.iter().map(|v| v.as_ref() as Param).collect();
    all(c, &numbered(&w.sql), &params, map).await
}

#[async_trait]
impl StatsStore for PgStore {
    async fn count_released(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn stats(&self, q: StatsQuery) -> StoreResult<StatsRows> {
        let mut c = self.pool.get().await?;
        // One snapshot for every part of the answer.
        let tx = c.build_transaction().read_only(true).isolation_level(tokio_postgres::IsolationLevel::RepeatableRead);
        let tx = tx.start().await.map_err(pg)?;
        let sql = stats_sql(&DIALECT, &q);
        let out = StatsRows {
            emails: rows(&tx, &sql.emails, |r| Ok((r.int(0)?, r.int(1)?))).await?,
            links: rows(&tx, &sql.links, |r| Ok((r.int(0)?, r.text(1)?, r.int(2)?, r.int(3)?))).await?,
            reasons: rows(&tx, &sql.reasons, |r| Ok((r.text(0)?, r.int(1)?))).await?,
            clickers: {
                let mut pairs = Vec::new();
                for part in &sql.clickers {
                    pairs.extend(rows(&tx, part, |r| Ok((r.int(0)?, r.int(1)?))).await?);
                }
                pairs
            },
            series: rows(&tx, &sql.series, |r| Ok((r.int(0)?, r.int(1)?, r.int(2)?))).await?,
        };
        tx.commit().await.map_err(pg)?;
        Ok(out)
    }
}

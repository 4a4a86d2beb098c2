//! Click statistics on PostgreSQL: the rollups' reads, and how a released batch is added.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::future::try_join_all;

use super::pool::{all, bind, exec, numbered, pg, Param, DIALECT, Q};
use super::PgStore;
use crate::domain::stats::{self, Rollup, Span};
use crate::store::error::StoreResult;
use crate::store::lists::Where;
use crate::store::parts::StatsStore;
use crate::store::records::{StatsQuery, StatsRows};
use crate::store::rows::{self, Columns};
use crate::store::stats_sql::{self, stats_sql};

/// Adds a released batch to the rollups, in the caller's transaction: one statement per table,
/// its rows as arrays. A round of 4,000 clicks on distinct links makes about 7,000 rollup rows;
/// as one pipelined upsert each they took most of a release's time, on the client as much as
/// on the server.
pub(super) async fn add_rollup(tx: &impl Q, mut r: Rollup) -> StoreResult<()> {
    if r.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = r.accounts.keys().copied().collect();
    let exist: BTreeSet<i64> =
        all(tx, "SELECT id FROM campaigns WHERE id = ANY($1)", &[&ids], |r| r.int(0)).await?.into_iter().collect();
    r.retain_campaigns(&exist);

    let mut series: [Vec<i64>; 5] = Default::default();
    for (b, n) in &r.series {
        push_row(&mut series, [b.campaign_id, b.span.code(), b.start, n.human, n.bot]);
    }
    let (mut links, mut urls): ([Vec<i64>; 6], Vec<&str>) = Default::default();
    for ((b, step, url), n) in &r.links {
        push_row(&mut links, [b.campaign_id, b.span.code(), b.start, *step, n.human, n.bot]);
        urls.push(url);
    }
    let (mut reasons, mut texts): ([Vec<i64>; 4], Vec<&str>) = Default::default();
    for ((b, reason), n) in &r.reasons {
        push_row(&mut reasons, [b.campaign_id, b.span.code(), b.start, *n]);
        texts.push(reason);
    }
    let (mut quarter, mut day): ([Vec<i64>; 4], [Vec<i64>; 4]) = Default::default();
    for (b, step, prospect) in &r.clickers {
        push_row(if b.span == Span::Day { &mut day } else { &mut quarter }, [b.campaign_id, b.start, *step, *prospect]);
    }
    let series_sql = "INSERT INTO stats_series (campaign_id, span, bucket, human, bot) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) \
         ON CONFLICT (campaign_id, span, bucket) \
         DO UPDATE SET human = stats_series.human + excluded.human, bot = stats_series.bot + excluded.bot";
    let links_sql = "INSERT INTO stats_links (campaign_id, span, bucket, step, url, human, bot) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], \
                              $7::bigint[]) \
         ON CONFLICT (campaign_id, span, bucket, step, url) \
         DO UPDATE SET human = stats_links.human + excluded.human, bot = stats_links.bot + excluded.bot";
    let reasons_sql = "INSERT INTO stats_reasons (campaign_id, span, bucket, reason, clicks) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) \
         ON CONFLICT (campaign_id, span, bucket, reason) DO UPDATE SET clicks = stats_reasons.clicks + excluded.clicks";
    // The prospect may have been deleted since the email went out: then there is no one to count.
    let clickers_sql = |table: &str| {
        format!(
            "INSERT INTO {table} (campaign_id, bucket, step, prospect_id) \
             SELECT u.campaign_id, u.bucket, u.step, p.id \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(campaign_id, bucket, step, prospect) \
             JOIN prospects p ON p.id = u.prospect ON CONFLICT DO NOTHING"
        )
    };
    let (quarter_sql, day_sql) = (clickers_sql("stats_clickers_quarter"), clickers_sql("stats_clickers_day"));
    // (statement, its parameters, how many rows it adds)
    let statements: [(&str, Vec<Param>, usize); 5] = [
        (series_sql, vec![&series[0], &series[1], &series[2], &series[3], &series[4]], series[0].len()),
        (links_sql, vec![&links[0], &links[1], &links[2], &links[3], &urls, &links[4], &links[5]], urls.len()),
        (reasons_sql, vec![&reasons[0], &reasons[1], &reasons[2], &texts, &reasons[3]], texts.len()),
        (&quarter_sql, vec![&quarter[0], &quarter[1], &quarter[2], &quarter[3]], quarter[0].len()),
        (&day_sql, vec![&day[0], &day[1], &day[2], &day[3]], day[0].len()),
    ];
    let writes = statements.iter().filter(|(_, _, rows)| *rows > 0).map(|(sql, p, _)| exec(tx, sql, p));
    try_join_all(writes).await.map(drop)
}

/// Appends one row to columns kept as arrays.
fn push_row<const N: usize>(columns: &mut [Vec<i64>; N], row: [i64; N]) {
    for (column, value) in columns.iter_mut().zip(row) {
        column.push(value);
    }
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

//! Clicks and settling on PostgreSQL.
//!
//! Clicks arrive a group at a time ([`super::click_writer`]); settling and the clicks list
//! take groups into `clicks` before they read. Unjudged clicks are found by a partial index,
//! since ids from several nodes may commit out of order.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::click_writer::{by_index, take_in_groups};
use super::common::load_enrollment;
use super::common::load_prospect;
use super::pool::{all, exec, one, page, pg, DIALECT, Q};
use super::PgStore;
use crate::domain::click::HistoryPrune;
use crate::domain::stats::Rollup;
use crate::domain::{now_millis, Millis};
use crate::store::error::{StoreError, StoreResult};
use crate::store::lists;
use crate::store::parts::ClickStore;
use crate::store::records::*;
use crate::store::rows::{self, to_json, EVENT_HEAD};

/// Events are inserted under this lock so that their ids become visible in order
/// (subscription cursors read them in order).
const EVENT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('clickhook.events.' || current_schema()))";

/// At most this many clicks are taken in from their groups by a list request.
const LIST_TAKES_IN: i64 = 10_000;

async fn event_context(c: &impl Q, email_id: i64) -> StoreResult<Option<EventContext>> {
    let Some(mut ctx) = one(c, &format!("{EVENT_HEAD}$1"), &[&email_id], rows::event_context).await? else {
        return Ok(None);
    };
    let Some(prospect) = load_prospect(c, ctx.account_id, ctx.prospect.id).await? else { return Ok(None) };
    let Some(enrollment) = load_enrollment(c, ctx.campaign_id, prospect.id).await? else { return Ok(None) };
    (ctx.prospect, ctx.enrollment) = (prospect, enrollment);
    Ok(Some(ctx))
}

/// Applies overrules, each guarded by the reasons it was computed from.
async fn apply_overrules(tx: &impl Q, overruled: &[Overrule]) -> StoreResult<()> {
    if overruled.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = overruled.iter().map(|o| o.click_id).collect();
    let verdicts: Vec<&str> = overruled.iter().map(|o| o.verdict.as_str()).collect();
    let reasons: Vec<String> = overruled.iter().map(|o| to_json(&o.reasons)).collect::<StoreResult<_>>()?;
    let was: Vec<&str> = overruled.iter().map(|o| o.was.as_str()).collect();
    let sql = "UPDATE clicks c SET verdict = u.verdict, reasons = u.reasons \
               FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, verdict, reasons, was) \
               WHERE c.id = u.id AND NOT c.released AND c.reasons = u.was";
    exec(tx, sql, &[&ids, &verdicts, &reasons, &was]).await.map(drop)
}

/// First judgements as the columns of their rows, for `unnest`.
#[derive(Default)]
struct History {
    ids: Vec<i64>,
    verdicts: Vec<&'static str>,
    reasons: Vec<String>,
    emails: Vec<i64>,
    ats: Vec<i64>,
    links: Vec<i64>,
    honeypots: Vec<bool>,
}

impl History {
    fn push(&mut self, j: &Judgement) -> StoreResult<()> {
        self.ids.push(j.click.click_id);
        self.verdicts.push(j.verdict.as_str());
        self.reasons.push(to_json(&j.reasons)?);
        self.emails.push(j.click.email_id);
        self.ats.push(j.click.at);
        self.links.push(j.click.link_no);
        self.honeypots.push(j.click.honeypot);
        Ok(())
    }
}

/// Drops the burst history that no window reaches once clicks made at `judged_at` are judged.
async fn prune_history(tx: &impl Q, judged_at: &[Millis]) -> StoreResult<()> {
    if let Some(p) = HistoryPrune::after(judged_at) {
        let sql = "DELETE FROM email_clicks WHERE id IN (SELECT id FROM email_clicks ORDER BY id LIMIT $2) AND at < $1";
        exec(tx, sql, &[&p.before, &p.oldest_rows]).await?;
    }
    Ok(())
}

#[async_trait]
impl ClickStore for PgStore {
    async fn record_click(&self, click: NewClick) -> StoreResult<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.clicks.send((click, tx)).map_err(|_| StoreError::closed())?;
        rx.await.map_err(|_| StoreError::closed())?
    }

    async fn list_clicks(&self, account_id: i64, q: ClickQuery) -> StoreResult<(i64, Vec<ClickRecord>)> {
        let c = self.pool.get().await?;
        // The clicks answered a moment ago are listed too, unjudged, unless settling is far
        // behind: then the newest wait their turn (taking in the whole backlog here would make
        // a list request as slow as settling it).
        take_in_groups(&c, LIST_TAKES_IN).await?;
        page(&*c, &lists::clicks_paged(&DIALECT, account_id, &q), (q.limit, q.offset), rows::click_record).await
    }

    async fn pending_clicks(&self, limit: i64, held: Vec<i64>) -> StoreResult<Vec<PendingClick>> {
        let mut c = self.pool.get().await?;
        take_in_groups(&c, limit).await?;
        let tx = by_index(&mut c).await?;
        // The limit applies before the joins, so a round reads `limit` clicks, not the backlog.
        // Ids may commit out of order here: the held ones are left out one by one, not by the
        // last of them (the array is hashed; the index walks past them).
        let sql = "SELECT c.id, coalesce(e.account_id, 0), c.email_id, c.link_no, c.at, c.head, c.ip, c.user_agent, \
                   coalesce(e.sent_at, 0), coalesce(l.honeypot, FALSE), a.click_filter, coalesce(l.url, ''), \
                   e.campaign_id, e.step, e.prospect_id \
                   FROM (SELECT * FROM clicks WHERE verdict IS NULL AND id <> ALL($2) ORDER BY id LIMIT $1) c \
                   LEFT JOIN emails e ON e.id = c.email_id \
                   LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                   LEFT JOIN accounts a ON a.id = e.account_id \
                   ORDER BY c.id";
        let filters = rows::Filters::default();
        let pending = all(&tx, sql, &[&limit, &held], |r| rows::pending_click(r, &filters)).await?;
        tx.commit().await.map_err(pg)?;
        Ok(pending)
    }

    async fn burst_windows(&self) -> StoreResult<HashMap<i64, Millis>> {
        let c = self.pool.get().await?;
        let windows = all(&*c, "SELECT id, click_filter FROM accounts", &[], rows::burst_window).await?;
        Ok(windows.into_iter().collect())
    }

    async fn judged_since(&self, since: Millis) -> StoreResult<Vec<JudgedClick>> {
        let mut c = self.pool.get().await?;
        let tx = by_index(&mut c).await?;
        let sql = "SELECT e.click_id, e.email_id, e.link_no, e.at, e.honeypot, c.released, c.reasons, c.account_id \
                   FROM email_clicks e JOIN clicks c ON c.id = e.click_id WHERE e.at >= $1";
        let judged = all(&tx, sql, &[&since], rows::judged_click).await?;
        tx.commit().await.map_err(pg)?;
        Ok(judged)
    }

    async fn held_verdicts(&self, ids: Vec<i64>) -> StoreResult<Vec<HeldVerdict>> {
        let c = self.pool.get().await?;
        let sql = "SELECT id, verdict, reasons FROM clicks WHERE id = ANY($1) AND verdict IS NOT NULL AND NOT released";
        all(&*c, sql, &[&ids], rows::held_verdict).await
    }

    async fn judge_clicks(&self, judged: Vec<Judgement>, overruled: Vec<Overrule>) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let mut h = History::default();
        for j in &judged {
            h.push(j)?;
        }
        // Only clicks this call judges enter the burst history: another node may have judged some.
        let sql = "WITH j AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                     $6::bigint[], $7::bool[]) AS j(click_id, verdict, reasons, email_id, at, link_no, honeypot)), \
                   judged AS (UPDATE clicks c SET verdict = j.verdict, reasons = j.reasons FROM j \
                     WHERE c.id = j.click_id AND c.verdict IS NULL RETURNING c.id) \
                   INSERT INTO email_clicks (click_id, email_id, at, link_no, honeypot) \
                   SELECT j.click_id, j.email_id, j.at, j.link_no, j.honeypot FROM j JOIN judged ON judged.id = j.click_id \
                   ORDER BY j.click_id";
        let params: [&(dyn ToSql + Sync); 7] =
            [&h.ids, &h.verdicts, &h.reasons, &h.emails, &h.ats, &h.links, &h.honeypots];
        exec(&tx, sql, &params).await?;
        apply_overrules(&tx, &overruled).await?;
        prune_history(&tx, &h.ats).await?;
        tx.commit().await.map_err(pg)
    }

    async fn held_clicks(&self, frontier: i64, limit: i64) -> StoreResult<Vec<HeldClick>> {
        let mut c = self.pool.get().await?;
        let tx = by_index(&mut c).await?;
        let sql = "SELECT c.id, c.account_id, c.email_id, coalesce(l.url, ''), c.at, c.verdict, a.click_filter, \
                          e.campaign_id, e.step, e.prospect_id, c.reasons \
                   FROM clicks c LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                   LEFT JOIN accounts a ON a.id = c.account_id LEFT JOIN emails e ON e.id = c.email_id \
                   WHERE c.verdict IS NOT NULL AND NOT c.released AND c.at <= $1 ORDER BY c.at LIMIT $2";
        let held = all(&tx, sql, &[&frontier, &limit], rows::held_click).await?;
        tx.commit().await.map_err(pg)?;
        Ok(held)
    }

    async fn event_contexts(&self, email_ids: Vec<i64>) -> StoreResult<HashMap<i64, EventContext>> {
        let c = self.pool.get().await?;
        // All at once: the queries are pipelined on the one connection, not a round trip each.
        let contexts = futures::future::join_all(email_ids.iter().map(|&id| event_context(&*c, id))).await;
        let mut out = HashMap::new();
        for (id, ctx) in email_ids.into_iter().zip(contexts) {
            if let Some(ctx) = ctx? {
                out.insert(id, ctx);
            }
        }
        Ok(out)
    }

    async fn release_clicks(&self, released: Vec<Release>) -> StoreResult<()> {
        if released.is_empty() {
            return Ok(());
        }
        // Held in the store: only the release flag. Held in memory: verdict and flag at once,
        // and the burst history's row.
        let held: Vec<i64> = released.iter().filter(|r| r.judged.is_none()).map(|r| r.click_id).collect();
        let mut first = History::default();
        for j in released.iter().filter_map(|r| r.judged.as_ref()) {
            first.push(j)?;
        }
        let (mut accounts, mut clicks, mut payloads, mut occurred) = (vec![], vec![], vec![], vec![]);
        for r in &released {
            if let Some(payload) = &r.event {
                accounts.push(r.account_id);
                clicks.push(r.click_id);
                payloads.push(payload.as_str());
                occurred.push(r.clicked_at);
            }
        }
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        exec(&tx, EVENT_LOCK, &[]).await?;
        // Only clicks this call releases get an event: another node may have released some.
        let sql = "WITH j AS (SELECT * FROM unnest($7::bigint[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], \
                     $12::bigint[], $13::bool[]) AS j(click_id, verdict, reasons, email_id, at, link_no, honeypot)), \
                   judged AS (UPDATE clicks c SET verdict = j.verdict, reasons = j.reasons, released = TRUE FROM j \
                     WHERE c.id = j.click_id AND c.verdict IS NULL RETURNING c.id), \
                   history AS (INSERT INTO email_clicks (click_id, email_id, at, link_no, honeypot) \
                     SELECT j.click_id, j.email_id, j.at, j.link_no, j.honeypot FROM j JOIN judged ON judged.id = j.click_id \
                     ORDER BY j.click_id), \
                   held AS (UPDATE clicks SET released = TRUE WHERE id = ANY($1) AND NOT released RETURNING id), \
                   newly AS (SELECT id FROM judged UNION ALL SELECT id FROM held), \
                   written AS (INSERT INTO events (account_id, click_id, created_at, payload, occurred_at) \
                   SELECT u.account_id, u.click_id, $6, u.payload, u.occurred_at \
                   FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) AS u(account_id, click_id, payload, occurred_at) \
                   JOIN newly ON newly.id = u.click_id ORDER BY u.occurred_at, u.click_id \
                   ON CONFLICT (click_id) DO NOTHING) \
                   SELECT id FROM newly";
        let now = now_millis();
        let params: [&(dyn ToSql + Sync); 13] = [
            &held,
            &accounts,
            &clicks,
            &payloads,
            &occurred,
            &now,
            &first.ids,
            &first.verdicts,
            &first.reasons,
            &first.emails,
            &first.ats,
            &first.links,
            &first.honeypots,
        ];
        let newly: std::collections::HashSet<i64> = all(&tx, sql, &params, |r| r.int(0)).await?.into_iter().collect();
        prune_history(&tx, &first.ats).await?;
        let counted = released.iter().filter(|r| newly.contains(&r.click_id)).filter_map(|r| r.counted.as_ref());
        super::stats::add_rollup(&tx, Rollup::of(counted)).await?;
        tx.commit().await.map_err(pg)
    }

    async fn forget_orphan_clicks(&self, ids: Vec<i64>) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let sql =
            "DELETE FROM clicks c WHERE c.id = ANY($1) AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.id = c.email_id)";
        exec(&*c, sql, &[&ids]).await.map(drop)
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let c = self.pool.get().await?;
        let sql = "SELECT (SELECT count(*) FROM clicks WHERE verdict IS NULL) \
                   + (SELECT coalesce(sum(clicks), 0) FROM click_groups) \
                   + (SELECT count(*) FROM clicks WHERE verdict IS NOT NULL AND NOT released)";
        let r = c.query_one(sql, &[]).await.map_err(pg)?;
        Ok(OutboxDepth { clicks_pending: r.get(0) })
    }

    async fn prune_clicks(&self, before: Millis, limit: i64) -> StoreResult<u64> {
        let c = self.pool.get().await?;
        // The oldest clicks only: ids grow with time, so the old ones are at the front, and a
        // step never scans more than `limit` rows whether anything is due or not.
        let sql = "DELETE FROM clicks WHERE id IN (SELECT id FROM (SELECT id, at, verdict, released FROM clicks \
                   ORDER BY id LIMIT $2) o WHERE at < $1 AND verdict IS NOT NULL AND released)";
        exec(&*c, sql, &[&before, &limit]).await
    }
}

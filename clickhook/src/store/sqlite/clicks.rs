//! Clicks and settling on SQLite.
//!
//! Clicks go in through the writer's group commit ([`super::writer`]). Unjudged clicks are
//! found from a stored frontier (`settle_frontier`), not an index: one writer commits clicks
//! in id order and the settler judges them in id order, so every click below it is judged.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::common::load_enrollment;
use super::common::load_prospect;
use super::sql::{all, exec, ids_json, one, page, value, DIALECT};
use super::SqliteStore;
use crate::domain::click::HistoryPrune;
use crate::domain::{now_millis, Millis};
use crate::store::error::StoreResult;
use crate::store::lists;
use crate::store::parts::ClickStore;
use crate::store::records::*;
use crate::store::rows::{self, to_json, EVENT_HEAD};

fn event_context(conn: &Connection, email_id: i64) -> StoreResult<Option<EventContext>> {
    let Some(mut ctx) = one(conn, &format!("{EVENT_HEAD}?1"), [email_id], rows::event_context)? else {
        return Ok(None);
    };
    let Some(prospect) = load_prospect(conn, ctx.account_id, ctx.prospect.id)? else { return Ok(None) };
    let Some(enrollment) = load_enrollment(conn, ctx.campaign_id, prospect.id)? else { return Ok(None) };
    (ctx.prospect, ctx.enrollment) = (prospect, enrollment);
    Ok(Some(ctx))
}

/// A judged click's row in the burst history.
fn insert_history(conn: &Connection, c: &NearbyClick) -> StoreResult<()> {
    let sql = "INSERT INTO email_clicks (click_id, email_id, at, link_no, honeypot) VALUES (?1, ?2, ?3, ?4, ?5)";
    exec(conn, sql, params![c.click_id, c.email_id, c.at, c.link_no, c.honeypot]).map(drop)
}

/// Once clicks made at `judged_at` have their verdicts: the frontier moves past them (a short
/// rowid scan from where it was), and the burst history drops what no window reaches.
fn after_judging(conn: &Connection, judged_at: &[Millis]) -> StoreResult<()> {
    let frontier = "UPDATE settle_frontier SET next_unjudged = coalesce( \
                      (SELECT min(id) FROM clicks WHERE id >= next_unjudged AND verdict IS NULL), \
                      (SELECT coalesce(max(id), 0) + 1 FROM clicks))";
    exec(conn, frontier, [])?;
    if let Some(p) = HistoryPrune::after(judged_at) {
        let sql = "DELETE FROM email_clicks WHERE rowid IN \
                   (SELECT rowid FROM email_clicks ORDER BY rowid LIMIT ?2) AND at < ?1";
        exec(conn, sql, [p.before, p.oldest_rows])?;
    }
    Ok(())
}

#[async_trait]
impl ClickStore for SqliteStore {
    async fn record_click(&self, click: NewClick) -> StoreResult<()> {
        self.writer.click(click).await
    }

    async fn list_clicks(&self, account_id: i64, q: ClickQuery) -> StoreResult<(i64, Vec<ClickRecord>)> {
        self.read(move |conn| {
            page(conn, &lists::clicks_paged(&DIALECT, account_id, &q), (q.limit, q.offset), rows::click_record)
        })
        .await
    }

    async fn pending_clicks(&self, limit: i64, held: Vec<i64>) -> StoreResult<Vec<PendingClick>> {
        // One writer commits clicks in id order and the settler reads them in order and judges
        // every one it reads: the clicks it holds are all those unjudged up to the last it holds.
        let after = held.last().copied().unwrap_or(0);
        self.read(move |conn| {
            let sql =
                "SELECT c.id, coalesce(e.account_id, 0), c.email_id, c.link_no, c.at, c.head, c.ip, c.user_agent, \
                       coalesce(e.sent_at, 0), coalesce(l.honeypot, 0), a.click_filter, coalesce(l.url, ''), \
                       e.campaign_id, e.step, e.prospect_id \
                       FROM clicks c LEFT JOIN emails e ON e.id = c.email_id \
                       LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                       LEFT JOIN accounts a ON a.id = e.account_id \
                       WHERE c.id >= max((SELECT next_unjudged FROM settle_frontier), ?2 + 1) AND c.verdict IS NULL \
                       ORDER BY c.id LIMIT ?1";
            all(conn, sql, [limit, after], rows::pending_click)
        })
        .await
    }

    async fn burst_windows(&self) -> StoreResult<HashMap<i64, Millis>> {
        self.read(|conn| {
            Ok(all(conn, "SELECT id, click_filter FROM accounts", [], rows::burst_window)?.into_iter().collect())
        })
        .await
    }

    async fn judged_since(&self, since: Millis) -> StoreResult<Vec<JudgedClick>> {
        self.read(move |conn| {
            let sql =
                "SELECT e.click_id, e.email_id, e.link_no, e.at, e.honeypot, c.released, c.reasons, c.account_id \
                       FROM email_clicks e JOIN clicks c ON c.id = e.click_id WHERE e.at >= ?1";
            all(conn, sql, [since], rows::judged_click)
        })
        .await
    }

    async fn held_verdicts(&self, ids: Vec<i64>) -> StoreResult<Vec<HeldVerdict>> {
        self.read(move |conn| {
            let sql = "SELECT id, verdict, reasons FROM clicks WHERE id IN (SELECT value FROM json_each(?1)) \
                       AND verdict IS NOT NULL AND released = 0";
            all(conn, sql, [ids_json(&ids)], rows::held_verdict)
        })
        .await
    }

    async fn judge_clicks(&self, judged: Vec<Judgement>, overruled: Vec<Overrule>) -> StoreResult<()> {
        self.write_background(move |conn| {
            for j in &judged {
                let sql = "UPDATE clicks SET verdict = ?2, reasons = ?3 WHERE id = ?1 AND verdict IS NULL";
                if exec(conn, sql, params![j.click.click_id, j.verdict.as_str(), to_json(&j.reasons)?])? == 0 {
                    continue; // another settler was first
                }
                insert_history(conn, &j.click)?;
            }
            for o in &overruled {
                let sql =
                    "UPDATE clicks SET verdict = ?2, reasons = ?3 WHERE id = ?1 AND released = 0 AND reasons = ?4";
                exec(conn, sql, params![o.click_id, o.verdict.as_str(), to_json(&o.reasons)?, o.was])?;
            }
            let ats: Vec<i64> = judged.iter().map(|j| j.click.at).collect();
            after_judging(conn, &ats)
        })
        .await
    }

    async fn held_clicks(&self, frontier: i64, limit: i64) -> StoreResult<Vec<HeldClick>> {
        self.read(move |conn| {
            let sql = "SELECT c.id, c.account_id, c.email_id, coalesce(l.url, ''), c.at, c.verdict, a.click_filter, \
                              e.campaign_id, e.step, e.prospect_id, c.reasons \
                       FROM clicks c LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                       LEFT JOIN accounts a ON a.id = c.account_id LEFT JOIN emails e ON e.id = c.email_id \
                       WHERE c.verdict IS NOT NULL AND c.released = 0 AND c.at <= ?1 ORDER BY c.at LIMIT ?2";
            all(conn, sql, params![frontier, limit], rows::held_click)
        })
        .await
    }

    async fn event_contexts(&self, email_ids: Vec<i64>) -> StoreResult<HashMap<i64, EventContext>> {
        self.read(move |conn| {
            let mut out = HashMap::new();
            for id in email_ids {
                if let Some(ctx) = event_context(conn, id)? {
                    out.insert(id, ctx);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn release_clicks(&self, released: Vec<Release>) -> StoreResult<()> {
        self.write_background(move |conn| {
            let now = now_millis();
            let mut counted = Vec::with_capacity(released.len());
            let mut first_judged = Vec::new();
            let mut last = 0;
            for r in &released {
                let newly = match &r.judged {
                    None => exec(conn, "UPDATE clicks SET released = 1 WHERE id = ?1 AND released = 0", [r.click_id])?,
                    Some(j) => {
                        let sql = "UPDATE clicks SET verdict = ?2, reasons = ?3, released = 1 \
                                   WHERE id = ?1 AND verdict IS NULL";
                        let n = exec(conn, sql, params![r.click_id, j.verdict.as_str(), to_json(&j.reasons)?])?;
                        if n > 0 {
                            insert_history(conn, &j.click)?;
                            first_judged.push(j.click.at);
                        }
                        n
                    }
                };
                if newly == 0 {
                    continue; // another settler was first
                }
                last = last.max(r.click_id);
                if let Some(payload) = &r.event {
                    let sql = "INSERT INTO events (account_id, click_id, created_at, payload, occurred_at) \
                               VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (click_id) DO NOTHING";
                    exec(conn, sql, params![r.account_id, r.click_id, now, payload, r.clicked_at])?;
                }
                counted.push(r);
            }
            if !first_judged.is_empty() {
                after_judging(conn, &first_judged)?;
            }
            if last > 0 {
                let sql = "UPDATE settle_frontier SET released_below = max(released_below, ?1 + 1)";
                exec(conn, sql, [last])?;
            }
            // Most are counted behind, by a pass (see `super::stats`).
            super::stats::count_releases(conn, counted)
        })
        .await
    }

    async fn forget_orphan_clicks(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.write_background(move |conn| {
            let sql = "DELETE FROM clicks WHERE id IN (SELECT value FROM json_each(?1)) \
                       AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.id = clicks.email_id)";
            exec(conn, sql, [ids_json(&ids)]).map(drop)
        })
        .await
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        self.read(|conn| {
            let pending =
                "SELECT (SELECT count(*) FROM clicks WHERE id >= (SELECT next_unjudged FROM settle_frontier) \
                             AND verdict IS NULL) \
                           + (SELECT count(*) FROM clicks WHERE verdict IS NOT NULL AND released = 0)";
            Ok(OutboxDepth { clicks_pending: value(conn, pending, [])? })
        })
        .await
    }

    async fn prune_clicks(&self, before: Millis, limit: i64) -> StoreResult<u64> {
        self.write_background(move |conn| {
            // The oldest clicks only: ids grow with time, so the old ones are at the front, and a
            // step never scans more than `limit` rows whether anything is due or not. Only
            // clicks the statistics have counted.
            let sql = "DELETE FROM clicks WHERE id IN (SELECT id FROM (SELECT id, at, verdict, released FROM clicks \
                       ORDER BY id LIMIT ?2) WHERE at < ?1 AND verdict IS NOT NULL AND released = 1 \
                       AND id < (SELECT next FROM stats_cursor))";
            Ok(exec(conn, sql, params![before, limit])? as u64)
        })
        .await
    }
}

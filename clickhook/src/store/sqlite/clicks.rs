//! Clicks and settling on SQLite.
//!
//! Clicks go in through the writer's group commit ([`super::writer`]). Unjudged clicks are
//! found from a stored frontier (`settle_frontier`), not an index: one writer commits clicks
//! in id order and the settler judges them in id order, so every click below it is judged.
//! For the same reason the burst history is the judged clicks themselves, found by id: the
//! clicks of a time window are a run of ids, and no row or index entry is kept for it.

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::common::load_enrollment;
use super::common::load_prospect;
use super::sql::{all, exec, ids_json, one, page, value, DIALECT};
use super::SqliteStore;
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

/// How long a click may wait between its stamp and its commit, at most, as the burst history
/// assumes: a click stamped earlier than this before the one committed just before it is not
/// in the history read at a settler's start (the settler keeps what it judges from then on).
/// Clicks wait milliseconds for their group commit; seconds only when the disk stalls.
const STAMP_TO_COMMIT_MS: Millis = 10_000;

/// The first id from which every click made at or after `since` follows: a binary search by
/// id, since ids grow in commit order and a click's time with them, give or take
/// [`STAMP_TO_COMMIT_MS`].
fn first_click_since(conn: &Connection, since: Millis) -> StoreResult<i64> {
    let stamp = since.saturating_sub(STAMP_TO_COMMIT_MS);
    let next = "SELECT id, at FROM clicks WHERE id >= ?1 ORDER BY id LIMIT 1";
    let (mut lo, mut hi): (i64, i64) = (0, value(conn, "SELECT coalesce(max(id), 0) + 1 FROM clicks", [])?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match one(conn, next, [mid], |r| Ok((r.int(0)?, r.int(1)?)))? {
            Some((id, at)) if at < stamp => lo = id + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Once clicks have their verdicts, the frontier moves past them (a short rowid scan from
/// where it was).
fn after_judging(conn: &Connection) -> StoreResult<()> {
    let frontier = "UPDATE settle_frontier SET next_unjudged = coalesce( \
                      (SELECT min(id) FROM clicks WHERE id >= next_unjudged AND verdict IS NULL), \
                      (SELECT coalesce(max(id), 0) + 1 FROM clicks))";
    exec(conn, frontier, []).map(drop)
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
            let filters = rows::Filters::default();
            all(conn, sql, [limit, after], |r| rows::pending_click(r, &filters))
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
            let sql = "SELECT c.id, c.email_id, c.link_no, c.at, coalesce(l.honeypot, 0), c.released, c.reasons, \
                              c.account_id \
                       FROM clicks c LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                       WHERE c.id >= ?1 AND c.at >= ?2 AND c.verdict IS NOT NULL";
            all(conn, sql, [first_click_since(conn, since)?, since], rows::judged_click)
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
                exec(conn, sql, params![j.click.click_id, j.verdict.as_str(), to_json(&j.reasons)?])?;
            }
            for o in &overruled {
                let sql =
                    "UPDATE clicks SET verdict = ?2, reasons = ?3 WHERE id = ?1 AND released = 0 AND reasons = ?4";
                exec(conn, sql, params![o.click_id, o.verdict.as_str(), to_json(&o.reasons)?, o.was])?;
            }
            after_judging(conn)
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
            let mut first_judged = false;
            let mut last = 0;
            for r in &released {
                let newly = match &r.judged {
                    None => exec(conn, "UPDATE clicks SET released = 1 WHERE id = ?1 AND released = 0", [r.click_id])?,
                    Some(j) => {
                        let sql = "UPDATE clicks SET verdict = ?2, reasons = ?3, released = 1 \
                                   WHERE id = ?1 AND verdict IS NULL";
                        let n = exec(conn, sql, params![r.click_id, j.verdict.as_str(), to_json(&j.reasons)?])?;
                        first_judged |= n > 0;
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
            if first_judged {
                after_judging(conn)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Clicks at the given (id, at), in a fresh schema.
    fn clicks(rows: &[(i64, Millis)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&conn).unwrap();
        for (id, at) in rows {
            let sql = "INSERT INTO clicks (id, account_id, email_id, link_no, at) VALUES (?1, 1, 1, 0, ?2)";
            conn.execute(sql, [id, at]).unwrap();
        }
        conn
    }

    #[test]
    fn the_history_starts_at_the_first_click_stamped_within_the_commit_wait() {
        // Gaps in the ids (deleted clicks) and a click stamped a moment before the one
        // committed ahead of it.
        let conn = clicks(&[(3, 1_000), (4, 1_500), (9, 30_000), (10, 29_990), (17, 45_000), (40, 90_000)]);
        // The first click the history reads from there.
        let first = |since| {
            let from = first_click_since(&conn, since).unwrap();
            conn.query_row("SELECT min(id) FROM clicks WHERE id >= ?1", [from], |r| r.get::<_, Option<i64>>(0)).unwrap()
        };
        assert_eq!(first(0), Some(3));
        assert_eq!(first(11_000), Some(3), "within {STAMP_TO_COMMIT_MS} ms of the click at 1,000");
        assert_eq!(first(11_501), Some(9), "the clicks at 1,000 and 1,500 are too old");
        assert_eq!(first(55_000), Some(17));
        assert_eq!(first(99_000), Some(40));
        assert_eq!(first(100_001), None, "past the newest click");
        assert_eq!(first_click_since(&clicks(&[]), 5_000).unwrap(), 0);
        // Whatever the time asked for, no click made since then is left out.
        for since in (0..100_000).step_by(10) {
            let from = first_click_since(&conn, since).unwrap();
            let missed: i64 = conn
                .query_row("SELECT count(*) FROM clicks WHERE at >= ?1 AND id < ?2", [since, from], |r| r.get(0))
                .unwrap();
            assert_eq!(missed, 0, "since {since}, from id {from}");
        }
    }
}

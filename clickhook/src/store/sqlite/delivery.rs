//! Subscriptions, batches, leases and the attempt log on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::sql::{all, exec, ids_json, one, page};
use super::SqliteStore;
use crate::domain::delivery::{
    batch_body, new_msg_id, refuse_subscription, Cut, DeliveryState, Subscribed, SubscriptionChange,
};
use crate::domain::retention::EventUse;
use crate::domain::{now_millis, Millis, Subscription, SubscriptionStatus, LINK_CLICKED};
use crate::store::error::{StoreError, StoreResult};
use crate::store::lists;
use crate::store::parts::DeliveryStore;
use crate::store::records::*;
use crate::store::rows::{self, ATTEMPT_COLS, CURSOR_COLS, HEALTH_COLS, SUBSCRIPTION_COLS};

fn load_subscription(conn: &Connection, account_id: i64, id: i64) -> StoreResult<Subscription> {
    let sql = format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE id = ?1 AND account_id = ?2");
    one(conn, &sql, [id, account_id], rows::subscription)?.ok_or(StoreError::NotFound("subscription"))
}

/// Deletes a subscription; its undelivered batches are kept, as failed, with the reason.
fn remove_subscription(conn: &Connection, id: i64, why: &str) -> StoreResult<()> {
    exec(
        conn,
        "UPDATE deliveries SET state = 'failed', lease_until = NULL, last_error = ?2 \
         WHERE subscription_id = ?1 AND state = 'pending'",
        params![id, format!("subscription removed: {why}")],
    )?;
    exec(conn, "DELETE FROM subscriptions WHERE id = ?1", [id]).map(drop)
}

fn body(conn: &Connection, account_id: i64, (first, last): (i64, i64)) -> StoreResult<String> {
    let sql = "SELECT payload FROM events WHERE account_id = ?1 AND id BETWEEN ?2 AND ?3 ORDER BY id";
    let payloads = all(conn, sql, params![account_id, first, last], |r| rows::Columns::text(r, 0))?;
    Ok(batch_body(payloads.iter().map(String::as_str)))
}

/// Cuts one subscription's due batches; returns when its open window closes, if one is open.
fn cut(conn: &Connection, sub: &SubscriptionCursor, now: Millis, window: i64, max: i64) -> StoreResult<Option<Millis>> {
    let (id, account, target, cursor) = (sub.id, sub.account_id, &sub.target_url, sub.cursor);
    let sql = "SELECT id, occurred_at FROM events WHERE account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
    let events = all(conn, sql, params![account, cursor, max * Cut::READ_BATCHES], |r| Ok((r.int(0)?, r.int(1)?)))?;
    let cut = Cut::new(&events, now, window, max);
    for b in &cut.batches {
        exec(
            conn,
            "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, first_event_id, \
             last_event_id, event_count, next_attempt_at, created_at, oldest_event_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
            params![new_msg_id(), account, id, target, b.first, b.last, b.count, now, b.oldest_at],
        )?;
    }
    if let Some(last) = cut.cursor() {
        exec(conn, "UPDATE subscriptions SET cursor = ?2 WHERE id = ?1", [id, last])?;
    }
    Ok(cut.wait_until)
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn subscribe(&self, account: i64, target_url: &str, event: &str, secret: String) -> StoreResult<Subscribed> {
        let (target_url, event) = (target_url.to_string(), event.to_string());
        self.write(move |conn| {
            let sql = "SELECT target_url FROM subscriptions WHERE account_id = ?1 AND event = ?2";
            let existing = all(conn, sql, params![account, event], |r| rows::Columns::text(r, 0))?;
            if let Some(refused) = refuse_subscription(&existing, &target_url) {
                return Ok(refused);
            }
            exec(
                conn,
                "INSERT INTO subscriptions (account_id, target_url, event, secret, created_at, cursor) VALUES (?1, ?2, ?3, ?4, ?5, \
                 (SELECT coalesce(max(id), 0) FROM events WHERE account_id = ?1))",
                params![account, target_url, event, secret, now_millis()],
            )?;
            load_subscription(conn, account, conn.last_insert_rowid()).map(Subscribed::Created)
        })
        .await
    }

    async fn unsubscribe(&self, account_id: i64, target_url: &str, event: &str) -> StoreResult<bool> {
        let (target_url, event) = (target_url.to_string(), event.to_string());
        self.write(move |conn| {
            let sql = "SELECT id FROM subscriptions WHERE account_id = ?1 AND event = ?2 AND target_url = ?3";
            let Some(id) = one(conn, sql, params![account_id, event, target_url], rows::int)? else { return Ok(false) };
            remove_subscription(conn, id, "unsubscribed")?;
            Ok(true)
        })
        .await
    }

    async fn list_subscriptions(&self, account_id: i64) -> StoreResult<Vec<Subscription>> {
        self.read(move |conn| {
            let sql = format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE account_id = ?1 ORDER BY id");
            all(conn, &sql, [account_id], rows::subscription)
        })
        .await
    }

    async fn subscription(&self, account_id: i64, id: i64) -> StoreResult<Subscription> {
        self.read(move |conn| load_subscription(conn, account_id, id)).await
    }

    async fn set_subscription_status(&self, account: i64, id: i64, s: SubscriptionStatus) -> StoreResult<Subscription> {
        self.write(move |conn| {
            load_subscription(conn, account, id)?;
            // Turned back on, it starts counting failures afresh.
            let sql = "UPDATE subscriptions SET status = ?2, \
                       failing_since = CASE WHEN ?2 = 'active' THEN NULL ELSE failing_since END WHERE id = ?1";
            exec(conn, sql, params![id, s.as_str()])?;
            load_subscription(conn, account, id)
        })
        .await
    }

    async fn set_subscription_secret(&self, account_id: i64, id: i64, secret: String) -> StoreResult<Subscription> {
        self.write(move |conn| {
            load_subscription(conn, account_id, id)?;
            exec(conn, "UPDATE subscriptions SET secret = ?2 WHERE id = ?1", params![id, secret])?;
            load_subscription(conn, account_id, id)
        })
        .await
    }

    async fn cut_batches(&self, now: Millis, window_ms: i64, max_events: i64) -> StoreResult<Option<Millis>> {
        self.write_background(move |conn| {
            let sql = format!("SELECT {CURSOR_COLS} FROM subscriptions WHERE status = 'active' AND event = ?1");
            let subs = all(conn, &sql, [LINK_CLICKED], rows::subscription_cursor)?;
            let mut next_close: Option<Millis> = None;
            for sub in subs {
                if let Some(t) = cut(conn, &sub, now, window_ms, max_events)? {
                    next_close = Some(next_close.map_or(t, |n| n.min(t)));
                }
            }
            Ok(next_close)
        })
        .await
    }

    async fn claim_deliveries(&self, now: Millis, lease: i64, room: ClaimRoom) -> StoreResult<Vec<Claimed>> {
        self.write_background(move |conn| {
            // Each active subscription's oldest due batches, as many as its room (its cap less
            // what this node has in flight to it), through its own index range: one query over
            // every due batch, ranked per subscription, cost a scan of them all for each
            // finished POST, though it claimed one.
            let active = "SELECT id FROM subscriptions WHERE status = 'active'";
            let due =
                "SELECT d.id, d.msg_id, d.subscription_id, s.target_url, s.secret, d.body, d.tries, d.account_id, \
                       d.first_event_id, d.last_event_id, d.next_attempt_at \
                       FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
                       WHERE d.subscription_id = ?1 AND d.state = 'pending' AND d.next_attempt_at <= ?2 \
                       AND (d.lease_until IS NULL OR d.lease_until < ?2) ORDER BY d.next_attempt_at, d.id LIMIT ?3";
            let mut picked = Vec::new();
            for sub in all(conn, active, [], rows::int)? {
                let space = room.per_subscription - room.in_flight.get(&sub).copied().unwrap_or(0);
                if space > 0 {
                    picked.extend(all(conn, due, params![sub, now, space.min(room.total)], |r| {
                        Ok(((r.int(10)?, r.int(0)?), rows::claimed(r)?))
                    })?);
                }
            }
            picked.sort_unstable_by_key(|(order, _)| *order);
            picked.truncate(usize::try_from(room.total).unwrap_or(0));
            let mut out = Vec::with_capacity(picked.len());
            for (_, row) in picked {
                let mut c = row.delivery;
                if let Some(range) = row.events {
                    c.body = body(conn, row.account_id, range)?;
                }
                exec(conn, "UPDATE deliveries SET lease_until = ?2 WHERE id = ?1", [c.id, now + lease])?;
                out.push(c);
            }
            Ok(out)
        })
        .await
    }

    async fn finish_attempt(&self, a: Attempt) -> StoreResult<()> {
        self.write(move |conn| {
            let r = &a.result;
            exec(
                conn,
                "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, latency_ms, response) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![a.delivery_id, r.at, r.status_code, r.error, a.latency_ms, a.response],
            )?;
            let sql = format!("SELECT {HEALTH_COLS} FROM subscriptions WHERE id = ?1");
            let health = one(conn, &sql, [a.subscription_id], rows::health)?;
            let (delivery, subscription) = r.effects(health.as_ref());
            exec(
                conn,
                "UPDATE deliveries SET state = ?2, tries = tries + ?3, next_attempt_at = coalesce(?4, next_attempt_at), \
                 delivered_at = coalesce(?5, delivered_at), last_error = ?6, lease_until = NULL WHERE id = ?1",
                params![
                    a.delivery_id,
                    delivery.state.as_str(),
                    delivery.add_tries,
                    delivery.next_attempt_at,
                    delivery.delivered_at,
                    delivery.last_error
                ],
            )?;
            match subscription {
                SubscriptionChange::Unchanged => Ok(()),
                SubscriptionChange::Set(h) => exec(
                    conn,
                    "UPDATE subscriptions SET status = ?2, last_success_at = ?3, last_failure_at = ?4, failing_since = ?5 \
                     WHERE id = ?1",
                    params![a.subscription_id, h.status.as_str(), h.last_success_at, h.last_failure_at, h.failing_since],
                )
                .map(drop),
                SubscriptionChange::Remove { why } => remove_subscription(conn, a.subscription_id, &why),
            }
        })
        .await
    }

    async fn release_leases(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.write(move |conn| {
            let sql = "UPDATE deliveries SET lease_until = NULL WHERE id IN (SELECT value FROM json_each(?1))";
            exec(conn, sql, [ids_json(&ids)]).map(drop)
        })
        .await
    }

    async fn list_deliveries(&self, account_id: i64, q: DeliveryQuery) -> StoreResult<(i64, Vec<DeliveryRecord>)> {
        self.read(move |conn| {
            let list = lists::deliveries_paged(account_id, &q);
            let (total, mut items) = page(conn, &list, (q.limit, q.offset), rows::delivery)?;
            let attempts = format!("SELECT {ATTEMPT_COLS} FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id");
            for d in &mut items {
                d.attempts = all(conn, &attempts, [d.id], rows::attempt)?;
            }
            Ok((total, items))
        })
        .await
    }

    async fn replay_delivery(&self, account_id: i64, id: i64, now: Millis) -> StoreResult<()> {
        self.write(move |conn| {
            let sql = "SELECT subscription_id FROM deliveries WHERE id = ?1 AND account_id = ?2";
            let sub = one(conn, sql, [id, account_id], rows::int)?.ok_or(StoreError::NotFound("delivery"))?;
            load_subscription(conn, account_id, sub).map_err(|_| {
                StoreError::Invalid("the subscription of this delivery was removed; subscribe again".into())
            })?;
            let sql =
                "UPDATE deliveries SET state = ?3, tries = 0, next_attempt_at = ?2, lease_until = NULL WHERE id = ?1";
            exec(conn, sql, params![id, now, DeliveryState::Pending.as_str()]).map(drop)
        })
        .await
    }

    async fn replay_failed(&self, account_id: i64, subscription_id: i64, now: Millis) -> StoreResult<i64> {
        self.write(move |conn| {
            load_subscription(conn, account_id, subscription_id)?;
            let sql = "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = ?2, lease_until = NULL \
                       WHERE subscription_id = ?1 AND state = 'failed'";
            Ok(exec(conn, sql, [subscription_id, now])? as i64)
        })
        .await
    }

    async fn add_test_delivery(&self, account_id: i64, sub_id: i64, body: String, now: Millis) -> StoreResult<i64> {
        self.write(move |conn| {
            let sub = load_subscription(conn, account_id, sub_id)?;
            exec(
                conn,
                "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, event_count, body, next_attempt_at, \
                 created_at, oldest_event_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6, ?6)",
                params![new_msg_id(), account_id, sub_id, sub.target_url, body, now],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn backlog(&self) -> StoreResult<Vec<Backlog>> {
        self.read(|conn| {
            let sql = "SELECT id, new_events + batched, min(coalesce(new_oldest, batched_oldest), coalesce(batched_oldest, new_oldest)) \
                       FROM (SELECT s.id, \
                         (SELECT count(*) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor) AS new_events, \
                         (SELECT coalesce(sum(event_count), 0) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending') AS batched, \
                         (SELECT min(occurred_at) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor) AS new_oldest, \
                         (SELECT min(oldest_event_at) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending') AS batched_oldest \
                       FROM subscriptions s) ORDER BY id";
            all(conn, sql, [], rows::backlog)
        })
        .await
    }

    async fn prune_deliveries(&self, before: Millis, limit: i64) -> StoreResult<u64> {
        self.write_background(move |conn| {
            // Attempts go with their batch (ON DELETE CASCADE).
            let sql = "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
                       WHERE state = 'delivered' AND delivered_at < ?1 ORDER BY delivered_at LIMIT ?2)";
            Ok(exec(conn, sql, params![before, limit])? as u64)
        })
        .await
    }

    async fn event_use(&self, account_id: i64) -> StoreResult<EventUse> {
        self.read(move |conn| {
            let cursors = all(conn, "SELECT cursor FROM subscriptions WHERE account_id = ?1", [account_id], rows::int)?;
            let first = "SELECT min(first_event_id) FROM deliveries WHERE account_id = ?1";
            let first_kept_batch_event = one(conn, first, [account_id], |r| rows::Columns::opt_int(r, 0))?.flatten();
            let newest = "SELECT coalesce(max(id), 0) FROM events WHERE account_id = ?1";
            let newest = one(conn, newest, [account_id], rows::int)?.unwrap_or_default();
            Ok(EventUse { cursors, first_kept_batch_event, newest })
        })
        .await
    }

    async fn prune_events(&self, account_id: i64, floor: i64, before: Millis, limit: i64) -> StoreResult<u64> {
        self.write_background(move |conn| {
            let sql = "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, created_at FROM events \
                       WHERE account_id = ?1 AND id < ?2 ORDER BY id LIMIT ?4) WHERE created_at < ?3)";
            Ok(exec(conn, sql, params![account_id, floor, before, limit])? as u64)
        })
        .await
    }
}

//! Subscriptions, batches, leases and the attempt log on PostgreSQL.

use async_trait::async_trait;

use super::pool::{all, exec, one, page, pg, Param, Q};
use super::PgStore;
use crate::domain::delivery::{batch_body, new_msg_id, refuse_subscription, Cut, Subscribed, SubscriptionChange};
use crate::domain::retention::EventUse;
use crate::domain::{now_millis, Millis, Subscription, SubscriptionStatus, LINK_CLICKED};
use crate::store::error::{StoreError, StoreResult};
use crate::store::lists;
use crate::store::parts::DeliveryStore;
use crate::store::records::*;
use crate::store::rows::{self, ATTEMPT_COLS, CURSOR_COLS, HEALTH_COLS, SUBSCRIPTION_COLS};

async fn load_subscription(c: &impl Q, account_id: i64, id: i64) -> StoreResult<Subscription> {
    let sql = format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE id = $1 AND account_id = $2");
    one(c, &sql, &[&id, &account_id], rows::subscription).await?.ok_or(StoreError::NotFound("subscription"))
}

/// Deletes a subscription; its undelivered batches are kept, as failed, with the reason.
async fn remove_subscription(c: &impl Q, id: i64, why: &str) -> StoreResult<()> {
    let sql = "UPDATE deliveries SET state = 'failed', lease_until = NULL, last_error = $2 \
               WHERE subscription_id = $1 AND state = 'pending'";
    exec(c, sql, &[&id, &format!("subscription removed: {why}")]).await?;
    exec(c, "DELETE FROM subscriptions WHERE id = $1", &[&id]).await.map(drop)
}

async fn body(c: &impl Q, account_id: i64, (first, last): (i64, i64)) -> StoreResult<String> {
    let sql = "SELECT payload FROM events WHERE account_id = $1 AND id BETWEEN $2 AND $3 ORDER BY id";
    let payloads = all(c, sql, &[&account_id, &first, &last], |r| r.text(0)).await?;
    Ok(batch_body(payloads.iter().map(String::as_str)))
}

/// Cuts one subscription's due batches; returns when its open window closes, if one is open.
async fn cut(c: &impl Q, sub: &SubscriptionCursor, now: Millis, window: i64, max: i64) -> StoreResult<Option<Millis>> {
    let (id, account, target, cursor) = (sub.id, sub.account_id, &sub.target_url, sub.cursor);
    let sql = "SELECT id, occurred_at FROM events WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3";
    let read = max * Cut::READ_BATCHES;
    let events = all(c, sql, &[&account, &cursor, &read], |r| Ok((r.int(0)?, r.int(1)?))).await?;
    let cut = Cut::new(&events, now, window, max);
    if let Some(last) = cut.cursor() {
        let (mut msg_ids, mut firsts, mut lasts, mut counts, mut oldest) = (vec![], vec![], vec![], vec![], vec![]);
        for b in &cut.batches {
            msg_ids.push(new_msg_id());
            firsts.push(b.first);
            lasts.push(b.last);
            counts.push(b.count);
            oldest.push(b.oldest_at);
        }
        let sql = "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, first_event_id, \
                   last_event_id, event_count, next_attempt_at, created_at, oldest_event_at) \
                   SELECT u.msg_id, $1, $2, $3, u.first, u.last, u.count, $4, $4, u.oldest \
                   FROM unnest($5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[]) \
                   WITH ORDINALITY AS u(msg_id, first, last, count, oldest, n) ORDER BY u.n";
        let params: [Param; 9] = [&account, &id, &target, &now, &msg_ids, &firsts, &lasts, &counts, &oldest];
        exec(c, sql, &params).await?;
        exec(c, "UPDATE subscriptions SET cursor = $2 WHERE id = $1", &[&id, &last]).await?;
    }
    Ok(cut.wait_until)
}

/// A claim's attempts in flight as a JSON object from subscription id to attempts, for the
/// claim's SQL to look into.
fn in_flight_json(room: &ClaimRoom) -> String {
    let pairs: Vec<String> = room.in_flight.iter().map(|(s, n)| format!("\"{s}\":{n}")).collect();
    format!("{{{}}}", pairs.join(","))
}

#[async_trait]
impl DeliveryStore for PgStore {
    async fn subscribe(&self, account: i64, target_url: &str, event: &str, secret: String) -> StoreResult<Subscribed> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // One account's subscriptions change one at a time: the limit holds under races.
        exec(&tx, "SELECT id FROM accounts WHERE id = $1 FOR UPDATE", &[&account]).await?;
        let sql = "SELECT target_url FROM subscriptions WHERE account_id = $1 AND event = $2";
        let existing = all(&tx, sql, &[&account, &event], |r| r.text(0)).await?;
        if let Some(refused) = refuse_subscription(&existing, target_url) {
            return Ok(refused);
        }
        let sql = format!(
            "INSERT INTO subscriptions (account_id, target_url, event, secret, created_at, cursor) VALUES ($1, $2, $3, $4, $5, \
             (SELECT coalesce(max(id), 0) FROM events WHERE account_id = $1)) RETURNING {SUBSCRIPTION_COLS}"
        );
        let params: [Param; 5] = [&account, &target_url, &event, &secret, &now_millis()];
        let sub = one(&tx, &sql, &params, rows::subscription).await?.ok_or(StoreError::NotFound("subscription"))?;
        tx.commit().await.map_err(pg)?;
        Ok(Subscribed::Created(sub))
    }

    async fn unsubscribe(&self, account_id: i64, target_url: &str, event: &str) -> StoreResult<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let sql = "SELECT id FROM subscriptions WHERE account_id = $1 AND event = $2 AND target_url = $3";
        let Some(id) = one(&tx, sql, &[&account_id, &event, &target_url], rows::int).await? else { return Ok(false) };
        remove_subscription(&tx, id, "unsubscribed").await?;
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    async fn list_subscriptions(&self, account_id: i64) -> StoreResult<Vec<Subscription>> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE account_id = $1 ORDER BY id");
        all(&*c, &sql, &[&account_id], rows::subscription).await
    }

    async fn subscription(&self, account_id: i64, id: i64) -> StoreResult<Subscription> {
        load_subscription(&*self.pool.get().await?, account_id, id).await
    }

    async fn set_subscription_status(&self, account: i64, id: i64, s: SubscriptionStatus) -> StoreResult<Subscription> {
        let c = self.pool.get().await?;
        load_subscription(&*c, account, id).await?;
        // Turned back on, it starts counting failures afresh.
        let sql = "UPDATE subscriptions SET status = $2, \
                   failing_since = CASE WHEN $2 = 'active' THEN NULL ELSE failing_since END WHERE id = $1";
        exec(&*c, sql, &[&id, &s.as_str()]).await?;
        load_subscription(&*c, account, id).await
    }

    async fn set_subscription_secret(&self, account_id: i64, id: i64, secret: String) -> StoreResult<Subscription> {
        let c = self.pool.get().await?;
        load_subscription(&*c, account_id, id).await?;
        exec(&*c, "UPDATE subscriptions SET secret = $2 WHERE id = $1", &[&id, &secret]).await?;
        load_subscription(&*c, account_id, id).await
    }

    async fn cut_batches(&self, now: Millis, window_ms: i64, max_events: i64) -> StoreResult<Option<Millis>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // A subscription is batched by one node at a time; others skip it this round.
        let sql = format!(
            "SELECT {CURSOR_COLS} FROM subscriptions WHERE status = 'active' AND event = $1 ORDER BY id FOR UPDATE SKIP LOCKED"
        );
        let subs = all(&tx, &sql, &[&LINK_CLICKED], rows::subscription_cursor).await?;
        let mut next_close: Option<Millis> = None;
        for sub in subs {
            if let Some(t) = cut(&tx, &sub, now, window_ms, max_events).await? {
                next_close = Some(next_close.map_or(t, |n| n.min(t)));
            }
        }
        tx.commit().await.map_err(pg)?;
        Ok(next_close)
    }

    async fn claim_deliveries(&self, now: Millis, lease: i64, room: ClaimRoom) -> StoreResult<Vec<Claimed>> {
        let c = self.pool.get().await?;
        let until = now + lease;
        // Per subscription, its oldest due batches not leased nor locked by another node, as many
        // as its cap less what this node has in flight to it.
        let sql = "WITH picked AS ( \
                     SELECT d2.id FROM subscriptions s2 CROSS JOIN LATERAL ( \
                       SELECT d.id, d.next_attempt_at FROM deliveries d WHERE d.subscription_id = s2.id \
                       AND d.state = 'pending' AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until < $1) \
                       ORDER BY d.next_attempt_at, d.id \
                       LIMIT greatest(0, $4 - coalesce((($5::text)::jsonb ->> s2.id::text)::bigint, 0)) \
                       FOR UPDATE SKIP LOCKED) d2 \
                     WHERE s2.status = 'active' ORDER BY d2.next_attempt_at, d2.id LIMIT $3) \
                   UPDATE deliveries d SET lease_until = $2 FROM subscriptions s, picked \
                   WHERE s.id = d.subscription_id AND d.id = picked.id \
                   RETURNING d.id, d.msg_id, d.subscription_id, s.target_url, s.secret, d.body, d.tries, d.account_id, \
                             d.first_event_id, d.last_event_id";
        let in_flight = in_flight_json(&room);
        let params: [Param; 5] = [&now, &until, &room.total, &room.per_subscription, &in_flight];
        let claimed = all(&*c, sql, &params, rows::claimed).await?;
        let mut out = Vec::with_capacity(claimed.len());
        for row in claimed {
            let mut d = row.delivery;
            if let Some(range) = row.events {
                d.body = body(&*c, row.account_id, range).await?;
            }
            out.push(d);
        }
        Ok(out)
    }

    async fn finish_attempt(&self, a: Attempt) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let r = &a.result;
        let status = r.status_code.map(i32::from);
        let sql = "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, latency_ms, response) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        exec(&tx, sql, &[&a.delivery_id, &r.at, &status, &r.error, &a.latency_ms, &a.response]).await?;
        let sql = format!("SELECT {HEALTH_COLS} FROM subscriptions WHERE id = $1 FOR UPDATE");
        let health = one(&tx, &sql, &[&a.subscription_id], rows::health).await?;
        let (d, subscription) = r.effects(health.as_ref());
        let sql =
            "UPDATE deliveries SET state = $2, tries = tries + $3, next_attempt_at = coalesce($4, next_attempt_at), \
                   delivered_at = coalesce($5, delivered_at), last_error = $6, lease_until = NULL WHERE id = $1";
        let params: [Param; 6] =
            [&a.delivery_id, &d.state.as_str(), &d.add_tries, &d.next_attempt_at, &d.delivered_at, &d.last_error];
        exec(&tx, sql, &params).await?;
        match subscription {
            SubscriptionChange::Unchanged => {}
            SubscriptionChange::Set(h) => {
                let sql = "UPDATE subscriptions SET status = $2, last_success_at = $3, last_failure_at = $4, \
                           failing_since = $5 WHERE id = $1";
                let params: [Param; 5] =
                    [&a.subscription_id, &h.status.as_str(), &h.last_success_at, &h.last_failure_at, &h.failing_since];
                exec(&tx, sql, &params).await?;
            }
            SubscriptionChange::Remove { why } => remove_subscription(&tx, a.subscription_id, &why).await?,
        }
        tx.commit().await.map_err(pg)
    }

    async fn release_leases(&self, ids: Vec<i64>) -> StoreResult<()> {
        let c = self.pool.get().await?;
        exec(&*c, "UPDATE deliveries SET lease_until = NULL WHERE id = ANY($1)", &[&ids]).await.map(drop)
    }

    async fn list_deliveries(&self, account_id: i64, q: DeliveryQuery) -> StoreResult<(i64, Vec<DeliveryRecord>)> {
        let c = self.pool.get().await?;
        let list = lists::deliveries_paged(account_id, &q);
        let (total, mut items) = page(&*c, &list, (q.limit, q.offset), rows::delivery).await?;
        let attempts = format!("SELECT {ATTEMPT_COLS} FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id");
        for d in &mut items {
            d.attempts = all(&*c, &attempts, &[&d.id], rows::attempt).await?;
        }
        Ok((total, items))
    }

    async fn replay_delivery(&self, account_id: i64, id: i64, now: Millis) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let sql = "SELECT subscription_id FROM deliveries WHERE id = $1 AND account_id = $2";
        let sub = one(&*c, sql, &[&id, &account_id], rows::int).await?.ok_or(StoreError::NotFound("delivery"))?;
        load_subscription(&*c, account_id, sub).await.map_err(|_| {
            StoreError::Invalid("the subscription of this delivery was removed; subscribe again".into())
        })?;
        let sql = "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = $2, lease_until = NULL WHERE id = $1";
        exec(&*c, sql, &[&id, &now]).await.map(drop)
    }

    async fn replay_failed(&self, account_id: i64, subscription_id: i64, now: Millis) -> StoreResult<i64> {
        let c = self.pool.get().await?;
        load_subscription(&*c, account_id, subscription_id).await?;
        let sql = "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = $2, lease_until = NULL \
                   WHERE subscription_id = $1 AND state = 'failed'";
        Ok(exec(&*c, sql, &[&subscription_id, &now]).await? as i64)
    }

    async fn add_test_delivery(&self, account_id: i64, sub_id: i64, body: String, now: Millis) -> StoreResult<i64> {
        let c = self.pool.get().await?;
        let sub = load_subscription(&*c, account_id, sub_id).await?;
        let sql = "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, event_count, body, \
                   next_attempt_at, created_at, oldest_event_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $6) RETURNING id";
        let params: [Param; 6] = [&new_msg_id(), &account_id, &sub_id, &sub.target_url, &body, &now];
        one(&*c, sql, &params, rows::int).await?.ok_or(StoreError::NotFound("delivery"))
    }

    async fn backlog(&self) -> StoreResult<Vec<Backlog>> {
        let c = self.pool.get().await?;
        let sql = "SELECT s.id, \
                     (SELECT count(*) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor) \
                     + (SELECT coalesce(sum(event_count), 0) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending')::bigint, \
                     LEAST((SELECT min(occurred_at) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor), \
                           (SELECT min(oldest_event_at) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending')) \
                   FROM subscriptions s ORDER BY s.id";
        all(&*c, sql, &[], rows::backlog).await
    }

    async fn prune_deliveries(&self, before: Millis, limit: i64) -> StoreResult<u64> {
        let c = self.pool.get().await?;
        // Attempts go with their batch (ON DELETE CASCADE).
        let sql = "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
                   WHERE state = 'delivered' AND delivered_at < $1 ORDER BY delivered_at LIMIT $2)";
        exec(&*c, sql, &[&before, &limit]).await
    }

    async fn event_use(&self, account_id: i64) -> StoreResult<EventUse> {
        let c = self.pool.get().await?;
        let cursors =
            all(&*c, "SELECT cursor FROM subscriptions WHERE account_id = $1", &[&account_id], rows::int).await?;
        let first = "SELECT min(first_event_id) FROM deliveries WHERE account_id = $1";
        let first_kept_batch_event = one(&*c, first, &[&account_id], |r| rows::Columns::opt_int(r, 0)).await?.flatten();
        let newest = "SELECT coalesce(max(id), 0) FROM events WHERE account_id = $1";
        let newest = one(&*c, newest, &[&account_id], rows::int).await?.unwrap_or_default();
        Ok(EventUse { cursors, first_kept_batch_event, newest })
    }

    async fn prune_events(&self, account_id: i64, floor: i64, before: Millis, limit: i64) -> StoreResult<u64> {
        let c = self.pool.get().await?;
        let sql = "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, created_at FROM events \
                   WHERE account_id = $1 AND id < $2 ORDER BY id LIMIT $4) o WHERE created_at < $3)";
        exec(&*c, sql, &[&account_id, &floor, &before, &limit]).await
    }
}

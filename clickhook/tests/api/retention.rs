//! Pruning by age (`serve --retain-clicks`, `--retain-deliveries`) on both stores: old rows
//! go, and nothing that has not done its work yet (unjudged or held clicks, failed batches,
//! events a subscription has not batched or a kept batch still reads).

use clickhook::domain::retention::{Keep, Retention};
use clickhook::domain::NewAccount;
use clickhook::retention::{prune, Pruned};

use crate::helpers::{fresh_db, Db};

const DAY: i64 = 86_400_000;

#[tokio::test]
async fn old_rows_go_and_nothing_unfinished_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let store = clickhook::store::open(&db).await.unwrap();
    let sql = Db(db.clone());
    let now = 1_000 * DAY;
    let new_account = |name: &str| NewAccount { id: None, name: name.into(), timezone: "UTC".into() };
    let a = store.create_account(new_account("A")).await.unwrap().id;
    let b = store.create_account(new_account("B")).await.unwrap().id;
    let click = |at: i64, verdict: &str, released: bool| {
        format!(
            "INSERT INTO clicks (account_id, email_id, link_no, at, verdict, released) \
             VALUES ({a}, 1, 1, {at}, {verdict}, {released}) RETURNING id"
        )
    };
    let gone_click = sql.i64(&click(now - 200 * DAY, "'bot'", true)).await;
    let unjudged = sql.i64(&click(now - 200 * DAY, "NULL", false)).await;
    let held = sql.i64(&click(now - 200 * DAY, "'human'", false)).await;
    let recent_click = sql.i64(&click(now - 10 * DAY, "'human'", true)).await;
    let clicks_made = std::cell::Cell::new(0);
    let event = |account: i64, created_at: i64| {
        clicks_made.set(clicks_made.get() + 1);
        let click_id = clicks_made.get();
        format!(
            "INSERT INTO events (account_id, click_id, created_at, payload) VALUES ({account}, {click_id}, {created_at}, '{{}}') \
             RETURNING id"
        )
    };
    let mut e = Vec::new();
    for _ in 0..4 {
        e.push(sql.i64(&event(a, now - 100 * DAY)).await);
    }
    e.push(sql.i64(&event(a, now - 5 * DAY)).await);
    let (b_old, b_recent) = (sql.i64(&event(b, now - 100 * DAY)).await, sql.i64(&event(b, now - 5 * DAY)).await);
    let subscribe = |n: usize, cursor: i64| {
        format!(
            "INSERT INTO subscriptions (account_id, target_url, event, secret, created_at, cursor) \
             VALUES ({a}, 'http://127.0.0.1:9/{n}', 'link_clicked', 'whsec_x', 0, {cursor}) RETURNING id"
        )
    };
    let s1 = sql.i64(&subscribe(1, e[2])).await;
    sql.i64(&subscribe(2, e[3])).await;
    let batch = |state: &str, delivered_at: &str, first: i64, last: i64| {
        format!(
            "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, first_event_id, last_event_id, \
             event_count, state, next_attempt_at, created_at, oldest_event_at, delivered_at) \
             VALUES ('msg_{first}_{state}', {a}, {s1}, 'http://127.0.0.1:9/1', {first}, {last}, 1, '{state}', 0, 0, 0, \
             {delivered_at}) RETURNING id"
        )
    };
    let old_delivered = sql.i64(&batch("delivered", &(now - 60 * DAY).to_string(), e[0], e[1])).await;
    let failed = sql.i64(&batch("failed", "NULL", e[2], e[2])).await;
    let recent_delivered = sql.i64(&batch("delivered", &(now - 5 * DAY).to_string(), e[3], e[3])).await;
    for d in [old_delivered, old_delivered, failed] {
        sql.exec(&format!("INSERT INTO delivery_attempts (delivery_id, at, latency_ms) VALUES ({d}, 0, 1)")).await;
    }

    let retention = Retention { clicks: Keep::parse("180").unwrap(), deliveries: Keep::parse("30").unwrap() };
    let pruned = prune(&store, retention, now).await.unwrap();
    assert_eq!(pruned, Pruned { clicks: 1, deliveries: 1, events: 3 });
    let ids = |table: &str| {
        let (sql, q) = (sql.clone(), format!("SELECT id FROM {table} ORDER BY id"));
        async move { sql.i64s(&q).await }
    };
    assert_eq!(ids("clicks").await, [unjudged, held, recent_click], "judged, released and old: gone ({gone_click})");
    assert_eq!(ids("deliveries").await, [failed, recent_delivered]);
    assert_eq!(sql.i64("SELECT count(*) FROM delivery_attempts").await, 1, "the failed batch's attempt stays");
    // e0, e1: batched everywhere, read by no kept batch. e2: the failed batch reads it. e3: the
    // first subscription has not batched it. e4: recent. B has no subscription: its old event goes.
    assert_eq!(ids("events").await, [e[2], e[3], e[4], b_recent], "({b_old} gone)");
    assert_eq!(prune(&store, retention, now).await.unwrap(), Pruned::default(), "a second pass finds nothing");
    let forever = Retention { clicks: Keep::Forever, deliveries: Keep::Forever };
    assert_eq!(prune(&store, forever, now + 1_000 * DAY).await.unwrap(), Pruned::default(), "0 keeps rows forever");
    store.close().await;
}

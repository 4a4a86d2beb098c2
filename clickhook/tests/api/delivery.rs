//! Webhook delivery against real receivers on 127.0.0.1, with the faults they inject.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, Receiver, Reply, TestApp};

fn fast(s: &mut clickhook::config::Settings) {
    s.batch_window = Duration::from_millis(200);
    s.retry_schedule = vec![Duration::from_millis(200); 5];
    s.delivery_timeout = Duration::from_millis(800);
}

async fn deliveries(app: &TestApp, key: &str) -> Vec<serde_json::Value> {
    let r = app.get("/rest/v2/deliveries", key).await;
    r.body.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn retried_until_it_succeeds_with_one_webhook_id_and_the_exact_body() {
    let app = spawn_app(fast);
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(500), Reply::Status(500), Reply::Status(200)]);
    let h = app.hooked(&rx.url, 1).await;
    app.click(&h.links[0]).await;
    let got = rx.wait_for(4, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests().len(), 4, "no request after the success");
    let id = got[0].headers["webhook-id"].to_str().unwrap();
    assert!(id.starts_with("msg_"));
    assert!(got.iter().all(|r| r.headers["webhook-id"] == id), "one webhook-id across retries");
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert!(got[0].headers["user-agent"].to_str().unwrap().starts_with("clickhook/"));

    // Signed with the subscription's secret (Standard Webhooks).
    let subs = app.get("/rest/v2/subscriptions", &h.key).await;
    let secret = subs.body[0]["secret"].as_str().unwrap().to_string();
    for r in &got {
        let ts: i64 = r.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        let sig = r.headers["webhook-signature"].to_str().unwrap();
        assert!(clickhook::delivery::sign::verify(&secret, id, ts, r.body.as_bytes(), sig));
    }

    // The body is the event module's output for this click, byte for byte, in an array.
    let clicked_at = app.sql_i64("SELECT at FROM clicks").await;
    let url = app
        .sql_text("SELECT l.url FROM clicks c JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no")
        .await;
    let ctx = app.store.event_contexts(vec![h.email_id]).await.unwrap();
    let element = clickhook::event::link_clicked(&ctx[&h.email_id], &url, clicked_at).to_string();
    assert_eq!(got[3].body, format!("[{element}]"));
    assert!(got.iter().all(|r| r.body == got[3].body));

    let d = deliveries(&app, &h.key).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["status"], "delivered");
    let attempts = d[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    assert_eq!(attempts.iter().map(|a| a["status_code"].as_i64().unwrap()).collect::<Vec<_>>(), [500, 500, 500, 200]);
    let subs = app.get("/rest/v2/subscriptions", &h.key).await;
    assert!(subs.body[0]["last_success"].is_string());
}

#[tokio::test]
async fn a_hanging_receiver_times_out_and_is_retried() {
    let app = spawn_app(fast);
    let rx = Receiver::start(vec![Reply::Hang(Duration::from_secs(3)), Reply::Status(200)]);
    let h = app.hooked(&rx.url, 1).await;
    app.click(&h.links[0]).await;
    rx.wait_for(2, 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = deliveries(&app, &h.key).await;
    assert_eq!(d[0]["status"], "delivered", "{d:?}");
    let first = &d[0]["attempts"][0];
    assert!(first["error"].as_str().unwrap().starts_with("timeout"), "{first}");
    assert!(first["status_code"].is_null());
}

#[tokio::test]
async fn a_receiver_that_is_down_for_a_while_gets_everything_when_back() {
    let app = spawn_app(fast);
    let port = crate::helpers::free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let h = app.hooked(&url, 3).await;
    for l in &h.links {
        app.click(l).await;
    }
    // Refused connections meanwhile, logged as such.
    for _ in 0..100 {
        let d = deliveries(&app, &h.key).await;
        if d.first().is_some_and(|d| !d["attempts"].as_array().unwrap().is_empty()) {
            assert!(d[0]["attempts"][0]["error"].as_str().unwrap().starts_with("connection failed"), "{}", d[0]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rx = Receiver::start_on(port, vec![Reply::Status(200)]);
    // In one POST or, when settling released the last click after its window closed, in two.
    let count = |got: &[crate::helpers::Received]| -> usize {
        got.iter().map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap().as_array().unwrap().len()).sum()
    };
    let mut got = rx.wait_for(1, 20).await;
    for _ in 0..100 {
        if count(&got) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = rx.requests();
    }
    assert_eq!(count(&got), 3);
}

#[tokio::test]
async fn gone_410_removes_the_subscription() {
    let app = spawn_app(fast);
    let rx = Receiver::start(vec![Reply::Status(410)]);
    let h = app.hooked(&rx.url, 2).await;
    app.click(&h.links[0]).await;
    rx.wait_for(1, 20).await;
    for _ in 0..100 {
        if app.get("/rest/v2/webhooks", &h.key).await.body == json!({"webhooks": []}) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/rest/v2/webhooks", &h.key).await.body, json!({"webhooks": []}));
    app.click(&h.links[1]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.requests().len(), 1, "nothing more is sent");
    let d = deliveries(&app, &h.key).await;
    assert_eq!(d[0]["status"], "failed");
    assert!(d[0]["last_error"].as_str().unwrap().contains("removed"));
}

#[tokio::test]
async fn events_of_one_window_are_batched_by_100_in_click_order() {
    let app = spawn_app(|s| {
        fast(s);
        s.batch_window = Duration::from_secs(3);
    });
    let rx = Receiver::start(vec![Reply::Status(200)]);
    let h = app.hooked(&rx.url, 250).await;
    for l in &h.links {
        app.click(l).await;
    }
    let got = rx.wait_for(3, 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = if got.len() == 3 { got } else { rx.requests() };
    // Batches to one target go out in parallel (up to its concurrency cap): order them by content.
    let first_click = |r: &crate::helpers::Received| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        v[0]["click_url"].as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap()
    };
    got.sort_by_key(first_click);
    let sizes: Vec<usize> = got
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap().as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    let urls: Vec<String> = got
        .iter()
        .flat_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap().as_array().unwrap().clone())
        .map(|e| e["click_url"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..250).map(|i| format!("https://example.com/{i}")).collect();
    assert_eq!(urls, expected, "click order within and across batches");
}

#[tokio::test]
async fn private_targets_are_refused_at_delivery_time_too() {
    let app = spawn_app(|s| {
        fast(s);
        s.allow_private_targets = false;
    });
    let rx = Receiver::start(vec![Reply::Status(200)]);
    let h = app.hooked("http://93.184.216.34/x", 1).await;
    // As if its DNS answer had changed to a private address since it subscribed.
    app.exec(&format!("UPDATE subscriptions SET target_url = '{}'", rx.url)).await;
    app.click(&h.links[0]).await;
    for _ in 0..100 {
        let d = deliveries(&app, &h.key).await;
        if let Some(a) = d.first().and_then(|d| d["attempts"].as_array().and_then(|a| a.first().cloned())) {
            assert!(a["error"].as_str().unwrap().starts_with("refused"), "{a}");
            assert!(rx.requests().is_empty());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no attempt was logged");
}

#[tokio::test]
async fn pause_resume_rotate_test_and_replay() {
    let app = spawn_app(|s| {
        fast(s);
        s.retry_schedule = vec![Duration::from_millis(100)];
    });
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(500), Reply::Status(200)]);
    let h = app.hooked(&rx.url, 2).await;
    let sub = app.get("/rest/v2/subscriptions", &h.key).await.body[0].clone();
    let id = sub["id"].as_i64().unwrap();

    // Two failures exhaust a one-retry schedule: kept as failed, then replayed.
    app.click(&h.links[0]).await;
    rx.wait_for(2, 20).await;
    for _ in 0..100 {
        if deliveries(&app, &h.key).await[0]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deliveries(&app, &h.key).await[0]["status"], "failed");
    let r = app.post(&format!("/rest/v2/subscriptions/{id}/replay_failed"), &h.key, json!({})).await;
    assert_eq!(r.body["replayed"], 1);
    let got = rx.wait_for(3, 20).await;
    assert_eq!(got[2].headers["webhook-id"], got[0].headers["webhook-id"], "a replay keeps its webhook-id");

    // Paused: events wait; resumed: they go.
    let r = app.post(&format!("/rest/v2/subscriptions/{id}/pause"), &h.key, json!({})).await;
    assert_eq!(r.body["status"], "paused");
    app.click(&h.links[1]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.requests().len(), 3);
    app.post(&format!("/rest/v2/subscriptions/{id}/resume"), &h.key, json!({})).await;
    rx.wait_for(4, 20).await;

    // A new secret signs from now on.
    let r = app.post(&format!("/rest/v2/subscriptions/{id}/rotate_secret"), &h.key, json!({})).await;
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert_ne!(secret, sub["secret"].as_str().unwrap());
    let r = app.post(&format!("/rest/v2/subscriptions/{id}/test"), &h.key, json!({})).await;
    assert_eq!(r.status, 202);
    let got = rx.wait_for(5, 20).await;
    let t = &got[4];
    let body: serde_json::Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(body[0]["method"], "link_clicked");
    let ts: i64 = t.headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert!(clickhook::delivery::sign::verify(
        &secret,
        t.headers["webhook-id"].to_str().unwrap(),
        ts,
        t.body.as_bytes(),
        t.headers["webhook-signature"].to_str().unwrap()
    ));

    // Replay of one delivery, and the log's filters.
    let d = deliveries(&app, &h.key).await;
    let delivered = d.iter().find(|d| d["status"] == "delivered").unwrap()["id"].as_i64().unwrap();
    assert_eq!(app.post(&format!("/rest/v2/deliveries/{delivered}/replay"), &h.key, json!({})).await.status, 202);
    rx.wait_for(6, 20).await;
    let none = app.get(&format!("/rest/v2/deliveries?subscription_id={id}&status=failed"), &h.key).await;
    assert_eq!((none.status.as_u16(), none.body.clone(), none.total()), (200, json!([]), 0));
    assert_eq!(app.post("/rest/v2/deliveries/999999/replay", &h.key, json!({})).await.status, 404);
}

#[tokio::test]
async fn a_subscription_failing_too_long_is_disabled() {
    let app = spawn_app(|s| {
        fast(s);
        s.retry_schedule = vec![Duration::from_millis(100); 50];
        s.disable_after = Duration::from_millis(700);
    });
    let rx = Receiver::start(vec![Reply::Status(503)]);
    let h = app.hooked(&rx.url, 1).await;
    app.click(&h.links[0]).await;
    for _ in 0..100 {
        let s = app.get("/rest/v2/subscriptions", &h.key).await;
        if s.body[0]["status"] == "disabled" {
            assert!(s.body[0]["failing_since"].is_string());
            let n = rx.requests().len();
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(rx.requests().len(), n, "a disabled subscription gets nothing");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the subscription was not disabled");
}

/// A claim leases no more of an endpoint's batches than it has room for beside the attempts
/// in flight to it: a batch leased past the cap would be read for nothing and let go again.
#[tokio::test]
async fn a_claim_takes_only_what_each_endpoint_has_room_for() {
    use clickhook::domain::delivery::Subscribed;
    use clickhook::domain::NewAccount;
    use clickhook::store::ClaimRoom;
    use std::collections::{HashMap, HashSet};

    let dir = tempfile::tempdir().unwrap();
    let store = clickhook::store::open(&crate::helpers::fresh_db(dir.path())).await.unwrap();
    let account = NewAccount { id: None, name: "A".into(), timezone: "UTC".into() };
    let account = store.create_account(account).await.unwrap().id;
    let secret = || "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_string();
    let mut subs = Vec::new();
    for n in 0..2 {
        let url = format!("http://127.0.0.1:9/{n}");
        let Subscribed::Created(s) = store.subscribe(account, &url, "link_clicked", secret()).await.unwrap() else {
            panic!("not subscribed")
        };
        for _ in 0..5 {
            store.add_test_delivery(account, s.id, "[]".into(), 1_000).await.unwrap();
        }
        subs.push(s.id);
    }
    let claim = |total: i64, in_flight: &[(i64, i64)]| {
        let room = ClaimRoom { total, per_subscription: 4, in_flight: in_flight.iter().copied().collect() };
        let store = store.clone();
        async move {
            let claimed = store.claim_deliveries(2_000, 60_000, room).await.unwrap();
            let mut by_sub: HashMap<i64, usize> = HashMap::new();
            for c in &claimed {
                *by_sub.entry(c.subscription_id).or_default() += 1;
            }
            assert_eq!(claimed.iter().map(|c| c.id).collect::<HashSet<_>>().len(), claimed.len());
            by_sub
        }
    };
    let (a, b) = (subs[0], subs[1]);
    assert_eq!(claim(100, &[(a, 3)]).await, HashMap::from([(a, 1), (b, 4)]), "a has room for one beside its three");
    assert_eq!(claim(100, &[(a, 4), (b, 4)]).await, HashMap::new(), "neither has room");
    assert_eq!(claim(100, &[(a, 6)]).await, HashMap::from([(b, 1)]), "more in flight than the cap is no room");
    assert_eq!(claim(2, &[]).await.values().sum::<usize>(), 2, "the total bounds the claim");
    store.close().await;
}

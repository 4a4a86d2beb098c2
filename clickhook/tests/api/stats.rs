//! `/rest/v2/stats`: counts equal to what `/rest/v2/clicks` lists, in the account's zone, kept
//! when raw clicks are pruned and gone with their campaign.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::helpers::{shared, TestApp};

/// An account in a zone 5:30 off UTC, a campaign of two steps, three prospects: people click
/// some links, a scanner (curl) and a HEAD others. Returns (key, campaign id).
pub(crate) async fn clicked(app: &TestApp) -> (String, i64) {
    let (_, key) = app.account("Asia/Kolkata").await;
    let f = json!({"click_filter": {"burst_seconds": 0, "min_seconds_after_send": 0}});
    assert_eq!(app.patch("/rest/v2/account", &key, f).await.status, 200);
    let c = app.campaign(&key, 2).await;
    let html = "<a href=\"https://example.com/a\">a</a><a href=\"https://example.com/b\">b</a>";
    let mut links = Vec::new();
    for p in ["ann@example.com", "bob@example.com", "cy@example.com"] {
        app.enroll(&key, c, p).await;
        let sent = app.send_html(&key, c, p, html).await;
        links.push(
            sent["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["tracked_url"].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
        );
    }
    let step2 =
        json!({"prospect_email": "ann@example.com", "step": 2, "html": html, "sent_at": "2020-01-08T00:00:00Z"});
    assert_eq!(app.post(&format!("/rest/v2/campaigns/{c}/emails"), &key, step2).await.status, 201);
    app.click(&links[0][0]).await;
    app.click(&links[0][0]).await;
    app.click(&links[1][1]).await;
    let curl = app.client.get(&links[2][0]).header("user-agent", "curl/8.5.0").send().await.unwrap();
    assert_eq!(curl.status(), 302);
    let head =
        app.client.head(&links[2][1]).header("user-agent", "Mozilla/5.0 (X11) Firefox/140").send().await.unwrap();
    assert_eq!(head.status(), 302);
    app.settled_clicks(&key, 5).await;
    (key, c)
}

/// What the clicks list says the statistics must be.
#[derive(Default)]
struct Expected {
    human: i64,
    bot: i64,
    clickers: BTreeSet<i64>,
    links: BTreeMap<String, (i64, i64)>,
    reasons: BTreeMap<String, i64>,
}

fn expected(clicks: &[Value]) -> Expected {
    let Expected { mut human, mut bot, mut clickers, mut links, mut reasons } = Expected::default();
    for c in clicks {
        let is_human = c["verdict"] == "human";
        let n: &mut (i64, i64) = links.entry(c["url"].as_str().unwrap().to_string()).or_default();
        if is_human {
            human += 1;
            n.0 += 1;
            clickers.insert(c["prospect_id"].as_i64().unwrap());
        } else {
            bot += 1;
            n.1 += 1;
            for r in c["reasons"].as_array().unwrap() {
                *reasons.entry(r.as_str().unwrap().to_string()).or_default() += 1;
            }
        }
    }
    Expected { human, bot, clickers, links, reasons }
}

#[tokio::test]
async fn stats_equal_what_the_clicks_list_shows() {
    let app = shared();
    let (key, c) = clicked(app).await;
    let clicks = app.settled_clicks(&key, 5).await;
    let Expected { human, bot, clickers, links, reasons } = expected(&clicks);
    assert_eq!((human, bot), (3, 2), "{clicks:?}");

    let r = app.get(&format!("/rest/v2/stats?campaign_id={c}"), &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = &r.body;
    assert_eq!(
        s["totals"],
        json!({"emails_sent": 4, "clicks": 5, "human_clicks": human, "bot_clicks": bot,
               "prospects_clicked": clickers.len()})
    );
    let got: BTreeMap<String, (i64, i64)> = s["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["url"].as_str().unwrap().to_string(),
                (l["human_clicks"].as_i64().unwrap(), l["bot_clicks"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, links);
    assert_eq!(s["links"][0]["url"], "https://example.com/a", "most human clicks first");
    let got: BTreeMap<String, i64> = s["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["reason"].as_str().unwrap().to_string(), r["clicks"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, reasons);
    assert!(got.keys().any(|r| r.starts_with("scanner_user_agent:")), "{got:?}");
    assert_eq!(
        s["steps"],
        json!([{"step": 1, "emails_sent": 3, "human_clicks": 3, "bot_clicks": 2, "prospects_clicked": 2},
               {"step": 2, "emails_sent": 1, "human_clicks": 0, "bot_clicks": 0, "prospects_clicked": 0}])
    );
    // The series adds up to the totals; its days start at midnight in Kolkata (+0530).
    let series = s["series"].as_array().unwrap();
    assert!(!series.is_empty());
    let sum: i64 = series.iter().map(|b| b["human_clicks"].as_i64().unwrap() + b["bot_clicks"].as_i64().unwrap()).sum();
    assert_eq!(sum, 5);
    assert!(series.iter().all(|b| b["t"].as_str().unwrap().ends_with("T00:00:00+0530")), "{series:?}");
    let hourly = app.get(&format!("/rest/v2/stats?campaign_id={c}&granularity=hour"), &key).await;
    assert!(hourly.body["series"][0]["t"].as_str().unwrap().ends_with(":00:00+0530"), "{}", hourly.text);

    // A range that holds none of the clicks counts none, but the emails of its time.
    let r = app
        .get(&format!("/rest/v2/stats?campaign_id={c}&since=2020-01-01T00:00:00Z&until=2020-01-31T23:59:59Z"), &key)
        .await;
    assert_eq!(
        r.body["totals"],
        json!({"emails_sent": 4, "clicks": 0, "human_clicks": 0, "bot_clicks": 0, "prospects_clicked": 0}),
        "{}",
        r.text
    );
    assert_eq!(r.body["series"].as_array().unwrap().len(), 32, "every day of January (in Kolkata, one more)");

    // The account as a whole is the same here: it has one campaign.
    let all = app.get("/rest/v2/stats", &key).await;
    assert_eq!(all.body["totals"], s["totals"]);
}

#[tokio::test]
async fn stats_outlive_pruned_clicks_and_go_with_their_campaign() {
    let app = shared();
    let (key, c) = clicked(app).await;
    let before = app.get(&format!("/rest/v2/stats?campaign_id={c}"), &key).await.body;
    // What retention does to old raw clicks.
    let account = app.sql_i64(&format!("SELECT account_id FROM campaigns WHERE id = {c}")).await;
    app.exec(&format!("DELETE FROM clicks WHERE account_id = {account}")).await;
    assert_eq!(app.get("/rest/v2/clicks", &key).await.body, json!([]));
    let after = app.get(&format!("/rest/v2/stats?campaign_id={c}"), &key).await.body;
    assert_eq!(after["totals"], before["totals"]);
    assert_eq!(after["links"], before["links"]);

    assert_eq!(app.delete(&format!("/rest/v2/campaigns/{c}"), &key).await.status, 204);
    let gone = app.get("/rest/v2/stats", &key).await;
    assert_eq!(
        gone.body["totals"],
        json!({"emails_sent": 0, "clicks": 0, "human_clicks": 0, "bot_clicks": 0, "prospects_clicked": 0})
    );
    assert_eq!(app.get(&format!("/rest/v2/stats?campaign_id={c}"), &key).await.status, 404);
}

#[tokio::test]
async fn bad_stats_requests_are_refused_and_other_accounts_are_invisible() {
    let app = shared();
    let (key, c) = clicked(app).await;
    let (_, other) = app.account("UTC").await;
    let r = app.get(&format!("/rest/v2/stats?campaign_id={c}"), &other).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = app.get("/rest/v2/stats", &other).await;
    assert_eq!(r.body["totals"]["clicks"], 0, "{}", r.text);
    for (query, says) in [
        ("granularity=week", "granularity"),
        ("campaign_id=abc", "campaign_id"),
        ("since=2025-02-01T00:00:00Z&until=2025-01-01T00:00:00Z", "since is after until"),
        ("since=2020-01-01T00:00:00Z&granularity=hour", "buckets"),
        ("since=yesterday", "since"),
        ("camp=1", "camp"),
    ] {
        let r = app.get(&format!("/rest/v2/stats?{query}"), &key).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert!(r.body["status"]["msg"].as_str().unwrap().contains(says), "{query}: {}", r.text);
    }
}

/// A database from before statistics: upgrading it counts the clicks it already released.
#[tokio::test]
async fn upgrading_counts_what_was_released_before() {
    use crate::crash::Node;
    use crate::helpers::on_postgres;
    let node = Node::new();
    let server = node.start(&[]).await;
    node.filter(0).await;
    let links = node.links(3, 2).await;
    for (i, link) in links.iter().enumerate() {
        let agent = if i % 2 == 0 { "Mozilla/5.0 (Macintosh) Safari/605" } else { "curl/8.5.0" };
        assert_eq!(node.client.get(link).header("user-agent", agent).send().await.unwrap().status(), 302);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while node.sql("SELECT count(*) FROM clicks WHERE released = TRUE").await < 6 {
        assert!(std::time::Instant::now() < deadline, "clicks were not released");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = node.call(reqwest::Method::GET, "/rest/v2/stats", Value::Null).await;
    assert_eq!(before["totals"]["clicks"], 6, "{before}");
    drop(server);

    let db = node.db.clone();
    // A click still held when the old version stopped: released, and counted once, after.
    db.exec("UPDATE clicks SET released = FALSE WHERE id = (SELECT id FROM clicks ORDER BY id LIMIT 1 OFFSET 2)").await;
    for table in
        ["stats_links", "stats_series", "stats_reasons", "stats_clickers_day", "stats_clickers_quarter", "stats_emails"]
    {
        db.exec(&format!("DROP TABLE {table}")).await;
    }
    // What later migrations made goes too: they run again.
    for table in ["app_sessions", "login_links"] {
        db.exec(&format!("DROP TABLE {table}")).await;
    }
    // The versions before statistics: 8 on PostgreSQL, 7 on SQLite.
    if on_postgres() {
        db.exec("UPDATE schema_version SET version = 8").await;
    } else {
        db.exec("DROP TRIGGER emails_id_floor").await;
        db.exec("DROP TABLE id_floor").await;
        db.exec("DROP TABLE stats_cursor").await;
        db.exec("ALTER TABLE settle_frontier DROP COLUMN released_below").await;
        // Version 15 took the burst history's table away.
        db.exec(
            "CREATE TABLE email_clicks (click_id INTEGER NOT NULL, email_id INTEGER NOT NULL, at INTEGER NOT NULL, \
             link_no INTEGER NOT NULL, honeypot INTEGER NOT NULL DEFAULT 0)",
        )
        .await;
        db.exec("CREATE INDEX email_clicks_email ON email_clicks(email_id, at)").await;
        rusqlite::Connection::open(&db.0).unwrap().pragma_update(None, "user_version", 7).unwrap();
    }
    let _server = node.start(&[]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let after = loop {
        let after = node.call(reqwest::Method::GET, "/rest/v2/stats", Value::Null).await;
        if after["totals"] == before["totals"] || std::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for part in ["totals", "steps", "links", "reasons", "series"] {
        assert_eq!(after[part], before[part], "{part}");
    }
}

/// Clicks stay counted when their prospect goes the moment after they were released, before
/// the statistics' next pass (SQLite counts behind the release; a deletion counts first).
#[tokio::test]
async fn clicks_released_just_before_their_prospect_is_deleted_stay_counted() {
    let app = shared();
    let (account, key) = app.account("UTC").await;
    let f = json!({"click_filter": {"burst_seconds": 0, "min_seconds_after_send": 0}});
    assert_eq!(app.patch("/rest/v2/account", &key, f).await.status, 200);
    let c = app.campaign(&key, 1).await;
    let prospect = app.enroll(&key, c, "dee@example.com").await;
    let html = "<a href=\"https://example.com/a\">a</a><a href=\"https://example.com/b\">b</a>";
    let sent = app.send_html(&key, c, "dee@example.com", html).await;
    for link in sent["links"].as_array().unwrap() {
        app.click(link["tracked_url"].as_str().unwrap()).await;
    }
    let released = format!("SELECT count(*) FROM clicks WHERE account_id = {} AND released = TRUE", account.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.sql_i64(&released).await < 2 {
        assert!(std::time::Instant::now() < deadline, "clicks were not released");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = app.delete(&format!("/rest/v1/prospects?id={prospect}"), &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.sql_i64(&format!("SELECT count(*) FROM clicks WHERE account_id = {}", account.id)).await, 0);
    let s = app.get(&format!("/rest/v2/stats?campaign_id={c}"), &key).await.body;
    assert_eq!(s["totals"]["clicks"], 2, "{s}");
    assert_eq!(s["totals"]["human_clicks"], 2, "{s}");
    assert_eq!(s["totals"]["prospects_clicked"], 0, "a prospect who clicked goes with its prospect: {s}");
}

/// A click held for its burst window does not hold back the statistics of clicks released after
/// it (SQLite's pass steps over it), and is counted once when it is released in its turn.
#[tokio::test]
async fn a_held_click_holds_back_no_other_statistics_and_counts_once_released() {
    let app = shared();
    let one_link = "<a href=\"https://example.com/held\">a</a>";
    let mut accounts = Vec::new();
    for burst in [60, 0] {
        let (account, key) = app.account("UTC").await;
        let f = json!({"click_filter": {"burst_seconds": burst, "min_seconds_after_send": 0}});
        assert_eq!(app.patch("/rest/v2/account", &key, f).await.status, 200);
        let c = app.campaign(&key, 1).await;
        app.enroll(&key, c, "eve@example.com").await;
        let sent = app.send_html(&key, c, "eve@example.com", one_link).await;
        app.click(sent["links"][0]["tracked_url"].as_str().unwrap()).await;
        accounts.push((account.id, key, c));
    }
    let released =
        |account: i64| format!("SELECT count(*) FROM clicks WHERE account_id = {account} AND released = TRUE");
    let clicks = |key: &str, c: i64| {
        let (key, path) = (key.to_string(), format!("/rest/v2/stats?campaign_id={c}"));
        async move { app.get(&path, &key).await.body["totals"]["clicks"].clone() }
    };
    let [(held, held_key, held_campaign), (quick, quick_key, quick_campaign)] = <[_; 2]>::try_from(accounts).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.sql_i64(&released(quick)).await < 1 {
        assert!(std::time::Instant::now() < deadline, "the click without a burst window was not released");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.sql_i64(&released(held)).await, 0, "the burst window holds the first click");
    assert_eq!(clicks(&quick_key, quick_campaign).await, 1, "counted, although an older click is held");
    assert_eq!(clicks(&held_key, held_campaign).await, 0, "held clicks are not counted yet");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while app.sql_i64(&released(held)).await < 1 {
        assert!(std::time::Instant::now() < deadline, "the held click was not released");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(clicks(&held_key, held_campaign).await, 1, "counted once, by its release");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // a background pass more
    assert_eq!(clicks(&held_key, held_campaign).await, 1, "and only once");
    assert_eq!(clicks(&quick_key, quick_campaign).await, 1);
}

//! Several nodes on one PostgreSQL behave as one system, and its click writer groups commits.
//! These tests need PostgreSQL, so they run in the PostgreSQL half of the suite (`./test.sh`)
//! and say so in the SQLite half.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash::{hammer, Node};
use crate::helpers::{fresh_db, on_postgres, Db, Receiver, Reply};

fn skipped() -> bool {
    if !on_postgres() {
        println!("several nodes share PostgreSQL only: this test runs in the PostgreSQL half");
    }
    !on_postgres()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_starting_at_once_on_an_empty_database_both_come_up() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Db(fresh_db(dir.path()));
    let (a, b) = (Node::bare(&db), Node::bare(&db));
    let (_sa, _sb) = tokio::join!(a.start(&[]), b.start(&[]));
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
    assert_eq!(db.i64("SELECT version FROM schema_version").await, migrations as i64);
    assert_eq!(db.i64("SELECT count(*) FROM schema_version").await, 1);
    for n in [&a, &b] {
        let r = n.client.get(format!("{}/healthz", n.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// While a group of clicks is on the wire, clicks that arrive meanwhile wait for it to commit and
/// go together once it has (fewer than `FULL_GROUP` of them), not one group each as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_arriving_during_a_commit_go_in_one_group_after_it() {
    if skipped() {
        return;
    }
    let a = Node::new();
    // Hold the settler's lock, so that the node never takes the groups into `clicks`.
    let settler = a.db.pg().await;
    settler.batch_execute("SELECT pg_advisory_lock(hashtext('clickhook.settler.' || current_schema()))").await.unwrap();
    let _server = a.start(&[]).await;
    let link = a.links(1, 1).await.remove(0);
    let click = |n: &Node| {
        let (client, link) = (n.client.clone(), link.clone());
        tokio::spawn(async move { client.get(link).send().await.unwrap().status() })
    };
    // The click connection is open and its INSERT prepared; the next group then waits on the
    // wire for a table lock until the lock is let go.
    assert_eq!(click(&a).await.unwrap(), 302);
    let blocker = a.db.pg().await;
    blocker.batch_execute("BEGIN; LOCK TABLE click_groups IN SHARE MODE").await.unwrap();
    let mut clicks = vec![click(&a)];
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One click alone, then four: without the rule the lone one would go at once as a group.
    clicks.push(click(&a));
    tokio::time::sleep(Duration::from_millis(200)).await;
    clicks.extend((0..4).map(|_| click(&a)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    for c in clicks {
        assert_eq!(c.await.unwrap(), 302);
    }
    let groups: Vec<i32> =
        settler.query_one("SELECT array_agg(clicks ORDER BY id) FROM click_groups", &[]).await.unwrap().get(0);
    assert_eq!(groups, vec![1, 1, 5]);
}

/// Clicks spread over two nodes; one is killed mid-run and restarted. Every answered click is
/// stored once, every event reaches the receiver, and no batch is ever in flight twice at once
/// (the receiver notes a `webhook-id` that arrives while the same id is still being answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_one_killed_lose_nothing_and_never_overlap_a_batch() {
    if skipped() {
        return;
    }
    let a = Node::new();
    let b = a.sibling();
    // Each POST takes a while to answer, so that a batch sent twice at once would be seen.
    let rx = Receiver::start(vec![Reply::Hang(Duration::from_millis(40))]);
    let flags = [
        "--allow-private-targets",
        "--batch-window",
        "200ms",
        "--retry-schedule",
        "200ms,500ms,1s,2s",
        "--delivery-timeout",
        "2s",
    ];
    let (mut sa, _sb) = tokio::join!(a.start(&flags), b.start(&flags));
    a.filter(0).await;
    let sub = json!({"target_url": rx.url, "event": "link_clicked"});
    assert_eq!(a.call(reqwest::Method::POST, "/rest/v1/webhooks/subscribe", sub).await["message"], "Subscribed.");
    let links = a.links(20, 5).await;
    let links_b: Vec<String> = links.iter().map(|l| l.replace(&a.base, &b.base)).collect();

    let until = Instant::now() + Duration::from_secs(6);
    let (on_a, answered_a) = hammer(&a, &links, 12, until);
    let (on_b, answered_b) = hammer(&b, &links_b, 12, until);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sa.kill().unwrap(); // SIGKILL, with clicks and batches in flight
    sa.wait().unwrap();
    for c in on_a.into_iter().chain(on_b) {
        c.await.unwrap();
    }
    let _sa = a.start(&flags).await;

    let answered: HashSet<String> = answered_a.lock().unwrap().union(&answered_b.lock().unwrap()).cloned().collect();
    assert!(answered_a.lock().unwrap().len() > 50 && answered_b.lock().unwrap().len() > 50, "both nodes took clicks");
    let rows = a.db.stored_click_agents().await;
    let stored: HashSet<String> = rows.iter().cloned().collect();
    assert_eq!(rows.len(), stored.len(), "a click was stored twice");
    let lost: Vec<_> = answered.difference(&stored).collect();
    assert!(lost.is_empty(), "{} answered clicks were lost, e.g. {:?}", lost.len(), lost.first());

    // Every event reaches the receiver: the batches it got (distinct webhook-ids) add up to them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let unsettled = a.db.unsettled_clicks().await;
        let events = a.sql("SELECT count(*) FROM events").await;
        let mut seen = HashSet::new();
        let mut delivered = 0;
        for r in rx.requests() {
            if seen.insert(r.headers["webhook-id"].to_str().unwrap().to_string()) {
                delivered += serde_json::from_str::<Value>(&r.body).unwrap().as_array().unwrap().len() as i64;
            }
        }
        if unsettled == 0 && delivered == events {
            assert_eq!(events, a.sql("SELECT count(*) FROM clicks WHERE verdict = 'human'").await);
            break;
        }
        assert!(Instant::now() < deadline, "{unsettled} clicks unsettled, {delivered} of {events} events delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let overlaps = rx.overlaps.lock().unwrap().clone();
    assert!(overlaps.is_empty(), "batches in flight on two nodes at once: {overlaps:?}");
}

/// One node settles clicks at a time; when it goes, another takes the role over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_settles_and_another_takes_over_when_it_goes() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let a = clickhook::store::open(&db).await.unwrap();
    let b = clickhook::store::open(&db).await.unwrap();
    let first = a.settler_turn().await.unwrap();
    assert!(first.is_some(), "the first to ask settles");
    assert_eq!(a.settler_turn().await.unwrap(), first, "and keeps its turn while it lives");
    assert_eq!(b.settler_turn().await.unwrap(), None, "the other stands by");
    a.close().await;
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.settler_turn().await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the role did not move to the surviving node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nodes that start at once on a new database sign links with one key, so a link made on one
/// node resolves on every other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_at_once_agree_on_one_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let first = clickhook::store::open(&db).await.unwrap();
    let mut stores = vec![first];
    for _ in 0..3 {
        stores.push(clickhook::store::open(&db).await.unwrap());
    }
    let keys =
        futures::future::join_all(stores.iter().map(|s| s.link_keys_or_first(clickhook::click::token::new_secret())))
            .await;
    let ids: Vec<Vec<i64>> = keys.into_iter().map(|k| k.unwrap().iter().map(|k| k.id).collect()).collect();
    assert!(ids.iter().all(|k| k.len() == 1 && *k == ids[0]), "each node has its own key: {ids:?}");
    for s in stores {
        s.close().await;
    }
}

/// A campaign deleted through one node: its links stop resolving on every other node within a
/// second, though they were cached there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_node_reaches_the_others_within_a_second() {
    if skipped() {
        return;
    }
    let a = Node::new();
    let b = a.sibling();
    let (_sa, _sb) = tokio::join!(a.start(&[]), b.start(&[]));
    let on_b = a.links(1, 1).await.remove(0).replace(&a.base, &b.base);
    assert_eq!(b.client.get(&on_b).send().await.unwrap().status(), 302, "cached on b");
    let campaigns = a.call(reqwest::Method::GET, "/rest/v2/campaigns", Value::Null).await;
    let id = campaigns[0]["id"].as_i64().unwrap();
    a.call(reqwest::Method::DELETE, &format!("/rest/v2/campaigns/{id}"), Value::Null).await;
    let deleted = Instant::now();
    while b.client.get(&on_b).send().await.unwrap().status() != 404 {
        assert!(deleted.elapsed() < Duration::from_secs(1), "b still follows a deleted link");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tracking domain verified through one node is followed on the other within moments, and
/// refused there again once deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_verified_on_one_node_is_followed_on_the_others() {
    if skipped() {
        return;
    }
    let a = Node::new();
    let b = a.sibling();
    let resolver = crate::dns::dns().addr.to_string();
    let args = ["--resolver", resolver.as_str()];
    let (_sa, _sb) = tokio::join!(a.start(&args), b.start(&args));
    let link = a.links(1, 1).await.remove(0);
    let domain = format!("t{}.nodes.test", std::process::id());
    crate::dns::dns().set(&domain, vec![crate::dns::Rec::A(std::net::Ipv4Addr::LOCALHOST)]);
    let added = a.call(reqwest::Method::POST, "/rest/v2/tracking_domains", json!({"domain": domain})).await;
    assert_eq!(added["status"], "verified", "{added}");
    let on_b = |host: String| {
        let (client, url) = (b.client.clone(), link.replace(&a.base, &b.base));
        async move { client.get(url).header("host", host).send().await.unwrap().status().as_u16() }
    };
    let within = |want: u16| {
        let on_b = &on_b;
        let domain = domain.clone();
        async move {
            let started = Instant::now();
            while on_b(domain.clone()).await != want {
                assert!(started.elapsed() < Duration::from_secs(5), "node b never answered {want}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            started.elapsed()
        }
    };
    within(302).await;
    let id = added["id"].as_i64().unwrap();
    a.call(reqwest::Method::DELETE, &format!("/rest/v2/tracking_domains/{id}"), Value::Null).await;
    within(404).await;
}

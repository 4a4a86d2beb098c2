//! `kill -9` under load: every click answered with 302 is stored.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(db: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .arg("--db")
        .arg(db)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", &format!("http://127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        if client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_answered_click() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let out = Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .arg("--db")
        .arg(&db)
        .args(["account", "create", "--name", "Crash", "--timezone", "UTC", "--json"])
        .output()
        .unwrap();
    let key =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["api_key"].as_str().unwrap().to_string();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::client();
    let mut server = serve(&db, port);
    wait_up(&client, &base).await;

    let api = |path: &str, body: serde_json::Value| {
        client.post(format!("{base}{path}")).header("x-api-key", &key).body(body.to_string()).send()
    };
    let r = api(
        "/rest/v2/campaigns",
        json!({"name": "c", "mailboxes": ["s@example.com"], "steps": [{"track_links": true}]}),
    )
    .await
    .unwrap();
    let c = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["id"].as_i64().unwrap();
    client
        .patch(format!("{base}/rest/v2/account"))
        .header("x-api-key", &key)
        .body(json!({"click_filter": {"burst_seconds": 1, "min_seconds_after_send": 0}}).to_string())
        .send()
        .await
        .unwrap();
    let mut links = Vec::new();
    for i in 0..20 {
        let email = format!("p{i}@example.com");
        api(
            "/rest/v1/add_prospects_campaign",
            json!({"campaign": {"campaign_id": c}, "prospects": [{"email": email}]}),
        )
        .await
        .unwrap();
        let html: String = (0..5).map(|j| format!("<a href=\"https://example.com/{i}/{j}\">x</a>")).collect();
        let r =
            api(&format!("/rest/v2/campaigns/{c}/emails"), json!({"prospect_email": email, "step": 1, "html": html}))
                .await
                .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        links.extend(v["links"].as_array().unwrap().iter().map(|l| l["tracked_url"].as_str().unwrap().to_string()));
    }

    // 32 clients click until the server dies; each remembers which of its clicks got a 302.
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (client, links, answered) = (client.clone(), links.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let ua = format!("Mozilla/5.0 crash-{w}-{n}");
                let url = &links[(w * 7 + n) % links.len()];
                match client.get(url).header("user-agent", &ua).send().await {
                    Ok(r) if r.status() == 302 => {
                        answered.lock().unwrap().insert(ua);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 100, "load was applied: {} answered clicks", answered.len());

    let conn = rusqlite::Connection::open(&db).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let stored: HashSet<String> = {
        let mut st = conn.prepare("SELECT user_agent FROM clicks").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let lost: Vec<_> = answered.difference(&stored).collect();
    assert!(lost.is_empty(), "{} answered clicks were lost, e.g. {:?}", lost.len(), lost.first());
    drop(conn);

    // Restarted, the node settles what the dead one left: one event per human click.
    let mut server = serve(&db, port);
    wait_up(&client, &base).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut settled = false;
    for _ in 0..200 {
        let pending: i64 =
            conn.query_row("SELECT count(*) FROM clicks WHERE verdict IS NULL", [], |r| r.get(0)).unwrap();
        if pending == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "pending clicks were not settled after restart");
    let humans: i64 = conn.query_row("SELECT count(*) FROM clicks WHERE verdict = 'human'", [], |r| r.get(0)).unwrap();
    let events: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(events, humans);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_batches_in_flight_redelivers_them_with_their_webhook_id() {
    use crate::helpers::{Receiver, Reply};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("deliver.db");
    let out = Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .arg("--db")
        .arg(&db)
        .args(["account", "create", "--name", "Crash", "--timezone", "UTC", "--json"])
        .output()
        .unwrap();
    let key =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["api_key"].as_str().unwrap().to_string();
    let rx = Receiver::start(vec![Reply::Hang(Duration::from_secs(4)), Reply::Status(200)]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_clickhook"))
            .arg("--db")
            .arg(&db)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", &base, "--allow-private-targets"])
            .args(["--batch-window", "200ms", "--retry-schedule", "200ms,200ms,200ms", "--delivery-timeout", "10s"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = crate::helpers::client();
    let mut server = start();
    wait_up(&client, &base).await;
    let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        client.request(method, format!("{base}{path}")).header("x-api-key", &key).body(body.to_string()).send()
    };
    call(
        reqwest::Method::PATCH,
        "/rest/v2/account",
        json!({"click_filter": {"burst_seconds": 0, "min_seconds_after_send": 0}}),
    )
    .await
    .unwrap();
    let r = call(
        reqwest::Method::POST,
        "/rest/v2/campaigns",
        json!({"name": "c", "mailboxes": ["s@example.com"], "steps": [{"track_links": true}]}),
    )
    .await
    .unwrap();
    let c = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["id"].as_i64().unwrap();
    call(
        reqwest::Method::POST,
        "/rest/v1/add_prospects_campaign",
        json!({"campaign": {"campaign_id": c}, "prospects": [{"email": "p@example.com"}]}),
    )
    .await
    .unwrap();
    let html: String = (0..20).map(|j| format!("<a href=\"https://example.com/{j}\">x</a>")).collect();
    let r = call(
        reqwest::Method::POST,
        &format!("/rest/v2/campaigns/{c}/emails"),
        json!({"prospect_email": "p@example.com", "step": 1, "html": html, "sent_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    let sent: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let r = call(
        reqwest::Method::POST,
        "/rest/v1/webhooks/subscribe",
        json!({"target_url": rx.url, "event": "link_clicked"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    for l in sent["links"].as_array().unwrap() {
        let r = client
            .get(l["tracked_url"].as_str().unwrap())
            .header("user-agent", "Mozilla/5.0 Safari")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    // The first batch is in flight (the receiver holds it): kill the node now.
    let first = rx.wait_for(1, 20).await[0].clone();
    server.kill().unwrap();
    server.wait().unwrap();

    let mut server = start();
    wait_up(&client, &base).await;
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 20 {
        assert!(Instant::now() < deadline, "only {} of 20 events arrived", seen.len());
        seen = rx
            .requests()
            .iter()
            .flat_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap().as_array().unwrap().clone())
            .map(|e| e["click_url"].as_str().unwrap().to_string())
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = rx.requests().iter().skip(1).filter(|r| r.headers["webhook-id"] == first.headers["webhook-id"]).count();
    assert!(again >= 1, "the batch in flight at the kill was sent again with its webhook-id");
    server.kill().unwrap();
    server.wait().unwrap();
}

/// SIGTERM under load: stop accepting, finish in-flight clicks, commit, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("term.db");
    let out = Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .arg("--db")
        .arg(&db)
        .args(["account", "create", "--name", "T", "--timezone", "UTC", "--json"])
        .output()
        .unwrap();
    let key =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["api_key"].as_str().unwrap().to_string();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::client();
    let mut server = serve(&db, port);
    wait_up(&client, &base).await;
    let api = |path: &str, body: serde_json::Value| {
        client.post(format!("{base}{path}")).header("x-api-key", &key).body(body.to_string()).send()
    };
    let r = api(
        "/rest/v2/campaigns",
        json!({"name": "c", "mailboxes": ["s@example.com"], "steps": [{"track_links": true}]}),
    )
    .await
    .unwrap();
    let c = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["id"].as_i64().unwrap();
    api(
        "/rest/v1/add_prospects_campaign",
        json!({"campaign": {"campaign_id": c}, "prospects": [{"email": "p@example.com"}]}),
    )
    .await
    .unwrap();
    let r = api(
        &format!("/rest/v2/campaigns/{c}/emails"),
        json!({"prospect_email": "p@example.com", "step": 1, "html": "<a href=\"https://example.com\">x</a>"}),
    )
    .await
    .unwrap();
    let link = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["links"][0]["tracked_url"]
        .as_str()
        .unwrap()
        .to_string();

    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, link, answered) = (client.clone(), link.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match client.get(&link).send().await {
                    Ok(r) if r.status() == 302 => {
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed) as i64;
    assert!(answered > 50);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn.query_row("SELECT count(*) FROM clicks", [], |r| r.get(0)).unwrap();
    assert!(stored >= answered, "{stored} stored < {answered} answered");
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

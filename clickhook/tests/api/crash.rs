//! Processes killed under load (`kill -9`) or asked to stop (SIGTERM) lose nothing answered.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{fresh_db, Db, Receiver, Reply};

/// A `clickhook serve` process on a database of its own that holds one account.
pub struct Node {
    pub db: Db,
    port: u16,
    pub base: String,
    key: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        Node::with_account(Db(fresh_db(dir.path())), dir)
    }

    /// A node on `db` that holds one account (created through the CLI).
    pub fn with_account(db: Db, dir: tempfile::TempDir) -> Node {
        let out = Command::new(env!("CARGO_BIN_EXE_clickhook"))
            .arg("--db")
            .arg(&db.0)
            .args(["account", "create", "--name", "Crash", "--timezone", "UTC", "--json"])
            .output()
            .unwrap();
        let key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["api_key"].as_str().unwrap().to_string();
        let port = crate::helpers::free_port();
        Node { db, port, base: format!("http://127.0.0.1:{port}"), key, client: crate::helpers::client(), _dir: dir }
    }

    /// A node on `db` (which may be empty), with no account of its own.
    pub fn bare(db: &Db) -> Node {
        let port = crate::helpers::free_port();
        let (base, client, dir) = (format!("http://127.0.0.1:{port}"), crate::helpers::client(), tempfile::tempdir());
        Node { db: Db(db.0.clone()), port, base, key: String::new(), client, _dir: dir.unwrap() }
    }

    /// Another node on the same database, with the same account and key.
    pub fn sibling(&self) -> Node {
        Node { key: self.key.clone(), ..Node::bare(&self.db) }
    }

    /// Starts the server and waits until it answers.
    pub async fn start(&self, extra: &[&str]) -> Server {
        self.start_watching(extra, &format!("{}/healthz", self.base)).await
    }

    /// Starts the server and waits until `health` answers 200.
    pub async fn start_watching(&self, extra: &[&str], health: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_clickhook"))
            .arg("--db")
            .arg(&self.db.0)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--public-url", &self.base])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..300 {
            // Checked first: a server that could not start must not pass for one that did.
            if let Some(status) = child.try_wait().unwrap() {
                panic!("server exited at start: {status}");
            }
            if self.client.get(health).send().await.is_ok_and(|r| r.status() == 200) {
                return Server(child);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not come up");
    }

    /// The API key of the node's account.
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// A call's status, headers and JSON body.
    pub async fn call_full(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self.client.request(method, format!("{}{path}", self.base)).header("x-api-key", &self.key);
        let r = r.body(body.to_string()).send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self.client.request(method, format!("{}{path}", self.base)).header("x-api-key", &self.key);
        let text = r.body(body.to_string()).send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A campaign that tracks links, `emails` prospects each sent one email with `per_email`
    /// links (sent long ago); returns the tracked URLs in order.
    pub async fn links(&self, emails: usize, per_email: usize) -> Vec<String> {
        let body = json!({"name": "c", "mailboxes": ["s@example.com"], "steps": [{"track_links": true}]});
        let c = self.call(reqwest::Method::POST, "/rest/v2/campaigns", body).await["id"].as_i64().unwrap();
        let mut links = Vec::new();
        for i in 0..emails {
            let email = format!("p{i}@example.com");
            let enroll = json!({"campaign": {"campaign_id": c}, "prospects": [{"email": email}]});
            self.call(reqwest::Method::POST, "/rest/v1/add_prospects_campaign", enroll).await;
            let html: String =
                (0..per_email).map(|j| format!("<a href=\"https://example.com/{i}/{j}\">x</a>")).collect();
            let send = json!({"prospect_email": email, "step": 1, "html": html, "sent_at": "2020-01-01T00:00:00Z"});
            let sent = self.call(reqwest::Method::POST, &format!("/rest/v2/campaigns/{c}/emails"), send).await;
            links.extend(
                sent["links"].as_array().unwrap().iter().map(|l| l["tracked_url"].as_str().unwrap().to_string()),
            );
        }
        links
    }

    pub async fn filter(&self, burst_seconds: u32) {
        let f = json!({"click_filter": {"burst_seconds": burst_seconds, "min_seconds_after_send": 0}});
        self.call(reqwest::Method::PATCH, "/rest/v2/account", f).await;
    }

    pub async fn sql(&self, query: &str) -> i64 {
        self.db.i64(query).await
    }
}

/// A running `clickhook serve`; killed when dropped, so a failing test leaves no server behind.
pub struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub type Answered = Arc<Mutex<HashSet<String>>>;

/// `n` clients clicking `links` until `until` (or until the node is gone), each click with a user
/// agent of its own, unique across nodes; the set
/// holds the user agents of the clicks answered with 302.
pub fn hammer(node: &Node, links: &[String], n: usize, until: Instant) -> (Vec<tokio::task::JoinHandle<()>>, Answered) {
    let answered = Answered::default();
    let port = node.port;
    let clients = (0..n)
        .map(|w| {
            let (client, links, answered) = (node.client.clone(), links.to_vec(), answered.clone());
            tokio::spawn(async move {
                let mut k = 0;
                while Instant::now() < until {
                    k += 1;
                    let ua = format!("Mozilla/5.0 crash-{port}-{w}-{k}");
                    match client.get(&links[(w * 7 + k) % links.len()]).header("user-agent", &ua).send().await {
                        Ok(r) if r.status() == 302 => {
                            answered.lock().unwrap().insert(ua);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    (clients, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_answered_click() {
    let node = Node::new();
    let mut server = node.start(&[]).await;
    node.filter(1).await;
    let links = node.links(20, 5).await;
    let (clients, answered) = hammer(&node, &links, 32, Instant::now() + Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 100, "load was applied: {} answered clicks", answered.len());

    assert_eq!(node.db.integrity().await, "ok");
    let rows = node.db.stored_click_agents().await;
    let stored: HashSet<String> = rows.iter().cloned().collect();
    assert_eq!(rows.len(), stored.len(), "a click was stored twice");
    let lost: Vec<_> = answered.difference(&stored).collect();
    assert!(lost.is_empty(), "{} answered clicks were lost, e.g. {:?}", lost.len(), lost.first());

    // Restarted, the node settles what the dead one left: one event per human click.
    let mut server = node.start(&[]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.db.unsettled_clicks().await > 0 {
        assert!(Instant::now() < deadline, "clicks were not settled after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        node.sql("SELECT count(*) FROM events").await,
        node.sql("SELECT count(*) FROM clicks WHERE verdict = 'human'").await
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_batches_in_flight_redelivers_them_with_their_webhook_id() {
    let node = Node::new();
    let rx = Receiver::start(vec![Reply::Hang(Duration::from_secs(4)), Reply::Status(200)]);
    // The lease (timeout + 10 s) is how long a dead node's batch waits where leases are shared.
    let flags = [
        "--allow-private-targets",
        "--batch-window",
        "200ms",
        "--retry-schedule",
        "200ms,200ms,200ms",
        "--delivery-timeout",
        "1s",
    ];
    let mut server = node.start(&flags).await;
    node.filter(0).await;
    let links = node.links(1, 20).await;
    let sub = json!({"target_url": rx.url, "event": "link_clicked"});
    assert_eq!(node.call(reqwest::Method::POST, "/rest/v1/webhooks/subscribe", sub).await["message"], "Subscribed.");
    for l in &links {
        let r = node.client.get(l).header("user-agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15").send().await.unwrap();
        assert_eq!(r.status(), 302);
    }
    // The first batch is in flight (the receiver holds it): kill the node now.
    let first = rx.wait_for(1, 20).await[0].clone();
    server.kill().unwrap();
    server.wait().unwrap();

    let mut server = node.start(&flags).await;
    // Every event arrives, and the batch in flight at the kill comes again with its webhook-id.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = rx.requests();
        let seen: HashSet<String> = got
            .iter()
            .flat_map(|r| serde_json::from_str::<Value>(&r.body).unwrap().as_array().unwrap().clone())
            .map(|e| e["click_url"].as_str().unwrap().to_string())
            .collect();
        let again = got.iter().skip(1).filter(|r| r.headers["webhook-id"] == first.headers["webhook-id"]).count();
        if seen.len() == 20 && again >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 20 events arrived; the killed batch came again {again} times",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

/// SIGTERM under load: stop accepting, finish in-flight clicks, commit, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let node = Node::new();
    let mut server = node.start(&[]).await;
    let links = node.links(1, 3).await;
    let (clients, answered) = hammer(&node, &links, 16, Instant::now() + Duration::from_secs(10));
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
    for c in clients {
        c.await.unwrap();
    }
    let answered = answered.lock().unwrap().len() as i64;
    assert!(answered > 50);
    assert!(node.db.stored_click_agents().await.len() as i64 >= answered);
    assert_eq!(node.db.integrity().await, "ok");
}

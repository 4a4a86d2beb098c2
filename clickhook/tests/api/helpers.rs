use std::sync::LazyLock;
use std::time::Duration;

use clickhook::api::auth;
use clickhook::config::Settings;
use clickhook::domain::{Account, NewAccount};
use clickhook::startup::Application;
use clickhook::store::{self, DynStore};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A server on its own runtime thread, so it outlives any one test's runtime.
pub struct TestApp {
    pub base: String,
    pub store: DynStore,
    /// `--db` of this server: an SQLite path or a postgres URL with its own schema.
    pub db: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Tests run on runtimes of their own: a pooled connection would die with its test's runtime.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A port for a server that a test starts as a process of its own and must know beforehand.
///
/// Not `bind(0)` and drop: the kernel hands that same port to the next `bind(0)` or outgoing
/// connection in the meantime, and a test then talks to another test's server (a CI run saw a
/// node answer 404 for its sibling's links that way). These come from below the ephemeral range,
/// each once per test binary, skipping any that something else holds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Two test binaries at once (SQLite and PostgreSQL suites by hand) start apart.
    let start = 10_000 + (std::process::id() % 8) as u16 * 2_000;
    let _ = NEXT.compare_exchange(0, start, Ordering::AcqRel, Ordering::Acquire);
    loop {
        let port = NEXT.fetch_add(1, Ordering::AcqRel);
        assert!(port < low, "ran out of ports below the ephemeral range ({low})");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether a tool a test uses is installed (`probe` runs and succeeds). Under CI it must be
/// (`.ci/run` installs it); elsewhere the test says it skipped.
pub fn tool_installed(probe: &[&str], what: &str) -> bool {
    let ran = std::process::Command::new(probe[0]).args(&probe[1..]).output();
    if ran.is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI needs {what} (.ci/run installs it)");
    eprintln!("skipped: {what} is not installed");
    false
}

/// Which store the suite runs on: `CLICKHOOK_TEST_STORE=postgres` selects PostgreSQL at
/// `CLICKHOOK_TEST_PG_URL` (default postgres://root@127.0.0.1:5432/test); each server gets a
/// schema of its own, so runs and parallel tests never see each other's data.
pub fn on_postgres() -> bool {
    std::env::var("CLICKHOOK_TEST_STORE").is_ok_and(|s| s == "postgres")
}

fn pg_url() -> String {
    std::env::var("CLICKHOOK_TEST_PG_URL").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// A `--db` for a new server: a file in `dir`, or a new schema.
pub fn fresh_db(dir: &std::path::Path) -> String {
    if on_postgres() {
        use rand::distr::{Alphanumeric, SampleString};
        let schema = format!("t_{}", Alphanumeric.sample_string(&mut rand::rng(), 12).to_lowercase());
        format!("{}?schema={schema}", pg_url())
    } else {
        dir.join("clickhook.db").to_str().unwrap().to_string()
    }
}

/// A database as `--db` names it, read directly (plain SQL that both stores understand).
#[derive(Clone)]
pub struct Db(pub String);

impl Db {
    pub async fn exec(&self, sql: &str) {
        if on_postgres() {
            self.pg().await.batch_execute(sql).await.unwrap();
        } else {
            self.sqlite().execute_batch(sql).unwrap();
        }
    }

    /// The first column of the first row, as an integer.
    pub async fn i64(&self, sql: &str) -> i64 {
        if on_postgres() {
            self.pg().await.query_one(sql, &[]).await.unwrap().get(0)
        } else {
            self.sqlite().query_row(sql, [], |r| r.get(0)).unwrap()
        }
    }

    /// The first column of every row, as integers.
    pub async fn i64s(&self, sql: &str) -> Vec<i64> {
        self.column(sql).await
    }

    /// The first column of the first row, as text.
    pub async fn text(&self, sql: &str) -> String {
        self.texts(sql).await.swap_remove(0)
    }

    /// The first column of every row, as text.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        self.column(sql).await
    }

    /// The first column of every row.
    async fn column<T>(&self, sql: &str) -> Vec<T>
    where
        T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>,
    {
        if on_postgres() {
            self.pg().await.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
        } else {
            let c = self.sqlite();
            let mut st = c.prepare(sql).unwrap();
            st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        }
    }

    /// The user agent of every stored click, wherever it is stored: on PostgreSQL a click
    /// answered a moment ago may still be in its group (`click_groups`), not yet in `clicks`.
    pub async fn stored_click_agents(&self) -> Vec<String> {
        if on_postgres() {
            self.texts("SELECT user_agent FROM clicks UNION ALL SELECT unnest(user_agents) FROM click_groups").await
        } else {
            self.texts("SELECT user_agent FROM clicks").await
        }
    }

    /// Stored clicks not yet released (judged and, for a person's, turned into an event).
    /// One statement, so one snapshot: a group taken in between two reads is counted once.
    pub async fn unsettled_clicks(&self) -> i64 {
        if on_postgres() {
            self.i64(
                "SELECT (SELECT count(*) FROM clicks WHERE NOT released) \
                 + (SELECT coalesce(sum(clicks), 0) FROM click_groups)",
            )
            .await
        } else {
            self.i64("SELECT count(*) FROM clicks WHERE NOT released").await
        }
    }

    /// SQLite's own check of the file; PostgreSQL has none to offer short of extensions, and
    /// its crash safety is its WAL's, not ours.
    pub async fn integrity(&self) -> String {
        if on_postgres() {
            "ok".into()
        } else {
            self.sqlite().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
        }
    }

    fn sqlite(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.0).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c
    }

    pub async fn pg(&self) -> tokio_postgres::Client {
        let (url, schema) = self.0.split_once("?schema=").unwrap_or((&self.0, "public"));
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("SET search_path TO {schema}")).await.unwrap();
        client
    }
}

/// Starts a server on a fresh database; `configure` adjusts its settings.
pub fn spawn_app(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let mut settings = Settings::new(db.clone());
    settings.listen = "127.0.0.1:0".into();
    settings.public_url = String::new();
    settings.allow_private_targets = true;
    settings.resolver = Some(crate::dns::dns().addr);
    configure(&mut settings);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let store = store::open(&settings.db).await.unwrap();
            let app = Application::build_with_store(settings, store.clone()).await.unwrap();
            ready_tx.send((app.local_addr(), store)).unwrap();
            app.run_until_stopped(async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let (addr, store) = ready_rx.recv_timeout(Duration::from_secs(30)).expect("server starts");
    TestApp {
        base: format!("http://{addr}"),
        store,
        db,
        client: client(),
        stop: Some(stop_tx),
        thread: Some(thread),
        _dir: Some(dir),
    }
}

static SHARED: LazyLock<TestApp> = LazyLock::new(|| spawn_app(|_| {}));

/// The server most tests share; each test works in accounts of its own.
pub fn shared() -> &'static TestApp {
    &SHARED
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// The v1 error code, for error answers.
    pub fn code(&self) -> &str {
        self.body["status"]["code"].as_str().unwrap_or_default()
    }
    pub fn total(&self) -> i64 {
        self.headers["x-total-count"].to_str().unwrap().parse().unwrap()
    }
}

impl TestApp {
    /// The database under this server, to look inside or do what the API cannot.
    pub fn db(&self) -> Db {
        Db(self.db.clone())
    }

    pub async fn exec(&self, sql: &str) {
        self.db().exec(sql).await
    }

    pub async fn sql_i64(&self, sql: &str) -> i64 {
        self.db().i64(sql).await
    }

    pub async fn sql_text(&self, sql: &str) -> String {
        self.db().text(sql).await
    }

    /// A new account (time zone as given) and an API key for it.
    pub async fn account(&self, tz: &str) -> (Account, String) {
        self.account_with_id(None, tz).await
    }

    pub async fn account_with_id(&self, id: Option<i64>, tz: &str) -> (Account, String) {
        let a = self.store.create_account(NewAccount { id, name: "Test".into(), timezone: tz.into() }).await.unwrap();
        let key = auth::issue_key(&self.store, a.id).await.unwrap();
        (a, key)
    }

    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).header("x-api-key", key);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        into_resp(req.send().await.unwrap()).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Resp {
        into_resp(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call(Method::GET, path, key, None).await
    }
    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::POST, path, key, Some(body)).await
    }
    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, key, Some(body)).await
    }
    pub async fn delete(&self, path: &str, key: &str) -> Resp {
        self.call(Method::DELETE, path, key, None).await
    }

    /// A RUNNING campaign with `steps` EMAIL steps (all tracking links) and one mailbox.
    pub async fn campaign(&self, key: &str, steps: usize) -> i64 {
        let steps: Vec<Value> = (0..steps).map(|_| serde_json::json!({"type": "EMAIL", "track_links": true})).collect();
        let r = self
            .post(
                "/rest/v2/campaigns",
                key,
                serde_json::json!({"name": "C", "status": "RUNNING", "mailboxes": ["sender@example.com"], "steps": steps}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_i64().unwrap()
    }

    /// Enrolls `email` in `campaign`; returns the prospect id.
    pub async fn enroll(&self, key: &str, campaign: i64, email: &str) -> i64 {
        let r = self
            .post(
                "/rest/v1/add_prospects_campaign",
                key,
                serde_json::json!({"campaign": {"campaign_id": campaign}, "prospects": [{"email": email}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["prospects"][0]["id"].as_i64().unwrap()
    }

    /// Sends an email with the given HTML from step 1; returns the response body.
    pub async fn send_html(&self, key: &str, campaign: i64, email: &str, html: &str) -> Value {
        let r = self
            .post(
                &format!("/rest/v2/campaigns/{campaign}/emails"),
                key,
                serde_json::json!({"prospect_email": email, "step": 1, "html": html, "sent_at": "2020-01-01T00:00:00+0000"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body
    }

    /// `POST /rest/v2/prospects/import{query}` with a CSV body.
    pub async fn import_csv(&self, key: &str, query: &str, csv: impl Into<reqwest::Body>) -> Resp {
        let url = format!("{}/rest/v2/prospects/import{query}", self.base);
        self.raw(self.client.post(url).header("x-api-key", key).body(csv)).await
    }

    /// Judged clicks the server's settler holds in memory (its `/metrics`), as text.
    pub async fn held_clicks(&self) -> String {
        let metrics = self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
        metrics.lines().find_map(|l| l.strip_prefix("clickhook_settler_held_clicks ")).unwrap_or("").trim().to_string()
    }

    /// Waits until the settler has judged every click of the account (or panics), up to a
    /// minute: the shared server settles every test's clicks, and yields to
    /// the requests of the others (Schemathesis among them) while they keep it busy.
    pub async fn settled_clicks(&self, key: &str, expected: usize) -> Vec<Value> {
        let mut last = String::new();
        for _ in 0..600 {
            let r = self.get("/rest/v2/clicks?per_page=1000", key).await;
            if r.status == 200 {
                let items = r.body.as_array().unwrap().clone();
                if items.len() == expected && items.iter().all(|c| c["verdict"] != "pending") {
                    return items;
                }
            }
            last = r.text;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("clicks did not settle: {last}");
    }
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

/// A unique email address for this test run.
pub fn unique_email(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{tag}{}@example.com", N.fetch_add(1, Ordering::Relaxed))
}

/// What a test receiver answers, in order; the last one repeats.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// Sleep this long, then answer 200.
    Hang(Duration),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// Counts a request as being answered until dropped, also when its sender hangs up.
struct InFlight {
    id: String,
    map: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.map.lock().unwrap().get_mut(&self.id).unwrap() -= 1;
    }
}

/// A webhook receiver on 127.0.0.1, on its own runtime thread.
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    /// `webhook-id`s that arrived while a request with the same id was still being answered.
    pub overlaps: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Receiver {
    pub fn start(script: Vec<Reply>) -> Receiver {
        Self::start_on(0, script)
    }

    pub fn start_on(port: u16, script: Vec<Reply>) -> Receiver {
        use std::sync::{Arc, Mutex};
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let got2 = got.clone();
        let overlaps: Arc<Mutex<Vec<String>>> = Arc::default();
        let in_flight: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
        let overlaps2 = overlaps.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let app =
                    axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let (got, script) = (got2.clone(), script.clone());
                        let (overlaps, in_flight) = (overlaps2.clone(), in_flight.clone());
                        async move {
                            let id = headers.get("webhook-id").map(|v| v.to_str().unwrap_or("").to_string());
                            let _busy = id.map(|id| {
                                let mut f = in_flight.lock().unwrap();
                                let n = f.entry(id.clone()).or_default();
                                if *n > 0 {
                                    overlaps.lock().unwrap().push(id.clone());
                                }
                                *n += 1;
                                InFlight { id, map: in_flight.clone() }
                            });
                            let mut h = reqwest::header::HeaderMap::new();
                            for (k, v) in headers.iter() {
                                h.insert(
                                    reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                                    reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                                );
                            }
                            got.lock()
                                .unwrap()
                                .push(Received { headers: h, body: String::from_utf8_lossy(&body).into_owned() });
                            let reply = {
                                let mut s = script.lock().unwrap();
                                if s.len() > 1 {
                                    s.pop_front().unwrap()
                                } else {
                                    s.front().cloned().unwrap_or(Reply::Status(200))
                                }
                            };
                            match reply {
                                Reply::Status(c) => axum::http::StatusCode::from_u16(c).unwrap(),
                                Reply::Hang(d) => {
                                    tokio::time::sleep(d).await;
                                    axum::http::StatusCode::OK
                                }
                            }
                        }
                    });
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
                ready_tx.send(listener.local_addr().unwrap().port()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let port = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Receiver { url: format!("http://127.0.0.1:{port}/hook"), got, overlaps, stop: Some(stop_tx) }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or panics after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(std::time::Instant::now() < deadline, "receiver got {} requests, wanted {n}", got.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// An account wired for webhook tests: no burst hold, clicks count at once, a campaign with a
/// prospect and an email holding `links` tracked links, subscribed to `target`.
pub struct Hooked {
    pub key: String,
    pub links: Vec<String>,
    pub email_id: i64,
}

impl TestApp {
    pub async fn hooked(&self, target: &str, links: usize) -> Hooked {
        let (_, key) = self.account("Europe/Warsaw").await;
        let r = self
            .patch(
                "/rest/v2/account",
                &key,
                serde_json::json!({"click_filter": {"burst_seconds": 0, "min_seconds_after_send": 0}}),
            )
            .await;
        assert_eq!(r.status, 200);
        let c = self.campaign(&key, 1).await;
        self.enroll(&key, c, "hooked@example.com").await;
        let html: String = (0..links).map(|i| format!("<a href=\"https://example.com/{i}\">{i}</a>")).collect();
        let sent = self.send_html(&key, c, "hooked@example.com", &html).await;
        let r = self
            .post(
                "/rest/v1/webhooks/subscribe",
                &key,
                serde_json::json!({"target_url": target, "event": "link_clicked"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        Hooked {
            key,
            links: sent["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["tracked_url"].as_str().unwrap().to_string())
                .collect(),
            email_id: sent["email_id"].as_i64().unwrap(),
        }
    }

    pub async fn click(&self, url: &str) {
        let r = self.client.get(url).header("user-agent", "Mozilla/5.0 (Macintosh) Safari/605").send().await.unwrap();
        assert_eq!(r.status(), 302);
    }
}

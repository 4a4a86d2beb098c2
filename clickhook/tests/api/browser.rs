//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver, from
//! Debian's chromium-driver). It signs in, reads a campaign's numbers off the page and compares
//! them with `/rest/v2/stats`, watches a new click arrive over server-sent events, replays a
//! delivery from the Webhooks page, and saves a screenshot of every page under
//! `target/screenshots/<store>/` for review.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{free_port, on_postgres, shared, tool_installed};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session on it.
struct Browser {
    driver: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--no-default-browser-check"]
            }
        }}});
        let r = http.post(format!("{base}/session")).header("content-type", "application/json").body(caps.to_string());
        let r: Value = serde_json::from_str(&r.send().await.unwrap().text().await.unwrap()).unwrap();
        let id = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("a browser session: {r}"));
        Browser { driver, url: format!("{base}/session/{id}"), http }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r: Value = serde_json::from_str(&req.send().await.unwrap().text().await.unwrap()).unwrap();
        assert!(r["value"].get("error").is_none(), "{path}: {r}");
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self.cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: {v}")).to_string()
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{el}/value"), Some(json!({"text": text}))).await;
    }

    async fn script(&self, body: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": body, "args": []}))).await
    }

    /// Waits until `condition` (a script's return value) is true.
    async fn until(&self, what: &str, condition: &str) {
        for _ in 0..200 {
            if self.script(&format!("return !!({condition});")).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.script("return location.href").await;
        panic!("{what}: never true ({condition}) on {url}");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/screenshots")
            .join(if on_postgres() { "postgres" } else { "sqlite" });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    if !tool_installed(&["chromedriver", "--version"], "chromium-driver (Debian's chromium and chromium-driver)") {
        return;
    }
    let app = shared();
    let (key, c, _, delivery, rx) = crate::dashboard::furnished(app).await;
    let b = Browser::start().await;

    // Sign in with the key on the sign-in page.
    b.goto(&format!("{}/app/campaigns", app.base)).await;
    b.until("the sign-in page", "location.pathname === '/app/login'").await;
    b.screenshot("sign-in").await;
    b.type_into("input[name=key]", &key).await;
    b.click("button[type=submit]").await;
    b.until("signed in", "location.pathname === '/app/campaigns' && document.querySelector('table.ranked')").await;
    // Our own script, htmx and the stylesheet loaded under the CSP.
    b.until("htmx loaded", "window.htmx && htmx.version.startsWith('2.')").await;
    let bg = b.script("return getComputedStyle(document.body).backgroundColor").await;
    assert_eq!(bg, "rgb(247, 248, 250)", "the stylesheet applies");
    b.screenshot("campaigns").await;

    // A campaign, reached by its link (htmx swaps the page in place).
    b.click(&format!("a[href='/app/campaigns/{c}']")).await;
    b.until("the campaign page", "document.querySelector('.headline [data-stat=human_clicks]')").await;
    b.screenshot("campaign").await;
    let shown = b
        .script(
            "const o = {}; for (const e of document.querySelectorAll('[data-stat]')) \
             o[e.dataset.stat] = e.querySelector('strong').textContent; return o;",
        )
        .await;
    let since = (chrono::Utc::now() - chrono::Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ");
    let stats = app.get(&format!("/rest/v2/stats?campaign_id={c}&since={since}"), &key).await.body;
    for name in ["emails_sent", "human_clicks", "bot_clicks", "prospects_clicked"] {
        let on_page: i64 = shown[name].as_str().unwrap().replace(',', "").parse().unwrap();
        assert_eq!(on_page, stats["totals"][name].as_i64().unwrap(), "{name}: page {shown}, API {stats}");
    }
    let bars = b.script("return document.querySelectorAll('figure.chart rect.human').length").await;
    assert_eq!(bars.as_u64().unwrap() as usize, stats["series"].as_array().unwrap().len(), "a bar per bucket");

    // Clicks: a new click appears without a reload.
    b.click("nav a[href='/app/clicks']").await;
    b.until("the clicks page", "document.querySelector('tbody[data-stream]')").await;
    let rows = b.script("return document.querySelectorAll('tbody[data-stream] tr').length").await.as_u64().unwrap();
    let email = "dana@example.com";
    app.enroll(&key, c, email).await;
    let sent = app.send_html(&key, c, email, "<a href=\"https://example.com/live\">live</a>").await;
    app.click(sent["links"][0]["tracked_url"].as_str().unwrap()).await;
    b.until(
        "the new click streamed in",
        &format!(
            "document.querySelectorAll('tbody[data-stream] tr').length > {rows} && \
             document.querySelector('tbody[data-stream] tr').textContent.includes('example.com/live')"
        ),
    )
    .await;
    b.screenshot("clicks").await;

    // Webhooks: replay the delivered test batch; htmx swaps its row.
    b.click("nav a[href='/app/webhooks']").await;
    b.until("the webhooks page", &format!("document.querySelector('#delivery-{delivery}')")).await;
    b.screenshot("webhooks").await;
    b.click(&format!("#delivery-{delivery} button")).await;
    // The receiver also gets the new click's batch; the replay is the second with the test's id.
    let test_id = rx.wait_for(1, 30).await[0].headers["webhook-id"].clone();
    let mut replayed = false;
    for _ in 0..300 {
        replayed = rx.requests().iter().filter(|r| r.headers["webhook-id"] == test_id).count() == 2;
        if replayed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replayed, "the batch was sent again with its webhook-id");
    b.until("the row shows it delivered again", &format!("document.querySelector('#delivery-{delivery} .badge.delivered') || document.querySelector('#delivery-{delivery} .badge.pending')")).await;

    b.click("nav a[href='/app/settings']").await;
    b.until("the settings page", "document.querySelector('textarea[name=click_filter]')").await;
    b.screenshot("settings").await;
    b.quit().await;
}

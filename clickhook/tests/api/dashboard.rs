//! The dashboard (/app): signing in with a key or a one-time link, the session cookie, CSRF,
//! the security headers, tenancy on every page and action, numbers equal to `/rest/v2/stats`,
//! new clicks over server-sent events, and bad input refused without a change.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{shared, Receiver, Reply, TestApp};

/// A person's browser, as far as the server can tell: cookies, and the session's CSRF token.
pub struct Visitor<'a> {
    app: &'a TestApp,
    cookies: HashMap<String, String>,
    pub csrf: String,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The number a headline stat shows (`data-stat`), separators removed.
    pub fn stat(&self, name: &str) -> i64 {
        let at = self.text.find(&format!("data-stat=\"{name}\"")).unwrap_or_else(|| panic!("no stat {name}"));
        let rest = &self.text[at..];
        let from = rest.find("<strong>").unwrap() + "<strong>".len();
        let to = rest.find("</strong>").unwrap();
        rest[from..to].replace(',', "").parse().unwrap()
    }
}

/// The hidden CSRF field of a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + "name=\"csrf\" value=\"".len();
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

impl<'a> Visitor<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Visitor { app, cookies: HashMap::new(), csrf: String::new() }
    }

    /// Signed in with an API key through the sign-in form.
    pub async fn with_key(app: &'a TestApp, key: &str) -> Visitor<'a> {
        let mut v = Visitor::new(app);
        let form = v.get("/app/login").await;
        let token = csrf_of(&form.text);
        let p = v.send_form("/app/login", &[("csrf", &token), ("key", key)], &[]).await;
        assert_eq!(p.status, 303, "{}", p.text);
        assert_eq!(p.location(), "/app/campaigns");
        v.csrf = csrf_of(&v.get("/app/campaigns").await.text);
        v
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn keep(&mut self, r: reqwest::Response) -> Page {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (name, value) = c.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let (status, headers) = (r.status(), r.headers().clone());
        Page { status, headers, text: r.text().await.unwrap() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.app.client.get(format!("{}{path}", self.app.base)).header("cookie", self.cookie_header());
        let r = req.send().await.unwrap();
        self.keep(r).await
    }

    /// Posts a form exactly as given (no token added), with extra headers.
    pub async fn send_form(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut req = self
            .app
            .client
            .post(format!("{}{path}", self.app.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        self.keep(r).await
    }

    /// Posts a form with the session's CSRF token.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.send_form(path, &all, &[]).await
    }
}

/// A signed-in account with something on every page: a campaign with human and scanner
/// clicks, a subscription with a delivered batch. Returns (visitor, key, campaign, subscription,
/// delivery, receiver).
pub(crate) async fn furnished(app: &TestApp) -> (String, i64, i64, i64, Receiver) {
    let rx = Receiver::start(vec![Reply::Status(200)]);
    let (key, c) = crate::stats::clicked(app).await;
    let r = app.post("/rest/v1/webhooks/subscribe", &key, json!({"target_url": rx.url, "event": "link_clicked"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = app.get("/rest/v2/subscriptions", &key).await.body[0]["id"].as_i64().unwrap();
    let r = app.post(&format!("/rest/v2/subscriptions/{sub}/test"), &key, json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let delivery = r.body["delivery_id"].as_i64().unwrap();
    rx.wait_for(1, 30).await;
    (key, c, sub, delivery, rx)
}

#[tokio::test]
async fn a_key_signs_in_and_out_with_a_strict_http_only_cookie() {
    let app = shared();
    let (_, key) = app.account("Europe/Warsaw").await;
    let mut v = Visitor::new(app);
    assert_eq!(v.get("/app/campaigns").await.location(), "/app/login", "no session: to the sign-in page");
    let form = v.get("/app/login").await;
    assert_eq!(form.status, 200);
    let token = csrf_of(&form.text);

    let wrong = v.send_form("/app/login", &[("csrf", &token), ("key", "ck_not_a_key")], &[]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("unknown or revoked"), "{}", wrong.text);
    let token = csrf_of(&wrong.text);

    let mut stranger = Visitor::new(app);
    let forged = stranger.send_form("/app/login", &[("csrf", &token), ("key", &key)], &[]).await;
    assert_eq!(forged.status, 403, "a sign-in without the form's own cookie is refused");
    assert!(!stranger.cookies.contains_key("clickhook_session"));

    let ok = v.send_form("/app/login", &[("csrf", &token), ("key", &key)], &[]).await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    let cookie = ok
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap())
        .find(|c| c.starts_with("clickhook_session="))
        .unwrap()
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/app"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "Secure only behind https: {cookie}");
    let page = v.get("/app/campaigns").await;
    assert_eq!(page.status, 200);
    v.csrf = csrf_of(&page.text);

    let out = v.post("/app/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(v.get("/app/campaigns").await.location(), "/app/login");
}

#[tokio::test]
async fn a_one_time_link_signs_in_once() {
    let app = shared();
    let (a, _) = app.account("UTC").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .args(["--db", &app.db, "account", "login-link", &a.id.to_string(), "--public-url", &app.base])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let path = link.strip_prefix(&app.base).unwrap_or_else(|| panic!("{link} is on {}", app.base)).to_string();
    assert!(path.starts_with("/app/login/"), "{link}");

    let mut v = Visitor::new(app);
    // Fetching the link (a mail scanner does) signs nobody in and does not use it up.
    for _ in 0..2 {
        let p = v.get(&path).await;
        assert_eq!(p.status, 200);
        assert!(!v.cookies.contains_key("clickhook_session"));
    }
    let token = csrf_of(&v.get(&path).await.text);
    let p = v.send_form(&path, &[("csrf", &token)], &[]).await;
    assert_eq!(p.status, 303, "{}", p.text);
    assert_eq!(v.get("/app/settings").await.status, 200);

    let mut again = Visitor::new(app);
    let token = csrf_of(&again.get(&path).await.text);
    let p = again.send_form(&path, &[("csrf", &token)], &[]).await;
    assert_eq!(p.status, 401, "a used link signs in no one");
    assert!(!again.cookies.contains_key("clickhook_session"));

    let token = csrf_of(&p.text);
    let p = again.send_form("/app/login/not-a-link", &[("csrf", &token)], &[]).await;
    assert_eq!(p.status, 401);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .args(["--db", &app.db, "account", "login-link", "999999999"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a link for no account");
}

#[tokio::test]
async fn revoking_a_key_ends_its_sessions() {
    let app = shared();
    let (a, key) = app.account("UTC").await;
    let other = clickhook::api::auth::issue_key(&app.store, a.id).await.unwrap();
    let mut by_key = Visitor::with_key(app, &key).await;
    let mut by_other = Visitor::with_key(app, &other).await;

    // From the Settings page of the other key's session.
    let prefix: String = key.chars().take(10).collect();
    let p = by_other.post(&format!("/app/settings/keys/{prefix}/revoke"), &[]).await;
    assert_eq!(p.status, 303, "{}", p.text);
    assert_eq!(by_key.get("/app/campaigns").await.location(), "/app/login", "the revoked key's session ended");
    assert_eq!(by_other.get("/app/campaigns").await.status, 200, "the other key's session lives on");
    assert_eq!(app.get("/rest/v2/account", &key).await.status, 401);

    // htmx is told where to go instead of swapping the sign-in page into a row.
    let r = app
        .client
        .get(format!("{}/app/webhooks", app.base))
        .header("cookie", by_key.cookie_header())
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["hx-redirect"], "/app/login");

    // And by the command line.
    let prefix: String = other.chars().take(10).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clickhook"))
        .args(["--db", &app.db, "account", "revoke", &a.id.to_string(), &prefix])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(by_other.get("/app/campaigns").await.location(), "/app/login");
}

/// Every page a session has, with what it shows.
const PAGES: &[&str] = &["/app/campaigns", "/app/clicks", "/app/clicks?verdict=bot", "/app/webhooks", "/app/settings"];

#[tokio::test]
async fn every_page_is_safe_to_show() {
    let app = shared();
    let (key, c, _, _, _rx) = furnished(app).await;
    let mut v = Visitor::with_key(app, &key).await;
    let campaign = format!("/app/campaigns/{c}");
    for path in PAGES.iter().copied().chain([campaign.as_str(), "/app/login"]) {
        let p = v.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.text);
        let csp = p.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(p.headers["x-content-type-options"], "nosniff");
        if path != "/app/login" {
            assert_eq!(p.headers["cache-control"], "no-store", "{path}");
        }
        assert!(p.headers["content-type"].to_str().unwrap().starts_with("text/html"));
        // Nothing inline that the policy would block: every script has a src, no style or
        // event-handler attributes.
        let lower = p.text.to_lowercase();
        assert_eq!(lower.matches("<script").count(), lower.matches("<script src=\"/app/assets/").count(), "{path}");
        for attr in [" style=", " onclick=", " onload=", " onerror=", " onsubmit="] {
            assert!(!lower.contains(attr), "{path} has {attr}");
        }
    }
    for asset in ["app.css", "app.js", "htmx.min.js"] {
        let p = v.get(&format!("/app/assets/{asset}")).await;
        assert_eq!(p.status, 200, "{asset}");
        assert!(p.text.len() > 100);
    }
    assert_eq!(v.get("/app/assets/nothing.js").await.status, 404);
}

#[tokio::test]
async fn pages_show_the_numbers_of_the_statistics_api() {
    let app = shared();
    let (key, c, _, _, _rx) = furnished(app).await;
    let mut v = Visitor::with_key(app, &key).await;
    for (range, since) in [("30d", Some(30)), ("24h", Some(1))] {
        let page = v.get(&format!("/app/campaigns/{c}?range={range}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let since = since.map(|days| {
            let t = chrono::Utc::now() - chrono::Duration::days(days);
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
        let q = since.map_or(String::new(), |s| format!("&since={s}"));
        let stats = app.get(&format!("/rest/v2/stats?campaign_id={c}{q}"), &key).await;
        for name in ["emails_sent", "human_clicks", "bot_clicks", "prospects_clicked"] {
            assert_eq!(page.stat(name), stats.body["totals"][name].as_i64().unwrap(), "{range}: {name}");
        }
        for reason in stats.body["reasons"].as_array().unwrap() {
            assert!(page.text.contains(reason["reason"].as_str().unwrap()), "{range}: {reason}");
        }
        assert!(page.text.contains("ann@example.com"), "latest prospects who clicked");
    }
    let all = app.get(&format!("/rest/v2/stats?campaign_id={c}"), &key).await.body;
    let list = v.get("/app/campaigns").await;
    let row_at = list.text.find(&format!("data-campaign=\"{c}\"")).unwrap();
    let row = &list.text[row_at..row_at + list.text[row_at..].find("</tr>").unwrap()];
    for name in ["emails_sent", "human_clicks", "bot_clicks", "prospects_clicked"] {
        let n = all["totals"][name].as_i64().unwrap();
        assert!(row.contains(&format!("<td class=\"num\">{n}</td>")), "{name} = {n} in {row}");
    }
    assert!(row.contains("<svg class=\"trend\""), "a trend line: {row}");
}

#[tokio::test]
async fn forms_without_the_session_token_change_nothing() {
    let app = shared();
    let (key, _, sub, _, _rx) = furnished(app).await;
    let mut v = Visitor::with_key(app, &key).await;
    let (other, _) = app.account("UTC").await;
    let other_key = clickhook::api::auth::issue_key(&app.store, other.id).await.unwrap();
    let stranger = Visitor::with_key(app, &other_key).await;
    let pause = format!("/app/webhooks/{sub}/pause");
    let own = v.csrf.clone();
    type Fields<'f> = Vec<(&'f str, &'f str)>;
    let cases: Vec<(&str, Fields, Fields)> = vec![
        ("no token", vec![], vec![]),
        ("an empty token", vec![("csrf", "")], vec![]),
        ("another session's token", vec![("csrf", stranger.csrf.as_str())], vec![]),
        ("from another site", vec![("csrf", own.as_str())], vec![("sec-fetch-site", "cross-site")]),
    ];
    for (what, fields, headers) in cases {
        let p = v.send_form(&pause, &fields, &headers).await;
        assert_eq!(p.status, 403, "{what}: {}", p.text);
        let s = app.get("/rest/v2/subscriptions", &key).await.body[0]["status"].clone();
        assert_eq!(s, "active", "{what}");
    }
    let p = v.post(&pause, &[]).await;
    assert_eq!(p.status, 303);
    assert_eq!(app.get("/rest/v2/subscriptions", &key).await.body[0]["status"], "paused");
    assert_eq!(v.post(&format!("/app/webhooks/{sub}/resume"), &[]).await.status, 303);
    assert_eq!(app.get("/rest/v2/subscriptions", &key).await.body[0]["status"], "active");
}

#[tokio::test]
async fn a_session_sees_and_changes_only_its_own_account() {
    let app = shared();
    let (key_a, c, sub, delivery, _rx) = furnished(app).await;
    let account_a = app.get("/rest/v2/account", &key_a).await.body;
    let target_a = app.get("/rest/v2/subscriptions", &key_a).await.body[0]["target_url"].as_str().unwrap().to_string();
    let secret_a = app.sql_text(&format!("SELECT secret FROM subscriptions WHERE id = {sub}")).await;
    let prefix_a: String = key_a.chars().take(10).collect();
    let url_a = app.get("/rest/v2/clicks", &key_a).await.body[0]["url"].as_str().unwrap().to_string();

    let (_, key_b) = app.account("UTC").await;
    let c_b = app.campaign(&key_b, 1).await;
    let mut b = Visitor::with_key(app, &key_b).await;
    for path in PAGES {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        for (what, secret) in [("target", target_a.as_str()), ("key", prefix_a.as_str()), ("click", url_a.as_str())] {
            assert!(!p.text.contains(secret), "{path} shows A's {what}");
        }
        assert!(!p.text.contains(&format!("data-campaign=\"{c}\"")), "{path} lists A's campaign");
    }
    assert_eq!(b.get(&format!("/app/campaigns/{c_b}")).await.status, 200);
    assert_eq!(b.get(&format!("/app/campaigns/{c}")).await.status, 404, "A's campaign");
    assert!(!b.get(&format!("/app/clicks?campaign_id={c}")).await.text.contains(&url_a));

    let actions = [
        format!("/app/webhooks/{sub}/pause"),
        format!("/app/webhooks/{sub}/resume"),
        format!("/app/webhooks/{sub}/test"),
        format!("/app/webhooks/{sub}/replay_failed"),
        format!("/app/webhooks/{sub}/rotate_secret"),
        format!("/app/deliveries/{delivery}/replay"),
        format!("/app/settings/keys/{prefix_a}/revoke"),
    ];
    let deliveries_a = app.get("/rest/v2/deliveries", &key_a).await.total();
    for path in &actions {
        let p = b.post(path, &[]).await;
        assert_eq!(p.status, 404, "{path}: {}", p.text);
    }
    let p = b.post("/app/settings", &[("timezone", "Asia/Tokyo")]).await;
    assert_eq!(p.status, 303);
    assert_eq!(app.get("/rest/v2/account", &key_a).await.body, account_a, "A's settings are A's");
    assert_eq!(app.get("/rest/v2/subscriptions", &key_a).await.body[0]["status"], "active");
    assert_eq!(app.sql_text(&format!("SELECT secret FROM subscriptions WHERE id = {sub}")).await, secret_a);
    assert_eq!(app.get("/rest/v2/deliveries", &key_a).await.total(), deliveries_a, "no test batch for A");
    let d = app.get(&format!("/rest/v2/deliveries?subscription_id={sub}"), &key_a).await;
    assert!(d.body.as_array().unwrap().iter().all(|d| d["status"] == "delivered"), "no replay: {}", d.text);

    // Without a session, every page and action leads to the sign-in page and changes nothing.
    let mut nobody = Visitor::new(app);
    let campaign = format!("/app/campaigns/{c}");
    for path in PAGES.iter().copied().chain([campaign.as_str(), "/app/clicks/stream"]) {
        assert_eq!(nobody.get(path).await.location(), "/app/login", "{path}");
    }
    for path in actions.iter().map(String::as_str).chain(["/app/settings", "/app/settings/keys", "/app/logout"]) {
        let p = nobody.send_form(path, &[("csrf", "x")], &[]).await;
        assert_eq!(p.location(), "/app/login", "{path}");
    }
    assert_eq!(app.get("/rest/v2/account", &key_a).await.body, account_a);
}

/// Reads server-sent events until one carries `needle` or `secs` pass; returns what came.
async fn events_until(
    v: &Visitor<'_>,
    path: &str,
    needle: &str,
    secs: u64,
    started: tokio::sync::oneshot::Sender<()>,
) -> String {
    let mut r = v
        .app
        .client
        .get(format!("{}{path}", v.app.base))
        .header("cookie", v.cookie_header())
        .timeout(Duration::from_secs(secs + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let _ = started.send(());
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !got.contains(needle) {
        match tokio::time::timeout_at(deadline, r.chunk()).await {
            Ok(Ok(Some(chunk))) => got.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    got
}

#[tokio::test]
async fn new_clicks_arrive_as_they_are_judged() {
    let app = shared();
    let rx = Receiver::start(vec![Reply::Status(200)]);
    let hooked = app.hooked(&rx.url, 2).await;
    let v = Visitor::with_key(app, &hooked.key).await;
    let (other, _) = app.account("UTC").await;
    let other_key = clickhook::api::auth::issue_key(&app.store, other.id).await.unwrap();
    let stranger = Visitor::with_key(app, &other_key).await;

    let (tx, started) = tokio::sync::oneshot::channel();
    let (tx2, started2) = tokio::sync::oneshot::channel();
    let mine = events_until(&v, "/app/clicks/stream?verdict=&campaign_id=&after=0", "example.com/1", 20, tx);
    let theirs = events_until(&stranger, "/app/clicks/stream?after=0", "example.com/1", 4, tx2);
    let click = async {
        let _ = started.await;
        let _ = started2.await;
        app.click(&hooked.links[1]).await;
    };
    let (mine, theirs, _) = tokio::join!(mine, theirs, click);
    assert!(mine.contains("event: click"), "{mine}");
    assert!(mine.contains("https://example.com/1") && mine.contains("data: <tr data-click="), "{mine}");
    assert!(mine.contains("human"), "{mine}");
    assert!(!theirs.contains("example.com/1"), "another account's stream: {theirs}");
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = shared();
    let (key, c, _, _, _rx) = furnished(app).await;
    let mut v = Visitor::with_key(app, &key).await;
    let before = app.get("/rest/v2/account", &key).await.body;
    for (path, status) in [
        ("/app/campaigns/abc".to_string(), 400),
        ("/app/campaigns/99999999".to_string(), 404),
        (format!("/app/campaigns/{c}?range=2y"), 400),
        ("/app/clicks?verdict=maybe".to_string(), 400),
        ("/app/clicks?campaign_id=x".to_string(), 400),
        ("/app/webhooks/abc/pause".to_string(), 405),
    ] {
        let p = v.get(&path).await;
        assert_eq!(p.status, status, "{path}: {}", p.text);
        if status != 405 {
            assert!(p.text.contains("role=\"alert\""), "{path}: an explained error page");
        }
    }
    let filter = serde_json::to_string(&before["click_filter"]).unwrap();
    for (what, fields) in [
        ("an unknown zone", vec![("timezone", "Mars/Olympus"), ("click_filter", filter.as_str())]),
        ("a filter that is not JSON", vec![("timezone", "UTC"), ("click_filter", "{not json")]),
        ("a filter that is a list", vec![("timezone", "UTC"), ("click_filter", "[1]")]),
        ("a filter with a bad value", vec![("timezone", "UTC"), ("click_filter", r#"{"burst_seconds": -5}"#)]),
        ("a label with NUL", vec![("timezone", "UTC"), ("snippet1", "a\0b")]),
    ] {
        let p = v.post("/app/settings", &fields).await;
        assert!(p.status.is_client_error(), "{what}: {} {}", p.status, p.text);
        assert!(p.text.contains("role=\"alert\""), "{what}: {}", p.text);
        assert_eq!(app.get("/rest/v2/account", &key).await.body, before, "{what} changed nothing");
    }
    let p = v.post("/app/settings", &[("timezone", "Asia/Tokyo"), ("snippet2", "Company size")]).await;
    assert_eq!(p.status, 303, "{}", p.text);
    let after = app.get("/rest/v2/account", &key).await.body;
    assert_eq!(after["timezone"], "Asia/Tokyo");
    assert_eq!(after["snippet_labels"], json!({"2": "Company size"}));
    assert_eq!(after["click_filter"], before["click_filter"], "a form without the filter keeps it");
    let _: Value = after;
}

#[tokio::test]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let app = crate::helpers::spawn_app(|_| {});
    let (_, key) = app.account("UTC").await;
    let v = Visitor::with_key(&app, &key).await;
    let mut r = app
        .client
        .get(format!("{}/app/clicks/stream?after=0", app.base))
        .header("cookie", v.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let started = std::time::Instant::now();
    let stopped = tokio::task::spawn_blocking(move || drop(app));
    tokio::time::timeout(Duration::from_secs(10), stopped).await.expect("the server stops with a stream open").unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    // The stream ended with the server.
    let end = tokio::time::timeout(Duration::from_secs(5), async { while let Ok(Some(_)) = r.chunk().await {} }).await;
    assert!(end.is_ok(), "the stream was closed");
}

//! Sending emails with tracked links, following them, and the verdicts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use crate::helpers::{shared, spawn_app, unique_email};

fn token_of(tracked: &str) -> &str {
    tracked.rsplit_once("/c/").unwrap().1
}

#[tokio::test]
async fn send_rewrites_links_and_click_redirects() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let c = app.campaign(&key, 1).await;
    let email = unique_email("click");
    app.enroll(&key, c, &email).await;
    let html = "<html><body><p>Hi <a href=\"https://example.com/a?x=1&amp;y=2\">a</a> \
                <a href=\"mailto:me@example.com\">m</a> <a href=\"#f\">f</a></p></body></html>";
    let r = app
        .post(
            &format!("/rest/v2/campaigns/{c}/emails"),
            &key,
            json!({"prospect_email": email, "step": 1, "html": html, "text": "Read https://example.com/b.", "subject": "Hi",
                   "idempotency_key": "k1", "sent_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["email_no"], "#1");
    let links = r.body["links"].as_array().unwrap().clone();
    assert_eq!(links.len(), 2);
    assert_eq!(links[0]["url"], "https://example.com/a?x=1&y=2");
    let (t1, t2) = (links[0]["tracked_url"].as_str().unwrap(), links[1]["tracked_url"].as_str().unwrap());
    assert!(t1.starts_with(&format!("{}/c/", app.base)));
    assert!(token_of(t1).len() < 48);
    assert_eq!(r.body["html"], html.replace("https://example.com/a?x=1&amp;y=2", t1));
    assert_eq!(r.body["text"], format!("Read {t2}."));

    // The same idempotency key: the same answer, counted once.
    let again = app
        .post(
            &format!("/rest/v2/campaigns/{c}/emails"),
            &key,
            json!({"prospect_email": email, "step": 1, "html": html, "text": "Read https://example.com/b.", "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["links"], json!(links));
    assert_eq!(app.get(&format!("/rest/v1/prospects?search=email={email}"), &key).await.body[0]["emails_sent"], 1);

    let res = app.client.get(t1).header("user-agent", "Mozilla/5.0 (Macintosh) Safari/605").send().await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "https://example.com/a?x=1&y=2");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let clicks = app.settled_clicks(&key, 1).await;
    assert_eq!(clicks[0]["verdict"], "human");
    assert_eq!(clicks[0]["ip"], "127.0.0.0", "anonymised by default");
    assert_eq!(clicks[0]["url"], "https://example.com/a?x=1&y=2");
}

#[tokio::test]
async fn steps_without_tracking_leave_bodies_alone() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let r = app
        .post(
            "/rest/v2/campaigns",
            &key,
            json!({"name": "n", "mailboxes": ["s@example.com"], "steps": [{"type": "EMAIL"}]}),
        )
        .await;
    let c = r.body["id"].as_i64().unwrap();
    app.enroll(&key, c, "plain@example.com").await;
    let html = "<a href=\"https://example.com\">x</a>";
    let r = app
        .post(
            &format!("/rest/v2/campaigns/{c}/emails"),
            &key,
            json!({"prospect_email": "plain@example.com", "step": 1, "html": html}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["html"], html);
    assert_eq!(r.body["links"], json!([]));
    // A prospect of the account who is not enrolled in the campaign.
    app.post("/rest/v1/add_prospects_list", &key, json!({"prospects": [{"email": "loose@example.com"}]})).await;
    let r = app
        .post(
            &format!("/rest/v2/campaigns/{c}/emails"),
            &key,
            json!({"prospect_email": "loose@example.com", "step": 1, "html": html}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("not enrolled"), "{}", r.text);
}

#[tokio::test]
async fn bad_tokens_get_404_and_are_not_clicks() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let c = app.campaign(&key, 1).await;
    let email = unique_email("tok");
    app.enroll(&key, c, &email).await;
    let sent = app.send_html(&key, c, &email, "<a href=\"https://example.com/t\">t</a>").await;
    let tracked = sent["links"][0]["tracked_url"].as_str().unwrap();
    let token = token_of(tracked).to_string();
    let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let tampered_mac = URL_SAFE_NO_PAD.encode(&raw);
    let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    raw[2] ^= 1; // another email id under the same MAC
    let tampered_body = URL_SAFE_NO_PAD.encode(&raw);
    let percent: String = token.bytes().map(|b| format!("%{b:02X}")).collect();
    let cases = [
        tampered_mac,
        tampered_body,
        token[..token.len() - 1].to_string(),
        token[..10].to_string(),
        format!("{token}A"),
        format!("{token}{}", "A".repeat(60)),
        percent,
        format!("{token}=="),
        token.replace('-', "+").replace('_', "/") + "+",
        "%FF%FE%00".into(),
        "caf%C3%A9".into(),
        "..%2F..%2Fetc%2Fpasswd".into(),
    ];
    for bad in &cases {
        let r = app.client.get(format!("{}/c/{bad}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
        assert!(r.headers().get("location").is_none());
        let single_segment = !bad.contains('/');
        assert!(!single_segment || r.text().await.unwrap().contains("not valid"), "{bad}");
    }
    assert_eq!(app.client.get(tracked).send().await.unwrap().status(), 302);
    assert_eq!(app.settled_clicks(&key, 1).await.len(), 1);
}

#[tokio::test]
async fn rotated_keys_keep_verifying_until_removed() {
    let app = spawn_app(|_| {});
    let (_, key) = app.account("UTC").await;
    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "rot@example.com").await;
    let old = app.send_html(&key, c, "rot@example.com", "<a href=\"https://example.com/old\">o</a>").await;
    let old_url = old["links"][0]["tracked_url"].as_str().unwrap().to_string();
    let first_key = app.store.link_keys().await.unwrap()[0].id;
    app.store.add_link_key(clickhook::click::token::new_secret()).await.unwrap();
    // This node learns of the new key on its next refresh: an old-key link still works meanwhile.
    assert_eq!(app.client.get(&old_url).send().await.unwrap().status(), 302);
    app.store.remove_link_key(first_key).await.unwrap();
    // Removal reaches the node at its next key refresh; a forged key id triggers one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let forged = URL_SAFE_NO_PAD.encode([9u8, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(app.client.get(format!("{}/c/{forged}", app.base)).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(&old_url).send().await.unwrap().status(), 404, "a removed key verifies nothing");
    let new = app.send_html(&key, c, "rot@example.com", "<a href=\"https://example.com/new\">n</a>").await;
    let new_url = new["links"][0]["tracked_url"].as_str().unwrap();
    assert_eq!(app.client.get(new_url).send().await.unwrap().status(), 302);
}

#[tokio::test]
async fn bot_signals_and_settings() {
    let app = spawn_app(|s| s.trust_proxy = true);
    let (_, key) = app.account("UTC").await;
    let r = app.patch("/rest/v2/account", &key, json!({"click_filter": {"honeypot": true, "burst_seconds": 2}})).await;
    assert_eq!(r.body["click_filter"]["honeypot"], true, "{}", r.text);
    assert_eq!(r.body["click_filter"]["min_seconds_after_send"], 10);
    let c = app.campaign(&key, 1).await;
    for e in ["h@example.com", "s@example.com", "b@example.com", "p@example.com", "u@example.com", "hp@example.com"] {
        app.enroll(&key, c, e).await;
    }
    let two =
        "<html><body><a href=\"https://example.com/1\">1</a><a href=\"https://example.com/2\">2</a></body></html>";
    let human = app.send_html(&key, c, "h@example.com", two).await;
    assert!(human["html"].as_str().unwrap().contains("display:none"), "honeypot added");
    // Sent just now: a click at once is a scanner's.
    let soon = app
        .post(
            &format!("/rest/v2/campaigns/{c}/emails"),
            &key,
            json!({"prospect_email": "s@example.com", "step": 1, "html": two}),
        )
        .await
        .body;
    let burst = app.send_html(&key, c, "b@example.com", two).await;
    let head = app.send_html(&key, c, "p@example.com", two).await;
    let ua = app.send_html(&key, c, "u@example.com", two).await;
    let pot = app.send_html(&key, c, "hp@example.com", two).await;
    let url = |v: &serde_json::Value, i: usize| v["links"][i]["tracked_url"].as_str().unwrap().to_string();
    let browser = "Mozilla/5.0 (Windows NT 10.0) Chrome/120";
    let get = |u: String, ua: &'static str| {
        app.client.get(u).header("user-agent", ua).header("x-forwarded-for", "198.51.100.7").send()
    };
    assert_eq!(get(url(&human, 0), browser).await.unwrap().status(), 302);
    assert_eq!(get(url(&soon, 0), browser).await.unwrap().status(), 302);
    assert_eq!(get(url(&burst, 0), browser).await.unwrap().status(), 302);
    assert_eq!(get(url(&burst, 1), browser).await.unwrap().status(), 302);
    let head_req = app
        .client
        .head(url(&head, 0))
        .header("user-agent", browser)
        .header("x-forwarded-for", "10.0.0.1, 198.51.100.7");
    assert_eq!(head_req.send().await.unwrap().status(), 302);
    assert_eq!(get(url(&ua, 0), "Mozilla/5.0 (compatible; Barracuda Sentinel)").await.unwrap().status(), 302);
    let html = pot["html"].as_str().unwrap();
    let hp_url = html.split("href=\"").last().unwrap().split('"').next().unwrap().to_string();
    assert_eq!(get(hp_url, browser).await.unwrap().status(), 200, "the honeypot answers without a redirect");

    let clicks = app.settled_clicks(&key, 7).await;
    let reasons = |email_id: &serde_json::Value| -> Vec<String> {
        clicks
            .iter()
            .filter(|c| &c["email_id"] == email_id)
            .flat_map(|c| c["reasons"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(reasons(&human["email_id"]), ["no_bot_signal"]);
    assert!(reasons(&soon["email_id"])[0].starts_with("clicked_0s_after_send"));
    assert_eq!(reasons(&burst["email_id"]), ["burst_of_links", "burst_of_links"]);
    assert_eq!(reasons(&head["email_id"]), ["head_request"]);
    assert_eq!(reasons(&ua["email_id"]), ["scanner_user_agent:barracuda"]);
    assert_eq!(reasons(&pot["email_id"]), ["honeypot_link"]);
    assert!(clicks.iter().all(|c| c["ip"] == "198.51.100.0"), "X-Forwarded-For trusted, then anonymised");
    assert_eq!(app.get("/rest/v2/clicks?verdict=human", &key).await.total(), 1);
    assert_eq!(app.get("/rest/v2/clicks?verdict=bot", &key).await.total(), 6);
    let p = app.get("/rest/v1/prospects?search=email=h@", &key).await.body[0]["id"].as_i64().unwrap();
    assert_eq!(app.get(&format!("/rest/v2/clicks?prospect_id={p}"), &key).await.total(), 1);
    assert_eq!(app.get(&format!("/rest/v2/clicks?campaign_id={c}&since=2020-01-01T00:00:00Z"), &key).await.total(), 7);

    // Only the human click became an event: bot clicks are recorded, not delivered.
    assert_eq!(app.sql_i64("SELECT count(*) FROM events").await, 1);

    // With deliver_bot_clicks on, bot clicks make events too.
    app.patch("/rest/v2/account", &key, json!({"click_filter": {"deliver_bot_clicks": true}})).await;
    assert_eq!(app.client.head(url(&head, 1)).send().await.unwrap().status(), 302);
    app.settled_clicks(&key, 8).await;
    assert_eq!(app.sql_i64("SELECT count(*) FROM events").await, 2);

    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    // Counters are process-wide and other tests' servers share this process: at least ours.
    let value = |name: &str| -> f64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(-1.0)
    };
    assert!(value("clickhook_clicks_total{verdict=\"bot\"}") >= 7.0, "{metrics}");
    assert!(value("clickhook_redirect_seconds_count") >= 8.0, "{metrics}");
    assert!(value("clickhook_commit_batch_size_count") >= 8.0, "{metrics}");
    assert_eq!(value("clickhook_outbox_pending_clicks"), 0.0, "{metrics}");
    // No test server is anywhere near a minute behind.
    assert_eq!(value("clickhook_settling_behind"), 0.0, "{metrics}");
    assert!(value("clickhook_events_total") >= 2.0, "{metrics}");
    assert!(metrics.contains("# TYPE clickhook_events counter\n"), "a counter, not a gauge: {metrics}");
    assert!(value("process_resident_memory_bytes") > 0.0, "{metrics}");
    assert!(metrics.contains(&format!("clickhook_build_info{{version=\"{}\"", env!("CARGO_PKG_VERSION"))));
    assert_valid_openmetrics(&metrics);
}

/// Prometheus's own Python client parses the exposition (installed by .ci/run; required under CI).
fn assert_valid_openmetrics(text: &str) {
    use std::io::Write;
    let parse = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                 print(len(list(p(sys.stdin.read()))))";
    if !crate::helpers::tool_installed(&["python3", "-c", "import prometheus_client"], "Python's prometheus-client") {
        return;
    }
    let mut child = std::process::Command::new("python3")
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not OpenMetrics: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let families: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(families >= 15, "{families} metric families parsed");
}

#[tokio::test]
async fn full_ip_when_the_operator_asks() {
    let app = spawn_app(|s| s.full_ip = true);
    let (_, key) = app.account("UTC").await;
    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "ip@example.com").await;
    let sent = app.send_html(&key, c, "ip@example.com", "<a href=\"https://example.com\">x</a>").await;
    // Without --trust-proxy the header is ignored.
    app.client
        .get(sent["links"][0]["tracked_url"].as_str().unwrap())
        .header("x-forwarded-for", "203.0.113.9")
        .header("user-agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15")
        .send()
        .await
        .unwrap();
    let clicks = app.settled_clicks(&key, 1).await;
    assert_eq!(clicks[0]["ip"], "127.0.0.1");
}

/// An email with two links, for the burst tests, and the browser that clicks them.
const TWO_LINKS: &str = "<a href=\"https://example.com/1\">1</a><a href=\"https://example.com/2\">2</a>";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120";

/// The first click of a burst is judged before the second exists; the second overrules it
/// while it is still held, so neither becomes a webhook.
#[tokio::test]
async fn a_later_click_overrules_an_earlier_held_one() {
    let app = spawn_app(|_| {});
    let (_, key) = app.account("UTC").await;
    app.patch("/rest/v2/account", &key, json!({"click_filter": {"burst_seconds": 3}})).await;
    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "burst@example.com").await;
    let sent = app.send_html(&key, c, "burst@example.com", TWO_LINKS).await;
    let ua = FIREFOX;
    let url = |i: usize| sent["links"][i]["tracked_url"].as_str().unwrap().to_string();
    app.client.get(url(0)).header("user-agent", ua).send().await.unwrap();
    // Let the settler judge the first click on its own: it is then held in the settler's memory,
    // provisionally human, its row still unjudged.
    let held = || app.held_clicks();
    for _ in 0..50 {
        if held().await == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(held().await, "1", "judged, held");
    assert_eq!(app.sql_i64("SELECT count(*) FROM clicks WHERE verdict IS NULL").await, 1, "written once, at release");
    app.client.get(url(1)).header("user-agent", ua).send().await.unwrap();
    let clicks = app.settled_clicks(&key, 2).await;
    for c in &clicks {
        assert_eq!(c["verdict"], "bot", "{c}");
        assert_eq!(c["reasons"], json!(["burst_of_links"]));
    }
    assert_eq!(app.sql_i64("SELECT count(*) FROM events").await, 0);
}

/// The settler keeps each account's judged clicks for that account's burst window. When the
/// window widens, clicks let go under the old one are in reach again: the settler reads its
/// burst history from the store afresh, and a click just beyond the old window counts.
#[tokio::test]
async fn a_widened_burst_window_reaches_clicks_let_go_under_the_old_one() {
    let app = spawn_app(|_| {});
    let (_, key) = app.account("UTC").await;
    app.patch("/rest/v2/account", &key, json!({"click_filter": {"burst_seconds": 1}})).await;
    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "wider@example.com").await;
    app.enroll(&key, c, "other@example.com").await;
    let other = app.send_html(&key, c, "other@example.com", "<a href=\"https://example.com/3\">3</a>").await;
    let sent = app.send_html(&key, c, "wider@example.com", TWO_LINKS).await;
    let ua = FIREFOX;
    let url = |i: usize| sent["links"][i]["tracked_url"].as_str().unwrap().to_string();
    app.client.get(url(0)).header("user-agent", ua).send().await.unwrap();
    let first = app.settled_clicks(&key, 1).await;
    assert_eq!(first[0]["verdict"], "human");
    // Beyond the 1 s window and the 2 s the settler keeps past it, a click on another email: its
    // round lets the first click go from memory.
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let r = app.client.get(other["links"][0]["tracked_url"].as_str().unwrap()).header("user-agent", ua).send().await;
    assert_eq!(r.unwrap().status(), 302);
    app.settled_clicks(&key, 2).await;
    app.patch("/rest/v2/account", &key, json!({"click_filter": {"burst_seconds": 30}})).await;
    app.client.get(url(1)).header("user-agent", ua).send().await.unwrap();
    let clicks = app.settled_clicks(&key, 3).await;
    let second = clicks.iter().find(|c| c["url"] == "https://example.com/2").expect("the second click");
    assert_eq!(second["verdict"], "bot", "{clicks:?}");
    assert_eq!(second["reasons"], json!(["burst_of_links"]));
    let first = clicks.iter().find(|c| c["url"] == "https://example.com/1").unwrap();
    assert_eq!(first["verdict"], "human", "released before the second click: final");
}

/// Clicks held in the store (judged by an earlier version, or in a round the settler's memory had
/// no room for) are released beside those held in memory, each once, each with its event.
#[tokio::test]
async fn clicks_held_in_the_store_and_in_memory_are_released_together() {
    let app = spawn_app(|_| {});
    let (account, key) = app.account("UTC").await;
    app.patch("/rest/v2/account", &key, json!({"click_filter": {"burst_seconds": 3}})).await;
    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "both@example.com").await;
    let sent = app.send_html(&key, c, "both@example.com", "<a href=\"https://example.com/1\">1</a>").await;
    let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120";
    let r = app.client.get(sent["links"][0]["tracked_url"].as_str().unwrap()).header("user-agent", ua).send().await;
    assert_eq!(r.unwrap().status(), 302);
    let held = || app.held_clicks();
    for _ in 0..50 {
        if held().await == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(held().await, "1", "the click is held in memory");
    // A click judged and held in the store, as an earlier version left it.
    let email = app.sql_i64("SELECT id FROM emails").await;
    let now = clickhook::store::now_millis();
    app.exec(&format!(
        "INSERT INTO clicks (account_id, email_id, link_no, at, user_agent, verdict, reasons, released) \
         VALUES ({}, {email}, 1, {now}, '{ua}', 'human', '[]', FALSE)",
        account.id
    ))
    .await;
    let clicks = app.settled_clicks(&key, 2).await;
    assert!(clicks.iter().all(|c| c["verdict"] == "human"), "{clicks:?}");
    for _ in 0..50 {
        if app.sql_i64("SELECT count(*) FROM events").await == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.sql_i64("SELECT count(*) FROM events").await, 2, "an event each");
    assert_eq!(app.sql_i64("SELECT count(*) FROM clicks WHERE verdict IS NULL OR NOT released").await, 0);
    assert_eq!(held().await, "0");
}

/// A click is listed as soon as it is answered, settled or not: on PostgreSQL it is then still
/// in its group, and the list takes it in rather than wait for the settler (which looks every
/// 100 ms, so this list, made at once, nearly always comes first).
#[tokio::test]
async fn a_click_is_listed_as_soon_as_it_is_answered() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "at-once@example.com").await;
    let sent = app.send_html(&key, c, "at-once@example.com", "<a href=\"https://example.com/now\">now</a>").await;
    let r = app.client.get(sent["links"][0]["tracked_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let listed = app.get("/rest/v2/clicks", &key).await;
    assert_eq!(listed.total(), 1, "{}", listed.text);
    assert_eq!(listed.body[0]["url"], "https://example.com/now");
}

/// An account's own lists: a distrusted user agent makes a bot, named; a trusted network is not
/// judged by the shipped lists (a Mimecast user agent from it is a person's). Stored and
/// answered as given.
#[tokio::test]
async fn an_account_trusts_and_distrusts_user_agents_and_networks() {
    let app = spawn_app(|s| s.trust_proxy = true);
    let (_, key) = app.account("UTC").await;
    let filter = json!({"click_filter": {
        "distrusted_user_agents": ["Firefox/120"],
        "trusted_networks": ["198.51.100.0/24"],
    }});
    let r = app.patch("/rest/v2/account", &key, filter).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["click_filter"]["trusted_networks"], json!(["198.51.100.0/24"]));
    assert_eq!(r.body["click_filter"]["trusted_user_agents"], json!([]));
    let c = app.campaign(&key, 1).await;
    for e in ["fox@example.com", "mc@example.com"] {
        app.enroll(&key, c, e).await;
    }
    let one = "<a href=\"https://example.com/1\">1</a>";
    let fox = app.send_html(&key, c, "fox@example.com", one).await;
    let mc = app.send_html(&key, c, "mc@example.com", one).await;
    let click = |v: &serde_json::Value, ua: &'static str, from: &'static str| {
        let url = v["links"][0]["tracked_url"].as_str().unwrap().to_string();
        app.client.get(url).header("user-agent", ua).header("x-forwarded-for", from).send()
    };
    assert_eq!(click(&fox, "Mozilla/5.0 (X11; Linux x86_64) Firefox/120", "203.0.113.9").await.unwrap().status(), 302);
    assert_eq!(
        click(&mc, "Mozilla/5.0 (compatible; Mimecast URL Protect)", "198.51.100.7").await.unwrap().status(),
        302
    );
    let clicks = app.settled_clicks(&key, 2).await;
    let by_email = |id: &serde_json::Value| clicks.iter().find(|c| &c["email_id"] == id).unwrap().clone();
    let fox_click = by_email(&fox["email_id"]);
    assert_eq!(
        (fox_click["verdict"].as_str(), &fox_click["reasons"]),
        (Some("bot"), &json!(["account_user_agent:Firefox/120"]))
    );
    let mc_click = by_email(&mc["email_id"]);
    assert_eq!(mc_click["verdict"], "human", "{mc_click}");
}

/// Deleting the newest clicks (with their campaign) does not hand their ids to new clicks: a
/// click made afterwards is judged and released like any other.
#[tokio::test]
async fn a_click_after_the_newest_were_deleted_is_judged() {
    let app = spawn_app(|_| {});
    let (_, key) = app.account("UTC").await;
    let f = json!({"click_filter": {"burst_seconds": 0, "min_seconds_after_send": 0}});
    assert_eq!(app.patch("/rest/v2/account", &key, f).await.status, 200);
    let (kept, gone) = (app.campaign(&key, 1).await, app.campaign(&key, 1).await);
    let mut links = Vec::new();
    for (c, email) in [(kept, "kept@example.com"), (gone, "gone@example.com")] {
        app.enroll(&key, c, email).await;
        let sent = app.send_html(&key, c, email, "<a href=\"https://example.com/\">x</a>").await;
        links.push(sent["links"][0]["tracked_url"].as_str().unwrap().to_string());
    }
    app.click(&links[1]).await;
    app.settled_clicks(&key, 1).await;
    assert_eq!(app.delete(&format!("/rest/v2/campaigns/{gone}"), &key).await.status, 204);
    app.click(&links[0]).await;
    let clicks = app.settled_clicks(&key, 1).await;
    assert_eq!(clicks[0]["verdict"], "human", "{clicks:?}");
}

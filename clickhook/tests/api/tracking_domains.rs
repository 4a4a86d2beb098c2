//! Each account's own tracking domain: verified in DNS (a server on loopback), links issued on
//! it, followed on it only for that account's links, `/tls/ask`, re-checks, and bad input.

use std::net::Ipv4Addr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::dns::{dns, Rec};
use crate::helpers::{shared, spawn_app, unique_email, Resp, TestApp};

/// A domain name no other test uses (one DNS server and one store serve many tests).
fn unique_domain(tag: &str) -> String {
    unique_email(tag).replace('@', ".").replace(".example.com", ".acme.test")
}

fn loopback() -> Vec<Rec> {
    vec![Rec::A(Ipv4Addr::LOCALHOST), Rec::Aaaa(std::net::Ipv6Addr::LOCALHOST)]
}

/// `GET` of a tracked URL's path on this server, with `host` as the Host header.
async fn follow_on(app: &TestApp, tracked: &str, host: &str) -> reqwest::StatusCode {
    let path = &tracked[tracked.find("/c/").unwrap()..];
    let req = app.client.get(format!("{}{path}", app.base)).header("host", host).header("user-agent", BROWSER);
    req.send().await.unwrap().status()
}

const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";

async fn add(app: &TestApp, key: &str, domain: &str) -> Resp {
    app.post("/rest/v2/tracking_domains", key, json!({"domain": domain})).await
}

async fn ask(app: &TestApp, query: &str) -> Resp {
    app.raw(app.client.get(format!("{}/tls/ask{query}", app.base))).await
}

async fn stored_clicks(app: &TestApp) -> i64 {
    app.db().unsettled_clicks().await + app.sql_i64("SELECT count(*) FROM clicks WHERE released").await
}

fn tracked_urls(sent: &Value) -> Vec<String> {
    sent["links"].as_array().unwrap().iter().map(|l| l["tracked_url"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_verified_domain_carries_its_accounts_links_and_no_others() {
    let app = shared();
    let (_, a) = app.account("UTC").await;
    let (_, b) = app.account("UTC").await;
    let (mine, theirs) = (unique_domain("mine"), unique_domain("theirs"));

    // Added before its DNS exists: pending, with what to create and what was found.
    let r = add(app, &a, &mine).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["error"], "no CNAME, A or AAAA record");
    assert_eq!(r.body["dns"], json!({"type": "A", "name": mine, "value": "127.0.0.1"}));
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(ask(app, &format!("?domain={mine}")).await.status, 404, "not verified, no certificate");

    // Links are issued on --public-url until the domain is verified.
    let campaign = app.campaign(&a, 1).await;
    let email = unique_email("td");
    app.enroll(&a, campaign, &email).await;
    let before = app.send_html(&a, campaign, &email, r#"<a href="https://x.example/1">x</a>"#).await;
    assert!(tracked_urls(&before)[0].starts_with(&format!("{}/c/", app.base)));

    dns().set(&mine, loopback());
    let r = app.post(&format!("/rest/v2/tracking_domains/{id}/verify"), &a, json!({})).await;
    assert_eq!((r.status.as_u16(), &r.body["status"], &r.body["error"]), (200, &json!("verified"), &Value::Null));
    assert!(r.body["verified"].is_string());
    assert_eq!(ask(app, &format!("?domain={}", mine.to_uppercase())).await.status, 200);

    // New links go on the domain; the old ones still work where they were issued.
    let sent = app.send_html(&a, campaign, &email, r#"<a href="https://x.example/2">x</a>"#).await;
    let tracked = &tracked_urls(&sent)[0];
    assert!(tracked.starts_with(&format!("https://{mine}/c/")), "{tracked}");
    let clicks = stored_clicks(app).await;
    assert_eq!(follow_on(app, tracked, &mine).await, 302);
    assert_eq!(follow_on(app, tracked, &format!("{}:443", mine.to_uppercase())).await, 302);
    let public_host = app.base.trim_start_matches("http://");
    assert_eq!(follow_on(app, tracked, public_host).await, 302, "--public-url's host takes every account's links");
    assert_eq!(follow_on(app, &tracked_urls(&before)[0], &mine).await, 302);

    // Another account's verified domain, or any other host: 404, and nothing stored.
    dns().set(&theirs, loopback());
    assert_eq!(add(app, &b, &theirs).await.body["status"], "verified");
    assert_eq!(follow_on(app, tracked, &theirs).await, 404);
    assert_eq!(follow_on(app, tracked, "evil.example").await, 404);
    assert_eq!(follow_on(app, tracked, "").await, 404);
    assert_eq!(stored_clicks(app).await, clicks + 4);

    // Deleted: refused on it at once, certificates too; new links back on --public-url.
    assert_eq!(app.delete(&format!("/rest/v2/tracking_domains/{id}"), &a).await.status, 204);
    assert_eq!(follow_on(app, tracked, &mine).await, 404);
    assert_eq!(ask(app, &format!("?domain={mine}")).await.status, 404);
    let after = app.send_html(&a, campaign, &email, r#"<a href="https://x.example/3">x</a>"#).await;
    assert!(tracked_urls(&after)[0].starts_with(&format!("{}/c/", app.base)));
    assert_eq!(app.get("/rest/v2/tracking_domains", &a).await.body, json!([]));
}

#[tokio::test]
async fn links_go_on_the_default_domain() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let (first, second) = (unique_domain("first"), unique_domain("second"));
    dns().set(&first, loopback());
    dns().set(&second, loopback());
    let one = add(app, &key, &first).await.body["id"].as_i64().unwrap();
    let two = add(app, &key, &second).await.body["id"].as_i64().unwrap();
    let campaign = app.campaign(&key, 1).await;
    let email = unique_email("default");
    app.enroll(&key, campaign, &email).await;
    let host_of = |sent: Value| tracked_urls(&sent)[0].split('/').nth(2).unwrap().to_string();
    let html = r#"<a href="https://x.example/">x</a>"#;
    assert_eq!(host_of(app.send_html(&key, campaign, &email, html).await), first, "the oldest verified one");

    let r = app.patch(&format!("/rest/v2/tracking_domains/{two}"), &key, json!({"default": true})).await;
    assert_eq!((r.status.as_u16(), &r.body["default"]), (200, &json!(true)), "{}", r.text);
    assert_eq!(host_of(app.send_html(&key, campaign, &email, html).await), second);
    let listed = app.get("/rest/v2/tracking_domains", &key).await;
    assert_eq!(listed.total(), 2);
    let defaults: Vec<(i64, bool)> =
        listed.body.as_array().unwrap().iter().map(|d| (d["id"].as_i64().unwrap(), d["default"] == true)).collect();
    assert_eq!(defaults, [(one, false), (two, true)]);

    // A default that stops verifying gives way to another verified domain.
    app.exec(&format!("UPDATE tracking_domains SET status = 'invalid' WHERE id = {two}")).await;
    assert_eq!(host_of(app.send_html(&key, campaign, &email, html).await), first);
}

#[tokio::test]
async fn domains_are_rechecked_and_a_cname_to_the_public_host_verifies() {
    let public = unique_domain("links");
    let app = spawn_app(|s| {
        s.public_url = format!("http://{public}");
        s.recheck_domains = Duration::from_millis(100);
    });
    dns().set(&public, loopback());
    let domain = unique_domain("cname");
    dns().set(&domain, vec![Rec::Cname(public.clone())]);
    let (_, key) = app.account("UTC").await;
    let r = add(&app, &key, &domain).await;
    assert_eq!(r.body["status"], "verified", "{}", r.text);
    assert_eq!(r.body["dns"], json!({"type": "CNAME", "name": domain, "value": public}));
    let id = r.body["id"].as_i64().unwrap();
    let campaign = app.campaign(&key, 1).await;
    let email = unique_email("recheck");
    app.enroll(&key, campaign, &email).await;
    let sent = app.send_html(&key, campaign, &email, r#"<a href="https://x.example/">x</a>"#).await;
    let tracked = &tracked_urls(&sent)[0];
    assert_eq!(follow_on(&app, tracked, &domain).await, 302);

    // It points elsewhere now: after a few wrong answers in a row it is no longer followed.
    dns().set(&domain, vec![Rec::A(Ipv4Addr::new(192, 0, 2, 1))]);
    let status = wait_for_status(&app, &key, id, "invalid").await;
    assert_eq!(status["error"], format!("resolves to 192.0.2.1, not to {public}"));
    tokio::time::sleep(Duration::from_millis(2500)).await; // hosts are re-read every 2 s
    assert_eq!(follow_on(&app, tracked, &domain).await, 404);
    assert_eq!(ask(&app, &format!("?domain={domain}")).await.status, 404);

    // Back: verified again by the re-check alone.
    dns().set(&domain, vec![Rec::Cname(public.clone())]);
    wait_for_status(&app, &key, id, "verified").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(follow_on(&app, tracked, &domain).await, 302);
    assert!(dns().asked(&domain) >= 6, "re-checked in the background");
}

async fn wait_for_status(app: &TestApp, key: &str, id: i64, status: &str) -> Value {
    for _ in 0..100 {
        let r = app.get(&format!("/rest/v2/tracking_domains/{id}"), key).await;
        if r.body["status"] == status {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("domain {id} never became {status}");
}

#[tokio::test]
async fn bad_domains_are_refused_and_change_nothing() {
    let app = shared();
    let (_, a) = app.account("UTC").await;
    let (_, b) = app.account("UTC").await;
    let kept = unique_domain("kept");
    let id = add(app, &a, &kept).await.body["id"].as_i64().unwrap();
    let before = app.get("/rest/v2/tracking_domains", &a).await.body;

    let public_host = app.base.trim_start_matches("http://").split(':').next().unwrap().to_string();
    for (body, status, code) in [
        (json!({}), 400, "E_REQUIRED_ELEMENT"),
        (json!({"domain": ""}), 400, "E_REQUIRED_ELEMENT"),
        (json!({"domain": "https://t.example.com/x"}), 400, "E_WRONG_PARAM"),
        (json!({"domain": "localhost"}), 400, "E_WRONG_PARAM"),
        (json!({"domain": "*.example.com"}), 400, "E_WRONG_PARAM"),
        (json!({"domain": "192.0.2.1"}), 400, "E_WRONG_PARAM"),
        (json!({"domain": public_host}), 400, "E_WRONG_PARAM"),
        (json!({"domain": 7}), 400, "E_WRONG_PARAM"),
        (json!({"domain": "t.example.com", "default": true}), 400, "E_WRONG_PARAM"),
        (json!({"domain": kept.to_uppercase()}), 409, "E_WRONG_PARAM"),
    ] {
        let r = app.post("/rest/v2/tracking_domains", &a, body.clone()).await;
        assert_eq!((r.status.as_u16(), r.code()), (status, code), "{body}: {}", r.text);
    }
    let r = add(app, &b, &kept).await;
    assert_eq!(r.status, 409, "another account's domain: {}", r.text);

    for (method, path, body, status) in [
        (Method::PATCH, format!("/rest/v2/tracking_domains/{id}"), Some(json!({"default": false})), 400),
        (Method::PATCH, format!("/rest/v2/tracking_domains/{id}"), Some(json!({"status": "verified"})), 400),
        (Method::PATCH, format!("/rest/v2/tracking_domains/{id}"), Some(json!({})), 400),
        (Method::PATCH, "/rest/v2/tracking_domains/x".into(), Some(json!({"default": true})), 400),
        (Method::POST, "/rest/v2/tracking_domains/987654321/verify".into(), None, 404),
        (Method::DELETE, "/rest/v2/tracking_domains/987654321".into(), None, 404),
        (Method::GET, "/rest/v2/tracking_domains/1x".into(), None, 400),
    ] {
        let r = app.call(method.clone(), &path, &a, body).await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.text);
        assert!(r.body["status"]["msg"].is_string(), "{method} {path}: the envelope");
    }
    assert_eq!(app.get("/rest/v2/tracking_domains", &a).await.body, before);

    // /tls/ask
    assert_eq!(ask(app, "").await.code(), "E_REQUIRED_ELEMENT");
    assert_eq!(ask(app, "?domain=not%20a%20domain").await.status, 400);
    assert_eq!(ask(app, "?domain=t.example.com&x=1").await.status, 400);

    // At most 20 per account.
    let (_, c) = app.account("UTC").await;
    for _ in 0..20 {
        assert_eq!(add(app, &c, &unique_domain("many")).await.status, 201);
    }
    let r = add(app, &c, &unique_domain("many")).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "E_WRONG_PARAM"), "{}", r.text);
    assert_eq!(app.get("/rest/v2/tracking_domains", &c).await.total(), 20);
}

#[tokio::test]
async fn another_accounts_domain_is_like_a_missing_one() {
    let app = shared();
    let (_, a) = app.account("UTC").await;
    let (_, b) = app.account("UTC").await;
    let id = add(app, &a, &unique_domain("tenant")).await.body["id"].as_i64().unwrap();
    let missing = 987_654_321;
    for (method, path, body) in [
        (Method::GET, "/rest/v2/tracking_domains/{id}", None),
        (Method::PATCH, "/rest/v2/tracking_domains/{id}", Some(json!({"default": true}))),
        (Method::POST, "/rest/v2/tracking_domains/{id}/verify", None),
        (Method::DELETE, "/rest/v2/tracking_domains/{id}", None),
    ] {
        let foreign = app.call(method.clone(), &path.replace("{id}", &id.to_string()), &b, body.clone()).await;
        let absent = app.call(method.clone(), &path.replace("{id}", &missing.to_string()), &b, body).await;
        assert_eq!((foreign.status, &foreign.body), (absent.status, &absent.body), "{method} {path}");
    }
    assert_eq!(app.get("/rest/v2/tracking_domains", &b).await.body, json!([]));
    assert_eq!(app.get("/rest/v2/tracking_domains", &a).await.total(), 1);
}

//! Another account's ids behave exactly like ids that do not exist.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{shared, unique_email};

#[tokio::test]
async fn other_accounts_are_invisible_for_every_resource() {
    let app = shared();
    let (_, a) = app.account("UTC").await;
    let (_, b) = app.account("UTC").await;
    let campaign = app.campaign(&a, 1).await;
    let email = unique_email("tenant");
    let prospect = app.enroll(&a, campaign, &email).await;
    let sent = app.send_html(&a, campaign, &email, "<a href=\"https://x.example\">x</a>").await;
    let r = app
        .post("/rest/v1/webhooks/subscribe", &a, json!({"target_url": "http://127.0.0.1:9/a", "event": "link_clicked"}))
        .await;
    assert_eq!(r.status, 201);
    let tracked = sent["links"][0]["tracked_url"].as_str().unwrap();
    assert_eq!(app.client.get(tracked).send().await.unwrap().status(), 302);
    app.settled_clicks(&a, 1).await;

    // Each request with B's key on A's id answers exactly as with an id that exists nowhere.
    let missing = 987_654_321;
    let cases: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, "/rest/v2/campaigns/{c}".into(), None),
        (Method::PATCH, "/rest/v2/campaigns/{c}".into(), Some(json!({"name": "stolen"}))),
        (Method::DELETE, "/rest/v2/campaigns/{c}".into(), None),
        (
            Method::POST,
            "/rest/v2/campaigns/{c}/emails".into(),
            Some(json!({"prospect_id": prospect, "step": 1, "text": "x"})),
        ),
        (Method::PATCH, "/rest/v2/campaigns/{c}/prospects/{p}".into(), Some(json!({"step": 1}))),
        (
            Method::POST,
            "/rest/v1/add_prospects_campaign".into(),
            Some(json!({"campaign": {"campaign_id": "{c}"}, "prospects": [{"email": "n@example.com"}]})),
        ),
        (Method::DELETE, "/rest/v1/prospects?id={p}".into(), None),
        (Method::POST, "/rest/v2/prospects/import?campaign_id={c}".into(), None),
    ];
    for (method, path, body) in cases {
        let fill =
            |id_c: i64, id_p: i64, s: &str| s.replace("{c}", &id_c.to_string()).replace("{p}", &id_p.to_string());
        let send = |key: &str, c: i64, p: i64| {
            let url = format!("{}{}", app.base, fill(c, p, &path));
            let mut req = app.client.request(method.clone(), url).header("x-api-key", key);
            if path.contains("import") {
                req = req.body("email\nq@example.com\n");
            } else if let Some(b) = &body {
                req = req.body(fill(c, p, &b.to_string()));
            }
            req
        };
        let foreign = app.raw(send(&b, campaign, prospect)).await;
        let absent = app.raw(send(&b, missing, missing)).await;
        assert_eq!((foreign.status, &foreign.body), (absent.status, &absent.body), "{method} {path}");
        assert!(foreign.status == 404, "{method} {path}: {}", foreign.text);
    }

    // Lists never show another account's rows.
    assert_eq!(app.get(&format!("/rest/v1/prospects?id={prospect}"), &b).await.status, 204);
    assert_eq!(app.get(&format!("/rest/v1/campaign_list?id={campaign}"), &b).await.status, 204);
    assert_eq!(app.get("/rest/v2/campaigns", &b).await.body, json!([]));
    assert_eq!(app.get("/rest/v2/clicks", &b).await.body, json!([]));
    assert_eq!(app.get("/rest/v2/webhooks", &b).await.body, json!({"webhooks": []}));
    assert_eq!(app.get("/rest/v2/subscriptions", &b).await.body, json!([]));
    let r = app.post("/rest/v1/stop_followups", &b, json!({"prospect": {"email": email}})).await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            "/rest/v1/webhooks/unsubscribe",
            &b,
            json!({"target_url": "http://127.0.0.1:9/a", "event": "link_clicked"}),
        )
        .await;
    assert_eq!(r.status, 404);

    // And A's data are untouched by all of it.
    let r = app.get(&format!("/rest/v2/campaigns/{campaign}"), &a).await;
    assert_eq!(r.body["name"], "C");
    assert_eq!(app.get(&format!("/rest/v1/prospects?id={prospect}"), &a).await.status, 200);
    assert_eq!(app.get("/rest/v2/clicks", &a).await.total(), 1);
    assert_eq!(app.get("/rest/v2/webhooks", &a).await.body["webhooks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn keys_are_checked_in_every_woodpecker_form() {
    use base64::Engine;
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let url = format!("{}/rest/v2/campaigns", app.base);
    for auth in [
        format!("Basic {}", b64(&key)),
        format!("Basic {}", b64(&format!("{key}:X"))),
        format!("Basic {}", b64(&format!(":{key}"))),
        format!("Basic {}:X", b64(&key)),
    ] {
        let r = app.raw(app.client.get(&url).header("authorization", &auth)).await;
        assert_eq!(r.status, 200, "{auth}");
    }
    for bad in [None, Some("x-api-key: ck_wrong"), Some("authorization: Basic Y2tfd3Jvbmc=")] {
        let mut req = app.client.get(&url);
        if let Some(h) = bad {
            let (n, v) = h.split_once(": ").unwrap();
            req = req.header(n, v);
        }
        let r = app.raw(req).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.body,
            json!({"status": {"status": "ERROR", "code": "E_SESSION", "msg": "Missing or invalid API key."}})
        );
    }
}

#[tokio::test]
async fn revoked_keys_stop_working() {
    let app = crate::helpers::spawn_app(|_| {});
    let (account, key) = app.account("UTC").await;
    assert_eq!(app.get("/rest/v2/account", &key).await.status, 200);
    app.store.revoke_api_key(account.id, &clickhook::api::auth::key_prefix(&key)).await.unwrap();
    // The answer may be cached for a few seconds; after that the key is refused.
    for _ in 0..80 {
        if app.get("/rest/v2/account", &key).await.status == 401 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("a revoked key still works");
}

//! Woodpecker's subscription endpoints, exactly as documented.

use serde_json::json;

use crate::helpers::{shared, spawn_app};

#[tokio::test]
async fn subscribe_duplicate_limit_unsubscribe_list() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let sub =
        |url: &str| app.post("/rest/v1/webhooks/subscribe", &key, json!({"target_url": url, "event": "link_clicked"}));
    let r = sub("http://127.0.0.1:9/one").await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.body,
        json!({"target_url": "http://127.0.0.1:9/one", "event": "link_clicked", "message": "Subscribed."})
    );
    let r = sub("http://127.0.0.1:9/one").await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body,
        json!({"status": {"status": "ERROR", "code": "E_WRONG_PARAM", "msg": "Event defined for this url."}})
    );
    assert_eq!(sub("http://127.0.0.1:9/two").await.status, 201);
    assert_eq!(sub("http://127.0.0.1:9/three").await.status, 201);
    let r = sub("http://127.0.0.1:9/four").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "E_WRONG_PARAM");

    let r = app.get("/rest/v2/webhooks", &key).await;
    assert_eq!(r.body["webhooks"][0], json!({"target_url": "http://127.0.0.1:9/one", "event": "LINK_CLICKED"}));
    assert_eq!(r.body["webhooks"].as_array().unwrap().len(), 3);
    let subs = app.get("/rest/v2/subscriptions", &key).await;
    assert!(subs.body[0]["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(subs.body[0]["status"], "active");

    let r = app
        .post(
            "/rest/v1/webhooks/unsubscribe",
            &key,
            json!({"target_url": "http://127.0.0.1:9/one", "event": "link_clicked"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .post(
            "/rest/v1/webhooks/unsubscribe",
            &key,
            json!({"target_url": "http://127.0.0.1:9/one", "event": "link_clicked"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "E_URL_NOT_FOUND");
    assert_eq!(sub("http://127.0.0.1:9/four").await.status, 201, "a freed slot can be used");
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let app = spawn_app(|s| s.allow_private_targets = false);
    let (_, key) = app.account("UTC").await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "http://10.0.0.1/x",
        // IPv6 forms that carry a private IPv4 address, and private IPv6 ranges.
        "http://[::127.0.0.1]/",
        "http://[::a9fe:a9fe]/",
        "http://[::ffff:0:127.0.0.1]/",
        "http://[2002:7f00:1::1]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2001:0:7f00:1::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[ff02::1]/",
        "http://[2001:db8::1]/",
    ] {
        let r =
            app.post("/rest/v1/webhooks/subscribe", &key, json!({"target_url": url, "event": "link_clicked"})).await;
        assert_eq!(r.status, 400, "{url}");
        assert_eq!(r.code(), "E_WRONG_PARAM");
    }
    assert_eq!(app.get("/rest/v2/webhooks", &key).await.body, json!({"webhooks": []}));
}

//! Bad input gets a clear error in the v1 envelope and leaves stored data as they were.

use serde_json::{json, Value};

use crate::helpers::{shared, spawn_app, unique_email, TestApp};

/// Everything the account holds, to compare before and after a bad request.
async fn snapshot(app: &TestApp, key: &str) -> Value {
    json!({
        "prospects": app.get("/rest/v1/prospects?per_page=1000", key).await.body,
        "campaigns": app.get("/rest/v2/campaigns", key).await.body,
        "account": app.get("/rest/v2/account", key).await.body,
        "webhooks": app.get("/rest/v2/webhooks", key).await.body,
    })
}

fn assert_envelope(r: &crate::helpers::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["status"]["status"], "ERROR", "{}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    assert!(!r.body["status"]["msg"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn each_bad_request_is_refused_and_changes_nothing() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let campaign = app.campaign(&key, 2).await;
    let email = unique_email("bad");
    app.enroll(&key, campaign, &email).await;
    let before = snapshot(app, &key).await;
    let emails = format!("/rest/v2/campaigns/{campaign}/emails");
    let this = format!("/rest/v2/campaigns/{campaign}");

    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        ("POST", "/rest/v1/add_prospects_list", json!({"prospects": [{"email": "not-an-email"}]}), 400, "E_EMAIL"),
        (
            "POST",
            "/rest/v1/add_prospects_list",
            json!({"prospects": [{"first_name": "No email"}]}),
            400,
            "E_REQUIRED_ELEMENT",
        ),
        (
            "POST",
            "/rest/v1/add_prospects_list",
            json!({"prospects": [{"email": "a@b.co", "status": "MAYBE"}]}),
            400,
            "E_WRONG_PARAM",
        ),
        (
            "POST",
            "/rest/v1/add_prospects_list",
            json!({"prospects": [{"email": "a@b.co", "interested": "VERY"}]}),
            400,
            "E_WRONG_PARAM",
        ),
        (
            "POST",
            "/rest/v1/add_prospects_list",
            json!({"prospects": [{"email": "a@b.co", "first_name": {"x": 1}}]}),
            400,
            "E_WRONG_PARAM",
        ),
        ("POST", "/rest/v1/add_prospects_list", json!({"prospects": [], "update": true}), 400, "E_REQUIRED_ELEMENT"),
        (
            "POST",
            "/rest/v1/add_prospects_list",
            json!({"prospects": [{"email": "a@b.co"}], "update": 7}),
            400,
            "E_WRONG_PARAM",
        ),
        ("POST", "/rest/v1/add_prospects_list", json!({"file_name": "x"}), 400, "E_REQUIRED_ELEMENT"),
        ("POST", "/rest/v1/add_prospects_list", json!({"prospects": "everyone"}), 400, "E_WRONG_PARAM"),
        (
            "POST",
            "/rest/v1/add_prospects_campaign",
            json!({"campaign": {"campaign_id": "abc"}, "prospects": [{"email": "a@b.co"}]}),
            400,
            "E_WRONG_PARAM",
        ),
        ("PATCH", "/rest/v2/account", json!({"timezone": "Mars/Olympus"}), 400, "E_WRONG_PARAM"),
        ("PATCH", "/rest/v2/account", json!({"name": 5}), 400, "E_WRONG_PARAM"),
        ("PATCH", "/rest/v2/account", json!({"snippet_labels": {"16": "x"}}), 400, "E_WRONG_PARAM"),
        ("PATCH", "/rest/v2/account", json!({"click_filter": {"burst_seconds": -1}}), 400, "E_WRONG_PARAM"),
        ("PATCH", "/rest/v2/account", json!({"click_filter": {"burst_seconds": 600}}), 400, "E_WRONG_PARAM"),
        ("PATCH", "/rest/v2/account", json!({"click_filter": {"unknown": true}}), 400, "E_WRONG_PARAM"),
        ("PATCH", "/rest/v2/account", json!({"colour": "blue"}), 400, "E_WRONG_PARAM"),
        ("POST", "/rest/v2/campaigns", json!({"name": "x", "status": "SLEEPING"}), 400, "E_WRONG_PARAM"),
        ("POST", "/rest/v2/campaigns", json!({"name": "x", "steps": [{"type": "SMS"}]}), 400, "E_WRONG_PARAM"),
        ("POST", "/rest/v2/campaigns", json!({"name": "x", "mailboxes": ["nope"]}), 400, "E_EMAIL"),
        ("POST", "/rest/v2/campaigns", json!({"status": "RUNNING"}), 400, "E_REQUIRED_ELEMENT"),
        (
            "POST",
            "/rest/v2/campaigns",
            json!({"name": "x", "steps": [{"type": "EMAIL", "track_links": "yes"}]}),
            400,
            "E_WRONG_PARAM",
        ),
        ("PATCH", &this, json!({"steps": "none"}), 400, "E_WRONG_PARAM"),
        ("PATCH", &this, json!({"id": 5}), 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v2/campaigns/abc", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v1/prospects?per_page=1001", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v1/prospects?page=0", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v1/prospects?sort=-password", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v1/prospects?status=SLEEPING", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v1/prospects?search=password=x", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v1/prospects?id=1,x", Value::Null, 400, "E_WRONG_PARAM"),
        ("DELETE", "/rest/v1/prospects", Value::Null, 400, "E_REQUIRED_ELEMENT"),
        ("POST", "/rest/v1/stop_followups", json!({"prospect": {"email": "bad"}}), 400, "E_EMAIL"),
        (
            "POST",
            "/rest/v1/webhooks/subscribe",
            json!({"target_url": "ftp://x.example", "event": "link_clicked"}),
            400,
            "E_WRONG_PARAM",
        ),
        (
            "POST",
            "/rest/v1/webhooks/subscribe",
            json!({"target_url": "http://x.example", "event": "email_opened"}),
            400,
            "E_WRONG_PARAM",
        ),
        ("POST", "/rest/v1/webhooks/subscribe", json!({"event": "link_clicked"}), 400, "E_REQUIRED_ELEMENT"),
        ("POST", &emails, json!({"step": 1, "text": "x"}), 400, "E_REQUIRED_ELEMENT"),
        ("POST", &emails, json!({"prospect_email": email, "text": "x"}), 400, "E_REQUIRED_ELEMENT"),
        ("POST", &emails, json!({"prospect_email": email, "step": 1}), 400, "E_REQUIRED_ELEMENT"),
        ("POST", &emails, json!({"prospect_email": email, "step": 9, "text": "x"}), 400, "E_WRONG_PARAM"),
        ("POST", &emails, json!({"prospect_email": email, "step": 0, "text": "x"}), 400, "E_WRONG_PARAM"),
        (
            "POST",
            &emails,
            json!({"prospect_email": "nobody@example.com", "step": 1, "text": "x"}),
            404,
            "E_RECORD_NOT_FOUND",
        ),
        (
            "POST",
            &emails,
            json!({"prospect_email": email, "step": 1, "text": "x", "mailbox": "other@example.com"}),
            400,
            "E_WRONG_PARAM",
        ),
        (
            "POST",
            &emails,
            json!({"prospect_email": email, "step": 1, "text": "x", "sent_at": "yesterday"}),
            400,
            "E_WRONG_PARAM",
        ),
        (
            "POST",
            "/rest/v2/campaigns/987654321/emails",
            json!({"prospect_email": email, "step": 1, "text": "x"}),
            404,
            "E_RECORD_NOT_FOUND",
        ),
        ("GET", "/rest/v2/clicks?verdict=maybe", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v2/clicks?since=last-week", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v9/nothing", Value::Null, 404, "E_URL_NOT_FOUND"),
    ];
    for (method, path, body, status, code) in cases {
        let mut req =
            app.client.request(method.parse().unwrap(), format!("{}{path}", app.base)).header("x-api-key", &key);
        if !body.is_null() {
            req = req.body(body.to_string());
        }
        let r = app.raw(req).await;
        assert_envelope(&r, status, code);
    }
    assert_eq!(snapshot(app, &key).await, before);
}

#[tokio::test]
async fn malformed_json_and_bodies_without_content_type() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let before = snapshot(app, &key).await;
    for body in ["{", "{\"prospects\": [}", "", "null", "[1,2]", "\u{0}"] {
        let r = app
            .raw(
                app.client
                    .post(format!("{}/rest/v1/add_prospects_list", app.base))
                    .header("x-api-key", &key)
                    .body(body),
            )
            .await;
        assert_envelope(&r, 400, "E_WRONG_PARAM");
    }
    let r = app
        .raw(
            app.client
                .post(format!("{}/rest/v1/add_prospects_list", app.base))
                .header("x-api-key", &key)
                .body(vec![b'{', 0xff, 0xfe, b'}']),
        )
        .await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    assert_eq!(snapshot(app, &key).await, before);
    // No Content-Type at all, as some clients send: accepted.
    let r = app
        .raw(
            app.client
                .post(format!("{}/rest/v1/add_prospects_list", app.base))
                .header("x-api-key", &key)
                .body(json!({"prospects": [{"email": unique_email("noct")}]}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = spawn_app(|s| s.max_body_bytes = 4096);
    let (_, key) = app.account("UTC").await;
    let campaign = app.campaign(&key, 1).await;
    app.enroll(&key, campaign, "big@example.com").await;
    let before = snapshot(&app, &key).await;
    let huge = "x".repeat(10_000);
    let r = app
        .post("/rest/v1/add_prospects_list", &key, json!({"prospects": [{"email": "a@b.co", "first_name": huge}]}))
        .await;
    assert_envelope(&r, 413, "E_PAYLOAD_TOO_LARGE");
    let html = format!("<p>{huge}<a href=\"https://x.example\">x</a></p>");
    let r = app
        .post(
            &format!("/rest/v2/campaigns/{campaign}/emails"),
            &key,
            json!({"prospect_email": "big@example.com", "step": 1, "html": html}),
        )
        .await;
    assert_envelope(&r, 413, "E_PAYLOAD_TOO_LARGE");
    let csv = format!("email,first_name\na@b.co,{huge}\n");
    let r = app
        .raw(app.client.post(format!("{}/rest/v2/prospects/import", app.base)).header("x-api-key", &key).body(csv))
        .await;
    assert_envelope(&r, 413, "E_PAYLOAD_TOO_LARGE");
    assert_eq!(snapshot(&app, &key).await, before);
}

#[tokio::test]
async fn bad_csv_files_are_refused_whole() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let before = snapshot(app, &key).await;
    let import = |body: Vec<u8>| {
        app.raw(
            app.client
                .post(format!("{}/rest/v2/prospects/import?file_name=x.csv", app.base))
                .header("x-api-key", &key)
                .body(body),
        )
    };
    let r = import(b"email,first_name\nok@example.com,\xff\xfe\n".to_vec()).await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    assert!(r.body["status"]["msg"].as_str().unwrap().contains("UTF-8"));
    let r = import(b"first_name,last_name\nA,B\n".to_vec()).await;
    assert_envelope(&r, 400, "E_REQUIRED_ELEMENT");
    let r = import(b"email,first_name,first_name\na@b.co,A,B\n".to_vec()).await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    let r = import(b"email,favourite_colour\na@b.co,blue\n".to_vec()).await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    let r = import(Vec::new()).await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    assert_eq!(snapshot(app, &key).await, before);
}

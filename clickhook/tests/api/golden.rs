//! The `link_clicked` element equals Woodpecker's published example, key order included.

use serde_json::{json, Value};

use crate::helpers::spawn_app;

/// Builds the state the example describes through the public API (the prospect's and the
/// campaign's ids are what the API does not let a caller choose, so they are set in the database).
#[tokio::test]
async fn event_matches_the_published_example() {
    let app = spawn_app(|_| {});
    let (_, key) = app.account_with_id(Some(456789), "Europe/Warsaw").await;
    let r = app.patch("/rest/v2/account", &key, json!({"snippet_labels": {"1": "my snippet label"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = app
        .post(
            "/rest/v2/campaigns",
            &key,
            json!({"name": "SaaS in America", "status": "RUNNING",
                   "mailboxes": ["jared.dunn@piedpiper.com", "richard.hendricks@piedpiper.com", "jian@bachmanity.com"],
                   "steps": [{"type": "EMAIL", "track_links": true}, {"type": "EMAIL", "track_links": true}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    app.exec(&format!("UPDATE campaigns SET id = 123456 WHERE id = {}", r.body["id"])).await;
    let other = app.campaign(&key, 1).await;

    let prospect = json!({
        "email": "erlich@bachmanity.com", "first_name": "Erlich", "last_name": "Bachman", "company": "Bachmanity",
        "website": "https://bachmanity.com", "linkedin_url": "https://linkedin.com/erlich-bachman", "tags": "#VISIONARY",
        "title": "CEO", "phone": "+1 987-654-321", "address": "700 Welch Road", "city": "Palo Alto",
        "country": "United States", "snippet1": "You are running a successful startup incubator Bachmanity",
        "industry": "IT", "state": "California", "status": "ACTIVE", "interested": ""
    });
    let r = app
        .post("/rest/v1/add_prospects_list", &key, json!({"file_name": "saasinamerica.csv", "prospects": [prospect]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["prospects"][0]["id"].as_i64().unwrap();
    app.exec(&format!("UPDATE prospects SET id = 1234567890 WHERE id = {id}")).await;

    for campaign in [123456, other] {
        let r = app
            .post(
                "/rest/v1/add_prospects_campaign",
                &key,
                json!({"campaign": {"campaign_id": campaign}, "prospects": [{"email": "erlich@bachmanity.com"}]}),
            )
            .await;
        assert_eq!(r.body["prospects"][0]["status"], "DUPLICATE", "{}", r.text);
    }
    async fn send(
        app: &crate::helpers::TestApp,
        key: &str,
        campaign: i64,
        sent_at: &str,
        html: &str,
        mailbox: bool,
    ) -> Value {
        let mut body = json!({"prospect_id": 1234567890, "step": 1, "sent_at": sent_at, "html": html});
        if mailbox {
            body["mailbox"] = json!("jared.dunn@piedpiper.com");
        }
        let r = app.post(&format!("/rest/v2/campaigns/{campaign}/emails"), key, body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body
    }
    send(&app, &key, other, "2025-03-10T09:00:00+0100", "<p>hello</p>", false).await;
    send(&app, &key, 123456, "2025-03-14T10:00:00+0100", "<p>first</p>", true).await;
    // The clicked email: step 1, the second this campaign sent Erlich (email_no #2).
    let clicked =
        send(&app, &key, 123456, "2025-03-20T14:32:34+0100", "<a href=\"https://google.com\">Google</a>", true).await;
    assert_eq!(clicked["email_no"], "#2");
    let r = app
        .patch(
            "/rest/v2/campaigns/123456/prospects/1234567890",
            &key,
            json!({"step": 2, "followup_after": "2025-03-22T00:00:00+0100"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let email_id = clicked["email_id"].as_i64().unwrap();
    let contexts = app.store.event_contexts(vec![email_id]).await.unwrap();
    let clicked_at = chrono::DateTime::parse_from_rfc3339("2025-03-21T19:47:47Z").unwrap().timestamp_millis();
    let element = clickhook::event::link_clicked(&contexts[&email_id], "https://google.com", clicked_at);

    let example: Value = serde_json::from_str(include_str!("../../data/link_clicked.example.json")).unwrap();
    // Same values, same key order: compare the serialised forms.
    assert_eq!(serde_json::to_string_pretty(&element).unwrap(), serde_json::to_string_pretty(&example[0]).unwrap());
}

#[tokio::test]
async fn followup_after_is_left_out_when_null_and_summer_time_shows() {
    let app = crate::helpers::shared();
    let (_, key) = app.account("Europe/Warsaw").await;
    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "summer@example.com").await;
    let sent = app.send_html(&key, c, "summer@example.com", "<a href=\"https://x.example\">x</a>").await;
    let email_id = sent["email_id"].as_i64().unwrap();
    let ctx = app.store.event_contexts(vec![email_id]).await.unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2025-07-01T12:00:00Z").unwrap().timestamp_millis();
    let e = clickhook::event::link_clicked(&ctx[&email_id], "https://x.example", at);
    assert!(e["prospect"].get("followup_after").is_none());
    assert_eq!(e["timestamp"], "2025-07-01T14:00:00+0200");
    assert_eq!(e["prospect"]["snippet_labels"], json!({}));
    assert!(e["firm_id"].is_i64() && e["prospect"]["campaign_id"].is_i64() && e["step"].is_i64());
    assert_eq!(e["prospect"]["step_type"], "EMAIL");
}

/// The repo's copy of the contract is the published example, unchanged.
#[test]
fn the_example_in_the_repo_is_the_published_one() {
    let ours = include_str!("../../data/link_clicked.example.json");
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/link_clicked.example.json");
    match std::fs::read_to_string(&spec) {
        Ok(published) => assert_eq!(ours, published),
        Err(_) => eprintln!("skipped: {} is not beside this checkout", spec.display()),
    }
}

//! Campaigns, steps and enrollments.

use serde_json::json;

use crate::helpers::shared;

#[tokio::test]
async fn campaign_lifecycle() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let r = app
        .post(
            "/rest/v2/campaigns",
            &key,
            json!({"name": "Q1", "status": "RUNNING", "from_name": "Jared", "mailboxes": ["a@x.com", "b@x.com"],
                   "steps": [{"type": "EMAIL", "track_links": true}, {"type": "MANUAL_TASK"}, {}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        r.body["steps"],
        json!([{"step": 1, "type": "EMAIL", "track_links": true}, {"step": 2, "type": "MANUAL_TASK", "track_links": false},
               {"step": 3, "type": "EMAIL", "track_links": false}])
    );
    let r = app.get("/rest/v1/campaign_list?status=RUNNING", &key).await;
    assert_eq!(r.body[0]["from_email"], "a@x.com");
    assert_eq!(r.body[0]["from_emails"], json!(["a@x.com", "b@x.com"]));
    assert_eq!(app.get("/rest/v1/campaign_list?status=PAUSED", &key).await.status, 204);

    let r = app.patch(&format!("/rest/v2/campaigns/{id}"), &key, json!({"status": "PAUSED", "name": "Q1b"})).await;
    assert_eq!((r.body["status"].as_str(), r.body["name"].as_str()), (Some("PAUSED"), Some("Q1b")));
    assert_eq!(app.get(&format!("/rest/v2/campaigns/{id}"), &key).await.body["status"], "PAUSED");

    // Ids are clickhook's to give (see chosen_campaign_ids_are_refused_alike).
    let taken = app.post("/rest/v2/campaigns", &key, json!({"id": id, "name": "dup"})).await;
    assert_eq!(taken.status, 400);

    // Emails from step 3 pin the number of steps.
    let p = app.enroll(&key, id, "pin@example.com").await;
    let r = app
        .post(&format!("/rest/v2/campaigns/{id}/emails"), &key, json!({"prospect_id": p, "step": 3, "text": "hi"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.patch(&format!("/rest/v2/campaigns/{id}"), &key, json!({"steps": [{}]})).await;
    assert_eq!(r.status, 400);
    let r = app
        .post(&format!("/rest/v2/campaigns/{id}/emails"), &key, json!({"prospect_id": p, "step": 2, "text": "hi"}))
        .await;
    assert_eq!(r.status, 400, "a MANUAL_TASK step sends no email");

    let r = app
        .patch(
            &format!("/rest/v2/campaigns/{id}/prospects/{p}"),
            &key,
            json!({"step": 2, "followup_after": "2025-03-22T00:00:00+0100"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["step_type"], "MANUAL_TASK");
    assert_eq!(r.body["followup_after"], "2025-03-21T23:00:00+0000");
    let r = app.patch(&format!("/rest/v2/campaigns/{id}/prospects/{p}"), &key, json!({"followup_after": null})).await;
    assert_eq!(r.body["followup_after"], json!(null));

    assert_eq!(app.delete(&format!("/rest/v2/campaigns/{id}"), &key).await.status, 204);
    assert_eq!(app.get(&format!("/rest/v2/campaigns/{id}"), &key).await.status, 404);
    let r = app.get(&format!("/rest/v1/prospects?id={p}"), &key).await;
    assert_eq!((r.body[0]["in_campaign"].as_i64(), r.body[0]["emails_sent"].as_i64()), (Some(0), Some(0)));
}

/// A caller cannot choose a campaign id: one account could otherwise exhaust or jump every
/// account's ids (past what JavaScript holds), and tell which ids other accounts own.
#[tokio::test]
async fn chosen_campaign_ids_are_refused_alike() {
    let app = shared();
    let (_, mine) = app.account("UTC").await;
    let (_, theirs) = app.account("UTC").await;
    let own = app.campaign(&mine, 1).await;
    let other = app.campaign(&theirs, 1).await;
    let mut answers = Vec::new();
    for id in [
        json!(own),
        json!(other),
        json!(other + 1_000_000),
        json!(i64::MAX),
        json!(9_007_199_254_740_993u64),
        json!(-1),
    ] {
        let r = app.post("/rest/v2/campaigns", &mine, json!({"id": id, "name": "x"})).await;
        assert_eq!((r.status.as_u16(), r.code()), (400, "E_WRONG_PARAM"), "{id}: {}", r.text);
        answers.push(r.text);
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "every chosen id is refused with the same words: {answers:?}");
    assert_eq!(app.get("/rest/v2/campaigns", &mine).await.total(), 1, "nothing was stored");
    // Creation still works for everyone, with small ids.
    let next = app.campaign(&theirs, 1).await;
    assert!(next > other && next < (1 << 53), "{next}");
}

async fn click_as(app: &crate::helpers::TestApp, url: &str, agent: &str) -> u16 {
    app.client.get(url).header("user-agent", agent).send().await.unwrap().status().as_u16()
}

/// Waits until no stored click carries `agent` (clicks answered just before a delete may still
/// be on their way into `clicks`; settling forgets them once there).
async fn until_no_click_by(app: &crate::helpers::TestApp, agent: &str) {
    for _ in 0..200 {
        if !app.db().stored_click_agents().await.iter().any(|a| a == agent) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("clicks by {agent:?} are still stored");
}

/// Once a delete answers, the deleted campaign's and prospect's links answer 404 and store
/// nothing, and their clicks (with IPs and user agents) are gone.
#[tokio::test]
async fn deleted_campaigns_and_prospects_stop_tracking() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let tag = crate::helpers::unique_email("deleted");
    for what in ["campaign", "prospect"] {
        let c = app.campaign(&key, 1).await;
        let email = crate::helpers::unique_email(what);
        let p = app.enroll(&key, c, &email).await;
        let sent = app.send_html(&key, c, &email, "<a href=\"https://example.com/d\">d</a>").await;
        let url = sent["links"][0]["tracked_url"].as_str().unwrap().to_string();
        let (before, after) = (format!("Mozilla/5.0 before {what} {tag}"), format!("Mozilla/5.0 after {what} {tag}"));
        assert_eq!(click_as(app, &url, &before).await, 302);
        let r = match what {
            "campaign" => app.delete(&format!("/rest/v2/campaigns/{c}"), &key).await,
            _ => app.delete(&format!("/rest/v1/prospects?id={p}"), &key).await,
        };
        assert!(r.status.is_success(), "{what}: {}", r.text);
        assert_eq!(click_as(app, &url, &after).await, 404, "a deleted {what}'s link");
        until_no_click_by(app, &before).await;
        assert!(!app.db().stored_click_agents().await.contains(&after), "nothing stored after the delete");
    }
}

/// A deleted prospect's links stay dead when the next email, another account's, is recorded:
/// tokens name emails by id, and an id is never handed out again (on SQLite, after the newest
/// emails were deleted, it was: their links led to the new email).
#[tokio::test]
async fn a_deleted_emails_links_never_lead_to_a_later_email() {
    let app = crate::helpers::spawn_app(|_| {});
    let (_, key_a) = app.account("UTC").await;
    let c = app.campaign(&key_a, 1).await;
    let p = app.enroll(&key_a, c, "gone@example.com").await;
    let sent = app.send_html(&key_a, c, "gone@example.com", "<a href=\"https://example.com/a\">a</a>").await;
    let old_link = sent["links"][0]["tracked_url"].as_str().unwrap().to_string();
    let r = app.call(reqwest::Method::DELETE, &format!("/rest/v1/prospects?id={p}"), &key_a, None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let (_, key_b) = app.account("UTC").await;
    let c_b = app.campaign(&key_b, 1).await;
    app.enroll(&key_b, c_b, "new@example.com").await;
    let fresh = app.send_html(&key_b, c_b, "new@example.com", "<a href=\"https://example.com/b\">b</a>").await;
    assert_ne!(fresh["email_id"], sent["email_id"], "a new email id");
    let r = app.client.get(&old_link).header("user-agent", "Mozilla/5.0 (Macintosh) Safari/605").send().await.unwrap();
    assert_eq!(r.status(), 404, "the deleted email's link");
    assert_eq!(app.get("/rest/v2/clicks", &key_b).await.body, json!([]), "nothing stored for B");
}

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

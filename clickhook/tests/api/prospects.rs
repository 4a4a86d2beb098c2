//! Woodpecker's prospect endpoints and the CSV import.

use serde_json::json;

use crate::helpers::shared;

#[tokio::test]
async fn add_update_list_filter_sort_page_delete() {
    let app = shared();
    let (_, key) = app.account("Europe/Warsaw").await;
    let r = app.get("/rest/v1/prospects", &key).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.total(), 0);

    let r = app
        .post(
            "/rest/v1/add_prospects_list",
            &key,
            json!({"file_name": "API import 2025-03-20", "prospects": [
                {"email": "Ann@Example.com", "first_name": "Ann", "company": "Zeta", "tags": "VIP, #A"},
                {"email": "bob@example.com", "first_name": "Bob", "company": "Alpha", "status": "REPLIED", "interested": "MAYBE-LATER"},
                {"email": "broken"}
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.body["prospects"].as_array().unwrap();
    assert_eq!(items[0]["status"], "OK");
    assert_eq!(items[2]["status"], "ERROR");
    assert_eq!(items[2]["code"], "E_EMAIL");
    let ann = items[0]["id"].as_i64().unwrap();

    // Same address in another case, no update: unchanged.
    let r = app
        .post(
            "/rest/v1/add_prospects_list",
            &key,
            json!({"prospects": [{"email": "ann@example.com", "first_name": "X"}]}),
        )
        .await;
    assert_eq!(r.body["prospects"][0]["status"], "DUPLICATE");
    assert_eq!(r.body["prospects"][0]["id"], ann);
    // With update (as a string, as some clients send it): only the given fields change.
    let r = app
        .post(
            "/rest/v1/add_prospects_list",
            &key,
            json!({"update": "true", "prospects": [{"email": "ann@example.com", "title": "CTO"}]}),
        )
        .await;
    assert_eq!(r.body["prospects"][0]["status"], "OK");
    let r = app.get(&format!("/rest/v1/prospects?id={ann}"), &key).await;
    let p = &r.body[0];
    assert_eq!(
        (p["first_name"].as_str(), p["title"].as_str(), p["company"].as_str()),
        (Some("Ann"), Some("CTO"), Some("Zeta"))
    );
    assert_eq!(p["tags"], "#VIP #A");
    assert_eq!(p["imported"], "API import 2025-03-20");
    assert_eq!(p["last_contacted"], "");

    let r = app.get("/rest/v1/prospects?sort=%2Bcompany", &key).await;
    assert_eq!(r.total(), 2);
    assert_eq!(r.body[0]["company"], "Alpha");
    let r = app.get("/rest/v1/prospects?sort=-company&per_page=1&page=2", &key).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["company"], "Alpha");
    assert_eq!(r.total(), 2);
    assert_eq!(app.get("/rest/v1/prospects?status=REPLIED", &key).await.body[0]["first_name"], "Bob");
    assert_eq!(app.get("/rest/v1/prospects?interested=MAYBE_LATER", &key).await.body[0]["interested"], "MAYBE_LATER");
    assert_eq!(app.get("/rest/v1/prospects?search=first_name=an", &key).await.body[0]["email"], "ann@example.com");
    assert_eq!(app.get("/rest/v1/prospects?search=company=nothing", &key).await.status, 204);

    let c = app.campaign(&key, 1).await;
    app.enroll(&key, c, "bob@example.com").await;
    let r = app.get(&format!("/rest/v1/prospects?campaigns_id={c}"), &key).await;
    assert_eq!(r.total(), 1);
    assert_eq!(r.body[0]["in_campaign"], 1);

    let r = app.post("/rest/v1/stop_followups", &key, json!({"prospect": {"email": "BOB@example.com"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = app.delete(&format!("/rest/v1/prospects?id={ann}"), &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.get(&format!("/rest/v1/prospects?id={ann}"), &key).await.status, 204);
    assert_eq!(app.delete(&format!("/rest/v1/prospects?id={ann}"), &key).await.status, 404);
}

#[tokio::test]
async fn csv_import_reports_each_rejected_row() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    app.post(
        "/rest/v1/add_prospects_list",
        &key,
        json!({"prospects": [{"email": "old@example.com", "first_name": "Old"}]}),
    )
    .await;
    let csv = "email,first_name,snippet3,tags,status\n\
               new@example.com,New,s3,VIP,ACTIVE\n\
               OLD@example.com,Renamed,,,\n\
               not-an-email,X,,,\n\
               x@example.com,X,,,SLEEPING\n\
               short@example.com,only-two\n";
    let r = app
        .raw(
            app.client
                .post(format!("{}/rest/v2/prospects/import?file_name=leads.csv", app.base))
                .header("x-api-key", &key)
                .body(csv),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["created"].as_u64(), r.body["updated"].as_u64(), r.body["rejected"].as_u64()),
        (Some(1), Some(1), Some(3))
    );
    let lines: Vec<u64> = r.body["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [4, 5, 6]);
    let p = app.get("/rest/v1/prospects?search=email=new@", &key).await;
    assert_eq!(
        (p.body[0]["snippet3"].as_str(), p.body[0]["tags"].as_str(), p.body[0]["imported"].as_str()),
        (Some("s3"), Some("#VIP"), Some("leads.csv"))
    );
    let p = app.get("/rest/v1/prospects?search=email=old@", &key).await;
    assert_eq!(p.body[0]["first_name"], "Renamed");
}

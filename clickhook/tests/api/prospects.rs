//! Woodpecker's prospect endpoints and the CSV import.

use serde_json::json;

use crate::helpers::{on_postgres, shared, unique_email};

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
    let r = app.import_csv(&key, "?file_name=leads.csv", csv).await;
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

/// An import that meets an internal error two thousand rows in (a trigger refuses one row)
/// leaves nothing of itself: the prospects it created are gone, the one it overwrote has its
/// old values, the enrollment it added is taken out, and its journal is empty.
#[tokio::test]
async fn an_import_that_fails_midway_leaves_nothing_behind() {
    let app = shared();
    let (account, key) = app.account("UTC").await;
    let campaign = app.campaign(&key, 1).await;
    let old = unique_email("kept");
    app.post("/rest/v1/add_prospects_list", &key, json!({"prospects": [{"email": old, "company": "Old"}]})).await;
    let before = app.get(&format!("/rest/v1/prospects?search=email={old}"), &key).await.body;
    let boom = unique_email("boom");
    let db = app.db();
    let trigger = boom.replace(['@', '.', '-'], "_");
    if on_postgres() {
        db.exec(&format!(
            "CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.email = '{boom}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER {trigger} BEFORE INSERT ON prospects FOR EACH ROW EXECUTE FUNCTION {trigger}();"
        ))
        .await;
    } else {
        db.exec(&format!(
            "CREATE TRIGGER {trigger} BEFORE INSERT ON prospects WHEN NEW.email = '{boom}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        ))
        .await;
    }
    let mut csv = format!("email,company\n{old},New\n");
    for i in 0..2_499 {
        // Row 2,101 gives again an email the first chunk created: the second chunk changes it.
        let email = match i {
            2_399 => boom.clone(),
            2_100 => format!("row5-{old}"),
            _ => format!("row{i}-{old}"),
        };
        csv.push_str(&format!("{email},Co {i}\n"));
    }
    let r = app.import_csv(&key, &format!("?campaign_id={campaign}"), csv).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.body["error"]["message"].is_string() || r.body["status"]["msg"].is_string(), "an envelope: {}", r.text);
    let list = app.get("/rest/v1/prospects", &key).await;
    assert_eq!(list.total(), 1, "only the prospect from before");
    assert_eq!(list.body, before, "as it was");
    let enrolled = format!("SELECT count(*) FROM enrollments WHERE campaign_id = {campaign}");
    assert_eq!(db.i64(&enrolled).await, 0, "the enrollment the import added is gone");
    assert_eq!(db.i64(&format!("SELECT count(*) FROM imports WHERE account_id = {}", account.id)).await, 0);
    // The same file without the refused row lands whole.
    let r = app
        .import_csv(&key, &format!("?campaign_id={campaign}"), format!("email,company\n{old},New\nrow0-{old},Co 0\n"))
        .await;
    assert_eq!((r.status.as_u16(), r.body["created"].as_u64(), r.body["updated"].as_u64()), (200, Some(1), Some(1)));
    assert_eq!(db.i64(&enrolled).await, 2);
    assert_eq!(db.i64(&format!("SELECT count(*) FROM imports WHERE account_id = {}", account.id)).await, 0);
}

/// An import whose process died mid-way is undone once it has been silent long enough; a
/// chunk that comes after that is refused, and nothing of the import stays.
#[tokio::test]
async fn an_abandoned_import_is_undone() {
    use clickhook::domain::import::{ImportState, ABANDONED_AFTER};
    use clickhook::domain::{EmailAddress, ProspectFields, ProspectInput};
    use clickhook::store::UpsertProspects;
    let app = crate::helpers::spawn_app(|_| {});
    let (account, key) = app.account("UTC").await;
    let campaign = app.campaign(&key, 1).await;
    let kept = unique_email("kept");
    app.post("/rest/v1/add_prospects_list", &key, json!({"prospects": [{"email": kept, "company": "Old"}]})).await;
    let before = app.get("/rest/v1/prospects", &key).await.body;
    let chunk = |emails: &[&str]| UpsertProspects {
        prospects: emails
            .iter()
            .map(|e| {
                let fields = ProspectFields { company: Some("New".into()), ..Default::default() };
                ProspectInput { email: EmailAddress::parse(e).unwrap(), fields }
            })
            .collect(),
        update: true,
        imported: Some("dying.csv".into()),
        campaign_id: Some(campaign),
        import: None,
    };
    let import = app.store.begin_import(account.id, Some(campaign)).await.unwrap();
    let created = unique_email("created");
    let first = UpsertProspects { import: Some(import), ..chunk(&[&kept, &created]) };
    app.store.upsert_prospects(account.id, first).await.unwrap();
    assert_eq!(app.get("/rest/v1/prospects", &key).await.body.as_array().unwrap().len(), 2);
    // Not yet silent for long: nothing happens.
    assert_eq!(
        app.store.ended_imports(clickhook::store::now_millis() - ABANDONED_AFTER).await.unwrap(),
        Vec::<i64>::new()
    );
    // Later, the janitor finds it silent: undone.
    let later = clickhook::store::now_millis() + 1;
    assert_eq!(app.store.ended_imports(later).await.unwrap(), [import]);
    clickhook::import::tidy(&app.store, import).await.unwrap();
    assert_eq!(app.get("/rest/v1/prospects", &key).await.body, before);
    let late = UpsertProspects { import: Some(import), ..chunk(&[&unique_email("late")]) };
    assert!(app.store.upsert_prospects(account.id, late).await.is_err(), "a chunk after the end is refused");
    assert!(app.store.end_import(import, ImportState::Kept).await.is_err(), "and the import cannot be kept");
    assert_eq!(app.get("/rest/v1/prospects", &key).await.body, before);
    assert_eq!(app.db().i64("SELECT count(*) FROM import_undo").await, 0);
    assert_eq!(app.db().i64("SELECT count(*) FROM imports").await, 0);
}

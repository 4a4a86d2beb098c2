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
        (
            "PATCH",
            "/rest/v2/account",
            json!({"click_filter": {"trusted_networks": ["10.0.0.0"]}}),
            400,
            "E_WRONG_PARAM",
        ),
        (
            "PATCH",
            "/rest/v2/account",
            json!({"click_filter": {"distrusted_networks": ["10.0.0.0/40"]}}),
            400,
            "E_WRONG_PARAM",
        ),
        ("PATCH", "/rest/v2/account", json!({"click_filter": {"distrusted_user_agents": [" "]}}), 400, "E_WRONG_PARAM"),
        (
            "PATCH",
            "/rest/v2/account",
            json!({"click_filter": {"trusted_user_agents": vec!["x"; 101]}}),
            400,
            "E_WRONG_PARAM",
        ),
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
        // serde would read a struct from an array of its fields: bodies are objects, nothing else.
        ("PATCH", "/rest/v2/account", json!([null, null]), 400, "E_WRONG_PARAM"),
        ("POST", "/rest/v2/campaigns", json!(["Array", "DRAFT"]), 400, "E_WRONG_PARAM"),
        ("PATCH", "/rest/v2/account", json!("UTC"), 400, "E_WRONG_PARAM"),
        // A parameter given twice: which one counts would be a guess.
        ("GET", "/rest/v2/clicks?verdict=human&verdict=bot", Value::Null, 400, "E_WRONG_PARAM"),
        ("GET", "/rest/v1/prospects?status=ACTIVE&status=", Value::Null, 400, "E_WRONG_PARAM"),
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
    let r = app.import_csv(&key, "", csv).await;
    assert_envelope(&r, 413, "E_PAYLOAD_TOO_LARGE");
    assert_eq!(snapshot(&app, &key).await, before);
}

#[tokio::test]
async fn bad_csv_files_are_refused_whole() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let before = snapshot(app, &key).await;
    let import = |body: Vec<u8>| app.import_csv(&key, "?file_name=x.csv", body);
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

/// Text with NUL in it is refused at the edge with the same 400 on both stores (one cannot
/// store it, the other would), and changes nothing; a CSV row with NUL is refused alone.
#[tokio::test]
async fn nul_characters_are_refused_everywhere() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let campaign = app.campaign(&key, 1).await;
    let email = unique_email("nul");
    app.enroll(&key, campaign, &email).await;
    let before = snapshot(app, &key).await;
    let cases = [
        ("POST", "/rest/v2/campaigns".to_string(), json!({"name": "a\u{0}b"})),
        ("PATCH", format!("/rest/v2/campaigns/{campaign}"), json!({"from_name": "a\u{0}b"})),
        (
            "POST",
            "/rest/v1/add_prospects_list".to_string(),
            json!({"prospects": [{"email": "n@x.co", "company": "a\u{0}"}]}),
        ),
        ("PATCH", "/rest/v2/account".to_string(), json!({"name": "a\u{0}b"})),
        (
            "POST",
            format!("/rest/v2/campaigns/{campaign}/emails"),
            json!({"prospect_email": email, "step": 1, "subject": "a\u{0}b", "text": "hi"}),
        ),
    ];
    for (method, path, body) in cases {
        let r = app.call(method.parse().unwrap(), &path, &key, Some(body)).await;
        assert_envelope(&r, 400, "E_WRONG_PARAM");
        assert!(r.text.contains("NUL"), "{}", r.text);
    }
    let r = app.get("/rest/v1/prospects?search=company%3Da%00b", &key).await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    assert_eq!(snapshot(app, &key).await, before);

    let csv = "email,company\nok1@x.co,A\nbad@x.co,B\u{0}\nok2@x.co,C\n";
    let r = app.import_csv(&key, "?file_name=n.csv", csv).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["created"].as_i64(), r.body["rejected"].as_i64()), (Some(2), Some(1)), "{}", r.text);
    assert!(r.body["errors"][0]["error"].as_str().unwrap().contains("NUL"), "{}", r.text);
}

/// Errors quote what they refuse, but never more than a short prefix of it.
#[tokio::test]
async fn errors_quote_a_short_prefix_of_the_input() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let huge_key = "k".repeat(2_000_000);
    let r = app.post("/rest/v2/campaigns", &key, json!({"name": "x", huge_key: 1})).await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    assert!(r.text.len() < 1_000, "{} bytes", r.text.len());
    let header = format!("email,{}\nx@y.co,1\n", "h".repeat(1_000_000));
    let r = app.import_csv(&key, "", header).await;
    assert_envelope(&r, 400, "E_WRONG_PARAM");
    assert!(r.text.len() < 1_000, "{} bytes", r.text.len());
}

/// Every 4xx carries the envelope, on every path; a browser following a dead tracked link gets
/// a page instead.
#[tokio::test]
async fn every_refusal_speaks_the_envelope() {
    let app = shared();
    for (method, path, status) in [
        ("POST", "/c/AAAA", 405),
        ("DELETE", "/healthz", 405),
        ("PUT", "/rest/v2/campaigns", 405),
        ("GET", "/c/AAAA", 404),
        ("GET", "/no/such/thing", 404),
    ] {
        let r = app.raw(app.client.request(method.parse().unwrap(), format!("{}{path}", app.base))).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        assert_eq!(r.headers["content-type"], "application/json", "{method} {path}");
        assert_eq!(r.body["status"]["status"], "ERROR", "{method} {path}: {}", r.text);
    }
    // hyper answers a URI too long to parse itself, before any handler: in the envelope too.
    // (No HTTP client sends such a URI: it goes over a socket of its own.)
    let at = app.base.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(at).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let _ = s.write_all(format!("GET /c/{} HTTP/1.1\r\nHost: x\r\n\r\n", "A".repeat(100_000)).as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 414 "), "{}", &answer[..answer.len().min(300)]);
    assert!(answer.contains("content-type: application/json") && answer.contains("\"E_URI_TOO_LONG\""), "{answer}");
    let r = app.raw(app.client.get(format!("{}/c/AAAA", app.base)).header("accept", "text/html,*/*")).await;
    assert_eq!(r.status, 404);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html") && r.text.contains("not valid"));
}

/// A link that cannot be followed stays untracked and the answer says why; one with spaces or
/// other characters a URI does not allow is tracked as a URI, so every Location is valid.
#[tokio::test]
async fn links_are_tracked_as_uris_or_not_at_all() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let campaign = app.campaign(&key, 1).await;
    let email = unique_email("uri");
    app.enroll(&key, campaign, &email).await;
    let html = "<a href=\"https://exa mple.com/\x7f\">bad</a> <a href=\"https://bücher.example/a b?q=ä\">idn</a> \
                <a href=\"https://x.example/n&#0;ul\">nul</a>";
    let sent = app.send_html(&key, campaign, &email, html).await;
    assert_eq!(sent["untracked"][0]["url"], "https://exa mple.com/\x7f", "{sent}");
    assert!(sent["untracked"][0]["reason"].as_str().unwrap().contains("not a valid URL"), "{sent}");
    assert!(sent["html"].as_str().unwrap().contains("href=\"https://exa mple.com/\x7f\""), "left as it was: {sent}");
    let links = sent["links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{sent}");
    assert_eq!(links[0]["url"], "https://xn--bcher-kva.example/a%20b?q=%C3%A4");
    assert_eq!(links[1]["url"], "https://x.example/n%00ul");
    for (link, location) in
        links.iter().zip(["https://xn--bcher-kva.example/a%20b?q=%C3%A4", "https://x.example/n%00ul"])
    {
        let r = app.client.get(link["tracked_url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], location);
    }
}

/// A query parameter an endpoint does not take is refused, named; lists filter by time both
/// ways and answer `[]` (native lists) when nothing matches.
#[tokio::test]
async fn query_parameters_are_declared() {
    let app = shared();
    let (_, key) = app.account("UTC").await;
    for (path, unknown) in [
        ("/rest/v2/clicks?limit=5", "limit"),
        ("/rest/v2/deliveries?offset=5&page=1", "offset"),
        ("/rest/v1/prospects?per_page=5&sort=id&colour=red", "colour"),
        ("/rest/v2/campaigns?x=1", "x"),
        ("/healthz?verbose=1", "verbose"),
    ] {
        let r = app.get(path, &key).await;
        assert_envelope(&r, 400, "E_WRONG_PARAM");
        assert!(r.text.contains(unknown), "{path}: {}", r.text);
    }
    let c = app.campaign(&key, 1).await;
    let email = unique_email("until");
    app.enroll(&key, c, &email).await;
    let sent = app.send_html(&key, c, &email, "<a href=\"https://example.com/u\">u</a>").await;
    let url = sent["links"][0]["tracked_url"].as_str().unwrap();
    assert_eq!(app.client.get(url).send().await.unwrap().status(), 302);
    let now = clickhook::domain::now_millis();
    assert_eq!(app.get(&format!("/rest/v2/clicks?until={}", now + 60_000), &key).await.total(), 1);
    let before = app.get(&format!("/rest/v2/clicks?until={}", now - 60_000), &key).await;
    assert_eq!((before.status.as_u16(), before.body.clone(), before.total()), (200, json!([]), 0));
    assert_eq!(app.get(&format!("/rest/v2/deliveries?until={now}"), &key).await.body, json!([]));
}

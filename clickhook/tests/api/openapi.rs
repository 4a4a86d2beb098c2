//! The OpenAPI document describes exactly what the router serves.

use crate::helpers::{shared, tool_installed};

#[tokio::test]
async fn document_matches_the_router() {
    let app = shared();
    let doc = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let ops = clickhook::api::api();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    let mut routed: Vec<(String, String)> =
        ops.ops().iter().map(|o| (o.method.to_string(), o.path.to_string())).collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);
    assert!(routed.len() >= 25);

    // Every documented operation reaches a handler: never the router's 404 or 405.
    for (method, path) in &documented {
        let url = format!(
            "{}{}",
            app.base,
            path.replace("{id}", "1")
                .replace("{prospect_id}", "1")
                .replace("{token}", "AAAAAAAAAAAAAAAAAAAAAA")
                .replace("{file}", "init.js")
        );
        let r = app.client.request(method.parse().unwrap(), &url).send().await.unwrap();
        assert_ne!(r.status(), 405, "{method} {path}");
        let (status, body) = (r.status(), r.text().await.unwrap());
        assert!(status != 404 || !body.contains("No such endpoint."), "{method} {path} is not routed");
    }
    // And something undocumented is not served.
    let r = app.client.get(format!("{}/rest/v1/secret", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// The reference at /docs is served whole from the binary: every file it loads is its own.
#[tokio::test]
async fn docs_are_served_from_the_binary() {
    let app = shared();
    let get = |path: &str| app.client.get(format!("{}{path}", app.base)).send();
    let page = get("/docs").await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("default-src 'self'") && !policy.contains("script-src"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("http"), "nothing from elsewhere: {html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    let mut loaded = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            loaded.push(part.split('"').next().unwrap().to_string());
        }
    }
    assert_eq!(loaded, ["/docs/swagger-ui-bundle.js", "/docs/init.js", "/docs/swagger-ui.css"]);
    for path in &loaded {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.bytes().await.unwrap().len() > 100, "{path}");
    }
    let bundle = get("/docs/swagger-ui-bundle.js").await.unwrap();
    assert!(bundle.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(bundle.text().await.unwrap().contains("SwaggerUIBundle"));
    let init = get("/docs/init.js").await.unwrap().text().await.unwrap();
    assert!(init.contains("\"/docs/openapi.json\""), "{init}");
    let doc = get("/docs/openapi.json").await.unwrap().text().await.unwrap();
    let served = get("/openapi.json").await.unwrap().text().await.unwrap();
    assert_eq!(doc, served, "the reference shows the document the API serves");
    let missing = get("/docs/elsewhere.js").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("E_URL_NOT_FOUND"));
}

/// The document is valid OpenAPI 3.1 (openapi-spec-validator; installed by .ci/run, required
/// under CI), path ids are integers, list filters are typed, and every JSON body has its schema.
#[tokio::test]
async fn document_is_valid_and_typed() {
    let app = shared();
    let text = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();

    let patch = op("/rest/v2/campaigns/{id}", "patch");
    assert_eq!(patch["parameters"][0]["schema"]["type"], "integer", "{patch}");
    assert_eq!(
        patch["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CampaignBody"
    );
    let campaign = &doc["components"]["schemas"]["CampaignBody"];
    assert_eq!(campaign["properties"]["steps"]["items"]["$ref"], "#/components/schemas/StepBody", "{campaign}");
    assert_eq!(campaign["additionalProperties"], false, "unknown fields are refused, and said so");
    for code in ["400", "401", "404", "413"] {
        assert_eq!(
            patch["responses"][code]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
    }

    let clicks = op("/rest/v2/clicks", "get");
    let param = |name: &str| {
        clicks["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or_default()
    };
    assert_eq!(param("per_page")["schema"]["maximum"], 1000);
    assert_eq!(param("verdict")["schema"]["enum"], serde_json::json!(["human", "bot", "pending"]));
    assert_eq!(param("campaign_id")["schema"]["type"], "integer");
    assert!(param("until")["schema"].is_object(), "until beside since");
    let import = op("/rest/v2/prospects/import", "post");
    assert!(import["requestBody"]["content"]["text/csv"].is_object(), "{import}");

    // Every operation whose handler reads a JSON body documents its schema.
    let mut with_body = 0;
    for ops in doc["paths"].as_object().unwrap().values() {
        for (method, o) in ops.as_object().unwrap() {
            if let Some(reference) = o["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() {
                let name = reference.rsplit('/').next().unwrap();
                assert!(doc["components"]["schemas"][name].is_object(), "{method} {reference}");
                with_body += 1;
            }
        }
    }
    assert!(with_body >= 12, "{with_body} operations with a JSON body");

    // The webhook clickhook sends is documented with Woodpecker's published example.
    let hook = &doc["webhooks"]["link_clicked"]["post"]["requestBody"]["content"]["application/json"];
    let published: serde_json::Value =
        serde_json::from_str(include_str!("../../data/link_clicked.example.json")).unwrap();
    assert_eq!(hook["example"], published);
    assert_eq!(campaign_list_example(&doc)["status"], "RUNNING");

    // Every operation says what it answers when it succeeds, and a JSON answer has its schema.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, o) in ops.as_object().unwrap() {
            let successes: Vec<(&String, &serde_json::Value)> = o["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(status, _)| status.starts_with('2') || status.starts_with('3'))
                .collect();
            assert!(!successes.is_empty(), "{method} {path} documents no success");
            for (status, r) in successes {
                if let Some(json) = r["content"].get("application/json") {
                    assert!(json["schema"].is_object(), "{method} {path} {status} has no schema");
                }
            }
        }
    }

    if !tool_installed(&["python3", "-c", "import openapi_spec_validator"], "openapi-spec-validator") {
        return;
    }
    let path = std::env::temp_dir().join(format!("clickhook-openapi-{}.json", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "not valid OpenAPI: {}", String::from_utf8_lossy(&out.stderr));
}

/// Schemathesis (pinned in .ci/run, required under CI) against a live server on this run's
/// store: every operation with positive and negative data, and every check but "schema-valid
/// data is accepted" (the document gives types, not every rule: a timezone must exist, an email
/// must parse). No 5xx, no status, content type, header or body outside the document.
///
/// Left out: subscribing a webhook target. A generated public address would be accepted, and a
/// generated `test` call would then POST to it, off this machine.
#[tokio::test]
async fn schemathesis_finds_nothing_outside_the_document() {
    if !tool_installed(&["st", "--version"], "Schemathesis (st)") {
        return;
    }
    let node = crate::crash::Node::new();
    let resolver = crate::dns::dns().addr.to_string();
    let _server = node.start(&["--resolver", &resolver]).await;
    let run = tokio::process::Command::new("st")
        .args(["run", &format!("{}/openapi.json", node.base)])
        .args(["-H", &format!("x-api-key: {}", node.key())])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        // One worker: with two, CPython 3.11's `ast` (which Hypothesis uses to describe its
        // strategies) failed a recursion-depth check from two threads at once in a CI run.
        .args(["--max-examples", "60", "--workers", "1", "--seed", "1", "--no-color"])
        .args(["--exclude-path", "/rest/v1/webhooks/subscribe"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(600), run).await.expect("within 10 minutes").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(" passed"), "{text}");
}

/// A Python client generated from the live document (openapi-python-client, pinned in .ci/run,
/// required under CI) creates a campaign, enrolls a prospect, records an email, and lists the
/// click on its link with typed models (clickhook/tests/client/use_generated.py).
#[tokio::test]
async fn a_generated_python_client_works() {
    if !tool_installed(&["openapi-python-client", "--version"], "openapi-python-client") {
        return;
    }
    let app = shared();
    let (_, key) = app.account("UTC").await;
    let doc = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openapi.json"), doc).unwrap();
    let generated = tokio::process::Command::new("openapi-python-client")
        .args(["generate", "--path", "openapi.json", "--meta", "none"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/client/use_generated.py");
    let used = tokio::process::Command::new("python3")
        .arg(script)
        .args([&app.base, &key])
        .arg(dir.path())
        .kill_on_drop(true)
        .output();
    let used =
        tokio::time::timeout(std::time::Duration::from_secs(120), used).await.expect("within 2 minutes").unwrap();
    let out = String::from_utf8_lossy(&used.stdout);
    assert!(used.status.success(), "{out}\n{}", String::from_utf8_lossy(&used.stderr));
    assert!(out.contains("generated client: campaign"), "{out}");
}

/// What a flow that touches every kind of answer got: each body is checked against the schema
/// the document gives for its operation and status (jsonschema, from openapi-spec-validator).
#[tokio::test]
async fn answers_match_their_documented_schemas() {
    use reqwest::Method;
    use serde_json::json;
    let app = shared();
    let (_, key) = app.account("Europe/Berlin").await;
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut record = |method: &Method, template: &str, r: &crate::helpers::Resp| {
        seen.push(json!({"method": method.as_str().to_lowercase(), "path": template,
                         "status": r.status.as_u16(), "body": r.text}));
    };
    macro_rules! call {
        ($method:expr, $template:expr, $path:expr, $body:expr) => {{
            let path: &str = &$path;
            let r = app.call($method, path, &key, $body).await;
            record(&$method, $template, &r);
            r
        }};
    }
    let c = app.campaign(&key, 2).await;
    call!(Method::GET, "/rest/v1/campaign_list", "/rest/v1/campaign_list", None);
    call!(Method::GET, "/rest/v1/campaign_list", format!("/rest/v1/campaign_list?id={}", c + 1_000_000), None);
    let added = call!(
        Method::POST,
        "/rest/v1/add_prospects_list",
        "/rest/v1/add_prospects_list",
        Some(json!({"update": true, "file_name": "API import", "prospects": [
            {"email": "amy@bachmanity.com", "first_name": "Amy", "snippet3": "s"}, {"email": "not an address"}]}))
    );
    assert_eq!(added.body["prospects"][1]["status"], "ERROR", "{}", added.text);
    let enrolled = call!(
        Method::POST,
        "/rest/v1/add_prospects_campaign",
        "/rest/v1/add_prospects_campaign",
        Some(json!({"campaign": {"campaign_id": c}, "prospects": [{"email": "amy@bachmanity.com"}]}))
    );
    let p = enrolled.body["prospects"][0]["id"].as_i64().unwrap();
    call!(Method::GET, "/rest/v1/prospects", "/rest/v1/prospects", None);
    call!(Method::GET, "/rest/v1/prospects", "/rest/v1/prospects?status=BLACKLIST", None);
    let email = json!({"prospect_email": "amy@bachmanity.com", "step": 1, "html": "<a href=\"https://example.com/\">x</a>",
                       "sent_at": "2020-01-01T00:00:00Z"});
    call!(Method::POST, "/rest/v2/campaigns/{id}/emails", format!("/rest/v2/campaigns/{c}/emails"), Some(email));
    let patch = "/rest/v2/campaigns/{id}/prospects/{prospect_id}";
    call!(Method::PATCH, patch, format!("/rest/v2/campaigns/{c}/prospects/{p}"), Some(json!({"step": 2})));
    let stop = json!({"prospect": {"email": "amy@bachmanity.com"}});
    call!(Method::POST, "/rest/v1/stop_followups", "/rest/v1/stop_followups", Some(stop));
    let r = app.import_csv(&key, "?file_name=a.csv", "email;first_name\nbo@bachmanity.com;Bo\nnope;No\n").await;
    record(&Method::POST, "/rest/v2/prospects/import", &r);
    assert_eq!(r.body["rejected"], 1, "{}", r.text);
    let hook = json!({"target_url": "http://127.0.0.1:9/hook", "event": "link_clicked"});
    call!(Method::POST, "/rest/v1/webhooks/subscribe", "/rest/v1/webhooks/subscribe", Some(hook.clone()));
    call!(Method::POST, "/rest/v1/webhooks/subscribe", "/rest/v1/webhooks/subscribe", Some(hook.clone()));
    call!(Method::GET, "/rest/v2/webhooks", "/rest/v2/webhooks", None);
    call!(Method::GET, "/rest/v2/subscriptions", "/rest/v2/subscriptions", None);
    call!(Method::POST, "/rest/v1/webhooks/unsubscribe", "/rest/v1/webhooks/unsubscribe", Some(hook.clone()));
    call!(Method::POST, "/rest/v1/webhooks/unsubscribe", "/rest/v1/webhooks/unsubscribe", Some(hook));
    call!(Method::GET, "/rest/v2/clicks", "/rest/v2/clicks", None);
    call!(Method::GET, "/rest/v2/account", "/rest/v2/account", None);
    call!(Method::DELETE, "/rest/v1/prospects", format!("/rest/v1/prospects?id={p}"), None);
    call!(Method::DELETE, "/rest/v1/prospects", format!("/rest/v1/prospects?id={p}"), None);
    call!(Method::GET, "/tls/ask", "/tls/ask?domain=t.bachmanity.com", None);
    call!(Method::GET, "/openapi.json", "/openapi.json", None);
    call!(Method::GET, "/healthz", "/healthz", None);
    call!(Method::DELETE, "/rest/v2/campaigns/{id}", format!("/rest/v2/campaigns/{c}"), None);

    if !tool_installed(&["python3", "-c", "import jsonschema"], "jsonschema (with openapi-spec-validator)") {
        return;
    }
    let doc = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doc.json"), doc).unwrap();
    std::fs::write(dir.path().join("seen.json"), serde_json::to_string(&seen).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", CHECK_ANSWERS])
        .arg(dir.path().join("doc.json"))
        .arg(dir.path().join("seen.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "answers outside the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each answer's status must be documented (a success explicitly, an error at least by
/// `default`), and a body must match the schema given for it.
const CHECK_ANSWERS: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
failures = []
for a in json.load(open(sys.argv[2])):
    op = doc["paths"][a["path"]][a["method"]]
    status = str(a["status"])
    where = f'{a["method"].upper()} {a["path"]} -> {status}'
    response = op["responses"].get(status)
    if response is None:
        if status[0] in "23":
            failures.append(f"{where}: a success the document does not list")
            continue
        response = op["responses"].get("default")
        if response is None:
            failures.append(f"{where}: not documented")
            continue
    content = response.get("content")
    if not a["body"]:
        if content:
            failures.append(f"{where}: no body, though the document gives one")
        continue
    if not content:
        failures.append(f"{where}: a body the document does not give: {a['body'][:200]}")
        continue
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        failures.append(f"{where}: no JSON schema")
        continue
    schema = dict(schema, components=doc["components"])
    for e in Draft202012Validator(schema).iter_errors(json.loads(a["body"])):
        failures.append(f"{where}: {e.message} at {list(e.absolute_path)}")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"#;

/// The example a Woodpecker campaign list answer is documented with.
fn campaign_list_example(doc: &serde_json::Value) -> serde_json::Value {
    doc["components"]["schemas"]["WoodpeckerCampaign"]["example"].clone()
}

//! The OpenAPI document describes exactly what the router serves.

use crate::helpers::shared;

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
            path.replace("{id}", "1").replace("{prospect_id}", "1").replace("{token}", "AAAAAAAAAAAAAAAAAAAAAA")
        );
        let r = app.client.request(method.parse().unwrap(), &url).send().await.unwrap();
        assert_ne!(r.status(), 405, "{method} {path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("E_URL_NOT_FOUND"), "{method} {path} is not routed");
    }
    // And something undocumented is not served.
    let r = app.client.get(format!("{}/rest/v1/secret", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

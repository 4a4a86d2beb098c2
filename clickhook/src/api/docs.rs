//! `GET /docs`: the interactive API reference (Swagger UI), every byte inside the binary.
//!
//! The UI's files are committed under `clickhook/assets/swagger-ui/` (see its `SOURCE` and
//! `refresh.sh`); nothing is fetched from a CDN or downloaded by the build. The page loads
//! the document from `/docs/openapi.json`, beside itself, so it works wherever `/docs` is
//! served (on `--admin-listen` too). No inline script: the page passes a strict policy.

use axum::extract::Path;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Api;
use crate::error::ApiError;

const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clickhook API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"#;

const INIT: &str = r##"window.ui = SwaggerUIBundle({ url: "/docs/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
"##;

/// Swagger UI sets style attributes from script; everything else comes from here.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                      frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn router() -> Api {
    Api::new("operations")
        .public(Method::GET, "/docs", "The interactive API reference (Swagger UI).", index)
        .produces("text/html")
        .public(Method::GET, "/docs/{file}", "The reference's files, and the document it shows.", file)
        .produces("*/*")
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX.as_bytes(), false)
}

async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "swagger-ui-bundle.js" => asset(
            "text/javascript; charset=utf-8",
            include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
            true,
        ),
        "swagger-ui.css" => {
            asset("text/css; charset=utf-8", include_bytes!("../../assets/swagger-ui/swagger-ui.css"), true)
        }
        "init.js" => asset("text/javascript; charset=utf-8", INIT.as_bytes(), false),
        "openapi.json" => super::openapi_json().await,
        _ => ApiError::new(StatusCode::NOT_FOUND, "E_URL_NOT_FOUND", "No such file of the API reference.")
            .into_response(),
    }
}

/// A file with its type and the page's policy; the UI's own files are cached for a day (a new
/// binary may bring a new UI, so not forever).
fn asset(content_type: &'static str, body: &'static [u8], cached: bool) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let cache = if cached { "public, max-age=86400" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

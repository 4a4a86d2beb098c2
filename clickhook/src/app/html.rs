//! HTML responses of the dashboard: whole documents, fragments for htmx, redirects, and why a
//! request did not get its page ([`PageError`]), shown as a page or in the flash area.
//!
//! Nothing inline: the Content-Security-Policy allows only clickhook's own scripts and styles.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::error::ApiError;
use crate::store::StoreError;

/// The `<head>` of every document: the stylesheet, htmx and its configuration.
pub fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // No inline styles from htmx, no eval: the CSP forbids both. Errors are swapped
            // into the flash area (`HX-Retarget`), not dropped.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"[45]..","swap":true,"error":true}]}"#;
            title { (title) " · clickhook" }
            link rel="stylesheet" href="/app/assets/app.css";
            script src="/app/assets/htmx.min.js" defer {}
            script src="/app/assets/app.js" defer {}
        }
    }
}

/// A page without a session (signing in).
pub fn bare(title: &str, body: Markup) -> Response {
    let doc = html! { (DOCTYPE) html lang="en" { (head(title)) body { (body) } } };
    html_response(StatusCode::OK, doc)
}

pub fn html_response(status: StatusCode, m: Markup) -> Response {
    let mut res = (status, m.into_string()).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    res
}

/// A fragment for htmx to swap in.
pub fn fragment(m: Markup) -> Response {
    html_response(StatusCode::OK, m)
}

pub fn see_other(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to).expect("a local path"));
    res
}

/// Whether htmx sent the request (it wants a fragment, not a page).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// Why a dashboard request did not get its page.
#[derive(Debug)]
pub enum PageError {
    /// No live session: to the sign-in page (htmx is told to go there itself).
    SignIn {
        htmx: bool,
    },
    Forbidden(&'static str),
    /// An error of the API's own kind, shown as a page, or in the flash area for htmx.
    Failed(ApiError, bool),
}

impl PageError {
    pub fn from_store(e: StoreError) -> Self {
        PageError::Failed(e.into(), false)
    }
    pub fn api(e: ApiError, htmx: bool) -> Self {
        PageError::Failed(e, htmx)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, msg, htmx) = match self {
            PageError::SignIn { htmx: false } => return see_other("/app/login"),
            PageError::SignIn { htmx: true } => {
                let mut res = StatusCode::UNAUTHORIZED.into_response();
                res.headers_mut().insert("hx-redirect", HeaderValue::from_static("/app/login"));
                return res;
            }
            PageError::Forbidden(msg) => (StatusCode::FORBIDDEN, msg.to_string(), false),
            PageError::Failed(e, htmx) => {
                if e.status.is_server_error() {
                    tracing::warn!(code = e.code, msg = %e.msg, "dashboard request failed");
                }
                (e.status, e.msg, htmx)
            }
        };
        if htmx {
            let mut res = html_response(status, html! { p.error role="alert" { (msg) } });
            let h = res.headers_mut();
            h.insert("hx-retarget", HeaderValue::from_static("#flash"));
            h.insert("hx-reswap", HeaderValue::from_static("innerHTML"));
            return res;
        }
        let doc = html! {
            (DOCTYPE)
            html lang="en" {
                (head("Error"))
                body { main.narrow {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error role="alert" { (msg) }
                    p { a href="/app/campaigns" { "Back to the dashboard" } }
                } }
            }
        };
        html_response(status, doc)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::Failed(e, false)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::from_store(e)
    }
}

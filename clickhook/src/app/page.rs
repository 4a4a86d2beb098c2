//! The page shell every dashboard page shares, its errors, and how numbers and times read.
//!
//! Pages are whole HTML documents that read without JavaScript; htmx (`hx-boost`) only swaps
//! their bodies in place, and the actions that change one row ask for that row back
//! ([`is_htmx`]). Nothing inline: the Content-Security-Policy allows only clickhook's own
//! scripts and styles.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::{csrf_field, Session};
use crate::domain::Millis;
use crate::error::ApiError;
use crate::store::StoreError;

/// The dashboard's sections, in the order the navigation shows them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Campaigns,
    Clicks,
    Webhooks,
    Settings,
}

const SECTIONS: [(Section, &str, &str); 4] = [
    (Section::Campaigns, "/app/campaigns", "Campaigns"),
    (Section::Clicks, "/app/clicks", "Clicks"),
    (Section::Webhooks, "/app/webhooks", "Webhooks"),
    (Section::Settings, "/app/settings", "Settings"),
];

fn head(title: &str) -> Markup {
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

/// A page of a signed-in session.
pub fn page(s: &Session, at: Section, title: &str, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-boost="true" {
                header.top {
                    a.brand href="/app/campaigns" { "clickhook" }
                    nav {
                        @for (section, href, name) in SECTIONS {
                            @if section == at { a.current href=(href) aria-current="page" { (name) } }
                            @else { a href=(href) { (name) } }
                        }
                    }
                    span.account { (s.account.name) }
                    form.signout method="post" action="/app/logout" {
                        (csrf_field(s))
                        button.link type="submit" { "Sign out" }
                    }
                }
                div #flash role="status" {}
                main { (body) }
            }
        }
    };
    html_response(StatusCode::OK, doc)
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

/// 1234567 → "1,234,567".
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `part` of `whole` as a percentage with one decimal; "–" when there is no whole.
pub fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "–".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// A time as a person reads it, in the account's zone: "2026-03-21 14:05".
pub fn when(at: Millis, tz: &str) -> String {
    local(at, tz, "%Y-%m-%d %H:%M")
}

/// The day of a time in the account's zone: "2026-03-21".
pub fn day(at: Millis, tz: &str) -> String {
    local(at, tz, "%Y-%m-%d")
}

fn local(at: Millis, tz: &str, format: &str) -> String {
    use chrono::TimeZone;
    let zone: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    match chrono::Utc.timestamp_millis_opt(at).single() {
        Some(t) => t.with_timezone(&zone).format(format).to_string(),
        None => "–".into(),
    }
}

/// `when`, or "never".
pub fn when_or(at: Option<Millis>, tz: &str, none: &'static str) -> String {
    at.map_or_else(|| none.to_string(), |t| when(t, tz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_in_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-12345), "-12,345");
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(5, 0), "–");
    }

    #[test]
    fn times_in_the_zone() {
        // 2025-03-21T12:00:00Z
        let t = 1_742_558_400_000;
        assert_eq!(when(t, "UTC"), "2025-03-21 12:00");
        assert_eq!(when(t, "Europe/Warsaw"), "2025-03-21 13:00");
        assert_eq!(day(t - 13 * 3_600_000, "Europe/Warsaw"), "2025-03-21", "00:00 in Warsaw");
        assert_eq!(when(i64::MAX, "UTC"), "–");
    }
}

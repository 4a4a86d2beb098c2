//! The shell every signed-in dashboard page shares, and how numbers and times read.
//!
//! Pages are whole HTML documents that read without JavaScript; htmx (`hx-boost`) only swaps
//! their bodies in place, and the actions that change one row ask for that row back
//! ([`super::html::is_htmx`]).

use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup, DOCTYPE};

use super::html::{head, html_response};
use super::session::{csrf_field, Session};
use crate::domain::Millis;

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

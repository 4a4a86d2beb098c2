//! Settings: the account's time zone, click filter and snippet labels, and its API keys
//! (created and shown once; revoked, which also ends the sessions signed in with the key).
//! Changes go through the same rules as `PATCH /rest/v2/account`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::html::{see_other, PageError};
use super::page::{page, when, when_or, Section};
use super::session::{csrf_field, Empty, Posted, Session};
use crate::api::account::{merge_filter, merge_labels};
use crate::api::auth::issue_key;
use crate::api::AppState;
use crate::domain::{parse_timezone, AccountPatch};
use crate::error::ApiError;

#[derive(Deserialize, Default)]
pub struct Notice {
    #[serde(default)]
    done: String,
}

pub async fn show(State(st): State<AppState>, s: Session, Query(n): Query<Notice>) -> Result<Response, PageError> {
    let top = match n.done.as_str() {
        "saved" => Some(html! { p.notice role="status" { "Saved." } }),
        "revoked" => Some(html! { p.notice role="status" { "The key is revoked; its sessions have ended." } }),
        _ => None,
    };
    render(&st, &s, top).await
}

async fn render(st: &AppState, s: &Session, top: Option<Markup>) -> Result<Response, PageError> {
    let a = &s.account;
    let keys = st.store.list_api_keys(a.id).await?;
    let filter = serde_json::to_string_pretty(&a.click_filter).map_err(|_| ApiError::internal())?;
    let body = html! {
        h1 { "Settings" }
        @if let Some(t) = top { (t) }
        form.settings method="post" action="/app/settings" {
            (csrf_field(s))
            label for="timezone" { "Time zone" }
            select #timezone name="timezone" {
                @for tz in chrono_tz::TZ_VARIANTS {
                    option value=(tz.name()) selected[tz.name() == a.timezone] { (tz.name()) }
                }
            }
            fieldset {
                legend { "Snippet labels" }
                div.labels { @for n in 1..=15u8 {
                    label { "snippet" (n) " "
                        input type="text" name={ "snippet" (n) } value=[a.snippet_labels.get(&n)] maxlength="100";
                    }
                } }
            }
            label for="click_filter" { "Click filter (JSON; see " a href="/docs" { "the API reference" } ")" }
            textarea #click_filter name="click_filter" rows="12" spellcheck="false" { (filter) }
            button type="submit" { "Save" }
        }
        h2 { "API keys" }
        table.keys {
            thead { tr { th { "Key" } th { "Created" } th { "Revoked" } th {} } }
            tbody { @for k in &keys {
                tr data-key=(k.prefix) {
                    td { code { (k.prefix) "…" } }
                    td { (when(k.created_at, &a.timezone)) }
                    td { (when_or(k.revoked_at, &a.timezone, "–")) }
                    td { @if k.revoked_at.is_none() {
                        form.inline method="post" action={ "/app/settings/keys/" (k.prefix) "/revoke" }
                            hx-confirm="Revoke this key? Programs using it stop working, and its sessions end." {
                            (csrf_field(s))
                            button type="submit" { "Revoke" }
                        }
                    } }
                }
            } }
        }
        form method="post" action="/app/settings/keys" hx-push-url="false" {
            (csrf_field(s))
            button type="submit" { "Create a key" }
        }
    };
    Ok(page(s, Section::Settings, "Settings", body))
}

pub async fn save(State(st): State<AppState>, p: Posted<HashMap<String, String>>) -> Result<Response, PageError> {
    let (a, f) = (&p.session.account, &p.form);
    let timezone = match f.get("timezone") {
        Some(tz) => Some(parse_timezone(tz).map_err(ApiError::from)?.name().to_string()),
        None => None,
    };
    let labels: Map<String, Value> = (1..=15)
        .map(|n| (n.to_string(), Value::String(f.get(&format!("snippet{n}")).cloned().unwrap_or_default())))
        .collect();
    let click_filter = match f.get("click_filter") {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(given)) => Some(merge_filter(&a.click_filter, given)?),
            _ => return Err(ApiError::wrong_param("click_filter: it must be a JSON object.").into()),
        },
        None => None,
    };
    let patch = AccountPatch {
        name: None,
        timezone,
        snippet_labels: Some(merge_labels(&a.snippet_labels, labels)?),
        click_filter,
    };
    st.store.update_account(a.id, patch).await?;
    st.auth.clear();
    Ok(see_other("/app/settings?done=saved"))
}

/// A new key, shown once on the page this answers.
pub async fn create_key(State(st): State<AppState>, p: Posted<Empty>) -> Result<Response, PageError> {
    let key = issue_key(&st.store, p.session.account.id).await?;
    let shown = html! {
        div.notice.secret role="status" {
            p { "Your new API key. It is shown only now: copy it somewhere safe." }
            pre data-new-key { (key) }
        }
    };
    render(&st, &p.session, Some(shown)).await
}

pub async fn revoke_key(
    State(st): State<AppState>,
    Path(prefix): Path<String>,
    p: Posted<Empty>,
) -> Result<Response, PageError> {
    st.store.revoke_api_key(p.session.account.id, &prefix).await?;
    st.auth.clear();
    Ok(see_other("/app/settings?done=revoked"))
}

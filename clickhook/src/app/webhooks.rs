//! Webhooks: each subscription's health (status, last success, failures, events waiting) with
//! pause, resume, rotate secret, send test and replay; below, the delivery log with every
//! attempt. Actions are forms that come back to this page; htmx swaps only the row they
//! changed (`hx-select`), and without JavaScript the whole page reloads.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::html::{see_other, PageError};
use super::page::{count, page, when, when_or, Section};
use super::session::{csrf_field, Empty, Posted, Session};
use crate::api::campaigns::path_id;
use crate::api::deliveries::send_test;
use crate::api::webhooks::new_secret;
use crate::api::AppState;
use crate::domain::{now_millis, DeliveryState, Subscription, SubscriptionStatus};
use crate::store::{DeliveryQuery, DeliveryRecord};

/// Batches the delivery log shows.
const LOG: i64 = 30;

#[derive(Deserialize, Default)]
pub struct Notice {
    #[serde(default)]
    done: String,
}

/// What an action did, by the code it redirects with (never text from the request).
fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "paused" => "Paused: events keep queueing until you resume.",
        "resumed" => "Resumed: waiting batches are being sent.",
        "test" => "A test batch is queued; it shows in the delivery log.",
        "replayed" => "Queued again: it will be sent with its original webhook-id.",
        "replayed_failed" => "Every failed batch of the subscription is queued again.",
        _ => return None,
    })
}

pub async fn show(State(st): State<AppState>, s: Session, Query(n): Query<Notice>) -> Result<Response, PageError> {
    render(&st, &s, notice(&n.done).map(|t| html! { p.notice role="status" { (t) } })).await
}

async fn render(st: &AppState, s: &Session, top: Option<Markup>) -> Result<Response, PageError> {
    let a = &s.account;
    let subs = st.store.list_subscriptions(a.id).await?;
    let waiting: HashMap<i64, i64> =
        st.store.backlog().await?.into_iter().map(|b| (b.subscription_id, b.events)).collect();
    let mut failed = HashMap::new();
    for sub in &subs {
        let q = DeliveryQuery {
            subscription_id: Some(sub.id),
            state: Some(DeliveryState::Failed),
            limit: 1,
            ..Default::default()
        };
        failed.insert(sub.id, st.store.list_deliveries(a.id, q).await?.0);
    }
    let (total, log) = st.store.list_deliveries(a.id, DeliveryQuery { limit: LOG, ..Default::default() }).await?;
    let body = html! {
        h1 { "Webhooks" }
        @if let Some(t) = top { (t) }
        @if subs.is_empty() {
            p.empty { "No subscriptions. Subscribe a URL with " code { "POST /rest/v1/webhooks/subscribe" } "." }
        } @else {
            table.subs {
                thead { tr {
                    th { "Target" } th { "Status" } th { "Last success" } th.num { "Failed batches" }
                    th.num { "Events waiting" } th { "Actions" }
                } }
                tbody { @for sub in &subs {
                    (sub_row(s, sub, failed.get(&sub.id).copied().unwrap_or(0), waiting.get(&sub.id).copied().unwrap_or(0)))
                } }
            }
        }
        h2 { "Delivery log" }
        p.muted { "The latest " (log.len()) " of " (count(total)) " batches, newest first." }
        @if !log.is_empty() {
            table.log {
                thead { tr { th { "Batch" } th { "Target" } th.num { "Events" } th { "Status" } th { "Made" } th { "Attempts" } th {} } }
                tbody { @for d in &log { (delivery_row(s, d)) } }
            }
        }
    };
    Ok(page(s, Section::Webhooks, "Webhooks", body))
}

/// A form that posts one action; with htmx, only `row` of the page it comes back to is swapped.
fn action(s: &Session, to: String, row: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(to) hx-target=(row) hx-select=(row) hx-swap="outerHTML" {
            (csrf_field(s))
            button type="submit" { (label) }
        }
    }
}

/// A form whose answer is the whole page (a notice on top).
fn page_action(s: &Session, to: String, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(to) hx-push-url="false" hx-confirm=[confirm] {
            (csrf_field(s))
            button type="submit" { (label) }
        }
    }
}

fn sub_row(s: &Session, sub: &Subscription, failed: i64, waiting: i64) -> Markup {
    let tz = &s.account.timezone;
    let row = format!("#sub-{}", sub.id);
    let to = |what: &str| format!("/app/webhooks/{}/{what}", sub.id);
    html! {
        tr id={ "sub-" (sub.id) } data-subscription=(sub.id) {
            td.url { (sub.target_url) }
            td { span.badge.(sub.status.as_str()) { (sub.status.as_str()) } }
            td { (when_or(sub.last_success_at, tz, "never")) }
            td.num { (count(failed)) }
            td.num { (count(waiting)) }
            td.actions {
                @if sub.status == SubscriptionStatus::Active { (action(s, to("pause"), &row, "Pause")) }
                @else { (action(s, to("resume"), &row, "Resume")) }
                (page_action(s, to("test"), "Send test", None))
                @if failed > 0 { (page_action(s, to("replay_failed"), "Replay failed", None)) }
                (page_action(s, to("rotate_secret"), "Rotate secret", Some("Rotate the secret? The old one stops at once.")))
            }
        }
    }
}

fn delivery_row(s: &Session, d: &DeliveryRecord) -> Markup {
    let tz = &s.account.timezone;
    let row = format!("#delivery-{}", d.id);
    html! {
        tr id={ "delivery-" (d.id) } data-delivery=(d.id) {
            td { code { (d.msg_id) } }
            td.url { (d.target_url) }
            td.num { (d.event_count) }
            td { span.badge.(d.state.as_str()) { (d.state.as_str()) } }
            td { (when(d.created_at, tz)) }
            td {
                @if d.attempts.is_empty() { span.muted { "none yet" } }
                @else {
                    details {
                        summary { (d.attempts.len()) " attempt" @if d.attempts.len() != 1 { "s" } }
                        ol.attempts { @for t in &d.attempts { li {
                            (when(t.at, tz)) " · "
                            @match t.status_code { Some(code) => { "HTTP " (code) }, None => { "no answer" } }
                            " · " (t.latency_ms) " ms"
                            @if let Some(e) = &t.error { " · " span.error { (e) } }
                        } } }
                    }
                }
            }
            td { @if d.state != DeliveryState::Pending { (action(s, format!("/app/deliveries/{}/replay", d.id), &row, "Replay")) } }
        }
    }
}

async fn set_status(st: &AppState, p: &Posted<Empty>, id: &str, to: SubscriptionStatus) -> Result<(), PageError> {
    st.store.set_subscription_status(p.session.account.id, path_id(id, "subscription")?, to).await?;
    Ok(())
}

pub async fn pause(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted<Empty>,
) -> Result<Response, PageError> {
    set_status(&st, &p, &id, SubscriptionStatus::Paused).await?;
    Ok(see_other("/app/webhooks?done=paused"))
}

pub async fn resume(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted<Empty>,
) -> Result<Response, PageError> {
    set_status(&st, &p, &id, SubscriptionStatus::Active).await?;
    Ok(see_other("/app/webhooks?done=resumed"))
}

pub async fn test(State(st): State<AppState>, Path(id): Path<String>, p: Posted<Empty>) -> Result<Response, PageError> {
    send_test(&st, &p.session.account, path_id(&id, "subscription")?).await?;
    Ok(see_other("/app/webhooks?done=test"))
}

pub async fn replay_failed(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted<Empty>,
) -> Result<Response, PageError> {
    st.store.replay_failed(p.session.account.id, path_id(&id, "subscription")?, now_millis()).await?;
    Ok(see_other("/app/webhooks?done=replayed_failed"))
}

pub async fn replay(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted<Empty>,
) -> Result<Response, PageError> {
    st.store.replay_delivery(p.session.account.id, path_id(&id, "delivery")?, now_millis()).await?;
    Ok(see_other("/app/webhooks?done=replayed"))
}

/// The new secret is shown once, on the page this answers.
pub async fn rotate_secret(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Posted<Empty>,
) -> Result<Response, PageError> {
    let sub =
        st.store.set_subscription_secret(p.session.account.id, path_id(&id, "subscription")?, new_secret()).await?;
    let shown = html! {
        div.notice.secret role="status" {
            p { "The new secret of " code { (sub.target_url) } ". It is shown only now; the old one no longer signs." }
            pre data-secret { (sub.secret) }
        }
    };
    render(&st, &p.session, Some(shown)).await
}

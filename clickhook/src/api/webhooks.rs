//! Webhook subscriptions: Woodpecker's subscribe/unsubscribe/list, and the native view.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::{list_response, Api, AppState, JsonBody};
use crate::delivery::target;
use crate::domain::delivery::Subscribed as Outcome;
use crate::domain::parse_event_name;
use crate::domain::{Subscription, SubscriptionStatus};
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;

pub fn router() -> Api {
    Api::new("webhooks")
        .post(
            "/rest/v1/webhooks/subscribe",
            "Subscribe a target URL to an event (at most 3 URLs per event).",
            subscribe,
        )
        .body::<SubscribeBody>()
        .returns::<Subscribed>(&[201])
        .errors(&[(409, "The URL already has this event, or the event already has 3 URLs.")])
        .post("/rest/v1/webhooks/unsubscribe", "Remove a subscription.", unsubscribe)
        .body::<SubscribeBody>()
        .returns::<Subscribed>(&[200])
        .errors(&[(404, "No subscription of this event for this URL (E_URL_NOT_FOUND).")])
        .get("/rest/v2/webhooks", "Woodpecker's list of subscriptions (event names upper case).", list_webhooks)
        .returns::<Webhooks>(&[200])
        .get("/rest/v2/subscriptions", "Subscriptions with id, secret, status and last outcomes.", list_subscriptions)
        .returns_list::<SubscriptionView>()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"target_url": "https://hooks.bachmanity.com/woodpecker", "event": "link_clicked"}))]
struct SubscribeBody {
    #[serde(default)]
    target_url: Option<String>,
    #[serde(default)]
    event: Option<String>,
}

/// A Standard Webhooks secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b))
}

fn parse_body(b: &SubscribeBody) -> ApiResult<(url::Url, &'static str)> {
    let url = target::parse_target(b.target_url.as_deref().unwrap_or_default())?;
    let event = parse_event_name(b.event.as_deref().unwrap_or_default())?;
    Ok((url, event))
}

async fn subscribe(
    State(st): State<AppState>,
    Auth(account): Auth,
    JsonBody(b): JsonBody<SubscribeBody>,
) -> ApiResult<Response> {
    let (url, event) = parse_body(&b)?;
    if !st.settings.allow_private_targets {
        target::check_public(&url).await?;
    }
    // Kept as given: receivers compare the URL they subscribed with what they list.
    let target_url = b.target_url.as_deref().unwrap_or_default().trim().to_string();
    match st.store.subscribe(account.id, &target_url, event, new_secret()).await? {
        Outcome::Created(_) => {
            let done = Subscribed { target_url, event, message: "Subscribed." };
            Ok((StatusCode::CREATED, Json(done)).into_response())
        }
        Outcome::Duplicate => Err(ApiError::conflict("E_WRONG_PARAM", "Event defined for this url.")),
        Outcome::TooMany => {
            Err(ApiError::conflict("E_WRONG_PARAM", "This event already has 3 target URLs; unsubscribe one first."))
        }
    }
}

async fn unsubscribe(
    State(st): State<AppState>,
    Auth(account): Auth,
    JsonBody(b): JsonBody<SubscribeBody>,
) -> ApiResult<Response> {
    let (_, event) = parse_body(&b)?;
    let target_url = b.target_url.as_deref().unwrap_or_default().trim().to_string();
    if !st.store.unsubscribe(account.id, &target_url, event).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "E_URL_NOT_FOUND",
            "No subscription of this event for this url.",
        ));
    }
    Ok(Json(Subscribed { target_url, event, message: "Unsubscribed." }).into_response())
}

/// What subscribe and unsubscribe answer, as Woodpecker does.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"target_url": "https://hooks.bachmanity.com/woodpecker", "event": "link_clicked",
                          "message": "Subscribed."}))]
struct Subscribed {
    target_url: String,
    event: &'static str,
    message: &'static str,
}

/// Woodpecker's list of an account's subscriptions.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"webhooks": [{"target_url": "https://hooks.bachmanity.com/woodpecker",
                                        "event": "LINK_CLICKED"}]}))]
struct Webhooks {
    webhooks: Vec<Webhook>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Webhook {
    target_url: String,
    /// Upper case here, as Woodpecker lists it.
    event: String,
}

async fn list_webhooks(State(st): State<AppState>, Auth(account): Auth) -> ApiResult<Response> {
    let webhooks: Vec<Webhook> = st
        .store
        .list_subscriptions(account.id)
        .await?
        .iter()
        .map(|s| Webhook { target_url: s.target_url.clone(), event: s.event.to_uppercase() })
        .collect();
    Ok(Json(Webhooks { webhooks }).into_response())
}

/// A subscription as the API shows it, secret included (the account's own).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    id: i64,
    target_url: String,
    #[schema(example = "link_clicked")]
    event: String,
    /// The Standard Webhooks secret its batches are signed with.
    #[schema(example = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")]
    secret: String,
    #[schema(value_type = String, example = "active")]
    status: SubscriptionStatus,
    created: String,
    last_success: Option<String>,
    last_failure: Option<String>,
    /// The first failure since the last success.
    failing_since: Option<String>,
}

impl SubscriptionView {
    pub fn of(s: &Subscription, tz: &str) -> Self {
        let time = |t: Option<i64>| t.map(|t| format_time(t, tz));
        SubscriptionView {
            id: s.id,
            target_url: s.target_url.clone(),
            event: s.event.clone(),
            secret: s.secret.clone(),
            status: s.status,
            created: format_time(s.created_at, tz),
            last_success: time(s.last_success_at),
            last_failure: time(s.last_failure_at),
            failing_since: time(s.failing_since),
        }
    }
}

async fn list_subscriptions(State(st): State<AppState>, Auth(account): Auth) -> ApiResult<Response> {
    let subs = st.store.list_subscriptions(account.id).await?;
    let views: Vec<SubscriptionView> = subs.iter().map(|s| SubscriptionView::of(s, &account.timezone)).collect();
    Ok(list_response(views.len() as i64, views))
}

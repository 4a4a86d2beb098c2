//! Delivery control: subscriptions' secrets and state, the delivery log, replay.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::auth::Auth;
use super::campaigns::path_id;
use super::webhooks::{new_secret, SubscriptionView};
use super::{list_response, Api, AppState, Kind, Param, Params};
use crate::domain::{now_millis, Account, DeliveryState, SubscriptionStatus};
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;
use crate::store::{DeliveryQuery, DeliveryRecord};

pub fn router() -> Api {
    Api::new("deliveries")
        .post(
            "/rest/v2/subscriptions/{id}/rotate_secret",
            "Issue a new whsec_ secret; the old one stops at once.",
            rotate_secret,
        )
        .returns::<SubscriptionView>(&[200])
        .post("/rest/v2/subscriptions/{id}/pause", "Hold deliveries; events keep queueing.", pause)
        .returns::<SubscriptionView>(&[200])
        .post("/rest/v2/subscriptions/{id}/resume", "Deliver again (also re-enables a disabled subscription).", resume)
        .returns::<SubscriptionView>(&[200])
        .post("/rest/v2/subscriptions/{id}/test", "Queue a signed example link_clicked batch to the target.", test)
        .returns::<Queued>(&[202])
        .post(
            "/rest/v2/subscriptions/{id}/replay_failed",
            "Send every failed batch of the subscription again.",
            replay_failed,
        )
        .returns::<Replayed>(&[200])
        .get(
            "/rest/v2/deliveries",
            "The delivery log with every attempt: subscription_id, status, since, until; paged.",
            list,
        )
        .query(
            const {
                &[
                    Param::PAGE,
                    Param::per_page(1000),
                    Param::new("subscription_id", Kind::Integer, "Batches of this subscription."),
                    Param::new("status", Kind::OneOf(DeliveryState::WIRE), "Batches in this state."),
                    Param::since("Batches made at or after this time."),
                    Param::until("Batches made before this time."),
                ]
            },
        )
        .returns_list::<DeliveryView>()
        .post("/rest/v2/deliveries/{id}/replay", "Send a batch again, with its original webhook-id.", replay)
        .returns::<Pending>(&[202])
}

async fn status(st: &AppState, account: i64, id: &str, status: SubscriptionStatus) -> ApiResult<Response> {
    let s = st.store.set_subscription_status(account, path_id(id, "subscription")?, status).await?;
    let tz = st.store.account(account).await?.timezone;
    Ok(Json(SubscriptionView::of(&s, &tz)).into_response())
}

async fn pause(State(st): State<AppState>, Auth(a): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    status(&st, a.id, &id, SubscriptionStatus::Paused).await
}

async fn resume(State(st): State<AppState>, Auth(a): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    status(&st, a.id, &id, SubscriptionStatus::Active).await
}

async fn rotate_secret(State(st): State<AppState>, Auth(a): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let s = st.store.set_subscription_secret(a.id, path_id(&id, "subscription")?, new_secret()).await?;
    Ok(Json(SubscriptionView::of(&s, &a.timezone)).into_response())
}

async fn test(State(st): State<AppState>, Auth(a): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let delivery = send_test(&st, &a, path_id(&id, "subscription")?).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { delivery_id: delivery })).into_response())
}

/// Queues the published example, as this account would send it, to a subscription: receivers
/// can test their parsing. Returns the delivery's id.
pub async fn send_test(st: &AppState, a: &Account, subscription: i64) -> ApiResult<i64> {
    let mut example: Value = serde_json::from_str(EXAMPLE).map_err(|_| ApiError::internal())?;
    example[0]["firm_id"] = json!(a.id);
    example[0]["timestamp"] = json!(format_time(now_millis(), &a.timezone));
    Ok(st.store.add_test_delivery(a.id, subscription, example.to_string(), now_millis()).await?)
}

/// A test batch queued: its id in the delivery log.
#[derive(Serialize, utoipa::ToSchema)]
struct Queued {
    delivery_id: i64,
}

/// How many failed batches were queued again.
#[derive(Serialize, utoipa::ToSchema)]
struct Replayed {
    replayed: i64,
}

/// A batch queued again, to be sent with its original webhook-id.
#[derive(Serialize, utoipa::ToSchema)]
struct Pending {
    #[schema(example = "pending")]
    status: &'static str,
}

/// Woodpecker's example payload, for the test endpoint.
const EXAMPLE: &str = include_str!("../../data/link_clicked.example.json");

async fn replay_failed(State(st): State<AppState>, Auth(a): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let n = st.store.replay_failed(a.id, path_id(&id, "subscription")?, now_millis()).await?;
    Ok(Json(Replayed { replayed: n }).into_response())
}

async fn replay(State(st): State<AppState>, Auth(a): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    st.store.replay_delivery(a.id, path_id(&id, "delivery")?, now_millis()).await?;
    Ok((StatusCode::ACCEPTED, Json(Pending { status: "pending" })).into_response())
}

/// A batch of events sent to one subscription, with every attempt.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    id: i64,
    /// The `webhook-id` its POSTs carry, the same on every attempt and replay.
    webhook_id: String,
    subscription_id: i64,
    target_url: String,
    /// How many link_clicked events it holds.
    events: i64,
    #[schema(value_type = String, example = "delivered")]
    status: DeliveryState,
    failed_attempts: i64,
    next_attempt: Option<String>,
    created: String,
    delivered: Option<String>,
    last_error: Option<String>,
    attempts: Vec<AttemptView>,
}

/// One POST of a batch.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    time: String,
    /// The receiver's status code; none when no answer came (see error).
    status_code: Option<u16>,
    error: Option<String>,
    latency_ms: i64,
    /// The start of the receiver's answer.
    response: String,
}

impl DeliveryView {
    fn of(d: &DeliveryRecord, tz: &str) -> Self {
        let time = |t: Option<i64>| t.map(|t| format_time(t, tz));
        DeliveryView {
            id: d.id,
            webhook_id: d.msg_id.clone(),
            subscription_id: d.subscription_id,
            target_url: d.target_url.clone(),
            events: d.event_count,
            status: d.state,
            failed_attempts: d.tries,
            next_attempt: time(d.next_attempt_at),
            created: format_time(d.created_at, tz),
            delivered: time(d.delivered_at),
            last_error: d.last_error.clone(),
            attempts: d
                .attempts
                .iter()
                .map(|t| AttemptView {
                    time: format_time(t.at, tz),
                    status_code: t.status_code,
                    error: t.error.clone(),
                    latency_ms: t.latency_ms,
                    response: t.response.clone(),
                })
                .collect(),
        }
    }
}

async fn list(State(st): State<AppState>, Auth(a): Auth, params: Params) -> ApiResult<Response> {
    let (offset, limit) = params.page(1000)?;
    let state = match params.str("status") {
        Some(s @ ("pending" | "delivered" | "failed")) => Some(DeliveryState::parse(s)?),
        Some(s) => {
            return Err(ApiError::wrong_param(format!("status must be pending, delivered or failed, not {s:?}.")))
        }
        None => None,
    };
    let q = DeliveryQuery {
        subscription_id: params.int("subscription_id")?,
        state,
        since: params.time("since")?,
        until: params.time("until")?,
        offset,
        limit,
    };
    let (total, items) = st.store.list_deliveries(a.id, q).await?;
    Ok(list_response(total, items.iter().map(|d| DeliveryView::of(d, &a.timezone)).collect()))
}

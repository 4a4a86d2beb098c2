//! What handlers answer with besides their resources: lists with their totals, and the OK
//! envelope of endpoints that have nothing else to say. Each is the type its schema is made from.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A native (v2) list: 200 with `X-Total-Count`, `[]` when there is nothing.
pub fn list_response<T: Serialize>(total: i64, items: Vec<T>) -> Response {
    let mut res = axum::Json(items).into_response();
    res.headers_mut().insert("x-total-count", HeaderValue::from(total));
    res
}

/// A Woodpecker (v1) list, as Woodpecker answers it: 200 with `X-Total-Count`, or 204 when
/// there is nothing (clients written for Woodpecker expect that).
pub fn woodpecker_list_response<T: Serialize>(total: i64, items: Vec<T>) -> Response {
    let mut res =
        if items.is_empty() { StatusCode::NO_CONTENT.into_response() } else { axum::Json(items).into_response() };
    res.headers_mut().insert("x-total-count", HeaderValue::from(total));
    res
}

/// Success in the envelope Woodpecker's errors use.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": {"status": "OK", "msg": "Follow-ups stopped."}}))]
pub struct OkStatus {
    status: OkBody,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OkBody {
    #[schema(pattern = "^OK$")]
    status: &'static str,
    /// What was done.
    msg: String,
}

pub fn ok_status(msg: impl Into<String>) -> Response {
    axum::Json(OkStatus { status: OkBody { status: "OK", msg: msg.into() } }).into_response()
}

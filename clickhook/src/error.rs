//! The one error type of the HTTP API.
//!
//! Every failure, on v1 and v2 alike, answers with Woodpecker's v1 envelope
//! `{"status":{"status":"ERROR","code":"E_…","msg":"…"}}` so that a client written
//! against Woodpecker needs a single error path.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::{ParseError, ParseErrorKind};
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub msg: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        ApiError { status, code, msg: msg.into() }
    }
    pub fn session() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "E_SESSION", "Missing or invalid API key.")
    }
    pub fn wrong_param(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "E_WRONG_PARAM", msg)
    }
    pub fn required(field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "E_REQUIRED_ELEMENT", format!("Missing required element: {field}."))
    }
    pub fn email(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "E_EMAIL", msg)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "E_RECORD_NOT_FOUND", format!("{what} not found."))
    }
    pub fn conflict(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, msg)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_PAYLOAD_TOO_LARGE",
            format!("Request body is larger than the limit of {limit} bytes."),
        )
    }
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "E_INTERNAL", "Internal error; see the server log.")
    }
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "E_UNAVAILABLE", "The store is unavailable; try again.")
    }

    /// Prefixes the message with where in the input the problem is (`prospects[3]`).
    pub fn at(mut self, place: impl std::fmt::Display) -> Self {
        self.msg = format!("{place}: {}", self.msg);
        self
    }

    pub fn body(&self) -> String {
        serde_json::json!({"status": {"status": "ERROR", "code": self.code, "msg": self.msg}}).to_string()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.msg)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, self.body()).into_response();
        res.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
        res
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        let code = match e.kind {
            ParseErrorKind::Invalid => "E_WRONG_PARAM",
            ParseErrorKind::Required => "E_REQUIRED_ELEMENT",
            ParseErrorKind::Email => "E_EMAIL",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.msg)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(msg) => ApiError::conflict("E_DUPLICATE", msg),
            StoreError::Invalid(msg) => ApiError::wrong_param(msg),
            StoreError::Unavailable(msg) => {
                tracing::warn!("store unavailable: {msg}");
                ApiError::unavailable()
            }
            StoreError::Other(msg) => {
                tracing::error!("store error: {msg}");
                ApiError::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

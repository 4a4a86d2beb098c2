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
        ApiError { status, code, msg: bounded(msg.into()) }
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
    /// Overloaded for a moment: the client may retry.
    pub fn busy(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "E_BUSY", msg)
    }
    pub fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "E_UNAVAILABLE", "The store is unavailable; try again.")
    }

    /// Prefixes the message with where in the input the problem is (`prospects[3]`).
    pub fn at(mut self, place: impl std::fmt::Display) -> Self {
        self.msg = bounded(format!("{place}: {}", self.msg));
        self
    }

    pub fn body(&self) -> String {
        serde_json::json!({"status": {"status": "ERROR", "code": self.code, "msg": self.msg}}).to_string()
    }
}

/// Longest message an error carries. Messages quote the input they refuse, and input can be
/// megabytes (an unknown JSON key, a CSV header): what is quoted is cut, never the whole of it.
pub const MAX_MESSAGE: usize = 300;

/// `msg`, cut to [`MAX_MESSAGE`] bytes on a character boundary, marked with `…` when cut.
pub fn bounded(mut msg: String) -> String {
    if msg.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push('…');
    }
    msg
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
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert("retry-after", HeaderValue::from_static("5"));
        }
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
            StoreError::CannotWrite(msg) => {
                tracing::warn!("the store cannot write: {msg}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "E_STORE_CANNOT_WRITE",
                    format!("The store cannot write ({msg}); nothing was changed. Try again in a moment."),
                )
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded() {
        let long = ApiError::wrong_param(format!("Unknown field {:?}.", "é".repeat(1_000_000)));
        assert!(long.msg.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", long.msg.len());
        assert!(long.msg.starts_with("Unknown field \"éé") && long.msg.ends_with('…'));
        assert!(long.at("prospects[0]").body().len() < 2 * MAX_MESSAGE);
        assert_eq!(ApiError::wrong_param("short").msg, "short");
    }
}

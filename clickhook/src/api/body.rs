//! Request bodies: read whole within `--max-body-bytes` and a share of `--max-body-memory`,
//! and JSON parsed with errors in the envelope that say where in the body they are.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::{ApiError, ApiResult};

/// A JSON body, with or without a Content-Type header (some Woodpecker clients omit it).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        let body = read_body(req, st).await?;
        let parsed = parse_json(&body)?;
        // serde also reads a struct from an array of its fields in order: every body here is an
        // object, and anything else is refused.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::wrong_param("The request body must be a JSON object."));
        }
        Ok(JsonBody(parsed))
    }
}

/// A request body read whole, holding its share of `--max-body-memory` while it lives.
pub struct BodyBytes {
    pub bytes: bytes::Bytes,
    _memory: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for BodyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// How long a request waits for memory to read its body in, before it gets 503.
const BODY_MEMORY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a body whole, at most `--max-body-bytes`. It first takes as much of the shared body
/// memory as it may need (its Content-Length, else the limit): many large bodies at once wait
/// for each other instead of taking the process's memory.
pub async fn read_body(req: Request, st: &AppState) -> ApiResult<BodyBytes> {
    let limit = st.settings.max_body_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let kib = u32::try_from(declared.unwrap_or(limit).div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let kib = kib.min(u32::try_from(st.bodies_capacity()).unwrap_or(u32::MAX));
    let memory = tokio::time::timeout(BODY_MEMORY_WAIT, st.bodies.clone().acquire_many_owned(kib))
        .await
        .map_err(|_| ApiError::busy("Too many large requests are being read; try again."))?
        .map_err(|_| ApiError::unavailable())?;
    let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| ApiError::too_large(limit))?;
    Ok(BodyBytes { bytes, _memory: memory })
}

impl AppState {
    /// KiB of body memory in all.
    fn bodies_capacity(&self) -> usize {
        (self.settings.max_body_memory / 1024).max(1)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::wrong_param("The request body is empty; expected JSON."));
    }
    if holds_escaped_nul(bytes) {
        return Err(nul_refused());
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::wrong_param(format!("Malformed JSON: {inner}."));
        }
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        let err = if msg.starts_with("missing field") {
            ApiError::new(StatusCode::BAD_REQUEST, "E_REQUIRED_ELEMENT", msg)
        } else {
            ApiError::wrong_param(msg)
        };
        if path == "." {
            err
        } else {
            err.at(path)
        }
    })
}

/// Whether JSON text holds a NUL character. JSON can carry one only as the escape `\u0000`
/// (a raw control character is malformed), so escapes are read in order, and `\\u0000` (an
/// escaped backslash, then text) is not one.
fn holds_escaped_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = json.get(i..).and_then(|rest| rest.iter().position(|b| *b == b'\\')) {
        let escape = i + at + 1;
        if json.get(escape) == Some(&b'u') && json.get(escape + 1..escape + 5) == Some(&b"0000"[..]) {
            return true;
        }
        i = escape + 1;
    }
    false
}

/// Text with a NUL character is refused at the edge: one store cannot keep it, and the other
/// would keep what most readers cut short.
pub fn nul_refused() -> ApiError {
    ApiError::wrong_param("The request holds a NUL character (\\u0000); clickhook does not store text with NUL in it.")
}

#[cfg(test)]
mod tests {
    use super::holds_escaped_nul;

    #[test]
    fn escaped_nul_is_found_and_nothing_else() {
        assert!(holds_escaped_nul(br#"{"name": "a\u0000b"}"#));
        assert!(holds_escaped_nul(br#"["\\\u0000"]"#), "an escaped backslash, then the NUL escape");
        assert!(!holds_escaped_nul(br#"{"name": "a\\u0000b"}"#), "an escaped backslash, then text");
        assert!(!holds_escaped_nul(br#"{"name": "\u0001 \n \\"}"#));
        assert!(!holds_escaped_nul(b"\\"));
    }
}

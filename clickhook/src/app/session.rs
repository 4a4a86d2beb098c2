//! Signing in to the dashboard, and what every request of a signed-in person carries.
//!
//! A session is opened with an API key (the sign-in page) or a one-time login link
//! (`clickhook account login-link ACCOUNT_ID`, valid for [`LINK_TTL`]). Its token lives only in
//! an HttpOnly, SameSite=Strict cookie scoped to `/app` (Secure when `--public-url` is https);
//! the store keeps its hash. Every form carries the session's CSRF token, checked by [`Posted`];
//! the sign-in forms, before there is a session, carry a token that must equal a cookie of their
//! own (double submit). Revoking the key a session was opened with ends the session.

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::html::{self, PageError};
use crate::api::auth::hash_key;
use crate::api::{read_body, AppState};
use crate::domain::{now_millis, Account, Millis};
use crate::store::{DynStore, NewSession, SignInWith, StoreResult};

pub const SESSION_COOKIE: &str = "clickhook_session";
/// The sign-in forms' double-submit token.
const SIGN_IN_COOKIE: &str = "clickhook_sign_in";
/// How long a session lasts; signing in again starts a new one.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a login link may wait to be used.
pub const LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// A random token: 32 alphanumerics (190 bits).
fn token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Stores a one-time login link for the account and returns it: `{public_url}/app/login/{token}`.
pub async fn login_link(store: &DynStore, account_id: i64, public_url: &str) -> StoreResult<String> {
    let t = token();
    store.add_login_link(account_id, hash_key(&t), now_millis() + LINK_TTL.as_millis() as Millis).await?;
    Ok(format!("{}/app/login/{t}", public_url.trim_end_matches('/')))
}

/// The signed-in account of a request.
pub struct Session {
    pub account: Account,
    pub csrf: String,
    token_hash: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, PageError> {
        let sign_in = || PageError::SignIn { htmx: html::is_htmx(&parts.headers) };
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(sign_in)?;
        let token_hash = hash_key(&token);
        let found = st.store.session(&token_hash, now_millis()).await.map_err(PageError::from_store)?;
        let s = found.ok_or_else(sign_in)?;
        Ok(Session { account: s.account, csrf: s.csrf, token_hash })
    }
}

/// A form posted by a signed-in person: its CSRF token checked, then parsed into `T`.
pub struct Posted<T> {
    pub session: Session,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, st).await?;
        let htmx = html::is_htmx(&parts.headers);
        cross_site_refused(&parts.headers)?;
        let bytes = read_body(Request::from_parts(parts, body), st).await.map_err(|e| PageError::Failed(e, htmx))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes.bytes).map_err(|_| bad_form(htmx))?;
        if fields.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(PageError::Failed(crate::api::nul_refused(), htmx));
        }
        let given = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !same(given, &session.csrf) {
            return Err(PageError::Forbidden("The form's security token is missing or stale; reload the page."));
        }
        let form = serde_urlencoded::from_bytes(&bytes.bytes).map_err(|e| {
            PageError::Failed(crate::error::ApiError::wrong_param(format!("The form is not valid: {e}.")), htmx)
        })?;
        Ok(Posted { session, form })
    }
}

fn bad_form(htmx: bool) -> PageError {
    PageError::Failed(crate::error::ApiError::wrong_param("The form is not valid."), htmx)
}

/// Browsers say where a request comes from; one from another site is refused whatever it carries.
fn cross_site_refused(headers: &HeaderMap) -> Result<(), PageError> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site") => Err(PageError::Forbidden("Forms are accepted only from clickhook's own pages.")),
        _ => Ok(()),
    }
}

/// Equal in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of a cookie.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// A cookie for `/app`: HttpOnly, SameSite=Strict, Secure when served over https.
fn set_cookie(st: &AppState, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    let secure = if st.settings.public_url.starts_with("https://") { "; Secure" } else { "" };
    let c = format!("{name}={value}; Path=/app; HttpOnly; SameSite=Strict; Max-Age={}{secure}", max_age.as_secs());
    HeaderValue::from_str(&c).expect("cookie text is ASCII")
}

/// The sign-in page.
pub async fn sign_in_page(State(st): State<AppState>) -> Response {
    sign_in_form(&st, StatusCode::OK, None)
}

fn sign_in_form(st: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let t = token();
    let body = html! {
        main.narrow {
            h1 { "Sign in to clickhook" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/app/login" {
                input type="hidden" name="csrf" value=(t);
                label for="key" { "API key" }
                input #key type="password" name="key" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.muted { "Or ask an operator for a one-time link: " code { "clickhook account login-link ACCOUNT_ID" } }
        }
    };
    let mut res = (status, html::bare("Sign in", body)).into_response();
    res.headers_mut().append(header::SET_COOKIE, set_cookie(st, SIGN_IN_COOKIE, &t, LINK_TTL));
    res
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
}

/// Checks the sign-in forms' double submit.
fn sign_in_token_ok(headers: &HeaderMap, given: &str) -> bool {
    cross_site_refused(headers).is_ok() && cookie(headers, SIGN_IN_COOKIE).is_some_and(|c| same(&c, given))
}

async fn read_form<T: DeserializeOwned>(req: Request, st: &AppState) -> Result<(HeaderMap, T), PageError> {
    let (parts, body) = req.into_parts();
    let headers = parts.headers.clone();
    let bytes = read_body(Request::from_parts(parts, body), st).await.map_err(|e| PageError::Failed(e, false))?;
    Ok((headers, serde_urlencoded::from_bytes(&bytes.bytes).map_err(|_| bad_form(false))?))
}

pub async fn sign_in(State(st): State<AppState>, req: Request) -> Result<Response, PageError> {
    let (headers, f): (_, SignInForm) = read_form(req, &st).await?;
    if !sign_in_token_ok(&headers, &f.csrf) {
        return Ok(sign_in_form(&st, StatusCode::FORBIDDEN, Some("The sign-in form expired; try again.")));
    }
    let key = f.key.trim();
    if key.is_empty() {
        return Ok(sign_in_form(&st, StatusCode::BAD_REQUEST, Some("Enter an API key.")));
    }
    match open_session(&st, SignInWith::Key(hash_key(key))).await? {
        Some(res) => Ok(res),
        None => Ok(sign_in_form(&st, StatusCode::UNAUTHORIZED, Some("That key is unknown or revoked."))),
    }
}

/// A login link's page: a button, so that a link scanner fetching the link does not use it up.
pub async fn link_page(State(st): State<AppState>, Path(link): Path<String>) -> Response {
    let t = token();
    let body = html! {
        main.narrow {
            h1 { "Sign in to clickhook" }
            form method="post" action={ "/app/login/" (link) } {
                input type="hidden" name="csrf" value=(t);
                button type="submit" { "Sign in with this link" }
            }
            p.muted { "The link works once, for " (LINK_TTL.as_secs() / 60) " minutes after it was made." }
        }
    };
    let mut res = html::bare("Sign in", body).into_response();
    res.headers_mut().append(header::SET_COOKIE, set_cookie(&st, SIGN_IN_COOKIE, &t, LINK_TTL));
    res
}

pub async fn sign_in_with_link(
    State(st): State<AppState>,
    Path(link): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let (headers, f): (_, SignInForm) = read_form(req, &st).await?;
    if !sign_in_token_ok(&headers, &f.csrf) {
        return Ok(sign_in_form(&st, StatusCode::FORBIDDEN, Some("The sign-in form expired; try again.")));
    }
    match open_session(&st, SignInWith::Link(hash_key(&link))).await? {
        Some(res) => Ok(res),
        None => {
            Ok(sign_in_form(&st, StatusCode::UNAUTHORIZED, Some("That link was used, has expired, or is unknown.")))
        }
    }
}

/// Opens a session and answers with its cookie and the way in; `None` when `with` proves nothing.
async fn open_session(st: &AppState, with: SignInWith) -> Result<Option<Response>, PageError> {
    let t = token();
    let now = now_millis();
    let s = NewSession {
        token_hash: hash_key(&t),
        csrf: token(),
        now,
        expires_at: now + SESSION_TTL.as_millis() as Millis,
    };
    if st.store.sign_in(with, s).await.map_err(PageError::from_store)?.is_none() {
        return Ok(None);
    }
    let mut res = html::see_other("/app/campaigns");
    let h = res.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(st, SESSION_COOKIE, &t, SESSION_TTL));
    h.append(header::SET_COOKIE, set_cookie(st, SIGN_IN_COOKIE, "", Duration::ZERO));
    Ok(Some(res))
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn sign_out(State(st): State<AppState>, p: Posted<Empty>) -> Result<Response, PageError> {
    st.store.end_session(&p.session.token_hash).await.map_err(PageError::from_store)?;
    let mut res = html::see_other("/app/login");
    res.headers_mut().append(header::SET_COOKIE, set_cookie(&st, SESSION_COOKIE, "", Duration::ZERO));
    Ok(res)
}

/// The hidden field every form of a session carries.
pub fn csrf_field(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; clickhook_session_x=2; clickhook_session=abc".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        h.insert(header::COOKIE, "clickhook_session=".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}

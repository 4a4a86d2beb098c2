//! The dashboard, served under `/app`: server-rendered HTML (maud), a little htmx, charts drawn
//! as SVG on the server, every asset inside the binary. A page per section, a file per page:
//!
//! - [`campaigns`]: every campaign's numbers with a trend; one campaign over a chosen range.
//! - [`clicks`]: the latest clicks, filterable, with new ones pushed as they are judged (SSE).
//! - [`webhooks`]: subscriptions' health and actions, the delivery log with every attempt.
//! - [`settings`]: time zone, click filter, snippet labels, API keys.
//! - [`session`]: signing in (API key or one-time link), the session cookie, CSRF.
//! - [`page`]: the signed-in shell, number and time formats; [`chart`]: the SVG charts.
//! - [`html`]: documents, fragments, redirects and page errors, below everything else here.
//!
//! Every response carries a Content-Security-Policy that allows only clickhook's own scripts
//! and styles (no inline script, no eval), and may not be framed. Numbers come from the same
//! functions as the API's (`api::stats::stats`), so the page and `/rest/v2/stats` agree.

pub mod campaigns;
pub mod chart;
pub mod clicks;
pub mod html;
pub mod page;
pub mod session;
pub mod settings;
pub mod webhooks;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/app", get(|| async { html::see_other("/app/campaigns") }))
        .route("/app/", get(|| async { html::see_other("/app/campaigns") }))
        .route("/app/login", get(session::sign_in_page).post(session::sign_in))
        .route("/app/login/{link}", get(session::link_page).post(session::sign_in_with_link))
        .route("/app/logout", post(session::sign_out))
        .route("/app/campaigns", get(campaigns::list))
        .route("/app/campaigns/{id}", get(campaigns::show))
        .route("/app/clicks", get(clicks::list))
        .route("/app/clicks/stream", get(clicks::stream))
        .route("/app/webhooks", get(webhooks::show))
        .route("/app/webhooks/{id}/pause", post(webhooks::pause))
        .route("/app/webhooks/{id}/resume", post(webhooks::resume))
        .route("/app/webhooks/{id}/test", post(webhooks::test))
        .route("/app/webhooks/{id}/replay_failed", post(webhooks::replay_failed))
        .route("/app/webhooks/{id}/rotate_secret", post(webhooks::rotate_secret))
        .route("/app/deliveries/{id}/replay", post(webhooks::replay))
        .route("/app/settings", get(settings::show).post(settings::save))
        .route("/app/settings/keys", post(settings::create_key))
        .route("/app/settings/keys/{prefix}/revoke", post(settings::revoke_key))
        .route("/app/assets/{name}", get(asset))
        .layer(axum::middleware::from_fn(guarded))
        .with_state(state)
}

/// The headers every dashboard response carries.
async fn guarded(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/app/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !is_asset {
        // Pages hold an account's data: never kept by a shared cache, nor by the browser.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Assets, compiled in: htmx (vendored, `assets/app/htmx/SOURCE`), the stylesheet, the
/// one script of clickhook's own.
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, media): (&'static [u8], &str) = match name.as_str() {
        "app.css" => (include_bytes!("../../assets/app/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_bytes!("../../assets/app/app.js"), "text/javascript; charset=utf-8"),
        "htmx.min.js" => (include_bytes!("../../assets/app/htmx/htmx.min.js"), "text/javascript; charset=utf-8"),
        _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(media).expect("a media type"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    res
}

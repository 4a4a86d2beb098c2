//! The HTTP API: one module per resource, each exposing `router()`.
//!
//! Routes are declared through [`Api`], which records every operation as it adds it to the
//! axum router, with the query parameters it takes and the type of body it reads, so
//! `/openapi.json` ([`openapi`]) is generated from the very table that routes requests.
//! Bodies are read by [`JsonBody`] (no Content-Type needed, size-limited, errors in the
//! v1 envelope); the caller's account comes from the [`auth::Auth`] extractor.

pub mod account;
pub mod auth;
pub mod body;
pub mod campaigns;
pub mod clicks;
pub mod deliveries;
pub mod docs;
pub mod emails;
pub mod openapi;
pub mod prospects;
pub mod reply;
pub mod stats;
pub mod tracking_domains;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::{header, request::Parts, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::click::token::LinkKeys;
use crate::click::ClickState;
use crate::config::Settings;
use crate::error::{ApiError, ApiResult};
use crate::store::DynStore;

/// What every handler shares. One `Arc` around it all: axum clones the state for every
/// request. The click path takes only its own part ([`ClickState`], by `FromRef`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: DynStore,
    pub settings: Arc<Settings>,
    pub link_keys: Arc<LinkKeys>,
    pub auth: Arc<auth::AuthCache>,
    /// KiB of request bodies being read, at most `--max-body-memory` together.
    pub bodies: Arc<tokio::sync::Semaphore>,
    pub click: ClickState,
    pub domains: Arc<crate::tracking_domains::DomainChecker>,
    /// Becomes true when the server starts to stop: long answers (the dashboard's event
    /// streams) end, so that the drain does not wait for them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Judged clicks this node's settler holds in memory until their release (`/metrics`).
    pub held_clicks: Arc<std::sync::atomic::AtomicUsize>,
}

impl FromRef<AppState> for ClickState {
    fn from_ref(st: &AppState) -> ClickState {
        st.click.clone()
    }
}

pub use body::{nul_refused, parse_json, read_body, BodyBytes, JsonBody};
pub use openapi::{Kind, Param};
pub use reply::{list_response, ok_status, woodpecker_list_response, OkStatus};

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Op {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// False for the tracked-link, health and metrics endpoints.
    pub authenticated: bool,
    /// The query parameters it takes; any other is refused with 400.
    pub query: &'static [Param],
    /// What its request body is, if it reads one.
    pub body: Option<openapi::Body>,
    /// The media type of what it answers when it succeeds.
    pub produces: &'static str,
    /// The statuses it answers with no body, and when.
    pub empty: &'static [(u16, &'static str)],
    /// What it answers when it succeeds, if declared: the statuses and the type it serializes.
    pub returns: Option<openapi::Returns>,
    /// The errors it answers besides those every operation of its kind can (400, 401, 404 for
    /// an id in the path, 413 for a body), and when.
    pub errors: &'static [(u16, &'static str)],
}

/// An axum router that remembers what it routes.
pub struct Api {
    router: Router<AppState>,
    ops: Vec<Op>,
    tag: &'static str,
}

impl Api {
    pub fn new(tag: &'static str) -> Self {
        Api { router: Router::new(), ops: Vec::new(), tag }
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, summary: &'static str, auth: bool, h: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = self.router.route(path, on(filter, h));
        self.ops.push(Op {
            method,
            path,
            summary,
            tag: self.tag,
            authenticated: auth,
            query: &[],
            body: None,
            produces: "application/json",
            empty: &[],
            returns: None,
            errors: &[],
        });
        self
    }

    /// Declares the query parameters the operation added last takes.
    pub fn query(mut self, params: &'static [Param]) -> Self {
        self.last().query = params;
        self
    }

    /// Declares the JSON body the operation added last reads: the type its handler parses.
    pub fn body<T: utoipa::ToSchema>(mut self) -> Self {
        self.last().body = Some(openapi::Body::Json(openapi::body_schema::<T>));
        self
    }

    /// Declares that the operation added last reads a text body of this media type.
    pub fn text_body(mut self, media: &'static str) -> Self {
        self.last().body = Some(openapi::Body::Text(media));
        self
    }

    /// Declares what the operation added last answers when it succeeds: `T`, the very type its
    /// handler serializes, with one of these statuses.
    pub fn returns<T: utoipa::ToSchema>(mut self, statuses: &'static [u16]) -> Self {
        self.last().returns = Some(openapi::Returns { statuses, list: false, schema: openapi::body_schema::<T> });
        self
    }

    /// The same for a list of `T` (200, with `X-Total-Count`).
    pub fn returns_list<T: utoipa::ToSchema>(mut self) -> Self {
        self.last().returns =
            Some(openapi::Returns { statuses: &[200], list: true, schema: openapi::body_schema::<T> });
        self
    }

    /// Declares the media type the operation added last answers with when it succeeds.
    pub fn produces(mut self, media: &'static str) -> Self {
        self.last().produces = media;
        self
    }

    /// Declares the statuses the operation added last answers with no body.
    pub fn empty(mut self, statuses: &'static [(u16, &'static str)]) -> Self {
        self.last().empty = statuses;
        self
    }

    /// Declares errors of the operation added last that its kind does not imply.
    pub fn errors(mut self, errors: &'static [(u16, &'static str)]) -> Self {
        self.last().errors = errors;
        self
    }

    fn last(&mut self) -> &mut Op {
        self.ops.last_mut().expect("an operation to declare")
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, summary: &'static str, h: H) -> Self {
        self.add(Method::GET, path, summary, true, h)
    }
    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, summary: &'static str, h: H) -> Self {
        self.add(Method::POST, path, summary, true, h)
    }
    pub fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, summary: &'static str, h: H) -> Self {
        self.add(Method::PATCH, path, summary, true, h)
    }
    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, summary: &'static str, h: H) -> Self {
        self.add(Method::DELETE, path, summary, true, h)
    }
    pub fn public<H: Handler<T, AppState>, T: 'static>(
        self,
        method: Method,
        path: &'static str,
        summary: &'static str,
        h: H,
    ) -> Self {
        self.add(method, path, summary, false, h)
    }

    pub fn merge(mut self, other: Api) -> Self {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// Every route of the service, documented.
pub fn api() -> Api {
    tracked_links().merge(admin()).merge(service())
}

/// What operators watch, and the API reference: on the public address, or on `--admin-listen`
/// alone.
fn admin() -> Api {
    Api::new("operations")
        .public(Method::GET, "/healthz", "Liveness and store reachability.", healthz)
        .returns::<Health>(&[200])
        .public(Method::GET, "/metrics", "Prometheus metrics.", metrics)
        .produces(crate::metrics::CONTENT_TYPE)
        .merge(docs::router())
        .merge(tracking_domains::tls_ask())
}

/// The tracked links: nothing stands between a click and its handler.
fn tracked_links() -> Api {
    Api::new("operations")
        .public(
            Method::GET,
            "/c/{token}",
            "Follow a tracked link: records the click, then redirects (302).",
            crate::click::follow,
        )
        .empty(LINK_ANSWERS)
        .errors(LINK_ERRORS)
        .public(
            Method::HEAD,
            "/c/{token}",
            "HEAD of a tracked link; recorded, and judged a bot's.",
            crate::click::follow,
        )
        .empty(LINK_ANSWERS)
        .errors(LINK_ERRORS)
}

const LINK_ANSWERS: &[(u16, &str)] = &[(302, "To the link's target, in Location; the click is stored.")];
const LINK_ERRORS: &[(u16, &str)] = &[(503, "The store cannot take the click now; Retry-After says when to retry.")];

/// Everything but the tracked links.
fn service() -> Api {
    Api::new("operations")
        .public(Method::GET, "/openapi.json", "This document.", openapi_json)
        .returns::<openapi::Document>(&[200])
        .merge(prospects::router())
        .merge(campaigns::router())
        .merge(emails::router())
        .merge(account::router())
        .merge(webhooks::router())
        .merge(clicks::router())
        .merge(deliveries::router())
        .merge(stats::router())
        .merge(tracking_domains::router())
}

/// The public router: tracked links, the API, and unless `--admin-listen` moves them, the
/// operators' routes.
pub fn router(state: AppState, with_admin: bool) -> Router {
    let service = if with_admin { admin().merge(service()) } else { service() };
    let ops: Arc<Vec<Op>> = Arc::new(service.ops.clone());
    let service = service
        .router
        .layer(axum::middleware::from_fn(move |req: Request, next| per_operation(ops.clone(), req, next)));
    tracked_links()
        .router
        .merge(service)
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Around every API request, once its operation is found: query parameters it does not take
/// are refused by name (a misspelt filter must not quietly list everything), and one access-log
/// line is written: method, route, status, latency and account; never a key, a token or an
/// address. Tracked links are counted in the metrics instead (`/c/` is not here).
async fn per_operation(ops: Arc<Vec<Op>>, mut req: Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let op = ops.iter().find(|op| op.method == method && template_matches(op.path, req.uri().path()));
    let account = auth::AuthenticatedAs::default();
    req.extensions_mut().insert(account.clone());
    let res = match op.map(|op| undeclared_query(op, req.uri().query().unwrap_or_default())) {
        Some(Some(refused)) => refused.into_response(),
        _ => next.run(req).await,
    };
    tracing::info!(
        target: "clickhook::access",
        %method,
        route = op.map_or("(no route)", |op| op.path),
        status = res.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        account = account.0.load(std::sync::atomic::Ordering::Relaxed),
        "request"
    );
    res
}

/// The error for the query parameters `op` does not take, if any.
fn undeclared_query(op: &Op, query: &str) -> Option<ApiError> {
    let unknown: Vec<String> = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !op.query.iter().any(|p| p.name == k))
        .collect();
    if unknown.is_empty() {
        return None;
    }
    let takes = match op.query {
        [] => "this endpoint takes none".to_string(),
        params => format!("this endpoint takes {}", params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")),
    };
    Some(ApiError::wrong_param(format!("Unknown query parameter {}; {takes}.", unknown.join(", "))))
}

/// Whether a route template (`/rest/v2/campaigns/{id}`) matches a path.
fn template_matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b || (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) => {}
            _ => return false,
        }
    }
}

/// The operators' routes alone, for `--admin-listen`.
pub fn admin_router(state: AppState) -> Router {
    admin().router.fallback(fallback).method_not_allowed_fallback(method_not_allowed).with_state(state)
}

async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "E_URL_NOT_FOUND", "No such endpoint.")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "E_METHOD_NOT_ALLOWED", format!("{method} is not allowed here."))
}

/// 200 while the store answers and can write; otherwise 503 with the reason.
/// The answer of `/healthz` while the store answers and can write (else 503 in the envelope).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    /// The store this node runs on.
    #[schema(example = "sqlite")]
    store: &'static str,
}

async fn healthz(State(st): State<AppState>) -> Response {
    let checked = match st.store.outbox_depth().await {
        Ok(_) => st.store.writable().await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(()) => axum::Json(Health { status: "ok", store: st.store.backend() }).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let depth = st.store.outbox_depth().await.unwrap_or_default();
    let backlog = st.store.backlog().await.unwrap_or_default();
    let now = crate::domain::now_millis();
    let oldest = backlog.iter().filter_map(|b| b.oldest_at).min().map(|t| (now - t).max(0) / 1000).unwrap_or(0);
    let backlog: Vec<(i64, i64)> = backlog.iter().map(|b| (b.subscription_id, b.events)).collect();
    let body = crate::metrics::render(&crate::metrics::StoreReading {
        backend: st.store.backend(),
        clicks_pending: depth.clicks_pending,
        clicks_held: st.held_clicks.load(std::sync::atomic::Ordering::Relaxed) as i64,
        oldest_undelivered_seconds: oldest,
        backlog: &backlog,
    });
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

async fn openapi_json() -> Response {
    axum::Json(openapi::document(api().ops())).into_response()
}

/// Query parameters as strings; handlers parse what they read, with envelope errors.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
            .map_err(|e| ApiError::wrong_param(format!("Malformed query string: {e}.")))?;
        if pairs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err(nul_refused());
        }
        let mut params = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            if params.contains_key(&k) {
                // Which one would count is a guess: lists are comma-separated (`id=1,2`).
                return Err(ApiError::wrong_param(format!("{k} is given more than once; give a list as {k}=a,b.")));
            }
            params.insert(k, v);
        }
        Ok(Params(params))
    }
}

impl Params {
    pub fn int(&self, name: &str) -> ApiResult<Option<i64>> {
        self.0
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.trim().parse().map_err(|_| ApiError::wrong_param(format!("{name} must be an integer, not {v:?}.")))
            })
            .transpose()
    }
    pub fn ids(&self, name: &str) -> ApiResult<Vec<i64>> {
        let Some(v) = self.0.get(name) else {
            return Ok(Vec::new());
        };
        v.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| ApiError::wrong_param(format!("{name} must be a list of integers, not {v:?}.")))
            })
            .collect()
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|s| !s.is_empty())
    }
    /// Pagination: `page` from 1, `per_page` up to `max` (default 100). Returns (offset, limit).
    pub fn page(&self, max: i64) -> ApiResult<(i64, i64)> {
        let page = self.int("page")?.unwrap_or(1);
        let per_page = self.int("per_page")?.unwrap_or(100);
        if page < 1 {
            return Err(ApiError::wrong_param("page starts at 1."));
        }
        if !(1..=max).contains(&per_page) {
            return Err(ApiError::wrong_param(format!("per_page must be between 1 and {max}.")));
        }
        Ok(((page - 1).saturating_mul(per_page), per_page))
    }
    /// `since` as an ISO 8601 time or Unix milliseconds.
    pub fn time(&self, name: &str) -> ApiResult<Option<i64>> {
        let Some(v) = self.str(name) else {
            return Ok(None);
        };
        parse_time(v).map(Some).ok_or_else(|| {
            ApiError::wrong_param(format!(
                "{name} must be an ISO 8601 time (2025-03-21T20:47:47+0100) or Unix milliseconds."
            ))
        })
    }
}

/// Unix milliseconds from an ISO 8601 time (with or without a colon in the offset) or from digits.
pub fn parse_time(v: &str) -> Option<i64> {
    if let Ok(ms) = v.parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .or_else(|_| chrono::DateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%z"))
        .map(|t| t.timestamp_millis())
        .ok()
}

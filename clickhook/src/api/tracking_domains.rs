//! Each account's own tracking domains, and `/tls/ask` for the reverse proxy's on-demand TLS.
//!
//! A domain is added pending and checked in DNS at once; it is followed once it resolves to
//! `--public-url`'s host (`domain::tracking_domain`). The node that changes a domain reads the
//! verified ones again before it answers; the others within `click::hosts::HOSTS_POLL`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::campaigns::path_id;
use super::{list_response, Api, AppState, JsonBody, Kind, Param, Params};
use crate::domain::tracking_domain::{
    record_to_create, DomainAdded, DomainName, DomainStatus, Target, TrackingDomain, MAX_DOMAINS_PER_ACCOUNT,
};
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;

pub fn router() -> Api {
    Api::new("tracking domains")
        .post(
            "/rest/v2/tracking_domains",
            "Add a tracking domain (checked in DNS at once; links use it once verified).",
            add,
        )
        .body::<AddBody>()
        .returns::<TrackingDomainView>(&[201])
        .errors(&[(409, "The domain is taken, or the account has as many as it may.")])
        .get("/rest/v2/tracking_domains", "The account's tracking domains with their verification status.", list)
        .returns_list::<TrackingDomainView>()
        .get("/rest/v2/tracking_domains/{id}", "One tracking domain.", get_one)
        .returns::<TrackingDomainView>(&[200])
        .patch("/rest/v2/tracking_domains/{id}", "Make a domain the account's default for new links.", patch)
        .body::<PatchBody>()
        .returns::<TrackingDomainView>(&[200])
        .post("/rest/v2/tracking_domains/{id}/verify", "Check a domain's DNS now.", verify)
        .returns::<TrackingDomainView>(&[200])
        .delete(
            "/rest/v2/tracking_domains/{id}",
            "Remove a tracking domain; its links stop being followed on it.",
            delete,
        )
        .empty(&[(204, "Removed.")])
}

/// What the reverse proxy asks before it gets a certificate for a host (Caddy's on-demand TLS).
pub fn tls_ask() -> Api {
    Api::new("operations")
        .public(
            axum::http::Method::GET,
            "/tls/ask",
            "200 when ?domain= is a verified tracking domain (on-demand TLS), else 404.",
            ask,
        )
        .query(const { &[Param::new("domain", Kind::Text, "The host a certificate is asked for.")] })
        .returns::<Asked>(&[200])
        .errors(&[(404, "Not a verified tracking domain: no certificate.")])
}

/// A tracking domain with its verification status and the DNS record it needs.
#[derive(Serialize, utoipa::ToSchema)]
struct TrackingDomainView {
    id: i64,
    #[schema(example = "t.bachmanity.com")]
    domain: String,
    #[schema(value_type = String, example = "verified")]
    status: DomainStatus,
    /// New links are issued on it while it is verified.
    default: bool,
    created: String,
    checked: Option<String>,
    verified: Option<String>,
    /// What the last check that did not verify found.
    error: Option<String>,
    dns: DnsRecord,
}

/// The record to create at the domain's DNS provider.
#[derive(Serialize, utoipa::ToSchema)]
struct DnsRecord {
    #[serde(rename = "type")]
    #[schema(example = "CNAME")]
    kind: &'static str,
    name: String,
    value: String,
}

impl TrackingDomainView {
    fn of(d: &TrackingDomain, target: &Target, tz: &str) -> Self {
        let (kind, value) = record_to_create(target);
        TrackingDomainView {
            id: d.id,
            domain: d.domain.as_str().to_string(),
            status: d.status,
            default: d.is_default,
            created: format_time(d.created_at, tz),
            checked: d.checked_at.map(|t| format_time(t, tz)),
            verified: d.verified_at.map(|t| format_time(t, tz)),
            error: d.last_error.clone(),
            dns: DnsRecord { kind, name: d.domain.as_str().to_string(), value: value.to_string() },
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddBody {
    #[serde(default)]
    domain: Option<String>,
}

async fn add(State(st): State<AppState>, Auth(account): Auth, JsonBody(b): JsonBody<AddBody>) -> ApiResult<Response> {
    let domain = DomainName::parse(b.domain.as_deref().unwrap_or_default())?;
    if st.domains.is_public_host(&domain) {
        return Err(ApiError::wrong_param(format!(
            "{domain} is clickhook's own host (--public-url); links are followed on it already."
        )));
    }
    let added = match st.store.add_tracking_domain(account.id, domain.clone()).await? {
        DomainAdded::Created(d) => d,
        DomainAdded::Taken => {
            return Err(ApiError::conflict("E_WRONG_PARAM", format!("{domain} is already a tracking domain.")))
        }
        DomainAdded::TooMany => {
            return Err(ApiError::conflict(
                "E_WRONG_PARAM",
                format!("An account has at most {MAX_DOMAINS_PER_ACCOUNT} tracking domains; delete one first."),
            ))
        }
    };
    let checked = st.domains.check(added).await?;
    st.click.hosts.refresh(&st.store).await?;
    let target = st.domains.target().await;
    Ok((StatusCode::CREATED, Json(TrackingDomainView::of(&checked, &target, &account.timezone))).into_response())
}

async fn list(State(st): State<AppState>, Auth(account): Auth) -> ApiResult<Response> {
    let target = st.domains.target().await;
    let domains = st.store.tracking_domains(account.id).await?;
    let items: Vec<TrackingDomainView> =
        domains.iter().map(|d| TrackingDomainView::of(d, &target, &account.timezone)).collect();
    Ok(list_response(items.len() as i64, items))
}

async fn get_one(State(st): State<AppState>, Auth(account): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let d = st.store.tracking_domain(account.id, path_id(&id, "tracking domain")?).await?;
    Ok(Json(TrackingDomainView::of(&d, &st.domains.target().await, &account.timezone)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    default: bool,
}

async fn patch(
    State(st): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<PatchBody>,
) -> ApiResult<Response> {
    let id = path_id(&id, "tracking domain")?;
    if !b.default {
        return Err(ApiError::wrong_param(
            "default can only be set to true; make another domain the default to change it.",
        ));
    }
    let d = st.store.set_default_domain(account.id, id).await?;
    Ok(Json(TrackingDomainView::of(&d, &st.domains.target().await, &account.timezone)).into_response())
}

async fn verify(State(st): State<AppState>, Auth(account): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let d = st.store.tracking_domain(account.id, path_id(&id, "tracking domain")?).await?;
    let checked = st.domains.check(d).await?;
    st.click.hosts.refresh(&st.store).await?;
    Ok(Json(TrackingDomainView::of(&checked, &st.domains.target().await, &account.timezone)).into_response())
}

async fn delete(State(st): State<AppState>, Auth(account): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    st.store.delete_tracking_domain(account.id, path_id(&id, "tracking domain")?).await?;
    st.click.hosts.refresh(&st.store).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ask(State(st): State<AppState>, params: Params) -> ApiResult<Response> {
    let raw = params.str("domain").ok_or_else(|| ApiError::required("domain"))?;
    let domain = DomainName::parse(raw)?;
    if !st.click.hosts.is_verified(domain.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "E_RECORD_NOT_FOUND",
            format!("{domain} is not a verified tracking domain."),
        ));
    }
    Ok(Json(Asked { domain: domain.as_str().to_string(), status: "verified" }).into_response())
}

/// `/tls/ask`'s yes: the domain may have a certificate.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"domain": "t.bachmanity.com", "status": "verified"}))]
struct Asked {
    domain: String,
    #[schema(pattern = "^verified$")]
    status: &'static str,
}

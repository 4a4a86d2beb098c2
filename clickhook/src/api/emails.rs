//! Recording a sent email and turning its links into tracked links.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::campaigns::path_id;
use super::{parse_time, Api, AppState, JsonBody};
use crate::click::rewrite;
use crate::click::token::LinkRef;
use crate::domain::now_millis;
use crate::domain::tracking_domain::link_host;
use crate::domain::{EmailAddress, StepType};
use crate::error::{ApiError, ApiResult};
use crate::store::{NewEmail, NewLink, ProspectRef};

pub fn router() -> Api {
    Api::new("emails")
        .post(
            "/rest/v2/campaigns/{id}/emails",
            "Record an email sent to an enrolled prospect; returns its bodies with tracked links.",
            send,
        )
        .body::<SendBody>()
        .returns::<SentEmail>(&[201, 200])
}

/// A recorded email with its links rewritten (201; 200 when its idempotency key was seen before).
#[derive(Serialize, utoipa::ToSchema)]
struct SentEmail {
    email_id: i64,
    prospect_id: i64,
    /// Woodpecker's email number, `#1` and on.
    email_no: String,
    /// The HTML body with every tracked link rewritten, if one was given.
    html: Option<String>,
    /// The text body with every tracked link rewritten, if one was given.
    text: Option<String>,
    links: Vec<TrackedLink>,
    /// Links found and left as they were, with why.
    untracked: Vec<Untracked>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TrackedLink {
    url: String,
    tracked_url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Untracked {
    url: String,
    reason: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(default)]
    prospect_id: Option<i64>,
    #[serde(default)]
    prospect_email: Option<String>,
    #[serde(default)]
    step: Option<i64>,
    #[serde(default)]
    mailbox: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// When the email went out, if not now (recording history).
    #[serde(default)]
    sent_at: Option<String>,
}

async fn send(
    State(st): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    let campaign_id = path_id(&id, "campaign")?;
    let prospect = match (b.prospect_id, &b.prospect_email) {
        (Some(id), _) => ProspectRef::Id(id),
        (None, Some(e)) => ProspectRef::Email(EmailAddress::parse(e)?),
        (None, None) => return Err(ApiError::required("prospect_id or prospect_email")),
    };
    let step_no = b.step.ok_or_else(|| ApiError::required("step"))?;
    if b.html.is_none() && b.text.is_none() {
        return Err(ApiError::required("html or text"));
    }
    if b.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::wrong_param("idempotency_key must be 1 to 255 bytes."));
    }
    let sent_at = match &b.sent_at {
        Some(t) => parse_time(t).ok_or_else(|| ApiError::wrong_param("sent_at must be an ISO 8601 time."))?,
        None => now_millis(),
    };
    let campaign = st.store.campaign(account.id, campaign_id).await?;
    let step = usize::try_from(step_no - 1).ok().and_then(|i| campaign.steps.get(i)).ok_or_else(|| {
        ApiError::wrong_param(format!(
            "Step {step_no} does not exist; the campaign has {} steps.",
            campaign.steps.len()
        ))
    })?;
    if step.step_type != StepType::Email {
        return Err(ApiError::wrong_param(format!(
            "Step {step_no} is a {} step; only EMAIL steps send emails.",
            step.step_type
        )));
    }

    let html = b.html.as_deref().unwrap_or_default();
    let text = b.text.as_deref().unwrap_or_default();
    let (html_links, text_links) = if step.track_links {
        let html_links =
            rewrite::collect_html(html).map_err(|e| ApiError::wrong_param(format!("Unreadable HTML: {e}.")))?;
        (html_links, rewrite::collect_text(text))
    } else {
        (Vec::new(), Vec::new())
    };
    // Each link found, as the URI its clicks go to, or why it stays untracked.
    let found: Vec<(&String, Result<String, String>)> =
        html_links.iter().chain(&text_links).map(|href| (href, rewrite::destination(href))).collect();
    let honeypot = step.track_links && b.html.is_some() && account.click_filter.honeypot;
    let mut links: Vec<NewLink> = found
        .iter()
        .filter_map(|(_, d)| d.as_ref().ok())
        .map(|url| NewLink { url: url.clone(), honeypot: false })
        .collect();
    // Links go on the account's own domain once it is verified, else on --public-url.
    let base = match link_host(&st.store.tracking_domains(account.id).await?) {
        Some(domain) => format!("https://{domain}"),
        None => st.settings.public_url.clone(),
    };
    if honeypot {
        links.push(NewLink { url: format!("{base}/"), honeypot: true });
    }
    if links.len() > 1000 {
        return Err(ApiError::wrong_param("An email may hold at most 1000 tracked links."));
    }
    let sent = st
        .store
        .record_email(
            account.id,
            NewEmail {
                campaign_id,
                prospect,
                step: step_no,
                mailbox: b.mailbox,
                subject: b.subject.unwrap_or_default(),
                idempotency_key: b.idempotency_key,
                sent_at,
                links,
            },
        )
        .await?;

    let tracked: Vec<String> = (1..=sent.links.len() as i64)
        .map(|link_no| format!("{base}/c/{}", st.link_keys.sign(LinkRef { email_id: sent.id, link_no })))
        .collect();
    // The tracked URL of each link found, in order; none for those left untracked.
    let mut next = tracked.iter();
    let per_link: Vec<Option<String>> =
        found.iter().map(|(_, d)| d.as_ref().ok().and_then(|_| next.next().cloned())).collect();
    let (html_tracked, text_tracked) = per_link.split_at(html_links.len());
    let honeypot_url = sent.links.iter().zip(&tracked).find(|(l, _)| l.honeypot).map(|(_, t)| t.clone());
    let html_out = match &b.html {
        Some(h) => Some(
            rewrite::rewrite_html(h, html_tracked, honeypot_url.as_deref().map(rewrite::honeypot_anchor).as_deref())
                .map_err(|e| ApiError::wrong_param(format!("Unreadable HTML: {e}.")))?,
        ),
        None => None,
    };
    let text_out = b.text.as_deref().map(|t| rewrite::rewrite_text(t, text_tracked));
    let links: Vec<TrackedLink> = sent
        .links
        .iter()
        .zip(&tracked)
        .filter(|(l, _)| !l.honeypot)
        .map(|(l, t)| TrackedLink { url: l.url.clone(), tracked_url: t.clone() })
        .collect();
    let untracked: Vec<Untracked> = found
        .iter()
        .filter_map(|(href, d)| {
            d.as_ref().err().map(|why| Untracked { url: href.to_string(), reason: why.to_string() })
        })
        .collect();
    let status = if sent.replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((
        status,
        Json(SentEmail {
            email_id: sent.id,
            prospect_id: sent.prospect_id,
            email_no: format!("#{}", sent.email_no),
            html: html_out,
            text: text_out,
            links,
            untracked,
        }),
    )
        .into_response())
}

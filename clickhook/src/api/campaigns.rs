//! Campaigns with ordered steps, and the enrollment of a prospect in one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Auth;
use super::{parse_time, woodpecker_list_response, Api, AppState, JsonBody, Kind, Param, Params};
use crate::domain::{Campaign, CampaignPatch, Enrollment, EnrollmentKey, EnrollmentPatch, NewCampaign, Step};
use crate::domain::{CampaignStatus, EmailAddress, StepType};
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;

pub fn router() -> Api {
    Api::new("campaigns")
        .get("/rest/v1/campaign_list", "Woodpecker's campaign list; filters status and id.", campaign_list)
        .returns_list::<WoodpeckerCampaign>()
        .empty(&[(204, "No campaign matches (Woodpecker answers so).")])
        .query(
            const {
                &[
                    Param::new("status", Kind::OneOf(CampaignStatus::WIRE), "Campaigns in this status."),
                    Param::new("id", Kind::Ids, "Campaigns with these ids."),
                ]
            },
        )
        .post("/rest/v2/campaigns", "Create a campaign with its mailboxes and ordered steps.", create)
        .body::<CampaignBody>()
        .returns::<CampaignView>(&[201])
        .get("/rest/v2/campaigns", "List campaigns.", list)
        .returns_list::<CampaignView>()
        .get("/rest/v2/campaigns/{id}", "One campaign.", get_one)
        .returns::<CampaignView>(&[200])
        .patch("/rest/v2/campaigns/{id}", "Change name, status, mailboxes or steps.", patch)
        .body::<CampaignBody>()
        .returns::<CampaignView>(&[200])
        .delete("/rest/v2/campaigns/{id}", "Delete a campaign, its enrollments, emails and links.", delete)
        .empty(&[(204, "Deleted.")])
        .patch(
            "/rest/v2/campaigns/{id}/prospects/{prospect_id}",
            "Move an enrolled prospect to a step or set followup_after.",
            patch_enrollment,
        )
        .body::<EnrollmentBody>()
        .returns::<EnrollmentView>(&[200])
}

pub fn path_id(raw: &str, what: &str) -> ApiResult<i64> {
    raw.parse().map_err(|_| ApiError::wrong_param(format!("{what} id must be an integer, not {raw:?}.")))
}

/// A campaign as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    id: i64,
    name: String,
    #[schema(value_type = String, example = "RUNNING")]
    status: CampaignStatus,
    from_name: String,
    mailboxes: Vec<String>,
    steps: Vec<StepView>,
    /// When it was created, in the account's time zone.
    created: String,
}

/// One step of a campaign, numbered from 1.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StepView {
    step: usize,
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "EMAIL")]
    step_type: StepType,
    track_links: bool,
}

impl CampaignView {
    fn of(c: &Campaign, tz: &str) -> Self {
        CampaignView {
            id: c.id,
            name: c.name.clone(),
            status: c.status,
            from_name: c.from_name.clone(),
            mailboxes: c.mailboxes.clone(),
            steps: c
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| StepView { step: i + 1, step_type: s.step_type, track_links: s.track_links })
                .collect(),
            created: format_time(c.created_at, tz),
        }
    }
}

async fn campaign_list(State(st): State<AppState>, Auth(account): Auth, params: Params) -> ApiResult<Response> {
    let status = params.str("status").map(CampaignStatus::parse).transpose()?;
    let ids = params.ids("id")?;
    let items: Vec<WoodpeckerCampaign> = st
        .store
        .list_campaigns(account.id)
        .await?
        .iter()
        .filter(|c| status.is_none_or(|s| s == c.status) && (ids.is_empty() || ids.contains(&c.id)))
        .map(|c| WoodpeckerCampaign {
            id: c.id,
            name: c.name.clone(),
            status: c.status,
            created: format_time(c.created_at, &account.timezone),
            from_name: c.from_name.clone(),
            from_email: c.mailboxes.first().cloned().unwrap_or_default(),
            from_emails: c.mailboxes.clone(),
        })
        .collect();
    Ok(woodpecker_list_response(items.len() as i64, items))
}

/// A campaign as Woodpecker's v1 `campaign_list` shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 1, "name": "Q2 outreach", "status": "RUNNING", "created": "2025-03-20T09:00:00+0100",
                          "from_name": "Richard", "from_email": "richard@piedpiper.com",
                          "from_emails": ["richard@piedpiper.com"]}))]
pub struct WoodpeckerCampaign {
    id: i64,
    name: String,
    #[schema(value_type = String)]
    status: CampaignStatus,
    created: String,
    from_name: String,
    /// The first mailbox, "" when there is none.
    from_email: String,
    from_emails: Vec<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StepBody {
    #[serde(rename = "type", default)]
    step_type: Option<String>,
    #[serde(default)]
    track_links: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CampaignBody {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    from_name: Option<String>,
    #[serde(default)]
    mailboxes: Option<Vec<String>>,
    #[serde(default)]
    steps: Option<Vec<StepBody>>,
}

fn parse_steps(steps: Vec<StepBody>) -> ApiResult<Vec<Step>> {
    if steps.len() > 100 {
        return Err(ApiError::wrong_param("A campaign has at most 100 steps."));
    }
    steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let kind =
                s.step_type.as_deref().map(StepType::parse).transpose().map_err(|e| e.at(format!("steps[{i}]")))?;
            Ok(Step { step_type: kind.unwrap_or(StepType::Email), track_links: s.track_links })
        })
        .collect()
}

fn parse_mailboxes(m: Vec<String>) -> ApiResult<Vec<String>> {
    m.iter()
        .enumerate()
        .map(|(i, s)| {
            EmailAddress::parse(s).map(|e| e.as_str().to_string()).map_err(|e| e.at(format!("mailboxes[{i}]")).into())
        })
        .collect()
}

fn parse_name(n: String) -> ApiResult<String> {
    let n = n.trim().to_string();
    if n.is_empty() {
        return Err(ApiError::required("name"));
    }
    if n.len() > 500 {
        return Err(ApiError::wrong_param("name is longer than 500 bytes."));
    }
    Ok(n)
}

async fn create(
    State(st): State<AppState>,
    Auth(account): Auth,
    JsonBody(b): JsonBody<CampaignBody>,
) -> ApiResult<Response> {
    if b.id.is_some() {
        // A chosen id would jump every later id, and its answer would tell whether another
        // account holds it: ids are the store's to give.
        return Err(ApiError::wrong_param("A campaign's id is given by clickhook; leave id out."));
    }
    let new = NewCampaign {
        name: parse_name(b.name.ok_or_else(|| ApiError::required("name"))?)?,
        status: b.status.as_deref().map(CampaignStatus::parse).transpose()?.unwrap_or(CampaignStatus::Draft),
        from_name: b.from_name.unwrap_or_default(),
        mailboxes: parse_mailboxes(b.mailboxes.unwrap_or_default())?,
        steps: parse_steps(b.steps.unwrap_or_default())?,
    };
    let c = st.store.create_campaign(account.id, new).await?;
    Ok((StatusCode::CREATED, Json(CampaignView::of(&c, &account.timezone))).into_response())
}

async fn list(State(st): State<AppState>, Auth(account): Auth) -> ApiResult<Response> {
    let items: Vec<CampaignView> =
        st.store.list_campaigns(account.id).await?.iter().map(|c| CampaignView::of(c, &account.timezone)).collect();
    let total = items.len() as i64;
    let mut res = Json(items).into_response();
    res.headers_mut().insert("x-total-count", total.into());
    Ok(res)
}

async fn get_one(State(st): State<AppState>, Auth(account): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let c = st.store.campaign(account.id, path_id(&id, "campaign")?).await?;
    Ok(Json(CampaignView::of(&c, &account.timezone)).into_response())
}

async fn patch(
    State(st): State<AppState>,
    Auth(account): Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<CampaignBody>,
) -> ApiResult<Response> {
    if b.id.is_some() {
        return Err(ApiError::wrong_param("A campaign's id cannot change."));
    }
    let patch = CampaignPatch {
        name: b.name.map(parse_name).transpose()?,
        status: b.status.as_deref().map(CampaignStatus::parse).transpose()?,
        from_name: b.from_name,
        mailboxes: b.mailboxes.map(parse_mailboxes).transpose()?,
        steps: b.steps.map(parse_steps).transpose()?,
    };
    let c = st.store.update_campaign(account.id, path_id(&id, "campaign")?, patch).await?;
    Ok(Json(CampaignView::of(&c, &account.timezone)).into_response())
}

async fn delete(State(st): State<AppState>, Auth(account): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    st.store.delete_campaign(account.id, path_id(&id, "campaign")?).await?;
    // Its links answer 404 from this node before the delete does (other nodes within moments).
    st.click.forget_removed_links().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EnrollmentBody {
    #[serde(default)]
    step: Option<i64>,
    /// Absent: unchanged; null: cleared; a time: set.
    #[serde(default, deserialize_with = "some")]
    followup_after: Option<Option<String>>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A prospect's place in a campaign.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrollmentView {
    campaign_id: i64,
    prospect_id: i64,
    /// The step it is at, from 1; null before the first email.
    step: Option<i64>,
    #[schema(value_type = Option<String>)]
    step_type: Option<StepType>,
    campaign_email_sent: i64,
    /// The mailbox its emails go from, "" until one is chosen.
    campaign_email: String,
    followup_after: Option<String>,
    stopped: bool,
}

impl EnrollmentView {
    pub fn of(e: &Enrollment, tz: &str) -> Self {
        EnrollmentView {
            campaign_id: e.campaign_id,
            prospect_id: e.prospect_id,
            step: e.step,
            step_type: e.step_type,
            campaign_email_sent: e.emails_sent,
            campaign_email: e.mailbox.clone().unwrap_or_default(),
            followup_after: e.followup_after.map(|t| format_time(t, tz)),
            stopped: e.stopped,
        }
    }
}

async fn patch_enrollment(
    State(st): State<AppState>,
    Auth(account): Auth,
    Path((id, prospect_id)): Path<(String, String)>,
    JsonBody(b): JsonBody<EnrollmentBody>,
) -> ApiResult<Response> {
    let followup_after = match b.followup_after {
        None => None,
        Some(None) => Some(None),
        Some(Some(t)) => Some(Some(parse_time(&t).ok_or_else(|| {
            ApiError::wrong_param("followup_after must be an ISO 8601 time such as 2025-03-22T00:00:00+0100.")
        })?)),
    };
    let of = EnrollmentKey { campaign_id: path_id(&id, "campaign")?, prospect_id: path_id(&prospect_id, "prospect")? };
    let e = st.store.update_enrollment(account.id, of, EnrollmentPatch { step: b.step, followup_after }).await?;
    Ok(Json(EnrollmentView::of(&e, &account.timezone)).into_response())
}

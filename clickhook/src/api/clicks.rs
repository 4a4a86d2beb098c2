//! Recorded clicks with their verdicts.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::Response;
use serde::Serialize;

use super::auth::Auth;
use super::{Api, AppState, Kind, Param, Params};
use crate::domain::Verdict;
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;
use crate::store::{ClickQuery, ClickRecord, VerdictFilter};

pub fn router() -> Api {
    Api::new("clicks")
        .get(
            "/rest/v2/clicks",
            "List clicks, newest first: campaign_id, prospect_id, verdict (human, bot, pending), since, until; paged.",
            list,
        )
        .query(
            const {
                &[
                    Param::PAGE,
                    Param::per_page(1000),
                    Param::new("campaign_id", Kind::Integer, "Clicks on this campaign's emails."),
                    Param::new("campaign", Kind::Integer, "The same as campaign_id."),
                    Param::new("prospect_id", Kind::Integer, "Clicks of this prospect."),
                    Param::new("prospect", Kind::Integer, "The same as prospect_id."),
                    Param::new(
                        "verdict",
                        Kind::OneOf(&["human", "bot", "pending"]),
                        "Only clicks judged so, or not yet.",
                    ),
                    Param::since("Clicks at or after this time."),
                    Param::until("Clicks before this time."),
                ]
            },
        )
        .returns_list::<ClickView>()
}

async fn list(State(st): State<AppState>, Auth(account): Auth, params: Params) -> ApiResult<Response> {
    let (offset, limit) = params.page(1000)?;
    let verdict = match params.str("verdict") {
        Some("pending") => Some(VerdictFilter::Pending),
        Some(v @ ("human" | "bot")) => Some(VerdictFilter::Final(Verdict::parse(v)?)),
        Some(v) => return Err(ApiError::wrong_param(format!("verdict must be human, bot or pending, not {v:?}."))),
        None => None,
    };
    let q = ClickQuery {
        after_id: None,
        campaign_id: params.int("campaign_id")?.or(params.int("campaign")?),
        prospect_id: params.int("prospect_id")?.or(params.int("prospect")?),
        verdict,
        since: params.time("since")?,
        until: params.time("until")?,
        offset,
        limit,
    };
    let (total, clicks) = st.store.list_clicks(account.id, q).await?;
    let tz = &account.timezone;
    let items: Vec<ClickView> = clicks.iter().map(|c| ClickView::of(c, tz)).collect();
    let mut res = axum::Json(items).into_response();
    res.headers_mut().insert("x-total-count", total.into());
    Ok(res)
}

/// A click with its verdict, as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
struct ClickView {
    id: i64,
    /// When it happened, in the account's time zone.
    time: String,
    campaign_id: i64,
    prospect_id: i64,
    email_id: i64,
    /// Which link of the email, from 1.
    link_no: i64,
    url: String,
    #[schema(example = "GET")]
    method: &'static str,
    /// The address it came from, shortened unless the server keeps full addresses.
    ip: Option<String>,
    user_agent: String,
    /// `pending` until the burst window after it has closed.
    #[schema(value_type = String, example = "human")]
    verdict: &'static str,
    /// Why it was judged a bot: the signal and the list entry that matched.
    reasons: Vec<String>,
}

impl ClickView {
    fn of(c: &ClickRecord, tz: &str) -> Self {
        ClickView {
            id: c.id,
            time: format_time(c.at, tz),
            campaign_id: c.campaign_id,
            prospect_id: c.prospect_id,
            email_id: c.email_id,
            link_no: c.link_no,
            url: c.url.clone(),
            method: c.method,
            ip: c.ip.clone(),
            user_agent: c.user_agent.clone(),
            verdict: c.verdict.map_or("pending", Verdict::as_str),
            reasons: c.reasons.clone(),
        }
    }
}

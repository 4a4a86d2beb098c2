//! Click statistics: `GET /rest/v2/stats`, read from the rollups (`domain::stats`) so that
//! it answers as fast for a year as for a day, and after the raw clicks are pruned.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::auth::Auth;
use super::{Api, AppState, Kind, Param, Params};
use crate::domain::stats::{self, Granularity, Range};
use crate::domain::{now_millis, Account, Millis};
use crate::error::{ApiError, ApiResult};
use crate::event::format_time;
use crate::store::StatsQuery;

pub fn router() -> Api {
    Api::new("stats")
        .get(
            "/rest/v2/stats",
            "Emails sent, human and bot clicks and prospects who clicked, by step, link and reason, with a \
             series in the account's time zone; counts of released clicks, exact to the quarter hour.",
            get,
        )
        .query(
            const {
                &[
                    Param::new("campaign_id", Kind::Integer, "One campaign; without it, all of the account's."),
                    Param::since("From this time (its quarter hour included); without it, from the first click."),
                    Param::until("To this time (its quarter hour included); without it, until now."),
                    Param::new("granularity", Kind::OneOf(Granularity::WIRE), "The series' buckets (default day)."),
                ]
            },
        )
        .returns::<Stats>(&[200])
}

/// Everything `/rest/v2/stats` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// The range counted, `[since, until)` on quarter-hour bounds, in the account's time zone.
    pub since: String,
    pub until: String,
    pub totals: Totals,
    pub steps: Vec<StepStats>,
    /// Most human clicks first.
    pub links: Vec<LinkStats>,
    /// Why bot clicks were judged so, most frequent first; a click may have several reasons.
    pub reasons: Vec<ReasonStats>,
    pub series: Vec<Bucket>,
}

#[derive(Serialize, utoipa::ToSchema, Default)]
pub struct Totals {
    pub emails_sent: i64,
    pub clicks: i64,
    pub human_clicks: i64,
    pub bot_clicks: i64,
    /// Prospects with at least one human click.
    pub prospects_clicked: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StepStats {
    pub step: i64,
    pub emails_sent: i64,
    pub human_clicks: i64,
    pub bot_clicks: i64,
    pub prospects_clicked: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LinkStats {
    pub url: String,
    pub human_clicks: i64,
    pub bot_clicks: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReasonStats {
    #[schema(example = "scanner_user_agent:Mediapartners-Google")]
    pub reason: String,
    pub clicks: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// The bucket's start, in the webhook payload's time format and the account's zone.
    #[schema(example = "2025-03-21T00:00:00+0100")]
    pub t: String,
    /// The same, in Unix milliseconds (not answered).
    #[serde(skip)]
    #[schema(ignore)]
    pub start: Millis,
    pub human_clicks: i64,
    pub bot_clicks: i64,
}

async fn get(State(st): State<AppState>, Auth(account): Auth, params: Params) -> ApiResult<Response> {
    let granularity = params.str("granularity").map(Granularity::parse).transpose()?.unwrap_or(Granularity::Day);
    let asked = Asked {
        campaign_id: params.int("campaign_id")?,
        since: params.time("since")?,
        until: params.time("until")?.unwrap_or_else(now_millis),
        granularity,
    };
    Ok(Json(stats(&st, &account, asked).await?).into_response())
}

/// What statistics are asked for.
pub struct Asked {
    pub campaign_id: Option<i64>,
    pub since: Option<Millis>,
    pub until: Millis,
    pub granularity: Granularity,
}

/// The account's statistics, as `/rest/v2/stats` answers them (the dashboard shows the same).
pub async fn stats(st: &AppState, account: &Account, asked: Asked) -> ApiResult<Stats> {
    let Asked { campaign_id, since, until, granularity } = asked;
    let campaign_ids = match campaign_id {
        Some(id) => vec![st.store.campaign(account.id, id).await?.id],
        None => st.store.list_campaigns(account.id).await?.iter().map(|c| c.id).collect(),
    };
    if since.is_some_and(|s| s > until) {
        return Err(ApiError::wrong_param("since is after until."));
    }
    let range = Range::covering(since.unwrap_or(0), until);
    let zone: chrono_tz::Tz = account.timezone.parse().unwrap_or(chrono_tz::UTC);
    let rows = st.store.stats(StatsQuery { campaign_ids, range, series_parts: range.series_parts(zone) }).await?;
    // Without `since`, the series starts at the first click counted.
    let from = match since {
        Some(_) => range.since,
        None => rows.series.iter().map(|r| r.0).min().unwrap_or(range.until),
    };
    let series = stats::series(&rows.series, from, range.until, zone, granularity).ok_or_else(|| {
        ApiError::wrong_param(format!(
            "That is more than {} buckets; ask for granularity=day or a shorter range.",
            stats::MAX_BUCKETS
        ))
    })?;
    let tz = account.timezone.as_str();
    let (clickers_by_step, clickers) = stats::clickers(&rows.clickers);
    Ok(Stats {
        since: format_time(if since.is_some() { range.since } else { from.min(range.until) }, tz),
        until: format_time(range.until, tz),
        totals: totals(&rows, clickers),
        steps: steps(&rows, clickers_by_step),
        links: links(&rows),
        reasons: reasons(rows.reasons),
        series: series
            .into_iter()
            .map(|(t, n)| Bucket { start: t, t: format_time(t, tz), human_clicks: n.human, bot_clicks: n.bot })
            .collect(),
    })
}

fn totals(rows: &crate::store::StatsRows, clickers: i64) -> Totals {
    let human: i64 = rows.links.iter().map(|l| l.2).sum();
    let bot: i64 = rows.links.iter().map(|l| l.3).sum();
    Totals {
        emails_sent: rows.emails.iter().map(|e| e.1).sum(),
        clicks: human + bot,
        human_clicks: human,
        bot_clicks: bot,
        prospects_clicked: clickers,
    }
}

fn steps(rows: &crate::store::StatsRows, clickers: BTreeMap<i64, i64>) -> Vec<StepStats> {
    let mut out: BTreeMap<i64, StepStats> = BTreeMap::new();
    fn entry(out: &mut BTreeMap<i64, StepStats>, step: i64) -> &mut StepStats {
        out.entry(step).or_insert(StepStats {
            step,
            emails_sent: 0,
            human_clicks: 0,
            bot_clicks: 0,
            prospects_clicked: 0,
        })
    }
    for &(step, sent) in &rows.emails {
        entry(&mut out, step).emails_sent += sent;
    }
    for (step, _, human, bot) in &rows.links {
        let s = entry(&mut out, *step);
        s.human_clicks += human;
        s.bot_clicks += bot;
    }
    for (step, n) in clickers {
        entry(&mut out, step).prospects_clicked = n;
    }
    out.into_values().collect()
}

fn links(rows: &crate::store::StatsRows) -> Vec<LinkStats> {
    let mut by_url: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (_, url, human, bot) in &rows.links {
        let n = by_url.entry(url.as_str()).or_default();
        n.0 += human;
        n.1 += bot;
    }
    let mut out: Vec<LinkStats> = by_url
        .into_iter()
        .map(|(url, (human, bot))| LinkStats { url: url.to_string(), human_clicks: human, bot_clicks: bot })
        .collect();
    out.sort_by(|a, b| {
        b.human_clicks.cmp(&a.human_clicks).then(b.bot_clicks.cmp(&a.bot_clicks)).then(a.url.cmp(&b.url))
    });
    out
}

fn reasons(mut rows: Vec<(String, i64)>) -> Vec<ReasonStats> {
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.into_iter().map(|(reason, clicks)| ReasonStats { reason, clicks }).collect()
}

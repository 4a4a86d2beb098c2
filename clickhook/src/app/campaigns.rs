//! Campaigns: every campaign's headline numbers with a 14-day trend, and one campaign's clicks
//! over a chosen range. The numbers are `/rest/v2/stats`' own ([`api::stats::stats`]).
//!
//! [`api::stats::stats`]: crate::api::stats::stats

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::chart::{self, Bar};
use super::html::PageError;
use super::page::{count, day, page, percent, when, Section};
use super::session::Session;
use crate::api::campaigns::path_id;
use crate::api::stats::{stats, Asked, Stats};
use crate::api::AppState;
use crate::domain::stats::Granularity;
use crate::domain::{now_millis, Millis, Verdict};
use crate::store::{ClickQuery, ProspectQuery, VerdictFilter};

const DAY: Millis = 86_400_000;
/// Days in a campaign row's trend.
const TREND_DAYS: usize = 14;

pub async fn list(State(st): State<AppState>, s: Session) -> Result<Response, PageError> {
    let campaigns = st.store.list_campaigns(s.account.id).await?;
    let mut rows = Vec::with_capacity(campaigns.len());
    let now = now_millis();
    for c in campaigns {
        let asked = Asked { campaign_id: Some(c.id), since: None, until: now, granularity: Granularity::Day };
        let all = stats(&st, &s.account, asked).await?;
        let mut trend: Vec<i64> = all.series.iter().rev().take(TREND_DAYS).map(|b| b.human_clicks).collect();
        trend.resize(TREND_DAYS, 0);
        trend.reverse();
        rows.push((c, all.totals, trend));
    }
    let body = html! {
        h1 { "Campaigns" }
        @if rows.is_empty() {
            p.empty { "No campaigns yet. Create one with " code { "POST /rest/v2/campaigns" } "." }
        } @else {
            table.ranked {
                thead { tr {
                    th { "Campaign" } th { "Status" } th.num { "Emails sent" } th.num { "Human clicks" }
                    th.num { "Bot clicks" } th.num title="Prospects who clicked, per email sent" { "Click rate" }
                    th.num { "Prospects who clicked" } th { "Last 14 days" }
                } }
                tbody {
                    @for (c, t, trend) in &rows {
                        tr data-campaign=(c.id) {
                            td { a href={ "/app/campaigns/" (c.id) } { (c.name) } }
                            td { span.badge.(c.status.as_str().to_lowercase()) { (c.status.as_str()) } }
                            td.num { (count(t.emails_sent)) }
                            td.num { (count(t.human_clicks)) }
                            td.num { (count(t.bot_clicks)) }
                            td.num { (percent(t.prospects_clicked, t.emails_sent)) }
                            td.num { (count(t.prospects_clicked)) }
                            td { (chart::sparkline(trend, &format!("Human clicks per day, last {TREND_DAYS} days"))) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&s, Section::Campaigns, "Campaigns", body))
}

/// The ranges a campaign page offers.
const RANGES: [(&str, &str, Millis, Granularity); 5] = [
    ("24h", "24 hours", DAY, Granularity::Hour),
    ("7d", "7 days", 7 * DAY, Granularity::Hour),
    ("30d", "30 days", 30 * DAY, Granularity::Day),
    ("90d", "90 days", 90 * DAY, Granularity::Day),
    ("365d", "a year", 365 * DAY, Granularity::Day),
];

#[derive(Deserialize)]
pub struct RangeQuery {
    range: Option<String>,
}

pub async fn show(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, PageError> {
    let campaign = st.store.campaign(s.account.id, path_id(&id, "campaign")?).await?;
    let chosen = q.range.as_deref().unwrap_or("30d");
    let &(key, _, span, granularity) = RANGES.iter().find(|r| r.0 == chosen).ok_or_else(|| {
        crate::error::ApiError::wrong_param(format!("range must be one of 24h, 7d, 30d, 90d, 365d, not {chosen:?}."))
    })?;
    let now = now_millis();
    let asked = Asked { campaign_id: Some(campaign.id), since: Some(now - span), until: now, granularity };
    let numbers = stats(&st, &s.account, asked).await?;
    let tz = s.account.timezone.clone();
    let bars: Vec<Bar> = numbers
        .series
        .iter()
        .map(|b| Bar {
            label: match granularity {
                Granularity::Hour => when(b.start, &tz),
                Granularity::Day => day(b.start, &tz),
            },
            human: b.human_clicks,
            bot: b.bot_clicks,
        })
        .collect();
    let latest = latest_clickers(&st, s.account.id, campaign.id, &tz).await?;
    let body = html! {
        p.crumbs { a href="/app/campaigns" { "Campaigns" } " / " }
        h1 { (campaign.name) " " span.badge.(campaign.status.as_str().to_lowercase()) { (campaign.status.as_str()) } }
        nav.ranges aria-label="Range" {
            @for (k, name, _, _) in RANGES {
                @if k == key { a.current href={ "?range=" (k) } aria-current="true" { (name) } }
                @else { a href={ "?range=" (k) } { (name) } }
            }
        }
        (headline(&numbers))
        (chart::stacked_bars(&bars, "Clicks over time, people and scanners stacked"))
        div.columns {
            section {
                h2 { "Steps" }
                table.ranked data-table="steps" {
                    thead { tr { th { "Step" } th.num { "Emails sent" } th.num { "Human" } th.num { "Bot" } th.num { "Prospects" } } }
                    tbody { @for r in &numbers.steps { tr {
                        td { (r.step) } td.num { (count(r.emails_sent)) } td.num { (count(r.human_clicks)) }
                        td.num { (count(r.bot_clicks)) } td.num { (count(r.prospects_clicked)) }
                    } } }
                }
            }
            section {
                h2 { "Why scanners were caught" }
                @if numbers.reasons.is_empty() { p.empty { "No scanner clicks in this range." } }
                @else {
                    table.ranked data-table="reasons" {
                        thead { tr { th { "Reason" } th.num { "Clicks" } } }
                        tbody { @for r in &numbers.reasons { tr { td { code { (r.reason) } } td.num { (count(r.clicks)) } } } }
                    }
                }
            }
        }
        section {
            h2 { "Links" }
            table.ranked data-table="links" {
                thead { tr { th { "Link" } th.num { "Human" } th.num { "Bot" } } }
                tbody { @for l in &numbers.links { tr {
                    td.url { (l.url) } td.num { (count(l.human_clicks)) } td.num { (count(l.bot_clicks)) }
                } } }
            }
        }
        section {
            h2 { "Latest prospects who clicked" }
            @if latest.is_empty() { p.empty { "No one has clicked yet." } }
            @else {
                table data-table="latest" {
                    thead { tr { th { "Prospect" } th { "Link" } th { "Time (" (tz) ")" } } }
                    tbody { @for (email, url, at) in &latest { tr { td { (email) } td.url { (url) } td { (at) } } } }
                }
            }
        }
    };
    Ok(page(&s, Section::Campaigns, &campaign.name, body))
}

/// The row of headline numbers; `data-stat` names each as `/rest/v2/stats`' totals do.
fn headline(n: &Stats) -> Markup {
    let t = &n.totals;
    let stat = |key: &str, name: &str, value: String| {
        html! { div.stat data-stat=(key) { span.label { (name) } strong { (value) } } }
    };
    html! {
        div.headline {
            (stat("emails_sent", "Emails sent", count(t.emails_sent)))
            (stat("human_clicks", "Human clicks", count(t.human_clicks)))
            (stat("bot_clicks", "Bot clicks", count(t.bot_clicks)))
            (stat("prospects_clicked", "Prospects who clicked", count(t.prospects_clicked)))
            (stat("click_rate", "Click rate", percent(t.prospects_clicked, t.emails_sent)))
        }
    }
}

/// The campaign's latest human clicks: prospect's email, link, time in the account's zone.
async fn latest_clickers(
    st: &AppState,
    account: i64,
    campaign: i64,
    tz: &str,
) -> Result<Vec<(String, String, String)>, PageError> {
    let q = ClickQuery {
        campaign_id: Some(campaign),
        verdict: Some(VerdictFilter::Final(Verdict::Human)),
        limit: 10,
        ..Default::default()
    };
    let (_, clicks) = st.store.list_clicks(account, q).await?;
    let ids: Vec<i64> = clicks.iter().map(|c| c.prospect_id).collect();
    let q = ProspectQuery { ids: ids.clone(), limit: ids.len().max(1) as i64, ..Default::default() };
    let (_, prospects) = st.store.list_prospects(account, q).await?;
    let email = |id: i64| prospects.iter().find(|p| p.id == id).map_or_else(|| format!("#{id}"), |p| p.email.clone());
    Ok(clicks.iter().map(|c| (email(c.prospect_id), c.url.clone(), when(c.at, tz))).collect())
}

//! Clicks: the latest clicks with verdict and reasons, filterable, and new ones as they are
//! judged, pushed as server-sent events that carry ready table rows (`assets/app/app.js`
//! puts them on top). The page reads without JavaScript; the stream only adds to it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use futures::Stream;
use maud::{html, Markup};
use serde::Deserialize;

use super::html::PageError;
use super::page::{page, when, Section};
use super::session::Session;
use crate::api::AppState;
use crate::domain::{Account, Verdict};
use crate::error::ApiError;
use crate::store::{ClickQuery, ClickRecord, VerdictFilter};

/// Rows on the page, and rows each look of the stream reads.
const ROWS: i64 = 50;
const LOOK: i64 = 200;
/// How often the stream looks for newly judged clicks.
const EVERY: Duration = Duration::from_secs(1);
/// A stream ends after this; the browser reconnects where it left off (Last-Event-ID).
const STREAM_LIFE: Duration = Duration::from_secs(600);

#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    campaign_id: String,
    /// The newest click the page showed (the stream's start).
    #[serde(default)]
    after: Option<i64>,
}

impl Filter {
    fn verdict(&self) -> Result<Option<VerdictFilter>, ApiError> {
        Ok(match self.verdict.as_str() {
            "" => None,
            "pending" => Some(VerdictFilter::Pending),
            v => Some(VerdictFilter::Final(Verdict::parse(v)?)),
        })
    }

    fn campaign(&self) -> Result<Option<i64>, ApiError> {
        match self.campaign_id.as_str() {
            "" => Ok(None),
            v => v.parse().map(Some).map_err(|_| ApiError::wrong_param("campaign_id must be a number.")),
        }
    }

    fn query(&self, limit: i64) -> Result<ClickQuery, ApiError> {
        Ok(ClickQuery { campaign_id: self.campaign()?, verdict: self.verdict()?, limit, ..Default::default() })
    }

    fn query_string(&self) -> String {
        serde_urlencoded::to_string([("verdict", &self.verdict), ("campaign_id", &self.campaign_id)])
            .unwrap_or_default()
    }
}

async fn campaign_names(st: &AppState, account: i64) -> Result<HashMap<i64, String>, PageError> {
    Ok(st.store.list_campaigns(account).await?.into_iter().map(|c| (c.id, c.name)).collect())
}

pub async fn list(State(st): State<AppState>, s: Session, Query(f): Query<Filter>) -> Result<Response, PageError> {
    let (total, clicks) = st.store.list_clicks(s.account.id, f.query(ROWS)?).await?;
    let names = campaign_names(&st, s.account.id).await?;
    let newest = clicks.iter().map(|c| c.id).max().unwrap_or(0);
    let stream = (f.verdict != "pending").then(|| format!("/app/clicks/stream?{}&after={newest}", f.query_string()));
    let mut campaigns: Vec<(&i64, &String)> = names.iter().collect();
    campaigns.sort();
    let body = html! {
        h1 { "Clicks" }
        form.filters method="get" action="/app/clicks" {
            label { "Verdict "
                select name="verdict" {
                    @for (v, name) in [("", "any"), ("human", "people"), ("bot", "scanners"), ("pending", "pending")] {
                        option value=(v) selected[f.verdict == v] { (name) }
                    }
                }
            }
            label { "Campaign "
                select name="campaign_id" {
                    option value="" { "all" }
                    @for (id, name) in campaigns {
                        option value=(id) selected[f.campaign_id == id.to_string()] { (name) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        p.muted { (total) " clicks match; the latest " (clicks.len()) " are shown"
            @if stream.is_some() { ", and new ones appear as they are judged" } "." }
        table.clicks {
            thead { tr { th { "Time" } th { "Campaign" } th { "Link" } th { "Verdict" } th { "Reasons" } th { "User agent" } } }
            tbody data-stream=[stream] {
                @for c in &clicks { (row(c, &names, &s.account)) }
            }
        }
    };
    Ok(page(&s, Section::Clicks, "Clicks", body))
}

fn row(c: &ClickRecord, names: &HashMap<i64, String>, account: &Account) -> Markup {
    let verdict = c.verdict.map_or("pending", Verdict::as_str);
    html! {
        tr data-click=(c.id) {
            td { (when(c.at, &account.timezone)) }
            td { (names.get(&c.campaign_id).map_or("–", String::as_str)) }
            td.url { (c.url) }
            td { span.badge.(verdict) { (verdict) } }
            td { @for r in &c.reasons { code { (r) } " " } }
            td.ua { (c.user_agent) }
        }
    }
}

/// What a stream remembers between looks.
struct Tail {
    st: AppState,
    account: Account,
    query: ClickQuery,
    names: HashMap<i64, String>,
    /// Each look reads only clicks above this id (an index range, whatever the store's size):
    /// below the oldest click still pending at the last look, or the newest one seen.
    floor: i64,
    /// Clicks above the floor already sent.
    sent: BTreeSet<i64>,
    queue: VecDeque<Event>,
    ends: tokio::time::Instant,
}

impl Tail {
    /// Queues judged clicks not sent yet, oldest first.
    async fn look(&mut self) -> Result<(), PageError> {
        let q = ClickQuery { after_id: Some(self.floor), ..self.query.clone() };
        let (_, clicks) = self.st.store.list_clicks(self.account.id, q).await?;
        for c in clicks.iter().rev() {
            if c.verdict.is_some() && self.sent.insert(c.id) {
                let tr = row(c, &self.names, &self.account).into_string();
                self.queue.push_back(Event::default().event("click").id(c.id.to_string()).data(tr));
            }
        }
        let pending_floor = clicks.iter().filter(|c| c.verdict.is_none()).map(|c| c.id - 1).min();
        let newest = clicks.first().map(|c| c.id);
        self.floor = pending_floor.or(newest).unwrap_or(self.floor).max(self.floor);
        self.sent = self.sent.split_off(&(self.floor + 1));
        Ok(())
    }
}

pub async fn stream(
    State(st): State<AppState>,
    s: Session,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let resumed = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.parse().ok());
    let tail = Tail {
        names: campaign_names(&st, s.account.id).await?,
        query: f.query(LOOK)?,
        floor: resumed.or(f.after).unwrap_or(0),
        sent: BTreeSet::new(),
        queue: VecDeque::new(),
        ends: tokio::time::Instant::now() + STREAM_LIFE,
        account: s.account,
        st,
    };
    let events = futures::stream::unfold(tail, |mut t| async move {
        let mut stopping = t.st.stopping.clone();
        loop {
            if let Some(e) = t.queue.pop_front() {
                return Some((Ok(e), t));
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = tokio::time::sleep_until(t.ends) => return None,
                _ = stopping.wait_for(|s| *s) => return None,
            }
            if t.look().await.is_err() {
                return None;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

//! What goes in and out of the store besides the domain's own types: queries, the click
//! path's and the settler's rows, and the delivery log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::domain::campaign::Enrollment;
use crate::domain::click::{may_overrule, ReleaseRule, Verdict};
use crate::domain::delivery::{AttemptResult, DeliveryState};
use crate::domain::prospect::{Interested, Prospect, ProspectInput, ProspectStatus, SearchField, SortKey};
use crate::domain::stats::Counted;
use crate::domain::{ClickFilter, EmailAddress, Millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub account_id: i64,
    pub prefix: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// A server key that signs tracked-link tokens. The newest one not retired signs; all verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkKey {
    pub id: i64,
    pub secret: Vec<u8>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct UpsertProspects {
    pub prospects: Vec<ProspectInput>,
    pub update: bool,
    /// Becomes the prospects' `imported` (Woodpecker's `file_name`).
    pub imported: Option<String>,
    /// Enroll every prospect in this campaign too.
    pub campaign_id: Option<i64>,
    /// The running import (`ProspectStore::begin_import`) this chunk belongs to: what it
    /// changes is journalled, to be kept or undone with the import.
    pub import: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ProspectQuery {
    pub ids: Vec<i64>,
    pub status: Option<ProspectStatus>,
    /// `Some(None)` selects prospects without an interest level.
    pub interested: Option<Option<Interested>>,
    pub campaign_ids: Vec<i64>,
    /// Case-insensitive substring matches on named fields.
    pub search: Vec<(SearchField, String)>,
    /// (key, descending)
    pub sort: Vec<(SortKey, bool)>,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub enum ProspectRef {
    Id(i64),
    Email(EmailAddress),
}

#[derive(Debug, Clone)]
pub struct NewEmail {
    pub campaign_id: i64,
    pub prospect: ProspectRef,
    pub step: i64,
    pub mailbox: Option<String>,
    pub subject: String,
    pub idempotency_key: Option<String>,
    pub sent_at: Millis,
    pub links: Vec<NewLink>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub url: String,
    pub honeypot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    pub id: i64,
    pub prospect_id: i64,
    pub email_no: i64,
    pub sent_at: Millis,
    /// Links in order; the index + 1 is the link's number in its token.
    pub links: Vec<NewLink>,
    /// True when the idempotency key matched an email already recorded.
    pub replayed: bool,
}

/// What the click path needs to know about a tracked link. Links never change once written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTarget {
    pub account_id: i64,
    pub email_id: i64,
    pub link_no: i64,
    pub url: String,
    pub honeypot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClick {
    pub account_id: i64,
    pub email_id: i64,
    pub link_no: i64,
    pub at: Millis,
    pub head: bool,
    pub ip: Option<String>,
    pub user_agent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClickRecord {
    pub id: i64,
    pub at: Millis,
    pub campaign_id: i64,
    pub prospect_id: i64,
    pub email_id: i64,
    pub link_no: i64,
    pub url: String,
    pub method: &'static str,
    pub ip: Option<String>,
    pub user_agent: String,
    /// `None` while the click waits for its burst window to close.
    pub verdict: Option<Verdict>,
    pub reasons: Vec<String>,
}

/// Which clicks a list shows by their verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictFilter {
    /// Not judged yet, or judged and held for its burst window.
    Pending,
    Final(Verdict),
}

#[derive(Debug, Clone, Default)]
pub struct ClickQuery {
    /// Only clicks newer than this one (a greater id): bounded reads for a live view.
    pub after_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub prospect_id: Option<i64>,
    pub verdict: Option<VerdictFilter>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub offset: i64,
    pub limit: i64,
}

/// A click whose verdict and event are still to be decided, with what deciding needs.
#[derive(Debug, Clone)]
pub struct PendingClick {
    pub id: i64,
    /// 0 when the click's email was deleted.
    pub account_id: i64,
    pub email_id: i64,
    pub link_no: i64,
    pub at: Millis,
    pub head: bool,
    pub ip: Option<String>,
    pub user_agent: String,
    pub email_sent_at: Millis,
    pub honeypot: bool,
    pub url: String,
    /// Its account's (shared by every click of the account read at once).
    pub filter: Arc<ClickFilter>,
    /// Where its email stands; `None` when the email is gone.
    pub placed: Option<Placed>,
}

/// A judged click on the same email as one being judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearbyClick {
    pub click_id: i64,
    pub email_id: i64,
    pub link_no: i64,
    pub at: Millis,
    pub honeypot: bool,
    /// Released: its verdict is final and can no longer be overruled.
    pub released: bool,
    /// Its reasons as stored, so that an overrule it already carries is not sent again.
    pub reasons: Vec<String>,
}

impl NearbyClick {
    /// Whether overruling this click for `reason` would change anything.
    pub fn may_overrule(&self, reason: &str) -> bool {
        may_overrule(self.released, &self.reasons, reason)
    }
}

/// A judged click of the burst history, with its account (whose window it is kept for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgedClick {
    pub account_id: i64,
    pub click: NearbyClick,
}

/// The first judgement of a click.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub click: NearbyClick,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

/// A judged click still held, as an overrule finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldVerdict {
    pub click_id: i64,
    pub verdict: Verdict,
    /// Its reasons as stored (a JSON array).
    pub reasons: String,
}

/// An earlier click that later ones showed to be a bot's (a burst, a honeypot hit): its verdict
/// and reasons from now on (`domain::click::overrule`). Applies only while the click is still
/// held and its reasons are still `was`: a settler that lost its turn cannot undo another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrule {
    pub click_id: i64,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub was: String,
}

/// A judged click not yet released, made before the judging frontier.
#[derive(Debug, Clone)]
pub struct HeldClick {
    pub id: i64,
    pub account_id: i64,
    pub email_id: i64,
    pub url: String,
    pub at: Millis,
    pub verdict: Verdict,
    pub rule: ReleaseRule,
    /// Where its email stands; `None` when the email is gone.
    pub placed: Option<Placed>,
    pub reasons: Vec<String>,
}

/// The campaign, step and prospect of a click's email.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub campaign_id: i64,
    pub step: i64,
    pub prospect_id: i64,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub click_id: i64,
    pub account_id: i64,
    pub clicked_at: Millis,
    pub human: bool,
    /// The `link_clicked` element to deliver; `None` when the click produces no webhook.
    pub event: Option<String>,
    /// What the click adds to the statistics; `None` when its email is gone.
    pub counted: Option<Counted>,
    /// For a click the settler held in memory, its row still unjudged: the judgement the
    /// release writes with it, so that the row is written once. `None` for a click held in
    /// the store (judged there before).
    pub judged: Option<Judgement>,
}

/// Stored state from which a `link_clicked` element is built (see `crate::event`).
#[derive(Debug, Clone)]
pub struct EventContext {
    pub account_id: i64,
    pub timezone: String,
    pub snippet_labels: BTreeMap<u8, String>,
    pub prospect: Prospect,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub campaign_mailboxes: Vec<String>,
    pub enrollment: Enrollment,
    /// The clicked email's step and number.
    pub email_step: i64,
    pub email_no: i64,
}

/// Where a subscription's batching stands: its events after `cursor` are not in a batch yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionCursor {
    pub id: i64,
    pub account_id: i64,
    pub target_url: String,
    pub cursor: i64,
}

/// How many deliveries a claim may lease: `total` in all, and of each subscription
/// `per_subscription` less the attempts this node has in flight to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRoom {
    pub total: i64,
    pub per_subscription: i64,
    /// Attempts in flight, by subscription.
    pub in_flight: HashMap<i64, i64>,
}

/// A delivery claimed for one attempt, with everything the attempt needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: i64,
    pub msg_id: String,
    pub subscription_id: i64,
    pub target_url: String,
    pub secret: String,
    /// The JSON array as it goes on the wire.
    pub body: String,
    pub tries: i64,
}

/// One attempt as it is logged, with what it came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: i64,
    pub subscription_id: i64,
    pub latency_ms: i64,
    /// At most 1 KiB of the response body.
    pub response: String,
    pub result: AttemptResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub at: Millis,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub response: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub msg_id: String,
    pub subscription_id: i64,
    pub target_url: String,
    pub event_count: i64,
    pub state: DeliveryState,
    pub tries: i64,
    pub next_attempt_at: Option<Millis>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub subscription_id: Option<i64>,
    pub state: Option<DeliveryState>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub offset: i64,
    pub limit: i64,
}

/// Undelivered work of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub subscription_id: i64,
    /// Events not yet in a delivered batch (waiting to be batched, or in pending batches).
    pub events: i64,
    /// When the oldest of them happened.
    pub oldest_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Clicks not yet judged, or judged and held for their burst window.
    pub clicks_pending: i64,
}

/// The campaigns (all of an account's, or one) and the range a statistics call covers.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub campaign_ids: Vec<i64>,
    pub range: crate::domain::stats::Range,
    /// The series' parts of the range (`Range::series_parts`).
    pub series_parts: Vec<(crate::domain::stats::Span, Millis, Millis)>,
}

/// The rollups of a [`StatsQuery`], added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsRows {
    /// (step, emails sent)
    pub emails: Vec<(i64, i64)>,
    /// (step, url, human, bot)
    pub links: Vec<(i64, String, i64, i64)>,
    /// (reason, bot clicks)
    pub reasons: Vec<(String, i64)>,
    /// (step, prospect) with a person's click; a pair may appear more than once.
    pub clickers: Vec<(i64, i64)>,
    /// (bucket start, human, bot): a row per campaign and quarter hour or hour, in no order.
    pub series: Vec<(Millis, i64, i64)>,
}

/// What proves a dashboard sign-in: an API key, or a one-time login link (their hashes).
#[derive(Debug, Clone)]
pub enum SignInWith {
    Key(String),
    Link(String),
}

/// A dashboard session to open.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    /// The token every form of the session carries.
    pub csrf: String,
    pub now: Millis,
    pub expires_at: Millis,
}

/// An open dashboard session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub account: crate::domain::Account,
    pub csrf: String,
}

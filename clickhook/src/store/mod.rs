//! Storage: one narrow interface, [`Store`], and its implementations.
//!
//! Everything the service keeps goes through this trait; nothing above it writes SQL.
//! Writes that must be durable before the caller answers (clicks above all) are
//! committed in groups by the implementation: the call returns only after its commit.
//!
//! Time is Unix milliseconds (`Millis`) everywhere in storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{CampaignStatus, EmailAddress, ProspectInput, StepType};

pub mod postgres;
pub mod sqlite;

pub type Millis = i64;

pub fn now_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database cannot be reached or is shutting down; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Per-account settings of the bot-click filter (`click_filter` in `/rest/v2/account`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickFilter {
    /// A click sooner than this after the email was sent is a scanner's.
    pub min_seconds_after_send: u32,
    /// Clicks on different links of one email within this many seconds are a scanner's.
    pub burst_seconds: u32,
    /// Add an invisible link to tracked HTML; whoever follows it is not a person.
    pub honeypot: bool,
    /// Send webhooks for bot clicks too (they are always recorded).
    pub deliver_bot_clicks: bool,
    /// Judge by the shipped lists of crawler user agents and scanner networks.
    pub known_scanners: bool,
}

impl Default for ClickFilter {
    fn default() -> Self {
        ClickFilter {
            min_seconds_after_send: 10,
            burst_seconds: 3,
            honeypot: false,
            deliver_bot_clicks: false,
            known_scanners: true,
        }
    }
}

impl ClickFilter {
    /// Longest burst window accepted; the event of every click waits this long at most.
    pub const MAX_BURST_SECONDS: u32 = 60;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    /// Snippet slot (1..=15) → label.
    pub snippet_labels: BTreeMap<u8, String>,
    pub click_filter: ClickFilter,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: Option<i64>,
    pub name: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub snippet_labels: Option<BTreeMap<u8, String>>,
    pub click_filter: Option<ClickFilter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prospect {
    pub id: i64,
    pub account_id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub website: String,
    pub linkedin_url: String,
    pub tags: String,
    pub title: String,
    pub phone: String,
    pub address: String,
    pub city: String,
    pub country: String,
    pub industry: String,
    pub state: String,
    pub snippets: [String; 15],
    pub status: String,
    pub interested: String,
    pub imported: String,
    /// Derived from the emails sent, never written directly.
    pub last_contacted: Option<Millis>,
    pub in_campaign: i64,
    pub emails_sent: i64,
    pub updated_at: Millis,
}

impl Prospect {
    /// The text fields, in the order of `domain::TEXT_FIELDS`.
    pub fn text_fields(&self) -> [&String; 13] {
        [
            &self.first_name,
            &self.last_name,
            &self.company,
            &self.website,
            &self.linkedin_url,
            &self.tags,
            &self.title,
            &self.phone,
            &self.address,
            &self.city,
            &self.country,
            &self.industry,
            &self.state,
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created(i64),
    Updated(i64),
    /// The email was known and `update` was off: nothing changed.
    Unchanged(i64),
}

impl Upserted {
    pub fn id(self) -> i64 {
        match self {
            Upserted::Created(id) | Upserted::Updated(id) | Upserted::Unchanged(id) => id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpsertProspects {
    pub prospects: Vec<ProspectInput>,
    pub update: bool,
    /// Becomes the prospects' `imported` (Woodpecker's `file_name`).
    pub imported: Option<String>,
    /// Enroll every prospect in this campaign too.
    pub campaign_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Email,
    FirstName,
    LastName,
    Company,
    Status,
    LastContacted,
    Updated,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id" => SortKey::Id,
            "email" => SortKey::Email,
            "first_name" => SortKey::FirstName,
            "last_name" => SortKey::LastName,
            "company" => SortKey::Company,
            "status" => SortKey::Status,
            "last_contacted" => SortKey::LastContacted,
            "updated" => SortKey::Updated,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProspectQuery {
    pub ids: Vec<i64>,
    pub status: Option<String>,
    /// `Some("")` selects prospects without an interest level.
    pub interested: Option<String>,
    pub campaign_ids: Vec<i64>,
    /// Case-insensitive substring matches on named fields (whitelisted by the API).
    pub search: Vec<(String, String)>,
    /// (key, descending)
    pub sort: Vec<(SortKey, bool)>,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(rename = "type")]
    pub step_type: String,
    pub track_links: bool,
}

impl Step {
    pub fn kind(&self) -> StepType {
        StepType::parse(&self.step_type).unwrap_or(StepType::Email)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub status: CampaignStatus,
    pub from_name: String,
    pub mailboxes: Vec<String>,
    pub steps: Vec<Step>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub id: Option<i64>,
    pub name: String,
    pub status: CampaignStatus,
    pub from_name: String,
    pub mailboxes: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default)]
pub struct CampaignPatch {
    pub name: Option<String>,
    pub status: Option<CampaignStatus>,
    pub from_name: Option<String>,
    pub mailboxes: Option<Vec<String>>,
    pub steps: Option<Vec<Step>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub campaign_id: i64,
    pub prospect_id: i64,
    pub step: Option<i64>,
    pub step_type: Option<String>,
    pub emails_sent: i64,
    pub followup_after: Option<Millis>,
    pub mailbox: Option<String>,
    pub stopped: bool,
}

#[derive(Debug, Clone, Default)]
pub struct EnrollmentPatch {
    pub step: Option<i64>,
    pub followup_after: Option<Option<Millis>>,
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
    pub verdict: Option<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ClickQuery {
    pub campaign_id: Option<i64>,
    pub prospect_id: Option<i64>,
    pub verdict: Option<String>,
    pub since: Option<Millis>,
    pub offset: i64,
    pub limit: i64,
}

/// A click whose verdict and event are still to be decided, with what deciding needs.
#[derive(Debug, Clone)]
pub struct PendingClick {
    pub id: i64,
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
    pub filter: ClickFilter,
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
        !self.released && !self.reasons.iter().any(|r| r == reason)
    }
}

/// The first judgement of a click, and what it changes in judgements made before it.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub click: NearbyClick,
    pub verdict: &'static str,
    pub reasons: Vec<String>,
}

/// An earlier click that a later one showed to be a bot's (a burst, a honeypot hit).
/// Applies only while that click's event is still held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrule {
    pub click_id: i64,
    pub reason: String,
}

/// A judged click whose burst window has passed: its verdict is final.
#[derive(Debug, Clone)]
pub struct HeldClick {
    pub id: i64,
    pub account_id: i64,
    pub email_id: i64,
    pub url: String,
    pub at: Millis,
    pub verdict: String,
    pub filter: ClickFilter,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub click_id: i64,
    pub account_id: i64,
    pub clicked_at: Millis,
    pub human: bool,
    /// The `link_clicked` element to deliver; `None` when the click produces no webhook.
    pub event: Option<String>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    pub account_id: i64,
    pub target_url: String,
    pub event: String,
    pub secret: String,
    pub status: String,
    pub created_at: Millis,
    pub last_success_at: Option<Millis>,
    pub last_failure_at: Option<Millis>,
    /// First failure since the last success.
    pub failing_since: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    Created(Subscription),
    Duplicate,
    TooMany,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time.
    Retry(Millis),
    /// The retry schedule is spent: kept as failed, replayable.
    Exhausted,
    /// 410 or a redirect: the subscription is removed at once, as Woodpecker does.
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: i64,
    pub subscription_id: i64,
    pub at: Millis,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i64,
    /// At most 1 KiB of the response body.
    pub response: String,
    pub outcome: AttemptOutcome,
    /// A subscription failing without a success for this long is disabled.
    pub disable_after_ms: i64,
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
    pub state: String,
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
    pub state: Option<String>,
    pub since: Option<Millis>,
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
    pub events_total: i64,
}

/// Background work waits for a quiet moment at most this long, then takes its turn anyway.
const BACKGROUND_PARK: std::time::Duration = std::time::Duration::from_secs(2);

/// When a store's click writer last committed clicks: background work reads it to keep its
/// transactions out of their way (`Store::clicks_flowing`).
#[derive(Default)]
pub(crate) struct LastClickCommit(std::sync::atomic::AtomicI64);

impl LastClickCommit {
    /// Clicks committed within this many milliseconds count as flowing.
    pub(crate) const FLOWING_MS: i64 = 50;

    pub(crate) fn mark(&self) {
        self.0.store(now_millis(), std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn flowing(&self) -> bool {
        now_millis() - self.0.load(std::sync::atomic::Ordering::Relaxed) < Self::FLOWING_MS
    }
}

/// A click's reasons as stored (a JSON array); none when it has no verdict yet.
pub(crate) fn parse_reasons(stored: Option<&str>) -> Vec<String> {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    /// Whether background work (settling) waits behind clicks in this store's own queue
    /// (SQLite's one writer parks it while clicks flow), so its rounds must stay short.
    fn background_may_starve(&self) -> bool {
        true
    }

    /// Said by the settler each round: whether it has fallen too far behind the clicks. While
    /// it has, background writes stop yielding to clicks and take their turn with them, so that
    /// under sustained load the outbox stays bounded and clicks slow down instead.
    fn settle_urgently(&self, _urgent: bool) {}

    /// Whether this node settles clicks now, alone: `Some(turn)` while it does, `None` while
    /// another node does (nodes sharing a database elect one settler; when it dies, another
    /// takes over). The settler remembers its own verdicts between rounds; `turn` changes
    /// whenever the role was lost and won again, so memory from an earlier turn, when others
    /// may have judged, is dropped. A store one process owns always answers `Some(0)`.
    async fn settler_turn(&self) -> StoreResult<Option<u64>> {
        Ok(Some(0))
    }

    /// Whether clicks were committed in the last fraction of a second: background work then
    /// keeps its transactions short, where they would hold up the clicks queued behind them.
    fn clicks_flowing(&self) -> bool {
        false
    }

    /// Called by background work before each round while it is not behind: returns once clicks
    /// leave the machine room, or after at most a couple of seconds, so a burst of clicks is
    /// not slowed down by settling (which catches up afterwards).
    async fn yield_to_clicks(&self) {
        let until = std::time::Instant::now() + BACKGROUND_PARK;
        while self.clicks_flowing() && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(LastClickCommit::FLOWING_MS as u64 / 2)).await;
        }
    }

    // Accounts and keys.
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn account(&self, id: i64) -> StoreResult<Account>;
    async fn update_account(&self, id: i64, patch: AccountPatch) -> StoreResult<Account>;
    async fn add_api_key(&self, account_id: i64, key_hash: String, prefix: String) -> StoreResult<ApiKeyInfo>;
    async fn revoke_api_key(&self, account_id: i64, prefix: &str) -> StoreResult<()>;
    async fn list_api_keys(&self, account_id: i64) -> StoreResult<Vec<ApiKeyInfo>>;
    async fn account_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Account>>;

    // Prospects.
    async fn upsert_prospects(&self, account_id: i64, req: UpsertProspects) -> StoreResult<Vec<Upserted>>;
    async fn list_prospects(&self, account_id: i64, q: ProspectQuery) -> StoreResult<(i64, Vec<Prospect>)>;
    async fn delete_prospects(&self, account_id: i64, ids: Vec<i64>) -> StoreResult<i64>;
    /// Stops the prospect in every campaign; returns false when the email is unknown.
    async fn stop_followups(&self, account_id: i64, email: &EmailAddress) -> StoreResult<bool>;

    // Campaigns and enrollments.
    async fn create_campaign(&self, account_id: i64, new: NewCampaign) -> StoreResult<Campaign>;
    async fn list_campaigns(&self, account_id: i64) -> StoreResult<Vec<Campaign>>;
    async fn campaign(&self, account_id: i64, id: i64) -> StoreResult<Campaign>;
    async fn update_campaign(&self, account_id: i64, id: i64, patch: CampaignPatch) -> StoreResult<Campaign>;
    async fn delete_campaign(&self, account_id: i64, id: i64) -> StoreResult<()>;
    async fn update_enrollment(
        &self,
        account_id: i64,
        campaign_id: i64,
        prospect_id: i64,
        patch: EnrollmentPatch,
    ) -> StoreResult<Enrollment>;

    // Sent emails and their links.
    async fn record_email(&self, account_id: i64, email: NewEmail) -> StoreResult<SentEmail>;
    async fn link_target(&self, email_id: i64, link_no: i64) -> StoreResult<Option<LinkTarget>>;

    // Clicks.
    /// Returns once the click is committed: only then may the redirect be answered.
    async fn record_click(&self, click: NewClick) -> StoreResult<()>;
    async fn list_clicks(&self, account_id: i64, q: ClickQuery) -> StoreResult<(i64, Vec<ClickRecord>)>;
    /// The oldest clicks not judged yet, at most `limit`, oldest first.
    async fn pending_clicks(&self, limit: i64) -> StoreResult<Vec<PendingClick>>;
    /// Judged clicks on these emails between `from` and `to`.
    async fn clicks_near(&self, email_ids: Vec<i64>, from: Millis, to: Millis) -> StoreResult<Vec<NearbyClick>>;
    /// Records first judgements and overrules earlier ones that are still held, in one transaction.
    async fn judge_clicks(&self, judged: Vec<Judgement>, overruled: Vec<Overrule>) -> StoreResult<()>;
    /// Judged clicks not yet released whose burst window closed by `frontier`, oldest first.
    async fn held_clicks(&self, frontier: Millis, limit: i64) -> StoreResult<Vec<HeldClick>>;
    async fn event_contexts(&self, email_ids: Vec<i64>) -> StoreResult<HashMap<i64, EventContext>>;
    /// Makes verdicts final and writes the events to deliver, in one transaction.
    async fn release_clicks(&self, released: Vec<Release>) -> StoreResult<()>;
    async fn outbox_depth(&self) -> StoreResult<OutboxDepth>;

    // Webhook subscriptions.
    async fn subscribe(
        &self,
        account_id: i64,
        target_url: &str,
        event: &str,
        secret: String,
    ) -> StoreResult<Subscribed>;
    async fn unsubscribe(&self, account_id: i64, target_url: &str, event: &str) -> StoreResult<bool>;
    async fn list_subscriptions(&self, account_id: i64) -> StoreResult<Vec<Subscription>>;

    // Webhook delivery.
    /// Turns each active subscription's new events into batches: up to `max_events`, cut once
    /// the oldest has waited `window_ms` (or the batch is full). Returns when the earliest
    /// window still open closes, so the caller can come back exactly then.
    async fn cut_batches(&self, now: Millis, window_ms: i64, max_events: i64) -> StoreResult<Option<Millis>>;
    /// Leases up to `limit` due deliveries of active subscriptions until `now + lease_ms`, at
    /// most `per_subscription` of each (the oldest due first), so that one endpoint's backlog
    /// never fills a round and no claimed batch waits unsent for its endpoint's cap.
    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_ms: i64,
        limit: i64,
        per_subscription: i64,
    ) -> StoreResult<Vec<Claimed>>;
    /// Logs an attempt and applies its outcome; ends the lease.
    async fn finish_attempt(&self, attempt: Attempt) -> StoreResult<()>;
    /// Gives back leases taken but not used.
    async fn release_leases(&self, ids: Vec<i64>) -> StoreResult<()>;
    async fn list_deliveries(&self, account_id: i64, q: DeliveryQuery) -> StoreResult<(i64, Vec<DeliveryRecord>)>;
    async fn replay_delivery(&self, account_id: i64, id: i64, now: Millis) -> StoreResult<()>;
    async fn replay_failed(&self, account_id: i64, subscription_id: i64, now: Millis) -> StoreResult<i64>;
    async fn subscription(&self, account_id: i64, id: i64) -> StoreResult<Subscription>;
    async fn set_subscription_status(&self, account_id: i64, id: i64, status: &str) -> StoreResult<Subscription>;
    async fn set_subscription_secret(&self, account_id: i64, id: i64, secret: String) -> StoreResult<Subscription>;
    /// Queues a delivery with a body of its own (the `test` endpoint).
    async fn add_test_delivery(
        &self,
        account_id: i64,
        subscription_id: i64,
        body: String,
        now: Millis,
    ) -> StoreResult<i64>;
    async fn backlog(&self) -> StoreResult<Vec<Backlog>>;

    // Keys that sign tracked links.
    async fn link_keys(&self) -> StoreResult<Vec<LinkKey>>;
    async fn add_link_key(&self, secret: Vec<u8>) -> StoreResult<LinkKey>;
    async fn remove_link_key(&self, id: i64) -> StoreResult<()>;

    /// Commits what is queued and stops accepting writes.
    async fn close(&self);
}

/// Where a sent email belongs: its step must exist in the campaign; its mailbox, when given,
/// must be one of the campaign's (any case), else it is the enrollment's, else the campaign's first.
pub(crate) fn email_step_and_mailbox<'c>(
    campaign: &'c Campaign,
    enrollment: &Enrollment,
    step: i64,
    mailbox: Option<String>,
) -> StoreResult<(&'c Step, String)> {
    let found = usize::try_from(step - 1).ok().and_then(|i| campaign.steps.get(i)).ok_or_else(|| {
        StoreError::Invalid(format!(
            "step {} does not exist; campaign {} has {} steps",
            step,
            campaign.id,
            campaign.steps.len()
        ))
    })?;
    let mailbox = match mailbox {
        Some(m) if campaign.mailboxes.iter().any(|x| x.eq_ignore_ascii_case(&m)) => m,
        Some(m) => return Err(StoreError::Invalid(format!("mailbox {m:?} is not one of campaign {}'s", campaign.id))),
        None => enrollment.mailbox.clone().or_else(|| campaign.mailboxes.first().cloned()).unwrap_or_default(),
    };
    Ok((found, mailbox))
}

/// Applies given fields over `p` (all of them when creating).
pub(crate) fn apply_fields(p: &mut Prospect, input: &ProspectInput) {
    let f = &input.fields;
    let text: [(&mut String, &Option<String>); 13] = [
        (&mut p.first_name, &f.first_name),
        (&mut p.last_name, &f.last_name),
        (&mut p.company, &f.company),
        (&mut p.website, &f.website),
        (&mut p.linkedin_url, &f.linkedin_url),
        (&mut p.tags, &f.tags),
        (&mut p.title, &f.title),
        (&mut p.phone, &f.phone),
        (&mut p.address, &f.address),
        (&mut p.city, &f.city),
        (&mut p.country, &f.country),
        (&mut p.industry, &f.industry),
        (&mut p.state, &f.state),
    ];
    for (slot, given) in text {
        if let Some(v) = given {
            *slot = v.clone();
        }
    }
    for (slot, given) in p.snippets.iter_mut().zip(&f.snippets) {
        if let Some(v) = given {
            *slot = v.clone();
        }
    }
    if let Some(s) = f.status {
        p.status = s.as_str().to_string();
    }
    if let Some(i) = f.interested {
        p.interested = i.map(|i| i.as_str().to_string()).unwrap_or_default();
    }
    p.email = input.email.as_str().to_string();
}

pub(crate) fn blank_prospect(account_id: i64) -> Prospect {
    Prospect {
        id: 0,
        account_id,
        email: String::new(),
        first_name: String::new(),
        last_name: String::new(),
        company: String::new(),
        website: String::new(),
        linkedin_url: String::new(),
        tags: String::new(),
        title: String::new(),
        phone: String::new(),
        address: String::new(),
        city: String::new(),
        country: String::new(),
        industry: String::new(),
        state: String::new(),
        snippets: Default::default(),
        status: "ACTIVE".into(),
        interested: String::new(),
        imported: String::new(),
        last_contacted: None,
        in_campaign: 0,
        emails_sent: 0,
        updated_at: 0,
    }
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store named by `--db`: a `postgres://` URL or an SQLite file path.
/// Runs pending migrations; refuses a database whose schema is newer than this binary.
pub async fn open(db: &str) -> anyhow::Result<DynStore> {
    open_with(db, Durability::default()).await
}

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Committed data survive the process being killed; the OS writes them to disk moments
    /// later, so a power cut can lose that last moment. (SQLite WAL, synchronous=NORMAL.)
    #[default]
    Process,
    /// Every commit also waits for fsync: survives power loss, at a cost in throughput.
    Power,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(Durability::Process),
            "power" => Ok(Durability::Power),
            _ => Err(format!("durability must be process or power, not {s:?}")),
        }
    }
}

pub async fn open_with(db: &str, durability: Durability) -> anyhow::Result<DynStore> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        // PostgreSQL commits are always durable (synchronous_commit as the server sets it).
        return Ok(Arc::new(postgres::PgStore::open(db).await?));
    }
    let synchronous = match durability {
        Durability::Process => "NORMAL",
        Durability::Power => "FULL",
    };
    let opts = sqlite::Options { synchronous, ..sqlite::Options::default() };
    let store = sqlite::SqliteStore::open(std::path::Path::new(db), opts).await?;
    Ok(Arc::new(store))
}

/// The column a prospects list sorts on (both stores alias the query the same way).
pub(crate) fn sort_column(k: SortKey) -> &'static str {
    match k {
        SortKey::Id => "p.id",
        SortKey::Email => "p.email_key",
        SortKey::FirstName => "p.first_name",
        SortKey::LastName => "p.last_name",
        SortKey::Company => "p.company",
        SortKey::Status => "p.status",
        SortKey::LastContacted => "last_contacted",
        SortKey::Updated => "p.updated_at",
    }
}

/// `%`, `_` and `\` are literal in a search term.
pub(crate) fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nearby(released: bool, reasons: &str) -> NearbyClick {
        let reasons = parse_reasons(Some(reasons).filter(|r| !r.is_empty()));
        NearbyClick { click_id: 1, email_id: 1, link_no: 1, at: 0, honeypot: false, released, reasons }
    }

    #[test]
    fn overrules_only_what_it_would_change() {
        assert!(nearby(false, "").may_overrule("burst_of_links"));
        assert!(nearby(false, r#"["too_soon_after_send"]"#).may_overrule("burst_of_links"));
        assert!(!nearby(false, r#"["too_soon_after_send","burst_of_links"]"#).may_overrule("burst_of_links"));
        // A reason that merely contains the name is another reason.
        assert!(nearby(false, r#"["burst_of_links_x"]"#).may_overrule("burst_of_links"));
        assert!(!nearby(true, "").may_overrule("burst_of_links"));
    }
}

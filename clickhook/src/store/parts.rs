//! The store's interface, one trait per concern. Every method that reads or writes an
//! account's data takes the account id and filters on it: another account's ids are
//! indistinguishable from missing ones.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::error::StoreResult;
use super::records::*;
use super::schedule::Scheduling;
use crate::domain::delivery::Subscribed;
use crate::domain::import::ImportState;
use crate::domain::prospect::Upserted;
use crate::domain::retention::EventUse;
use crate::domain::tracking_domain::{DomainAdded, DomainName, TrackingDomain};
use crate::domain::{
    Account, AccountPatch, Campaign, CampaignPatch, EmailAddress, Enrollment, EnrollmentKey, EnrollmentPatch, Millis,
    NewAccount, NewCampaign, Prospect, Subscription, SubscriptionStatus,
};

/// Accounts, their API keys, and the server's link-signing keys.
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn account(&self, id: i64) -> StoreResult<Account>;
    async fn update_account(&self, id: i64, patch: AccountPatch) -> StoreResult<Account>;
    async fn add_api_key(&self, account_id: i64, key_hash: String, prefix: String) -> StoreResult<ApiKeyInfo>;
    /// Revokes the key and ends the dashboard sessions signed in with it.
    async fn revoke_api_key(&self, account_id: i64, prefix: &str) -> StoreResult<()>;
    async fn list_api_keys(&self, account_id: i64) -> StoreResult<Vec<ApiKeyInfo>>;
    async fn account_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Account>>;

    async fn link_keys(&self) -> StoreResult<Vec<LinkKey>>;
    /// The link keys, after storing `first` when there are none: nodes that start at once on a
    /// new database agree on one key instead of each signing with its own.
    async fn link_keys_or_first(&self, first: Vec<u8>) -> StoreResult<Vec<LinkKey>>;
    async fn add_link_key(&self, secret: Vec<u8>) -> StoreResult<LinkKey>;
    async fn remove_link_key(&self, id: i64) -> StoreResult<()>;
}

#[async_trait]
pub trait ProspectStore: Send + Sync {
    /// Merges a chunk of prospects by email (`domain::prospect::UpsertPlan`), in one transaction.
    async fn upsert_prospects(&self, account_id: i64, req: UpsertProspects) -> StoreResult<Vec<Upserted>>;
    async fn list_prospects(&self, account_id: i64, q: ProspectQuery) -> StoreResult<(i64, Vec<Prospect>)>;
    /// Deletes prospects with their enrollments, emails, links and clicks.
    async fn delete_prospects(&self, account_id: i64, ids: Vec<i64>) -> StoreResult<i64>;
    /// Stops the prospect in every campaign; returns false when the email is unknown.
    async fn stop_followups(&self, account_id: i64, email: &EmailAddress) -> StoreResult<bool>;
    /// Starts an import (`domain::import`): its chunks journal what they change.
    async fn begin_import(&self, account_id: i64, campaign_id: Option<i64>) -> StoreResult<i64>;
    /// Ends a running import, to be kept or undone; a conflict when it no longer runs (it was
    /// abandoned, and is being undone).
    async fn end_import(&self, id: i64, to: ImportState) -> StoreResult<()>;
    /// One step of tidying an ended import away ([`TIDY_STEP`] journal entries, undone first
    /// if it is undoing); true once nothing of the import is left to tidy.
    ///
    /// [`TIDY_STEP`]: crate::domain::import::TIDY_STEP
    async fn tidy_import(&self, id: i64) -> StoreResult<bool>;
    /// Marks the running imports untouched since `abandoned_before` as undoing, and returns
    /// every ended import that is still to be tidied.
    async fn ended_imports(&self, abandoned_before: Millis) -> StoreResult<Vec<i64>>;
}

/// Campaigns, enrollments, sent emails and their links.
#[async_trait]
pub trait CampaignStore: Send + Sync {
    async fn create_campaign(&self, account_id: i64, new: NewCampaign) -> StoreResult<Campaign>;
    async fn list_campaigns(&self, account_id: i64) -> StoreResult<Vec<Campaign>>;
    async fn campaign(&self, account_id: i64, id: i64) -> StoreResult<Campaign>;
    async fn update_campaign(&self, account_id: i64, id: i64, patch: CampaignPatch) -> StoreResult<Campaign>;
    /// Deletes a campaign with its enrollments, emails, links and clicks.
    async fn delete_campaign(&self, account_id: i64, id: i64) -> StoreResult<()>;
    async fn update_enrollment(&self, account: i64, of: EnrollmentKey, p: EnrollmentPatch) -> StoreResult<Enrollment>;
    async fn record_email(&self, account_id: i64, email: NewEmail) -> StoreResult<SentEmail>;
    async fn link_target(&self, email_id: i64, link_no: i64) -> StoreResult<Option<LinkTarget>>;
    /// Counts deletes that took links away, on every node: a link cache that saw a smaller
    /// number may hold links that are gone.
    async fn links_removed(&self) -> StoreResult<i64>;
}

/// Clicks, and settling them into verdicts and events.
/// Click statistics, read from the rollups that releasing clicks and recording emails keep.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// The rollups a statistics query reads, with every click released before the call.
    async fn stats(&self, q: StatsQuery) -> StoreResult<StatsRows>;
    /// Adds the clicks released since the last pass to the statistics where a store counts
    /// them behind the release (SQLite: a pass writes each busy rollup row once for many
    /// releases); nothing where each release counts its own clicks (PostgreSQL, whose click
    /// ids may commit out of order, so that no cursor over them is safe).
    async fn count_released(&self) -> StoreResult<()>;
}

#[async_trait]
pub trait ClickStore: Send + Sync {
    /// Returns once the click is committed: only then may the redirect be answered.
    async fn record_click(&self, click: NewClick) -> StoreResult<()>;
    async fn list_clicks(&self, account_id: i64, q: ClickQuery) -> StoreResult<(i64, Vec<ClickRecord>)>;
    /// The oldest clicks not judged yet, at most `limit`, oldest first, but for those in `held`
    /// (ascending): judged by this node's settler, which holds them in memory, their rows still
    /// unjudged (`click::holding`).
    async fn pending_clicks(&self, limit: i64, held: Vec<i64>) -> StoreResult<Vec<PendingClick>>;
    /// Every account's burst window (`ClickFilter::burst_window_ms`) as its filter says now.
    async fn burst_windows(&self) -> StoreResult<HashMap<i64, Millis>>;
    /// Every judged click made at or after `since`, on any email: the burst history a settler
    /// starts its turn from (`click::recent`).
    async fn judged_since(&self, since: Millis) -> StoreResult<Vec<JudgedClick>>;
    /// The verdicts of these clicks, those still held.
    async fn held_verdicts(&self, ids: Vec<i64>) -> StoreResult<Vec<HeldVerdict>>;
    /// Records first judgements and the overrules of earlier ones, in one transaction.
    async fn judge_clicks(&self, judged: Vec<Judgement>, overruled: Vec<Overrule>) -> StoreResult<()>;
    /// Judged clicks not yet released made by `frontier`, oldest first.
    async fn held_clicks(&self, frontier: Millis, limit: i64) -> StoreResult<Vec<HeldClick>>;
    async fn event_contexts(&self, email_ids: Vec<i64>) -> StoreResult<HashMap<i64, EventContext>>;
    /// Makes verdicts final and writes the events to deliver, in one transaction. A click held
    /// in memory (`Release::judged`) gets its verdict (and its burst history row) here too.
    async fn release_clicks(&self, released: Vec<Release>) -> StoreResult<()>;
    async fn outbox_depth(&self) -> StoreResult<OutboxDepth>;
    /// Deletes clicks whose email is gone (clicked in the moment before a node saw the delete).
    async fn forget_orphan_clicks(&self, ids: Vec<i64>) -> StoreResult<()>;
    /// Deletes judged, released clicks made before `before`, among the oldest `limit` clicks;
    /// returns how many went.
    async fn prune_clicks(&self, before: Millis, limit: i64) -> StoreResult<u64>;
}

/// Webhook subscriptions, batches, leases and the attempt log.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    async fn subscribe(&self, account: i64, target_url: &str, event: &str, secret: String) -> StoreResult<Subscribed>;
    async fn unsubscribe(&self, account_id: i64, target_url: &str, event: &str) -> StoreResult<bool>;
    async fn list_subscriptions(&self, account_id: i64) -> StoreResult<Vec<Subscription>>;
    async fn subscription(&self, account_id: i64, id: i64) -> StoreResult<Subscription>;
    async fn set_subscription_status(&self, account: i64, id: i64, to: SubscriptionStatus)
        -> StoreResult<Subscription>;
    async fn set_subscription_secret(&self, account_id: i64, id: i64, secret: String) -> StoreResult<Subscription>;

    /// Turns each active subscription's new events into batches (`domain::delivery::Cut`).
    /// Returns when the earliest window still open closes, so the caller can come back then.
    async fn cut_batches(&self, now: Millis, window_ms: i64, max_events: i64) -> StoreResult<Option<Millis>>;
    /// Leases due deliveries of active subscriptions until `now + lease_ms`, as many as `room`
    /// has for each (the oldest due first), so that one endpoint's backlog never fills a round
    /// and no claimed batch waits unsent for its endpoint's cap.
    async fn claim_deliveries(&self, now: Millis, lease: i64, room: ClaimRoom) -> StoreResult<Vec<Claimed>>;
    /// Logs an attempt and applies its effects (`domain::delivery::AttemptResult::effects`);
    /// ends the lease.
    async fn finish_attempt(&self, attempt: Attempt) -> StoreResult<()>;
    /// Gives back leases taken but not used.
    async fn release_leases(&self, ids: Vec<i64>) -> StoreResult<()>;
    async fn list_deliveries(&self, account_id: i64, q: DeliveryQuery) -> StoreResult<(i64, Vec<DeliveryRecord>)>;
    async fn replay_delivery(&self, account_id: i64, id: i64, now: Millis) -> StoreResult<()>;
    async fn replay_failed(&self, account_id: i64, subscription_id: i64, now: Millis) -> StoreResult<i64>;
    /// Queues a delivery with a body of its own (the `test` endpoint).
    async fn add_test_delivery(&self, account_id: i64, sub_id: i64, body: String, now: Millis) -> StoreResult<i64>;
    async fn backlog(&self) -> StoreResult<Vec<Backlog>>;
    /// Deletes up to `limit` batches delivered before `before`, with their attempts.
    async fn prune_deliveries(&self, before: Millis, limit: i64) -> StoreResult<u64>;
    /// What the account's events are still needed for (`domain::retention::EventUse`).
    async fn event_use(&self, account_id: i64) -> StoreResult<EventUse>;
    /// Deletes the account's events below `floor` written before `before`, among its oldest
    /// `limit` events.
    async fn prune_events(&self, account_id: i64, floor: i64, before: Millis, limit: i64) -> StoreResult<u64>;
}

/// Accounts' own tracking domains (`domain::tracking_domain`).
#[async_trait]
pub trait DomainStore: Send + Sync {
    /// Adds a pending domain, unless an account has it or this one has too many.
    async fn add_tracking_domain(&self, account_id: i64, domain: DomainName) -> StoreResult<DomainAdded>;
    async fn tracking_domains(&self, account_id: i64) -> StoreResult<Vec<TrackingDomain>>;
    async fn tracking_domain(&self, account_id: i64, id: i64) -> StoreResult<TrackingDomain>;
    /// Makes this domain the account's default, and no other.
    async fn set_default_domain(&self, account_id: i64, id: i64) -> StoreResult<TrackingDomain>;
    async fn delete_tracking_domain(&self, account_id: i64, id: i64) -> StoreResult<()>;
    /// Stores what a check made of a domain (`TrackingDomain::checked`).
    async fn record_domain_check(&self, checked: &TrackingDomain) -> StoreResult<()>;
    /// Takes up to `limit` domains not checked since `due` (never-checked first), marking
    /// them checked at `now` so that another node does not take them too.
    async fn domains_due(&self, due: Millis, now: Millis, limit: i64) -> StoreResult<Vec<TrackingDomain>>;
    /// Every verified domain, with its account.
    async fn verified_domains(&self) -> StoreResult<Vec<(String, i64)>>;
}

/// The dashboard's sign-ins: one-time login links and sessions (`app::session`).
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a one-time login link for the account until `expires_at`.
    async fn add_login_link(&self, account_id: i64, link_hash: String, expires_at: Millis) -> StoreResult<()>;
    /// Opens a session if `with` proves an account (a key not revoked, a link not used nor
    /// expired; the link is used up); returns the account.
    async fn sign_in(&self, with: SignInWith, session: NewSession) -> StoreResult<Option<i64>>;
    /// The live session with this token: not expired, and its key (if any) not revoked.
    async fn session(&self, token_hash: &str, now: Millis) -> StoreResult<Option<SessionRecord>>;
    async fn end_session(&self, token_hash: &str) -> StoreResult<()>;
}

/// All parts of a store together.
#[async_trait]
pub trait Store:
    AccountStore
    + ProspectStore
    + CampaignStore
    + ClickStore
    + DeliveryStore
    + DomainStore
    + StatsStore
    + SessionStore
    + Scheduling
    + 'static
{
    fn backend(&self) -> &'static str;

    /// Whether the store can write now; the reason when it cannot.
    async fn writable(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Makes the space of deleted rows reusable, once per pruning pass. SQLite reuses freed
    /// pages by itself; PostgreSQL needs VACUUM, which autovacuum does unless it is off.
    async fn reclaim(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Commits what is queued and stops accepting writes.
    async fn close(&self);
}

pub type DynStore = Arc<dyn Store>;

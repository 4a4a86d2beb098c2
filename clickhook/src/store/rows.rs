//! From rows to records, written once for both dialects.
//!
//! Each dialect reads its rows through [`Columns`]; the mappers here turn them into records,
//! and the `*_COLS` lists are the select lists they expect, in order. A stored value that does
//! not parse (an unknown verdict, unreadable JSON) is an error, never a silent default.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::error::{StoreError, StoreResult};
use super::records::*;
use crate::domain::campaign::{Campaign, CampaignStatus, Enrollment, EnrollmentKey, StepType};
use crate::domain::click::{ReleaseRule, Verdict};
use crate::domain::delivery::{DeliveryState, Subscription, SubscriptionHealth, SubscriptionStatus};
use crate::domain::import::{ImportState, UndoEntry, UndoKind};
use crate::domain::prospect::{Interested, Prospect, ProspectStatus, TEXT_FIELDS};
use crate::domain::tracking_domain::{DomainName, DomainStatus, TrackingDomain};
use crate::domain::{Account, ClickFilter, Millis, ParseError};

/// A column's value as a dialect reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

/// One row as a dialect reads it, by column index. A dialect says how its values read;
/// what each record expects of them is written once, here.
pub trait Columns {
    fn value(&self, i: usize) -> StoreResult<Value>;

    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(v)),
            other => Err(unexpected(i, "an integer", &other)),
        }
    }
    fn int(&self, i: usize) -> StoreResult<i64> {
        self.opt_int(i)?.ok_or_else(|| unexpected(i, "an integer", &Value::Null))
    }
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            other => Err(unexpected(i, "text", &other)),
        }
    }
    fn text(&self, i: usize) -> StoreResult<String> {
        self.opt_text(i)?.ok_or_else(|| unexpected(i, "text", &Value::Null))
    }
    /// A boolean: SQLite stores 0 and 1.
    fn flag(&self, i: usize) -> StoreResult<bool> {
        match self.value(i)? {
            Value::Bool(b) => Ok(b),
            Value::Int(v @ (0 | 1)) => Ok(v == 1),
            other => Err(unexpected(i, "a boolean", &other)),
        }
    }
    fn bytes(&self, i: usize) -> StoreResult<Vec<u8>> {
        match self.value(i)? {
            Value::Bytes(b) => Ok(b),
            other => Err(unexpected(i, "bytes", &other)),
        }
    }
}

fn unexpected(i: usize, wanted: &str, got: &Value) -> StoreError {
    StoreError::Other(format!("column {i} holds {got:?} where {wanted} was expected"))
}

/// A column holding JSON.
pub fn json<T: DeserializeOwned>(r: &dyn Columns, i: usize, what: &str) -> StoreResult<T> {
    serde_json::from_str(&r.text(i)?).map_err(|e| StoreError::corrupt(what, e))
}

/// A column holding one of a domain type's names.
pub fn parsed<T>(r: &dyn Columns, i: usize, what: &str, parse: fn(&str) -> Result<T, ParseError>) -> StoreResult<T> {
    parse(&r.text(i)?).map_err(|e| StoreError::corrupt(what, e))
}

/// A click's reasons as stored (a JSON array); none when it has no verdict yet.
pub fn reasons(stored: Option<String>) -> StoreResult<Vec<String>> {
    stored.map_or(Ok(Vec::new()), |s| serde_json::from_str(&s).map_err(|e| StoreError::corrupt("reasons", e)))
}

pub fn to_json(v: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(format!("cannot serialize: {e}")))
}

pub const ACCOUNT_COLS: &str = "a.id, a.name, a.timezone, a.snippet_labels, a.click_filter, a.created_at";

pub fn account(r: &dyn Columns) -> StoreResult<Account> {
    Ok(Account {
        id: r.int(0)?,
        name: r.text(1)?,
        timezone: r.text(2)?,
        snippet_labels: json::<BTreeMap<u8, String>>(r, 3, "snippet labels")?,
        click_filter: json::<ClickFilter>(r, 4, "click filter")?,
        created_at: r.int(5)?,
    })
}

pub const API_KEY_COLS: &str = "id, account_id, prefix, created_at, revoked_at";

pub fn api_key(r: &dyn Columns) -> StoreResult<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: r.int(0)?,
        account_id: r.int(1)?,
        prefix: r.text(2)?,
        created_at: r.int(3)?,
        revoked_at: r.opt_int(4)?,
    })
}

pub fn link_key(r: &dyn Columns) -> StoreResult<LinkKey> {
    Ok(LinkKey { id: r.int(0)?, secret: r.bytes(1)?, created_at: r.int(2)? })
}

/// A prospect's stored columns, then the fields derived from its emails and enrollments.
pub const PROSPECT_COLS: &str = "p.id, p.account_id, p.email, p.first_name, p.last_name, p.company, p.website, \
    p.linkedin_url, p.tags, p.title, p.phone, p.address, p.city, p.country, p.industry, p.state, p.snippets, \
    p.status, p.interested, p.imported, p.updated_at, \
    (SELECT max(e.sent_at) FROM emails e WHERE e.prospect_id = p.id) AS last_contacted, \
    (SELECT count(*) FROM enrollments n WHERE n.prospect_id = p.id) AS in_campaign, \
    (SELECT count(*) FROM emails e WHERE e.prospect_id = p.id) AS emails_sent";

/// The columns an upsert writes, besides id, account and times, in [`prospect_values`] order.
pub fn prospect_write_cols() -> [&'static str; 19] {
    std::array::from_fn(|i| match i {
        0 => "email",
        1 => "email_key",
        2..=14 => TEXT_FIELDS[i - 2],
        15 => "snippets",
        16 => "status",
        17 => "interested",
        _ => "imported",
    })
}

/// A prospect's values for [`prospect_write_cols`].
pub fn prospect_values(p: &Prospect) -> StoreResult<[String; 19]> {
    let t = p.text_fields();
    Ok([
        p.email.clone(),
        p.email_key(),
        t[0].clone(),
        t[1].clone(),
        t[2].clone(),
        t[3].clone(),
        t[4].clone(),
        t[5].clone(),
        t[6].clone(),
        t[7].clone(),
        t[8].clone(),
        t[9].clone(),
        t[10].clone(),
        t[11].clone(),
        t[12].clone(),
        to_json(&p.snippets)?,
        p.status.as_str().to_string(),
        p.interested.map(Interested::as_str).unwrap_or_default().to_string(),
        p.imported.clone(),
    ])
}

/// A prospect's stored values as an import's journal keeps them: `updated_at`, then the
/// values of [`prospect_write_cols`].
pub fn prospect_before(p: &Prospect) -> StoreResult<String> {
    to_json(&(p.updated_at, prospect_values(p)?))
}

/// What [`prospect_before`] kept.
pub fn prospect_restore(before: &str) -> StoreResult<(Millis, [String; 19])> {
    serde_json::from_str(before).map_err(|e| StoreError::corrupt("import journal entry", e))
}

/// Each overwritten prospect of an upsert with its values before: `existing` is what the
/// upsert read, `changed` what it writes.
pub fn befores(existing: &[Prospect], changed: &[Prospect]) -> StoreResult<Vec<(i64, String)>> {
    let before: HashMap<i64, &Prospect> = existing.iter().map(|p| (p.id, p)).collect();
    changed.iter().filter_map(|p| before.get(&p.id).map(|b| Ok((p.id, prospect_before(b)?)))).collect()
}

pub const UNDO_COLS: &str = "id, first_id, last_id, kind, before";

/// A journal entry with its place in the journal.
pub fn undo_entry(r: &dyn Columns) -> StoreResult<(i64, UndoEntry)> {
    let kind = parsed(r, 3, "undo kind", UndoKind::parse)?;
    Ok((r.int(0)?, UndoEntry { first: r.int(1)?, last: r.int(2)?, kind, before: r.opt_text(4)? }))
}

pub const IMPORT_COLS: &str = "account_id, campaign_id, state";

/// An import's account, campaign and state.
pub fn import(r: &dyn Columns) -> StoreResult<(i64, Option<i64>, ImportState)> {
    Ok((r.int(0)?, r.opt_int(1)?, parsed(r, 2, "import state", ImportState::parse)?))
}

pub fn prospect(r: &dyn Columns) -> StoreResult<Prospect> {
    let snippets: Vec<String> = json(r, 16, "snippets")?;
    let mut p = Prospect::blank(r.int(1)?);
    p.id = r.int(0)?;
    p.email = r.text(2)?;
    let mut text: [String; 13] = Default::default();
    for (i, slot) in text.iter_mut().enumerate() {
        *slot = r.text(3 + i)?;
    }
    p.set_text_fields(text);
    for (slot, s) in p.snippets.iter_mut().zip(snippets) {
        *slot = s;
    }
    p.status = parsed(r, 17, "prospect status", ProspectStatus::parse)?;
    p.interested = parsed(r, 18, "interest level", Interested::parse_optional)?;
    p.imported = r.text(19)?;
    p.updated_at = r.int(20)?;
    p.last_contacted = r.opt_int(21)?;
    p.in_campaign = r.int(22)?;
    p.emails_sent = r.int(23)?;
    Ok(p)
}

pub const CAMPAIGN_COLS: &str = "id, account_id, name, status, from_name, mailboxes, steps, created_at";

pub fn campaign(r: &dyn Columns) -> StoreResult<Campaign> {
    Ok(Campaign {
        id: r.int(0)?,
        account_id: r.int(1)?,
        name: r.text(2)?,
        status: parsed(r, 3, "campaign status", CampaignStatus::parse)?,
        from_name: r.text(4)?,
        mailboxes: json(r, 5, "mailboxes")?,
        steps: json(r, 6, "steps")?,
        created_at: r.int(7)?,
    })
}

pub const ENROLLMENT_COLS: &str =
    "campaign_id, prospect_id, step, step_type, emails_sent, followup_after, mailbox, stopped";

pub fn enrollment(r: &dyn Columns) -> StoreResult<Enrollment> {
    Ok(Enrollment {
        campaign_id: r.int(0)?,
        prospect_id: r.int(1)?,
        step: r.opt_int(2)?,
        step_type: r
            .opt_text(3)?
            .map(|s| StepType::parse(&s).map_err(|e| StoreError::corrupt("step type", e)))
            .transpose()?,
        emails_sent: r.int(4)?,
        followup_after: r.opt_int(5)?,
        mailbox: r.opt_text(6)?,
        stopped: r.flag(7)?,
    })
}

/// The parts of a `link_clicked` element that come from the email, its account and campaign.
pub const EVENT_HEAD: &str = "SELECT e.account_id, e.campaign_id, e.prospect_id, e.step, e.email_no, a.timezone, \
    a.snippet_labels, c.name, c.mailboxes FROM emails e JOIN accounts a ON a.id = e.account_id \
    JOIN campaigns c ON c.id = e.campaign_id WHERE e.id = ";

/// [`EVENT_HEAD`]'s row. Its prospect and enrollment are read after it: until then they hold
/// only their ids (`prospect.id`, `enrollment.campaign_id` and `prospect_id`).
pub fn event_context(r: &dyn Columns) -> StoreResult<EventContext> {
    let (account_id, campaign_id, prospect_id) = (r.int(0)?, r.int(1)?, r.int(2)?);
    Ok(EventContext {
        account_id,
        campaign_id,
        email_step: r.int(3)?,
        email_no: r.int(4)?,
        timezone: r.text(5)?,
        snippet_labels: json(r, 6, "snippet labels")?,
        campaign_name: r.text(7)?,
        campaign_mailboxes: json(r, 8, "mailboxes")?,
        prospect: Prospect { id: prospect_id, ..Prospect::blank(account_id) },
        enrollment: Enrollment::new(EnrollmentKey { campaign_id, prospect_id }),
    })
}

pub const SUBSCRIPTION_COLS: &str =
    "id, account_id, target_url, event, secret, status, created_at, last_success_at, last_failure_at, failing_since";

pub fn subscription(r: &dyn Columns) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: r.int(0)?,
        account_id: r.int(1)?,
        target_url: r.text(2)?,
        event: r.text(3)?,
        secret: r.text(4)?,
        status: parsed(r, 5, "subscription status", SubscriptionStatus::parse)?,
        created_at: r.int(6)?,
        last_success_at: r.opt_int(7)?,
        last_failure_at: r.opt_int(8)?,
        failing_since: r.opt_int(9)?,
    })
}

pub const TRACKING_DOMAIN_COLS: &str =
    "id, account_id, domain, status, is_default, created_at, checked_at, verified_at, failures, last_error";

pub fn tracking_domain(r: &dyn Columns) -> StoreResult<TrackingDomain> {
    let failures = r.int(8)?;
    Ok(TrackingDomain {
        id: r.int(0)?,
        account_id: r.int(1)?,
        domain: parsed(r, 2, "tracking domain", DomainName::parse)?,
        status: parsed(r, 3, "tracking domain status", DomainStatus::parse)?,
        is_default: r.flag(4)?,
        created_at: r.int(5)?,
        checked_at: r.opt_int(6)?,
        verified_at: r.opt_int(7)?,
        failures: i32::try_from(failures).map_err(|e| StoreError::corrupt("failures", e))?,
        last_error: r.opt_text(9)?,
    })
}

pub const CURSOR_COLS: &str = "id, account_id, target_url, cursor";

pub fn subscription_cursor(r: &dyn Columns) -> StoreResult<SubscriptionCursor> {
    Ok(SubscriptionCursor { id: r.int(0)?, account_id: r.int(1)?, target_url: r.text(2)?, cursor: r.int(3)? })
}

pub const HEALTH_COLS: &str = "status, last_success_at, last_failure_at, failing_since";

pub fn health(r: &dyn Columns) -> StoreResult<SubscriptionHealth> {
    Ok(SubscriptionHealth {
        status: parsed(r, 0, "subscription status", SubscriptionStatus::parse)?,
        last_success_at: r.opt_int(1)?,
        last_failure_at: r.opt_int(2)?,
        failing_since: r.opt_int(3)?,
    })
}

/// A listed click: id, at, campaign, prospect, email, link, url, head, ip, user agent, then
/// its verdict and reasons once released (NULL before).
pub fn click_record(r: &dyn Columns) -> StoreResult<ClickRecord> {
    Ok(ClickRecord {
        id: r.int(0)?,
        at: r.int(1)?,
        campaign_id: r.int(2)?,
        prospect_id: r.int(3)?,
        email_id: r.int(4)?,
        link_no: r.int(5)?,
        url: r.text(6)?,
        method: if r.flag(7)? { "HEAD" } else { "GET" },
        ip: r.opt_text(8)?,
        user_agent: r.text(9)?,
        verdict: r
            .opt_text(10)?
            .map(|v| Verdict::parse(&v).map_err(|e| StoreError::corrupt("verdict", e)))
            .transpose()?,
        reasons: reasons(r.opt_text(11)?)?,
    })
}

/// An unjudged click: id, account (0 when its email is gone), email, link, at, head, ip,
/// user agent, the email's sending time, honeypot, the account's filter (NULL when gone), url.
pub fn pending_click(r: &dyn Columns, filters: &Filters) -> StoreResult<PendingClick> {
    Ok(PendingClick {
        id: r.int(0)?,
        account_id: r.int(1)?,
        email_id: r.int(2)?,
        link_no: r.int(3)?,
        at: r.int(4)?,
        head: r.flag(5)?,
        ip: r.opt_text(6)?,
        user_agent: r.text(7)?,
        email_sent_at: r.int(8)?,
        honeypot: r.flag(9)?,
        filter: filters.of(r.int(1)?, r, 10)?,
        url: r.text(11)?,
        placed: placed(r, 12)?,
    })
}

/// The click filters of one read, each parsed once: every click of a settling round carries its
/// account's, and parsing it per click took more CPU than judging the click.
#[derive(Default)]
pub struct Filters(std::sync::Mutex<HashMap<i64, Arc<ClickFilter>>>);

impl Filters {
    /// The filter of `account` (0: gone), read from column `at` the first time.
    fn of(&self, account: i64, r: &dyn Columns, at: usize) -> StoreResult<Arc<ClickFilter>> {
        let mut parsed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = parsed.get(&account) {
            return Ok(f.clone());
        }
        let f = Arc::new(filter(r.opt_text(at)?)?);
        parsed.insert(account, f.clone());
        Ok(f)
    }
}

/// An account's filter; the default for a click whose account is gone.
fn filter(stored: Option<String>) -> StoreResult<ClickFilter> {
    stored.map_or(Ok(ClickFilter::default()), |f| {
        serde_json::from_str(&f).map_err(|e| StoreError::corrupt("click filter", e))
    })
}

pub fn nearby_click(r: &dyn Columns) -> StoreResult<NearbyClick> {
    Ok(NearbyClick {
        click_id: r.int(0)?,
        email_id: r.int(1)?,
        link_no: r.int(2)?,
        at: r.int(3)?,
        honeypot: r.flag(4)?,
        released: r.flag(5)?,
        reasons: reasons(r.opt_text(6)?)?,
    })
}

/// A judged click of the burst history: the columns of [`nearby_click`], then its account.
pub fn judged_click(r: &dyn Columns) -> StoreResult<JudgedClick> {
    Ok(JudgedClick { click: nearby_click(r)?, account_id: r.int(7)? })
}

/// An account's burst window: id, click filter.
pub fn burst_window(r: &dyn Columns) -> StoreResult<(i64, Millis)> {
    Ok((r.int(0)?, json::<ClickFilter>(r, 1, "click filter")?.burst_window_ms()))
}

/// A held click: id, account, email, url, at, verdict, the account's filter.
pub fn held_click(r: &dyn Columns) -> StoreResult<HeldClick> {
    Ok(HeldClick {
        id: r.int(0)?,
        account_id: r.int(1)?,
        email_id: r.int(2)?,
        url: r.text(3)?,
        at: r.int(4)?,
        verdict: parsed(r, 5, "verdict", Verdict::parse)?,
        rule: ReleaseRule::of(&filter(r.opt_text(6)?)?),
        placed: placed(r, 7)?,
        reasons: reasons(r.opt_text(10)?)?,
    })
}

/// A click's campaign, step and prospect from three columns from `first` on: the email (and so
/// all three) may have been deleted since the click.
fn placed(r: &dyn Columns, first: usize) -> StoreResult<Option<Placed>> {
    Ok(match r.opt_int(first)? {
        Some(campaign_id) => Some(Placed { campaign_id, step: r.int(first + 1)?, prospect_id: r.int(first + 2)? }),
        None => None,
    })
}

/// A released click for the statistics' backfill (`stats_sql::RELEASED_AFTER`): its id and
/// what it counts for.
pub fn counted(r: &dyn Columns) -> StoreResult<(i64, crate::domain::stats::Counted)> {
    let verdict = parsed(r, 7, "verdict", Verdict::parse)?;
    let counted = crate::domain::stats::Counted {
        account_id: r.int(1)?,
        campaign_id: r.int(2)?,
        step: r.int(3)?,
        prospect_id: r.int(4)?,
        url: r.text(5)?,
        at: r.int(6)?,
        human: verdict == Verdict::Human,
        reasons: reasons(r.opt_text(8)?)?,
    };
    Ok((r.int(0)?, counted))
}

/// A held click's verdict, as an overrule reads it: id, verdict, reasons.
pub fn held_verdict(r: &dyn Columns) -> StoreResult<HeldVerdict> {
    Ok(HeldVerdict { click_id: r.int(0)?, verdict: parsed(r, 1, "verdict", Verdict::parse)?, reasons: r.text(2)? })
}

pub const DELIVERY_COLS: &str = "id, msg_id, subscription_id, target_url, event_count, state, tries, \
    next_attempt_at, created_at, delivered_at, last_error";

pub fn delivery(r: &dyn Columns) -> StoreResult<DeliveryRecord> {
    let state = parsed(r, 5, "delivery state", DeliveryState::parse)?;
    Ok(DeliveryRecord {
        id: r.int(0)?,
        msg_id: r.text(1)?,
        subscription_id: r.int(2)?,
        target_url: r.text(3)?,
        event_count: r.int(4)?,
        next_attempt_at: if state == DeliveryState::Pending { r.opt_int(7)? } else { None },
        state,
        tries: r.int(6)?,
        created_at: r.int(8)?,
        delivered_at: r.opt_int(9)?,
        last_error: r.opt_text(10)?,
        attempts: Vec::new(),
    })
}

pub const ATTEMPT_COLS: &str = "at, status_code, error, latency_ms, response";

pub fn attempt(r: &dyn Columns) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        at: r.int(0)?,
        status_code: r
            .opt_int(1)?
            .map(|c| u16::try_from(c).map_err(|e| StoreError::corrupt("status code", e)))
            .transpose()?,
        error: r.opt_text(2)?,
        latency_ms: r.int(3)?,
        response: r.text(4)?,
    })
}

/// A delivery just claimed, and where its body comes from.
pub struct ClaimedRow {
    pub delivery: Claimed,
    pub account_id: i64,
    /// The first and last event of its batch; none for a test delivery, whose body is stored.
    pub events: Option<(i64, i64)>,
}

/// A claimed delivery: id, msg id, subscription, target, secret, body (of a test delivery),
/// tries; then the account and event range its body is built from.
pub fn claimed(r: &dyn Columns) -> StoreResult<ClaimedRow> {
    let c = Claimed {
        id: r.int(0)?,
        msg_id: r.text(1)?,
        subscription_id: r.int(2)?,
        target_url: r.text(3)?,
        secret: r.text(4)?,
        body: r.opt_text(5)?.unwrap_or_default(),
        tries: r.int(6)?,
    };
    Ok(ClaimedRow { delivery: c, account_id: r.int(7)?, events: r.opt_int(8)?.zip(r.opt_int(9)?) })
}

pub fn backlog(r: &dyn Columns) -> StoreResult<Backlog> {
    Ok(Backlog { subscription_id: r.int(0)?, events: r.int(1)?, oldest_at: r.opt_int(2)? })
}

pub fn link(r: &dyn Columns) -> StoreResult<NewLink> {
    Ok(NewLink { url: r.text(0)?, honeypot: r.flag(1)? })
}

/// A link of an email: its account, url and whether it is the honeypot.
pub fn link_target(r: &dyn Columns, email_id: i64, link_no: i64) -> StoreResult<LinkTarget> {
    Ok(LinkTarget { account_id: r.int(0)?, email_id, link_no, url: r.text(1)?, honeypot: r.flag(2)? })
}

/// An email recorded before, without its links: id, prospect, number, sending time.
pub fn prior_email(r: &dyn Columns) -> StoreResult<SentEmail> {
    Ok(SentEmail {
        id: r.int(0)?,
        prospect_id: r.int(1)?,
        email_no: r.int(2)?,
        sent_at: r.int(3)?,
        links: Vec::new(),
        replayed: true,
    })
}

/// A single id or count.
pub fn int(r: &dyn Columns) -> StoreResult<i64> {
    r.int(0)
}

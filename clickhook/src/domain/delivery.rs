//! Webhook delivery's rules: subscriptions, how events are cut into batches, and what an
//! attempt's outcome does to its batch and its subscription.

use std::time::Duration;

use rand::Rng;

use super::{wire_enum, Millis, ParseError};

/// Webhook event names clickhook emits. Woodpecker has more; only this one is produced here.
pub const LINK_CLICKED: &str = "link_clicked";

pub fn parse_event_name(raw: &str) -> Result<&'static str, ParseError> {
    if raw.trim().eq_ignore_ascii_case(LINK_CLICKED) {
        Ok(LINK_CLICKED)
    } else if raw.trim().is_empty() {
        Err(ParseError::required("event"))
    } else {
        Err(ParseError::invalid(format!("Unsupported event {raw:?}; clickhook emits \"link_clicked\".")))
    }
}

wire_enum!(SubscriptionStatus, "subscription status" {
    Active = "active",
    Paused = "paused",
    Disabled = "disabled",
});

wire_enum!(DeliveryState, "delivery state" {
    Pending = "pending",
    Delivered = "delivered",
    Failed = "failed",
});

/// Woodpecker's limit of subscriptions to one event per account.
pub const MAX_SUBSCRIPTIONS: usize = 3;

/// Woodpecker's limit of elements per POST.
pub const MAX_BATCH: i64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    pub account_id: i64,
    pub target_url: String,
    pub event: String,
    pub secret: String,
    pub status: SubscriptionStatus,
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

/// Whether an account may subscribe `target` to an event it subscribed `existing` targets to:
/// `None` when it may.
pub fn refuse_subscription(existing: &[String], target: &str) -> Option<Subscribed> {
    if existing.iter().any(|t| t == target) {
        Some(Subscribed::Duplicate)
    } else if existing.len() >= MAX_SUBSCRIPTIONS {
        Some(Subscribed::TooMany)
    } else {
        None
    }
}

/// `msg_` and 24 random alphanumerics: the Standard Webhooks message id of a batch.
pub fn new_msg_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("msg_{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
}

/// The wire body of a batch: its events' elements, in order, in one JSON array.
pub fn batch_body<'a>(elements: impl IntoIterator<Item = &'a str>) -> String {
    let mut body = String::from("[");
    for (i, e) in elements.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push(']');
    body
}

/// Events of one subscription, (id, occurred_at) in id order, become batches: up to
/// `max_events` each, cut when full or once the oldest has waited `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub batches: Vec<Batch>,
    /// When the events left over are due as a batch (their window is still open).
    pub wait_until: Option<Millis>,
}

/// A batch of `count` events, ids `first..=last`, the oldest made at `oldest_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub first: i64,
    pub last: i64,
    pub count: i64,
    pub oldest_at: Millis,
}

impl Cut {
    /// How many batches' worth of events a store reads for one subscription at a time.
    pub const READ_BATCHES: i64 = 10;

    pub fn new(events: &[(i64, Millis)], now: Millis, window_ms: i64, max_events: i64) -> Cut {
        let mut cut = Cut { batches: Vec::new(), wait_until: None };
        for chunk in events.chunks(usize::try_from(max_events.max(1)).unwrap_or(usize::MAX)) {
            let oldest_at = chunk.iter().map(|e| e.1).min().unwrap_or(now);
            if (chunk.len() as i64) < max_events && oldest_at + window_ms > now {
                cut.wait_until = Some(oldest_at + window_ms);
                break;
            }
            let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
            cut.batches.push(Batch { first, last, count: chunk.len() as i64, oldest_at });
        }
        cut
    }

    /// The subscription's cursor once these batches are stored.
    pub fn cursor(&self) -> Option<i64> {
        self.batches.last().map(|b| b.last)
    }
}

/// What an attempt came to.
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

impl AttemptOutcome {
    /// The outcome of an attempt answered with `status` (none: no answer) after `tries` failures.
    pub fn of(
        status: Option<u16>,
        tries: i64,
        retry_after: Option<Duration>,
        schedule: &[Duration],
        now: Millis,
    ) -> Self {
        match status {
            Some(200..=299) => AttemptOutcome::Delivered,
            // 410 unsubscribes at once, as Woodpecker does; so does a redirect, never followed.
            Some(410) | Some(300..=399) => AttemptOutcome::Gone,
            _ => match next_attempt(schedule, tries, retry_after, now) {
                Some(at) => AttemptOutcome::Retry(at),
                None => AttemptOutcome::Exhausted,
            },
        }
    }
}

/// The next attempt after `tries` failures, or `None` when the schedule is spent.
pub fn next_attempt(schedule: &[Duration], tries: i64, retry_after: Option<Duration>, now: Millis) -> Option<Millis> {
    let delay = *schedule.get(usize::try_from(tries).ok()?)?;
    // Retry-After is honoured, within a day; never sooner than the schedule says.
    let delay = retry_after.map_or(delay, |r| delay.max(r.min(Duration::from_secs(86_400))));
    let jitter = rand::rng().random_range(0.9..1.1);
    Some(now + (delay.as_millis() as f64 * jitter) as i64)
}

/// A subscription's record of how its deliveries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionHealth {
    pub status: SubscriptionStatus,
    pub last_success_at: Option<Millis>,
    pub last_failure_at: Option<Millis>,
    pub failing_since: Option<Millis>,
}

/// What an attempt changes in its delivery. The lease always ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryChange {
    pub state: DeliveryState,
    /// Added to the delivery's failed tries.
    pub add_tries: i64,
    /// When set, the next attempt's time.
    pub next_attempt_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub last_error: Option<String>,
}

/// What an attempt changes in its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionChange {
    Unchanged,
    Set(SubscriptionHealth),
    /// Delete it; its undelivered batches are kept as failed, with this reason.
    Remove {
        why: String,
    },
}

/// A successful delivery touches its subscription at most this often while all goes well:
/// the row is shared by every batch in flight to it and by whoever cuts its batches.
pub const SUCCESS_TOUCH_MS: Millis = 1_000;

/// An attempt made at `at`, with `error` (or an HTTP status) when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub at: Millis,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
    /// A subscription failing without a success for this long is disabled.
    pub disable_after_ms: i64,
}

impl AttemptResult {
    fn error_text(&self) -> Option<String> {
        self.error.clone().or_else(|| self.status_code.map(|c| format!("HTTP {c}")))
    }

    /// What this attempt does to its delivery and to its subscription (`None`: removed already).
    pub fn effects(&self, health: Option<&SubscriptionHealth>) -> (DeliveryChange, SubscriptionChange) {
        let at = self.at;
        let failed = |state, next_attempt_at, last_error| DeliveryChange {
            state,
            add_tries: 1,
            next_attempt_at,
            delivered_at: None,
            last_error,
        };
        let delivery = match &self.outcome {
            AttemptOutcome::Delivered => DeliveryChange {
                state: DeliveryState::Delivered,
                add_tries: 0,
                next_attempt_at: None,
                delivered_at: Some(at),
                last_error: None,
            },
            AttemptOutcome::Retry(next) => failed(DeliveryState::Pending, Some(*next), self.error_text()),
            AttemptOutcome::Exhausted => failed(DeliveryState::Failed, None, self.error_text()),
            AttemptOutcome::Gone => failed(
                DeliveryState::Failed,
                None,
                Some(format!("subscription removed: {}", self.error_text().unwrap_or_default())),
            ),
        };
        let Some(h) = health else { return (delivery, SubscriptionChange::Unchanged) };
        let subscription = match &self.outcome {
            AttemptOutcome::Gone => SubscriptionChange::Remove { why: self.error_text().unwrap_or_default() },
            AttemptOutcome::Delivered => {
                let recent = h.last_success_at.is_some_and(|t| t >= at - SUCCESS_TOUCH_MS);
                if recent && h.failing_since.is_none() {
                    SubscriptionChange::Unchanged
                } else {
                    SubscriptionChange::Set(SubscriptionHealth {
                        last_success_at: Some(at),
                        failing_since: None,
                        ..h.clone()
                    })
                }
            }
            AttemptOutcome::Retry(_) | AttemptOutcome::Exhausted => {
                let since = h.failing_since.unwrap_or(at);
                let disable = h.status == SubscriptionStatus::Active && at - since >= self.disable_after_ms;
                SubscriptionChange::Set(SubscriptionHealth {
                    status: if disable { SubscriptionStatus::Disabled } else { h.status },
                    last_success_at: h.last_success_at,
                    last_failure_at: Some(at),
                    failing_since: Some(since),
                })
            }
        };
        (delivery, subscription)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_and_retry_after() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        let at = next_attempt(&s, 0, None, 0).unwrap();
        assert!((4_500..=5_500).contains(&at), "{at}");
        let at = next_attempt(&s, 1, Some(Duration::from_secs(600)), 0).unwrap();
        assert!((540_000..=660_000).contains(&at), "Retry-After longer than the schedule wins: {at}");
        let at = next_attempt(&s, 0, Some(Duration::from_secs(10 * 86_400)), 0).unwrap();
        assert!(at <= 95_040_000, "bounded to a day: {at}");
        assert_eq!(next_attempt(&s, 2, None, 0), None);
    }

    #[test]
    fn outcomes_by_status() {
        let s = [Duration::from_secs(5)];
        assert_eq!(AttemptOutcome::of(Some(204), 0, None, &s, 0), AttemptOutcome::Delivered);
        assert_eq!(AttemptOutcome::of(Some(410), 0, None, &s, 0), AttemptOutcome::Gone);
        assert_eq!(AttemptOutcome::of(Some(302), 0, None, &s, 0), AttemptOutcome::Gone);
        assert!(matches!(AttemptOutcome::of(Some(500), 0, None, &s, 0), AttemptOutcome::Retry(_)));
        assert_eq!(AttemptOutcome::of(None, 1, None, &s, 0), AttemptOutcome::Exhausted);
    }

    #[test]
    fn batches_are_cut_when_full_or_when_the_window_closes() {
        let events = [(5, 1_000), (6, 1_400), (9, 1_450)];
        assert_eq!(Cut::new(&[], 9_999, 1_000, 100), Cut { batches: vec![], wait_until: None });
        assert_eq!(Cut::new(&events, 1_500, 1_000, 100), Cut { batches: vec![], wait_until: Some(2_000) });
        let all = Cut::new(&events, 2_000, 1_000, 100);
        assert_eq!(all.batches, [Batch { first: 5, last: 9, count: 3, oldest_at: 1_000 }]);
        assert_eq!((all.wait_until, all.cursor()), (None, Some(9)));
        // Full batches go at once; what is left waits for its own window.
        let full = Cut::new(&events, 1_500, 1_000, 2);
        assert_eq!(full.batches, [Batch { first: 5, last: 6, count: 2, oldest_at: 1_000 }]);
        assert_eq!((full.wait_until, full.cursor()), (Some(2_450), Some(6)));
        assert_eq!(Cut::new(&events, 9_000, 1_000, 1).batches.len(), 3);
    }

    fn health() -> SubscriptionHealth {
        SubscriptionHealth {
            status: SubscriptionStatus::Active,
            last_success_at: None,
            last_failure_at: None,
            failing_since: None,
        }
    }

    fn attempt(outcome: AttemptOutcome, at: Millis) -> AttemptResult {
        AttemptResult { at, status_code: Some(500), error: None, outcome, disable_after_ms: 10_000 }
    }

    #[test]
    fn failures_disable_a_subscription_after_a_while() {
        let (d, s) = attempt(AttemptOutcome::Retry(99), 1_000).effects(Some(&health()));
        assert_eq!((d.state, d.add_tries, d.next_attempt_at), (DeliveryState::Pending, 1, Some(99)));
        assert_eq!(d.last_error.as_deref(), Some("HTTP 500"));
        let SubscriptionChange::Set(h) = s else { panic!("{s:?}") };
        assert_eq!(
            (h.failing_since, h.last_failure_at, h.status),
            (Some(1_000), Some(1_000), SubscriptionStatus::Active)
        );
        let (d, s) = attempt(AttemptOutcome::Exhausted, 11_000).effects(Some(&h));
        assert_eq!(d.state, DeliveryState::Failed);
        assert_eq!(
            s,
            SubscriptionChange::Set(SubscriptionHealth {
                status: SubscriptionStatus::Disabled,
                last_failure_at: Some(11_000),
                ..h.clone()
            })
        );
        let paused = SubscriptionHealth { status: SubscriptionStatus::Paused, ..h };
        let (_, s) = attempt(AttemptOutcome::Exhausted, 50_000).effects(Some(&paused));
        assert!(matches!(s, SubscriptionChange::Set(SubscriptionHealth { status: SubscriptionStatus::Paused, .. })));
    }

    #[test]
    fn a_success_clears_failures_and_touches_the_subscription_at_most_once_a_second() {
        let failing = SubscriptionHealth { failing_since: Some(5), last_success_at: Some(9_900), ..health() };
        let (d, s) = attempt(AttemptOutcome::Delivered, 10_000).effects(Some(&failing));
        assert_eq!((d.state, d.delivered_at, d.last_error), (DeliveryState::Delivered, Some(10_000), None));
        let SubscriptionChange::Set(h) = s else { panic!("{s:?}") };
        assert_eq!((h.failing_since, h.last_success_at), (None, Some(10_000)));
        assert_eq!(attempt(AttemptOutcome::Delivered, 10_500).effects(Some(&h)).1, SubscriptionChange::Unchanged);
        assert!(matches!(attempt(AttemptOutcome::Delivered, 11_001).effects(Some(&h)).1, SubscriptionChange::Set(_)));
    }

    #[test]
    fn gone_removes_the_subscription() {
        let a = AttemptResult { error: None, status_code: Some(410), ..attempt(AttemptOutcome::Gone, 1) };
        let (d, s) = a.effects(Some(&health()));
        assert_eq!(d.last_error.as_deref(), Some("subscription removed: HTTP 410"));
        assert_eq!(s, SubscriptionChange::Remove { why: "HTTP 410".into() });
        assert_eq!(a.effects(None).1, SubscriptionChange::Unchanged);
    }

    #[test]
    fn subscription_limits() {
        let existing = vec!["https://a".to_string(), "https://b".to_string()];
        assert_eq!(refuse_subscription(&existing, "https://a"), Some(Subscribed::Duplicate));
        assert_eq!(refuse_subscription(&existing, "https://c"), None);
        let full = vec!["1".into(), "2".into(), "3".into()];
        assert_eq!(refuse_subscription(&full, "https://c"), Some(Subscribed::TooMany));
    }

    #[test]
    fn a_batch_body_is_its_elements_in_an_array() {
        assert_eq!(batch_body([]), "[]");
        assert_eq!(batch_body([r#"{"a":1}"#, r#"{"b":2}"#]), r#"[{"a":1},{"b":2}]"#);
    }
}

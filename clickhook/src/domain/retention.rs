//! How long raw rows are kept, and which may go.
//!
//! Raw clicks, delivered batches with their attempts, and events grow with every click; the
//! store prunes them in the background, a step of [`PRUNE_STEP`] rows per transaction. Nothing
//! is removed before it has done its work: a click only once judged and released, a batch only
//! once delivered (a failed one waits to be replayed), an event only once every subscription
//! has batched it and no batch that is kept still reads it (a batch's body is rebuilt from its
//! events, byte for byte).

use super::Millis;

/// Rows removed per transaction: small enough that a step never holds the writer from clicks.
pub const PRUNE_STEP: i64 = 1000;

const DAY: Millis = 86_400_000;

/// `serve --retain-clicks` and `--retain-deliveries`, in days; 0 keeps rows forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub clicks_days: u32,
    pub deliveries_days: u32,
}

impl Retention {
    /// Judged, released clicks made before this go (none when kept forever).
    pub fn clicks_before(&self, now: Millis) -> Option<Millis> {
        (self.clicks_days > 0).then(|| now - i64::from(self.clicks_days) * DAY)
    }

    /// Batches delivered before this go with their attempts, and so may the events only they
    /// read.
    pub fn deliveries_before(&self, now: Millis) -> Option<Millis> {
        (self.deliveries_days > 0).then(|| now - i64::from(self.deliveries_days) * DAY)
    }
}

/// What an account's events are still needed for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventUse {
    /// Each subscription's cursor: the last event it has batched.
    pub cursors: Vec<i64>,
    /// The first event of the oldest batch that is kept.
    pub first_kept_batch_event: Option<i64>,
    /// The account's newest event.
    pub newest: i64,
}

impl EventUse {
    /// Events with ids below this may go (if old enough): batched by every subscription and read
    /// by no batch that is kept. Without subscriptions nothing will batch them.
    pub fn floor(&self) -> i64 {
        let batched = self.cursors.iter().min().map_or(self.newest, |c| *c) + 1;
        self.first_kept_batch_event.map_or(batched, |first| batched.min(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_forever() {
        let r = Retention { clicks_days: 0, deliveries_days: 30 };
        assert_eq!(r.clicks_before(100 * DAY), None);
        assert_eq!(r.deliveries_before(100 * DAY), Some(70 * DAY));
    }

    #[test]
    fn events_go_once_batched_everywhere_and_read_by_no_kept_batch() {
        let u = EventUse { cursors: vec![40, 25], first_kept_batch_event: Some(30), newest: 50 };
        assert_eq!(u.floor(), 26, "the slowest subscription has batched up to 25");
        let u = EventUse { cursors: vec![40], first_kept_batch_event: Some(30), newest: 50 };
        assert_eq!(u.floor(), 30, "a kept batch still reads 30 on");
        let u = EventUse { cursors: vec![], first_kept_batch_event: None, newest: 50 };
        assert_eq!(u.floor(), 51, "no subscription will ever batch them");
        let u = EventUse { cursors: vec![0], first_kept_batch_event: None, newest: 50 };
        assert_eq!(u.floor(), 1, "a subscription that has batched nothing keeps them all");
    }
}

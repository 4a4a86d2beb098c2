//! How long raw rows are kept, and which may go.
//!
//! Raw clicks, delivered batches with their attempts, and events grow with every click; the
//! store prunes them in the background, a step of [`PRUNE_STEP`] rows per transaction. Nothing
//! is removed before it has done its work: a click only once judged and released, a batch only
//! once delivered (a failed one waits to be replayed), an event only once every subscription
//! has batched it and no batch that is kept still reads it (a batch's body is rebuilt from its
//! events, byte for byte).

use super::{Millis, ParseError};

/// Rows removed per transaction: small enough that a step never holds the writer from clicks.
pub const PRUNE_STEP: i64 = 1000;

/// How long a kind of row is kept: `serve --retain-clicks` and `--retain-deliveries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Forever,
    For(std::time::Duration),
}

impl Keep {
    /// `180` (days; `0` is forever), or a duration with its unit (`12h`, `90m`, `30d`).
    pub fn parse(raw: &str) -> Result<Keep, ParseError> {
        let raw = raw.trim();
        let invalid = || {
            ParseError::invalid(format!(
                "{raw:?} is not a retention: give days (180; 0 keeps forever) or a duration (12h, 90m, 30d)."
            ))
        };
        if let Ok(days) = raw.parse::<u32>() {
            return Ok(match days {
                0 => Keep::Forever,
                d => Keep::For(std::time::Duration::from_secs(u64::from(d) * 86_400)),
            });
        }
        let d = super::parse_duration(raw).map_err(|_| invalid())?;
        Ok(if d.is_zero() { Keep::Forever } else { Keep::For(d) })
    }

    /// Rows older than this at `now` go; none when kept forever.
    fn before(self, now: Millis) -> Option<Millis> {
        match self {
            Keep::Forever => None,
            Keep::For(d) => Some(now - Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub clicks: Keep,
    pub deliveries: Keep,
}

impl Retention {
    /// Judged, released clicks made before this go (none when kept forever).
    pub fn clicks_before(&self, now: Millis) -> Option<Millis> {
        self.clicks.before(now)
    }

    /// Batches delivered before this go with their attempts, and so may the events only they
    /// read.
    pub fn deliveries_before(&self, now: Millis) -> Option<Millis> {
        self.deliveries.before(now)
    }

    /// How often to look for rows to prune: every minute, more often when a window is shorter
    /// than a few minutes.
    pub fn pass_every(&self) -> std::time::Duration {
        [self.clicks, self.deliveries]
            .into_iter()
            .filter_map(|k| match k {
                Keep::For(d) => Some(d / 4),
                Keep::Forever => None,
            })
            .fold(std::time::Duration::from_secs(60), std::cmp::Ord::min)
            .max(std::time::Duration::from_secs(1))
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

    const DAY: Millis = 86_400_000;

    #[test]
    fn zero_days_keeps_forever() {
        let r = Retention { clicks: Keep::parse("0").unwrap(), deliveries: Keep::parse("30").unwrap() };
        assert_eq!(r.clicks_before(100 * DAY), None);
        assert_eq!(r.deliveries_before(100 * DAY), Some(70 * DAY));
        assert_eq!(r.pass_every(), std::time::Duration::from_secs(60));
    }

    #[test]
    fn retention_in_days_or_with_a_unit() {
        let d = |s: &str| Keep::parse(s).unwrap();
        assert_eq!(d("180"), d("180d"));
        assert_eq!(d("12h"), Keep::For(std::time::Duration::from_secs(12 * 3600)));
        assert_eq!(d("0m"), Keep::Forever);
        for bad in ["", "-1", "2w", "h", "1.5"] {
            assert!(Keep::parse(bad).is_err(), "{bad:?}");
        }
        let short = Retention { clicks: d("2m"), deliveries: d("30") };
        assert_eq!(short.pass_every(), std::time::Duration::from_secs(30));
        assert_eq!(short.clicks_before(10 * DAY), Some(10 * DAY - 120_000));
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

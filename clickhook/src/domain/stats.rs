//! Click statistics: what a released click adds to the rollups, and which rollup rows answer a
//! time range.
//!
//! A click's verdict is final once it is released; the settler adds the clicks it releases to
//! the rollups in the same transaction, so statistics never count a click twice or miss one,
//! and they outlive the raw clicks that retention prunes. Rows are kept at two spans: quarter
//! hours, which make the day and hour buckets of every time zone exact (some zones are 30 or
//! 45 minutes off UTC), and UTC days, so that a year reads a few hundred rows per link rather
//! than tens of thousands. The series a chart reads is kept by quarter hour and by UTC hour:
//! in a zone a whole number of hours off UTC (most), local hours and days are made of UTC hours.

use std::collections::{BTreeMap, BTreeSet};

use super::{wire_enum, Millis};

pub const QUARTER: Millis = 15 * 60 * 1000;
pub const HOUR: Millis = 60 * 60 * 1000;
pub const DAY: Millis = 24 * 60 * 60 * 1000;

/// How long a rollup row's bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Span {
    Quarter,
    /// Series rows only.
    Hour,
    Day,
}

impl Span {
    /// The spans of counts (links, reasons, clickers, emails).
    pub const ALL: [Span; 2] = [Span::Quarter, Span::Day];
    /// The spans of the series.
    pub const SERIES: [Span; 2] = [Span::Quarter, Span::Hour];

    /// As stored.
    pub fn code(self) -> i64 {
        match self {
            Span::Quarter => 0,
            Span::Day => 1,
            Span::Hour => 2,
        }
    }

    pub fn millis(self) -> Millis {
        match self {
            Span::Quarter => QUARTER,
            Span::Hour => HOUR,
            Span::Day => DAY,
        }
    }

    /// The start of the bucket that holds `at`.
    pub fn bucket(self, at: Millis) -> Millis {
        at.div_euclid(self.millis()) * self.millis()
    }
}

/// A released click, as statistics see it.
#[derive(Debug, Clone)]
pub struct Counted {
    pub account_id: i64,
    pub campaign_id: i64,
    pub step: i64,
    pub prospect_id: i64,
    pub url: String,
    pub at: Millis,
    pub human: bool,
    /// Why a bot's click was judged so (none for a person's).
    pub reasons: Vec<String>,
}

/// Human and bot clicks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pair {
    pub human: i64,
    pub bot: i64,
}

impl Pair {
    fn add(&mut self, human: bool) {
        if human {
            self.human += 1
        } else {
            self.bot += 1
        }
    }
}

/// Rows keyed by campaign, span and bucket start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket {
    pub campaign_id: i64,
    pub span: Span,
    pub start: Millis,
}

/// What a batch of released clicks adds: one row change per key, however many clicks share it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rollup {
    /// The account of each campaign in the batch.
    pub accounts: BTreeMap<i64, i64>,
    /// Per bucket, step and link URL.
    pub links: BTreeMap<(Bucket, i64, String), Pair>,
    /// Per quarter hour and per hour: the series a chart reads.
    pub series: BTreeMap<Bucket, Pair>,
    /// Bot clicks per bucket and reason.
    pub reasons: BTreeMap<(Bucket, String), i64>,
    /// Prospects with a person's click, per bucket and step.
    pub clickers: BTreeSet<(Bucket, i64, i64)>,
}

impl Rollup {
    pub fn of<'a>(clicks: impl IntoIterator<Item = &'a Counted>) -> Rollup {
        let mut r = Rollup::default();
        for c in clicks {
            r.accounts.insert(c.campaign_id, c.account_id);
            for span in Span::SERIES {
                let bucket = Bucket { campaign_id: c.campaign_id, span, start: span.bucket(c.at) };
                r.series.entry(bucket).or_default().add(c.human);
            }
            for span in Span::ALL {
                let bucket = Bucket { campaign_id: c.campaign_id, span, start: span.bucket(c.at) };
                r.links.entry((bucket, c.step, c.url.clone())).or_default().add(c.human);
                if c.human {
                    r.clickers.insert((bucket, c.step, c.prospect_id));
                } else {
                    for reason in &c.reasons {
                        *r.reasons.entry((bucket, reason.clone())).or_default() += 1;
                    }
                }
            }
        }
        r
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Keeps the rows of these campaigns only (the others were deleted since).
    pub fn retain_campaigns(&mut self, exist: &BTreeSet<i64>) {
        self.accounts.retain(|c, _| exist.contains(c));
        self.links.retain(|(b, _, _), _| exist.contains(&b.campaign_id));
        self.series.retain(|b, _| exist.contains(&b.campaign_id));
        self.reasons.retain(|(b, _), _| exist.contains(&b.campaign_id));
        self.clickers.retain(|(b, _, _)| exist.contains(&b.campaign_id));
    }
}

/// Emails sent per bucket and step: what recording `(campaign, step, sent_at)` emails adds.
pub fn emails_rollup(emails: impl IntoIterator<Item = (i64, i64, Millis)>) -> BTreeMap<(Bucket, i64), i64> {
    let mut out = BTreeMap::new();
    for (campaign_id, step, sent_at) in emails {
        for span in Span::ALL {
            *out.entry((Bucket { campaign_id, span, start: span.bucket(sent_at) }, step)).or_default() += 1;
        }
    }
    out
}

/// Prospects with a person's click, per step and in all, from (step, prospect) pairs that may
/// repeat.
pub fn clickers(pairs: &[(i64, i64)]) -> (BTreeMap<i64, i64>, i64) {
    let distinct: BTreeSet<(i64, i64)> = pairs.iter().copied().collect();
    let mut by_step = BTreeMap::new();
    for (step, _) in &distinct {
        *by_step.entry(*step).or_default() += 1;
    }
    let prospects: std::collections::HashSet<i64> = distinct.iter().map(|p| p.1).collect();
    (by_step, prospects.len() as i64)
}

/// A time range of statistics, on quarter-hour bounds: `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub since: Millis,
    pub until: Millis,
}

impl Range {
    /// The quarter hours that hold `since` through `until` (both included, as the clicks list
    /// takes them): `since` rounds down, `until` up.
    pub fn covering(since: Millis, until: Millis) -> Range {
        let since = Span::Quarter.bucket(since);
        let until = Span::Quarter.bucket(until) + QUARTER;
        Range { since, until: until.max(since) }
    }

    /// The rollup rows that add up to this range: whole UTC days from day rows, the rest from
    /// quarter-hour rows. Each part is `[from, to)` in bucket starts.
    pub fn parts(self) -> Vec<(Span, Millis, Millis)> {
        self.parts_by(Span::Day)
    }

    /// The same with whole buckets of `coarse` in the middle.
    pub fn parts_by(self, coarse: Span) -> Vec<(Span, Millis, Millis)> {
        let size = coarse.millis();
        let first = self.since.div_euclid(size) * size + if self.since.rem_euclid(size) == 0 { 0 } else { size };
        let end = self.until.div_euclid(size) * size;
        if first >= end {
            return vec![(Span::Quarter, self.since, self.until)];
        }
        let mut parts = Vec::new();
        if self.since < first {
            parts.push((Span::Quarter, self.since, first));
        }
        parts.push((coarse, first, end));
        if end < self.until {
            parts.push((Span::Quarter, end, self.until));
        }
        parts
    }

    /// The series' rows for this range in `zone`: hour rows where the zone's local hours are
    /// UTC hours (its offset a whole number of hours all through the range), else quarter hours.
    pub fn series_parts(self, zone: chrono_tz::Tz) -> Vec<(Span, Millis, Millis)> {
        use chrono::{Offset, TimeZone};
        let whole_hours = (self.since..=self.until).step_by(7 * DAY as usize).chain([self.until]).all(|t| {
            let at = chrono::Utc.timestamp_millis_opt(t).single().unwrap_or_default();
            zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc() % 3600 == 0
        });
        if whole_hours {
            self.parts_by(Span::Hour)
        } else {
            vec![(Span::Quarter, self.since, self.until)]
        }
    }
}

wire_enum!(
    /// The buckets of a series, in the account's time zone.
    Granularity, "granularity" { Hour = "hour", Day = "day" }
);

/// At most this many buckets in one series (a year by hour is 8,784).
pub const MAX_BUCKETS: usize = 10_000;

/// The start of the local hour or day that holds `at`, as an instant.
pub fn local_bucket(at: Millis, zone: chrono_tz::Tz, g: Granularity) -> Millis {
    use chrono::{TimeZone, Timelike};
    let local = chrono::Utc.timestamp_millis_opt(at).single().unwrap_or_default().with_timezone(&zone);
    let into_hour = i64::from(local.minute() * 60 + local.second()) * 1000 + i64::from(local.timestamp_subsec_millis());
    let hour = at - into_hour;
    match g {
        Granularity::Hour => hour,
        Granularity::Day => day_start(local.date_naive(), zone).unwrap_or(hour),
    }
}

/// Local midnight of `date`, or the first instant of that day where midnight does not exist.
fn day_start(date: chrono::NaiveDate, zone: chrono_tz::Tz) -> Option<Millis> {
    use chrono::TimeZone;
    (0..24).find_map(|h| {
        let t = date.and_hms_opt(h, 0, 0)?;
        zone.from_local_datetime(&t).earliest().map(|t| t.timestamp_millis())
    })
}

/// The bucket after the one that starts at `start`.
fn next_bucket(start: Millis, zone: chrono_tz::Tz, g: Granularity) -> Millis {
    match g {
        Granularity::Hour => start + 60 * 60 * 1000,
        Granularity::Day => {
            let next = local_bucket(start, zone, g) + 26 * 60 * 60 * 1000;
            local_bucket(next, zone, g)
        }
    }
}

/// Quarter-hour rows `(start, human, bot)`, in any order, added up into local buckets from
/// the one holding `from` to the one holding `to - 1`, empty buckets included. `None` when that
/// is more than [`MAX_BUCKETS`].
pub fn series(
    rows: &[(Millis, i64, i64)],
    from: Millis,
    to: Millis,
    zone: chrono_tz::Tz,
    g: Granularity,
) -> Option<Vec<(Millis, Pair)>> {
    let mut out: Vec<(Millis, Pair)> = Vec::new();
    if to <= from {
        return Some(out);
    }
    let mut start = local_bucket(from, zone, g);
    while start < to {
        if out.len() == MAX_BUCKETS {
            return None;
        }
        out.push((start, Pair::default()));
        start = next_bucket(start, zone, g);
    }
    for &(at, human, bot) in rows {
        // The last bucket that starts at or before `at`.
        let i = out.partition_point(|b| b.0 <= at);
        if i > 0 && at < to {
            let pair = &mut out[i - 1].1;
            pair.human += human;
            pair.bot += bot;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(at: Millis, human: bool, prospect: i64, reasons: &[&str]) -> Counted {
        Counted {
            account_id: 1,
            campaign_id: 7,
            step: 1,
            prospect_id: prospect,
            url: "https://example.com/".into(),
            at,
            human,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn clicks_sharing_a_bucket_make_one_row_change() {
        let clicks =
            [click(1_000, true, 1, &[]), click(2_000, true, 1, &[]), click(3_000, false, 2, &["head", "burst"])];
        let r = Rollup::of(&clicks);
        assert_eq!(r.series[&Bucket { campaign_id: 7, span: Span::Quarter, start: 0 }], Pair { human: 2, bot: 1 });
        assert_eq!(r.series[&Bucket { campaign_id: 7, span: Span::Hour, start: 0 }], Pair { human: 2, bot: 1 });
        let quarter = Bucket { campaign_id: 7, span: Span::Quarter, start: 0 };
        let day = Bucket { span: Span::Day, ..quarter };
        assert_eq!(r.links[&(quarter, 1, "https://example.com/".into())], Pair { human: 2, bot: 1 });
        assert_eq!(r.links[&(day, 1, "https://example.com/".into())], Pair { human: 2, bot: 1 });
        assert_eq!(r.reasons[&(quarter, "burst".to_string())], 1);
        assert_eq!(r.clickers.len(), 2, "one prospect, in its quarter and its day: {:?}", r.clickers);
        assert_eq!(r.accounts[&7], 1);
    }

    #[test]
    fn a_prospect_counts_once_per_step_and_once_in_all() {
        let (by_step, all) = clickers(&[(1, 10), (1, 10), (2, 10), (1, 11)]);
        assert_eq!(by_step, BTreeMap::from([(1, 2), (2, 1)]));
        assert_eq!(all, 2);
    }

    #[test]
    fn a_bucket_holds_times_before_1970_too() {
        assert_eq!(Span::Quarter.bucket(-1), -QUARTER);
        assert_eq!(Span::Day.bucket(DAY + 5), DAY);
    }

    #[test]
    fn a_range_reads_whole_days_from_day_rows() {
        let r = Range::covering(DAY - QUARTER, 3 * DAY + 10);
        assert_eq!(r, Range { since: DAY - QUARTER, until: 3 * DAY + QUARTER });
        assert_eq!(
            r.parts(),
            vec![
                (Span::Quarter, DAY - QUARTER, DAY),
                (Span::Day, DAY, 3 * DAY),
                (Span::Quarter, 3 * DAY, 3 * DAY + QUARTER)
            ]
        );
        assert_eq!(Range::covering(DAY, 2 * DAY - 1).parts(), vec![(Span::Day, DAY, 2 * DAY)]);
        assert_eq!(Range::covering(10, 20).parts(), vec![(Span::Quarter, 0, QUARTER)]);
    }

    #[test]
    fn a_series_reads_hour_rows_where_the_zone_allows() {
        let start = 1_735_689_600_000; // 2025-01-01T00:00Z
        let year = Range { since: start + QUARTER, until: start + 365 * DAY };
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            year.series_parts(berlin),
            vec![(Span::Quarter, start + QUARTER, start + HOUR), (Span::Hour, start + HOUR, start + 365 * DAY)],
            "summer time moves Berlin by whole hours"
        );
        let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(year.series_parts(kolkata), vec![(Span::Quarter, start + QUARTER, start + 365 * DAY)]);
        // Lord Howe Island is 10:30 off UTC in winter, 11 in summer.
        let lord_howe: chrono_tz::Tz = "Australia/Lord_Howe".parse().unwrap();
        assert_eq!(year.series_parts(lord_howe).len(), 1);
    }

    #[test]
    fn days_follow_the_zone_including_half_hour_offsets_and_summer_time() {
        let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
        // 2025-03-01T00:00+05:30 is 2025-02-28T18:30Z.
        let midnight = 1_740_767_400_000;
        assert_eq!(local_bucket(midnight + 5 * HOUR, kolkata, Granularity::Day), midnight);
        assert_eq!(local_bucket(midnight - 1, kolkata, Granularity::Day), midnight - DAY);
        let rows = [(midnight - QUARTER, 1, 0), (midnight, 2, 1), (midnight + DAY - QUARTER, 4, 0)];
        let s = series(&rows, midnight - HOUR, midnight + DAY, kolkata, Granularity::Day).unwrap();
        assert_eq!(s, vec![(midnight - DAY, Pair { human: 1, bot: 0 }), (midnight, Pair { human: 6, bot: 1 })]);

        // Berlin's spring-forward day has 23 hours: the next day starts 23 h after midnight.
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let march_30 = 1_743_289_200_000; // 2025-03-30T00:00+01:00
        let s = series(&[], march_30, march_30 + 2 * DAY, berlin, Granularity::Day).unwrap();
        assert_eq!(
            s.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![march_30, march_30 + 23 * HOUR, march_30 + 47 * HOUR]
        );
    }

    #[test]
    fn hours_and_the_bucket_limit() {
        let utc = chrono_tz::UTC;
        let s = series(&[(HOUR + QUARTER, 3, 2)], 0, 3 * HOUR, utc, Granularity::Hour).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1], (HOUR, Pair { human: 3, bot: 2 }));
        assert!(series(&[], 0, 2 * 366 * DAY, utc, Granularity::Hour).is_none(), "two years by hour is too many");
        assert_eq!(series(&[], 0, 2 * 366 * DAY, utc, Granularity::Day).unwrap().len(), 2 * 366);
    }
}

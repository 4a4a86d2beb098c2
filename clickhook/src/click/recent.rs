//! The judged clicks of the recent past, by email: what the burst and honeypot signals see.
//!
//! A busy email collects hundreds of clicks inside one burst window, and each new click is
//! judged against them. Reading them back from the store every settling round cost more than
//! the clicks themselves (measured: a round of 256 clicks read ~100,000 rows and took 110 ms).
//! The settler (one node settles at a time) keeps them here while it has its turn: at its start
//! it reads the judged clicks of every account's burst window once, and from then on every
//! click it judges is added here, so an email it has nothing of has no judged click in reach.
//! The store's history is therefore only ever read by time, which lets its index take judged
//! clicks on its last page: by email, a round of judgements dirtied a page per email clicked.
//! It forgets them all when its turn to settle was interrupted, since another node may have
//! judged meanwhile, and when an account's window grew beyond the one its clicks were kept for.
//!
//! The questions asked per click are answered without walking a busy email's whole window:
//! clicks are kept in time order (a window is a binary search away), and counters say when no
//! click in it can still take a burst or has hit a honeypot.

use std::collections::HashMap;

use crate::domain::Millis;
use crate::store::{JudgedClick, NearbyClick};

pub const BURST: &str = "burst_of_links";
pub const HONEYPOT_NEARBY: &str = "honeypot_hit_nearby";

/// Kept beyond an email's burst window: a click is stamped before it commits, so one judged
/// later may carry a slightly earlier time than the clicks judged before it.
const KEEP_MS: Millis = 2_000;

/// Emails are swept for clicks that left every window at most this often.
const SWEEP_MS: Millis = 1_000;

/// A judged click as the signals of later clicks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub id: i64,
    pub link_no: i64,
    pub at: Millis,
    pub honeypot: bool,
    /// A burst may still be pinned on it: it does not carry one and is not released.
    pub open_burst: bool,
    /// A honeypot hit nearby may still be pinned on it.
    pub open_honeypot: bool,
}

impl Seen {
    pub fn from_stored(n: &NearbyClick) -> Self {
        Seen {
            id: n.click_id,
            link_no: n.link_no,
            at: n.at,
            honeypot: n.honeypot,
            open_burst: n.may_overrule(BURST),
            open_honeypot: n.may_overrule(HONEYPOT_NEARBY),
        }
    }

    fn takes_burst(&self) -> bool {
        self.open_burst && !self.honeypot
    }
}

/// What the judged clicks on the same email within a click's burst window show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Around {
    /// Another link of the email (not a honeypot) was clicked.
    pub other_link: bool,
    /// The email's honeypot link was hit.
    pub honeypot: bool,
}

#[derive(Debug, Default)]
struct Email {
    /// In time order from `start`; the slots before it left every window.
    clicks: Vec<Seen>,
    start: usize,
    /// The burst window these clicks were kept for.
    window: Millis,
    honeypots: usize,
    open_bursts: usize,
}

impl Email {
    fn live(&self) -> &[Seen] {
        &self.clicks[self.start..]
    }

    /// The live clicks within `window` of `at`, as a range of `clicks`.
    fn range(&self, at: Millis, window: Millis) -> std::ops::Range<usize> {
        let live = self.live();
        let lo = live.partition_point(|s| s.at < at - window);
        let hi = live.partition_point(|s| s.at <= at + window);
        self.start + lo..self.start + hi.max(lo)
    }

    fn insert(&mut self, s: Seen) {
        self.honeypots += usize::from(s.honeypot);
        self.open_bursts += usize::from(s.takes_burst());
        // Clicks arrive almost in time order: the place is at or near the end.
        let mut i = self.clicks.len();
        while i > self.start && self.clicks[i - 1].at > s.at {
            i -= 1;
        }
        self.clicks.insert(i, s);
    }

    fn evict_before(&mut self, cutoff: Millis) {
        while self.start < self.clicks.len() && self.clicks[self.start].at < cutoff {
            let s = &self.clicks[self.start];
            self.honeypots -= usize::from(s.honeypot);
            self.open_bursts -= usize::from(s.takes_burst());
            self.start += 1;
        }
        if self.start > 64 && self.start * 2 > self.clicks.len() {
            self.clicks.drain(..self.start);
            self.start = 0;
        }
    }
}

#[derive(Debug, Default)]
pub struct RecentClicks {
    emails: HashMap<i64, Email>,
    /// The burst window each account's clicks are kept for; `None` until the history is read.
    windows: Option<HashMap<i64, Millis>>,
    last_sweep: Millis,
}

impl RecentClicks {
    /// Forgets everything: the next round reads the history from the store again.
    pub fn forget(&mut self) {
        self.emails.clear();
        self.windows = None;
    }

    /// Whether the history was read since the last `forget`.
    pub fn loaded(&self) -> bool {
        self.windows.is_some()
    }

    /// From when the store's history is to be read for a round whose oldest click was made at
    /// `oldest`, with these accounts' windows.
    pub fn history_from(windows: &HashMap<i64, Millis>, oldest: Millis) -> Millis {
        oldest - windows.values().copied().max().unwrap_or(0) - KEEP_MS
    }

    /// Takes the store's history (read from [`Self::history_from`]), replacing what was kept:
    /// of each account, what its window reaches from `oldest` on.
    pub fn load(&mut self, windows: HashMap<i64, Millis>, history: &[JudgedClick], oldest: Millis) {
        let widest = windows.values().copied().max().unwrap_or(0);
        let mut kept: Vec<(i64, Millis, Seen)> = history
            .iter()
            .map(|h| (h, windows.get(&h.account_id).copied().unwrap_or(widest)))
            .filter(|(h, window)| h.click.at >= oldest - window - KEEP_MS)
            .map(|(h, window)| (h.click.email_id, window, Seen::from_stored(&h.click)))
            .collect();
        kept.sort_by_key(|(_, _, s)| (s.at, s.id));
        kept.dedup_by_key(|(_, _, s)| s.id);
        self.emails.clear();
        for (email_id, window, seen) in kept {
            self.emails.entry(email_id).or_insert_with(|| Email { window, ..Email::default() }).insert(seen);
        }
        self.windows = Some(windows);
    }

    /// Whether the clicks of this account are kept for a window as long as `window`: false when
    /// its filter widened it since the history was read, and the clicks just beyond the old
    /// window are not here. An account not seen before (created since) is kept from now on.
    pub fn keeps(&mut self, account_id: i64, window: Millis) -> bool {
        let Some(windows) = self.windows.as_mut() else { return false };
        *windows.entry(account_id).or_insert(window) >= window
    }

    /// What the judged clicks of this email within `window` of `at` show to a click on `link_no`.
    pub fn around(&self, email_id: i64, at: Millis, window: Millis, link_no: i64) -> Around {
        let Some(email) = self.emails.get(&email_id) else { return Around::default() };
        let near = &email.clicks[email.range(at, window)];
        Around {
            other_link: near.iter().any(|s| s.link_no != link_no && !s.honeypot),
            honeypot: email.honeypots > 0 && near.iter().any(|s| s.honeypot),
        }
    }

    /// Pins what a bot's click shows on its neighbours within `window`: a burst on the other
    /// links' clicks, a honeypot hit on every click that is not one. Each (click, reason) is
    /// pinned once; returns them for the caller to record.
    pub fn pin(
        &mut self,
        email_id: i64,
        at: Millis,
        window: Millis,
        link_no: i64,
        burst: bool,
        honeypot: bool,
    ) -> Vec<(i64, &'static str)> {
        let mut pinned = Vec::new();
        let Some(email) = self.emails.get_mut(&email_id) else { return pinned };
        let burst = burst && email.open_bursts > 0;
        if !burst && !honeypot {
            return pinned;
        }
        let range = email.range(at, window);
        let mut closed_bursts = 0;
        for s in &mut email.clicks[range] {
            if burst && s.takes_burst() && s.link_no != link_no {
                s.open_burst = false;
                closed_bursts += 1;
                pinned.push((s.id, BURST));
            }
            if honeypot && s.open_honeypot && !s.honeypot {
                s.open_honeypot = false;
                pinned.push((s.id, HONEYPOT_NEARBY));
            }
        }
        email.open_bursts -= closed_bursts;
        pinned
    }

    /// Adds a click just judged, kept for its account's window (see [`Self::keeps`]).
    pub fn push(&mut self, email_id: i64, account_id: i64, seen: Seen) {
        let window = self.windows.as_ref().and_then(|w| w.get(&account_id)).copied().unwrap_or(0);
        let email = self.emails.entry(email_id).or_insert_with(|| Email { window, ..Email::default() });
        email.window = email.window.max(window);
        email.insert(seen);
    }

    /// Drops what no click from `oldest` on can see: on the emails of this round, and on all
    /// of them once a second (an email nobody clicks any more goes entirely).
    pub fn end_round(&mut self, touched: impl IntoIterator<Item = i64>, oldest: Millis) {
        for id in touched {
            if let Some(e) = self.emails.get_mut(&id) {
                e.evict_before(oldest - e.window - KEEP_MS);
            }
        }
        if oldest - self.last_sweep >= SWEEP_MS {
            self.last_sweep = oldest;
            self.emails.retain(|_, e| {
                e.evict_before(oldest - e.window - KEEP_MS);
                e.start < e.clicks.len()
            });
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.emails.values().map(|e| e.live().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: i64, link_no: i64, at: Millis) -> Seen {
        Seen { id, link_no, at, honeypot: false, open_burst: true, open_honeypot: true }
    }

    /// Account 1's clicks kept for `window`, with no history.
    fn recent(window: Millis) -> RecentClicks {
        let mut r = RecentClicks::default();
        r.load(HashMap::from([(1, window)]), &[], 0);
        r
    }

    fn stored(id: i64, at: Millis, released: bool, reasons: &[&str]) -> JudgedClick {
        let click = NearbyClick {
            click_id: id,
            email_id: 7,
            link_no: id,
            at,
            honeypot: false,
            released,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        };
        JudgedClick { account_id: 1, click }
    }

    #[test]
    fn sees_only_the_window() {
        let mut r = recent(3_000);
        r.push(7, 1, seen(1, 1, 10_000));
        assert_eq!(r.around(7, 12_000, 3_000, 2), Around { other_link: true, honeypot: false });
        assert_eq!(r.around(7, 13_001, 3_000, 2), Around::default());
        assert!(r.around(7, 7_000, 3_000, 2).other_link, "a later click counts too");
        assert_eq!(r.around(7, 12_000, 3_000, 1), Around::default(), "the same link is no burst");
        assert_eq!(r.around(8, 10_000, 3_000, 2), Around::default(), "another email");
        r.push(7, 1, Seen { honeypot: true, ..seen(2, 9, 11_000) });
        assert_eq!(r.around(7, 12_000, 3_000, 1), Around { other_link: false, honeypot: true });
    }

    #[test]
    fn pins_each_reason_once() {
        let mut r = recent(3_000);
        r.push(7, 1, seen(1, 1, 10_000));
        r.push(7, 1, seen(2, 2, 10_500));
        r.push(7, 1, seen(3, 1, 20_000));
        assert_eq!(r.pin(7, 11_000, 3_000, 1, true, false), vec![(2, BURST)]);
        assert_eq!(r.pin(7, 11_000, 3_000, 3, true, false), vec![(1, BURST)]);
        assert!(r.pin(7, 11_000, 3_000, 4, true, false).is_empty(), "both carry it now");
        assert_eq!(r.pin(7, 11_000, 3_000, 4, false, true), vec![(1, HONEYPOT_NEARBY), (2, HONEYPOT_NEARBY)]);
        assert!(r.pin(7, 11_000, 3_000, 4, false, true).is_empty());
        assert_eq!(r.pin(7, 19_000, 3_000, 2, true, false), vec![(3, BURST)]);
    }

    #[test]
    fn stored_reasons_and_release_close_a_click() {
        let mut r = RecentClicks::default();
        let history = [
            stored(1, 10_001, false, &[BURST]),
            stored(2, 10_002, true, &[]),
            stored(3, 10_003, false, &["head_request"]),
        ];
        r.load(HashMap::from([(1, 3_000)]), &history, 10_000);
        assert_eq!(
            r.pin(7, 10_000, 3_000, 9, true, true),
            vec![(1, HONEYPOT_NEARBY), (3, BURST), (3, HONEYPOT_NEARBY)]
        );
    }

    #[test]
    fn keeps_time_order_and_forgets_old_clicks() {
        let mut r = recent(1_000);
        for (id, at) in [(1, 1_000), (2, 3_000), (3, 2_000)] {
            r.push(7, 1, seen(id, id, at));
        }
        r.push(8, 1, seen(4, 1, 1_500));
        assert!(r.around(7, 500, 1_000, 9).other_link);
        assert_eq!(r.pin(7, 2_500, 500, 9, true, false), vec![(3, BURST), (2, BURST)]);
        r.end_round([7], 4_500);
        assert_eq!(r.kept(), 3, "what is within window + 2 s of 4.5 s stays");
        r.end_round([], 7_000);
        assert_eq!(r.kept(), 0);
    }

    #[test]
    fn the_history_loaded_is_what_each_account_window_reaches() {
        let mut r = RecentClicks::default();
        assert!(!r.loaded() && !r.keeps(1, 0), "nothing is kept before the history is read");
        let windows = HashMap::from([(1, 3_000), (2, 10_000)]);
        assert_eq!(RecentClicks::history_from(&windows, 20_000), 20_000 - 10_000 - KEEP_MS);
        let mut other = stored(5, 9_000, false, &[]);
        (other.account_id, other.click.email_id) = (2, 8);
        // Account 1 reaches back to 15 s, account 2 to 8 s.
        r.load(windows, &[stored(1, 14_000, false, &[]), stored(2, 16_000, false, &[]), other], 20_000);
        assert!(r.loaded());
        assert_eq!(r.kept(), 2, "account 1's click at 14 s is beyond its window");
        assert!(r.around(8, 12_000, 10_000, 1).other_link);
        r.forget();
        assert!(!r.loaded() && r.kept() == 0);
    }

    #[test]
    fn a_window_wider_than_the_one_kept_is_refused() {
        let mut r = recent(3_000);
        assert!(r.keeps(1, 3_000) && r.keeps(1, 1_000));
        assert!(!r.keeps(1, 3_001), "clicks just beyond 3 s were let go");
        assert!(r.keeps(9, 60_000), "an account created since has no history before");
        assert!(!r.keeps(9, 60_001));
    }
}

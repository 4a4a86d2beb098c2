//! Judged clicks the settler holds in memory until their release.
//!
//! A click is held from its judgement until the judging frontier has passed its burst window
//! (`domain::click::ReleaseRule::due`): until then a later click may still overrule it. Held in the
//! store, a click's row was written three times after its insert: the verdict, then the release
//! flag, each with a commit and the partial index of held clicks on the way in and out, and the
//! release read every held row back. Held here, its row stays unjudged in the store until the
//! release writes verdict and release together, once.
//!
//! Nothing is lost with this memory: a held click's row is still unjudged, so a settler that
//! forgets (its turn was interrupted, a write failed, the process ended) judges it again. Only
//! so many are held ([`MAX_HELD`]); beyond, a round's judgements go to the store as before, and
//! are released from there.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::click::{overrule, ReleaseRule, Verdict};
use crate::domain::Millis;
use crate::store::{HeldClick, Judgement, NearbyClick, PendingClick};

/// Clicks held at most (about 200 bytes each with the map's share). Under sustained load a
/// click is held for its burst window and a quarter second (3.25 s by default) plus a round:
/// 25,000 covers settling 7,000 clicks a second with the default window, or 80,000 with none.
pub const MAX_HELD: usize = 25_000;

/// A judged click held here, with what its release and its burst history need.
#[derive(Debug, Clone)]
pub struct Kept {
    pub click: HeldClick,
    pub link_no: i64,
    pub honeypot: bool,
}

impl Kept {
    pub fn new(c: PendingClick, verdict: Verdict, reasons: Vec<String>) -> Self {
        Kept {
            click: HeldClick {
                id: c.id,
                account_id: c.account_id,
                email_id: c.email_id,
                url: c.url,
                at: c.at,
                verdict,
                rule: ReleaseRule::of(&c.filter),
                placed: c.placed,
                reasons,
            },
            link_no: c.link_no,
            honeypot: c.honeypot,
        }
    }

    /// The judgement its release writes.
    pub fn judgement(&self) -> Judgement {
        let c = &self.click;
        Judgement {
            click: NearbyClick {
                click_id: c.id,
                email_id: c.email_id,
                link_no: self.link_no,
                at: c.at,
                honeypot: self.honeypot,
                released: false,
                reasons: Vec::new(),
            },
            verdict: c.verdict,
            reasons: c.reasons.clone(),
        }
    }
}

/// The held clicks, by id, and by when they fall due: a round takes the due ones without
/// looking at the thousands that are not (scanning them all cost 1.5% of the process's CPU
/// under sustained load).
#[derive(Debug, Default)]
pub struct Holding {
    clicks: BTreeMap<i64, Kept>,
    /// (the frontier from which the click is due, its id), for every held click.
    by_due: BTreeSet<(Millis, i64)>,
}

impl Holding {
    pub fn len(&self) -> usize {
        self.clicks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clicks.is_empty()
    }

    /// Whether `n` more fit.
    pub fn has_room(&self, n: usize) -> bool {
        self.clicks.len() + n <= MAX_HELD
    }

    /// The ids held, ascending: the store leaves them out of the unjudged clicks it reads.
    pub fn ids(&self) -> Vec<i64> {
        self.clicks.keys().copied().collect()
    }

    pub fn keep(&mut self, kept: Kept) {
        let (id, due_at) = (kept.click.id, kept.click.rule.due_at(kept.click.at));
        if let Some(old) = self.clicks.insert(id, kept) {
            self.by_due.remove(&(old.click.rule.due_at(old.click.at), id));
        }
        self.by_due.insert((due_at, id));
    }

    /// Pins `new` reasons on a held click (`domain::click::overrule`); false if not held here.
    pub fn overrule(&mut self, id: i64, new: &[String]) -> bool {
        let Some(k) = self.clicks.get_mut(&id) else { return false };
        let (verdict, reasons) = overrule(k.click.verdict, &k.click.reasons, new);
        (k.click.verdict, k.click.reasons) = (verdict, reasons);
        true
    }

    /// Takes out the first `limit` clicks to fall due once judging has reached `frontier`. An
    /// account's clicks share one burst window, so they come out in the order they were made.
    pub fn take_due(&mut self, frontier: Millis, limit: usize) -> Vec<Kept> {
        let mut due = Vec::new();
        while due.len() < limit {
            match self.by_due.first() {
                Some(&(due_at, id)) if due_at <= frontier => {
                    self.by_due.pop_first();
                    due.extend(self.clicks.remove(&id));
                }
                _ => break,
            }
        }
        due
    }

    /// Forgets every held click: their rows are unjudged, and will be judged again.
    pub fn forget(&mut self) {
        self.clicks.clear();
        self.by_due.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClickFilter;

    fn pending(id: i64, at: Millis, burst_seconds: u32) -> PendingClick {
        PendingClick {
            id,
            account_id: 1,
            email_id: 7,
            link_no: 1,
            at,
            head: false,
            ip: None,
            user_agent: String::new(),
            email_sent_at: 0,
            honeypot: false,
            url: "https://example.com/".into(),
            filter: ClickFilter { burst_seconds, ..ClickFilter::default() }.into(),
            placed: None,
        }
    }

    #[test]
    fn clicks_are_due_once_the_frontier_passed_their_burst_window() {
        let mut h = Holding::default();
        h.keep(Kept::new(pending(2, 1_000, 3), Verdict::Human, vec![]));
        h.keep(Kept::new(pending(1, 2_000, 0), Verdict::Human, vec![]));
        h.keep(Kept::new(pending(3, 1_500, 0), Verdict::Human, vec![]));
        assert_eq!(h.ids(), vec![1, 2, 3]);
        let due: Vec<i64> = h.take_due(2_000, 10).iter().map(|k| k.click.id).collect();
        assert_eq!(due, vec![3, 1], "first due first; the one with a window of 3 s stays");
        assert!(h.take_due(3_999, 10).is_empty());
        assert_eq!(h.take_due(4_000, 0).len(), 0, "at most the limit");
        assert_eq!(h.take_due(4_000, 10).len(), 1);
        assert!(h.is_empty());
        assert!(h.by_due.is_empty());
    }

    #[test]
    fn clicks_go_in_the_order_they_fall_due() {
        // Made in the order 1, 2, 3, with windows (accounts) that make them due as 3, 1, 2.
        let mut h = Holding::default();
        h.keep(Kept::new(pending(1, 1_000, 2), Verdict::Human, vec![]));
        h.keep(Kept::new(pending(2, 1_100, 3), Verdict::Human, vec![]));
        h.keep(Kept::new(pending(3, 1_200, 0), Verdict::Human, vec![]));
        h.keep(Kept::new(pending(5, 1_200, 0), Verdict::Human, vec![]));
        let due: Vec<i64> = h.take_due(10_000, 3).iter().map(|k| k.click.id).collect();
        assert_eq!(due, vec![3, 5, 1], "one window's clicks in the order made, by id on a tie");
        let due: Vec<i64> = h.take_due(10_000, 3).iter().map(|k| k.click.id).collect();
        assert_eq!(due, vec![2]);
        // Kept again under the same id (judged again): held once, due by its new window.
        h.keep(Kept::new(pending(4, 1_000, 0), Verdict::Human, vec![]));
        h.keep(Kept::new(pending(4, 1_000, 5), Verdict::Human, vec![]));
        assert!(h.take_due(1_000, 10).is_empty());
        assert_eq!(h.take_due(6_000, 10).len(), 1);
        assert!(h.is_empty() && h.by_due.is_empty());
    }

    #[test]
    fn an_overrule_changes_a_held_click_and_nothing_else() {
        let mut h = Holding::default();
        h.keep(Kept::new(pending(1, 1_000, 3), Verdict::Human, vec![]));
        assert!(h.overrule(1, &["burst_of_links".to_string()]));
        assert!(!h.overrule(2, &["burst_of_links".to_string()]), "not held here");
        let k = &h.take_due(i64::MAX, 1)[0];
        assert_eq!((k.click.verdict, k.click.reasons.clone()), (Verdict::Bot, vec!["burst_of_links".to_string()]));
        let j = k.judgement();
        assert_eq!((j.click.click_id, j.verdict), (1, Verdict::Bot));
    }

    #[test]
    fn room_is_bounded() {
        let mut h = Holding::default();
        assert!(h.has_room(MAX_HELD));
        assert!(!h.has_room(MAX_HELD + 1));
        h.keep(Kept::new(pending(1, 0, 0), Verdict::Human, vec![]));
        assert!(!h.has_room(MAX_HELD));
        h.forget();
        assert!(h.is_empty());
    }
}

//! Clicks' verdicts, and the rules of settling them: when a verdict may still be overruled,
//! how overrules merge, when a held click is released, and how much burst history is kept.

use super::{wire_enum, ClickFilter, Millis};

wire_enum!(
    /// Whether a person made a click. A click has none until the settler judges it.
    Verdict, "verdict" {
    Human = "human",
    Bot = "bot",
});

/// Whether overruling a judged click for `reason` would change anything: it is still held,
/// and does not carry that reason yet.
pub fn may_overrule(released: bool, reasons: &[String], reason: &str) -> bool {
    !released && !reasons.iter().any(|r| r == reason)
}

/// A held click's verdict and reasons once later clicks showed it to be a bot's for `new`
/// reasons: a person's click becomes a bot's for those reasons alone; a bot's keeps its
/// reasons and gains the new ones it did not carry.
pub fn overrule(verdict: Verdict, reasons: &[String], new: &[String]) -> (Verdict, Vec<String>) {
    let mut merged = if verdict == Verdict::Human { Vec::new() } else { reasons.to_vec() };
    for r in new {
        if !merged.contains(r) {
            merged.push(r.clone());
        }
    }
    (Verdict::Bot, merged)
}

/// What the release of a held click reads of its account's filter: a few bytes to keep per held
/// click, where the whole filter is a hundred and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseRule {
    pub burst_window_ms: Millis,
    pub deliver_bot_clicks: bool,
}

impl ReleaseRule {
    pub fn of(filter: &ClickFilter) -> Self {
        ReleaseRule { burst_window_ms: filter.burst_window_ms(), deliver_bot_clicks: filter.deliver_bot_clicks }
    }

    /// Whether a held click made at `at` can be released once judging has reached `frontier`:
    /// no click judged later can fall inside its burst window any more.
    pub fn due(&self, at: Millis, frontier: Millis) -> bool {
        self.due_at(at) <= frontier
    }

    /// The judging frontier from which a held click made at `at` is due.
    pub fn due_at(&self, at: Millis) -> Millis {
        at.saturating_add(self.burst_window_ms)
    }

    /// Whether a click with this verdict becomes a webhook.
    pub fn delivers(&self, verdict: Verdict) -> bool {
        verdict == Verdict::Human || self.deliver_bot_clicks
    }
}

/// Which rows of a burst history table (PostgreSQL's: judged clicks by time) a round of judging
/// removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPrune {
    /// Rows older than this can no longer fall in anyone's window.
    pub before: Millis,
    /// Only the oldest this many rows are looked at: twice what went in, so the history cannot
    /// grow, and a round never scans more than a little of it.
    pub oldest_rows: i64,
}

impl HistoryPrune {
    /// After judging clicks made at `judged_at`. Only the longest burst window back is ever
    /// looked at; twice that is kept, since clicks go in roughly, not strictly, in time order.
    pub fn after(judged_at: &[Millis]) -> Option<Self> {
        let oldest = judged_at.iter().min()?;
        Some(HistoryPrune {
            before: oldest - 2 * i64::from(ClickFilter::MAX_BURST_SECONDS) * 1000,
            oldest_rows: 2 * judged_at.len() as i64 + 16,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overrules_only_what_it_would_change() {
        assert!(may_overrule(false, &[], "burst_of_links"));
        assert!(may_overrule(false, &reasons(&["too_soon_after_send"]), "burst_of_links"));
        assert!(!may_overrule(false, &reasons(&["too_soon_after_send", "burst_of_links"]), "burst_of_links"));
        // A reason that merely contains the name is another reason.
        assert!(may_overrule(false, &reasons(&["burst_of_links_x"]), "burst_of_links"));
        assert!(!may_overrule(true, &[], "burst_of_links"));
    }

    #[test]
    fn overrules_merge() {
        let new = reasons(&["burst_of_links", "honeypot_hit_nearby"]);
        assert_eq!(overrule(Verdict::Human, &reasons(&["no_bot_signal"]), &new), (Verdict::Bot, new.clone()));
        assert_eq!(
            overrule(Verdict::Bot, &reasons(&["head_request", "burst_of_links"]), &new).1,
            reasons(&["head_request", "burst_of_links", "honeypot_hit_nearby"])
        );
    }

    #[test]
    fn a_click_is_released_once_its_window_has_passed_the_frontier() {
        let f = ClickFilter::default();
        assert!(!ReleaseRule::of(&f).due(10_000, 12_999));
        assert!(ReleaseRule::of(&f).due(10_000, 13_000));
        assert!(ReleaseRule::of(&ClickFilter { burst_seconds: 0, ..f.clone() }).due(10_000, 10_000));
        assert!(!ReleaseRule::of(&f).delivers(Verdict::Bot));
        assert!(ReleaseRule::of(&ClickFilter { deliver_bot_clicks: true, ..f }).delivers(Verdict::Bot));
    }

    #[test]
    fn history_prune_bound() {
        assert_eq!(HistoryPrune::after(&[]), None);
        assert_eq!(
            HistoryPrune::after(&[500_000, 400_000]),
            Some(HistoryPrune { before: 400_000 - 120_000, oldest_rows: 20 })
        );
    }

    #[test]
    fn verdicts_read_strictly() {
        assert_eq!(Verdict::parse("human").unwrap(), Verdict::Human);
        assert!(Verdict::parse("maybe").is_err());
        assert_eq!(Verdict::Bot.as_str(), "bot");
    }
}

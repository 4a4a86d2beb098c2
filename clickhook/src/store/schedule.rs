//! The hints the click path and background work exchange through the store.
//!
//! Redirects come first. A store tells settling whether clicks are flowing, so it can wait
//! for a lull; settling tells the store when it has fallen too far behind, so that its
//! writes stop yielding; and nodes sharing a database elect the one that settles.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::error::StoreResult;
use crate::domain::now_millis;

/// Background work waits for a quiet moment at most this long, then takes its turn anyway.
pub const BACKGROUND_PARK: Duration = Duration::from_secs(2);

#[async_trait]
pub trait Scheduling: Send + Sync {
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
    /// leave the machine room, or after at most [`BACKGROUND_PARK`], so a burst of clicks is
    /// not slowed down by settling (which catches up afterwards).
    async fn yield_to_clicks(&self) {
        let until = Instant::now() + BACKGROUND_PARK;
        while self.clicks_flowing() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(LastClickCommit::FLOWING_MS as u64 / 2)).await;
        }
    }
}

/// When a store's click writer last committed clicks: background work reads it to keep its
/// transactions out of their way ([`Scheduling::clicks_flowing`]).
#[derive(Default)]
pub struct LastClickCommit(AtomicI64);

impl LastClickCommit {
    /// Clicks committed within this many milliseconds count as flowing.
    pub const FLOWING_MS: i64 = 50;

    pub fn mark(&self) {
        self.0.store(now_millis(), Ordering::Relaxed);
    }

    pub fn flowing(&self) -> bool {
        now_millis() - self.0.load(Ordering::Relaxed) < Self::FLOWING_MS
    }
}

//! The hints the click path and background work exchange through the store.
//!
//! Redirects come first. A store tells settling whether clicks are flowing, so it can wait
//! while they take the CPU; settling tells the store when it has fallen too far behind, so
//! that its writes stop yielding; and nodes sharing a database elect the one that settles.

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

    /// Called by background work before each round while it is not behind: returns at once
    /// while no clicks flow or the process has CPU to spare, else once it has, or after at most
    /// [`BACKGROUND_PARK`]: a burst that saturates the machine is not slowed down by settling
    /// (which catches up afterwards), and a steady load below that is settled as it comes.
    async fn yield_to_clicks(&self) {
        self.yield_to_clicks_after(Duration::ZERO).await
    }

    /// The same, waiting `at_least` first while clicks flow (background work that keeps its
    /// share of the time small while it is not needed at once).
    async fn yield_to_clicks_after(&self, at_least: Duration) {
        if !self.clicks_flowing() {
            return;
        }
        let until = Instant::now() + BACKGROUND_PARK;
        let mut look = CpuLook::start();
        tokio::time::sleep(at_least.max(CpuLook::SPAN)).await;
        while self.clicks_flowing() && look.share() > CpuLook::BUSY && Instant::now() < until {
            look = CpuLook::start();
            tokio::time::sleep(CpuLook::SPAN).await;
        }
    }
}

/// The share of the CPU it may use (the cores of its affinity and cgroup quota) that the
/// process used since a moment: whether background work would take the clicks' CPU.
pub struct CpuLook {
    at: Instant,
    cpu: Duration,
}

impl CpuLook {
    /// Busy above this share: background work then waits.
    pub const BUSY: f64 = 0.7;
    /// How long one look lasts.
    pub const SPAN: Duration = Duration::from_millis(5);

    pub fn start() -> Self {
        CpuLook { at: Instant::now(), cpu: process_cpu() }
    }

    pub fn share(&self) -> f64 {
        let wall = self.at.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
        let used = process_cpu().saturating_sub(self.cpu).as_secs_f64();
        if wall <= 0.0 {
            0.0
        } else {
            used / wall / cores
        }
    }
}

/// CPU time the process has used, all threads together.
fn process_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes into the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
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

//! The hints the click path and background work exchange through the store.
//!
//! Redirects come first. A store tells settling whether clicks are flowing, so it can wait
//! while they take the CPU; settling tells the store when it has fallen too far behind, so
//! that its writes stop yielding; and nodes sharing a database elect the one that settles.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::LazyLock;
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

    /// Said by the settler after each round: how many clicks it moved on. Where clicks do not
    /// wait behind settling in a queue of the store's own (PostgreSQL), the click path is let
    /// through at half this rate while settling is behind ([`ClickAdmission`]).
    fn settled(&self, _clicks: usize) {}

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

    /// Called by settling before each round while it is not behind: returns at once while no
    /// clicks flow or the process has CPU to spare, else once it has, or after at most
    /// [`BACKGROUND_PARK`]: a burst that saturates the machine is not slowed down by settling
    /// (which catches up afterwards), and a steady load below that is settled as it comes.
    async fn yield_to_clicks(&self) {
        wait_for_spare(self, Duration::ZERO, Look::Process).await
    }

    /// Called before each step by work that can wait hours (pruning): while clicks flow it
    /// waits `at_least`, then for as long as the cores the process runs on are busy, whoever
    /// keeps them busy, or at most [`BACKGROUND_PARK`]. The process's own CPU time misses the
    /// kernel's network work for its sockets: in a saturating burst on one core the process
    /// used 40–70% of it, the kernel most of the rest, and idle was 12%.
    async fn defer_to_clicks(&self, at_least: Duration) {
        wait_for_spare(self, at_least, Look::Cores).await
    }
}

async fn wait_for_spare<S: Scheduling + ?Sized>(store: &S, at_least: Duration, what: Look) {
    if !store.clicks_flowing() {
        return;
    }
    let until = Instant::now() + BACKGROUND_PARK;
    let mut look = what.start();
    tokio::time::sleep(at_least.max(what.span())).await;
    while store.clicks_flowing() && look.share() > BUSY && Instant::now() < until {
        look = what.start();
        tokio::time::sleep(what.span()).await;
    }
}

/// Busy above this share: background work then waits.
const BUSY: f64 = 0.7;

/// Which CPU time background work looks at to see whether clicks need the CPU.
#[derive(Clone, Copy)]
enum Look {
    /// The process's own, against the cores it may use (affinity and cgroup quota): read to the
    /// nanosecond, so a look is short.
    Process,
    /// Every task's on the cores of the process's affinity, kernel work included (`/proc/stat`):
    /// counted in ticks of 10 ms, so a look is long.
    Cores,
}

impl Look {
    fn span(self) -> Duration {
        match self {
            Look::Process => Duration::from_millis(5),
            Look::Cores => Duration::from_millis(100),
        }
    }

    fn start(self) -> CpuLook {
        CpuLook { at: Instant::now(), what: self, used: self.used() }
    }

    /// CPU time used so far, and how many cores it is spread over.
    fn used(self) -> (Duration, f64) {
        match self {
            Look::Process => (process_cpu(), *CORES),
            Look::Cores => cores_busy().map_or((Duration::ZERO, 1.0), |busy| (busy, AFFINITY.len() as f64)),
        }
    }
}

/// A look at CPU time from a moment on.
struct CpuLook {
    at: Instant,
    what: Look,
    used: (Duration, f64),
}

impl CpuLook {
    /// The share of the CPU used since the look began.
    fn share(&self) -> f64 {
        let wall = self.at.elapsed().as_secs_f64();
        let (now, cores) = self.what.used();
        if wall <= 0.0 {
            return 0.0;
        }
        now.saturating_sub(self.used.0).as_secs_f64() / wall / cores
    }
}

/// Cores this process may use (affinity and cgroup quota); read once, as the std call reads
/// the cgroup files each time.
static CORES: LazyLock<f64> = LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);

/// The cores of this process's affinity, read once.
static AFFINITY: LazyLock<Vec<usize>> = LazyLock::new(|| {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
});

/// Time the cores of [`AFFINITY`] spent on anything but idling, from `/proc/stat`.
fn cores_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = busy_ticks(&stat, &AFFINITY)?;
    // SAFETY: sysconf has no preconditions. Its answer is USER_HZ, the unit of /proc/stat.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Some(Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / per_second)))
}

/// Ticks the given cores spent busy (all but `idle` and `iowait`), from `/proc/stat` text.
fn busy_ticks(stat: &str, cores: &[usize]) -> Option<u64> {
    let mut busy = 0;
    let mut seen = 0;
    for line in stat.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(core) = fields.next().and_then(|f| f.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if !cores.contains(&core) {
            continue;
        }
        let ticks: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        busy += ticks.iter().take(8).sum::<u64>().saturating_sub(idle);
        seen += 1;
    }
    (seen > 0).then_some(busy)
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

/// Backpressure for a click path that has a connection of its own (PostgreSQL): while settling
/// is behind ([`Scheduling::settle_urgently`]), groups of clicks are admitted at half the rate
/// settling moves clicks on ([`Scheduling::settled`]), so the outbox shrinks back to the bound
/// and clicks slow down instead, as on SQLite, where they share the writer with settling. Without it one
/// saturated core answered clicks ten times as fast as it settled them, and the outbox grew
/// without bound. While settling keeps up it costs one atomic load per group.
#[derive(Default)]
pub struct ClickAdmission {
    urgent: AtomicBool,
    /// Clicks settled and not yet matched by clicks admitted; below zero, groups wait.
    credit: AtomicI64,
    changed: tokio::sync::Notify,
}

impl ClickAdmission {
    /// Most credit a fast round can leave for later: a few rounds' worth, never a free run.
    const MAX_CREDIT: i64 = 16_384;
    /// A group waits at most this long for credit, so a settler that has stopped (errors, a
    /// lost turn) slows clicks down but never stops them.
    pub const MAX_WAIT: Duration = Duration::from_secs(1);

    pub fn set_urgent(&self, urgent: bool) {
        if self.urgent.swap(urgent, Ordering::Relaxed) != urgent {
            self.credit.store(0, Ordering::Relaxed);
            self.changed.notify_waiters();
        }
    }

    pub fn settled(&self, clicks: usize) {
        if self.urgent.load(Ordering::Relaxed) {
            let add = i64::try_from(clicks / 2).unwrap_or(i64::MAX);
            let _ = self.credit.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_add(add).min(Self::MAX_CREDIT))
            });
            self.changed.notify_waiters();
        }
    }

    /// Waits until a group of `clicks` may be written: at once while settling keeps up; while
    /// it is behind, once the credit is not negative (the group may then take it below zero), or
    /// after [`Self::MAX_WAIT`].
    pub async fn admit(&self, clicks: usize) {
        let n = i64::try_from(clicks).unwrap_or(i64::MAX);
        let deadline = tokio::time::Instant::now() + Self::MAX_WAIT;
        loop {
            let changed = self.changed.notified();
            if !self.urgent.load(Ordering::Relaxed) {
                return;
            }
            if self.credit.load(Ordering::Relaxed) >= 0 || tokio::time::Instant::now() >= deadline {
                self.credit.fetch_sub(n, Ordering::Relaxed);
                return;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn clicks_are_admitted_as_fast_as_settling_moves_them_while_it_is_behind() {
        let a = Arc::new(ClickAdmission::default());
        a.admit(1000).await; // keeping up: at once
        a.set_urgent(true);
        a.admit(100).await; // credit 0: this group goes, into debt
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.admit(10).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "in debt, a group waits for settling");
        a.settled(120);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "two settled clicks pay for one admitted: still 40 in debt");
        a.settled(80);
        waiting.await.unwrap();
        a.settled(10_000_000);
        assert_eq!(a.credit.load(Ordering::Relaxed), ClickAdmission::MAX_CREDIT, "credit is capped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_group_goes_once_settling_catches_up_or_after_the_longest_wait() {
        let a = Arc::new(ClickAdmission::default());
        a.set_urgent(true);
        a.admit(50).await;
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.admit(10).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        a.set_urgent(false);
        waiting.await.unwrap();
        a.set_urgent(true);
        a.admit(50).await;
        let start = tokio::time::Instant::now();
        a.admit(10).await; // nobody settles: it goes after the longest wait
        assert_eq!(start.elapsed(), ClickAdmission::MAX_WAIT);
    }

    #[test]
    fn busy_ticks_of_the_given_cores() {
        let stat = "cpu  100 0 100 1000 10 0 50 0 0 0\n\
                    cpu0 10 0 20 300 5 0 30 1 0 0\n\
                    cpu1 90 0 80 700 5 0 20 0 0 0\n\
                    intr 12345\n";
        assert_eq!(busy_ticks(stat, &[0]), Some(10 + 20 + 30 + 1));
        assert_eq!(busy_ticks(stat, &[0, 1]), Some(61 + 90 + 80 + 20));
        assert_eq!(busy_ticks(stat, &[7]), None);
    }
}

//! The writer thread with group commit, the checkpointer, and the pool of readers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::sql::db_err;
use super::SqliteStore;
use crate::store::error::{StoreError, StoreResult};
use crate::store::records::NewClick;
use crate::store::schedule::{LastClickCommit, BACKGROUND_PARK};

/// Upper bound on messages folded into one transaction; keeps commit latency bounded.
const MAX_GROUP: usize = 4096;

/// A group that takes longer than this holds up every click behind it: logged (debug).
const SLOW_GROUP: std::time::Duration = std::time::Duration::from_millis(50);

/// Background jobs yield to clicks, but never for longer than this.
const BACKGROUND_MAX_WAIT: std::time::Duration = BACKGROUND_PARK;

#[derive(Debug, Clone)]
pub struct Options {
    /// `FULL` survives power loss; `NORMAL` survives a killed process only.
    pub synchronous: &'static str,
    pub readers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { synchronous: "FULL", readers: 4 }
    }
}

type Done = Box<dyn FnOnce(StoreResult<()>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

enum Msg {
    Job(Job),
    /// Background work (settling): runs when no click is waiting, or after `BACKGROUND_MAX_WAIT`.
    Background(Job),
    Click(NewClick, oneshot::Sender<StoreResult<()>>),
    Close(oneshot::Sender<()>),
}

/// The queue to the writer thread, and the checkpointer's off switch.
pub(super) struct Writer {
    tx: mpsc::Sender<Msg>,
    stop_checkpoints: Arc<AtomicBool>,
    /// The last write failed for want of room (see `SqliteStore::writable`).
    pub(super) cannot_write: AtomicBool,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        path: &Path,
        last_click_commit: Arc<LastClickCommit>,
    ) -> anyhow::Result<Self> {
        conn.set_prepared_statement_cache_capacity(128);
        stable_plans(&conn)?;
        // Once restarted, the WAL file is cut back to this, whatever a burst grew it to.
        conn.pragma_update(None, "journal_size_limit", WAL_RESTART_FRAMES * 4 * 4096)?;
        let (tx, rx) = mpsc::channel();
        let finish_checkpoint = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new().name("sqlite-writer".into()).spawn({
            let finish_checkpoint = finish_checkpoint.clone();
            move || {
                batch_scheduling();
                writer_loop(conn, rx, &last_click_commit, &finish_checkpoint)
            }
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(std::time::Duration::from_secs(5))?;
        std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn({
            let stop = stop.clone();
            move || checkpoint_loop(checkpointer, stop, &finish_checkpoint)
        })?;
        Ok(Writer { tx, stop_checkpoints: stop, cannot_write: AtomicBool::new(false) })
    }

    pub(super) async fn click(&self, click: NewClick) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Click(click, tx)).map_err(|_| StoreError::closed())?;
        self.noted(rx.await.map_err(|_| StoreError::closed())?.map(|()| ((), true)))
    }

    /// Notes whether a write found room, for `SqliteStore::writable`: a failure for want of room
    /// says there is none, and only a commit that wrote something says there is again (a job
    /// that changed nothing succeeds on a full disk too).
    fn noted<T>(&self, result: StoreResult<(T, bool)>) -> StoreResult<T> {
        match &result {
            Ok((_, true)) => self.cannot_write.store(false, Ordering::Relaxed),
            Err(StoreError::CannotWrite(_)) => self.cannot_write.store(true, Ordering::Relaxed),
            _ => {}
        }
        result.map(|(v, _)| v)
    }

    pub(super) async fn close(&self) {
        self.stop_checkpoints.store(true, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    async fn job<T: Send + 'static>(
        &self,
        background: bool,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: &Connection| -> Done {
            if let Err(e) = run_cached(conn, "SAVEPOINT job") {
                let _ = tx.send(Err(e));
                return Box::new(|_| {});
            }
            let changes = conn.total_changes();
            match f(conn) {
                Ok(v) => {
                    let wrote = conn.total_changes() != changes;
                    let released = run_cached(conn, "RELEASE job");
                    Box::new(move |committed: StoreResult<()>| {
                        let _ = tx.send(released.and(committed).map(|_| (v, wrote)));
                    })
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    let _ = tx.send(Err(e));
                    Box::new(|_| {})
                }
            }
        });
        let msg = if background { Msg::Background(job) } else { Msg::Job(job) };
        self.tx.send(msg).map_err(|_| StoreError::closed())?;
        self.noted(rx.await.map_err(|_| StoreError::closed())?)
    }
}

impl SqliteStore {
    /// Queues `f` for the writer; resolves after the transaction that ran it has committed.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.writer.job(false, f).await
    }

    /// Like `write`, for background work: it yields to clicks waiting for their commit, unless
    /// the settler has fallen behind.
    pub(super) async fn write_background<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.writer.job(!self.urgent(), f).await
    }

    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.readers.read(f).await
    }
}

/// Read-only connections, at most `permits` in use: a burst of reads (a cold link cache under
/// load) waits its turn instead of opening a connection and a blocking thread per read
/// (measured: 512 threads, the blocking pool's limit, in the click benchmark's first second).
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    permits: tokio::sync::Semaphore,
}

impl Readers {
    pub(super) fn new(path: &Path, readers: usize) -> Self {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            max_idle: readers,
            permits: tokio::sync::Semaphore::new(readers),
        }
    }

    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let readers = self.clone();
        let _permit = self.permits.acquire().await.map_err(|_| StoreError::closed())?;
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn);
            readers.put(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Other(format!("reader task failed: {e}")))?
    }

    fn take(&self) -> StoreResult<Connection> {
        if let Some(c) = self.idle.lock().unwrap().pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
        stable_plans(&conn).map_err(db_err)?;
        Ok(conn)
    }
    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }
}

/// The bundled SQLite has STAT4: without the query planner stability guarantee, binding a new
/// value to a parameter compared with an indexed column expires the statement, and every
/// execution of a cached statement compiled it again (measured: 4-5% of the writer's CPU while
/// settling). Our queries have one good plan whatever the values.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(|_| ())
}

/// SCHED_BATCH: a woken writer does not preempt the thread that woke it. On a busy core the
/// request handlers keep running and queue more clicks, so each commit carries more of them.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    // SAFETY: changes only this thread's policy; on failure the policy stays as it was.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// The WAL is restarted once it holds this many frames (4 KiB pages each).
const WAL_RESTART_FRAMES: i64 = 4096;

/// Moves WAL frames into the database off the writer thread. Commits never wait for a
/// checkpoint (PASSIVE never blocks the writer). It runs at normal priority on purpose: a
/// checkpoint holds WAL locks, and a starved checkpointer holding them stalls the writer
/// (measured: p99 of redirects 5 ms → 80 ms).
///
/// The WAL restarts from its start only once a checkpoint has copied all of it, and while the
/// writer commits every millisecond this thread never gets there: the WAL grew for as long as
/// the load lasted (2.5 GB in 30 s of clicks and their webhooks), every frame went to a newly
/// allocated part of the file (the kernel zeroing pages: an eighth of the writer's CPU), and
/// every read searched a longer WAL index. So once the WAL is long, the writer is asked to copy
/// the last few frames itself, between two transactions, when nothing is appended meanwhile.
fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>, finish: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
            Ok((log, _copied)) if log >= WAL_RESTART_FRAMES => finish.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::debug!("checkpoint: {e}"),
        }
    }
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    last_click_commit: &LastClickCommit,
    finish_checkpoint: &AtomicBool,
) {
    let mut group: Vec<Msg> = Vec::with_capacity(256);
    let mut background: std::collections::VecDeque<(std::time::Instant, Job)> = Default::default();
    loop {
        if finish_checkpoint.swap(false, Ordering::Relaxed) {
            // The checkpointer copied most of the WAL; the rest is copied here, and the next
            // transaction starts the WAL over (unless a reader still reads an older snapshot).
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!("checkpoint on the writer: {e}");
            }
        }
        // Block for work only when no background job waits either.
        let first = if background.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        };
        group.extend(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let any_click = group.iter().any(|m| matches!(m, Msg::Click(..)));
        // Park background jobs; run one when the clicks leave room, or when it has waited too long.
        let mut i = 0;
        while i < group.len() {
            if matches!(group[i], Msg::Background(_)) {
                if let Msg::Background(job) = group.remove(i) {
                    background.push_back((std::time::Instant::now(), job));
                }
            } else {
                i += 1;
            }
        }
        let overdue = background.front().is_some_and(|(t, _)| t.elapsed() > BACKGROUND_MAX_WAIT);
        if !any_click || overdue {
            if let Some((_, job)) = background.pop_front() {
                group.push(Msg::Job(job));
            }
        }
        if group.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let began = run_cached(&conn, "BEGIN IMMEDIATE");
        let mut clicks = Vec::new();
        let mut queued = Vec::new();
        let mut dones: Vec<Done> = Vec::new();
        let mut closing = None;
        for msg in group.drain(..) {
            match msg {
                Msg::Click(click, tx) => queued.push((click, tx)),
                Msg::Job(job) => match &began {
                    Ok(()) => dones.push(job(&conn)),
                    Err(e) => {
                        let e = e.clone();
                        // Run nothing: answer the job's waiter through a throwaway Done.
                        drop(job);
                        tracing::error!("writer could not begin a transaction: {e}");
                    }
                },
                Msg::Close(ack) => closing = Some(ack),
                Msg::Background(_) => unreachable!("background jobs were parked above"),
            }
        }
        // Multi-row inserts in power-of-two chunks: a handful of cached statements, few VM runs.
        while !queued.is_empty() {
            let n = 1 << (queued.len().min(32).ilog2());
            let chunk: Vec<_> = queued.drain(..n).collect();
            match began.clone().and_then(|_| insert_clicks(&conn, &chunk)) {
                Ok(()) => clicks.extend(chunk.into_iter().map(|(_, tx)| tx)),
                Err(e) => chunk.into_iter().for_each(|(_, tx)| {
                    let _ = tx.send(Err(e.clone()));
                }),
            }
        }
        let committed = began.and_then(|_| run_cached(&conn, "COMMIT"));
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        crate::metrics::METRICS.observe_commit(clicks.len() + dones.len());
        if started.elapsed() > SLOW_GROUP {
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                clicks = clicks.len(),
                jobs = dones.len(),
                "slow group commit"
            );
        }
        if !clicks.is_empty() {
            last_click_commit.mark();
        }
        for tx in clicks {
            let _ = tx.send(committed.clone());
        }
        for done in dones {
            done(committed.clone());
        }
        if let Some(ack) = closing {
            // Background jobs still parked are dropped: their callers see the store closed.
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
            let _ = ack.send(());
            return;
        }
    }
}

/// A statement the writer runs for every group: prepared once, not parsed each time (the
/// parser showed in the writer's profile).
pub(super) fn run_cached(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql).and_then(|mut st| st.raw_execute()).map(|_| ()).map_err(db_err)
}

fn insert_clicks(conn: &Connection, rows: &[(NewClick, oneshot::Sender<StoreResult<()>>)]) -> StoreResult<()> {
    let mut sql = String::from("INSERT INTO clicks (account_id, email_id, link_no, at, head, ip, user_agent) VALUES ");
    for i in 0..rows.len() {
        sql.push_str(if i == 0 { "(?,?,?,?,?,?,?)" } else { ",(?,?,?,?,?,?,?)" });
    }
    let mut st = conn.prepare_cached(&sql).map_err(db_err)?;
    for (i, (c, _)) in rows.iter().enumerate() {
        let at = i * 7;
        st.raw_bind_parameter(at + 1, c.account_id).map_err(db_err)?;
        st.raw_bind_parameter(at + 2, c.email_id).map_err(db_err)?;
        st.raw_bind_parameter(at + 3, c.link_no).map_err(db_err)?;
        st.raw_bind_parameter(at + 4, c.at).map_err(db_err)?;
        st.raw_bind_parameter(at + 5, c.head).map_err(db_err)?;
        st.raw_bind_parameter(at + 6, &c.ip).map_err(db_err)?;
        st.raw_bind_parameter(at + 7, &c.user_agent).map_err(db_err)?;
    }
    st.raw_execute().map(|_| ()).map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schedule::Scheduling;
    use std::time::{Duration, Instant};

    /// Held by the tests that saturate the writer for seconds: beside each other on two cores,
    /// the one that needs its clicker thread to keep the queue full found it run dry (a
    /// background write let through at once, in a CI run).
    static SATURATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn click() -> NewClick {
        NewClick {
            account_id: 1,
            email_id: 1,
            link_no: 0,
            at: crate::domain::now_millis(),
            head: false,
            ip: None,
            user_agent: String::new(),
        }
    }

    /// How long a background write takes to commit while the writer is saturated: a thread
    /// keeps far more clicks queued than one transaction takes, so the queue never runs dry,
    /// not even while that thread waits for a core (5 groups' worth ran dry in a CI run with
    /// every test sharing two cores: a group without clicks let the write through at 593 ms).
    async fn background_write_under_saturation(store: &Arc<SqliteStore>) -> Duration {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clicker = std::thread::spawn({
            let (writer, stop) = (store.writer.tx.clone(), stop.clone());
            move || {
                let mut outstanding = std::collections::VecDeque::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    while outstanding.len() < 50 * MAX_GROUP {
                        let (tx, rx) = oneshot::channel();
                        writer.send(Msg::Click(click(), tx)).unwrap();
                        outstanding.push_back(rx);
                    }
                    outstanding.pop_front().unwrap().blocking_recv().unwrap().unwrap();
                }
            }
        });
        while !store.clicks_flowing() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        store.write_background(|conn| conn.execute_batch("SELECT 1").map_err(db_err)).await.unwrap();
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        clicker.join().unwrap();
        took
    }

    /// The WAL starts over once it is long, under writes that never leave the checkpointer time
    /// to catch up: left to the checkpointer alone it grew for as long as they lasted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_writes_that_never_pause() {
        let _alone = SATURATING.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let opts = Options { synchronous: "NORMAL", ..Options::default() };
        let store = SqliteStore::open(&path, opts).await.unwrap();
        let sql = |sql: &'static str| move |conn: &Connection| conn.execute_batch(sql).map_err(db_err);
        store.write(sql("CREATE TABLE filler (b BLOB)")).await.unwrap();
        let wal = path.with_extension("db-wal");
        let frame = 4096 + 24;
        // A transaction a millisecond, each of 8 overflow pages and more: the checkpointer,
        // copying every 250 ms, always finds frames appended while it copied. Measured: the
        // WAL peaked at 18 MB; with the writer's own copy taken out, at 131 MB.
        let (commits, pages_each) = (2_500, 8);
        let mut longest = 0;
        for i in 0..commits {
            store
                .write(sql("INSERT INTO filler VALUES (randomblob(32000)); \
                            DELETE FROM filler WHERE rowid < (SELECT max(rowid) FROM filler) - 20"))
                .await
                .unwrap();
            if i % 50 == 0 {
                longest = longest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let written = commits * pages_each * frame;
        let bound = 2 * WAL_RESTART_FRAMES as u64 * frame;
        assert!(written >= 2 * bound, "the test writes too little to tell: {written} bytes");
        assert!(longest <= bound, "the WAL grew to {longest} bytes ({written} went through it)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_writes_stop_yielding_to_clicks_when_settling_is_behind() {
        let _alone = SATURATING.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { synchronous: "NORMAL", ..Options::default() };
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), opts).await.unwrap());
        let parked = background_write_under_saturation(&store).await;
        assert!(parked >= BACKGROUND_MAX_WAIT, "a background write waits for a lull in the clicks: {parked:?}");
        store.settle_urgently(true);
        let urgent = background_write_under_saturation(&store).await;
        assert!(urgent < BACKGROUND_MAX_WAIT / 2, "behind, it takes its turn with the clicks: {urgent:?}");
    }
}

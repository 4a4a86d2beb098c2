//! The embedded store: one SQLite file in WAL mode.
//!
//! One writer thread owns the only writing connection. It takes everything queued,
//! runs it in one transaction and commits once (group commit), so a burst of clicks
//! costs one fsync rather than one each; every caller is answered only after that
//! commit. Each queued job runs inside its own savepoint, so one failing job rolls back
//! alone. Reads run on a small pool of read-only connections, which WAL lets proceed
//! while the writer commits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use tokio::sync::oneshot;

use super::*;
use crate::domain::{CampaignStatus, EmailAddress};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_delivery.sql"),
    include_str!("../../migrations/sqlite/0003_settle_frontier.sql"),
];

/// Upper bound on messages folded into one transaction; keeps commit latency bounded.
const MAX_GROUP: usize = 4096;

/// Background jobs yield to clicks, but never for longer than this.
const BACKGROUND_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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

pub struct SqliteStore {
    writer: mpsc::Sender<Msg>,
    /// When the writer last committed clicks (ms since the epoch).
    last_click_commit: Arc<LastClickCommit>,
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
    readers: Arc<Readers>,
    /// The settler is behind: its writes no longer wait for a lull in the clicks.
    urgent: std::sync::atomic::AtomicBool,
}

/// Read-only connections, at most `permits` in use: a burst of reads (a cold link cache under
/// load) waits its turn instead of opening a connection and a blocking thread per read
/// (measured: 512 threads, the blocking pool's limit, in the click benchmark's first second).
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    permits: tokio::sync::Semaphore,
}

impl Readers {
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

fn db_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Other(format!("stored JSON is unreadable: {e}"))
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

/// Applies the migrations this binary knows; refuses a schema it does not.
pub fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        anyhow::bail!(
            "the database schema is version {version}, newer than this clickhook (which knows up to {known}); \
             run a newer clickhook or restore a backup"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied SQLite migration");
    }
    Ok(())
}

impl SqliteStore {
    pub async fn open(path: &Path, opts: Options) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!("could not put {} in WAL mode (got {mode})", path.display());
        }
        // The writer's page cache holds the recent clicks that settling updates a few seconds
        // after they went in; SQLite's default 2 MB held well under a second of them.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={}; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-32768;",
            opts.synchronous
        ))?;
        migrate(&conn)?;
        // One process owns the file (the writer): leases left behind belong to a process that died.
        conn.execute("UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL", [])?;
        conn.set_prepared_statement_cache_capacity(128);
        stable_plans(&conn)?;
        let (tx, rx) = mpsc::channel();
        let last_click_commit = Arc::new(LastClickCommit::default());
        std::thread::Builder::new().name("sqlite-writer".into()).spawn({
            let last_click_commit = last_click_commit.clone();
            move || {
                batch_scheduling();
                writer_loop(conn, rx, &last_click_commit)
            }
        })?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(std::time::Duration::from_secs(5))?;
        std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn({
            let stop = stop.clone();
            move || checkpoint_loop(checkpointer, stop)
        })?;
        Ok(SqliteStore {
            writer: tx,
            last_click_commit,
            stop_checkpoints: stop,
            urgent: Default::default(),
            readers: Arc::new(Readers {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
                max_idle: opts.readers,
                permits: tokio::sync::Semaphore::new(opts.readers),
            }),
        })
    }

    /// Queues `f` for the writer; resolves after the transaction that ran it has committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.write_as(false, f).await
    }

    /// Like `write`, for background work: it yields to clicks waiting for their commit, unless
    /// the settler has fallen behind.
    async fn write_background<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.write_as(!self.urgent.load(std::sync::atomic::Ordering::Relaxed), f).await
    }

    async fn write_as<T: Send + 'static>(
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
            match f(conn) {
                Ok(v) => {
                    let released = run_cached(conn, "RELEASE job");
                    Box::new(move |committed: StoreResult<()>| {
                        let _ = tx.send(released.and(committed).map(|_| v));
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
        self.writer.send(msg).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let readers = self.readers.clone();
        let _permit = self.readers.permits.acquire().await.map_err(|_| closed())?;
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn);
            readers.put(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Other(format!("reader task failed: {e}")))?
    }
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

/// Moves WAL frames into the database off the writer thread. Commits never wait for a
/// checkpoint (PASSIVE never blocks the writer), and the WAL restarts once fully copied.
/// It runs at normal priority on purpose: a checkpoint holds WAL locks, and a starved
/// checkpointer holding them stalls the writer (measured: p99 of redirects 5 ms → 80 ms).
fn checkpoint_loop(conn: Connection, stop: Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!("checkpoint: {e}");
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Msg>, last_click_commit: &LastClickCommit) {
    let mut group: Vec<Msg> = Vec::with_capacity(256);
    let mut background: std::collections::VecDeque<(std::time::Instant, Job)> = Default::default();
    loop {
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
fn run_cached(conn: &Connection, sql: &str) -> StoreResult<()> {
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

// ---- row mapping -------------------------------------------------------------------------

const ACCOUNT_COLS: &str = "id, name, timezone, snippet_labels, click_filter, created_at";

fn account_row(r: &Row) -> rusqlite::Result<(i64, String, String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn account_from(row: (i64, String, String, String, String, i64)) -> StoreResult<Account> {
    let (id, name, timezone, labels, filter, created_at) = row;
    Ok(Account {
        id,
        name,
        timezone,
        snippet_labels: serde_json::from_str(&labels).map_err(json_err)?,
        click_filter: serde_json::from_str(&filter).map_err(json_err)?,
        created_at,
    })
}

fn load_account(conn: &Connection, id: i64) -> StoreResult<Account> {
    let row = conn
        .prepare_cached(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id], account_row).optional())
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("account"))?;
    account_from(row)
}

const PROSPECT_COLS: &str = "p.id, p.account_id, p.email, p.first_name, p.last_name, p.company, p.website, \
    p.linkedin_url, p.tags, p.title, p.phone, p.address, p.city, p.country, p.industry, p.state, p.snippets, \
    p.status, p.interested, p.imported, p.updated_at, \
    (SELECT max(e.sent_at) FROM emails e WHERE e.prospect_id = p.id) AS last_contacted, \
    (SELECT count(*) FROM enrollments n WHERE n.prospect_id = p.id) AS in_campaign, \
    (SELECT count(*) FROM emails e WHERE e.prospect_id = p.id) AS emails_sent";

fn prospect_row(r: &Row) -> rusqlite::Result<Prospect> {
    let snippets: String = r.get(16)?;
    let snippets: Vec<String> = serde_json::from_str(&snippets).unwrap_or_default();
    let mut arr: [String; 15] = Default::default();
    for (slot, s) in arr.iter_mut().zip(snippets) {
        *slot = s;
    }
    Ok(Prospect {
        id: r.get(0)?,
        account_id: r.get(1)?,
        email: r.get(2)?,
        first_name: r.get(3)?,
        last_name: r.get(4)?,
        company: r.get(5)?,
        website: r.get(6)?,
        linkedin_url: r.get(7)?,
        tags: r.get(8)?,
        title: r.get(9)?,
        phone: r.get(10)?,
        address: r.get(11)?,
        city: r.get(12)?,
        country: r.get(13)?,
        industry: r.get(14)?,
        state: r.get(15)?,
        snippets: arr,
        status: r.get(17)?,
        interested: r.get(18)?,
        imported: r.get(19)?,
        updated_at: r.get(20)?,
        last_contacted: r.get(21)?,
        in_campaign: r.get(22)?,
        emails_sent: r.get(23)?,
    })
}

fn load_prospect(conn: &Connection, account_id: i64, id: i64) -> StoreResult<Option<Prospect>> {
    conn.prepare_cached(&format!("SELECT {PROSPECT_COLS} FROM prospects p WHERE p.id = ?1 AND p.account_id = ?2"))
        .and_then(|mut st| st.query_row([id, account_id], prospect_row).optional())
        .map_err(db_err)
}

fn prospect_id_by_email(conn: &Connection, account_id: i64, email: &EmailAddress) -> StoreResult<Option<i64>> {
    conn.prepare_cached("SELECT id FROM prospects WHERE account_id = ?1 AND email_key = ?2")
        .and_then(|mut st| st.query_row(params![account_id, email.key()], |r| r.get(0)).optional())
        .map_err(db_err)
}

/// Inserts (id 0) or updates the person columns of `p`; returns its id.
fn save_prospect(conn: &Connection, p: &Prospect, now: Millis) -> StoreResult<i64> {
    let snippets = serde_json::to_string(&p.snippets).map_err(json_err)?;
    let key = p.email.to_lowercase();
    if p.id == 0 {
        conn.prepare_cached(
            "INSERT INTO prospects (account_id, email, email_key, first_name, last_name, company, website, linkedin_url, \
             tags, title, phone, address, city, country, industry, state, snippets, status, interested, imported, \
             created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?21)",
        )
        .and_then(|mut st| {
            st.execute(params![
                p.account_id, p.email, key, p.first_name, p.last_name, p.company, p.website, p.linkedin_url, p.tags,
                p.title, p.phone, p.address, p.city, p.country, p.industry, p.state, snippets, p.status, p.interested,
                p.imported, now
            ])
        })
        .map_err(db_err)?;
        Ok(conn.last_insert_rowid())
    } else {
        conn.prepare_cached(
            "UPDATE prospects SET email=?2, email_key=?3, first_name=?4, last_name=?5, company=?6, website=?7, \
             linkedin_url=?8, tags=?9, title=?10, phone=?11, address=?12, city=?13, country=?14, industry=?15, \
             state=?16, snippets=?17, status=?18, interested=?19, imported=?20, updated_at=?21 WHERE id=?1",
        )
        .and_then(|mut st| {
            st.execute(params![
                p.id,
                p.email,
                key,
                p.first_name,
                p.last_name,
                p.company,
                p.website,
                p.linkedin_url,
                p.tags,
                p.title,
                p.phone,
                p.address,
                p.city,
                p.country,
                p.industry,
                p.state,
                snippets,
                p.status,
                p.interested,
                p.imported,
                now
            ])
        })
        .map_err(db_err)?;
        Ok(p.id)
    }
}

const CAMPAIGN_COLS: &str = "id, account_id, name, status, from_name, mailboxes, steps, created_at";

type CampaignRow = (i64, i64, String, String, String, String, String, i64);

fn campaign_row(r: &Row) -> rusqlite::Result<CampaignRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn campaign_from(row: CampaignRow) -> StoreResult<Campaign> {
    let (id, account_id, name, status, from_name, mailboxes, steps, created_at) = row;
    Ok(Campaign {
        id,
        account_id,
        name,
        status: CampaignStatus::parse(&status).map_err(|e| StoreError::Other(e.msg))?,
        from_name,
        mailboxes: serde_json::from_str(&mailboxes).map_err(json_err)?,
        steps: serde_json::from_str(&steps).map_err(json_err)?,
        created_at,
    })
}

fn load_campaign(conn: &Connection, account_id: i64, id: i64) -> StoreResult<Campaign> {
    let row = conn
        .prepare_cached(&format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE id = ?1 AND account_id = ?2"))
        .and_then(|mut st| st.query_row([id, account_id], campaign_row).optional())
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("campaign"))?;
    campaign_from(row)
}

const ENROLLMENT_COLS: &str =
    "campaign_id, prospect_id, step, step_type, emails_sent, followup_after, mailbox, stopped";

fn enrollment_row(r: &Row) -> rusqlite::Result<Enrollment> {
    Ok(Enrollment {
        campaign_id: r.get(0)?,
        prospect_id: r.get(1)?,
        step: r.get(2)?,
        step_type: r.get(3)?,
        emails_sent: r.get(4)?,
        followup_after: r.get(5)?,
        mailbox: r.get(6)?,
        stopped: r.get(7)?,
    })
}

fn load_enrollment(conn: &Connection, campaign_id: i64, prospect_id: i64) -> StoreResult<Option<Enrollment>> {
    conn.prepare_cached(&format!(
        "SELECT {ENROLLMENT_COLS} FROM enrollments WHERE campaign_id = ?1 AND prospect_id = ?2"
    ))
    .and_then(|mut st| st.query_row([campaign_id, prospect_id], enrollment_row).optional())
    .map_err(db_err)
}

fn email_links(conn: &Connection, email_id: i64) -> StoreResult<Vec<NewLink>> {
    let mut st =
        conn.prepare_cached("SELECT url, honeypot FROM links WHERE email_id = ?1 ORDER BY link_no").map_err(db_err)?;
    let rows = st.query_map([email_id], |r| Ok(NewLink { url: r.get(0)?, honeypot: r.get(1)? })).map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

const SUBSCRIPTION_COLS: &str =
    "id, account_id, target_url, event, secret, status, created_at, last_success_at, last_failure_at, failing_since";

fn subscription_row(r: &Row) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        id: r.get(0)?,
        account_id: r.get(1)?,
        target_url: r.get(2)?,
        event: r.get(3)?,
        secret: r.get(4)?,
        status: r.get(5)?,
        created_at: r.get(6)?,
        last_success_at: r.get(7)?,
        last_failure_at: r.get(8)?,
        failing_since: r.get(9)?,
    })
}

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

fn event_context(conn: &Connection, email_id: i64) -> StoreResult<Option<EventContext>> {
    let head = conn
        .prepare_cached(
            "SELECT e.account_id, e.campaign_id, e.prospect_id, e.step, e.email_no, a.timezone, a.snippet_labels, \
             c.name, c.mailboxes FROM emails e JOIN accounts a ON a.id = e.account_id \
             JOIN campaigns c ON c.id = e.campaign_id WHERE e.id = ?1",
        )
        .and_then(|mut st| {
            st.query_row([email_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                ))
            })
            .optional()
        })
        .map_err(db_err)?;
    let Some((account_id, campaign_id, prospect_id, step, email_no, timezone, labels, name, mailboxes)) = head else {
        return Ok(None);
    };
    let Some(prospect) = load_prospect(conn, account_id, prospect_id)? else {
        return Ok(None);
    };
    let Some(enrollment) = load_enrollment(conn, campaign_id, prospect_id)? else {
        return Ok(None);
    };
    Ok(Some(EventContext {
        account_id,
        timezone,
        snippet_labels: serde_json::from_str(&labels).map_err(json_err)?,
        prospect,
        campaign_id,
        campaign_name: name,
        campaign_mailboxes: serde_json::from_str(&mailboxes).map_err(json_err)?,
        enrollment,
        email_step: step,
        email_no,
    }))
}

/// Deletes a subscription; its undelivered batches are kept, as failed, with the reason.
fn remove_subscription(conn: &Connection, id: i64, why: &str) -> StoreResult<()> {
    conn.execute(
        "UPDATE deliveries SET state = 'failed', lease_until = NULL, last_error = ?2 \
         WHERE subscription_id = ?1 AND state = 'pending'",
        params![id, format!("subscription removed: {why}")],
    )
    .map_err(db_err)?;
    conn.execute("DELETE FROM subscriptions WHERE id = ?1", [id]).map_err(db_err)?;
    Ok(())
}

fn load_subscription(conn: &Connection, account_id: i64, id: i64) -> StoreResult<Subscription> {
    conn.query_row(
        &format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE id = ?1 AND account_id = ?2"),
        [id, account_id],
        subscription_row,
    )
    .optional()
    .map_err(db_err)?
    .ok_or(StoreError::NotFound("subscription"))
}

/// `msg_` and 24 random alphanumerics: the Standard Webhooks message id of a batch.
fn new_msg_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("msg_{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
}

/// The wire body of a batch: its events' elements, in order, in one JSON array.
fn batch_body(conn: &Connection, account_id: i64, first: i64, last: i64) -> StoreResult<String> {
    let mut st = conn
        .prepare_cached("SELECT payload FROM events WHERE account_id = ?1 AND id BETWEEN ?2 AND ?3 ORDER BY id")
        .map_err(db_err)?;
    let mut rows = st.query(params![account_id, first, last]).map_err(db_err)?;
    let mut body = String::from("[");
    while let Some(r) = rows.next().map_err(db_err)? {
        if body.len() > 1 {
            body.push(',');
        }
        body.push_str(r.get_ref(0).map_err(db_err)?.as_str().map_err(|e| StoreError::Other(e.to_string()))?);
    }
    body.push(']');
    Ok(body)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn clicks_flowing(&self) -> bool {
        self.last_click_commit.flowing()
    }

    fn settle_urgently(&self, urgent: bool) {
        self.urgent.store(urgent, std::sync::atomic::Ordering::Relaxed);
    }

    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        self.write(move |conn| {
            let now = now_millis();
            if let Some(id) = new.id {
                let exists: bool = conn
                    .query_row("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)", [id], |r| r.get(0))
                    .map_err(db_err)?;
                if exists {
                    return Err(StoreError::Conflict(format!("account {id} already exists")));
                }
            }
            let filter = serde_json::to_string(&ClickFilter::default()).map_err(json_err)?;
            conn.execute(
                "INSERT INTO accounts (id, name, timezone, click_filter, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new.id, new.name, new.timezone, filter, now],
            )
            .map_err(db_err)?;
            load_account(conn, conn.last_insert_rowid())
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|conn| {
            let mut st = conn.prepare(&format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id")).map_err(db_err)?;
            let rows = st.query_map([], account_row).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(account_from)).collect()
        })
        .await
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        self.read(move |conn| load_account(conn, id)).await
    }

    async fn update_account(&self, id: i64, patch: AccountPatch) -> StoreResult<Account> {
        self.write(move |conn| {
            let mut a = load_account(conn, id)?;
            if let Some(v) = patch.name {
                a.name = v;
            }
            if let Some(v) = patch.timezone {
                a.timezone = v;
            }
            if let Some(v) = patch.snippet_labels {
                a.snippet_labels = v;
            }
            if let Some(v) = patch.click_filter {
                a.click_filter = v;
            }
            conn.execute(
                "UPDATE accounts SET name=?2, timezone=?3, snippet_labels=?4, click_filter=?5 WHERE id=?1",
                params![
                    id,
                    a.name,
                    a.timezone,
                    serde_json::to_string(&a.snippet_labels).map_err(json_err)?,
                    serde_json::to_string(&a.click_filter).map_err(json_err)?
                ],
            )
            .map_err(db_err)?;
            Ok(a)
        })
        .await
    }

    async fn add_api_key(&self, account_id: i64, key_hash: String, prefix: String) -> StoreResult<ApiKeyInfo> {
        self.write(move |conn| {
            load_account(conn, account_id)?;
            let now = now_millis();
            conn.execute(
                "INSERT INTO api_keys (account_id, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![account_id, key_hash, prefix, now],
            )
            .map_err(db_err)?;
            Ok(ApiKeyInfo { id: conn.last_insert_rowid(), account_id, prefix, created_at: now, revoked_at: None })
        })
        .await
    }

    async fn revoke_api_key(&self, account_id: i64, prefix: &str) -> StoreResult<()> {
        let prefix = prefix.to_string();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE api_keys SET revoked_at = ?3 WHERE account_id = ?1 AND prefix = ?2 AND revoked_at IS NULL",
                    params![account_id, prefix, now_millis()],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound("API key"));
            }
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self, account_id: i64) -> StoreResult<Vec<ApiKeyInfo>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare("SELECT id, account_id, prefix, created_at, revoked_at FROM api_keys WHERE account_id = ?1 ORDER BY id")
                .map_err(db_err)?;
            let rows = st
                .query_map([account_id], |r| {
                    Ok(ApiKeyInfo {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        prefix: r.get(2)?,
                        created_at: r.get(3)?,
                        revoked_at: r.get(4)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn account_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Account>> {
        let key_hash = key_hash.to_string();
        self.read(move |conn| {
            let id: Option<i64> = conn
                .prepare_cached("SELECT account_id FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL")
                .and_then(|mut st| st.query_row([key_hash], |r| r.get(0)).optional())
                .map_err(db_err)?;
            id.map(|id| load_account(conn, id)).transpose()
        })
        .await
    }

    async fn upsert_prospects(&self, account_id: i64, req: UpsertProspects) -> StoreResult<Vec<Upserted>> {
        self.write(move |conn| {
            if let Some(c) = req.campaign_id {
                load_campaign(conn, account_id, c)?;
            }
            let now = now_millis();
            let mut out = Vec::with_capacity(req.prospects.len());
            for input in &req.prospects {
                let existing = match prospect_id_by_email(conn, account_id, &input.email)? {
                    Some(id) => load_prospect(conn, account_id, id)?,
                    None => None,
                };
                let outcome = match existing {
                    Some(p) if !req.update => Upserted::Unchanged(p.id),
                    Some(mut p) => {
                        apply_fields(&mut p, input);
                        if let Some(f) = &req.imported {
                            p.imported = f.clone();
                        }
                        Upserted::Updated(save_prospect(conn, &p, now)?)
                    }
                    None => {
                        let mut p = blank_prospect(account_id);
                        apply_fields(&mut p, input);
                        p.imported = req.imported.clone().unwrap_or_default();
                        Upserted::Created(save_prospect(conn, &p, now)?)
                    }
                };
                if let Some(c) = req.campaign_id {
                    conn.prepare_cached(
                        "INSERT INTO enrollments (campaign_id, prospect_id, created_at) VALUES (?1, ?2, ?3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .and_then(|mut st| st.execute(params![c, outcome.id(), now]))
                    .map_err(db_err)?;
                }
                out.push(outcome);
            }
            Ok(out)
        })
        .await
    }

    async fn list_prospects(&self, account_id: i64, q: ProspectQuery) -> StoreResult<(i64, Vec<Prospect>)> {
        self.read(move |conn| {
            let mut filter = String::from("p.account_id = ?");
            let mut args: Vec<rusqlite::types::Value> = vec![account_id.into()];
            if !q.ids.is_empty() {
                filter.push_str(" AND p.id IN (SELECT value FROM json_each(?))");
                args.push(ids_json(&q.ids).into());
            }
            if let Some(s) = &q.status {
                filter.push_str(" AND p.status = ?");
                args.push(s.clone().into());
            }
            if let Some(i) = &q.interested {
                filter.push_str(" AND p.interested = ?");
                args.push(i.clone().into());
            }
            if !q.campaign_ids.is_empty() {
                filter.push_str(
                    " AND EXISTS (SELECT 1 FROM enrollments n WHERE n.prospect_id = p.id \
                     AND n.campaign_id IN (SELECT value FROM json_each(?)))",
                );
                args.push(ids_json(&q.campaign_ids).into());
            }
            for (field, term) in &q.search {
                // Field names are whitelisted by the API; never user text in SQL.
                let col = if field == "email" { "p.email_key".to_string() } else { format!("p.{field}") };
                filter.push_str(&format!(" AND {col} LIKE ? ESCAPE '\\'"));
                args.push(like_pattern(&if field == "email" { term.to_lowercase() } else { term.clone() }).into());
            }
            let total: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM prospects p WHERE {filter}"),
                    rusqlite::params_from_iter(args.iter()),
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            let mut order: Vec<String> = q
                .sort
                .iter()
                .map(|(k, desc)| format!("{} {}", sort_column(*k), if *desc { "DESC" } else { "ASC" }))
                .collect();
            order.push("p.id ASC".into());
            args.push(q.limit.into());
            args.push(q.offset.into());
            let sql = format!(
                "SELECT {PROSPECT_COLS} FROM prospects p WHERE {filter} ORDER BY {} LIMIT ? OFFSET ?",
                order.join(", ")
            );
            let mut st = conn.prepare(&sql).map_err(db_err)?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), prospect_row).map_err(db_err)?;
            Ok((total, rows.collect::<Result<_, _>>().map_err(db_err)?))
        })
        .await
    }

    async fn delete_prospects(&self, account_id: i64, ids: Vec<i64>) -> StoreResult<i64> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM prospects WHERE account_id = ?1 AND id IN (SELECT value FROM json_each(?2))",
                    params![account_id, ids_json(&ids)],
                )
                .map_err(db_err)?;
            Ok(n as i64)
        })
        .await
    }

    async fn stop_followups(&self, account_id: i64, email: &EmailAddress) -> StoreResult<bool> {
        let email = email.clone();
        self.write(move |conn| {
            let Some(id) = prospect_id_by_email(conn, account_id, &email)? else {
                return Ok(false);
            };
            conn.execute("UPDATE enrollments SET stopped = 1 WHERE prospect_id = ?1", [id]).map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn create_campaign(&self, account_id: i64, new: NewCampaign) -> StoreResult<Campaign> {
        self.write(move |conn| {
            if let Some(id) = new.id {
                let exists: bool = conn
                    .query_row("SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = ?1)", [id], |r| r.get(0))
                    .map_err(db_err)?;
                if exists {
                    return Err(StoreError::Conflict(format!("campaign id {id} is taken")));
                }
            }
            conn.execute(
                "INSERT INTO campaigns (id, account_id, name, status, from_name, mailboxes, steps, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    new.id,
                    account_id,
                    new.name,
                    new.status.as_str(),
                    new.from_name,
                    serde_json::to_string(&new.mailboxes).map_err(json_err)?,
                    serde_json::to_string(&new.steps).map_err(json_err)?,
                    now_millis()
                ],
            )
            .map_err(db_err)?;
            load_campaign(conn, account_id, conn.last_insert_rowid())
        })
        .await
    }

    async fn list_campaigns(&self, account_id: i64) -> StoreResult<Vec<Campaign>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare(&format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE account_id = ?1 ORDER BY id"))
                .map_err(db_err)?;
            let rows = st.query_map([account_id], campaign_row).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(campaign_from)).collect()
        })
        .await
    }

    async fn campaign(&self, account_id: i64, id: i64) -> StoreResult<Campaign> {
        self.read(move |conn| load_campaign(conn, account_id, id)).await
    }

    async fn update_campaign(&self, account_id: i64, id: i64, patch: CampaignPatch) -> StoreResult<Campaign> {
        self.write(move |conn| {
            let mut c = load_campaign(conn, account_id, id)?;
            if let Some(v) = patch.name {
                c.name = v;
            }
            if let Some(v) = patch.status {
                c.status = v;
            }
            if let Some(v) = patch.from_name {
                c.from_name = v;
            }
            if let Some(v) = patch.mailboxes {
                c.mailboxes = v;
            }
            if let Some(v) = patch.steps {
                let used: Option<i64> = conn
                    .query_row("SELECT max(step) FROM emails WHERE campaign_id = ?1", [id], |r| r.get(0))
                    .map_err(db_err)?;
                if let Some(used) = used.filter(|u| *u > v.len() as i64) {
                    return Err(StoreError::Invalid(format!(
                        "emails were sent from step {used}; the campaign must keep at least {used} steps"
                    )));
                }
                c.steps = v;
            }
            conn.execute(
                "UPDATE campaigns SET name=?2, status=?3, from_name=?4, mailboxes=?5, steps=?6 WHERE id=?1",
                params![
                    id,
                    c.name,
                    c.status.as_str(),
                    c.from_name,
                    serde_json::to_string(&c.mailboxes).map_err(json_err)?,
                    serde_json::to_string(&c.steps).map_err(json_err)?
                ],
            )
            .map_err(db_err)?;
            Ok(c)
        })
        .await
    }

    async fn delete_campaign(&self, account_id: i64, id: i64) -> StoreResult<()> {
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM campaigns WHERE id = ?1 AND account_id = ?2", [id, account_id])
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound("campaign"));
            }
            Ok(())
        })
        .await
    }

    async fn update_enrollment(
        &self,
        account_id: i64,
        campaign_id: i64,
        prospect_id: i64,
        patch: EnrollmentPatch,
    ) -> StoreResult<Enrollment> {
        self.write(move |conn| {
            let campaign = load_campaign(conn, account_id, campaign_id)?;
            load_prospect(conn, account_id, prospect_id)?.ok_or(StoreError::NotFound("prospect"))?;
            let mut e = load_enrollment(conn, campaign_id, prospect_id)?.ok_or(StoreError::NotFound("enrollment"))?;
            if let Some(step) = patch.step {
                let s = campaign.steps.get((step - 1).max(0) as usize).filter(|_| step >= 1).ok_or_else(|| {
                    StoreError::Invalid(format!("step {step} does not exist; the campaign has {}", campaign.steps.len()))
                })?;
                e.step = Some(step);
                e.step_type = Some(s.kind().as_str().to_string());
            }
            if let Some(f) = patch.followup_after {
                e.followup_after = f;
            }
            conn.execute(
                "UPDATE enrollments SET step=?3, step_type=?4, followup_after=?5 WHERE campaign_id=?1 AND prospect_id=?2",
                params![campaign_id, prospect_id, e.step, e.step_type, e.followup_after],
            )
            .map_err(db_err)?;
            Ok(e)
        })
        .await
    }

    async fn record_email(&self, account_id: i64, email: NewEmail) -> StoreResult<SentEmail> {
        self.write(move |conn| {
            let campaign = load_campaign(conn, account_id, email.campaign_id)?;
            let prospect_id = match &email.prospect {
                ProspectRef::Id(id) => load_prospect(conn, account_id, *id)?.map(|p| p.id),
                ProspectRef::Email(e) => prospect_id_by_email(conn, account_id, e)?,
            }
            .ok_or(StoreError::NotFound("prospect"))?;
            let enrollment = load_enrollment(conn, campaign.id, prospect_id)?.ok_or_else(|| {
                StoreError::Invalid(format!("prospect {prospect_id} is not enrolled in campaign {}", campaign.id))
            })?;
            if let Some(key) = &email.idempotency_key {
                let prior: Option<(i64, i64, i64, i64)> = conn
                    .query_row(
                        "SELECT id, prospect_id, email_no, sent_at FROM emails WHERE campaign_id = ?1 AND idempotency_key = ?2",
                        params![campaign.id, key],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()
                    .map_err(db_err)?;
                if let Some((id, prospect_id, email_no, sent_at)) = prior {
                    return Ok(SentEmail {
                        id,
                        prospect_id,
                        email_no,
                        sent_at,
                        links: email_links(conn, id)?,
                        replayed: true,
                    });
                }
            }
            let (step, mailbox) = super::email_step_and_mailbox(&campaign, &enrollment, email.step, email.mailbox)?;
            let email_no = enrollment.emails_sent + 1;
            conn.execute(
                "INSERT INTO emails (account_id, campaign_id, prospect_id, step, mailbox, email_no, subject, idempotency_key, sent_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    account_id,
                    campaign.id,
                    prospect_id,
                    email.step,
                    mailbox,
                    email_no,
                    email.subject,
                    email.idempotency_key,
                    email.sent_at
                ],
            )
            .map_err(db_err)?;
            let id = conn.last_insert_rowid();
            {
                let mut st = conn
                    .prepare_cached("INSERT INTO links (email_id, link_no, url, honeypot) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(db_err)?;
                for (i, l) in email.links.iter().enumerate() {
                    st.execute(params![id, i as i64 + 1, l.url, l.honeypot]).map_err(db_err)?;
                }
            }
            conn.execute(
                "UPDATE enrollments SET step = ?3, step_type = ?4, emails_sent = emails_sent + 1, mailbox = ?5 \
                 WHERE campaign_id = ?1 AND prospect_id = ?2",
                params![campaign.id, prospect_id, email.step, step.kind().as_str(), mailbox],
            )
            .map_err(db_err)?;
            Ok(SentEmail { id, prospect_id, email_no, sent_at: email.sent_at, links: email.links, replayed: false })
        })
        .await
    }

    async fn link_target(&self, email_id: i64, link_no: i64) -> StoreResult<Option<LinkTarget>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT e.account_id, l.url, l.honeypot FROM links l JOIN emails e ON e.id = l.email_id \
                 WHERE l.email_id = ?1 AND l.link_no = ?2",
            )
            .and_then(|mut st| {
                st.query_row([email_id, link_no], |r| {
                    Ok(LinkTarget { account_id: r.get(0)?, email_id, link_no, url: r.get(1)?, honeypot: r.get(2)? })
                })
                .optional()
            })
            .map_err(db_err)
        })
        .await
    }

    async fn record_click(&self, click: NewClick) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(Msg::Click(click, tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    async fn list_clicks(&self, account_id: i64, q: ClickQuery) -> StoreResult<(i64, Vec<ClickRecord>)> {
        self.read(move |conn| {
            let mut filter = String::from("c.account_id = ?");
            let mut args: Vec<rusqlite::types::Value> = vec![account_id.into()];
            if let Some(c) = q.campaign_id {
                filter.push_str(" AND e.campaign_id = ?");
                args.push(c.into());
            }
            if let Some(p) = q.prospect_id {
                filter.push_str(" AND e.prospect_id = ?");
                args.push(p.into());
            }
            if let Some(v) = &q.verdict {
                if v == "pending" {
                    filter.push_str(" AND (c.verdict IS NULL OR c.released = 0)");
                } else {
                    filter.push_str(" AND c.released = 1 AND c.verdict = ?");
                    args.push(v.clone().into());
                }
            }
            if let Some(s) = q.since {
                filter.push_str(" AND c.at >= ?");
                args.push(s.into());
            }
            let from = "FROM clicks c JOIN emails e ON e.id = c.email_id \
                        LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no";
            let total: i64 = conn
                .query_row(&format!("SELECT count(*) {from} WHERE {filter}"), rusqlite::params_from_iter(args.iter()), |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            args.push(q.limit.into());
            args.push(q.offset.into());
            let mut st = conn
                .prepare(&format!(
                    "SELECT c.id, c.at, e.campaign_id, e.prospect_id, c.email_id, c.link_no, coalesce(l.url, ''), c.head, \
                     c.ip, c.user_agent, CASE WHEN c.released = 1 THEN c.verdict END, \
                     CASE WHEN c.released = 1 THEN c.reasons END {from} WHERE {filter} ORDER BY c.id DESC LIMIT ? OFFSET ?"
                ))
                .map_err(db_err)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    let reasons: Option<String> = r.get(11)?;
                    Ok(ClickRecord {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        campaign_id: r.get(2)?,
                        prospect_id: r.get(3)?,
                        email_id: r.get(4)?,
                        link_no: r.get(5)?,
                        url: r.get(6)?,
                        method: if r.get::<_, bool>(7)? { "HEAD" } else { "GET" },
                        ip: r.get(8)?,
                        user_agent: r.get(9)?,
                        verdict: r.get(10)?,
                        reasons: parse_reasons(reasons.as_deref()),
                    })
                })
                .map_err(db_err)?;
            Ok((total, rows.collect::<Result<_, _>>().map_err(db_err)?))
        })
        .await
    }

    async fn pending_clicks(&self, limit: i64) -> StoreResult<Vec<PendingClick>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT c.id, coalesce(e.account_id, 0), c.email_id, c.link_no, c.at, c.head, c.ip, c.user_agent, \
                     coalesce(e.sent_at, 0), coalesce(l.honeypot, 0), a.click_filter, coalesce(l.url, '') \
                     FROM clicks c LEFT JOIN emails e ON e.id = c.email_id \
                     LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                     LEFT JOIN accounts a ON a.id = e.account_id \
                     WHERE c.id >= (SELECT next_unjudged FROM settle_frontier) AND c.verdict IS NULL \
                     ORDER BY c.id LIMIT ?1",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([limit], |r| {
                    let filter: Option<String> = r.get(10)?;
                    Ok(PendingClick {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        email_id: r.get(2)?,
                        link_no: r.get(3)?,
                        at: r.get(4)?,
                        head: r.get(5)?,
                        ip: r.get(6)?,
                        user_agent: r.get(7)?,
                        email_sent_at: r.get(8)?,
                        honeypot: r.get(9)?,
                        url: r.get(11)?,
                        filter: filter.and_then(|f| serde_json::from_str(&f).ok()).unwrap_or_default(),
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn clicks_near(&self, email_ids: Vec<i64>, from: Millis, to: Millis) -> StoreResult<Vec<NearbyClick>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT e.click_id, e.email_id, e.link_no, e.at, e.honeypot, c.released, c.reasons \
                     FROM email_clicks e JOIN clicks c ON c.id = e.click_id \
                     WHERE e.email_id IN (SELECT value FROM json_each(?1)) AND e.at BETWEEN ?2 AND ?3",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![ids_json(&email_ids), from, to], |r| {
                    Ok(NearbyClick {
                        click_id: r.get(0)?,
                        email_id: r.get(1)?,
                        link_no: r.get(2)?,
                        at: r.get(3)?,
                        honeypot: r.get(4)?,
                        released: r.get(5)?,
                        reasons: parse_reasons(r.get::<_, Option<String>>(6)?.as_deref()),
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn event_contexts(&self, email_ids: Vec<i64>) -> StoreResult<HashMap<i64, EventContext>> {
        self.read(move |conn| {
            let mut out = HashMap::new();
            for id in email_ids {
                if let Some(ctx) = event_context(conn, id)? {
                    out.insert(id, ctx);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn judge_clicks(&self, judged: Vec<Judgement>, overruled: Vec<Overrule>) -> StoreResult<()> {
        self.write_background(move |conn| {
            let mut verdict = conn
                .prepare_cached("UPDATE clicks SET verdict = ?2, reasons = ?3 WHERE id = ?1 AND verdict IS NULL")
                .map_err(db_err)?;
            let mut history = conn
                .prepare_cached(
                    "INSERT INTO email_clicks (click_id, email_id, at, link_no, honeypot) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db_err)?;
            for j in &judged {
                let reasons = serde_json::to_string(&j.reasons).map_err(json_err)?;
                if verdict.execute(params![j.click.click_id, j.verdict, reasons]).map_err(db_err)? == 0 {
                    continue; // another settler was first
                }
                let c = &j.click;
                history.execute(params![c.click_id, c.email_id, c.at, c.link_no, c.honeypot]).map_err(db_err)?;
            }
            // Move the frontier past the clicks now judged: a short rowid scan from where it was.
            conn.prepare_cached(
                "UPDATE settle_frontier SET next_unjudged = coalesce( \
                   (SELECT min(id) FROM clicks WHERE id >= next_unjudged AND verdict IS NULL), \
                   (SELECT coalesce(max(id), 0) + 1 FROM clicks))",
            )
            .and_then(|mut st| st.execute([]))
            .map_err(db_err)?;
            let mut overrule = conn
                .prepare_cached(
                    "UPDATE clicks SET reasons = CASE \
                       WHEN verdict = 'human' THEN json_array(?2) \
                       WHEN EXISTS (SELECT 1 FROM json_each(reasons) WHERE value = ?2) THEN reasons \
                       ELSE json_insert(reasons, '$[#]', ?2) END, verdict = 'bot' \
                     WHERE id = ?1 AND verdict IS NOT NULL AND released = 0",
                )
                .map_err(db_err)?;
            for o in &overruled {
                overrule.execute(params![o.click_id, o.reason]).map_err(db_err)?;
            }
            // Only the longest burst window back is ever looked at. Rows go in roughly in time
            // order: look at the oldest few only (twice as many as went in, so the table cannot
            // grow; a fixed 10,000 held the writer for milliseconds), and drop those old enough.
            let horizon = judged.iter().map(|j| j.click.at).min().unwrap_or(0)
                - 2 * i64::from(ClickFilter::MAX_BURST_SECONDS) * 1000;
            conn.prepare_cached(
                "DELETE FROM email_clicks WHERE rowid IN \
                 (SELECT rowid FROM email_clicks ORDER BY rowid LIMIT ?2) AND at < ?1",
            )
            .and_then(|mut st| st.execute([horizon, 2 * judged.len() as i64 + 16]))
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn held_clicks(&self, frontier: Millis, limit: i64) -> StoreResult<Vec<HeldClick>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT c.id, c.account_id, c.email_id, coalesce(l.url, ''), c.at, c.verdict, a.click_filter \
                     FROM clicks c LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                     LEFT JOIN accounts a ON a.id = c.account_id \
                     WHERE c.verdict IS NOT NULL AND c.released = 0 AND c.at <= ?1 ORDER BY c.at LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![frontier, limit], |r| {
                    let filter: Option<String> = r.get(6)?;
                    Ok(HeldClick {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        email_id: r.get(2)?,
                        url: r.get(3)?,
                        at: r.get(4)?,
                        verdict: r.get(5)?,
                        filter: filter.and_then(|f| serde_json::from_str(&f).ok()).unwrap_or_default(),
                    })
                })
                .map_err(db_err)?;
            let all: Vec<HeldClick> = rows.collect::<Result<_, _>>().map_err(db_err)?;
            Ok(all.into_iter().filter(|c| c.at + i64::from(c.filter.burst_seconds) * 1000 <= frontier).collect())
        })
        .await
    }

    async fn release_clicks(&self, released: Vec<Release>) -> StoreResult<()> {
        self.write_background(move |conn| {
            let now = now_millis();
            let mut release =
                conn.prepare_cached("UPDATE clicks SET released = 1 WHERE id = ?1 AND released = 0").map_err(db_err)?;
            let mut event = conn
                .prepare_cached(
                    "INSERT INTO events (account_id, click_id, created_at, payload, occurred_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (click_id) DO NOTHING",
                )
                .map_err(db_err)?;
            for r in &released {
                if release.execute([r.click_id]).map_err(db_err)? == 0 {
                    continue;
                }
                if let Some(payload) = &r.event {
                    event.execute(params![r.account_id, r.click_id, now, payload, r.clicked_at]).map_err(db_err)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        self.read(|conn| {
            let clicks_pending = conn
                .query_row(
                    "SELECT (SELECT count(*) FROM clicks WHERE id >= (SELECT next_unjudged FROM settle_frontier) \
                       AND verdict IS NULL) \
                     + (SELECT count(*) FROM clicks WHERE verdict IS NOT NULL AND released = 0)",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            let events_total = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).map_err(db_err)?;
            Ok(OutboxDepth { clicks_pending, events_total })
        })
        .await
    }

    async fn subscribe(
        &self,
        account_id: i64,
        target_url: &str,
        event: &str,
        secret: String,
    ) -> StoreResult<Subscribed> {
        let (target_url, event) = (target_url.to_string(), event.to_string());
        self.write(move |conn| {
            let dup: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE account_id=?1 AND event=?2 AND target_url=?3)",
                    params![account_id, event, target_url],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if dup {
                return Ok(Subscribed::Duplicate);
            }
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM subscriptions WHERE account_id=?1 AND event=?2",
                    params![account_id, event],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if n >= 3 {
                return Ok(Subscribed::TooMany);
            }
            conn.execute(
                "INSERT INTO subscriptions (account_id, target_url, event, secret, created_at, cursor) VALUES (?1, ?2, ?3, ?4, ?5, \
                 (SELECT coalesce(max(id), 0) FROM events WHERE account_id = ?1))",
                params![account_id, target_url, event, secret, now_millis()],
            )
            .map_err(db_err)?;
            let sub = conn
                .query_row(
                    &format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE id = ?1"),
                    [conn.last_insert_rowid()],
                    subscription_row,
                )
                .map_err(db_err)?;
            Ok(Subscribed::Created(sub))
        })
        .await
    }

    async fn unsubscribe(&self, account_id: i64, target_url: &str, event: &str) -> StoreResult<bool> {
        let (target_url, event) = (target_url.to_string(), event.to_string());
        self.write(move |conn| {
            let id: Option<i64> = conn
                .query_row(
                    "SELECT id FROM subscriptions WHERE account_id=?1 AND event=?2 AND target_url=?3",
                    params![account_id, event, target_url],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let Some(id) = id else { return Ok(false) };
            remove_subscription(conn, id, "unsubscribed")?;
            Ok(true)
        })
        .await
    }

    async fn list_subscriptions(&self, account_id: i64) -> StoreResult<Vec<Subscription>> {
        self.read(move |conn| {
            let mut st = conn
                .prepare(&format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE account_id = ?1 ORDER BY id"))
                .map_err(db_err)?;
            let rows = st.query_map([account_id], subscription_row).map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn cut_batches(&self, now: Millis, window_ms: i64, max_events: i64) -> StoreResult<Option<Millis>> {
        self.write_background(move |conn| {
            let subs: Vec<(i64, i64, String, i64)> = {
                let mut st = conn
                    .prepare_cached(
                        "SELECT id, account_id, target_url, cursor FROM subscriptions \
                         WHERE status = 'active' AND event = 'link_clicked'",
                    )
                    .map_err(db_err)?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            let mut next_close: Option<Millis> = None;
            for (sub, account, target, mut cursor) in subs {
                loop {
                    let events: Vec<(i64, i64)> = {
                        let mut st = conn
                            .prepare_cached(
                                "SELECT id, occurred_at FROM events WHERE account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                            )
                            .map_err(db_err)?;
                        let rows = st.query_map(params![account, cursor, max_events], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?;
                        rows.collect::<Result<_, _>>().map_err(db_err)?
                    };
                    let full = events.len() as i64 == max_events;
                    let Some(&(first, _)) = events.first() else { break };
                    let oldest = events.iter().map(|e| e.1).min().unwrap_or(now);
                    if !full && oldest + window_ms > now {
                        // The window is still open: come back when it closes.
                        next_close = Some(next_close.map_or(oldest + window_ms, |t| t.min(oldest + window_ms)));
                        break;
                    }
                    let last = events.last().map(|e| e.0).unwrap_or(first);
                    conn.prepare_cached(
                        "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, first_event_id, \
                         last_event_id, event_count, next_attempt_at, created_at, oldest_event_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                    )
                    .and_then(|mut st| {
                        st.execute(params![new_msg_id(), account, sub, target, first, last, events.len() as i64, now, oldest])
                    })
                    .map_err(db_err)?;
                    conn.execute("UPDATE subscriptions SET cursor = ?2 WHERE id = ?1", [sub, last]).map_err(db_err)?;
                    cursor = last;
                    if !full {
                        break;
                    }
                }
            }
            Ok(next_close)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_ms: i64,
        limit: i64,
        per_subscription: i64,
    ) -> StoreResult<Vec<Claimed>> {
        self.write_background(move |conn| {
            let rows: Vec<(Claimed, i64, Option<i64>, Option<i64>)> = {
                let mut st = conn
                    .prepare_cached(
                        "SELECT id, msg_id, subscription_id, target_url, secret, body, tries, account_id, first_event_id, \
                         last_event_id FROM (SELECT d.id, d.msg_id, d.subscription_id, s.target_url, s.secret, d.body, \
                           d.tries, d.account_id, d.first_event_id, d.last_event_id, d.next_attempt_at, \
                           ROW_NUMBER() OVER (PARTITION BY d.subscription_id ORDER BY d.next_attempt_at, d.id) AS rn \
                         FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
                         WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 AND (d.lease_until IS NULL OR d.lease_until < ?1) \
                         AND s.status = 'active') WHERE rn <= ?3 ORDER BY next_attempt_at, id LIMIT ?2",
                    )
                    .map_err(db_err)?;
                let rows = st
                    .query_map(params![now, limit, per_subscription], |r| {
                        Ok((
                            Claimed {
                                id: r.get(0)?,
                                msg_id: r.get(1)?,
                                subscription_id: r.get(2)?,
                                target_url: r.get(3)?,
                                secret: r.get(4)?,
                                body: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                                tries: r.get(6)?,
                            },
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                        ))
                    })
                    .map_err(db_err)?;
                rows.collect::<Result<_, _>>().map_err(db_err)?
            };
            let mut out = Vec::with_capacity(rows.len());
            for (mut c, account, first, last) in rows {
                if let (Some(first), Some(last)) = (first, last) {
                    c.body = batch_body(conn, account, first, last)?;
                }
                conn.execute("UPDATE deliveries SET lease_until = ?2 WHERE id = ?1", [c.id, now + lease_ms])
                    .map_err(db_err)?;
                out.push(c);
            }
            Ok(out)
        })
        .await
    }

    async fn finish_attempt(&self, a: Attempt) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, latency_ms, response) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| st.execute(params![a.delivery_id, a.at, a.status_code, a.error, a.latency_ms, a.response]))
            .map_err(db_err)?;
            let error = a.error.clone().or_else(|| a.status_code.map(|c| format!("HTTP {c}")));
            let fail_subscription = |conn: &Connection| {
                conn.execute(
                    "UPDATE subscriptions SET last_failure_at = ?2, failing_since = coalesce(failing_since, ?2), \
                     status = CASE WHEN status = 'active' AND ?2 - coalesce(failing_since, ?2) >= ?3 \
                                   THEN 'disabled' ELSE status END WHERE id = ?1",
                    params![a.subscription_id, a.at, a.disable_after_ms],
                )
                .map_err(db_err)
            };
            match a.outcome {
                AttemptOutcome::Delivered => {
                    conn.execute(
                        "UPDATE deliveries SET state = 'delivered', delivered_at = ?2, lease_until = NULL, last_error = NULL \
                         WHERE id = ?1",
                        params![a.delivery_id, a.at],
                    )
                    .map_err(db_err)?;
                    conn.execute(
                        "UPDATE subscriptions SET last_success_at = ?2, failing_since = NULL WHERE id = ?1",
                        params![a.subscription_id, a.at],
                    )
                    .map_err(db_err)?;
                }
                AttemptOutcome::Retry(next) => {
                    conn.execute(
                        "UPDATE deliveries SET tries = tries + 1, next_attempt_at = ?2, lease_until = NULL, last_error = ?3 \
                         WHERE id = ?1",
                        params![a.delivery_id, next, error],
                    )
                    .map_err(db_err)?;
                    fail_subscription(conn)?;
                }
                AttemptOutcome::Exhausted => {
                    conn.execute(
                        "UPDATE deliveries SET tries = tries + 1, state = 'failed', lease_until = NULL, last_error = ?2 \
                         WHERE id = ?1",
                        params![a.delivery_id, error],
                    )
                    .map_err(db_err)?;
                    fail_subscription(conn)?;
                }
                AttemptOutcome::Gone => {
                    let why = error.unwrap_or_default();
                    conn.execute(
                        "UPDATE deliveries SET tries = tries + 1, state = 'failed', lease_until = NULL, last_error = ?2 \
                         WHERE id = ?1",
                        params![a.delivery_id, format!("subscription removed: {why}")],
                    )
                    .map_err(db_err)?;
                    remove_subscription(conn, a.subscription_id, &why)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn release_leases(&self, ids: Vec<i64>) -> StoreResult<()> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE deliveries SET lease_until = NULL WHERE id IN (SELECT value FROM json_each(?1))",
                [ids_json(&ids)],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list_deliveries(&self, account_id: i64, q: DeliveryQuery) -> StoreResult<(i64, Vec<DeliveryRecord>)> {
        self.read(move |conn| {
            let mut filter = String::from("account_id = ?");
            let mut args: Vec<rusqlite::types::Value> = vec![account_id.into()];
            if let Some(s) = q.subscription_id {
                filter.push_str(" AND subscription_id = ?");
                args.push(s.into());
            }
            if let Some(s) = &q.state {
                filter.push_str(" AND state = ?");
                args.push(s.clone().into());
            }
            if let Some(t) = q.since {
                filter.push_str(" AND created_at >= ?");
                args.push(t.into());
            }
            let total: i64 = conn
                .query_row(&format!("SELECT count(*) FROM deliveries WHERE {filter}"), rusqlite::params_from_iter(args.iter()), |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            args.push(q.limit.into());
            args.push(q.offset.into());
            let mut st = conn
                .prepare(&format!(
                    "SELECT id, msg_id, subscription_id, target_url, event_count, state, tries, next_attempt_at, created_at, \
                     delivered_at, last_error FROM deliveries WHERE {filter} ORDER BY id DESC LIMIT ? OFFSET ?"
                ))
                .map_err(db_err)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    let state: String = r.get(5)?;
                    Ok(DeliveryRecord {
                        id: r.get(0)?,
                        msg_id: r.get(1)?,
                        subscription_id: r.get(2)?,
                        target_url: r.get(3)?,
                        event_count: r.get(4)?,
                        next_attempt_at: if state == "pending" { r.get(7)? } else { None },
                        state,
                        tries: r.get(6)?,
                        created_at: r.get(8)?,
                        delivered_at: r.get(9)?,
                        last_error: r.get(10)?,
                        attempts: Vec::new(),
                    })
                })
                .map_err(db_err)?;
            let mut out: Vec<DeliveryRecord> = rows.collect::<Result<_, _>>().map_err(db_err)?;
            let mut st = conn
                .prepare_cached(
                    "SELECT at, status_code, error, latency_ms, response FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
                )
                .map_err(db_err)?;
            for d in &mut out {
                let rows = st
                    .query_map([d.id], |r| {
                        Ok(AttemptRecord {
                            at: r.get(0)?,
                            status_code: r.get(1)?,
                            error: r.get(2)?,
                            latency_ms: r.get(3)?,
                            response: r.get(4)?,
                        })
                    })
                    .map_err(db_err)?;
                d.attempts = rows.collect::<Result<_, _>>().map_err(db_err)?;
            }
            Ok((total, out))
        })
        .await
    }

    async fn replay_delivery(&self, account_id: i64, id: i64, now: Millis) -> StoreResult<()> {
        self.write(move |conn| {
            let sub: Option<i64> = conn
                .query_row("SELECT subscription_id FROM deliveries WHERE id = ?1 AND account_id = ?2", [id, account_id], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            let sub = sub.ok_or(StoreError::NotFound("delivery"))?;
            load_subscription(conn, account_id, sub)
                .map_err(|_| StoreError::Invalid("the subscription of this delivery was removed; subscribe again".into()))?;
            conn.execute(
                "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = ?2, lease_until = NULL WHERE id = ?1",
                [id, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn replay_failed(&self, account_id: i64, subscription_id: i64, now: Millis) -> StoreResult<i64> {
        self.write(move |conn| {
            load_subscription(conn, account_id, subscription_id)?;
            let n = conn
                .execute(
                    "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = ?2, lease_until = NULL \
                     WHERE subscription_id = ?1 AND state = 'failed'",
                    [subscription_id, now],
                )
                .map_err(db_err)?;
            Ok(n as i64)
        })
        .await
    }

    async fn subscription(&self, account_id: i64, id: i64) -> StoreResult<Subscription> {
        self.read(move |conn| load_subscription(conn, account_id, id)).await
    }

    async fn set_subscription_status(&self, account_id: i64, id: i64, status: &str) -> StoreResult<Subscription> {
        let status = status.to_string();
        self.write(move |conn| {
            load_subscription(conn, account_id, id)?;
            conn.execute(
                "UPDATE subscriptions SET status = ?2, failing_since = CASE WHEN ?2 = 'active' THEN NULL ELSE failing_since END \
                 WHERE id = ?1",
                params![id, status],
            )
            .map_err(db_err)?;
            load_subscription(conn, account_id, id)
        })
        .await
    }

    async fn set_subscription_secret(&self, account_id: i64, id: i64, secret: String) -> StoreResult<Subscription> {
        self.write(move |conn| {
            load_subscription(conn, account_id, id)?;
            conn.execute("UPDATE subscriptions SET secret = ?2 WHERE id = ?1", params![id, secret]).map_err(db_err)?;
            load_subscription(conn, account_id, id)
        })
        .await
    }

    async fn add_test_delivery(
        &self,
        account_id: i64,
        subscription_id: i64,
        body: String,
        now: Millis,
    ) -> StoreResult<i64> {
        self.write(move |conn| {
            let sub = load_subscription(conn, account_id, subscription_id)?;
            conn.execute(
                "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, event_count, body, next_attempt_at, \
                 created_at, oldest_event_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?6, ?6)",
                params![new_msg_id(), account_id, subscription_id, sub.target_url, body, now],
            )
            .map_err(db_err)?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn backlog(&self) -> StoreResult<Vec<Backlog>> {
        self.read(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT s.id, \
                       (SELECT count(*) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor) \
                       + (SELECT coalesce(sum(event_count), 0) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending'), \
                       min(coalesce((SELECT min(occurred_at) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor), 1e18), \
                           coalesce((SELECT min(oldest_event_at) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending'), 1e18)) \
                     FROM subscriptions s ORDER BY s.id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    let oldest: f64 = r.get(2)?;
                    Ok(Backlog {
                        subscription_id: r.get(0)?,
                        events: r.get(1)?,
                        oldest_at: (oldest < 1e17).then_some(oldest as i64),
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn link_keys(&self) -> StoreResult<Vec<LinkKey>> {
        self.read(|conn| {
            let mut st = conn.prepare("SELECT id, secret, created_at FROM link_keys ORDER BY id").map_err(db_err)?;
            let rows = st
                .query_map([], |r| Ok(LinkKey { id: r.get(0)?, secret: r.get(1)?, created_at: r.get(2)? }))
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn add_link_key(&self, secret: Vec<u8>) -> StoreResult<LinkKey> {
        self.write(move |conn| {
            let now = now_millis();
            conn.execute("INSERT INTO link_keys (secret, created_at) VALUES (?1, ?2)", params![secret, now])
                .map_err(db_err)?;
            Ok(LinkKey { id: conn.last_insert_rowid(), secret, created_at: now })
        })
        .await
    }

    async fn remove_link_key(&self, id: i64) -> StoreResult<()> {
        self.write(move |conn| {
            let n = conn.execute("DELETE FROM link_keys WHERE id = ?1", [id]).map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound("link key"));
            }
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        self.stop_checkpoints.store(true, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn click() -> NewClick {
        NewClick {
            account_id: 1,
            email_id: 1,
            link_no: 0,
            at: now_millis(),
            head: false,
            ip: None,
            user_agent: String::new(),
        }
    }

    /// How long a background write takes to commit while the writer is saturated: a thread
    /// keeps more clicks queued than one transaction takes, so the queue never runs dry.
    async fn background_write_under_saturation(store: &Arc<SqliteStore>) -> Duration {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clicker = std::thread::spawn({
            let (writer, stop) = (store.writer.clone(), stop.clone());
            move || {
                let mut outstanding = std::collections::VecDeque::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    while outstanding.len() < 5 * MAX_GROUP {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_writes_stop_yielding_to_clicks_when_settling_is_behind() {
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

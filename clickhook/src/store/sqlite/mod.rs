//! The embedded store: one SQLite file in WAL mode.
//!
//! One writer thread owns the only writing connection ([`writer`]). It takes everything
//! queued, runs it in one transaction and commits once (group commit), so a burst of clicks
//! costs one fsync rather than one each; every caller is answered only after that commit.
//! Each queued job runs inside its own savepoint, so one failing job rolls back alone. Reads
//! run on a small pool of read-only connections, which WAL lets proceed while the writer
//! commits. The other files hold the SQL of each part of the store.

mod accounts;
mod backup;
mod campaigns;
mod clicks;
mod common;
mod delivery;
mod domains;
mod prospects;
mod sessions;
mod sql;
mod stats;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::Connection;

use super::error::{StoreError, StoreResult};
use super::parts::Store;
use super::schedule::{LastClickCommit, Scheduling};
use super::schema;
pub use backup::backup;
pub use writer::Options;
use writer::{Readers, Writer};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_delivery.sql"),
    include_str!("../../../migrations/sqlite/0003_settle_frontier.sql"),
    include_str!("../../../migrations/sqlite/0004_deletions.sql"),
    include_str!("../../../migrations/sqlite/0005_imports.sql"),
    include_str!("../../../migrations/sqlite/0006_retention.sql"),
    include_str!("../../../migrations/sqlite/0007_tracking_domains.sql"),
    include_str!("../../../migrations/sqlite/0008_stats.sql"),
    include_str!("../../../migrations/sqlite/0009_click_ids.sql"),
    include_str!("../../../migrations/sqlite/0010_app_sessions.sql"),
    include_str!("../../../migrations/sqlite/0011_email_ids.sql"),
    include_str!("../../../migrations/sqlite/0012_stats_cursor.sql"),
    include_str!("../../../migrations/sqlite/0013_released_below.sql"),
    include_str!("../../../migrations/sqlite/0014_history_by_time.sql"),
    include_str!("../../../migrations/sqlite/0015_fewer_rows_per_click.sql"),
    include_str!("../../../migrations/sqlite/0016_due_by_subscription.sql"),
];

/// The version that added statistics: upgrading to it counts what was there.
const STATS_VERSION: usize = 8;

pub struct SqliteStore {
    /// Held while this process serves the file (see [`SqliteStore::open_for_serving`]).
    _serving: Option<std::fs::File>,
    writer: Writer,
    readers: Arc<Readers>,
    /// When the writer last committed clicks.
    last_click_commit: Arc<LastClickCommit>,
    /// The settler is behind: its writes no longer wait for a lull in the clicks.
    urgent: AtomicBool,
}

/// Applies the migrations this binary knows; refuses a schema it does not.
pub fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for i in schema::pending(version, MIGRATIONS.len())? {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(MIGRATIONS[i])?;
        if i + 1 == STATS_VERSION {
            stats::backfill(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied SQLite migration");
    }
    Ok(())
}

/// The file that marks a database as served: a `serve` holds an exclusive lock on it, and the
/// pid of its process is written in it.
fn serve_lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".serve.lock");
    path.with_file_name(name)
}

/// Takes the lock only one `serve` of a file may hold. A second server would clear the first
/// one's delivery leases and send its batches again; commands (`account`, `import`, …) take no
/// lock and run beside a server.
fn lock_for_serving(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let lock_path = serve_lock_path(path);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", lock_path.display()))?;
    // A server being stopped (`kill %1; clickhook serve`) lets go of the lock once it has
    // drained: wait a few seconds for that before refusing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // SAFETY: flock on a descriptor this function owns; it only reads its arguments.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        anyhow::bail!(
            "{} is already served by another clickhook (pid {}); stop it first, or serve another --db",
            path.display(),
            pid.trim()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Says which file could not be opened, and why in words an operator acts on.
fn explain_open_error(path: &Path, e: anyhow::Error) -> anyhow::Error {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        return anyhow::anyhow!(
            "cannot open the database {}: the folder {} does not exist",
            path.display(),
            folder.display()
        );
    }
    let read_only = e.chain().any(|c| {
        c.downcast_ref::<rusqlite::Error>().and_then(rusqlite::Error::sqlite_error_code)
            == Some(rusqlite::ErrorCode::ReadOnly)
    });
    if read_only {
        return anyhow::anyhow!("cannot write the database {}: the file or its folder is read-only", path.display());
    }
    anyhow::anyhow!("cannot open the database {}: {e:#}", path.display())
}

impl SqliteStore {
    /// Opens the file for `serve`: this process alone serves it, so leases left in it belong to
    /// a process that died, and are given back.
    pub async fn open_for_serving(path: &Path, opts: Options) -> anyhow::Result<Self> {
        let lock = lock_for_serving(path)?;
        let mut store = Self::open(path, opts).await?;
        store
            .write(|conn| sql::exec(conn, "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL", []))
            .await?;
        store._serving = Some(lock);
        Ok(store)
    }

    /// Opens the file for a command, beside a server that may be running.
    pub async fn open(path: &Path, opts: Options) -> anyhow::Result<Self> {
        Self::open_file(path, opts).await.map_err(|e| explain_open_error(path, e))
    }

    async fn open_file(path: &Path, opts: Options) -> anyhow::Result<Self> {
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
        let last_click_commit = Arc::new(LastClickCommit::default());
        let writer = Writer::start(conn, path, last_click_commit.clone())?;
        Ok(SqliteStore {
            _serving: None,
            writer,
            readers: Arc::new(Readers::new(path, opts.readers)),
            last_click_commit,
            urgent: AtomicBool::new(false),
        })
    }

    fn urgent(&self) -> bool {
        self.urgent.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Scheduling for SqliteStore {
    fn clicks_flowing(&self) -> bool {
        self.last_click_commit.flowing()
    }

    fn settle_urgently(&self, urgent: bool) {
        self.urgent.store(urgent, Ordering::Relaxed);
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn close(&self) {
        self.writer.close().await;
    }

    /// Not since a write found no room on the disk and none wrote after it.
    async fn writable(&self) -> StoreResult<()> {
        match self.writer.cannot_write.load(Ordering::Relaxed) {
            true => Err(StoreError::CannotWrite("the disk is full".into())),
            false => Ok(()),
        }
    }
}

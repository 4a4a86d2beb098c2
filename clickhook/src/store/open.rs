//! Opening the store `--db` names, with the durability a click's commit waits for.

use std::sync::Arc;

use super::parts::DynStore;
use super::{postgres, sqlite};

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Committed data survive the process being killed; the OS writes them to disk moments
    /// later, so a power cut can lose that last moment. (SQLite WAL, synchronous=NORMAL.)
    #[default]
    Process,
    /// Every commit also waits for fsync: survives power loss, at a cost in throughput.
    Power,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(Durability::Process),
            "power" => Ok(Durability::Power),
            _ => Err(format!("durability must be process or power, not {s:?}")),
        }
    }
}

/// Opens the store named by `--db`: a `postgres://` URL or an SQLite file path.
/// Runs pending migrations; refuses a database whose schema is newer than this binary.
pub async fn open(db: &str) -> anyhow::Result<DynStore> {
    open_as(db, Durability::default(), false).await
}

/// Opens the store for `serve`. An SQLite file is served by one process at a time: a second
/// `serve` of it is refused, naming the server that has it.
pub async fn open_for_serving(db: &str, durability: Durability) -> anyhow::Result<DynStore> {
    open_as(db, durability, true).await
}

async fn open_as(db: &str, durability: Durability, serving: bool) -> anyhow::Result<DynStore> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        // PostgreSQL commits are always durable (synchronous_commit as the server sets it), and
        // several nodes serve one database by design.
        return Ok(Arc::new(postgres::PgStore::open(db).await?));
    }
    let synchronous = match durability {
        Durability::Process => "NORMAL",
        Durability::Power => "FULL",
    };
    let opts = sqlite::Options { synchronous, ..sqlite::Options::default() };
    let path = std::path::Path::new(db);
    let store = match serving {
        true => sqlite::SqliteStore::open_for_serving(path, opts).await?,
        false => sqlite::SqliteStore::open(path, opts).await?,
    };
    Ok(Arc::new(store))
}

/// Copies the SQLite store `db` names to `to` while it is served (`sqlite::backup`). A
/// PostgreSQL store is backed up with PostgreSQL's own tools (README, "Backup").
pub fn backup(db: &str, to: &std::path::Path) -> anyhow::Result<u64> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        anyhow::bail!(
            "clickhook backup copies an SQLite store; back up PostgreSQL with pg_dump or point-in-time recovery \
             (see the README's Backup section)"
        );
    }
    sqlite::backup(std::path::Path::new(db), to)
}

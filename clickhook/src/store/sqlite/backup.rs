//! `clickhook backup FILE`: a consistent copy of a live SQLite store.
//!
//! `VACUUM INTO` on a read-only connection: it reads one snapshot (WAL lets the server keep
//! committing clicks meanwhile, none of which the copy half-holds) and writes a compact file.
//! The copy is written beside FILE and renamed into place once complete, so FILE is either the
//! whole backup or absent. Restoring is serving the copy: `clickhook --db FILE serve`.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// Copies the store at `db` to `to`, which must not exist; returns the copy's size in bytes.
pub fn backup(db: &Path, to: &Path) -> anyhow::Result<u64> {
    if !db.exists() {
        anyhow::bail!("{} does not exist", db.display());
    }
    if to.exists() {
        anyhow::bail!("{} exists already; a backup never overwrites a file", to.display());
    }
    let partial = to.with_file_name(format!(
        ".{}.partial",
        to.file_name().ok_or_else(|| anyhow::anyhow!("{} names no file", to.display()))?.to_string_lossy()
    ));
    let _ = std::fs::remove_file(&partial);
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version == 0 {
        anyhow::bail!("{} holds no clickhook store", db.display());
    }
    let copied = conn
        .execute("VACUUM INTO ?1", [partial.to_string_lossy()])
        .map_err(|e| anyhow::anyhow!("copying {} to {}: {e}", db.display(), partial.display()));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, to)?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(std::fs::metadata(to)?.len())
}

//! Reads and deletes that several parts share on SQLite: a prospect, an enrollment, and
//! forgetting the clicks of deleted emails. The part files import this one; it imports none.

use rusqlite::{params, Connection, ToSql};

use super::sql::{exec, one};
use crate::domain::{now_millis, EmailAddress, Enrollment, Prospect};
use crate::store::error::StoreResult;
use crate::store::rows::{self, ENROLLMENT_COLS, PROSPECT_COLS};

pub(super) fn load_prospect(conn: &Connection, account_id: i64, id: i64) -> StoreResult<Option<Prospect>> {
    let sql = format!("SELECT {PROSPECT_COLS} FROM prospects p WHERE p.id = ?1 AND p.account_id = ?2");
    one(conn, &sql, [id, account_id], rows::prospect)
}

pub(super) fn prospect_id_by_email(
    conn: &Connection,
    account_id: i64,
    email: &EmailAddress,
) -> StoreResult<Option<i64>> {
    one(
        conn,
        "SELECT id FROM prospects WHERE account_id = ?1 AND email_key = ?2",
        params![account_id, email.key()],
        rows::int,
    )
}

pub(super) fn load_enrollment(
    conn: &Connection,
    campaign_id: i64,
    prospect_id: i64,
) -> StoreResult<Option<Enrollment>> {
    let sql = format!("SELECT {ENROLLMENT_COLS} FROM enrollments WHERE campaign_id = ?1 AND prospect_id = ?2");
    one(conn, &sql, [campaign_id, prospect_id], rows::enrollment)
}

/// Deletes the clicks on the account's emails that `emails` selects (SQL over the account `?1`
/// and `arg` as `?2`), and records that links went away. The account's index finds its
/// clicks: deletes are rare, clicks are not.
pub(super) fn forget_emails(conn: &Connection, account_id: i64, emails: &str, arg: &dyn ToSql) -> StoreResult<()> {
    // Released clicks stay counted after they are gone: count them before.
    super::stats::count_now(conn)?;
    let sql = format!("DELETE FROM clicks WHERE account_id = ?1 AND email_id IN ({emails})");
    exec(conn, &sql, params![account_id, arg])?;
    exec(conn, "INSERT INTO deletions (at) VALUES (?1)", [now_millis()]).map(drop)
}

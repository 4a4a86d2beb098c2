//! Reads and deletes that several parts share on PostgreSQL: a prospect, an enrollment, and
//! forgetting the clicks of deleted emails. The part files import this one; it imports none.

use super::pool::{exec, one, Param, Q};
use crate::domain::{now_millis, EmailAddress, Enrollment, Prospect};
use crate::store::error::StoreResult;
use crate::store::rows::{self, ENROLLMENT_COLS, PROSPECT_COLS};

pub(super) async fn load_prospect(c: &impl Q, account_id: i64, id: i64) -> StoreResult<Option<Prospect>> {
    let sql = format!("SELECT {PROSPECT_COLS} FROM prospects p WHERE p.id = $1 AND p.account_id = $2");
    one(c, &sql, &[&id, &account_id], rows::prospect).await
}

pub(super) async fn prospect_id_by_email(
    c: &impl Q,
    account_id: i64,
    email: &EmailAddress,
) -> StoreResult<Option<i64>> {
    let sql = "SELECT id FROM prospects WHERE account_id = $1 AND email_key = $2";
    one(c, sql, &[&account_id, &email.key()], rows::int).await
}

pub(super) async fn load_enrollment(c: &impl Q, campaign_id: i64, prospect_id: i64) -> StoreResult<Option<Enrollment>> {
    let sql = format!("SELECT {ENROLLMENT_COLS} FROM enrollments WHERE campaign_id = $1 AND prospect_id = $2");
    one(c, &sql, &[&campaign_id, &prospect_id], rows::enrollment).await
}

/// Deletes the clicks on the account's emails that `emails` selects (SQL over the account `$1`
/// and `arg` as `$2`), and records that links went away. The account's index finds its
/// clicks: deletes are rare, clicks are not. Their burst history rows stay until pruned by
/// time: it is read joined to the clicks, and email ids are never used again. Clicks still in their
/// groups are taken in by settling, which forgets them then (`forget_orphan_clicks`).
pub(super) async fn forget_emails(tx: &impl Q, account_id: i64, emails: &str, arg: Param<'_>) -> StoreResult<()> {
    let sql = format!("DELETE FROM clicks WHERE account_id = $1 AND email_id IN ({emails})");
    exec(tx, &sql, &[&account_id, arg]).await?;
    exec(tx, "INSERT INTO deletions (at) VALUES ($1)", &[&now_millis()]).await.map(drop)
}

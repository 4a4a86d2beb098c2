//! Prospects on SQLite.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use super::clicks::forget_emails;
use super::sql::{all, exec, exists, ids_json, one, page, DIALECT};
use super::SqliteStore;
use crate::domain::prospect::{UpsertPlan, Upserted};
use crate::domain::{now_millis, EmailAddress, Millis, Prospect};
use crate::store::error::{StoreError, StoreResult};
use crate::store::lists;
use crate::store::parts::ProspectStore;
use crate::store::records::{ProspectQuery, UpsertProspects};
use crate::store::rows::{self, prospect_values, prospect_write_cols, PROSPECT_COLS};

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

fn insert(conn: &Connection, p: &Prospect, now: Millis) -> StoreResult<i64> {
    let places: Vec<String> = (3..prospect_write_cols().len() + 3).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO prospects (account_id, created_at, updated_at, {}) VALUES (?1, ?2, ?2, {})",
        prospect_write_cols().join(", "),
        places.join(", ")
    );
    let mut args: Vec<Value> = vec![p.account_id.into(), now.into()];
    args.extend(prospect_values(p)?.map(Value::from));
    exec(conn, &sql, params_from_iter(args))?;
    Ok(conn.last_insert_rowid())
}

fn update(conn: &Connection, p: &Prospect, now: Millis) -> StoreResult<()> {
    let set: Vec<String> = prospect_write_cols().iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 3)).collect();
    let sql = format!("UPDATE prospects SET updated_at = ?2, {} WHERE id = ?1", set.join(", "));
    let mut args: Vec<Value> = vec![p.id.into(), now.into()];
    args.extend(prospect_values(p)?.map(Value::from));
    exec(conn, &sql, params_from_iter(args)).map(drop)
}

#[async_trait]
impl ProspectStore for SqliteStore {
    async fn upsert_prospects(&self, account_id: i64, req: UpsertProspects) -> StoreResult<Vec<Upserted>> {
        self.write(move |conn| {
            if let Some(c) = req.campaign_id {
                if !exists(
                    conn,
                    "SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = ?1 AND account_id = ?2)",
                    [c, account_id],
                )? {
                    return Err(StoreError::NotFound("campaign"));
                }
            }
            let keys: Vec<String> = req.prospects.iter().map(|p| p.email.key()).collect();
            let sql = format!(
                "SELECT {PROSPECT_COLS} FROM prospects p WHERE p.account_id = ?1 \
                 AND p.email_key IN (SELECT value FROM json_each(?2))"
            );
            let existing = all(conn, &sql, params![account_id, rows::to_json(&keys)?], rows::prospect)?;
            let plan = UpsertPlan::new(account_id, &req.prospects, existing, req.update, req.imported.as_deref());
            let now = now_millis();
            let ids = plan.created.iter().map(|p| insert(conn, p, now)).collect::<StoreResult<Vec<i64>>>()?;
            for p in &plan.changed {
                update(conn, p, now)?;
            }
            let out = plan.outcomes(&ids);
            if let Some(c) = req.campaign_id {
                for o in &out {
                    let sql = "INSERT INTO enrollments (campaign_id, prospect_id, created_at) VALUES (?1, ?2, ?3) \
                               ON CONFLICT DO NOTHING";
                    exec(conn, sql, params![c, o.id(), now])?;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_prospects(&self, account_id: i64, q: ProspectQuery) -> StoreResult<(i64, Vec<Prospect>)> {
        self.read(move |conn| {
            page(conn, &lists::prospects_paged(&DIALECT, account_id, &q), (q.limit, q.offset), rows::prospect)
        })
        .await
    }

    async fn delete_prospects(&self, account_id: i64, ids: Vec<i64>) -> StoreResult<i64> {
        self.write(move |conn| {
            let ids = ids_json(&ids);
            let emails =
                "SELECT id FROM emails WHERE account_id = ?1 AND prospect_id IN (SELECT value FROM json_each(?2))";
            forget_emails(conn, account_id, emails, &ids)?;
            let sql = "DELETE FROM prospects WHERE account_id = ?1 AND id IN (SELECT value FROM json_each(?2))";
            Ok(exec(conn, sql, params![account_id, ids])? as i64)
        })
        .await
    }

    async fn stop_followups(&self, account_id: i64, email: &EmailAddress) -> StoreResult<bool> {
        let email = email.clone();
        self.write(move |conn| {
            let Some(id) = prospect_id_by_email(conn, account_id, &email)? else { return Ok(false) };
            exec(conn, "UPDATE enrollments SET stopped = 1 WHERE prospect_id = ?1", [id])?;
            Ok(true)
        })
        .await
    }
}

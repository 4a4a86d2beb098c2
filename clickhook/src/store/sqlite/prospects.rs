//! Prospects on SQLite.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection};

use super::common::{forget_emails, prospect_id_by_email};
use super::sql::{all, exec, exists, ids_json, one, page, DIALECT};
use super::SqliteStore;
use crate::domain::import::{step_len, ImportState, UndoEntry, UndoKind, TIDY_STEP};
use crate::domain::prospect::{UpsertPlan, Upserted};
use crate::domain::{now_millis, EmailAddress, Millis, Prospect};
use crate::store::error::{StoreError, StoreResult};
use crate::store::lists;
use crate::store::parts::ProspectStore;
use crate::store::records::{ProspectQuery, UpsertProspects};
use crate::store::rows::{self, prospect_values, prospect_write_cols, IMPORT_COLS, PROSPECT_COLS, UNDO_COLS};

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
    write_values(conn, p.id, now, prospect_values(p)?)
}

/// Writes [`prospect_write_cols`]' values over a prospect's.
fn write_values(conn: &Connection, id: i64, updated_at: Millis, values: [String; 19]) -> StoreResult<()> {
    let set: Vec<String> = prospect_write_cols().iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 3)).collect();
    let sql = format!("UPDATE prospects SET updated_at = ?2, {} WHERE id = ?1", set.join(", "));
    let mut args: Vec<Value> = vec![id.into(), updated_at.into()];
    args.extend(values.map(Value::from));
    exec(conn, &sql, params_from_iter(args)).map(drop)
}

/// Keeps a running import alive, or fails the chunk when it no longer runs.
fn touch_import(conn: &Connection, id: i64, account_id: i64, now: Millis) -> StoreResult<()> {
    let sql = "UPDATE imports SET touched_at = ?3 WHERE id = ?1 AND account_id = ?2 AND state = 'running'";
    match exec(conn, sql, params![id, account_id, now])? {
        0 => Err(StoreError::Conflict(format!("import {id} no longer runs: it was abandoned, and is undone"))),
        _ => Ok(()),
    }
}

/// Undoes journal entries, newest first. The prospects the import created go last: nothing
/// older in the journal names them.
fn undo(conn: &Connection, account_id: i64, campaign_id: Option<i64>, entries: &[(i64, UndoEntry)]) -> StoreResult<()> {
    let mut created = Vec::new();
    for (_, e) in entries {
        match e.kind {
            UndoKind::Created => created.push(rows::to_json(&[e.first, e.last])?),
            UndoKind::Changed => {
                let (updated_at, values) = rows::prospect_restore(e.before.as_deref().unwrap_or_default())?;
                write_values(conn, e.first, updated_at, values)?;
            }
            UndoKind::Enrolled => {
                let sql = "DELETE FROM enrollments WHERE campaign_id = ?1 AND prospect_id = ?2";
                exec(conn, sql, params![campaign_id, e.first])?;
            }
        }
    }
    const RUN: &str = "BETWEEN json_extract(?2, '$[0]') AND json_extract(?2, '$[1]')";
    for run in created {
        let emails = format!("SELECT id FROM emails WHERE account_id = ?1 AND prospect_id {RUN}");
        forget_emails(conn, account_id, &emails, &run)?;
        exec(conn, &format!("DELETE FROM prospects WHERE account_id = ?1 AND id {RUN}"), params![account_id, run])?;
    }
    Ok(())
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
            let now = now_millis();
            if let Some(import) = req.import {
                touch_import(conn, import, account_id, now)?;
            }
            let kept = if req.import.is_some() { existing.clone() } else { Vec::new() };
            let plan = UpsertPlan::new(account_id, &req.prospects, existing, req.update, req.imported.as_deref());
            let ids = plan.created.iter().map(|p| insert(conn, p, now)).collect::<StoreResult<Vec<i64>>>()?;
            for p in &plan.changed {
                update(conn, p, now)?;
            }
            let out = plan.outcomes(&ids);
            let mut enrolled = Vec::new();
            if let Some(c) = req.campaign_id {
                for o in &out {
                    let sql = "INSERT INTO enrollments (campaign_id, prospect_id, created_at) VALUES (?1, ?2, ?3) \
                               ON CONFLICT DO NOTHING";
                    if exec(conn, sql, params![c, o.id(), now])? > 0 {
                        enrolled.push(o.id());
                    }
                }
            }
            if let Some(import) = req.import {
                let sql = "INSERT INTO import_undo (import_id, first_id, last_id, kind, before) \
                           VALUES (?1, ?2, ?3, ?4, ?5)";
                for e in UndoEntry::for_chunk(&ids, rows::befores(&kept, &plan.changed)?, &enrolled) {
                    exec(conn, sql, params![import, e.first, e.last, e.kind.as_str(), e.before])?;
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

    async fn begin_import(&self, account_id: i64, campaign_id: Option<i64>) -> StoreResult<i64> {
        self.write(move |conn| {
            let sql = "INSERT INTO imports (account_id, campaign_id, state, touched_at) VALUES (?1, ?2, ?3, ?4)";
            exec(conn, sql, params![account_id, campaign_id, ImportState::Running.as_str(), now_millis()])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn end_import(&self, id: i64, to: ImportState) -> StoreResult<()> {
        self.write(move |conn| {
            match exec(
                conn,
                "UPDATE imports SET state = ?2 WHERE id = ?1 AND state = 'running'",
                params![id, to.as_str()],
            )? {
                0 => Err(StoreError::Conflict(format!("import {id} no longer runs: it was abandoned, and is undone"))),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn tidy_import(&self, id: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            let sql = format!("SELECT {IMPORT_COLS} FROM imports WHERE id = ?1");
            let Some((account_id, campaign_id, state)) = one(conn, &sql, [id], rows::import)? else { return Ok(true) };
            let tidied = match state {
                ImportState::Running => return Err(StoreError::Conflict(format!("import {id} still runs"))),
                ImportState::Kept => {
                    let sql = "DELETE FROM import_undo WHERE id IN \
                               (SELECT id FROM import_undo WHERE import_id = ?1 ORDER BY id DESC LIMIT ?2)";
                    exec(conn, sql, [id, TIDY_STEP])?
                }
                ImportState::Undoing => {
                    let sql =
                        format!("SELECT {UNDO_COLS} FROM import_undo WHERE import_id = ?1 ORDER BY id DESC LIMIT ?2");
                    let mut entries = all(conn, &sql, [id, TIDY_STEP], rows::undo_entry)?;
                    entries.truncate(step_len(entries.iter().map(|(_, e)| e)));
                    undo(conn, account_id, campaign_id, &entries)?;
                    let oldest = entries.last().map_or(i64::MAX, |(seq, _)| *seq);
                    exec(conn, "DELETE FROM import_undo WHERE import_id = ?1 AND id >= ?2", [id, oldest])?
                }
            };
            if tidied == 0 {
                exec(conn, "DELETE FROM imports WHERE id = ?1", [id])?;
            }
            Ok(tidied == 0)
        })
        .await
    }

    async fn ended_imports(&self, abandoned_before: Millis) -> StoreResult<Vec<i64>> {
        self.write(move |conn| {
            let sql = "UPDATE imports SET state = 'undoing' WHERE state = 'running' AND touched_at < ?1";
            exec(conn, sql, [abandoned_before])?;
            all(conn, "SELECT id FROM imports WHERE state <> 'running' ORDER BY id", [], rows::int)
        })
        .await
    }
}

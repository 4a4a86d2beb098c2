//! Prospects on PostgreSQL. An upsert writes a whole chunk in a few statements, whatever its
//! size: one read of the prospects it names, ids for the new ones from the sequence, then one
//! INSERT and one UPDATE of arrays.

use async_trait::async_trait;

use super::common::{forget_emails, prospect_id_by_email};
use super::pool::{all, exec, one, page, pg, Param, DIALECT, Q};
use super::PgStore;
use crate::domain::import::{step_len, ImportState, UndoEntry, UndoKind, TIDY_STEP};
use crate::domain::prospect::{UpsertPlan, Upserted};
use crate::domain::{now_millis, EmailAddress, Prospect};
use crate::store::error::{StoreError, StoreResult};
use crate::store::lists;
use crate::store::parts::ProspectStore;
use crate::store::records::{ProspectQuery, UpsertProspects};
use crate::store::rows::{self, prospect_values, prospect_write_cols, IMPORT_COLS, PROSPECT_COLS, UNDO_COLS};

/// Prospects as one array per column: ids, then [`prospect_write_cols`].
struct Columns {
    ids: Vec<i64>,
    text: Vec<Vec<String>>,
}

impl Columns {
    fn of(ps: &[Prospect], ids: &[i64]) -> StoreResult<Self> {
        let mut text = vec![Vec::with_capacity(ps.len()); prospect_write_cols().len()];
        for p in ps {
            for (col, v) in text.iter_mut().zip(prospect_values(p)?) {
                col.push(v);
            }
        }
        Ok(Columns { ids: ids.to_vec(), text })
    }

    /// The prospects with these ids, given as [`prospect_write_cols`]' values.
    fn of_values(ids: Vec<i64>, values: Vec<[String; 19]>) -> Self {
        let mut text = vec![Vec::with_capacity(values.len()); prospect_write_cols().len()];
        for row in values {
            for (col, v) in text.iter_mut().zip(row) {
                col.push(v);
            }
        }
        Columns { ids, text }
    }

    fn params(&self) -> Vec<Param<'_>> {
        let mut v: Vec<Param> = vec![&self.ids];
        v.extend(self.text.iter().map(|c| c as Param));
        v
    }

    /// `unnest(...) AS u(id, <columns>)` over parameters $1..$20.
    fn unnest() -> String {
        let arrays: Vec<String> = (2..=prospect_write_cols().len() + 1).map(|i| format!("${i}::text[]")).collect();
        format!("unnest($1::bigint[], {}) AS u(id, {})", arrays.join(", "), prospect_write_cols().join(", "))
    }
}

/// Writes the prospects' columns over the stored ones, all in one statement.
async fn write_columns(tx: &impl Q, cols: &Columns, updated_at: i64) -> StoreResult<()> {
    let mut params = cols.params();
    params.push(&updated_at);
    let set: Vec<String> = prospect_write_cols().iter().map(|c| format!("{c} = u.{c}")).collect();
    let sql = format!(
        "UPDATE prospects p SET {set}, updated_at = ${t} FROM {unnest} WHERE p.id = u.id",
        set = set.join(", "),
        t = params.len(),
        unnest = Columns::unnest(),
    );
    exec(tx, &sql, &params).await.map(drop)
}

/// Keeps a running import alive, or fails the chunk when it no longer runs.
async fn touch_import(tx: &impl Q, id: i64, account_id: i64, now: i64) -> StoreResult<()> {
    let sql = "UPDATE imports SET touched_at = $3 WHERE id = $1 AND account_id = $2 AND state = 'running'";
    match exec(tx, sql, &[&id, &account_id, &now]).await? {
        0 => Err(StoreError::Conflict(format!("import {id} no longer runs: it was abandoned, and is undone"))),
        _ => Ok(()),
    }
}

/// Undoes journal entries, newest first. The prospects the import created go last: nothing
/// older in the journal names them.
async fn undo(tx: &impl Q, account_id: i64, campaign_id: Option<i64>, entries: &[(i64, UndoEntry)]) -> StoreResult<()> {
    let mut created = Vec::new();
    for (_, e) in entries {
        match e.kind {
            UndoKind::Created => created.push(vec![e.first, e.last]),
            UndoKind::Changed => {
                let (updated_at, values) = rows::prospect_restore(e.before.as_deref().unwrap_or_default())?;
                write_columns(tx, &Columns::of_values(vec![e.first], vec![values]), updated_at).await?;
            }
            UndoKind::Enrolled => {
                let sql = "DELETE FROM enrollments WHERE campaign_id = $1 AND prospect_id = $2";
                exec(tx, sql, &[&campaign_id, &e.first]).await?;
            }
        }
    }
    for run in created {
        let emails = "SELECT id FROM emails WHERE account_id = $1 AND prospect_id BETWEEN ($2::bigint[])[1] AND ($2::bigint[])[2]";
        forget_emails(tx, account_id, emails, &run).await?;
        let sql = "DELETE FROM prospects WHERE account_id = $1 AND id BETWEEN ($2::bigint[])[1] AND ($2::bigint[])[2]";
        exec(tx, sql, &[&account_id, &run]).await?;
    }
    Ok(())
}

#[async_trait]
impl ProspectStore for PgStore {
    async fn upsert_prospects(&self, account_id: i64, req: UpsertProspects) -> StoreResult<Vec<Upserted>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        if let Some(cid) = req.campaign_id {
            let sql = "SELECT id FROM campaigns WHERE id = $1 AND account_id = $2";
            one(&tx, sql, &[&cid, &account_id], rows::int).await?.ok_or(StoreError::NotFound("campaign"))?;
        }
        let keys: Vec<String> = req.prospects.iter().map(|p| p.email.key()).collect();
        let sql = format!("SELECT {PROSPECT_COLS} FROM prospects p WHERE p.account_id = $1 AND p.email_key = ANY($2)");
        let existing = all(&tx, &sql, &[&account_id, &keys], rows::prospect).await?;
        let now = now_millis();
        if let Some(import) = req.import {
            touch_import(&tx, import, account_id, now).await?;
        }
        let kept = if req.import.is_some() { existing.clone() } else { Vec::new() };
        let plan = UpsertPlan::new(account_id, &req.prospects, existing, req.update, req.imported.as_deref());
        let sql = "SELECT nextval(pg_get_serial_sequence('prospects', 'id')) FROM generate_series(1, $1::bigint)";
        let ids = all(&tx, sql, &[&(plan.created.len() as i64)], rows::int).await?;
        if !plan.created.is_empty() {
            let cols = Columns::of(&plan.created, &ids)?;
            let mut params = cols.params();
            params.push(&account_id);
            params.push(&now);
            let sql = format!(
                "INSERT INTO prospects (id, {names}, account_id, created_at, updated_at) \
                 SELECT u.*, ${a}, ${t}, ${t} FROM {unnest}",
                names = prospect_write_cols().join(", "),
                a = params.len() - 1,
                t = params.len(),
                unnest = Columns::unnest(),
            );
            exec(&tx, &sql, &params).await?;
        }
        if !plan.changed.is_empty() {
            let changed_ids: Vec<i64> = plan.changed.iter().map(|p| p.id).collect();
            write_columns(&tx, &Columns::of(&plan.changed, &changed_ids)?, now).await?;
        }
        let out = plan.outcomes(&ids);
        let mut enrolled = Vec::new();
        if let Some(cid) = req.campaign_id {
            let ids: Vec<i64> = out.iter().map(|o| o.id()).collect();
            let sql = "INSERT INTO enrollments (campaign_id, prospect_id, created_at) \
                       SELECT $1, x, $3 FROM unnest($2::bigint[]) WITH ORDINALITY AS t(x, n) ORDER BY n \
                       ON CONFLICT DO NOTHING RETURNING prospect_id";
            enrolled = all(&tx, sql, &[&cid, &ids, &now], rows::int).await?;
        }
        if let Some(import) = req.import {
            let entries = UndoEntry::for_chunk(&ids, rows::befores(&kept, &plan.changed)?, &enrolled);
            let firsts: Vec<i64> = entries.iter().map(|e| e.first).collect();
            let lasts: Vec<i64> = entries.iter().map(|e| e.last).collect();
            let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
            let befores: Vec<Option<&str>> = entries.iter().map(|e| e.before.as_deref()).collect();
            let sql = "INSERT INTO import_undo (import_id, first_id, last_id, kind, before) \
                       SELECT $1, f, l, k, b FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[]) \
                       WITH ORDINALITY AS u(f, l, k, b, n) ORDER BY n";
            exec(&tx, sql, &[&import, &firsts, &lasts, &kinds, &befores]).await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(out)
    }

    async fn list_prospects(&self, account_id: i64, q: ProspectQuery) -> StoreResult<(i64, Vec<Prospect>)> {
        let c = self.pool.get().await?;
        page(&*c, &lists::prospects_paged(&DIALECT, account_id, &q), (q.limit, q.offset), rows::prospect).await
    }

    async fn delete_prospects(&self, account_id: i64, ids: Vec<i64>) -> StoreResult<i64> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let emails = "SELECT id FROM emails WHERE account_id = $1 AND prospect_id = ANY($2)";
        forget_emails(&tx, account_id, emails, &ids).await?;
        let sql = "DELETE FROM prospects WHERE account_id = $1 AND id = ANY($2)";
        let n = exec(&tx, sql, &[&account_id, &ids]).await?;
        tx.commit().await.map_err(pg)?;
        Ok(n as i64)
    }

    async fn stop_followups(&self, account_id: i64, email: &EmailAddress) -> StoreResult<bool> {
        let c = self.pool.get().await?;
        let Some(id) = prospect_id_by_email(&*c, account_id, email).await? else { return Ok(false) };
        exec(&*c, "UPDATE enrollments SET stopped = TRUE WHERE prospect_id = $1", &[&id]).await?;
        Ok(true)
    }

    async fn begin_import(&self, account_id: i64, campaign_id: Option<i64>) -> StoreResult<i64> {
        let c = self.pool.get().await?;
        let sql =
            "INSERT INTO imports (account_id, campaign_id, state, touched_at) VALUES ($1, $2, $3, $4) RETURNING id";
        let state = ImportState::Running.as_str();
        let id = one(&*c, sql, &[&account_id, &campaign_id, &state, &now_millis()], rows::int).await?;
        id.ok_or_else(|| StoreError::Other("an insert returned no id".into()))
    }

    async fn end_import(&self, id: i64, to: ImportState) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let sql = "UPDATE imports SET state = $2 WHERE id = $1 AND state = 'running'";
        match exec(&*c, sql, &[&id, &to.as_str()]).await? {
            0 => Err(StoreError::Conflict(format!("import {id} no longer runs: it was abandoned, and is undone"))),
            _ => Ok(()),
        }
    }

    async fn tidy_import(&self, id: i64) -> StoreResult<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // Locked: two nodes tidying the same import take turns.
        let sql = format!("SELECT {IMPORT_COLS} FROM imports WHERE id = $1 FOR UPDATE");
        let Some((account_id, campaign_id, state)) = one(&tx, &sql, &[&id], rows::import).await? else {
            return Ok(true);
        };
        let tidied = match state {
            ImportState::Running => return Err(StoreError::Conflict(format!("import {id} still runs"))),
            ImportState::Kept => {
                let sql = "DELETE FROM import_undo WHERE id IN \
                           (SELECT id FROM import_undo WHERE import_id = $1 ORDER BY id DESC LIMIT $2)";
                exec(&tx, sql, &[&id, &TIDY_STEP]).await?
            }
            ImportState::Undoing => {
                let sql = format!("SELECT {UNDO_COLS} FROM import_undo WHERE import_id = $1 ORDER BY id DESC LIMIT $2");
                let mut entries = all(&tx, &sql, &[&id, &TIDY_STEP], rows::undo_entry).await?;
                entries.truncate(step_len(entries.iter().map(|(_, e)| e)));
                undo(&tx, account_id, campaign_id, &entries).await?;
                let oldest = entries.last().map_or(i64::MAX, |(seq, _)| *seq);
                exec(&tx, "DELETE FROM import_undo WHERE import_id = $1 AND id >= $2", &[&id, &oldest]).await?
            }
        };
        if tidied == 0 {
            exec(&tx, "DELETE FROM imports WHERE id = $1", &[&id]).await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(tidied == 0)
    }

    async fn ended_imports(&self, abandoned_before: i64) -> StoreResult<Vec<i64>> {
        let c = self.pool.get().await?;
        let sql = "UPDATE imports SET state = 'undoing' WHERE state = 'running' AND touched_at < $1";
        exec(&*c, sql, &[&abandoned_before]).await?;
        all(&*c, "SELECT id FROM imports WHERE state <> 'running' ORDER BY id", &[], rows::int).await
    }
}

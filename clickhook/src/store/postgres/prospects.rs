//! Prospects on PostgreSQL. An upsert writes a whole chunk in a few statements, whatever its
//! size: one read of the prospects it names, ids for the new ones from the sequence, then one
//! INSERT and one UPDATE of arrays.

use async_trait::async_trait;

use super::clicks::forget_emails;
use super::pool::{all, exec, one, page, pg, Param, DIALECT, Q};
use super::PgStore;
use crate::domain::prospect::{UpsertPlan, Upserted};
use crate::domain::{now_millis, EmailAddress, Prospect};
use crate::store::error::{StoreError, StoreResult};
use crate::store::lists;
use crate::store::parts::ProspectStore;
use crate::store::records::{ProspectQuery, UpsertProspects};
use crate::store::rows::{self, prospect_values, prospect_write_cols, PROSPECT_COLS};

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
        let plan = UpsertPlan::new(account_id, &req.prospects, existing, req.update, req.imported.as_deref());
        let now = now_millis();
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
            let cols = Columns::of(&plan.changed, &changed_ids)?;
            let mut params = cols.params();
            params.push(&now);
            let set: Vec<String> = prospect_write_cols().iter().map(|c| format!("{c} = u.{c}")).collect();
            let sql = format!(
                "UPDATE prospects p SET {set}, updated_at = ${t} FROM {unnest} WHERE p.id = u.id",
                set = set.join(", "),
                t = params.len(),
                unnest = Columns::unnest(),
            );
            exec(&tx, &sql, &params).await?;
        }
        let out = plan.outcomes(&ids);
        if let Some(cid) = req.campaign_id {
            let ids: Vec<i64> = out.iter().map(|o| o.id()).collect();
            let sql = "INSERT INTO enrollments (campaign_id, prospect_id, created_at) \
                       SELECT $1, x, $3 FROM unnest($2::bigint[]) WITH ORDINALITY AS t(x, n) ORDER BY n ON CONFLICT DO NOTHING";
            exec(&tx, sql, &[&cid, &ids, &now]).await?;
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
}

//! Accounts, API keys and link-signing keys on PostgreSQL.

use async_trait::async_trait;

use super::pool::{all, exec, numbered, one, pg, Q};
use super::PgStore;
use crate::domain::{now_millis, Account, AccountPatch, ClickFilter, NewAccount};
use crate::store::error::{StoreError, StoreResult};
use crate::store::parts::AccountStore;
use crate::store::records::{ApiKeyInfo, LinkKey};
use crate::store::rows::{self, to_json, ACCOUNT_COLS, API_KEY_COLS};
use crate::store::sessions_sql;

pub(super) async fn load_account(c: &impl Q, id: i64) -> StoreResult<Account> {
    let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.id = $1");
    one(c, &sql, &[&id], rows::account).await?.ok_or(StoreError::NotFound("account"))
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let c = self.pool.get().await?;
        let filter = to_json(&ClickFilter::default())?;
        let now = now_millis();
        let id: i64 = match new.id {
            Some(id) => {
                let sql =
                    "INSERT INTO accounts (id, name, timezone, click_filter, created_at) VALUES ($1, $2, $3, $4, $5) \
                           RETURNING id";
                let r =
                    c.query_one(sql, &[&id, &new.name, &new.timezone, &filter, &now]).await.map_err(|e| {
                        match pg(e) {
                            StoreError::Conflict(_) => StoreError::Conflict(format!("account {id} already exists")),
                            other => other,
                        }
                    })?;
                // Explicit ids must not collide with the sequence later.
                let sql = "SELECT setval(pg_get_serial_sequence('accounts', 'id'), (SELECT max(id) FROM accounts))";
                exec(&*c, sql, &[]).await?;
                r.get(0)
            }
            None => {
                let sql = "INSERT INTO accounts (name, timezone, click_filter, created_at) VALUES ($1, $2, $3, $4) RETURNING id";
                c.query_one(sql, &[&new.name, &new.timezone, &filter, &now]).await.map_err(pg)?.get(0)
            }
        };
        load_account(&*c, id).await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let c = self.pool.get().await?;
        all(&*c, &format!("SELECT {ACCOUNT_COLS} FROM accounts a ORDER BY a.id"), &[], rows::account).await
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        load_account(&*self.pool.get().await?, id).await
    }

    async fn update_account(&self, id: i64, patch: AccountPatch) -> StoreResult<Account> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let a = patch.apply(load_account(&tx, id).await?);
        let (labels, filter) = (to_json(&a.snippet_labels)?, to_json(&a.click_filter)?);
        let sql = "UPDATE accounts SET name=$2, timezone=$3, snippet_labels=$4, click_filter=$5 WHERE id=$1";
        exec(&tx, sql, &[&id, &a.name, &a.timezone, &labels, &filter]).await?;
        tx.commit().await.map_err(pg)?;
        Ok(a)
    }

    async fn add_api_key(&self, account_id: i64, key_hash: String, prefix: String) -> StoreResult<ApiKeyInfo> {
        let c = self.pool.get().await?;
        load_account(&*c, account_id).await?;
        let now = now_millis();
        let sql =
            "INSERT INTO api_keys (account_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4) RETURNING id";
        let id: i64 = c.query_one(sql, &[&account_id, &key_hash, &prefix, &now]).await.map_err(pg)?.get(0);
        Ok(ApiKeyInfo { id, account_id, prefix, created_at: now, revoked_at: None })
    }

    async fn revoke_api_key(&self, account_id: i64, prefix: &str) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let sql = "UPDATE api_keys SET revoked_at = $3 WHERE account_id = $1 AND prefix = $2 AND revoked_at IS NULL";
        if exec(&tx, sql, &[&account_id, &prefix, &now_millis()]).await? == 0 {
            return Err(StoreError::NotFound("API key"));
        }
        exec(&tx, &numbered(sessions_sql::END_KEY_SESSIONS), &[&account_id, &prefix]).await?;
        tx.commit().await.map_err(pg)
    }

    async fn list_api_keys(&self, account_id: i64) -> StoreResult<Vec<ApiKeyInfo>> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {API_KEY_COLS} FROM api_keys WHERE account_id = $1 ORDER BY id");
        all(&*c, &sql, &[&account_id], rows::api_key).await
    }

    async fn account_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Account>> {
        let c = self.pool.get().await?;
        let sql = format!(
            "SELECT {ACCOUNT_COLS} FROM accounts a JOIN api_keys k ON k.account_id = a.id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
        );
        one(&*c, &sql, &[&key_hash], rows::account).await
    }

    async fn link_keys(&self) -> StoreResult<Vec<LinkKey>> {
        let c = self.pool.get().await?;
        all(&*c, "SELECT id, secret, created_at FROM link_keys ORDER BY id", &[], rows::link_key).await
    }

    async fn link_keys_or_first(&self, first: Vec<u8>) -> StoreResult<Vec<LinkKey>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // Taken by one node at a time, and readers still read.
        exec(&tx, "LOCK TABLE link_keys IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
        let sql = "INSERT INTO link_keys (secret, created_at) \
                   SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM link_keys)";
        exec(&tx, sql, &[&first, &now_millis()]).await?;
        let keys = all(&tx, "SELECT id, secret, created_at FROM link_keys ORDER BY id", &[], rows::link_key).await?;
        tx.commit().await.map_err(pg)?;
        Ok(keys)
    }

    async fn add_link_key(&self, secret: Vec<u8>) -> StoreResult<LinkKey> {
        let c = self.pool.get().await?;
        let now = now_millis();
        let sql = "INSERT INTO link_keys (secret, created_at) VALUES ($1, $2) RETURNING id";
        let id: i64 = c.query_one(sql, &[&secret, &now]).await.map_err(pg)?.get(0);
        Ok(LinkKey { id, secret, created_at: now })
    }

    async fn remove_link_key(&self, id: i64) -> StoreResult<()> {
        let c = self.pool.get().await?;
        match exec(&*c, "DELETE FROM link_keys WHERE id = $1", &[&id]).await? {
            0 => Err(StoreError::NotFound("link key")),
            _ => Ok(()),
        }
    }
}

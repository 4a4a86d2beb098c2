//! Accounts, API keys and link-signing keys on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::sql::{all, exec, exists, one};
use super::SqliteStore;
use crate::domain::{now_millis, Account, AccountPatch, ClickFilter, NewAccount};
use crate::store::error::{StoreError, StoreResult};
use crate::store::parts::AccountStore;
use crate::store::records::{ApiKeyInfo, LinkKey};
use crate::store::rows::{self, to_json, ACCOUNT_COLS, API_KEY_COLS};
use crate::store::sessions_sql;

pub(super) fn load_account(conn: &Connection, id: i64) -> StoreResult<Account> {
    one(conn, &format!("SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.id = ?1"), [id], rows::account)?
        .ok_or(StoreError::NotFound("account"))
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        self.write(move |conn| {
            if let Some(id) = new.id {
                if exists(conn, "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)", [id])? {
                    return Err(StoreError::Conflict(format!("account {id} already exists")));
                }
            }
            exec(
                conn,
                "INSERT INTO accounts (id, name, timezone, click_filter, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new.id, new.name, new.timezone, to_json(&ClickFilter::default())?, now_millis()],
            )?;
            load_account(conn, conn.last_insert_rowid())
        })
        .await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.read(|conn| all(conn, &format!("SELECT {ACCOUNT_COLS} FROM accounts a ORDER BY a.id"), [], rows::account))
            .await
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        self.read(move |conn| load_account(conn, id)).await
    }

    async fn update_account(&self, id: i64, patch: AccountPatch) -> StoreResult<Account> {
        self.write(move |conn| {
            let a = patch.apply(load_account(conn, id)?);
            exec(
                conn,
                "UPDATE accounts SET name=?2, timezone=?3, snippet_labels=?4, click_filter=?5 WHERE id=?1",
                params![id, a.name, a.timezone, to_json(&a.snippet_labels)?, to_json(&a.click_filter)?],
            )?;
            Ok(a)
        })
        .await
    }

    async fn add_api_key(&self, account_id: i64, key_hash: String, prefix: String) -> StoreResult<ApiKeyInfo> {
        self.write(move |conn| {
            load_account(conn, account_id)?;
            let now = now_millis();
            exec(
                conn,
                "INSERT INTO api_keys (account_id, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![account_id, key_hash, prefix, now],
            )?;
            Ok(ApiKeyInfo { id: conn.last_insert_rowid(), account_id, prefix, created_at: now, revoked_at: None })
        })
        .await
    }

    async fn revoke_api_key(&self, account_id: i64, prefix: &str) -> StoreResult<()> {
        let prefix = prefix.to_string();
        self.write(move |conn| {
            let sql =
                "UPDATE api_keys SET revoked_at = ?3 WHERE account_id = ?1 AND prefix = ?2 AND revoked_at IS NULL";
            if exec(conn, sql, params![account_id, prefix, now_millis()])? == 0 {
                return Err(StoreError::NotFound("API key"));
            }
            exec(conn, sessions_sql::END_KEY_SESSIONS, params![account_id, prefix]).map(drop)
        })
        .await
    }

    async fn list_api_keys(&self, account_id: i64) -> StoreResult<Vec<ApiKeyInfo>> {
        self.read(move |conn| {
            let sql = format!("SELECT {API_KEY_COLS} FROM api_keys WHERE account_id = ?1 ORDER BY id");
            all(conn, &sql, [account_id], rows::api_key)
        })
        .await
    }

    async fn account_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Account>> {
        let key_hash = key_hash.to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {ACCOUNT_COLS} FROM accounts a JOIN api_keys k ON k.account_id = a.id \
                 WHERE k.key_hash = ?1 AND k.revoked_at IS NULL"
            );
            one(conn, &sql, [key_hash], rows::account)
        })
        .await
    }

    async fn link_keys(&self) -> StoreResult<Vec<LinkKey>> {
        self.read(|conn| all(conn, "SELECT id, secret, created_at FROM link_keys ORDER BY id", [], rows::link_key))
            .await
    }

    async fn link_keys_or_first(&self, first: Vec<u8>) -> StoreResult<Vec<LinkKey>> {
        self.write(move |conn| {
            let sql = "INSERT INTO link_keys (secret, created_at) \
                       SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM link_keys)";
            exec(conn, sql, params![first, now_millis()])?;
            all(conn, "SELECT id, secret, created_at FROM link_keys ORDER BY id", [], rows::link_key)
        })
        .await
    }

    async fn add_link_key(&self, secret: Vec<u8>) -> StoreResult<LinkKey> {
        self.write(move |conn| {
            let now = now_millis();
            exec(conn, "INSERT INTO link_keys (secret, created_at) VALUES (?1, ?2)", params![secret, now])?;
            Ok(LinkKey { id: conn.last_insert_rowid(), secret, created_at: now })
        })
        .await
    }

    async fn remove_link_key(&self, id: i64) -> StoreResult<()> {
        self.write(move |conn| match exec(conn, "DELETE FROM link_keys WHERE id = ?1", [id])? {
            0 => Err(StoreError::NotFound("link key")),
            _ => Ok(()),
        })
        .await
    }
}

//! Dashboard sign-ins on SQLite (`store::sessions_sql`).

use async_trait::async_trait;
use rusqlite::params;

use super::accounts::load_account;
use super::sql::{exec, one};
use super::SqliteStore;
use crate::domain::Millis;
use crate::store::error::StoreResult;
use crate::store::parts::SessionStore;
use crate::store::records::{NewSession, SessionRecord, SignInWith};
use crate::store::rows::int;
use crate::store::sessions_sql as sql;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn add_login_link(&self, account_id: i64, link_hash: String, expires_at: Millis) -> StoreResult<()> {
        self.write(move |conn| {
            load_account(conn, account_id)?;
            exec(conn, sql::ADD_LINK, params![link_hash, account_id, expires_at]).map(drop)
        })
        .await
    }

    async fn sign_in(&self, with: SignInWith, s: NewSession) -> StoreResult<Option<i64>> {
        self.write(move |conn| {
            exec(conn, sql::PURGE_SESSIONS, [s.now])?;
            exec(conn, sql::PURGE_LINKS, [s.now])?;
            match with {
                SignInWith::Key(key_hash) => {
                    one(conn, sql::SESSION_FOR_KEY, params![s.token_hash, s.csrf, s.now, s.expires_at, key_hash], int)
                }
                SignInWith::Link(link_hash) => {
                    let Some(account) = one(conn, sql::TAKE_LINK, params![link_hash, s.now], int)? else {
                        return Ok(None);
                    };
                    exec(conn, sql::SESSION_FOR_LINK, params![s.token_hash, account, s.csrf, s.now, s.expires_at])?;
                    Ok(Some(account))
                }
            }
        })
        .await
    }

    async fn session(&self, token_hash: &str, now: Millis) -> StoreResult<Option<SessionRecord>> {
        let token_hash = token_hash.to_string();
        self.read(move |conn| {
            let found = one(conn, sql::SESSION, params![token_hash, now], |r| Ok((int(r)?, r.text(1)?)))?;
            let Some((account_id, csrf)) = found else { return Ok(None) };
            Ok(Some(SessionRecord { account: load_account(conn, account_id)?, csrf }))
        })
        .await
    }

    async fn end_session(&self, token_hash: &str) -> StoreResult<()> {
        let token_hash = token_hash.to_string();
        self.write(move |conn| exec(conn, sql::END_SESSION, [token_hash]).map(drop)).await
    }
}

//! Dashboard sign-ins on PostgreSQL (`store::sessions_sql`).

use async_trait::async_trait;

use super::accounts::load_account;
use super::pool::{exec, numbered, one, pg};
use super::PgStore;
use crate::domain::Millis;
use crate::store::error::StoreResult;
use crate::store::parts::SessionStore;
use crate::store::records::{NewSession, SessionRecord, SignInWith};
use crate::store::rows::int;
use crate::store::sessions_sql as sql;

#[async_trait]
impl SessionStore for PgStore {
    async fn add_login_link(&self, account_id: i64, link_hash: String, expires_at: Millis) -> StoreResult<()> {
        let c = self.pool.get().await?;
        load_account(&*c, account_id).await?;
        exec(&*c, &numbered(sql::ADD_LINK), &[&link_hash, &account_id, &expires_at]).await.map(drop)
    }

    async fn sign_in(&self, with: SignInWith, s: NewSession) -> StoreResult<Option<i64>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        exec(&tx, &numbered(sql::PURGE_SESSIONS), &[&s.now]).await?;
        exec(&tx, &numbered(sql::PURGE_LINKS), &[&s.now]).await?;
        let account = match with {
            SignInWith::Key(key_hash) => {
                let q = numbered(sql::SESSION_FOR_KEY);
                one(&tx, &q, &[&s.token_hash, &s.csrf, &s.now, &s.expires_at, &key_hash], int).await?
            }
            SignInWith::Link(link_hash) => match one(&tx, &numbered(sql::TAKE_LINK), &[&link_hash, &s.now], int).await?
            {
                Some(account) => {
                    let q = numbered(sql::SESSION_FOR_LINK);
                    exec(&tx, &q, &[&s.token_hash, &account, &s.csrf, &s.now, &s.expires_at]).await?;
                    Some(account)
                }
                None => None,
            },
        };
        tx.commit().await.map_err(pg)?;
        Ok(account)
    }

    async fn session(&self, token_hash: &str, now: Millis) -> StoreResult<Option<SessionRecord>> {
        let c = self.pool.get().await?;
        let found = one(&*c, &numbered(sql::SESSION), &[&token_hash, &now], |r| Ok((int(r)?, r.text(1)?))).await?;
        let Some((account_id, csrf)) = found else { return Ok(None) };
        Ok(Some(SessionRecord { account: load_account(&*c, account_id).await?, csrf }))
    }

    async fn end_session(&self, token_hash: &str) -> StoreResult<()> {
        let c = self.pool.get().await?;
        exec(&*c, &numbered(sql::END_SESSION), &[&token_hash]).await.map(drop)
    }
}

//! Accounts' tracking domains on PostgreSQL.

use async_trait::async_trait;

use super::pool::{all, exec, one, pg, Q};
use super::PgStore;
use crate::domain::now_millis;
use crate::domain::tracking_domain::{DomainAdded, DomainName, TrackingDomain, MAX_DOMAINS_PER_ACCOUNT};
use crate::domain::Millis;
use crate::store::error::{StoreError, StoreResult};
use crate::store::parts::DomainStore;
use crate::store::rows::{self, TRACKING_DOMAIN_COLS};

async fn load(c: &impl Q, account_id: i64, id: i64) -> StoreResult<TrackingDomain> {
    let sql = format!("SELECT {TRACKING_DOMAIN_COLS} FROM tracking_domains WHERE id = $1 AND account_id = $2");
    one(c, &sql, &[&id, &account_id], rows::tracking_domain).await?.ok_or(StoreError::NotFound("tracking domain"))
}

#[async_trait]
impl DomainStore for PgStore {
    async fn add_tracking_domain(&self, account_id: i64, domain: DomainName) -> StoreResult<DomainAdded> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // One account's adds queue behind each other, so that its count holds until commit.
        exec(&tx, "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&account_id]).await?;
        let taken = "SELECT EXISTS (SELECT 1 FROM tracking_domains WHERE domain = $1)";
        if tx.query_one(taken, &[&domain.as_str()]).await.map_err(pg)?.get::<_, bool>(0) {
            return Ok(DomainAdded::Taken);
        }
        let count = "SELECT count(*) FROM tracking_domains WHERE account_id = $1";
        if tx.query_one(count, &[&account_id]).await.map_err(pg)?.get::<_, i64>(0) >= MAX_DOMAINS_PER_ACCOUNT as i64 {
            return Ok(DomainAdded::TooMany);
        }
        let sql = format!(
            "INSERT INTO tracking_domains (account_id, domain, created_at) VALUES ($1, $2, $3) \
             RETURNING {TRACKING_DOMAIN_COLS}"
        );
        let added = match one(&tx, &sql, &[&account_id, &domain.as_str(), &now_millis()], rows::tracking_domain).await {
            // Another account added it since we looked.
            Err(StoreError::Conflict(_)) => return Ok(DomainAdded::Taken),
            other => other?.ok_or(StoreError::NotFound("tracking domain"))?,
        };
        tx.commit().await.map_err(pg)?;
        Ok(DomainAdded::Created(added))
    }

    async fn tracking_domains(&self, account_id: i64) -> StoreResult<Vec<TrackingDomain>> {
        let c = self.pool.get().await?;
        let sql = format!("SELECT {TRACKING_DOMAIN_COLS} FROM tracking_domains WHERE account_id = $1 ORDER BY id");
        all(&*c, &sql, &[&account_id], rows::tracking_domain).await
    }

    async fn tracking_domain(&self, account_id: i64, id: i64) -> StoreResult<TrackingDomain> {
        load(&*self.pool.get().await?, account_id, id).await
    }

    async fn set_default_domain(&self, account_id: i64, id: i64) -> StoreResult<TrackingDomain> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        load(&tx, account_id, id).await?;
        exec(&tx, "UPDATE tracking_domains SET is_default = (id = $2) WHERE account_id = $1", &[&account_id, &id])
            .await?;
        let d = load(&tx, account_id, id).await?;
        tx.commit().await.map_err(pg)?;
        Ok(d)
    }

    async fn delete_tracking_domain(&self, account_id: i64, id: i64) -> StoreResult<()> {
        let c = self.pool.get().await?;
        match exec(&*c, "DELETE FROM tracking_domains WHERE id = $1 AND account_id = $2", &[&id, &account_id]).await? {
            0 => Err(StoreError::NotFound("tracking domain")),
            _ => Ok(()),
        }
    }

    async fn record_domain_check(&self, d: &TrackingDomain) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let sql = "UPDATE tracking_domains SET status = $3, checked_at = $4, verified_at = $5, failures = $6, \
                   last_error = $7 WHERE id = $1 AND account_id = $2";
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&d.id, &d.account_id, &d.status.as_str(), &d.checked_at, &d.verified_at, &d.failures, &d.last_error];
        match exec(&*c, sql, &args).await? {
            0 => Err(StoreError::NotFound("tracking domain")),
            _ => Ok(()),
        }
    }

    async fn domains_due(&self, due: Millis, now: Millis, limit: i64) -> StoreResult<Vec<TrackingDomain>> {
        let c = self.pool.get().await?;
        let sql = format!(
            "UPDATE tracking_domains SET checked_at = $2 WHERE id IN (SELECT id FROM tracking_domains \
             WHERE coalesce(checked_at, 0) < $1 ORDER BY coalesce(checked_at, 0), id LIMIT $3 \
             FOR UPDATE SKIP LOCKED) RETURNING {TRACKING_DOMAIN_COLS}"
        );
        all(&*c, &sql, &[&due, &now, &limit], rows::tracking_domain).await
    }

    async fn verified_domains(&self) -> StoreResult<Vec<(String, i64)>> {
        let c = self.pool.get().await?;
        let sql = "SELECT domain, account_id FROM tracking_domains WHERE status = 'verified'";
        all(&*c, sql, &[], |r| Ok((r.text(0)?, r.int(1)?))).await
    }
}

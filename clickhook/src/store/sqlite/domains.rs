//! Accounts' tracking domains on SQLite.

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::sql::{all, exec, exists, one, value};
use super::SqliteStore;
use crate::domain::now_millis;
use crate::domain::tracking_domain::{DomainAdded, DomainName, TrackingDomain, MAX_DOMAINS_PER_ACCOUNT};
use crate::domain::Millis;
use crate::store::error::{StoreError, StoreResult};
use crate::store::parts::DomainStore;
use crate::store::rows::{self, TRACKING_DOMAIN_COLS};

fn load(conn: &Connection, account_id: i64, id: i64) -> StoreResult<TrackingDomain> {
    let sql = format!("SELECT {TRACKING_DOMAIN_COLS} FROM tracking_domains WHERE id = ?1 AND account_id = ?2");
    one(conn, &sql, [id, account_id], rows::tracking_domain)?.ok_or(StoreError::NotFound("tracking domain"))
}

#[async_trait]
impl DomainStore for SqliteStore {
    async fn add_tracking_domain(&self, account_id: i64, domain: DomainName) -> StoreResult<DomainAdded> {
        self.write(move |conn| {
            if exists(conn, "SELECT EXISTS (SELECT 1 FROM tracking_domains WHERE domain = ?1)", [domain.as_str()])? {
                return Ok(DomainAdded::Taken);
            }
            let count: i64 = value(conn, "SELECT count(*) FROM tracking_domains WHERE account_id = ?1", [account_id])?;
            if count >= MAX_DOMAINS_PER_ACCOUNT as i64 {
                return Ok(DomainAdded::TooMany);
            }
            exec(
                conn,
                "INSERT INTO tracking_domains (account_id, domain, created_at) VALUES (?1, ?2, ?3)",
                params![account_id, domain.as_str(), now_millis()],
            )?;
            load(conn, account_id, conn.last_insert_rowid()).map(DomainAdded::Created)
        })
        .await
    }

    async fn tracking_domains(&self, account_id: i64) -> StoreResult<Vec<TrackingDomain>> {
        self.read(move |conn| {
            let sql = format!("SELECT {TRACKING_DOMAIN_COLS} FROM tracking_domains WHERE account_id = ?1 ORDER BY id");
            all(conn, &sql, [account_id], rows::tracking_domain)
        })
        .await
    }

    async fn tracking_domain(&self, account_id: i64, id: i64) -> StoreResult<TrackingDomain> {
        self.read(move |conn| load(conn, account_id, id)).await
    }

    async fn set_default_domain(&self, account_id: i64, id: i64) -> StoreResult<TrackingDomain> {
        self.write(move |conn| {
            load(conn, account_id, id)?;
            exec(conn, "UPDATE tracking_domains SET is_default = (id = ?2) WHERE account_id = ?1", [account_id, id])?;
            load(conn, account_id, id)
        })
        .await
    }

    async fn delete_tracking_domain(&self, account_id: i64, id: i64) -> StoreResult<()> {
        self.write(move |conn| {
            match exec(conn, "DELETE FROM tracking_domains WHERE id = ?1 AND account_id = ?2", [id, account_id])? {
                0 => Err(StoreError::NotFound("tracking domain")),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn record_domain_check(&self, d: &TrackingDomain) -> StoreResult<()> {
        let d = d.clone();
        self.write(move |conn| {
            let sql = "UPDATE tracking_domains SET status = ?3, checked_at = ?4, verified_at = ?5, failures = ?6, \
                       last_error = ?7 WHERE id = ?1 AND account_id = ?2";
            let args =
                params![d.id, d.account_id, d.status.as_str(), d.checked_at, d.verified_at, d.failures, d.last_error];
            match exec(conn, sql, args)? {
                0 => Err(StoreError::NotFound("tracking domain")),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn domains_due(&self, due: Millis, now: Millis, limit: i64) -> StoreResult<Vec<TrackingDomain>> {
        self.write(move |conn| {
            let sql = format!(
                "UPDATE tracking_domains SET checked_at = ?2 WHERE id IN (SELECT id FROM tracking_domains \
                 WHERE coalesce(checked_at, 0) < ?1 ORDER BY coalesce(checked_at, 0), id LIMIT ?3) \
                 RETURNING {TRACKING_DOMAIN_COLS}"
            );
            all(conn, &sql, [due, now, limit], rows::tracking_domain)
        })
        .await
    }

    async fn verified_domains(&self) -> StoreResult<Vec<(String, i64)>> {
        self.read(|conn| {
            let sql = "SELECT domain, account_id FROM tracking_domains WHERE status = 'verified'";
            all(conn, sql, [], |r| Ok((r.text(0)?, r.int(1)?)))
        })
        .await
    }
}

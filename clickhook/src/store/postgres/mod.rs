//! PostgreSQL: the same store for several nodes sharing one database.
//!
//! A small pool of connections serves reads and transactions ([`pool`]). Clicks keep group
//! commit on a connection of their own ([`click_writer`]), each group one row that settling
//! takes into `clicks`. Deliveries are leased with `FOR UPDATE SKIP LOCKED`, so a batch is in
//! flight on one node at a time; events are inserted under a transaction-scoped advisory lock,
//! so their ids commit in order and a subscription's cursor never passes an event not yet
//! visible. One node settles at a time: the one holding a session advisory lock. The other
//! files hold the SQL of each part of the store.

mod accounts;
mod campaigns;
mod click_writer;
mod clicks;
mod common;
mod delivery;
mod domains;
mod pool;
mod prospects;
mod sessions;
mod stats;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, Semaphore};
use tokio_postgres::Client;

use super::error::StoreResult;
use super::parts::Store;
use super::schedule::{ClickAdmission, LastClickCommit, Scheduling};
use super::schema;
use click_writer::ClickWaiter;
use pool::{pg, Pool};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_delivery.sql"),
    include_str!("../../../migrations/postgres/0003_click_groups.sql"),
    include_str!("../../../migrations/postgres/0004_click_groups_inline.sql"),
    include_str!("../../../migrations/postgres/0005_deletions.sql"),
    include_str!("../../../migrations/postgres/0006_imports.sql"),
    include_str!("../../../migrations/postgres/0007_retention.sql"),
    include_str!("../../../migrations/postgres/0008_tracking_domains.sql"),
    include_str!("../../../migrations/postgres/0009_stats.sql"),
    include_str!("../../../migrations/postgres/0010_app_sessions.sql"),
    include_str!("../../../migrations/postgres/0011_history_by_time.sql"),
];

/// Advisory locks are per database, not per schema: their keys include the schema, so that
/// clickhooks in different schemas of one database (test runs) never wait for each other.
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('clickhook.migrate.' || $1::text))";
const SETTLER_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext('clickhook.settler.' || current_schema()))";

pub struct PgStore {
    pool: Arc<Pool>,
    clicks: mpsc::UnboundedSender<ClickWaiter>,
    /// When the last group of clicks committed: background work waits while they flow.
    last_click_commit: Arc<LastClickCommit>,
    /// Holds clicks back while settling is behind.
    admission: Arc<ClickAdmission>,
    settler: tokio::sync::Mutex<SettlerLock>,
}

/// The session whose advisory lock makes this node the settler. PostgreSQL releases the lock
/// when the session ends, so a node that dies hands the role on by dying.
#[derive(Default)]
struct SettlerLock {
    client: Option<Client>,
    held: bool,
    turn: u64,
}

/// Splits our own `schema=NAME` parameter off a postgres URL (tests give each run a schema).
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), None) };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_string());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    (url, schema)
}

impl PgStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let (url, schema) = split_schema(url);
        if let Some(s) = &schema {
            if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                anyhow::bail!("schema names are letters, digits and _");
            }
        }
        let mut config: tokio_postgres::Config = url.parse()?;
        // A database that does not answer fails requests within seconds rather than holding them.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let pool = Arc::new(Pool {
            config,
            schema: schema.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(16),
        });
        {
            let mut c = pool.get().await.map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL: {e}"))?;
            migrate(&mut c, schema.as_deref()).await?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let last_click_commit = Arc::new(LastClickCommit::default());
        let admission = Arc::new(ClickAdmission::default());
        tokio::spawn(click_writer::click_writer(pool.clone(), rx, last_click_commit.clone(), admission.clone()));
        Ok(PgStore { pool, clicks: tx, last_click_commit, admission, settler: Default::default() })
    }
}

/// The version that added statistics: upgrading to it counts what was there.
const STATS_VERSION: usize = 9;

/// Nodes starting at once take turns: the first applies what is missing, the others find it done.
async fn migrate(c: &mut Client, schema: Option<&str>) -> anyhow::Result<()> {
    let tx = c.transaction().await?;
    tx.execute(MIGRATION_LOCK, &[&schema.unwrap_or("public")]).await?;
    if let Some(s) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"")).await?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)").await?;
    let version: i64 = tx.query_opt("SELECT version FROM schema_version", &[]).await?.map(|r| r.get(0)).unwrap_or(0);
    for i in schema::pending(version, MIGRATIONS.len())? {
        tx.batch_execute(MIGRATIONS[i]).await?;
        if i + 1 == STATS_VERSION {
            stats::backfill(&tx).await?;
        }
        tracing::info!(version = i + 1, "applied PostgreSQL migration");
    }
    tx.execute("DELETE FROM schema_version", &[]).await?;
    tx.execute("INSERT INTO schema_version VALUES ($1)", &[&(MIGRATIONS.len() as i64)]).await?;
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Scheduling for PgStore {
    fn background_may_starve(&self) -> bool {
        false
    }

    fn clicks_flowing(&self) -> bool {
        self.last_click_commit.flowing()
    }

    fn settle_urgently(&self, urgent: bool) {
        self.admission.set_urgent(urgent);
    }

    fn settled(&self, clicks: usize) {
        self.admission.settled(clicks);
    }

    async fn settler_turn(&self) -> StoreResult<Option<u64>> {
        let mut lock = self.settler.lock().await;
        if lock.client.as_ref().is_some_and(|c| c.is_closed()) {
            // The session (and with it the lock) is gone: another node may settle by now.
            lock.client = None;
            lock.held = false;
        }
        if lock.held {
            return Ok(Some(lock.turn));
        }
        if lock.client.is_none() {
            lock.client = Some(self.pool.connect().await?);
        }
        let client = lock.client.as_ref().expect("connected above");
        if client.query_one(SETTLER_LOCK, &[]).await.map_err(pg)?.get::<_, bool>(0) {
            lock.held = true;
            lock.turn += 1;
            return Ok(Some(lock.turn));
        }
        Ok(None)
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// With autovacuum off (a server's choice), space freed by pruning and by the click
    /// path's own churn (groups taken into `clicks`, settling's memory) would never be reused
    /// and the database would grow forever: the tables that churn are vacuumed here instead.
    async fn reclaim(&self) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let on: String = c.query_one("SELECT current_setting('autovacuum')", &[]).await.map_err(pg)?.get(0);
        if on == "on" {
            return Ok(());
        }
        c.batch_execute("VACUUM (ANALYZE) click_groups, clicks, email_clicks, events, deliveries, delivery_attempts")
            .await
            .map_err(pg)
    }

    async fn close(&self) {
        // Every click answered was committed first; idle connections close when the store is dropped.
        self.pool.idle.lock().unwrap().clear();
    }
}

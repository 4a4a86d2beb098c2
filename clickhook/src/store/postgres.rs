//! PostgreSQL: the same store for several nodes sharing one database.
//!
//! A small pool of connections serves reads and transactions. Clicks keep group commit: one
//! task gathers what is queued and writes it with one multi-row INSERT (`unnest` of arrays),
//! a few such inserts in flight at once; each caller is answered after its insert committed.
//! Deliveries are leased with `FOR UPDATE SKIP LOCKED`, so a batch is in flight on one node at
//! a time; events are inserted under a transaction-scoped advisory lock, so their ids commit
//! in order and a subscription's cursor never passes an event not yet visible.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use super::*;
use crate::domain::{CampaignStatus, EmailAddress};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_delivery.sql"),
    include_str!("../../migrations/postgres/0003_click_groups.sql"),
    include_str!("../../migrations/postgres/0004_click_groups_inline.sql"),
];

/// Advisory locks are per database, not per schema: their keys include the schema, so that
/// clickhooks in different schemas of one database (test runs) never wait for each other.
/// One serialises migrations across nodes starting at once, the other event inserts (see module doc).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('clickhook.migrate.' || $1::text))";
const EVENT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('clickhook.events.' || current_schema()))";

/// Drives every connection's socket. A runtime of its own: connections are shared by tasks of
/// several runtimes (the API's, the settler's), and must not stall when one of those is busy
/// or gone, or a transaction could sit half-done while holding a lock others wait for.
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres-io")
            .enable_all()
            .build()
            .expect("a runtime for PostgreSQL connections")
    })
}

type Param<'a> = &'a (dyn ToSql + Sync);

fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(db.message().to_string());
        }
        return StoreError::Other(format!("{}: {}", db.code().code(), db.message()));
    }
    // Closed connections, refused connects, I/O: the database is away for now. Anything else
    // (a parameter that does not fit its column, say) is our bug, not an outage.
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Other(e.to_string())
    }
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Other(format!("stored JSON is unreadable: {e}"))
}

struct Pool {
    config: tokio_postgres::Config,
    schema: Option<String>,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a pooled client")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a pooled client")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take().filter(|c| !c.is_closed()) {
            self.pool.idle.lock().unwrap().push(c);
        }
    }
}

impl Pool {
    async fn connect(&self) -> StoreResult<Client> {
        self.connect_on(io_runtime().handle()).await
    }

    /// A new connection whose socket is driven on `runtime`.
    async fn connect_on(&self, runtime: &tokio::runtime::Handle) -> StoreResult<Client> {
        let config = self.config.clone();
        let client = runtime
            .spawn(async move {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("postgres connection ended: {e}");
                    }
                });
                Ok::<_, tokio_postgres::Error>(client)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting: {e}")))?
            .map_err(pg)?;
        // Notices ("already exists, skipping") are not news worth logging.
        let mut setup = String::from("SET client_min_messages TO warning;");
        if let Some(schema) = &self.schema {
            setup.push_str(&format!("SET search_path TO \"{schema}\";"));
        }
        client.batch_execute(&setup).await.map_err(pg)?;
        Ok(client)
    }

    async fn get(&self) -> StoreResult<Conn<'_>> {
        let permit = self.permits.acquire().await.map_err(|_| StoreError::Unavailable("pool closed".into()))?;
        let idle = loop {
            match self.idle.lock().unwrap().pop() {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Conn { pool: self, client: Some(client), _permit: permit })
    }
}

type ClickWaiter = (NewClick, oneshot::Sender<StoreResult<()>>);

pub struct PgStore {
    pool: Arc<Pool>,
    clicks: mpsc::UnboundedSender<ClickWaiter>,
    /// When the last group of clicks committed (ms): background work waits while they flow.
    last_click_commit: Arc<LastClickCommit>,
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

const SETTLER_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext('clickhook.settler.' || current_schema()))";

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
        tokio::spawn(click_writer(pool.clone(), rx, last_click_commit.clone()));
        Ok(PgStore { pool, clicks: tx, last_click_commit, settler: Default::default() })
    }
}

/// Nodes starting at once take turns: the first applies what is missing, the others find it done.
async fn migrate(c: &mut Client, schema: Option<&str>) -> anyhow::Result<()> {
    let tx = c.transaction().await?;
    tx.execute(MIGRATION_LOCK, &[&schema.unwrap_or("public")]).await?;
    if let Some(s) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"")).await?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)").await?;
    let version: i64 = tx.query_opt("SELECT version FROM schema_version", &[]).await?.map(|r| r.get(0)).unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if version > known {
        anyhow::bail!(
            "the database schema is version {version}, newer than this clickhook (which knows up to {known}); \
             run a newer clickhook or restore a backup"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await?;
        tracing::info!(version = i + 1, "applied PostgreSQL migration");
    }
    tx.execute("DELETE FROM schema_version", &[]).await?;
    tx.execute("INSERT INTO schema_version VALUES ($1)", &[&known]).await?;
    tx.commit().await?;
    Ok(())
}

/// At most this many clicks are taken in from their groups by a list request.
const LIST_TAKES_IN: i64 = 10_000;

/// How many group INSERTs may be on the wire at once, pipelined on the click connection.
const CLICK_PIPELINE: usize = 2;

/// A group this big goes on the wire at once; a smaller one waits while another is on the wire,
/// gathering the clicks that arrive meanwhile, and goes when it fills up or that one commits
/// (Nagle's rule, for commits). Each commit costs PostgreSQL ~75 µs of CPU whatever its size,
/// each click in it ~0.8 µs (pgbench, one connection), and under load that CPU is what limits
/// the click path. Measured with 64 connections (bench/click.sh, alternating 10 s runs): groups
/// of 20 and 3.9-4.0 µs of PostgreSQL CPU per click without the rule, 23.5 and 3.1-3.2 µs with
/// 24, throughput up 5-10%; 16 and 32 were in between.
const FULL_GROUP: usize = 24;

/// Most clicks in one group.
const MAX_GROUP: usize = 4096;

/// The connection clicks are written on, with its INSERT prepared once.
struct ClickConn {
    client: Client,
    insert: tokio_postgres::Statement,
}

impl ClickConn {
    async fn open(pool: &Pool) -> StoreResult<Arc<ClickConn>> {
        // Driven where the click writer runs: a hop to another thread per group costs latency,
        // and only the writer uses this connection, so nothing else can stall it.
        let client = pool.connect_on(&tokio::runtime::Handle::current()).await?;
        let insert = client
            .prepare(
                "INSERT INTO click_groups (clicks, account_ids, email_ids, link_nos, ats, heads, ips, user_agents) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await
            .map_err(pg)?;
        Ok(Arc::new(ClickConn { client, insert }))
    }
}

/// Group commit: everything queued goes in one row of `click_groups` (its own transaction;
/// settling turns it into rows of `clicks`, see [`take_in_groups`]). Clicks have a connection
/// of their own, so they never queue behind background work for a pooled one, and the next
/// group is sent while the previous one commits, once it is worth a commit of its own
/// ([`FULL_GROUP`]). Bigger groups beat more of them: each costs PostgreSQL a round of WAL and
/// a flush whatever its size.
async fn click_writer(
    pool: Arc<Pool>,
    mut rx: mpsc::UnboundedReceiver<ClickWaiter>,
    last_commit: Arc<LastClickCommit>,
) {
    let inflight = Arc::new(Semaphore::new(CLICK_PIPELINE));
    let committed = Arc::new(tokio::sync::Notify::new());
    let mut conn: Option<Arc<ClickConn>> = None;
    while let Some(first) = rx.recv().await {
        let permit = inflight.clone().acquire_owned().await.expect("never closed");
        let mut batch = vec![first];
        take_queued(&mut rx, &mut batch);
        // Nagle: while another group is on the wire (we hold a permit, it holds the other),
        // a small group gathers what arrives until it is full or that one has committed.
        while batch.len() < FULL_GROUP && inflight.available_permits() < CLICK_PIPELINE - 1 {
            tokio::select! {
                click = rx.recv() => match click {
                    Some(c) => {
                        batch.push(c);
                        take_queued(&mut rx, &mut batch);
                    }
                    None => break,
                },
                _ = committed.notified() => {}
            }
        }
        let c = match conn.as_ref().filter(|c| !c.client.is_closed()) {
            Some(c) => Ok(c.clone()),
            None => ClickConn::open(&pool).await.inspect(|c| conn = Some(c.clone())),
        };
        let last_commit = last_commit.clone();
        let committed = committed.clone();
        tokio::spawn(async move {
            let result = match c {
                Ok(c) => insert_clicks(&c, &batch).await,
                Err(e) => Err(e),
            };
            drop(permit);
            committed.notify_one();
            last_commit.mark();
            crate::metrics::METRICS.observe_commit(batch.len());
            for (_, tx) in batch {
                let _ = tx.send(result.clone());
            }
        });
    }
}

fn take_queued(rx: &mut mpsc::UnboundedReceiver<ClickWaiter>, batch: &mut Vec<ClickWaiter>) {
    while batch.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(c) => batch.push(c),
            Err(_) => break,
        }
    }
}

async fn insert_clicks(conn: &ClickConn, batch: &[ClickWaiter]) -> StoreResult<()> {
    let n = batch.len();
    let (mut accounts, mut emails, mut links, mut ats) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut heads, mut ips, mut agents) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (c, _) in batch {
        accounts.push(c.account_id);
        emails.push(c.email_id);
        links.push(c.link_no);
        ats.push(c.at);
        heads.push(c.head);
        ips.push(c.ip.as_deref());
        agents.push(c.user_agent.as_str());
    }
    let count = i32::try_from(n).expect("groups are capped at MAX_GROUP clicks");
    let params: [Param; 8] = [&count, &accounts, &emails, &links, &ats, &heads, &ips, &agents];
    conn.client.execute(&conn.insert, &params).await.map_err(pg)?;
    Ok(())
}

/// Moves the oldest groups of answered clicks into `clicks`, a row each in the order they
/// were answered, until about `limit` clicks have moved (whole groups; at least one). A group
/// is deleted by the statement that inserts its clicks, so a click is never in both tables nor
/// in neither. A group another node is taking in is waited for, not skipped: once this returns,
/// every group older than those it took in is in `clicks`, so the settler's judging frontier
/// (the oldest unjudged click it read) cannot pass a click still in a group. Both lock groups in
/// id order, so they cannot deadlock.
async fn take_in_groups(c: &Client, limit: i64) -> StoreResult<u64> {
    c.execute(
        "WITH next AS ( \
             SELECT id FROM (SELECT id, clicks, sum(clicks) OVER (ORDER BY id) AS upto \
                             FROM (SELECT id, clicks FROM click_groups ORDER BY id LIMIT $1 FOR UPDATE) g) s \
             WHERE upto - clicks < $1), \
         taken AS (DELETE FROM click_groups WHERE id IN (SELECT id FROM next) RETURNING *) \
         INSERT INTO clicks (account_id, email_id, link_no, at, head, ip, user_agent) \
         SELECT u.account_id, u.email_id, u.link_no, u.at, u.head, u.ip, u.user_agent \
         FROM taken, unnest(taken.account_ids, taken.email_ids, taken.link_nos, taken.ats, taken.heads, taken.ips, \
                            taken.user_agents) WITH ORDINALITY AS u(account_id, email_id, link_no, at, head, ip, user_agent, n) \
         ORDER BY taken.id, u.n",
        &[&limit],
    )
    .await
    .map_err(pg)
}

/// A transaction whose queries walk indexes in order. Settling reads a bounded slice of the
/// outbox (the first `limit` unjudged or held clicks) and joins each to its link and email.
/// Without fresh statistics (autovacuum off, or not yet run on a table that grew by a million
/// clicks) the planner takes the outbox for a few rows and hashes and sorts all of it instead:
/// measured 270-470 ms a round with 200,000-350,000 clicks waiting, against 9-13 ms this way.
/// The cost must follow the round's size, not the backlog's, whatever the statistics say.
async fn by_index(c: &mut Client) -> StoreResult<tokio_postgres::Transaction<'_>> {
    let tx = c.transaction().await.map_err(pg)?;
    tx.batch_execute(
        "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off",
    )
    .await
    .map_err(pg)?;
    Ok(tx)
}

// ---- row mapping ------------------------------------------------------------------------------

const ACCOUNT_COLS: &str = "id, name, timezone, snippet_labels, click_filter, created_at";

fn account_from(r: &Row) -> StoreResult<Account> {
    Ok(Account {
        id: r.get(0),
        name: r.get(1),
        timezone: r.get(2),
        snippet_labels: serde_json::from_str(r.get::<_, &str>(3)).map_err(json_err)?,
        click_filter: serde_json::from_str(r.get::<_, &str>(4)).map_err(json_err)?,
        created_at: r.get(5),
    })
}

const PROSPECT_COLS: &str = "p.id, p.account_id, p.email, p.first_name, p.last_name, p.company, p.website, \
    p.linkedin_url, p.tags, p.title, p.phone, p.address, p.city, p.country, p.industry, p.state, p.snippets, \
    p.status, p.interested, p.imported, p.updated_at, \
    (SELECT max(e.sent_at) FROM emails e WHERE e.prospect_id = p.id) AS last_contacted, \
    (SELECT count(*) FROM enrollments n WHERE n.prospect_id = p.id) AS in_campaign, \
    (SELECT count(*) FROM emails e WHERE e.prospect_id = p.id) AS emails_sent";

fn prospect_from(r: &Row) -> Prospect {
    let snippets: Vec<String> = serde_json::from_str(r.get::<_, &str>(16)).unwrap_or_default();
    let mut arr: [String; 15] = Default::default();
    for (slot, s) in arr.iter_mut().zip(snippets) {
        *slot = s;
    }
    Prospect {
        id: r.get(0),
        account_id: r.get(1),
        email: r.get(2),
        first_name: r.get(3),
        last_name: r.get(4),
        company: r.get(5),
        website: r.get(6),
        linkedin_url: r.get(7),
        tags: r.get(8),
        title: r.get(9),
        phone: r.get(10),
        address: r.get(11),
        city: r.get(12),
        country: r.get(13),
        industry: r.get(14),
        state: r.get(15),
        snippets: arr,
        status: r.get(17),
        interested: r.get(18),
        imported: r.get(19),
        updated_at: r.get(20),
        last_contacted: r.get(21),
        in_campaign: r.get(22),
        emails_sent: r.get(23),
    }
}

const CAMPAIGN_COLS: &str = "id, account_id, name, status, from_name, mailboxes, steps, created_at";

fn campaign_from(r: &Row) -> StoreResult<Campaign> {
    Ok(Campaign {
        id: r.get(0),
        account_id: r.get(1),
        name: r.get(2),
        status: CampaignStatus::parse(r.get::<_, &str>(3)).map_err(|e| StoreError::Other(e.msg))?,
        from_name: r.get(4),
        mailboxes: serde_json::from_str(r.get::<_, &str>(5)).map_err(json_err)?,
        steps: serde_json::from_str(r.get::<_, &str>(6)).map_err(json_err)?,
        created_at: r.get(7),
    })
}

const ENROLLMENT_COLS: &str =
    "campaign_id, prospect_id, step, step_type, emails_sent, followup_after, mailbox, stopped";

fn enrollment_from(r: &Row) -> Enrollment {
    Enrollment {
        campaign_id: r.get(0),
        prospect_id: r.get(1),
        step: r.get(2),
        step_type: r.get(3),
        emails_sent: r.get(4),
        followup_after: r.get(5),
        mailbox: r.get(6),
        stopped: r.get(7),
    }
}

const SUBSCRIPTION_COLS: &str =
    "id, account_id, target_url, event, secret, status, created_at, last_success_at, last_failure_at, failing_since";

fn subscription_from(r: &Row) -> Subscription {
    Subscription {
        id: r.get(0),
        account_id: r.get(1),
        target_url: r.get(2),
        event: r.get(3),
        secret: r.get(4),
        status: r.get(5),
        created_at: r.get(6),
        last_success_at: r.get(7),
        last_failure_at: r.get(8),
        failing_since: r.get(9),
    }
}

/// Anything that runs statements: a pooled client or a transaction.
trait Q: tokio_postgres::GenericClient + Sync {}
impl<T: tokio_postgres::GenericClient + Sync> Q for T {}

async fn load_account(c: &impl Q, id: i64) -> StoreResult<Account> {
    let r = c
        .query_opt(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"), &[&id])
        .await
        .map_err(pg)?
        .ok_or(StoreError::NotFound("account"))?;
    account_from(&r)
}

async fn load_prospect(c: &impl Q, account_id: i64, id: i64) -> StoreResult<Option<Prospect>> {
    let r = c
        .query_opt(
            &format!("SELECT {PROSPECT_COLS} FROM prospects p WHERE p.id = $1 AND p.account_id = $2"),
            &[&id, &account_id],
        )
        .await
        .map_err(pg)?;
    Ok(r.as_ref().map(prospect_from))
}

async fn prospect_id_by_email(c: &impl Q, account_id: i64, email: &EmailAddress) -> StoreResult<Option<i64>> {
    let r = c
        .query_opt("SELECT id FROM prospects WHERE account_id = $1 AND email_key = $2", &[&account_id, &email.key()])
        .await
        .map_err(pg)?;
    Ok(r.map(|r| r.get(0)))
}

/// The columns a prospect's upsert writes, besides id, account and times, in `ProspectColumns` order.
fn prospect_text_cols() -> Vec<&'static str> {
    let mut cols = vec!["email", "email_key"];
    cols.extend(crate::domain::TEXT_FIELDS);
    cols.extend(["snippets", "status", "interested", "imported"]);
    cols
}

/// Prospects as one array per column, for `unnest`.
struct ProspectColumns {
    ids: Vec<i64>,
    text: Vec<Vec<String>>,
}

impl ProspectColumns {
    fn of(ps: &[(&String, &Prospect)]) -> StoreResult<Self> {
        let mut text = vec![Vec::with_capacity(ps.len()); prospect_text_cols().len()];
        for (key, p) in ps {
            let snippets = serde_json::to_string(&p.snippets).map_err(json_err)?;
            let mut row = vec![&p.email, *key];
            row.extend(p.text_fields());
            row.extend([&snippets, &p.status, &p.interested, &p.imported]);
            for (col, v) in text.iter_mut().zip(row) {
                col.push(v.clone());
            }
        }
        Ok(ProspectColumns { ids: ps.iter().map(|(_, p)| p.id).collect(), text })
    }

    fn params(&self) -> Vec<Param<'_>> {
        let mut v: Vec<Param> = vec![&self.ids];
        v.extend(self.text.iter().map(|c| c as Param));
        v
    }

    /// `unnest(...) AS u(id, <text columns>)` over parameters $1..$20.
    fn unnest() -> String {
        let arrays: Vec<String> = (2..=prospect_text_cols().len() + 1).map(|i| format!("${i}::text[]")).collect();
        format!("unnest($1::bigint[], {}) AS u(id, {})", arrays.join(", "), prospect_text_cols().join(", "))
    }
}

async fn load_campaign(c: &impl Q, account_id: i64, id: i64) -> StoreResult<Campaign> {
    let r = c
        .query_opt(
            &format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE id = $1 AND account_id = $2"),
            &[&id, &account_id],
        )
        .await
        .map_err(pg)?
        .ok_or(StoreError::NotFound("campaign"))?;
    campaign_from(&r)
}

async fn load_enrollment(c: &impl Q, campaign_id: i64, prospect_id: i64) -> StoreResult<Option<Enrollment>> {
    let r = c
        .query_opt(
            &format!("SELECT {ENROLLMENT_COLS} FROM enrollments WHERE campaign_id = $1 AND prospect_id = $2"),
            &[&campaign_id, &prospect_id],
        )
        .await
        .map_err(pg)?;
    Ok(r.as_ref().map(enrollment_from))
}

async fn email_links(c: &impl Q, email_id: i64) -> StoreResult<Vec<NewLink>> {
    let rows = c
        .query("SELECT url, honeypot FROM links WHERE email_id = $1 ORDER BY link_no", &[&email_id])
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| NewLink { url: r.get(0), honeypot: r.get(1) }).collect())
}

async fn load_subscription(c: &impl Q, account_id: i64, id: i64) -> StoreResult<Subscription> {
    let r = c
        .query_opt(
            &format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE id = $1 AND account_id = $2"),
            &[&id, &account_id],
        )
        .await
        .map_err(pg)?
        .ok_or(StoreError::NotFound("subscription"))?;
    Ok(subscription_from(&r))
}

async fn remove_subscription(c: &impl Q, id: i64, why: &str) -> StoreResult<()> {
    c.execute(
        "UPDATE deliveries SET state = 'failed', lease_until = NULL, last_error = $2 WHERE subscription_id = $1 AND state = 'pending'",
        &[&id, &format!("subscription removed: {why}")],
    )
    .await
    .map_err(pg)?;
    c.execute("DELETE FROM subscriptions WHERE id = $1", &[&id]).await.map_err(pg)?;
    Ok(())
}

fn new_msg_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("msg_{}", Alphanumeric.sample_string(&mut rand::rng(), 24))
}

async fn batch_body(c: &impl Q, account_id: i64, first: i64, last: i64) -> StoreResult<String> {
    let rows = c
        .query(
            "SELECT payload FROM events WHERE account_id = $1 AND id BETWEEN $2 AND $3 ORDER BY id",
            &[&account_id, &first, &last],
        )
        .await
        .map_err(pg)?;
    let parts: Vec<&str> = rows.iter().map(|r| r.get::<_, &str>(0)).collect();
    Ok(format!("[{}]", parts.join(",")))
}

/// Filters built at run time: SQL text with `$n` placeholders and their values.
#[derive(Default)]
struct Filter {
    sql: String,
    args: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filter {
    fn and(&mut self, clause: &str, value: impl ToSql + Sync + Send + 'static) {
        self.args.push(Box::new(value));
        let n = self.args.len();
        if !self.sql.is_empty() {
            self.sql.push_str(" AND ");
        }
        self.sql.push_str(&clause.replace("$?", &format!("${n}")));
    }
    fn and_sql(&mut self, clause: &str) {
        if !self.sql.is_empty() {
            self.sql.push_str(" AND ");
        }
        self.sql.push_str(clause);
    }
    fn next(&self) -> usize {
        self.args.len() + 1
    }
    fn params(&self) -> Vec<Param<'_>> {
        self.args.iter().map(|a| a.as_ref() as Param).collect()
    }
}

async fn event_context(c: &impl Q, email_id: i64) -> StoreResult<Option<EventContext>> {
    let head = c
        .query_opt(
            "SELECT e.account_id, e.campaign_id, e.prospect_id, e.step, e.email_no, a.timezone, a.snippet_labels, \
             c.name, c.mailboxes FROM emails e JOIN accounts a ON a.id = e.account_id \
             JOIN campaigns c ON c.id = e.campaign_id WHERE e.id = $1",
            &[&email_id],
        )
        .await
        .map_err(pg)?;
    let Some(h) = head else { return Ok(None) };
    let (account_id, campaign_id, prospect_id): (i64, i64, i64) = (h.get(0), h.get(1), h.get(2));
    let Some(prospect) = load_prospect(c, account_id, prospect_id).await? else { return Ok(None) };
    let Some(enrollment) = load_enrollment(c, campaign_id, prospect_id).await? else { return Ok(None) };
    Ok(Some(EventContext {
        account_id,
        timezone: h.get(5),
        snippet_labels: serde_json::from_str::<BTreeMap<u8, String>>(h.get::<_, &str>(6)).map_err(json_err)?,
        prospect,
        campaign_id,
        campaign_name: h.get(7),
        campaign_mailboxes: serde_json::from_str(h.get::<_, &str>(8)).map_err(json_err)?,
        enrollment,
        email_step: h.get(3),
        email_no: h.get(4),
    }))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn background_may_starve(&self) -> bool {
        false
    }

    fn clicks_flowing(&self) -> bool {
        self.last_click_commit.flowing()
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

    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let c = self.pool.get().await?;
        let filter = serde_json::to_string(&ClickFilter::default()).map_err(json_err)?;
        let now = now_millis();
        let row = match new.id {
            Some(id) => c
                .query_one(
                    "INSERT INTO accounts (id, name, timezone, click_filter, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&id, &new.name, &new.timezone, &filter, &now],
                )
                .await
                .map_err(|e| match pg(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("account {id} already exists")),
                    other => other,
                })?,
            None => c
                .query_one(
                    "INSERT INTO accounts (name, timezone, click_filter, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&new.name, &new.timezone, &filter, &now],
                )
                .await
                .map_err(pg)?,
        };
        if new.id.is_some() {
            // Explicit ids must not collide with the sequence later.
            c.execute("SELECT setval(pg_get_serial_sequence('accounts', 'id'), (SELECT max(id) FROM accounts))", &[])
                .await
                .map_err(pg)?;
        }
        load_account(&*c, row.get(0)).await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let c = self.pool.get().await?;
        let rows = c.query(&format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id"), &[]).await.map_err(pg)?;
        rows.iter().map(account_from).collect()
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        load_account(&*self.pool.get().await?, id).await
    }

    async fn update_account(&self, id: i64, patch: AccountPatch) -> StoreResult<Account> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let mut a = load_account(&tx, id).await?;
        if let Some(v) = patch.name {
            a.name = v;
        }
        if let Some(v) = patch.timezone {
            a.timezone = v;
        }
        if let Some(v) = patch.snippet_labels {
            a.snippet_labels = v;
        }
        if let Some(v) = patch.click_filter {
            a.click_filter = v;
        }
        let labels = serde_json::to_string(&a.snippet_labels).map_err(json_err)?;
        let filter = serde_json::to_string(&a.click_filter).map_err(json_err)?;
        tx.execute(
            "UPDATE accounts SET name=$2, timezone=$3, snippet_labels=$4, click_filter=$5 WHERE id=$1",
            &[&id, &a.name, &a.timezone, &labels, &filter],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(a)
    }

    async fn add_api_key(&self, account_id: i64, key_hash: String, prefix: String) -> StoreResult<ApiKeyInfo> {
        let c = self.pool.get().await?;
        load_account(&*c, account_id).await?;
        let now = now_millis();
        let r = c
            .query_one(
                "INSERT INTO api_keys (account_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&account_id, &key_hash, &prefix, &now],
            )
            .await
            .map_err(pg)?;
        Ok(ApiKeyInfo { id: r.get(0), account_id, prefix, created_at: now, revoked_at: None })
    }

    async fn revoke_api_key(&self, account_id: i64, prefix: &str) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let n = c
            .execute(
                "UPDATE api_keys SET revoked_at = $3 WHERE account_id = $1 AND prefix = $2 AND revoked_at IS NULL",
                &[&account_id, &prefix, &now_millis()],
            )
            .await
            .map_err(pg)?;
        if n == 0 {
            return Err(StoreError::NotFound("API key"));
        }
        Ok(())
    }

    async fn list_api_keys(&self, account_id: i64) -> StoreResult<Vec<ApiKeyInfo>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT id, account_id, prefix, created_at, revoked_at FROM api_keys WHERE account_id = $1 ORDER BY id",
                &[&account_id],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| ApiKeyInfo {
                id: r.get(0),
                account_id: r.get(1),
                prefix: r.get(2),
                created_at: r.get(3),
                revoked_at: r.get(4),
            })
            .collect())
    }

    async fn account_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<Account>> {
        let c = self.pool.get().await?;
        let r = c
            .query_opt(
                &format!(
                    "SELECT {} FROM accounts a JOIN api_keys k ON k.account_id = a.id \
                     WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                    ACCOUNT_COLS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ")
                ),
                &[&key_hash],
            )
            .await
            .map_err(pg)?;
        r.as_ref().map(account_from).transpose()
    }

    /// A whole chunk in a few statements, whatever its size: one read of the prospects it
    /// names, ids for the new ones from the sequence, then one INSERT and one UPDATE of arrays.
    async fn upsert_prospects(&self, account_id: i64, req: UpsertProspects) -> StoreResult<Vec<Upserted>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        if let Some(cid) = req.campaign_id {
            load_campaign(&tx, account_id, cid).await?;
        }
        let now = now_millis();
        let keys: Vec<String> = req.prospects.iter().map(|p| p.email.key()).collect();
        let rows = tx
            .query(
                &format!("SELECT {PROSPECT_COLS}, p.email_key FROM prospects p WHERE p.account_id = $1 AND p.email_key = ANY($2)"),
                &[&account_id, &keys],
            )
            .await
            .map_err(pg)?;
        // email_key -> (prospect as it will be stored, is new, is changed)
        let mut slots: HashMap<String, (Prospect, bool, bool)> =
            rows.iter().map(|r| (r.get::<_, String>("email_key"), (prospect_from(r), false, false))).collect();
        let fresh = keys.iter().filter(|k| !slots.contains_key(*k)).collect::<std::collections::HashSet<_>>().len();
        let mut ids = if fresh == 0 {
            Vec::new()
        } else {
            tx.query(
                "SELECT nextval(pg_get_serial_sequence('prospects', 'id')) FROM generate_series(1, $1::bigint)",
                &[&(fresh as i64)],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect()
        }
        .into_iter();
        let mut out = Vec::with_capacity(req.prospects.len());
        for (input, key) in req.prospects.iter().zip(&keys) {
            let outcome = match slots.get_mut(key) {
                Some((p, _, _)) if !req.update => Upserted::Unchanged(p.id),
                Some((p, _, changed)) => {
                    super::apply_fields(p, input);
                    if let Some(f) = &req.imported {
                        p.imported = f.clone();
                    }
                    *changed = true;
                    Upserted::Updated(p.id)
                }
                None => {
                    let mut p = super::blank_prospect(account_id);
                    super::apply_fields(&mut p, input);
                    p.imported = req.imported.clone().unwrap_or_default();
                    p.id = ids.next().expect("an id for each new prospect");
                    let id = p.id;
                    slots.insert(key.clone(), (p, true, true));
                    Upserted::Created(id)
                }
            };
            out.push(outcome);
        }
        let (mut created, mut changed): (Vec<_>, Vec<_>) = (vec![], vec![]);
        for (key, (p, new, dirty)) in &slots {
            match (new, dirty) {
                (true, _) => created.push((key, p)),
                (false, true) => changed.push((key, p)),
                _ => {}
            }
        }
        created.sort_by_key(|(_, p)| p.id);
        if !created.is_empty() {
            let cols = ProspectColumns::of(&created)?;
            let mut params = cols.params();
            params.push(&account_id);
            params.push(&now);
            let sql = format!(
                "INSERT INTO prospects (id, {names}, account_id, created_at, updated_at) \
                 SELECT u.*, ${a}, ${t}, ${t} FROM {unnest}",
                names = prospect_text_cols().join(", "),
                a = params.len() - 1,
                t = params.len(),
                unnest = ProspectColumns::unnest(),
            );
            tx.execute(&sql, &params).await.map_err(pg)?;
        }
        if !changed.is_empty() {
            let cols = ProspectColumns::of(&changed)?;
            let mut params = cols.params();
            params.push(&now);
            let set: Vec<String> = prospect_text_cols().iter().map(|c| format!("{c} = u.{c}")).collect();
            let sql = format!(
                "UPDATE prospects p SET {set}, updated_at = ${t} FROM {unnest} WHERE p.id = u.id",
                set = set.join(", "),
                t = params.len(),
                unnest = ProspectColumns::unnest(),
            );
            tx.execute(&sql, &params).await.map_err(pg)?;
        }
        if let Some(cid) = req.campaign_id {
            let ids: Vec<i64> = out.iter().map(|o| o.id()).collect();
            tx.execute(
                "INSERT INTO enrollments (campaign_id, prospect_id, created_at) \
                 SELECT $1, x, $3 FROM unnest($2::bigint[]) WITH ORDINALITY AS t(x, n) ORDER BY n ON CONFLICT DO NOTHING",
                &[&cid, &ids, &now],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(out)
    }

    async fn list_prospects(&self, account_id: i64, q: ProspectQuery) -> StoreResult<(i64, Vec<Prospect>)> {
        let c = self.pool.get().await?;
        let mut f = Filter::default();
        f.and("p.account_id = $?", account_id);
        if !q.ids.is_empty() {
            f.and("p.id = ANY($?)", q.ids.clone());
        }
        if let Some(s) = q.status.clone() {
            f.and("p.status = $?", s);
        }
        if let Some(i) = q.interested.clone() {
            f.and("p.interested = $?", i);
        }
        if !q.campaign_ids.is_empty() {
            f.and(
                "EXISTS (SELECT 1 FROM enrollments n WHERE n.prospect_id = p.id AND n.campaign_id = ANY($?))",
                q.campaign_ids.clone(),
            );
        }
        for (field, term) in &q.search {
            // Field names are whitelisted by the API; never user text in SQL.
            let (col, term) = if field == "email" {
                ("p.email_key".to_string(), term.to_lowercase())
            } else {
                (format!("p.{field}"), term.clone())
            };
            // As SQLite's LIKE, which ignores ASCII case.
            f.and(&format!("{col} ILIKE $? ESCAPE '\\'"), like_pattern(&term));
        }
        let total: i64 = c
            .query_one(&format!("SELECT count(*) FROM prospects p WHERE {}", f.sql), &f.params())
            .await
            .map_err(pg)?
            .get(0);
        let mut order: Vec<String> = q
            .sort
            .iter()
            .map(|(k, desc)| format!("{} {}", sort_column(*k), if *desc { "DESC" } else { "ASC" }))
            .collect();
        order.push("p.id ASC".into());
        let (l, o) = (f.next(), f.next() + 1);
        let sql = format!(
            "SELECT {PROSPECT_COLS} FROM prospects p WHERE {} ORDER BY {} LIMIT ${l} OFFSET ${o}",
            f.sql,
            order.join(", ")
        );
        let mut params = f.params();
        params.push(&q.limit);
        params.push(&q.offset);
        let rows = c.query(&sql, &params).await.map_err(pg)?;
        Ok((total, rows.iter().map(prospect_from).collect()))
    }

    async fn delete_prospects(&self, account_id: i64, ids: Vec<i64>) -> StoreResult<i64> {
        let c = self.pool.get().await?;
        let n = c
            .execute("DELETE FROM prospects WHERE account_id = $1 AND id = ANY($2)", &[&account_id, &ids])
            .await
            .map_err(pg)?;
        Ok(n as i64)
    }

    async fn stop_followups(&self, account_id: i64, email: &EmailAddress) -> StoreResult<bool> {
        let c = self.pool.get().await?;
        let Some(id) = prospect_id_by_email(&*c, account_id, email).await? else { return Ok(false) };
        c.execute("UPDATE enrollments SET stopped = TRUE WHERE prospect_id = $1", &[&id]).await.map_err(pg)?;
        Ok(true)
    }

    async fn create_campaign(&self, account_id: i64, new: NewCampaign) -> StoreResult<Campaign> {
        let c = self.pool.get().await?;
        let mailboxes = serde_json::to_string(&new.mailboxes).map_err(json_err)?;
        let steps = serde_json::to_string(&new.steps).map_err(json_err)?;
        let now = now_millis();
        let status = new.status.as_str();
        let row = match new.id {
            Some(id) => {
                let r = c
                    .query_one(
                        "INSERT INTO campaigns (id, account_id, name, status, from_name, mailboxes, steps, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                        &[&id, &account_id, &new.name, &status, &new.from_name, &mailboxes, &steps, &now],
                    )
                    .await
                    .map_err(|e| match pg(e) {
                        StoreError::Conflict(_) => StoreError::Conflict(format!("campaign id {id} is taken")),
                        other => other,
                    })?;
                c.execute(
                    "SELECT setval(pg_get_serial_sequence('campaigns', 'id'), (SELECT max(id) FROM campaigns))",
                    &[],
                )
                .await
                .map_err(pg)?;
                r
            }
            None => c
                .query_one(
                    "INSERT INTO campaigns (account_id, name, status, from_name, mailboxes, steps, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[&account_id, &new.name, &status, &new.from_name, &mailboxes, &steps, &now],
                )
                .await
                .map_err(pg)?,
        };
        load_campaign(&*c, account_id, row.get(0)).await
    }

    async fn list_campaigns(&self, account_id: i64) -> StoreResult<Vec<Campaign>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(&format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE account_id = $1 ORDER BY id"), &[&account_id])
            .await
            .map_err(pg)?;
        rows.iter().map(campaign_from).collect()
    }

    async fn campaign(&self, account_id: i64, id: i64) -> StoreResult<Campaign> {
        load_campaign(&*self.pool.get().await?, account_id, id).await
    }

    async fn update_campaign(&self, account_id: i64, id: i64, patch: CampaignPatch) -> StoreResult<Campaign> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let mut camp = load_campaign(&tx, account_id, id).await?;
        if let Some(v) = patch.name {
            camp.name = v;
        }
        if let Some(v) = patch.status {
            camp.status = v;
        }
        if let Some(v) = patch.from_name {
            camp.from_name = v;
        }
        if let Some(v) = patch.mailboxes {
            camp.mailboxes = v;
        }
        if let Some(v) = patch.steps {
            let used: Option<i64> =
                tx.query_one("SELECT max(step) FROM emails WHERE campaign_id = $1", &[&id]).await.map_err(pg)?.get(0);
            if let Some(used) = used.filter(|u| *u > v.len() as i64) {
                return Err(StoreError::Invalid(format!(
                    "emails were sent from step {used}; the campaign must keep at least {used} steps"
                )));
            }
            camp.steps = v;
        }
        let mailboxes = serde_json::to_string(&camp.mailboxes).map_err(json_err)?;
        let steps = serde_json::to_string(&camp.steps).map_err(json_err)?;
        tx.execute(
            "UPDATE campaigns SET name=$2, status=$3, from_name=$4, mailboxes=$5, steps=$6 WHERE id=$1",
            &[&id, &camp.name, &camp.status.as_str(), &camp.from_name, &mailboxes, &steps],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(camp)
    }

    async fn delete_campaign(&self, account_id: i64, id: i64) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let n = c
            .execute("DELETE FROM campaigns WHERE id = $1 AND account_id = $2", &[&id, &account_id])
            .await
            .map_err(pg)?;
        if n == 0 {
            return Err(StoreError::NotFound("campaign"));
        }
        Ok(())
    }

    async fn update_enrollment(
        &self,
        account_id: i64,
        campaign_id: i64,
        prospect_id: i64,
        patch: EnrollmentPatch,
    ) -> StoreResult<Enrollment> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let campaign = load_campaign(&tx, account_id, campaign_id).await?;
        load_prospect(&tx, account_id, prospect_id).await?.ok_or(StoreError::NotFound("prospect"))?;
        let mut e = load_enrollment(&tx, campaign_id, prospect_id).await?.ok_or(StoreError::NotFound("enrollment"))?;
        if let Some(step) = patch.step {
            let s = usize::try_from(step - 1).ok().and_then(|i| campaign.steps.get(i)).ok_or_else(|| {
                StoreError::Invalid(format!("step {step} does not exist; the campaign has {}", campaign.steps.len()))
            })?;
            e.step = Some(step);
            e.step_type = Some(s.kind().as_str().to_string());
        }
        if let Some(f) = patch.followup_after {
            e.followup_after = f;
        }
        tx.execute(
            "UPDATE enrollments SET step=$3, step_type=$4, followup_after=$5 WHERE campaign_id=$1 AND prospect_id=$2",
            &[&campaign_id, &prospect_id, &e.step, &e.step_type, &e.followup_after],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(e)
    }

    async fn record_email(&self, account_id: i64, email: NewEmail) -> StoreResult<SentEmail> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let campaign = load_campaign(&tx, account_id, email.campaign_id).await?;
        let prospect_id = match &email.prospect {
            ProspectRef::Id(id) => load_prospect(&tx, account_id, *id).await?.map(|p| p.id),
            ProspectRef::Email(e) => prospect_id_by_email(&tx, account_id, e).await?,
        }
        .ok_or(StoreError::NotFound("prospect"))?;
        // Locks the enrollment: two sends to one prospect number their emails one after the other.
        let enrollment = tx
            .query_opt(
                &format!(
                    "SELECT {ENROLLMENT_COLS} FROM enrollments WHERE campaign_id = $1 AND prospect_id = $2 FOR UPDATE"
                ),
                &[&campaign.id, &prospect_id],
            )
            .await
            .map_err(pg)?
            .as_ref()
            .map(enrollment_from)
            .ok_or_else(|| {
                StoreError::Invalid(format!("prospect {prospect_id} is not enrolled in campaign {}", campaign.id))
            })?;
        if let Some(key) = &email.idempotency_key {
            let prior = tx
                .query_opt(
                    "SELECT id, prospect_id, email_no, sent_at FROM emails WHERE campaign_id = $1 AND idempotency_key = $2",
                    &[&campaign.id, key],
                )
                .await
                .map_err(pg)?;
            if let Some(r) = prior {
                let id: i64 = r.get(0);
                let links = email_links(&tx, id).await?;
                return Ok(SentEmail {
                    id,
                    prospect_id: r.get(1),
                    email_no: r.get(2),
                    sent_at: r.get(3),
                    links,
                    replayed: true,
                });
            }
        }
        let (step, mailbox) = super::email_step_and_mailbox(&campaign, &enrollment, email.step, email.mailbox)?;
        let email_no = enrollment.emails_sent + 1;
        let id: i64 = tx
            .query_one(
                "INSERT INTO emails (account_id, campaign_id, prospect_id, step, mailbox, email_no, subject, idempotency_key, sent_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                &[&account_id, &campaign.id, &prospect_id, &email.step, &mailbox, &email_no, &email.subject, &email.idempotency_key, &email.sent_at],
            )
            .await
            .map_err(pg)?
            .get(0);
        if !email.links.is_empty() {
            let nos: Vec<i64> = (1..=email.links.len() as i64).collect();
            let urls: Vec<&str> = email.links.iter().map(|l| l.url.as_str()).collect();
            let pots: Vec<bool> = email.links.iter().map(|l| l.honeypot).collect();
            tx.execute(
                "INSERT INTO links (email_id, link_no, url, honeypot) SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bool[])",
                &[&id, &nos, &urls, &pots],
            )
            .await
            .map_err(pg)?;
        }
        tx.execute(
            "UPDATE enrollments SET step = $3, step_type = $4, emails_sent = emails_sent + 1, mailbox = $5 \
             WHERE campaign_id = $1 AND prospect_id = $2",
            &[&campaign.id, &prospect_id, &email.step, &step.kind().as_str(), &mailbox],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(SentEmail { id, prospect_id, email_no, sent_at: email.sent_at, links: email.links, replayed: false })
    }

    async fn link_target(&self, email_id: i64, link_no: i64) -> StoreResult<Option<LinkTarget>> {
        let c = self.pool.get().await?;
        let r = c
            .query_opt(
                "SELECT e.account_id, l.url, l.honeypot FROM links l JOIN emails e ON e.id = l.email_id \
                 WHERE l.email_id = $1 AND l.link_no = $2",
                &[&email_id, &link_no],
            )
            .await
            .map_err(pg)?;
        Ok(r.map(|r| LinkTarget { account_id: r.get(0), email_id, link_no, url: r.get(1), honeypot: r.get(2) }))
    }

    async fn record_click(&self, click: NewClick) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.clicks.send((click, tx)).map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("the store is closed".into()))?
    }

    async fn list_clicks(&self, account_id: i64, q: ClickQuery) -> StoreResult<(i64, Vec<ClickRecord>)> {
        let c = self.pool.get().await?;
        // The clicks answered a moment ago are listed too, unjudged, unless settling is far
        // behind: then the newest wait their turn (taking in the whole backlog here would make
        // a list request as slow as settling it).
        take_in_groups(&c, LIST_TAKES_IN).await?;
        let mut f = Filter::default();
        f.and("c.account_id = $?", account_id);
        if let Some(v) = q.campaign_id {
            f.and("e.campaign_id = $?", v);
        }
        if let Some(v) = q.prospect_id {
            f.and("e.prospect_id = $?", v);
        }
        match q.verdict.as_deref() {
            Some("pending") => f.and_sql("(c.verdict IS NULL OR NOT c.released)"),
            Some(v) => f.and("c.released AND c.verdict = $?", v.to_string()),
            None => {}
        }
        if let Some(s) = q.since {
            f.and("c.at >= $?", s);
        }
        let from = "FROM clicks c JOIN emails e ON e.id = c.email_id \
                    LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no";
        let total: i64 =
            c.query_one(&format!("SELECT count(*) {from} WHERE {}", f.sql), &f.params()).await.map_err(pg)?.get(0);
        let (l, o) = (f.next(), f.next() + 1);
        let mut params = f.params();
        params.push(&q.limit);
        params.push(&q.offset);
        let rows = c
            .query(
                &format!(
                    "SELECT c.id, c.at, e.campaign_id, e.prospect_id, c.email_id, c.link_no, coalesce(l.url, ''), c.head, \
                     c.ip, c.user_agent, CASE WHEN c.released THEN c.verdict END, CASE WHEN c.released THEN c.reasons END \
                     {from} WHERE {} ORDER BY c.id DESC LIMIT ${l} OFFSET ${o}",
                    f.sql
                ),
                &params,
            )
            .await
            .map_err(pg)?;
        let items = rows
            .iter()
            .map(|r| {
                let reasons: Option<String> = r.get(11);
                ClickRecord {
                    id: r.get(0),
                    at: r.get(1),
                    campaign_id: r.get(2),
                    prospect_id: r.get(3),
                    email_id: r.get(4),
                    link_no: r.get(5),
                    url: r.get(6),
                    method: if r.get::<_, bool>(7) { "HEAD" } else { "GET" },
                    ip: r.get(8),
                    user_agent: r.get(9),
                    verdict: r.get(10),
                    reasons: parse_reasons(reasons.as_deref()),
                }
            })
            .collect();
        Ok((total, items))
    }

    async fn pending_clicks(&self, limit: i64) -> StoreResult<Vec<PendingClick>> {
        let mut c = self.pool.get().await?;
        take_in_groups(&c, limit).await?;
        let tx = by_index(&mut c).await?;
        // The limit applies before the joins, so a round reads `limit` clicks, not the backlog.
        let rows = tx
            .query(
                "SELECT c.id, coalesce(e.account_id, 0), c.email_id, c.link_no, c.at, c.head, c.ip, c.user_agent, \
                 coalesce(e.sent_at, 0), coalesce(l.honeypot, FALSE), a.click_filter, coalesce(l.url, '') \
                 FROM (SELECT * FROM clicks WHERE verdict IS NULL ORDER BY id LIMIT $1) c \
                 LEFT JOIN emails e ON e.id = c.email_id \
                 LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                 LEFT JOIN accounts a ON a.id = e.account_id \
                 ORDER BY c.id",
                &[&limit],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| PendingClick {
                id: r.get(0),
                account_id: r.get(1),
                email_id: r.get(2),
                link_no: r.get(3),
                at: r.get(4),
                head: r.get(5),
                ip: r.get(6),
                user_agent: r.get(7),
                email_sent_at: r.get(8),
                honeypot: r.get(9),
                filter: r.get::<_, Option<&str>>(10).and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default(),
                url: r.get(11),
            })
            .collect())
    }

    async fn clicks_near(&self, email_ids: Vec<i64>, from: Millis, to: Millis) -> StoreResult<Vec<NearbyClick>> {
        let mut c = self.pool.get().await?;
        let tx = by_index(&mut c).await?;
        let rows = tx
            .query(
                "SELECT e.click_id, e.email_id, e.link_no, e.at, e.honeypot, c.released, c.reasons \
                 FROM email_clicks e JOIN clicks c ON c.id = e.click_id \
                 WHERE e.email_id = ANY($1) AND e.at BETWEEN $2 AND $3",
                &[&email_ids, &from, &to],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| NearbyClick {
                click_id: r.get(0),
                email_id: r.get(1),
                link_no: r.get(2),
                at: r.get(3),
                honeypot: r.get(4),
                released: r.get(5),
                reasons: parse_reasons(r.get::<_, Option<&str>>(6)),
            })
            .collect())
    }

    async fn judge_clicks(&self, judged: Vec<Judgement>, overruled: Vec<Overrule>) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let (mut ids, mut verdicts, mut reasons, mut emails, mut ats, mut links, mut honeypots) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for j in &judged {
            ids.push(j.click.click_id);
            verdicts.push(j.verdict);
            reasons.push(serde_json::to_string(&j.reasons).map_err(json_err)?);
            emails.push(j.click.email_id);
            ats.push(j.click.at);
            links.push(j.click.link_no);
            honeypots.push(j.click.honeypot);
        }
        // Only clicks this call judges enter the burst history: another node may have judged some.
        tx.execute(
            "WITH j AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                          $6::bigint[], $7::bool[]) AS j(click_id, verdict, reasons, email_id, at, link_no, honeypot)), \
             judged AS (UPDATE clicks c SET verdict = j.verdict, reasons = j.reasons FROM j \
                        WHERE c.id = j.click_id AND c.verdict IS NULL RETURNING c.id) \
             INSERT INTO email_clicks (click_id, email_id, at, link_no, honeypot) \
             SELECT j.click_id, j.email_id, j.at, j.link_no, j.honeypot FROM j JOIN judged ON judged.id = j.click_id \
             ORDER BY j.click_id",
            &[&ids, &verdicts, &reasons, &emails, &ats, &links, &honeypots],
        )
        .await
        .map_err(pg)?;
        // One statement for every overruled click; a click's new reasons arrive together.
        let mut by_click: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
        for o in &overruled {
            let reasons = by_click.entry(o.click_id).or_default();
            if !reasons.contains(&o.reason.as_ref()) {
                reasons.push(o.reason.as_ref());
            }
        }
        let ids: Vec<i64> = by_click.keys().copied().collect();
        let reasons: Vec<String> =
            by_click.values().map(serde_json::to_string).collect::<Result<_, _>>().map_err(json_err)?;
        tx.execute(
            "UPDATE clicks c SET verdict = 'bot', reasons = CASE WHEN c.verdict = 'human' THEN o.reasons \
               ELSE (c.reasons::jsonb || (SELECT coalesce(jsonb_agg(r), '[]'::jsonb) \
                     FROM jsonb_array_elements_text(o.reasons::jsonb) AS r WHERE NOT c.reasons::jsonb ? r))::text END \
             FROM unnest($1::bigint[], $2::text[]) AS o(click_id, reasons) \
             WHERE c.id = o.click_id AND c.verdict IS NOT NULL AND NOT c.released",
            &[&ids, &reasons],
        )
        .await
        .map_err(pg)?;
        let horizon =
            judged.iter().map(|j| j.click.at).min().unwrap_or(0) - 2 * i64::from(ClickFilter::MAX_BURST_SECONDS) * 1000;
        tx.execute(
            "DELETE FROM email_clicks WHERE id IN (SELECT id FROM email_clicks ORDER BY id LIMIT 10000) AND at < $1",
            &[&horizon],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn held_clicks(&self, frontier: Millis, limit: i64) -> StoreResult<Vec<HeldClick>> {
        let mut c = self.pool.get().await?;
        let tx = by_index(&mut c).await?;
        let rows = tx
            .query(
                "SELECT c.id, c.account_id, c.email_id, coalesce(l.url, ''), c.at, c.verdict, a.click_filter \
                 FROM clicks c LEFT JOIN links l ON l.email_id = c.email_id AND l.link_no = c.link_no \
                 LEFT JOIN accounts a ON a.id = c.account_id \
                 WHERE c.verdict IS NOT NULL AND NOT c.released AND c.at <= $1 ORDER BY c.at LIMIT $2",
                &[&frontier, &limit],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| HeldClick {
                id: r.get(0),
                account_id: r.get(1),
                email_id: r.get(2),
                url: r.get(3),
                at: r.get(4),
                verdict: r.get(5),
                filter: r.get::<_, Option<&str>>(6).and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default(),
            })
            .filter(|h| h.at + i64::from(h.filter.burst_seconds) * 1000 <= frontier)
            .collect())
    }

    async fn event_contexts(&self, email_ids: Vec<i64>) -> StoreResult<HashMap<i64, EventContext>> {
        let c = self.pool.get().await?;
        // All at once: the queries are pipelined on the one connection, not a round trip each.
        let contexts = futures::future::join_all(email_ids.iter().map(|&id| event_context(&*c, id))).await;
        let mut out = HashMap::new();
        for (id, ctx) in email_ids.into_iter().zip(contexts) {
            if let Some(ctx) = ctx? {
                out.insert(id, ctx);
            }
        }
        Ok(out)
    }

    async fn release_clicks(&self, released: Vec<Release>) -> StoreResult<()> {
        if released.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = released.iter().map(|r| r.click_id).collect();
        let (mut accounts, mut clicks, mut payloads, mut occurred) = (vec![], vec![], vec![], vec![]);
        for r in &released {
            if let Some(payload) = &r.event {
                accounts.push(r.account_id);
                clicks.push(r.click_id);
                payloads.push(payload.as_str());
                occurred.push(r.clicked_at);
            }
        }
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // Event ids must become visible in order (subscription cursors read them in order).
        tx.execute(EVENT_LOCK, &[]).await.map_err(pg)?;
        // Only clicks this call releases get an event: another node may have released some.
        tx.execute(
            "WITH newly AS (UPDATE clicks SET released = TRUE WHERE id = ANY($1) AND NOT released RETURNING id) \
             INSERT INTO events (account_id, click_id, created_at, payload, occurred_at) \
             SELECT u.account_id, u.click_id, $6, u.payload, u.occurred_at \
             FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) AS u(account_id, click_id, payload, occurred_at) \
             JOIN newly ON newly.id = u.click_id ORDER BY u.occurred_at, u.click_id \
             ON CONFLICT (click_id) DO NOTHING",
            &[&ids, &accounts, &clicks, &payloads, &occurred, &now_millis()],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let c = self.pool.get().await?;
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM clicks WHERE verdict IS NULL) \
                 + (SELECT coalesce(sum(clicks), 0) FROM click_groups) \
                 + (SELECT count(*) FROM clicks WHERE verdict IS NOT NULL AND NOT released), (SELECT count(*) FROM events)",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(OutboxDepth { clicks_pending: r.get(0), events_total: r.get(1) })
    }

    async fn subscribe(
        &self,
        account_id: i64,
        target_url: &str,
        event: &str,
        secret: String,
    ) -> StoreResult<Subscribed> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // One account's subscriptions change one at a time: the limit of three holds under races.
        tx.execute("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", &[&account_id]).await.map_err(pg)?;
        let dup: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE account_id=$1 AND event=$2 AND target_url=$3)",
                &[&account_id, &event, &target_url],
            )
            .await
            .map_err(pg)?
            .get(0);
        if dup {
            return Ok(Subscribed::Duplicate);
        }
        let n: i64 = tx
            .query_one("SELECT count(*) FROM subscriptions WHERE account_id=$1 AND event=$2", &[&account_id, &event])
            .await
            .map_err(pg)?
            .get(0);
        if n >= 3 {
            return Ok(Subscribed::TooMany);
        }
        let r = tx
            .query_one(
                &format!(
                    "INSERT INTO subscriptions (account_id, target_url, event, secret, created_at, cursor) VALUES ($1, $2, $3, $4, $5, \
                     (SELECT coalesce(max(id), 0) FROM events WHERE account_id = $1)) RETURNING {SUBSCRIPTION_COLS}"
                ),
                &[&account_id, &target_url, &event, &secret, &now_millis()],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Subscribed::Created(subscription_from(&r)))
    }

    async fn unsubscribe(&self, account_id: i64, target_url: &str, event: &str) -> StoreResult<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let id = tx
            .query_opt(
                "SELECT id FROM subscriptions WHERE account_id=$1 AND event=$2 AND target_url=$3",
                &[&account_id, &event, &target_url],
            )
            .await
            .map_err(pg)?;
        let Some(id) = id.map(|r| r.get::<_, i64>(0)) else { return Ok(false) };
        remove_subscription(&tx, id, "unsubscribed").await?;
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    async fn list_subscriptions(&self, account_id: i64) -> StoreResult<Vec<Subscription>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions WHERE account_id = $1 ORDER BY id"),
                &[&account_id],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(subscription_from).collect())
    }

    async fn cut_batches(&self, now: Millis, window_ms: i64, max_events: i64) -> StoreResult<Option<Millis>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // A subscription is batched by one node at a time; others skip it this round.
        let subs = tx
            .query(
                "SELECT id, account_id, target_url, cursor FROM subscriptions \
                 WHERE status = 'active' AND event = 'link_clicked' FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await
            .map_err(pg)?;
        let mut next_close: Option<Millis> = None;
        for s in &subs {
            let (sub, account, target, mut cursor): (i64, i64, String, i64) = (s.get(0), s.get(1), s.get(2), s.get(3));
            loop {
                let events = tx
                    .query(
                        "SELECT id, occurred_at FROM events WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                        &[&account, &cursor, &max_events],
                    )
                    .await
                    .map_err(pg)?;
                let full = events.len() as i64 == max_events;
                let Some(first) = events.first().map(|r| r.get::<_, i64>(0)) else { break };
                let oldest = events.iter().map(|r| r.get::<_, i64>(1)).min().unwrap_or(now);
                if !full && oldest + window_ms > now {
                    // The window is still open: come back when it closes.
                    next_close = Some(next_close.map_or(oldest + window_ms, |t| t.min(oldest + window_ms)));
                    break;
                }
                let last: i64 = events.last().map(|r| r.get(0)).unwrap_or(first);
                tx.execute(
                    "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, first_event_id, last_event_id, \
                     event_count, next_attempt_at, created_at, oldest_event_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
                    &[&new_msg_id(), &account, &sub, &target, &first, &last, &(events.len() as i64), &now, &oldest],
                )
                .await
                .map_err(pg)?;
                tx.execute("UPDATE subscriptions SET cursor = $2 WHERE id = $1", &[&sub, &last]).await.map_err(pg)?;
                cursor = last;
                if !full {
                    break;
                }
            }
        }
        tx.commit().await.map_err(pg)?;
        Ok(next_close)
    }

    async fn claim_deliveries(
        &self,
        now: Millis,
        lease_ms: i64,
        limit: i64,
        per_subscription: i64,
    ) -> StoreResult<Vec<Claimed>> {
        let c = self.pool.get().await?;
        let until = now + lease_ms;
        // Per subscription, its oldest due batches not leased nor locked by another node.
        let rows = c
            .query(
                "WITH picked AS ( \
                   SELECT d2.id FROM subscriptions s2 CROSS JOIN LATERAL ( \
                     SELECT d.id, d.next_attempt_at FROM deliveries d WHERE d.subscription_id = s2.id \
                     AND d.state = 'pending' AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until < $1) \
                     ORDER BY d.next_attempt_at, d.id LIMIT $4 FOR UPDATE SKIP LOCKED) d2 \
                   WHERE s2.status = 'active' ORDER BY d2.next_attempt_at, d2.id LIMIT $3) \
                 UPDATE deliveries d SET lease_until = $2 FROM subscriptions s, picked \
                 WHERE s.id = d.subscription_id AND d.id = picked.id \
                 RETURNING d.id, d.msg_id, d.subscription_id, s.target_url, s.secret, d.body, d.tries, d.account_id, \
                           d.first_event_id, d.last_event_id",
                &[&now, &until, &limit, &per_subscription],
            )
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut claimed = Claimed {
                id: r.get(0),
                msg_id: r.get(1),
                subscription_id: r.get(2),
                target_url: r.get(3),
                secret: r.get(4),
                body: r.get::<_, Option<String>>(5).unwrap_or_default(),
                tries: r.get(6),
            };
            if let (Some(first), Some(last)) = (r.get::<_, Option<i64>>(8), r.get::<_, Option<i64>>(9)) {
                claimed.body = batch_body(&*c, r.get(7), first, last).await?;
            }
            out.push(claimed);
        }
        Ok(out)
    }

    async fn finish_attempt(&self, a: Attempt) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let status = a.status_code.map(i32::from);
        tx.execute(
            "INSERT INTO delivery_attempts (delivery_id, at, status_code, error, latency_ms, response) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&a.delivery_id, &a.at, &status, &a.error, &a.latency_ms, &a.response],
        )
        .await
        .map_err(pg)?;
        let error = a.error.clone().or_else(|| a.status_code.map(|c| format!("HTTP {c}")));
        let fail_sql = "UPDATE subscriptions SET last_failure_at = $2, failing_since = coalesce(failing_since, $2), \
                        status = CASE WHEN status = 'active' AND $2 - coalesce(failing_since, $2) >= $3 \
                                      THEN 'disabled' ELSE status END WHERE id = $1";
        match &a.outcome {
            AttemptOutcome::Delivered => {
                tx.execute(
                    "UPDATE deliveries SET state = 'delivered', delivered_at = $2, lease_until = NULL, last_error = NULL WHERE id = $1",
                    &[&a.delivery_id, &a.at],
                )
                .await
                .map_err(pg)?;
                // The subscription row is shared by every batch in flight to it and by whoever cuts
                // its batches: touch it at most once a second while all goes well.
                tx.execute(
                    "UPDATE subscriptions SET last_success_at = $2, failing_since = NULL WHERE id = $1 \
                     AND (last_success_at IS NULL OR last_success_at < $2::bigint - 1000 OR failing_since IS NOT NULL)",
                    &[&a.subscription_id, &a.at],
                )
                .await
                .map_err(pg)?;
            }
            AttemptOutcome::Retry(next) => {
                tx.execute(
                    "UPDATE deliveries SET tries = tries + 1, next_attempt_at = $2, lease_until = NULL, last_error = $3 WHERE id = $1",
                    &[&a.delivery_id, next, &error],
                )
                .await
                .map_err(pg)?;
                tx.execute(fail_sql, &[&a.subscription_id, &a.at, &a.disable_after_ms]).await.map_err(pg)?;
            }
            AttemptOutcome::Exhausted => {
                tx.execute(
                    "UPDATE deliveries SET tries = tries + 1, state = 'failed', lease_until = NULL, last_error = $2 WHERE id = $1",
                    &[&a.delivery_id, &error],
                )
                .await
                .map_err(pg)?;
                tx.execute(fail_sql, &[&a.subscription_id, &a.at, &a.disable_after_ms]).await.map_err(pg)?;
            }
            AttemptOutcome::Gone => {
                let why = error.unwrap_or_default();
                tx.execute(
                    "UPDATE deliveries SET tries = tries + 1, state = 'failed', lease_until = NULL, last_error = $2 WHERE id = $1",
                    &[&a.delivery_id, &format!("subscription removed: {why}")],
                )
                .await
                .map_err(pg)?;
                remove_subscription(&tx, a.subscription_id, &why).await?;
            }
        }
        tx.commit().await.map_err(pg)
    }

    async fn release_leases(&self, ids: Vec<i64>) -> StoreResult<()> {
        let c = self.pool.get().await?;
        c.execute("UPDATE deliveries SET lease_until = NULL WHERE id = ANY($1)", &[&ids]).await.map_err(pg)?;
        Ok(())
    }

    async fn list_deliveries(&self, account_id: i64, q: DeliveryQuery) -> StoreResult<(i64, Vec<DeliveryRecord>)> {
        let c = self.pool.get().await?;
        let mut f = Filter::default();
        f.and("account_id = $?", account_id);
        if let Some(s) = q.subscription_id {
            f.and("subscription_id = $?", s);
        }
        if let Some(s) = q.state.clone() {
            f.and("state = $?", s);
        }
        if let Some(t) = q.since {
            f.and("created_at >= $?", t);
        }
        let total: i64 = c
            .query_one(&format!("SELECT count(*) FROM deliveries WHERE {}", f.sql), &f.params())
            .await
            .map_err(pg)?
            .get(0);
        let (l, o) = (f.next(), f.next() + 1);
        let mut params = f.params();
        params.push(&q.limit);
        params.push(&q.offset);
        let rows = c
            .query(
                &format!(
                    "SELECT id, msg_id, subscription_id, target_url, event_count, state, tries, next_attempt_at, created_at, \
                     delivered_at, last_error FROM deliveries WHERE {} ORDER BY id DESC LIMIT ${l} OFFSET ${o}",
                    f.sql
                ),
                &params,
            )
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let state: String = r.get(5);
            let id: i64 = r.get(0);
            let attempts = c
                .query(
                    "SELECT at, status_code, error, latency_ms, response FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
                    &[&id],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|t| AttemptRecord {
                    at: t.get(0),
                    status_code: t.get::<_, Option<i32>>(1).map(|c| c as u16),
                    error: t.get(2),
                    latency_ms: t.get(3),
                    response: t.get(4),
                })
                .collect();
            out.push(DeliveryRecord {
                id,
                msg_id: r.get(1),
                subscription_id: r.get(2),
                target_url: r.get(3),
                event_count: r.get(4),
                next_attempt_at: if state == "pending" { r.get(7) } else { None },
                state,
                tries: r.get(6),
                created_at: r.get(8),
                delivered_at: r.get(9),
                last_error: r.get(10),
                attempts,
            });
        }
        Ok((total, out))
    }

    async fn replay_delivery(&self, account_id: i64, id: i64, now: Millis) -> StoreResult<()> {
        let c = self.pool.get().await?;
        let sub: i64 = c
            .query_opt("SELECT subscription_id FROM deliveries WHERE id = $1 AND account_id = $2", &[&id, &account_id])
            .await
            .map_err(pg)?
            .ok_or(StoreError::NotFound("delivery"))?
            .get(0);
        load_subscription(&*c, account_id, sub).await.map_err(|_| {
            StoreError::Invalid("the subscription of this delivery was removed; subscribe again".into())
        })?;
        c.execute(
            "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = $2, lease_until = NULL WHERE id = $1",
            &[&id, &now],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn replay_failed(&self, account_id: i64, subscription_id: i64, now: Millis) -> StoreResult<i64> {
        let c = self.pool.get().await?;
        load_subscription(&*c, account_id, subscription_id).await?;
        let n = c
            .execute(
                "UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = $2, lease_until = NULL \
                 WHERE subscription_id = $1 AND state = 'failed'",
                &[&subscription_id, &now],
            )
            .await
            .map_err(pg)?;
        Ok(n as i64)
    }

    async fn subscription(&self, account_id: i64, id: i64) -> StoreResult<Subscription> {
        load_subscription(&*self.pool.get().await?, account_id, id).await
    }

    async fn set_subscription_status(&self, account_id: i64, id: i64, status: &str) -> StoreResult<Subscription> {
        let c = self.pool.get().await?;
        load_subscription(&*c, account_id, id).await?;
        c.execute(
            "UPDATE subscriptions SET status = $2, failing_since = CASE WHEN $2 = 'active' THEN NULL ELSE failing_since END WHERE id = $1",
            &[&id, &status],
        )
        .await
        .map_err(pg)?;
        load_subscription(&*c, account_id, id).await
    }

    async fn set_subscription_secret(&self, account_id: i64, id: i64, secret: String) -> StoreResult<Subscription> {
        let c = self.pool.get().await?;
        load_subscription(&*c, account_id, id).await?;
        c.execute("UPDATE subscriptions SET secret = $2 WHERE id = $1", &[&id, &secret]).await.map_err(pg)?;
        load_subscription(&*c, account_id, id).await
    }

    async fn add_test_delivery(
        &self,
        account_id: i64,
        subscription_id: i64,
        body: String,
        now: Millis,
    ) -> StoreResult<i64> {
        let c = self.pool.get().await?;
        let sub = load_subscription(&*c, account_id, subscription_id).await?;
        let r = c
            .query_one(
                "INSERT INTO deliveries (msg_id, account_id, subscription_id, target_url, event_count, body, next_attempt_at, \
                 created_at, oldest_event_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $6) RETURNING id",
                &[&new_msg_id(), &account_id, &subscription_id, &sub.target_url, &body, &now],
            )
            .await
            .map_err(pg)?;
        Ok(r.get(0))
    }

    async fn backlog(&self) -> StoreResult<Vec<Backlog>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT s.id, \
                   (SELECT count(*) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor) \
                   + (SELECT coalesce(sum(event_count), 0) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending')::bigint, \
                   LEAST((SELECT min(occurred_at) FROM events e WHERE e.account_id = s.account_id AND e.id > s.cursor), \
                         (SELECT min(oldest_event_at) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending')) \
                 FROM subscriptions s ORDER BY s.id",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|r| Backlog { subscription_id: r.get(0), events: r.get(1), oldest_at: r.get(2) }).collect())
    }

    async fn link_keys(&self) -> StoreResult<Vec<LinkKey>> {
        let c = self.pool.get().await?;
        let rows = c.query("SELECT id, secret, created_at FROM link_keys ORDER BY id", &[]).await.map_err(pg)?;
        Ok(rows.iter().map(|r| LinkKey { id: r.get(0), secret: r.get(1), created_at: r.get(2) }).collect())
    }

    async fn add_link_key(&self, secret: Vec<u8>) -> StoreResult<LinkKey> {
        let c = self.pool.get().await?;
        let now = now_millis();
        let r = c
            .query_one("INSERT INTO link_keys (secret, created_at) VALUES ($1, $2) RETURNING id", &[&secret, &now])
            .await
            .map_err(pg)?;
        Ok(LinkKey { id: r.get(0), secret, created_at: now })
    }

    async fn remove_link_key(&self, id: i64) -> StoreResult<()> {
        let c = self.pool.get().await?;
        if c.execute("DELETE FROM link_keys WHERE id = $1", &[&id]).await.map_err(pg)? == 0 {
            return Err(StoreError::NotFound("link key"));
        }
        Ok(())
    }

    async fn close(&self) {
        // Every click answered was committed first; idle connections close when the store is dropped.
        self.pool.idle.lock().unwrap().clear();
    }
}

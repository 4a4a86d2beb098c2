//! The click path's end on PostgreSQL: group commit on a connection of its own, one
//! `click_groups` row per group; settling later takes the groups into `clicks`.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::Client;

use super::pool::{pg, Param, Pool};
use crate::store::error::StoreResult;
use crate::store::records::NewClick;
use crate::store::schedule::{ClickAdmission, LastClickCommit};

pub(super) type ClickWaiter = (NewClick, oneshot::Sender<StoreResult<()>>);

/// How many group INSERTs may be on the wire at once, pipelined on the click connection.
const CLICK_PIPELINE: usize = 2;

/// A group this big goes on the wire at once; a smaller one waits while another is on the wire,
/// gathering the clicks that arrive meanwhile, and goes when it fills up or that one commits
/// (Nagle's rule, for commits). Each commit costs PostgreSQL ~75 µs of CPU whatever its size,
/// each click in it ~0.8 µs (pgbench, one connection), and under load that CPU is what limits
/// the click path. 24 gave the least PostgreSQL CPU per click of the sizes tried (bench/RESULTS.md).
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
/// a flush whatever its size. While settling is behind, a group waits for its admission.
pub(super) async fn click_writer(
    pool: Arc<Pool>,
    mut rx: mpsc::UnboundedReceiver<ClickWaiter>,
    last_commit: Arc<LastClickCommit>,
    admission: Arc<ClickAdmission>,
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
        admission.admit(batch.len()).await;
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
pub(super) async fn take_in_groups(c: &Client, limit: i64) -> StoreResult<u64> {
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
pub(super) async fn by_index(c: &mut Client) -> StoreResult<tokio_postgres::Transaction<'_>> {
    let tx = c.transaction().await.map_err(pg)?;
    tx.batch_execute(
        "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off",
    )
    .await
    .map_err(pg)?;
    Ok(tx)
}

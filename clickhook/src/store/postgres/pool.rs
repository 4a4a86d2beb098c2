//! Connections: a small pool driven on a runtime of its own, errors, and how statements run.

use std::sync::Mutex;

use tokio::sync::Semaphore;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};

use crate::store::error::{StoreError, StoreResult};
use crate::store::lists::{Arg, Dialect, Paged, Where};
use crate::store::rows::{Columns, Value};

pub(super) const DIALECT: Dialect = Dialect { in_ids: "{} = ANY(?)", yes: "TRUE", like: "ILIKE" };

pub(super) type Param<'a> = &'a (dyn ToSql + Sync);

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

pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(db.message().to_string());
        }
        if db.code() == &tokio_postgres::error::SqlState::DISK_FULL {
            return StoreError::CannotWrite(db.message().to_string());
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

pub(super) struct Pool {
    pub(super) config: tokio_postgres::Config,
    pub(super) schema: Option<String>,
    pub(super) idle: Mutex<Vec<Client>>,
    pub(super) permits: Semaphore,
}

pub(super) struct Conn<'a> {
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
    pub(super) async fn connect(&self) -> StoreResult<Client> {
        self.connect_on(io_runtime().handle()).await
    }

    /// A new connection whose socket is driven on `runtime`.
    pub(super) async fn connect_on(&self, runtime: &tokio::runtime::Handle) -> StoreResult<Client> {
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

    pub(super) async fn get(&self) -> StoreResult<Conn<'_>> {
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

/// Anything that runs statements: a pooled client or a transaction.
pub(super) trait Q: tokio_postgres::GenericClient + Sync {}
impl<T: tokio_postgres::GenericClient + Sync> Q for T {}

impl Columns for Row {
    fn value(&self, i: usize) -> StoreResult<Value> {
        let ty = self.columns()[i].type_();
        let v = if ty == &Type::INT8 {
            self.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int))
        } else if ty == &Type::INT4 {
            self.try_get::<_, Option<i32>>(i).map(|v| v.map(|v| Value::Int(v.into())))
        } else if ty == &Type::BOOL {
            self.try_get::<_, Option<bool>>(i).map(|v| v.map(Value::Bool))
        } else if ty == &Type::BYTEA {
            self.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map(Value::Bytes))
        } else {
            self.try_get::<_, Option<String>>(i).map(|v| v.map(Value::Text))
        };
        Ok(v.map_err(pg)?.unwrap_or(Value::Null))
    }
}

pub(super) async fn all<T>(
    c: &impl Q,
    sql: &str,
    params: &[Param<'_>],
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    c.query(sql, params).await.map_err(pg)?.iter().map(|r| map(r)).collect()
}

pub(super) async fn one<T>(
    c: &impl Q,
    sql: &str,
    params: &[Param<'_>],
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    c.query_opt(sql, params).await.map_err(pg)?.as_ref().map(|r| map(r)).transpose()
}

pub(super) async fn exec(c: &impl Q, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
    c.execute(sql, params).await.map_err(pg)
}

/// A list filter's `?` placeholders numbered `$1`, `$2`, … in order.
pub(super) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(ch);
        }
    }
    out
}

/// A list filter's values, in order.
pub(super) fn bind(w: &Where) -> Vec<Box<dyn ToSql + Sync + Send>> {
    w.args
        .iter()
        .map(|a| -> Box<dyn ToSql + Sync + Send> {
            match a {
                Arg::Int(v) => Box::new(*v),
                Arg::Text(s) => Box::new(s.clone()),
                Arg::Ints(ids) => Box::new(ids.clone()),
            }
        })
        .collect()
}

/// The total a paged list counts, then one page of it.
pub(super) async fn page<T>(
    c: &impl Q,
    list: &Paged,
    (limit, offset): (i64, i64),
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<(i64, Vec<T>)> {
    let values = bind(&list.filter);
    let mut params: Vec<Param> = values.iter().map(|v| v.as_ref() as Param).collect();
    let total = c.query_one(&numbered(&list.count), &params).await.map_err(pg)?.get(0);
    params.push(&limit);
    params.push(&offset);
    Ok((total, all(c, &numbered(&list.page), &params, map).await?))
}

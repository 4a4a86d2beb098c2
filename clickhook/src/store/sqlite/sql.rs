//! How SQLite statements run here: errors, rows as [`Columns`], and list filters bound.

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, Params, Row};

use crate::store::error::{StoreError, StoreResult};
use crate::store::lists::{Arg, Dialect, Paged, Where};
use crate::store::rows::{Columns, Value};

pub(super) const DIALECT: Dialect =
    Dialect { in_ids: "{} IN (SELECT value FROM json_each(?))", yes: "1", like: "LIKE" };

pub(super) fn db_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        // A taken key is the caller's conflict; any other broken constraint (a check, a
        // trigger) is ours, as on PostgreSQL.
        Some(rusqlite::ErrorCode::ConstraintViolation) if taken_key(&e) => StoreError::Conflict(e.to_string()),
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::CannotWrite("the disk is full".into()),
        Some(rusqlite::ErrorCode::SystemIoFailure) => StoreError::CannotWrite(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

fn taken_key(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == SQLITE_CONSTRAINT_UNIQUE || f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl Columns for Row<'_> {
    fn value(&self, i: usize) -> StoreResult<Value> {
        Ok(match self.get_ref(i).map_err(db_err)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Text(t) => {
                Value::Text(String::from_utf8(t.to_vec()).map_err(|e| StoreError::corrupt("text", e))?)
            }
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            ValueRef::Real(f) => return Err(StoreError::corrupt("number", format!("{f} is not an integer"))),
        })
    }
}

/// Every row of a cached statement, mapped.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut st = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = st.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        out.push(map(r)?);
    }
    Ok(out)
}

/// The first row of a cached statement, mapped, if there is one.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut st = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = st.query(params).map_err(db_err)?;
    rows.next().map_err(db_err)?.map(|r| map(r)).transpose()
}

/// A single value, such as a count.
pub(super) fn value<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<T> {
    conn.prepare_cached(sql).and_then(|mut st| st.query_row(params, |r| r.get(0))).map_err(db_err)
}

pub(super) fn exec(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    conn.prepare_cached(sql).and_then(|mut st| st.execute(params)).map_err(db_err)
}

pub(super) fn exists(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<bool> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.query_row(params, |r| r.get(0)).optional())
        .map_err(db_err)
        .map(|v: Option<bool>| v.unwrap_or(false))
}

/// Ids bound as one value: a JSON array that `json_each` reads.
pub(super) fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// A list filter's values, bound in order, then `extra` ones (limit, offset).
pub(super) fn bind(w: &Where, extra: &[i64]) -> Vec<SqlValue> {
    let mut out: Vec<SqlValue> = w
        .args
        .iter()
        .map(|a| match a {
            Arg::Int(v) => SqlValue::Integer(*v),
            Arg::Text(s) => SqlValue::Text(s.clone()),
            Arg::Ints(ids) => SqlValue::Text(ids_json(ids)),
        })
        .collect();
    out.extend(extra.iter().map(|v| SqlValue::Integer(*v)));
    out
}

/// The total a paged list counts, then one page of it.
pub(super) fn page<T>(
    conn: &Connection,
    list: &Paged,
    (limit, offset): (i64, i64),
    map: impl Fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<(i64, Vec<T>)> {
    let total = value(conn, &list.count, rusqlite::params_from_iter(bind(&list.filter, &[])))?;
    let items = all(conn, &list.page, rusqlite::params_from_iter(bind(&list.filter, &[limit, offset])), map)?;
    Ok((total, items))
}

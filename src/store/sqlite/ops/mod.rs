//! The store's operations on SQLite, an area a file. Writes run on the writer thread (which
//! excludes every other writer, so reading a row there is as good as locking it); reads on the
//! caller's thread.

mod audit;
mod clients;
mod console;
mod decisions;
mod outbox;
mod people;
mod receipts;
mod requests;

use async_trait::async_trait;
use rusqlite::{Connection, Params, Row, Statement};
use tokio::sync::broadcast;

use super::super::rows::{chain, positions as by_name, Columns, Pending, Positions};
use super::super::{Arrivals, Store, StoreResult};
use super::SqliteStore;
use crate::clock::UnixTime;
use crate::domain::NewEvent;

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.engine
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    fn subscribe(&self) -> broadcast::Receiver<crate::store::Change> {
        self.changes.subscribe()
    }

    fn arrivals(&self) -> Option<Arrivals> {
        Some(self.engine.arrivals())
    }

    fn commit_latency(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        Some(self.engine.commits())
    }
}

impl SqliteStore {
    /// One conditional UPDATE and, when it changed a row, its event, in one transaction: the
    /// shape of an operator's change. Returns whether it changed a row.
    pub(super) async fn update_audited(
        &self,
        sql: &'static str,
        params: Vec<rusqlite::types::Value>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        self.engine
            .write(move |conn| {
                let done = exec(conn, sql, rusqlite::params_from_iter(&params))? == 1;
                if done {
                    append(conn, std::slice::from_ref(&event), now)?;
                }
                Ok(super::Outcome::Keep(done))
            })
            .await
    }
}

/// A row type read by column name (`rows::from_row!`).
pub(in crate::store) trait FromRow: Columns + Sized {
    /// Reads a row, taking the position of each of its columns in turn from `at`.
    fn from_row(row: &Row<'_>, at: &mut Positions<'_>) -> rusqlite::Result<Self>;
}

/// The positions of `T`'s columns among `stmt`'s, found by name as SQLite compares them.
fn positions<T: FromRow>(stmt: &Statement<'_>) -> rusqlite::Result<Vec<usize>> {
    let have = stmt.column_names();
    by_name::<T>(&have, "", |h, n| h.eq_ignore_ascii_case(n))
        .map_err(|name| rusqlite::Error::InvalidColumnName(name.to_owned()))
}

/// The next column of a row as `from_row` reads it.
pub(in crate::store) fn column<T: rusqlite::types::FromSql>(
    row: &Row<'_>,
    at: &mut Positions<'_>,
) -> rusqlite::Result<T> {
    row.get(
        *at.next()
            .ok_or(rusqlite::Error::InvalidColumnIndex(usize::MAX))?,
    )
}

impl<A: FromRow, B: FromRow> FromRow for (A, B) {
    fn from_row(row: &Row<'_>, at: &mut Positions<'_>) -> rusqlite::Result<Self> {
        Ok((A::from_row(row, at)?, B::from_row(row, at)?))
    }
}

/// Every row of a statement.
pub(super) fn all<T: FromRow>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let at = positions::<T>(&stmt)?;
    let rows = stmt.query_map(params, |row| T::from_row(row, &mut at.iter()))?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

/// The first row of a statement, if any.
pub(super) fn first<T: FromRow>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let at = positions::<T>(&stmt)?;
    let mut rows = stmt.query(params)?;
    Ok(match rows.next()? {
        Some(row) => Some(T::from_row(row, &mut at.iter())?),
        None => None,
    })
}

/// Rows changed by a statement.
pub(super) fn exec(conn: &Connection, sql: &str, params: impl Params) -> StoreResult<usize> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Appends events to the audit chain inside the writer's transaction. The writer excludes
/// every other writer, so reading the head is as good as locking it.
pub(super) fn append(conn: &Connection, events: &[NewEvent], now: UnixTime) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let (seq, hash): (i64, Vec<u8>) = conn
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (seq, prev) = super::super::rows::head(seq, hash)?;
    let pending = events.iter().map(|e| Pending::of(e, now)).collect();
    let chained = chain(pending, seq, prev)?;
    for carried in events.iter().filter_map(|e| e.carries.as_deref()) {
        console::carried_out(conn, carried, now)?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_events (seq, at, kind, actor, approval_id, data, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for e in &chained {
        insert.execute(rusqlite::params![
            e.seq,
            e.at,
            e.kind,
            e.actor,
            e.approval_id,
            e.data,
            e.prev_hash.as_slice(),
            e.hash.as_slice()
        ])?;
    }
    if let Some(last) = chained.last() {
        exec(
            conn,
            "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1",
            rusqlite::params![last.seq, last.hash.as_slice()],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Pair {
        a: i64,
        b: String,
    }
    struct Other {
        c: Option<i64>,
    }
    crate::store::rows::from_row! {
        Pair { a, b }
        Other { c }
    }

    fn conn() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (c INTEGER, b TEXT NOT NULL, a INTEGER NOT NULL); \
             INSERT INTO t VALUES (NULL, 'one', 1), (7, 'two', 2);",
        )
        .unwrap();
        conn
    }

    /// Columns are found by name whatever their order and case in the statement, for each row,
    /// and a pair reads its two types side by side.
    #[test]
    fn rows_are_read_by_column_name() {
        let conn = conn();
        let rows = all::<(Other, Pair)>(&conn, "SELECT b, C, a FROM t ORDER BY a", []).unwrap();
        let read: Vec<_> = rows.iter().map(|(o, p)| (o.c, p.a, p.b.as_str())).collect();
        assert_eq!(read, [(None, 1, "one"), (Some(7), 2, "two")]);
        let one = first::<Pair>(&conn, "SELECT * FROM t WHERE a = 2", [])
            .unwrap()
            .unwrap();
        assert_eq!((one.a, one.b.as_str()), (2, "two"));
    }

    /// A statement without a column the type reads is an error, not a shifted read.
    #[test]
    fn a_missing_column_is_an_error() {
        let conn = conn();
        assert!(first::<Pair>(&conn, "SELECT b FROM t", []).is_err());
        assert!(all::<Other>(&conn, "SELECT a, b FROM t", []).is_err());
    }
}

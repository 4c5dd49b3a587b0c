//! What a write transaction needs from a database, so that a transaction's logic is written
//! once and runs either on a sqlx transaction (PostgreSQL, and SQLite outside the hot path) or
//! on the SQLite writer thread ([`super::sqlite`]), where every statement is a direct call
//! instead of a round trip to another thread.

use sqlx::any::AnyRow;
use sqlx::Any;

use super::{StoreError, StoreResult};

/// A bound parameter. The SQL names them `$1`, `$2`, … on both databases.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    OptText(Option<&'a str>),
    Blob(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}
impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(v)
    }
}
impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Blob(v)
    }
}

/// Builds an argument list: `args![a, b, c]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::store::sql::Arg::from($v)),*] };
}
pub(super) use args;

/// A column value of a type the store reads.
pub(super) trait Col: Sized {
    fn from_any(row: &AnyRow, col: &str) -> Result<Self, sqlx::Error>;
    fn from_value(v: &rusqlite::types::Value) -> Option<Self>;
}

macro_rules! col {
    ($t:ty, $($pat:pat => $out:expr),+) => {
        impl Col for $t {
            fn from_any(row: &AnyRow, col: &str) -> Result<Self, sqlx::Error> {
                sqlx::Row::try_get(row, col)
            }
            fn from_value(v: &rusqlite::types::Value) -> Option<Self> {
                use rusqlite::types::Value as V;
                match v {
                    $($pat => $out,)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}
col!(i64, V::Integer(i) => Some(*i));
col!(String, V::Text(s) => Some(s.clone()));
col!(Vec<u8>, V::Blob(b) => Some(b.clone()));
col!(Option<i64>, V::Integer(i) => Some(Some(*i)), V::Null => Some(None));
col!(Option<String>, V::Text(s) => Some(Some(s.clone())), V::Null => Some(None));

/// A result row, from either side.
pub(super) trait Columns {
    fn col<T: Col>(&self, name: &str) -> StoreResult<T>;
}

impl Columns for AnyRow {
    fn col<T: Col>(&self, name: &str) -> StoreResult<T> {
        T::from_any(self, name).map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
    }
}

/// A row read by a direct SQLite connection, owned so it outlives its statement.
#[derive(Debug)]
pub(super) struct OwnedRow {
    /// The statement's column names, shared by its rows.
    pub(super) names: std::sync::Arc<[String]>,
    pub(super) values: Vec<rusqlite::types::Value>,
}

impl Columns for OwnedRow {
    fn col<T: Col>(&self, name: &str) -> StoreResult<T> {
        self.names
            .iter()
            .zip(&self.values)
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| T::from_value(v))
            .ok_or_else(|| StoreError::Corrupt(format!("column {name}: missing or mistyped")))
    }
}

/// A row from either side, for reads that take the direct path when there is one.
pub(super) enum Row {
    Any(AnyRow),
    Owned(OwnedRow),
}

impl Columns for Row {
    fn col<T: Col>(&self, name: &str) -> StoreResult<T> {
        match self {
            Row::Any(r) => r.col(name),
            Row::Owned(r) => r.col(name),
        }
    }
}

/// The statements a transaction's logic issues. The futures of the writer thread's
/// implementation never wait, which is what lets it run them without an async runtime.
pub(super) trait WriteTx: Send {
    type Row: Columns + Send;
    /// Whether this transaction already excludes every other writer (as on the SQLite writer
    /// thread), so that reading a row is as good as locking it.
    const EXCLUSIVE: bool = false;
    /// Rows changed.
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64>;
    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<Self::Row>>;
    async fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<Self::Row>> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }
    async fn fetch_one(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Self::Row> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from {sql}")))
    }
}

pub(super) fn bind<'q>(
    sql: &'q str,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    args.iter().fold(sqlx::query(sql), |q, a| match *a {
        Arg::Int(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::OptText(v) => q.bind(v),
        Arg::Blob(v) => q.bind(v),
    })
}

impl WriteTx for super::Write {
    type Row = AnyRow;
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind(sql, args).execute(&mut **self).await?.rows_affected())
    }
    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<AnyRow>> {
        Ok(bind(sql, args).fetch_all(&mut **self).await?)
    }
    async fn fetch_optional(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Option<AnyRow>> {
        Ok(bind(sql, args).fetch_optional(&mut **self).await?)
    }
}

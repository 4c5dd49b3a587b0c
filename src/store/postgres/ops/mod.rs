//! The store's operations on PostgreSQL, an area a file.

mod audit;
mod clients;
mod console;
mod decisions;
mod outbox;
mod people;
mod receipts;
mod requests;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Column, PgConnection, Row};
use tokio::sync::broadcast;

use super::super::rows::{chain, head, positions, Columns, Pending, Positions};
use super::super::{Store, StoreError, StoreResult};
use super::{PgStore, CHANNEL};
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, NewEvent};

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.conns.get().await?)
            .await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<crate::store::Change> {
        self.changes.subscribe()
    }

    fn commit_latency(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        Some(self.commits.clone())
    }
}

/// A row type read by column name (`rows::from_row!`), for statements that join tables whose
/// columns share names; the others use `sqlx::FromRow`.
pub(in crate::store) trait FromPg: Columns + Sized {
    /// Reads a row, taking the position of each of its columns in turn from `at`.
    fn from_pg(row: &PgRow, at: &mut Positions<'_>) -> Result<Self, sqlx::Error>;
}

/// The next column of a row as `from_pg` reads it.
pub(in crate::store) fn column<'r, T>(
    row: &'r PgRow,
    at: &mut Positions<'_>,
) -> Result<T, sqlx::Error>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    let index = *at.next().ok_or(sqlx::Error::ColumnIndexOutOfBounds {
        index: usize::MAX,
        len: row.len(),
    })?;
    row.try_get(index)
}

/// The part of a joined row whose columns are aliased `{alias}.{name}` (`rows::aliased`), or
/// `None` when the join found no row for it (its `id` is NULL).
pub(super) fn part<T: FromPg>(row: &PgRow, alias: &str) -> StoreResult<Option<T>> {
    let prefix = format!("{alias}.");
    let id: Option<String> = row.try_get(format!("{prefix}id").as_str())?;
    if id.is_none() {
        return Ok(None);
    }
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    let at = positions::<T>(&names, &prefix, |h, n| h == n)
        .map_err(|name| StoreError::Corrupt(format!("no column {prefix}{name}")))?;
    Ok(Some(T::from_pg(row, &mut at.iter())?))
}

/// Records events inside the caller's transaction, for the chainer to put on the chain once it
/// has committed ([`PgStore::chain_pending`]): no row every writer must lock.
pub(super) async fn append(
    tx: &mut PgConnection,
    events: &[NewEvent],
    now: UnixTime,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    for carried in events.iter().filter_map(|e| e.carries.as_deref()) {
        console::carried_out(&mut *tx, carried, now).await?;
    }
    let pending: Vec<Pending> = events.iter().map(|e| Pending::of(e, now)).collect();
    let mut insert =
        sqlx::QueryBuilder::new("INSERT INTO audit_pending (at, kind, actor, approval_id, data) ");
    insert.push_values(&pending, |mut b, e| {
        b.push_bind(e.at)
            .push_bind(&e.kind)
            .push_bind(&e.actor)
            .push_bind(&e.approval_id)
            .push_bind(e.data.to_string());
    });
    insert.build().execute(&mut *tx).await?;
    Ok(())
}

/// Events chained in one transaction at most.
const CHAIN_BATCH: i64 = 1000;

impl PgStore {
    /// Commits a transaction that recorded events, and wakes the chainer for them.
    pub(super) async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> StoreResult<()> {
        let started = std::time::Instant::now();
        tx.commit().await?;
        self.commits.observe(started.elapsed().as_secs_f64());
        self.chainer.notify_one();
        Ok(())
    }

    /// An event recorded by a statement that committed on its own: logged, and chained soon.
    pub(super) fn recorded(&self, event: &NewEvent, pending: &Pending) {
        pending.log(event.kind.is_security());
        self.chainer.notify_one();
    }

    /// Commits a change that could make what replicas keep in memory wrong: every replica's
    /// cache is told by the notice, this one's at once as well (its own notice comes back
    /// a moment later, and the change must hold on its very next request).
    pub(super) async fn commit_invalidating(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> StoreResult<()> {
        super::cache::invalidate(&mut tx).await?;
        self.commit(tx).await?;
        self.cache.invalidate();
        Ok(())
    }

    /// Gives every committed, unchained event its place in the hash chain, in the order they
    /// were recorded, a batch a transaction. The head row's lock makes replicas take turns.
    /// The background chainer leaves the work to one that holds it (`wait` false); a reader
    /// of the chain waits for it (a few seconds at most: a chainer that stalled holding the
    /// lock must not stall every reader), so that it reads everything recorded before it.
    pub(crate) async fn chain_pending(&self, wait: bool) -> StoreResult<usize> {
        let mut chained = 0;
        loop {
            let mut conn = self.conns.get().await?;
            let mut tx = conn.begin().await?;
            let lock = if wait {
                sqlx::query("SET LOCAL lock_timeout = '5s'")
                    .execute(&mut *tx)
                    .await?;
                "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
            } else {
                "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE SKIP LOCKED"
            };
            let row = sqlx::query(lock).fetch_optional(&mut *tx).await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Ok(chained);
            };
            let (seq, prev) = head(row.try_get("seq")?, row.try_get("hash")?)?;
            let rows = sqlx::query(
                "SELECT id, at, kind, actor, approval_id, data FROM audit_pending ORDER BY id LIMIT $1",
            )
            .bind(CHAIN_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                return Ok(chained);
            }
            let mut ids = Vec::with_capacity(rows.len());
            let mut pending = Vec::with_capacity(rows.len());
            for r in &rows {
                ids.push(r.try_get::<i64, _>("id")?);
                let data: String = r.try_get("data")?;
                pending.push(Pending {
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    approval_id: r.try_get("approval_id")?,
                    data: serde_json::from_str(&data)
                        .map_err(|e| StoreError::Corrupt(format!("pending audit data: {e}")))?,
                });
            }
            let n = pending.len();
            let events = chain(pending, seq, prev)?;
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO audit_events (seq, at, kind, actor, approval_id, data, prev_hash, hash) ",
            );
            insert.push_values(&events, |mut b, e| {
                b.push_bind(e.seq)
                    .push_bind(e.at)
                    .push_bind(&e.kind)
                    .push_bind(&e.actor)
                    .push_bind(&e.approval_id)
                    .push_bind(&e.data)
                    .push_bind(e.prev_hash.as_slice())
                    .push_bind(e.hash.as_slice());
            });
            insert.build().execute(&mut *tx).await?;
            sqlx::query("DELETE FROM audit_pending WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            if let Some(last) = events.last() {
                sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(last.seq)
                    .bind(last.hash.as_slice())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            chained += n;
            if i64::try_from(n).unwrap_or(i64::MAX) < CHAIN_BATCH {
                return Ok(chained);
            }
        }
    }

    /// One conditional UPDATE and, when it changed a row, its event and a notice to every
    /// replica's cache, in one transaction: the shape of an operator's change. Returns whether
    /// it changed a row.
    pub(super) async fn update_audited(
        &self,
        update: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let done = update.execute(&mut *tx).await?.rows_affected() == 1;
        if !done {
            tx.rollback().await?;
            return Ok(false);
        }
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit_invalidating(tx).await?;
        Ok(true)
    }
}

/// Tells every replica (this one included) that a request changed, once the transaction
/// commits: a notification inside a transaction is delivered only on commit.
pub(super) async fn announce(tx: &mut PgConnection, id: ApprovalId) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

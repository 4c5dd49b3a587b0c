//! The store's operations on PostgreSQL, an area a file.

mod audit;
mod clients;
mod decisions;
mod people;
mod receipts;
mod requests;

use async_trait::async_trait;
use sqlx::{PgConnection, Row};
use tokio::sync::broadcast;

use super::super::rows::{chain, head};
use super::super::{Store, StoreResult};
use super::{PgStore, CHANNEL};
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, NewEvent};

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ApprovalId> {
        self.changes.subscribe()
    }
}

/// Appends events to the audit chain inside the caller's transaction. Taking the head row's
/// lock first orders appends across replicas; it is held until commit, so appends go last.
pub(super) async fn append(
    tx: &mut PgConnection,
    events: &[NewEvent],
    now: UnixTime,
) -> StoreResult<()> {
    let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
    if n == 0 {
        return Ok(());
    }
    let row = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
    let (last, prev) = head(row.try_get("seq")?, row.try_get("hash")?)?;
    let chained = chain(events, last - n, prev, now)?;
    let mut insert = sqlx::QueryBuilder::new(
        "INSERT INTO audit_events (seq, at, kind, actor, approval_id, data, prev_hash, hash) ",
    );
    insert.push_values(&chained, |mut b, e| {
        b.push_bind(e.seq)
            .push_bind(now)
            .push_bind(e.kind)
            .push_bind(&e.actor)
            .push_bind(&e.approval_id)
            .push_bind(&e.data)
            .push_bind(e.prev_hash.as_slice())
            .push_bind(e.hash.as_slice());
    });
    insert.build().execute(&mut *tx).await?;
    if let Some(last) = chained.last() {
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(last.hash.as_slice())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

impl PgStore {
    /// One conditional UPDATE and, when it changed a row, its event, in one transaction: the
    /// shape of an operator's change. Returns whether it changed a row.
    pub(super) async fn update_audited(
        &self,
        update: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = update.execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            append(&mut tx, std::slice::from_ref(&event), now).await?;
        }
        tx.commit().await?;
        Ok(done)
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

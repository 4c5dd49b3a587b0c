use async_trait::async_trait;
use sqlx::Row;

use super::super::super::rows::{head, EventRow, EVENT_COLS};
use super::super::super::{AuditStore, StoreResult};
use super::super::PgStore;
use super::append;
use crate::audit::AuditEvent;
use crate::clock::UnixTime;
use crate::domain::NewEvent;

#[async_trait]
impl AuditStore for PgStore {
    #[tracing::instrument(skip_all, fields(kind = %event.kind))]
    async fn record(&self, event: NewEvent, now: UnixTime) -> StoreResult<()> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit(tx).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn audit_page(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditEvent>> {
        // Whatever was recorded before this read is on the chain when it is read.
        self.chain_pending(true).await?;
        sqlx::query_as::<_, EventRow>(&format!(
            "SELECT {EVENT_COLS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.conns.get().await?)
        .await?
        .into_iter()
        .map(EventRow::into_domain)
        .collect()
    }

    async fn audit_head(&self) -> StoreResult<(i64, [u8; 32])> {
        self.chain_pending(true).await?;
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *self.conns.get().await?)
            .await?;
        head(row.try_get("seq")?, row.try_get("hash")?)
    }
}

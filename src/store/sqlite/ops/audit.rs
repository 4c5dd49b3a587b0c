use async_trait::async_trait;
use rusqlite::params;

use super::super::super::rows::{head, EventRow, EVENT_COLS};
use super::super::super::{AuditStore, StoreResult};
use super::super::{Outcome, SqliteStore};
use super::{all, append};
use crate::audit::AuditEvent;
use crate::clock::UnixTime;
use crate::domain::NewEvent;

#[async_trait]
impl AuditStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(kind = %event.kind))]
    async fn record(&self, event: NewEvent, now: UnixTime) -> StoreResult<()> {
        self.engine
            .write(move |conn| {
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(()))
            })
            .await
    }

    #[tracing::instrument(skip(self))]
    async fn audit_page(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditEvent>> {
        self.engine
            .read(|conn| {
                all::<EventRow>(conn,
                    &format!("SELECT {EVENT_COLS} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                    params![after, limit])
            })?
            .into_iter()
            .map(EventRow::into_domain)
            .collect()
    }

    async fn audit_head(&self) -> StoreResult<(i64, [u8; 32])> {
        let (seq, hash) = self.engine.read(|conn| {
            Ok(
                conn.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?,
            )
        })?;
        head(seq, hash)
    }
}

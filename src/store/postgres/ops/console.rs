use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use super::super::super::console::{
    ChangeRecord, ConsoleStore, CARRIED_OUT_ALREADY, ERASE_SECRET, INSERT_CARRIED, RECORD_COLS,
    SPEND_RECEIPT, TAKE_SECRET, UNCARRIED,
};
use super::super::super::{StoreError, StoreResult};
use super::super::PgStore;
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, CarriedOut};

/// Records a console change in the transaction that made it; a change recorded already fails
/// the transaction (which the caller then drops, rolling it back).
pub(super) async fn carried_out(
    tx: &mut PgConnection,
    c: &CarriedOut,
    now: UnixTime,
) -> StoreResult<()> {
    let id = c.change.to_string();
    let inserted = sqlx::query(INSERT_CARRIED)
        .bind(&id)
        .bind(now)
        .bind(c.outcome.as_ref().map(|o| o.to_string()))
        .bind(&c.failure)
        .bind(&c.sealed_secret)
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(CARRIED_OUT_ALREADY));
    }
    sqlx::query(SPEND_RECEIPT)
        .bind(&id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[async_trait]
impl ConsoleStore for PgStore {
    #[tracing::instrument(skip(self))]
    async fn change_record(&self, id: ApprovalId) -> StoreResult<Option<ChangeRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLS} FROM admin_changes WHERE approval_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *self.conns.get().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let outcome: Option<String> = row.try_get("outcome")?;
        Ok(Some(ChangeRecord {
            approval_id: id,
            carried_out_at: row.try_get("carried_out_at")?,
            outcome: outcome
                .map(|o| serde_json::from_str(&o))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("change outcome: {e}")))?,
            failure: row.try_get("failure")?,
            has_secret: row.try_get("has_secret")?,
            secret_taken_at: row.try_get("secret_taken_at")?,
        }))
    }

    #[tracing::instrument(skip(self))]
    async fn take_change_secret(
        &self,
        id: ApprovalId,
        now: UnixTime,
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query(TAKE_SECRET)
            .bind(id.to_string())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: Vec<u8> = row.try_get("sealed_secret")?;
        sqlx::query(ERASE_SECRET)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(sealed))
    }

    async fn uncarried_changes(&self, limit: i64) -> StoreResult<Vec<ApprovalId>> {
        let ids: Vec<String> = sqlx::query_scalar(UNCARRIED)
            .bind(limit)
            .fetch_all(&mut *self.conns.get().await?)
            .await?;
        ids.iter()
            .map(|t| ApprovalId::parse(t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }
}

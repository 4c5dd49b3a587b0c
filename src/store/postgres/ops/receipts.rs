use async_trait::async_trait;

use super::super::super::rows::{KeyRow, ReceiptDbRow, RECEIPT_COLS};
use super::super::super::{
    ReceiptRow, ReceiptStore, RedeemOutcome, RetireOutcome, SealedKey, SigningKeyRow, StoreResult,
};
use super::super::PgStore;
use super::append;
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, NewEvent, ReceiptId};
use crate::signing::NewSigningKey;

#[async_trait]
impl ReceiptStore for PgStore {
    #[tracing::instrument(skip(self, event))]
    async fn redeem(
        &self,
        jti: ReceiptId,
        client: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<RedeemOutcome> {
        let mut tx = self.pool.begin().await?;
        let redeemed = sqlx::query_as::<_, ReceiptDbRow>(&format!(
            "UPDATE receipts SET redeemed_at = $1, redeemed_by = $2 WHERE jti = $3 AND redeemed_at IS NULL RETURNING {RECEIPT_COLS}"
        ))
        .bind(now)
        .bind(client)
        .bind(jti.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = redeemed else {
            tx.rollback().await?;
            let existing = sqlx::query_as::<_, ReceiptDbRow>(&format!(
                "SELECT {RECEIPT_COLS} FROM receipts WHERE jti = $1"
            ))
            .bind(jti.to_string())
            .fetch_optional(&self.pool)
            .await?;
            return Ok(match existing {
                Some(row) => RedeemOutcome::AlreadyRedeemed(row.into_domain()?),
                None => RedeemOutcome::Unknown,
            });
        };
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        tx.commit().await?;
        Ok(RedeemOutcome::Redeemed(row.into_domain()?))
    }

    async fn receipt_of(&self, id: ApprovalId) -> StoreResult<Option<ReceiptRow>> {
        sqlx::query_as::<_, ReceiptDbRow>(&format!(
            "SELECT {RECEIPT_COLS} FROM receipts WHERE approval_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .map(ReceiptDbRow::into_domain)
        .transpose()
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        sqlx::query_as::<_, KeyRow>(
            "SELECT kid, public_jwk, created_at, retired_at FROM signing_keys ORDER BY generation",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(KeyRow::into_domain)
        .collect()
    }

    async fn active_key(&self) -> StoreResult<Option<SealedKey>> {
        let mut conn = self.pool.acquire().await?;
        super::decisions::active_key(&mut conn).await
    }

    #[tracing::instrument(skip_all, fields(kid = %key.kid))]
    async fn add_signing_key(
        &self,
        key: &NewSigningKey,
        only_if_none: bool,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // Take the audit head's row lock first: two replicas starting together then see each
        // other's key instead of both adding one.
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
        if only_if_none {
            let any: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)",
            )
            .fetch_one(&mut *tx)
            .await?;
            if any {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, generation, public_jwk, sealed, created_at) \
             SELECT $1, COALESCE(MAX(generation), 0) + 1, $2, $3, $4 FROM signing_keys",
        )
        .bind(&key.kid)
        .bind(key.public_jwk.to_string())
        .bind(&key.sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(skip(self, event))]
    async fn retire_key(
        &self,
        kid: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<RetireOutcome> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await?;
        let active = super::decisions::active_key(&mut tx).await?;
        if active.is_some_and(|k| k.kid == kid) {
            tx.rollback().await?;
            return Ok(RetireOutcome::InUse);
        }
        let done = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
        )
        .bind(now)
        .bind(kid)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !done {
            tx.rollback().await?;
            return Ok(RetireOutcome::NotFound);
        }
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        tx.commit().await?;
        Ok(RetireOutcome::Retired)
    }
}

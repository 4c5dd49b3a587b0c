use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::Row;

use super::super::super::rows::{KeyRow, Pending, ReceiptDbRow, RECEIPT_COLS};
use super::super::super::{
    ReceiptRow, ReceiptStore, RedeemOutcome, RetireOutcome, SealedKey, SigningKeyRow, StoreResult,
};
use super::super::PgStore;
use super::append;
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, NewEvent, ReceiptId};
use crate::signing::NewSigningKey;

/// The one conditional statement of a redemption (neither redeemed nor revoked yet, by a client
/// that is not revoked, signed with a key that is not retired), with its event.
static REDEEM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH r AS ( \
            UPDATE receipts SET redeemed_at = $1, redeemed_by = $2 \
            WHERE jti = $3 AND redeemed_at IS NULL AND revoked_at IS NULL \
              AND EXISTS (SELECT 1 FROM clients c WHERE c.name = $2 AND c.revoked_at IS NULL) \
              AND EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = receipts.kid AND k.retired_at IS NULL) \
            RETURNING {RECEIPT_COLS}), \
         e AS ( \
            INSERT INTO audit_pending (at, kind, actor, approval_id, data) \
            SELECT $1, $4, $5, r.approval_id, $6 FROM r) \
         SELECT {RECEIPT_COLS} FROM r"
    )
});

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
        // One statement, so one round trip: the receipt marked redeemed and its event.
        let e = Pending::unlogged(&event, now);
        let redeemed = sqlx::query_as::<_, ReceiptDbRow>(&REDEEM)
            .bind(now)
            .bind(client)
            .bind(jti.to_string())
            .bind(&e.kind)
            .bind(&e.actor)
            .bind(e.data.to_string())
            .fetch_optional(&mut *self.conns.get().await?)
            .await?;
        if let Some(row) = redeemed {
            self.recorded(&event, &e);
            return Ok(RedeemOutcome::Redeemed(row.into_domain()?));
        }
        // Refused: read as it stands now (after the redemption that won, if one raced it).
        let why = sqlx::query(&format!(
            "SELECT EXISTS (SELECT 1 FROM clients WHERE name = $2 AND revoked_at IS NULL) AS active, \
                    {RECEIPT_COLS} FROM (SELECT 1) one LEFT JOIN receipts r ON r.jti = $1 \
                    AND EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = r.kid AND k.retired_at IS NULL)"
        ))
        .bind(jti.to_string())
        .bind(client)
        .fetch_one(&mut *self.conns.get().await?)
        .await?;
        if !why.try_get::<bool, _>("active")? {
            return Ok(RedeemOutcome::ClientRevoked);
        }
        if why.try_get::<Option<String>, _>("jti")?.is_none() {
            return Ok(RedeemOutcome::Unknown);
        }
        let row = <ReceiptDbRow as sqlx::FromRow<_>>::from_row(&why)?.into_domain()?;
        Ok(if row.revoked_at.is_some() {
            RedeemOutcome::Revoked(row)
        } else {
            RedeemOutcome::AlreadyRedeemed(row)
        })
    }

    async fn receipt_of(&self, id: ApprovalId) -> StoreResult<Option<ReceiptRow>> {
        sqlx::query_as::<_, ReceiptDbRow>(&format!(
            "SELECT {RECEIPT_COLS} FROM receipts WHERE approval_id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *self.conns.get().await?)
        .await?
        .map(ReceiptDbRow::into_domain)
        .transpose()
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        if let Some(keys) = self.cache.keys() {
            return Ok(keys);
        }
        let generation = self.cache.generation();
        let keys = sqlx::query_as::<_, KeyRow>(
            "SELECT kid, public_jwk, created_at, retired_at FROM signing_keys ORDER BY generation",
        )
        .fetch_all(&mut *self.conns.get().await?)
        .await?
        .into_iter()
        .map(KeyRow::into_domain)
        .collect::<StoreResult<Vec<_>>>()?;
        if let Some(generation) = generation {
            self.cache.put_keys(generation, &keys);
        }
        Ok(keys)
    }

    async fn active_key(&self) -> StoreResult<Option<SealedKey>> {
        let mut conn = self.conns.get().await?;
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
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
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
        self.commit_invalidating(tx).await?;
        Ok(true)
    }

    #[tracing::instrument(skip(self, event))]
    async fn retire_key(
        &self,
        kid: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<RetireOutcome> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
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
        self.commit_invalidating(tx).await?;
        Ok(RetireOutcome::Retired)
    }
}

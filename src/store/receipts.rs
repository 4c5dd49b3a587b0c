//! Signing keys and receipts. A receipt is written in the same transaction that approves its
//! request, and redeemed by one conditional statement.

use serde_json::json;
use sqlx::any::AnyRow;

use super::audit::{append, NewEvent};
use super::sql::WriteTx;
use super::{get, Store, StoreError, StoreResult};
use crate::clock::UnixTime;
use crate::signing::NewSigningKey;

#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub public_jwk: serde_json::Value,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    pub jti: String,
    pub approval_id: String,
    pub kid: String,
    pub audience: String,
    pub token: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub redeemed_at: Option<UnixTime>,
    pub redeemed_by: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    Redeemed(ReceiptRow),
    AlreadyRedeemed(ReceiptRow),
    Unknown,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RetireOutcome {
    Retired,
    NotFound,
    /// The newest active key signs new receipts; rotate first.
    InUse,
}

fn key_from_row(row: &AnyRow) -> StoreResult<SigningKeyRow> {
    let jwk: String = get(row, "public_jwk")?;
    Ok(SigningKeyRow {
        kid: get(row, "kid")?,
        public_jwk: serde_json::from_str(&jwk)
            .map_err(|e| StoreError::Corrupt(format!("public_jwk: {e}")))?,
        created_at: get(row, "created_at")?,
        retired_at: get(row, "retired_at")?,
    })
}

const RECEIPT_COLS: &str =
    "jti, approval_id, kid, audience, token, issued_at, expires_at, redeemed_at, redeemed_by";

fn receipt_from_row(row: &AnyRow) -> StoreResult<ReceiptRow> {
    Ok(ReceiptRow {
        jti: get(row, "jti")?,
        approval_id: get(row, "approval_id")?,
        kid: get(row, "kid")?,
        audience: get(row, "audience")?,
        token: get(row, "token")?,
        issued_at: get(row, "issued_at")?,
        expires_at: get(row, "expires_at")?,
        redeemed_at: get(row, "redeemed_at")?,
        redeemed_by: get(row, "redeemed_by")?,
    })
}

/// The key new receipts are signed with: the newest that is not retired.
pub(super) async fn active_key(tx: &mut impl WriteTx) -> StoreResult<(String, Vec<u8>)> {
    let row = tx
        .fetch_optional(ACTIVE_KEY, &[])
        .await?
        .ok_or_else(|| StoreError::Corrupt("no active signing key".into()))?;
    Ok((get(&row, "kid")?, get(&row, "sealed")?))
}

pub(super) const ACTIVE_KEY: &str =
    "SELECT kid, sealed FROM signing_keys WHERE retired_at IS NULL ORDER BY generation DESC LIMIT 1";

impl Store {
    /// Adds a signing key: at start when none is active (`only_if_none`), or on rotation.
    /// Returns whether it was added.
    #[tracing::instrument(skip(self, key), fields(kid = %key.kid))]
    pub async fn add_signing_key(
        &self,
        key: &NewSigningKey,
        only_if_none: bool,
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        // Take the audit head's row lock first: two replicas starting together then see each
        // other's key instead of both adding one.
        sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        if only_if_none {
            let row =
                sqlx::query("SELECT COUNT(*) AS n FROM signing_keys WHERE retired_at IS NULL")
                    .fetch_one(&mut *tx)
                    .await?;
            if get::<i64>(&row, "n")? > 0 {
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
        .bind(key.sealed.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let ev = NewEvent {
            kind: "key_rotated",
            actor,
            approval_id: None,
            data: json!({ "kid": key.kid }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT kid, public_jwk, created_at, retired_at FROM signing_keys ORDER BY generation",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Retires a key: its receipts stop verifying and it leaves the JWKS.
    #[tracing::instrument(skip(self))]
    pub async fn retire_key(
        &self,
        kid: &str,
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<RetireOutcome> {
        let mut tx = self.begin_write().await?;
        let (active, _) = active_key(&mut tx).await?;
        if active == kid {
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
        let ev = NewEvent {
            kind: "key_retired",
            actor,
            approval_id: None,
            data: json!({ "kid": kid }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(RetireOutcome::Retired)
    }

    pub async fn receipt_for(&self, approval_id: &str) -> StoreResult<Option<ReceiptRow>> {
        let row = sqlx::query(&format!(
            "SELECT {RECEIPT_COLS} FROM receipts WHERE approval_id = $1"
        ))
        .bind(approval_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(receipt_from_row).transpose()
    }

    /// Marks a receipt redeemed: of any number of concurrent calls, on any replica, exactly
    /// one succeeds. Refusals are audited by the caller through [`Store::record`].
    #[tracing::instrument(skip(self))]
    pub async fn redeem(
        &self,
        jti: &str,
        client: &str,
        now: UnixTime,
    ) -> StoreResult<RedeemOutcome> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE receipts SET redeemed_at = $1, redeemed_by = $2 WHERE jti = $3 AND redeemed_at IS NULL RETURNING {RECEIPT_COLS}"
        ))
        .bind(now)
        .bind(client)
        .bind(jti)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let existing = sqlx::query(&format!(
                "SELECT {RECEIPT_COLS} FROM receipts WHERE jti = $1"
            ))
            .bind(jti)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(match existing {
                Some(r) => RedeemOutcome::AlreadyRedeemed(receipt_from_row(&r)?),
                None => RedeemOutcome::Unknown,
            });
        };
        let receipt = receipt_from_row(&row)?;
        let actor = format!("client:{client}");
        let ev = NewEvent {
            kind: "receipt_redeemed",
            actor: &actor,
            approval_id: Some(&receipt.approval_id),
            data: json!({ "jti": jti, "audience": receipt.audience }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(RedeemOutcome::Redeemed(receipt))
    }
}

/// Signs a receipt inside the approving transaction; implemented by the server's issuer so
/// the store stays free of the receipt format.
pub trait ReceiptSigner: Send + Sync {
    /// Returns (jti, compact JWS, expires_at).
    fn sign(
        &self,
        approval: &super::ApprovalRecord,
        approvals: &[super::DecisionRecord],
        kid: &str,
        sealed: &[u8],
        now: UnixTime,
    ) -> Result<(String, String, UnixTime), String>;

    /// The kid and sealed bytes it signed with last, if it keeps them: enough to presign with,
    /// since the transaction checks the key is still the active one.
    fn last_key(&self) -> Option<(String, Vec<u8>)> {
        None
    }
}

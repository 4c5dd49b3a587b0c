use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::params;

use super::super::super::rows::{KeyRow, ReceiptDbRow, RECEIPT_COLS};
use super::super::super::{
    ReceiptRow, ReceiptStore, RedeemOutcome, RetireOutcome, SealedKey, SigningKeyRow, StoreResult,
};
use super::super::{Outcome, SqliteStore};
use super::{all, append, exec, first};
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, NewEvent, ReceiptId};
use crate::signing::NewSigningKey;

/// The one conditional statement of a redemption: neither redeemed nor revoked yet, by a client
/// that is not revoked, signed with a key that is not retired.
static REDEEM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE receipts SET redeemed_at = ?1, redeemed_by = ?2 \
         WHERE jti = ?3 AND redeemed_at IS NULL AND revoked_at IS NULL \
           AND EXISTS (SELECT 1 FROM clients c WHERE c.name = ?2 AND c.revoked_at IS NULL) \
           AND EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = receipts.kid AND k.retired_at IS NULL) \
         RETURNING {RECEIPT_COLS}"
    )
});

/// Why a redemption did not happen.
fn refused(
    conn: &rusqlite::Connection,
    jti: ReceiptId,
    client: &str,
) -> StoreResult<RedeemOutcome> {
    let active: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM clients WHERE name = ?1 AND revoked_at IS NULL)",
        )?
        .query_row(params![client], |r| r.get(0))?;
    if !active {
        return Ok(RedeemOutcome::ClientRevoked);
    }
    let existing = first::<ReceiptDbRow>(conn,
        &format!("SELECT {RECEIPT_COLS} FROM receipts r WHERE jti = ?1 \
                  AND EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = r.kid AND k.retired_at IS NULL)"),
        params![jti.to_string()])?;
    Ok(match existing {
        Some(row) if row.revoked_at.is_some() => RedeemOutcome::Revoked(row.into_domain()?),
        Some(row) => RedeemOutcome::AlreadyRedeemed(row.into_domain()?),
        None => RedeemOutcome::Unknown,
    })
}

#[async_trait]
impl ReceiptStore for SqliteStore {
    #[tracing::instrument(skip(self, event))]
    async fn redeem(
        &self,
        jti: ReceiptId,
        client: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<RedeemOutcome> {
        let client = client.to_owned();
        self.engine
            .write(move |conn| {
                let redeemed =
                    first::<ReceiptDbRow>(conn, &REDEEM, params![now, client, jti.to_string()])?;
                if let Some(row) = redeemed {
                    append(conn, std::slice::from_ref(&event), now)?;
                    return Ok(Outcome::Keep(RedeemOutcome::Redeemed(row.into_domain()?)));
                }
                Ok(Outcome::Keep(refused(conn, jti, &client)?))
            })
            .await
    }

    async fn receipt_of(&self, id: ApprovalId) -> StoreResult<Option<ReceiptRow>> {
        self.engine
            .read(|conn| {
                first::<ReceiptDbRow>(
                    conn,
                    &format!("SELECT {RECEIPT_COLS} FROM receipts WHERE approval_id = ?1"),
                    params![id.to_string()],
                )
            })?
            .map(ReceiptDbRow::into_domain)
            .transpose()
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        self.engine
            .read(|conn| all::<KeyRow>(conn, "SELECT kid, public_jwk, created_at, retired_at FROM signing_keys ORDER BY generation", []))?
            .into_iter()
            .map(KeyRow::into_domain)
            .collect()
    }

    async fn active_key(&self) -> StoreResult<Option<SealedKey>> {
        self.engine
            .read(|conn| match super::decisions::active_key(conn) {
                Ok(key) => Ok(Some(key)),
                Err(super::super::super::StoreError::Corrupt(_)) => Ok(None),
                Err(e) => Err(e),
            })
    }

    #[tracing::instrument(skip_all, fields(kid = %key.kid))]
    async fn add_signing_key(
        &self,
        key: &NewSigningKey,
        only_if_none: bool,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (kid, jwk, sealed) = (
            key.kid.clone(),
            key.public_jwk.to_string(),
            key.sealed.clone(),
        );
        self.engine
            .write(move |conn| {
                if only_if_none {
                    let any: bool = conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)",
                        [],
                        |r| r.get(0),
                    )?;
                    if any {
                        return Ok(Outcome::Keep(false));
                    }
                }
                exec(
                    conn,
                    "INSERT INTO signing_keys (kid, generation, public_jwk, sealed, created_at) \
                     SELECT ?1, COALESCE(MAX(generation), 0) + 1, ?2, ?3, ?4 FROM signing_keys",
                    params![kid, jwk, sealed, now],
                )?;
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(true))
            })
            .await
    }

    #[tracing::instrument(skip(self, event))]
    async fn retire_key(
        &self,
        kid: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<RetireOutcome> {
        let kid = kid.to_owned();
        self.engine
            .write(move |conn| {
                if super::decisions::active_key(conn)?.kid == kid {
                    return Ok(Outcome::Keep(RetireOutcome::InUse));
                }
                let done = exec(
                    conn,
                    "UPDATE signing_keys SET retired_at = ?1 WHERE kid = ?2 AND retired_at IS NULL",
                    params![now, kid],
                )? == 1;
                if !done {
                    return Ok(Outcome::Keep(RetireOutcome::NotFound));
                }
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(RetireOutcome::Retired))
            })
            .await
    }
}

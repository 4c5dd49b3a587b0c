//! The executing service redeems a receipt, once, before it acts; and the public keys that
//! verify receipts.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{Error, Result, Services};
use crate::clock::UnixTime;
use crate::domain::{Actor, ApprovalId, Client, EventKind, NewEvent, ReceiptId, Refusal};
use crate::receipt::{Expect, ReceiptError, Verifier, DEFAULT_LEEWAY};
use crate::store::{RedeemOutcome, SigningKeyRow, StoreError};
use crate::tx_hash::TxHash;

/// `POST /v1/receipts/redeem`, as sent: the receipt and the transaction about to be executed
/// (or its hash).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    /// The receipt (a compact JWS) from the approved request.
    pub receipt: String,
    /// The transaction about to be carried out, to be checked against the receipt's `tx_hash`.
    #[schema(value_type = Option<Object>)]
    pub transaction: Option<Box<RawValue>>,
    /// Or its hash (the request's `tx_hash`): one of the two, not both.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    pub tx_hash: Option<String>,
}

#[derive(Debug)]
pub struct Redeemed {
    pub approval_id: ApprovalId,
    pub action: String,
    pub redeemed_at: UnixTime,
}

/// The JWKS this server publishes and accepts: every key that is not retired.
pub async fn published_keys(svc: &Services) -> Result<serde_json::Value> {
    Ok(jwks(&svc.store.signing_keys().await?))
}

fn jwks(keys: &[SigningKeyRow]) -> serde_json::Value {
    let keys: Vec<_> = keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| &k.public_jwk)
        .collect();
    json!({ "keys": keys })
}

/// The verifier of the receipts this server accepts, made again only when the keys change.
async fn verifier(svc: &Services) -> Result<Arc<Verifier>> {
    let keys = svc.store.signing_keys().await?;
    if let Ok(made) = svc.verifier.lock() {
        if let Some((for_keys, verifier)) = made.as_ref() {
            if *for_keys == keys {
                return Ok(verifier.clone());
            }
        }
    }
    let verifier = Arc::new(
        Verifier::from_jwks(&jwks(&keys))
            .map_err(|e| StoreError::Corrupt(format!("stored signing keys: {e}")))?,
    );
    if let Ok(mut made) = svc.verifier.lock() {
        *made = Some((keys, verifier.clone()));
    }
    Ok(verifier)
}

fn refusal(e: &ReceiptError) -> Error {
    let refusal = match e {
        ReceiptError::Expired => Refusal::ReceiptExpired,
        ReceiptError::WrongAudience => Refusal::WrongAudience,
        ReceiptError::TransactionMismatch => Refusal::TransactionMismatch,
        // Telling forgeries apart would only help whoever makes them.
        _ => Refusal::InvalidReceipt,
    };
    Error::from(refusal).detail(e.to_string())
}

/// Verifies the receipt fully (signature against the unretired keys, issuer, time), checks the
/// caller is its audience and the transaction hashes to `txh`, then marks it redeemed in one
/// conditional statement. Every refusal is audited.
#[tracing::instrument(skip_all, fields(client = %client.name))]
pub async fn redeem(svc: &Services, client: &Client, body: &Redeem) -> Result<Redeemed> {
    let presented = match (&body.transaction, &body.tx_hash) {
        (Some(tx), None) => {
            TxHash::of_json(tx.get().as_bytes())
                .map_err(|e| Error::from(Refusal::InvalidTransaction).detail(e.to_string()))?
                .0
        }
        (None, Some(h)) => TxHash::parse(h).map_err(|_| {
            Error::from(Refusal::InvalidRequest).detail("tx_hash is not a base64url SHA-256")
        })?,
        _ => {
            return Err(Error::from(Refusal::InvalidRequest)
                .detail("send exactly one of transaction and tx_hash"))
        }
    };
    let now = svc.clock.now();
    let verifier = verifier(svc).await?;
    let expect = Expect {
        issuer: Some(&svc.origin),
        audience: None,
        tx_hash: None,
        now,
        leeway: DEFAULT_LEEWAY,
    };
    let outcome = async {
        let claims = verifier
            .verify(&body.receipt, &expect)
            .map_err(|e| (None, refusal(&e)))?;
        let approval = ApprovalId::parse(&claims.sub).ok();
        // Console changes' receipts are the server's own to spend, whatever a client's globs say.
        if !client.rights.may_redeem(&claims.aud) || claims.aud == crate::domain::RESERVED_CLIENT {
            return Err((approval, refusal(&ReceiptError::WrongAudience)));
        }
        if presented.to_string() != claims.txh {
            return Err((approval, refusal(&ReceiptError::TransactionMismatch)));
        }
        // Signed by one of our keys but never stored: refuse rather than trust the signature.
        let unknown = || (approval, refusal(&ReceiptError::UnknownKey));
        let jti = ReceiptId::parse(&claims.jti).map_err(|_| unknown())?;
        let event = NewEvent::new(
            EventKind::ReceiptRedeemed,
            Actor::Client(client.name.clone()),
            json!({ "jti": claims.jti, "audience": claims.aud }),
        );
        let event = match approval {
            Some(id) => event.about(id),
            None => event,
        };
        match svc.store.redeem(jti, &client.name, event, now).await {
            Ok(RedeemOutcome::Redeemed(r)) => Ok(Redeemed {
                approval_id: r.approval_id,
                action: claims.act,
                redeemed_at: r.redeemed_at.unwrap_or(now),
            }),
            Ok(RedeemOutcome::AlreadyRedeemed(r)) => Err((
                Some(r.approval_id),
                Error::from(Refusal::AlreadyRedeemed).with(
                    "redeemed_at",
                    crate::clock::rfc3339(r.redeemed_at.unwrap_or(now)),
                ),
            )),
            Ok(RedeemOutcome::Revoked(r)) => {
                Err((Some(r.approval_id), Refusal::ReceiptRevoked.into()))
            }
            Ok(RedeemOutcome::Unknown) => Err(unknown()),
            Ok(RedeemOutcome::ClientRevoked) => Err((approval, Refusal::Unauthorized.into())),
            Err(e) => Err((approval, e.into())),
        }
    }
    .await;
    match outcome {
        Ok(done) => Ok(done),
        // A failing store is not a refusal of the receipt.
        Err((_, e @ Error::Store(_))) => Err(e),
        Err((approval, e)) => {
            let event = NewEvent::new(
                EventKind::RedemptionRefused,
                Actor::Client(client.name.clone()),
                json!({ "reason": e.refusal().code() }),
            );
            let event = match approval {
                Some(id) => event.about(id),
                None => event,
            };
            if let Err(store) = svc.store.record(event, now).await {
                tracing::error!(error = %store, "could not audit a refused redemption");
            }
            Err(e)
        }
    }
}

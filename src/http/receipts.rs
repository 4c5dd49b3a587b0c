//! One-time redemption and the public signing keys.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, value::RawValue};

use super::extract::{ServiceClient, StrictJson};
use super::problem::ApiError;
use super::AppState;
use crate::clock::rfc3339;
use crate::metrics::Metrics;
use crate::receipt::{Expect, ReceiptError, Verifier, DEFAULT_LEEWAY};
use crate::store::{NewEvent, RedeemOutcome, StoreResult};
use crate::tx_hash::TxHash;

/// The JWKS this server publishes and accepts: every key that is not retired.
async fn published_keys(state: &AppState) -> StoreResult<serde_json::Value> {
    let keys = state.store.signing_keys().await?;
    let keys: Vec<_> = keys
        .into_iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| k.public_jwk)
        .collect();
    Ok(json!({ "keys": keys }))
}

/// The verifier for receipts this server accepts.
pub async fn current_verifier(state: &AppState) -> StoreResult<Verifier> {
    Verifier::from_jwks(&published_keys(state).await?)
        .map_err(|e| crate::store::StoreError::Corrupt(format!("stored signing keys: {e}")))
}

pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Long enough to spare the server, short next to how long a rotated key stays published.
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(published_keys(&state).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    receipt: String,
    transaction: Option<Box<RawValue>>,
    tx_hash: Option<String>,
}

fn refusal(e: &ReceiptError) -> ApiError {
    let (status, code) = match e.code() {
        "receipt_expired" => (StatusCode::UNAUTHORIZED, "receipt_expired"),
        "wrong_audience" => (StatusCode::FORBIDDEN, "wrong_audience"),
        "transaction_mismatch" => (StatusCode::UNPROCESSABLE_ENTITY, "transaction_mismatch"),
        _ => (StatusCode::UNAUTHORIZED, "invalid_receipt"),
    };
    ApiError::new(status, code, e.to_string())
}

#[tracing::instrument(skip_all, fields(client = %client.0.name))]
pub async fn redeem(
    state: web::Data<AppState>,
    client: ServiceClient,
    body: StrictJson<Redeem>,
) -> Result<HttpResponse, ApiError> {
    let client = client.0;
    let body = body.0;
    let presented = match (&body.transaction, &body.tx_hash) {
        (Some(tx), None) => {
            TxHash::of_json(tx.get().as_bytes())
                .map_err(|e| ApiError::invalid_transaction(e.to_string()))?
                .0
        }
        (None, Some(h)) => TxHash::parse(h)
            .map_err(|_| ApiError::invalid_request("tx_hash is not a base64url SHA-256"))?,
        _ => {
            return Err(ApiError::invalid_request(
                "send exactly one of transaction and tx_hash",
            ))
        }
    };
    let now = state.clock.now();
    let actor = format!("client:{}", client.name);
    let verifier = current_verifier(&state).await?;
    let expect = Expect {
        issuer: Some(&state.config.public_origin),
        audience: None,
        tx_hash: None,
        now,
        leeway: DEFAULT_LEEWAY,
    };
    let refuse = |approval_id: Option<String>, err: ApiError| {
        let state = state.clone();
        let actor = actor.clone();
        async move {
            let ev = NewEvent {
                kind: "redemption_refused",
                actor: &actor,
                approval_id: approval_id.as_deref(),
                data: json!({ "reason": err.code }),
            };
            if let Err(e) = state.store.record(now, ev).await {
                tracing::error!(error = %e, "could not audit a refused redemption");
            }
            tracing::warn!(target: "countersign::security", actor, code = err.code, "redemption refused");
            err
        }
    };
    let claims = match verifier.verify(&body.receipt, &expect) {
        Ok(c) => c,
        Err(e) => return Err(refuse(None, refusal(&e)).await),
    };
    if !client.rights.may_redeem(&claims.aud) {
        return Err(refuse(
            Some(claims.sub.clone()),
            refusal(&ReceiptError::WrongAudience),
        )
        .await);
    }
    if presented.to_string() != claims.txh {
        return Err(refuse(
            Some(claims.sub.clone()),
            refusal(&ReceiptError::TransactionMismatch),
        )
        .await);
    }
    match state.store.redeem(&claims.jti, &client.name, now).await? {
        RedeemOutcome::Redeemed(r) => {
            Metrics::inc(&state.metrics.receipts_redeemed);
            Ok(HttpResponse::Ok().json(json!({
                "status": "redeemed",
                "approval_id": r.approval_id,
                "action": claims.act,
                "redeemed_at": rfc3339(r.redeemed_at.unwrap_or(now)),
            })))
        }
        RedeemOutcome::AlreadyRedeemed(r) => {
            let at = rfc3339(r.redeemed_at.unwrap_or(now));
            let err = ApiError::new(
                StatusCode::CONFLICT,
                "already_redeemed",
                "this receipt was redeemed already",
            )
            .with("redeemed_at", at);
            Err(refuse(Some(r.approval_id), err).await)
        }
        // Signed by one of our keys but never stored: refuse rather than trust the signature alone.
        RedeemOutcome::Unknown => {
            Err(refuse(Some(claims.sub), refusal(&ReceiptError::UnknownKey)).await)
        }
    }
}

//! One-time redemption and the public signing keys.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::super::extract::{ServiceClient, StrictJson};
use super::super::problem::ApiError;
use super::super::AppState;
use crate::clock::rfc3339;
use crate::domain::Refusal;
use crate::metrics::Metrics;
use crate::service::redeem::{published_keys, redeem as redeem_receipt, Redeem};

/// The keys receipts are signed with (a JWK Set of P-256 keys), retired keys left out.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "public",
    responses((status = 200, description = "The published signing keys", body = Object)),
    extensions(("x-refusals" = json!([Refusal::StoreUnavailable]))),
)]
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Long enough to spare the server, short next to how long a rotated key stays published.
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(published_keys(&state.svc).await?))
}

/// A receipt spent: the service may now carry out the transaction, once.
#[derive(Serialize, ToSchema)]
pub struct Redeemed {
    /// Always `redeemed`.
    status: &'static str,
    #[schema(value_type = String)]
    approval_id: crate::domain::ApprovalId,
    action: String,
    redeemed_at: String,
}

/// Spends a receipt, once, after checking it against the transaction about to be carried out.
#[utoipa::path(
    post,
    path = "/v1/receipts/redeem",
    operation_id = "redeemReceipt",
    tag = "service",
    request_body = Redeem,
    responses((status = 200, description = "Redeemed: carry the transaction out", body = Redeemed)),
    extensions(("x-refusals" = json!([
        Refusal::InvalidTransaction,
        Refusal::InvalidReceipt,
        Refusal::ReceiptExpired,
        Refusal::WrongAudience,
        Refusal::TransactionMismatch,
        Refusal::AlreadyRedeemed,
        Refusal::ReceiptRevoked,
    ]))),
)]
#[tracing::instrument(skip_all, fields(client = %client.0.name))]
pub async fn redeem(
    state: web::Data<AppState>,
    client: ServiceClient,
    body: StrictJson<Redeem>,
) -> Result<HttpResponse, ApiError> {
    let r = redeem_receipt(&state.svc, &client.0, &body.0).await;
    let outcome = match &r {
        Ok(_) => "redeemed",
        Err(e) => e.refusal().code(),
    };
    Metrics::count(&state.metrics.redemptions, outcome);
    let r = r?;
    state.metrics.receipts_redeemed.inc();
    Ok(HttpResponse::Ok().json(Redeemed {
        status: "redeemed",
        approval_id: r.approval_id,
        action: r.action,
        redeemed_at: rfc3339(r.redeemed_at),
    }))
}

//! One-time redemption and the public signing keys.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::super::extract::{ServiceClient, StrictJson};
use super::super::problem::ApiError;
use super::super::AppState;
use crate::clock::rfc3339;
use crate::metrics::Metrics;
use crate::service::redeem::{published_keys, redeem as redeem_receipt, Redeem};

pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Long enough to spare the server, short next to how long a rotated key stays published.
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(published_keys(&state.svc).await?))
}

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
    Ok(HttpResponse::Ok().json(json!({
        "status": "redeemed",
        "approval_id": r.approval_id,
        "action": r.action,
        "redeemed_at": rfc3339(r.redeemed_at),
    })))
}

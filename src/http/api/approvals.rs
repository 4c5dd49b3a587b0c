//! The service API for approval requests: create, read (optionally waiting), cancel, revoke.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::super::extract::{EmptyBody, ServiceClient, StrictJson};
use super::super::problem::ApiError;
use super::super::AppState;
use super::approval_id;
use super::views::ServiceView;
use crate::domain::Refusal;
use crate::service::create_request::{create_request, Answer, NewRequest};
use crate::service::{
    cancel_request::cancel_request, read_request::read_request, revoke_request::revoke_request,
};
use crate::store::Snapshot;

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::from(Refusal::InvalidRequest)
                .detail("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_string()))
}

fn created(body: String) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(body)
}

#[tracing::instrument(skip_all, fields(client = %client.0.name))]
pub async fn create(
    state: web::Data<AppState>,
    client: ServiceClient,
    req: HttpRequest,
    body: StrictJson<NewRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let origin = &state.config.public_origin;
    let render = |request: &_, able: &[_], redactions: &[_]| {
        let view = ServiceView::new(request, &[], None, Some(origin), Some(able))
            .with_redactions(redactions);
        serde_json::to_string(&view).map_err(|_| ApiError::from(Refusal::Internal))
    };
    match create_request(&state.svc, &client.0, body.0, key, render).await? {
        Answer::New(response) => {
            state.metrics.approvals_created.inc();
            Ok(created(response))
        }
        Answer::Replayed(first) => {
            state.metrics.idempotent_replays.inc();
            Ok(created(first))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait: Option<u64>,
}

/// The service view with decisions and, once approved, the receipt.
fn full_view(state: &AppState, snap: &Snapshot) -> HttpResponse {
    let receipt = match snap.request.status {
        crate::domain::Status::Approved => snap.receipt.as_deref(),
        _ => None,
    };
    HttpResponse::Ok().json(ServiceView::new(
        &snap.request,
        &snap.votes,
        receipt,
        Some(&state.config.public_origin),
        Some(&snap.able),
    ))
}

#[tracing::instrument(skip_all, fields(client = %client.0.name, approval_id = %path))]
pub async fn get(
    state: web::Data<AppState>,
    client: ServiceClient,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = approval_id(&path)?;
    let snap = read_request(&state.svc, &client.0, id, query.wait.unwrap_or(0)).await?;
    Ok(full_view(&state, &snap))
}

#[tracing::instrument(skip_all, fields(client = %client.0.name, approval_id = %path))]
pub async fn cancel(
    state: web::Data<AppState>,
    client: ServiceClient,
    path: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let id = approval_id(&path)?;
    let snap = cancel_request(&state.svc, &client.0, id).await?;
    state.metrics.approvals_cancelled.inc();
    Ok(full_view(&state, &snap))
}

#[tracing::instrument(skip_all, fields(client = %client.0.name, approval_id = %path))]
pub async fn revoke(
    state: web::Data<AppState>,
    client: ServiceClient,
    path: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let id = approval_id(&path)?;
    let snap = revoke_request(&state.svc, &client.0, id).await?;
    state.metrics.approvals_revoked.inc();
    Ok(full_view(&state, &snap))
}

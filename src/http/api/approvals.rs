//! The service API for approval requests: create, read (optionally waiting), cancel, revoke.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::super::extract::{Empty, EmptyBody, ServiceClient, StrictJson};
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

/// Asks for one exact transaction to be approved. A repeat with the same `Idempotency-Key`
/// and body gets the first response, byte for byte.
#[utoipa::path(
    post,
    path = "/v1/approvals",
    operation_id = "createApproval",
    tag = "service",
    params((
        "Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters; makes a retry safe",
        min_length = 1, max_length = 255, pattern = "^[!-~]([ -~]*[!-~])?$"
    )),
    request_body = NewRequest,
    responses((
        status = 201,
        description = "The request, pending",
        body = ServiceView,
        links(
            ("getApproval" = (operation_id = "getApproval", parameters(("id" = "$response.body#/id")))),
            ("cancelApproval" = (operation_id = "cancelApproval", parameters(("id" = "$response.body#/id")))),
            ("revokeApproval" = (operation_id = "revokeApproval", parameters(("id" = "$response.body#/id")))),
            ("beginDecision" = (operation_id = "beginDecision", parameters(("id" = "$response.body#/id")))),
        )
    )),
    extensions(("x-refusals" = json!([
        Refusal::Forbidden,
        Refusal::UnknownAction,
        Refusal::InvalidTransaction,
        Refusal::IdempotencyConflict,
        Refusal::Unsatisfiable,
    ]))),
)]
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to hold the answer (at most 30) while the request is pending.
    #[param(maximum = 30)]
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

/// The request, with its decisions and, once approved, its receipt.
#[utoipa::path(
    get,
    path = "/v1/approvals/{id}",
    operation_id = "getApproval",
    tag = "service",
    params(("id" = String, Path, description = "The request's id"), WaitQuery),
    responses((status = 200, description = "The request", body = ServiceView)),
)]
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

/// Withdraws a pending request.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/cancel",
    operation_id = "cancelApproval",
    tag = "service",
    params(("id" = String, Path, description = "The request's id")),
    request_body(content = Empty, description = "Nothing, or `{}`"),
    responses((status = 200, description = "The request, cancelled", body = ServiceView)),
    extensions(("x-refusals" = json!([Refusal::NotPending]))),
)]
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

/// Withdraws an approved request whose receipt was not redeemed: the receipt is refused from
/// then on.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/revoke",
    operation_id = "revokeApproval",
    tag = "service",
    params(("id" = String, Path, description = "The request's id")),
    request_body(content = Empty, description = "Nothing, or `{}`"),
    responses((status = 200, description = "The request, revoked", body = ServiceView)),
    extensions(("x-refusals" = json!([Refusal::NotRevocable]))),
)]
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

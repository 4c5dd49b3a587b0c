//! The admin console's JSON API (signed in, members of the admin group): proposing a change to
//! countersign and reading what became of it (`service::console`). Deciding a change is the
//! ordinary decision API.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::super::extract::{Approver, StrictJson};
use super::super::problem::ApiError;
use super::super::AppState;
use super::approval_id;
use crate::clock::rfc3339;
use crate::domain::{AdminChange, ApprovalId, Refusal, Request, Status};
use crate::service::console::{self, ChangeView};
use crate::tx_hash::TxHash;

/// A change to countersign: a request of the built-in action `countersign.admin`, decided on
/// the ordinary approval page by other admins.
#[derive(Serialize, ToSchema)]
pub struct Change<'a> {
    #[schema(value_type = String)]
    id: ApprovalId,
    #[schema(value_type = Status)]
    status: &'static str,
    approval_url: String,
    /// The change, in its one spelling (`op` and its fields).
    #[schema(value_type = Object)]
    change: Value,
    #[schema(value_type = String)]
    tx_hash: &'a TxHash,
    proposed_by: &'a str,
    created_at: String,
    expires_at: String,
}

/// A change as read: where it stands and, once carried out, what it produced.
#[derive(Serialize, ToSchema)]
pub struct ChangeRead<'a> {
    #[serde(flatten)]
    change: Change<'a>,
    decided_at: Option<String>,
    /// What the change produced; its secret (an invitation link, an API key, a webhook
    /// secret), to its proposer, the first time it is read.
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    carried_out_at: Option<String>,
    /// Why it could not be carried out, if it could not.
    failure: Option<&'a str>,
    secret_shown_at: Option<String>,
}

/// Proposes a change to countersign: 201 with the `countersign.admin` request that carries it.
#[utoipa::path(
    post,
    path = "/v1/admin/changes",
    operation_id = "proposeChange",
    tag = "admin",
    request_body = AdminChange,
    responses((
        status = 201,
        description = "The change, pending",
        body = Change,
        links(("readChange" = (operation_id = "readChange", parameters(("id" = "$response.body#/id"))))),
    )),
    extensions(("x-refusals" = json!([
        Refusal::Forbidden,
        Refusal::Unsatisfiable,
        Refusal::Lockout,
    ]))),
)]
#[tracing::instrument(skip_all, fields(user = %approver.0.username))]
pub async fn propose(
    state: web::Data<AppState>,
    approver: Approver,
    body: StrictJson<Value>,
) -> Result<HttpResponse, ApiError> {
    let request = console::propose(&state.svc, &approver.0, &body.0).await?;
    let change = request.transaction().map_or(Value::Null, |v| v.to_serde());
    Ok(HttpResponse::Created().json(summary(&state, &request, change)))
}

/// The change, where it stands and what it produced (its secret to its proposer, the first
/// time).
#[utoipa::path(
    get,
    path = "/v1/admin/changes/{id}",
    operation_id = "readChange",
    tag = "admin",
    params(("id" = String, Path, description = "The change's request id")),
    responses((status = 200, description = "The change", body = ChangeRead)),
    extensions(("x-refusals" = json!([Refusal::Forbidden]))),
)]
#[tracing::instrument(skip_all, fields(user = %approver.0.username, approval_id = %path))]
pub async fn read(
    state: web::Data<AppState>,
    approver: Approver,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = approval_id(&path)?;
    let view = console::read(&state.svc, &approver.0, id).await?;
    Ok(HttpResponse::Ok().json(read_view(&state, &view)))
}

fn summary<'a>(state: &AppState, r: &'a Request, change: Value) -> Change<'a> {
    Change {
        id: r.id,
        status: r.status.as_str(),
        approval_url: format!("{}/approvals/{}", state.svc.origin, r.id),
        change,
        tx_hash: &r.tx_hash,
        proposed_by: r.initiator.id(),
        created_at: rfc3339(r.created_at),
        expires_at: rfc3339(r.expires_at),
    }
}

fn read_view<'a>(state: &AppState, v: &'a ChangeView) -> ChangeRead<'a> {
    let record = v.record.as_ref();
    let mut result = record.and_then(|r| r.outcome.clone());
    if let (Some(Value::Object(result)), Some((name, secret))) = (&mut result, &v.secret) {
        result.insert((*name).to_owned(), Value::String(secret.clone()));
    }
    ChangeRead {
        change: summary(state, &v.request, v.change.clone()),
        decided_at: v.request.decided_at.map(rfc3339),
        result,
        carried_out_at: record.map(|r| rfc3339(r.carried_out_at)),
        failure: record.and_then(|r| r.failure.as_deref()),
        secret_shown_at: record.and_then(|r| r.secret_taken_at).map(rfc3339),
    }
}

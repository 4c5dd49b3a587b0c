//! The admin console's JSON API (signed in, members of the admin group): proposing a change to
//! countersign and reading what became of it (`service::console`). Deciding a change is the
//! ordinary decision API.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::super::extract::{Approver, StrictJson};
use super::super::problem::ApiError;
use super::super::AppState;
use super::approval_id;
use crate::clock::rfc3339;
use crate::domain::Request;
use crate::service::console::{self, ChangeView};

/// `POST /v1/admin/changes`: 201 with the `countersign.admin` request that carries the change.
#[tracing::instrument(skip_all, fields(user = %approver.0.username))]
pub async fn propose(
    state: web::Data<AppState>,
    approver: Approver,
    body: StrictJson<Value>,
) -> Result<HttpResponse, ApiError> {
    let request = console::propose(&state.svc, &approver.0, &body.0).await?;
    Ok(HttpResponse::Created().json(summary(&state, &request)))
}

/// `GET /v1/admin/changes/{id}`: the change, where it stands and what it produced (its secret
/// to its proposer, the first time).
#[tracing::instrument(skip_all, fields(user = %approver.0.username, approval_id = %path))]
pub async fn read(
    state: web::Data<AppState>,
    approver: Approver,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = approval_id(&path)?;
    let view = console::read(&state.svc, &approver.0, id).await?;
    Ok(HttpResponse::Ok().json(view_json(&state, &view)))
}

fn summary(state: &AppState, r: &Request) -> Value {
    json!({
        "id": r.id,
        "status": r.status.as_str(),
        "approval_url": format!("{}/approvals/{}", state.svc.origin, r.id),
        "change": serde_json::from_str::<Value>(&r.transaction_jcs).unwrap_or(Value::Null),
        "tx_hash": r.tx_hash,
        "proposed_by": r.initiator.id(),
        "created_at": rfc3339(r.created_at),
        "expires_at": rfc3339(r.expires_at),
    })
}

/// A change as read: `result` once carried out, with its secret the one time it is shown.
pub fn view_json(state: &AppState, v: &ChangeView) -> Value {
    let mut out = summary(state, &v.request);
    let record = v.record.as_ref();
    let mut result = record.and_then(|r| r.outcome.clone());
    if let (Some(Value::Object(result)), Some((name, secret))) = (&mut result, &v.secret) {
        result.insert((*name).to_owned(), Value::String(secret.clone()));
    }
    if let Value::Object(o) = &mut out {
        o.insert("change".into(), v.change.clone());
        o.insert(
            "decided_at".into(),
            json!(v.request.decided_at.map(rfc3339)),
        );
        o.insert("result".into(), result.unwrap_or(Value::Null));
        o.insert(
            "carried_out_at".into(),
            json!(record.map(|r| rfc3339(r.carried_out_at))),
        );
        o.insert(
            "failure".into(),
            json!(record.and_then(|r| r.failure.clone())),
        );
        o.insert(
            "secret_shown_at".into(),
            json!(record.and_then(|r| r.secret_taken_at).map(rfc3339)),
        );
    }
    out
}

//! The service API for approval requests: create, read (optionally waiting), cancel.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;

use super::extract::{EmptyBody, ServiceClient, StrictJson};
use super::problem::ApiError;
use super::views::service_view;
use super::AppState;
use crate::clock::secs;
use crate::jcs;
use crate::metrics::Metrics;
use crate::store::{ApprovalRecord, CancelOutcome, Created, Idempotency, Status};
use crate::tx_hash::TxHash;

/// Longest `?wait=` a caller may ask for.
const MAX_WAIT_SECS: u64 = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApproval {
    action: String,
    transaction: Box<RawValue>,
    initiator: String,
    audience: Option<String>,
    risk: Option<Risk>,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    score: u32,
    #[serde(default)]
    reasons: Vec<String>,
}

pub(super) fn plain_text(what: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(format!(
            "{what} must be 1 to {max} characters without control characters"
        )));
    }
    Ok(())
}

impl Risk {
    fn validate(&self) -> Result<(), ApiError> {
        if self.score > 100 {
            return Err(ApiError::invalid_request(
                "risk.score must be between 0 and 100",
            ));
        }
        if self.reasons.len() > 20 {
            return Err(ApiError::invalid_request(
                "risk.reasons holds at most 20 entries",
            ));
        }
        self.reasons
            .iter()
            .try_for_each(|r| plain_text("each risk reason", r, 200))
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::invalid_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_string()))
}

fn created(body: String) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(body)
}

#[tracing::instrument(skip_all, fields(client = %client.0.name, action = %body.0.action, approval_id))]
pub async fn create(
    state: web::Data<AppState>,
    client: ServiceClient,
    req: HttpRequest,
    body: StrictJson<CreateApproval>,
) -> Result<HttpResponse, ApiError> {
    let client = client.0;
    let body = body.0;
    let action = state.policy.action(&body.action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!("no action {:?} in the policy", body.action),
        )
    })?;
    if !client.rights.may_create(&action.id) {
        return Err(ApiError::forbidden(format!(
            "this client may not request {:?}",
            action.id
        )));
    }
    let (tx_hash, tx) = TxHash::of_json(body.transaction.get().as_bytes())
        .map_err(|e| ApiError::invalid_transaction(e.to_string()))?;
    plain_text("initiator", &body.initiator, 128)?;
    if let Some(risk) = &body.risk {
        risk.validate()?;
    }
    let audience = match (&body.audience, action.audiences.as_slice()) {
        (Some(a), allowed) if allowed.contains(a) => a.clone(),
        (Some(a), _) => {
            return Err(ApiError::forbidden(format!(
                "audience {a:?} is not allowed for {:?}",
                action.id
            )))
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(ApiError::invalid_request(
                "audience is required: the action's policy names several",
            ))
        }
    };
    let required = action
        .evaluate(&tx, body.risk.as_ref().map(|r| r.score))
        .map_err(|e| ApiError::invalid_transaction(e.to_string()))?;

    let now = state.clock.now();
    let rec = ApprovalRecord {
        // Time-ordered (UUIDv7, 74 random bits): rows written and decided together sit together
        // in the B-trees, so a decision's commit rewrites a few shared pages, not one per table.
        id: uuid::Uuid::now_v7().to_string(),
        client_id: client.id.clone(),
        action: action.id.clone(),
        transaction_jcs: jcs::canonicalize(&tx),
        tx_hash: tx_hash.to_string(),
        initiator: body.initiator.clone(),
        audience,
        risk: body.risk.as_ref().map(|r| json!(r)),
        policy_rev: state.policy.revision.clone(),
        required_approvals: i64::from(required.approvals),
        required_groups: required.groups.clone(),
        rule: required.rule.clone(),
        status: Status::Pending,
        created_at: now,
        expires_at: now.saturating_add(secs(action.request_ttl)),
        decided_at: None,
        self_approval: action.self_approval,
        receipt_ttl: secs(action.receipt_ttl),
    };
    tracing::Span::current().record("approval_id", rec.id.as_str());
    let response =
        serde_json::to_string(&service_view(&rec, &[], None, &state.config.public_origin))
            .map_err(|_| ApiError::internal())?;
    let idem = idempotency_key(&req)?.map(|key| Idempotency {
        key,
        request_hash: request_fingerprint(&rec, body.audience.as_deref()),
        response: response.clone(),
    });
    match state
        .store
        .create_approval(&rec, idem.as_ref(), &format!("client:{}", client.name))
        .await?
    {
        Created::New => {
            Metrics::inc(&state.metrics.approvals_created);
            Ok(created(response))
        }
        Created::Replayed(first) => {
            Metrics::inc(&state.metrics.idempotent_replays);
            Ok(created(first))
        }
        Created::KeyConflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            "this Idempotency-Key was used with a different request",
        )),
    }
}

/// What makes two create requests "the same" for Idempotency-Key: every field the client sent,
/// with the transaction in canonical form so formatting does not matter.
fn request_fingerprint(rec: &ApprovalRecord, audience_sent: Option<&str>) -> [u8; 32] {
    let canonical = json!({
        "action": rec.action,
        "transaction": rec.tx_hash,
        "initiator": rec.initiator,
        "audience": audience_sent,
        "risk": rec.risk,
    });
    Sha256::digest(canonical.to_string().as_bytes()).into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait: Option<u64>,
}

/// The request if this client created it (others get the same 404 as a missing one), expired
/// first if its time is up.
async fn visible(state: &AppState, client_id: &str, id: &str) -> Result<ApprovalRecord, ApiError> {
    match state.approval_now(id).await? {
        Some(rec) if rec.client_id == client_id => Ok(rec),
        _ => Err(ApiError::not_found()),
    }
}

#[tracing::instrument(skip_all, fields(client = %client.0.name, approval_id = %path))]
pub async fn get(
    state: web::Data<AppState>,
    client: ServiceClient,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::invalid_request(format!(
            "wait is at most {MAX_WAIT_SECS} seconds"
        )));
    }
    // Subscribe before reading so a change between the read and the wait is not missed.
    let mut changes = state.store.subscribe();
    let mut rec = visible(&state, &client.0.id, &id).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    while rec.status == Status::Pending {
        let until_expiry =
            Duration::from_secs(u64::try_from(rec.expires_at - state.clock.now()).unwrap_or(0));
        let wake = deadline.min(tokio::time::Instant::now() + until_expiry);
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            changed = changes.recv() => match changed {
                Ok(changed_id) if changed_id != id => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            () = tokio::time::sleep_until(wake) => {}
        }
        rec = visible(&state, &client.0.id, &id).await?;
    }
    full_view(&state, &rec).await
}

/// The service view with decisions and, once approved, the receipt.
async fn full_view(state: &AppState, rec: &ApprovalRecord) -> Result<HttpResponse, ApiError> {
    let decisions = state.store.decisions(&rec.id).await?;
    let receipt = match rec.status {
        Status::Approved => state.store.receipt_for(&rec.id).await?.map(|r| r.token),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(service_view(
        rec,
        &decisions,
        receipt.as_deref(),
        &state.config.public_origin,
    )))
}

#[tracing::instrument(skip_all, fields(client = %client.0.name, approval_id = %path))]
pub async fn cancel(
    state: web::Data<AppState>,
    client: ServiceClient,
    path: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::not_found());
    }
    let actor = format!("client:{}", client.0.name);
    match state
        .store
        .cancel_approval(&id, &client.0.id, &actor, state.clock.now())
        .await?
    {
        CancelOutcome::Cancelled(rec) => {
            Metrics::inc(&state.metrics.approvals_cancelled);
            full_view(&state, &rec).await
        }
        CancelOutcome::NotPending(rec) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_pending",
            format!("the request is {}", rec.status.as_str()),
        )
        .with("approval_status", rec.status.as_str())),
        CancelOutcome::NotFound => Err(ApiError::not_found()),
    }
}

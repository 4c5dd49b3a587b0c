//! Deciding (signed in): each approve or reject is a fresh passkey assertion
//! (`service::decide`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::super::extract::{Approver, StrictJson};
use super::super::problem::ApiError;
use super::super::AppState;
use super::views::ApproverView;
use super::{approval_id, Started};
use crate::domain::{Decision, Refusal, Status, Vote};
use crate::metrics::{Kind, Metrics};
use crate::passkeys::b64;
use crate::service::decide;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionOptions {
    decision: Decision,
    /// The stage to decide in, where the person may decide in several (else the first that
    /// still needs approvals when the decision is recorded).
    stage: Option<String>,
}

/// A ceremony's finish: which ceremony, and the browser's `credential.toJSON()`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    pub ceremony: String,
    /// The `PublicKeyCredential` the browser made, in its `toJSON()` form.
    #[schema(value_type = Object)]
    pub credential: Value,
}

/// Begins a decision: the passkey assertion's options, with a challenge derived from the
/// request's `tx_hash`, the decision and a fresh nonce.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/decision/options",
    operation_id = "beginDecision",
    tag = "approver",
    params(("id" = String, Path, description = "The request's id")),
    request_body = DecisionOptions,
    responses((status = 200, description = "The ceremony begun", body = Started)),
    extensions(("x-refusals" = json!([
        Refusal::RateLimited,
        Refusal::NotPending,
        Refusal::NotEligible,
        Refusal::SelfApprovalForbidden,
        Refusal::AlreadyDecided,
    ]))),
)]
#[tracing::instrument(skip_all, fields(user = %approver.0.username, approval_id = %path))]
pub async fn options(
    state: web::Data<AppState>,
    approver: Approver,
    path: web::Path<String>,
    body: StrictJson<DecisionOptions>,
) -> Result<HttpResponse, ApiError> {
    let user = approver.0;
    let id = approval_id(&path)?;
    state.ceremony_allowed(&format!("user:{}", user.id))?;
    let DecisionOptions { decision, stage } = body.0;
    let o = decide::options(&state.svc, &user, id, decision, stage).await?;
    state
        .metrics
        .ceremonies
        .get_or_create(&Kind { kind: "decision" })
        .inc();
    Ok(HttpResponse::Ok().json(Started {
        ceremony: o.ceremony,
        public_key: o.public_key,
        nonce: Some(b64(&o.nonce)),
    }))
}

/// Records the decision the passkey signed; the last approval the quorum needed approves the
/// request and issues its receipt.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/decision/finish",
    operation_id = "finishDecision",
    tag = "approver",
    params(("id" = String, Path, description = "The request's id")),
    request_body = Finish,
    responses((status = 200, description = "The request as the approver now sees it", body = ApproverView)),
    extensions(("x-refusals" = json!([
        Refusal::NotPending,
        Refusal::NotEligible,
        Refusal::SelfApprovalForbidden,
        Refusal::AlreadyDecided,
        Refusal::CeremonyMismatch,
        Refusal::CeremonyConsumed,
        Refusal::CeremonyExpired,
        Refusal::AssertionInvalid,
        Refusal::UserVerificationRequired,
        Refusal::PossibleClone,
        Refusal::CredentialNotAllowed,
    ]))),
)]
#[tracing::instrument(skip_all, fields(user = %approver.0.username, approval_id = %path))]
pub async fn finish(
    state: web::Data<AppState>,
    approver: Approver,
    path: web::Path<String>,
    body: StrictJson<Finish>,
) -> Result<HttpResponse, ApiError> {
    let user = approver.0;
    let id = approval_id(&path)?;
    let finished =
        decide::finish(&state.svc, &user, id, &body.0.ceremony, &body.0.credential).await;
    let outcome = match &finished {
        Ok((_, decisions)) => decisions
            .iter()
            .find(|d| d.vote.user_id == user.id)
            .map_or("recorded", |d| d.vote.decision.as_str()),
        Err(e) => e.refusal().code(),
    };
    Metrics::count(&state.metrics.decisions, outcome);
    let (request, decisions) = finished?;
    if request.status == Status::Approved {
        state.metrics.receipts_issued.inc();
    }
    let votes: Vec<Vote> = decisions.into_iter().map(|d| d.vote).collect();
    Ok(HttpResponse::Ok().json(ApproverView::new(
        &state.svc.policy,
        &request,
        &votes,
        &user,
    )))
}

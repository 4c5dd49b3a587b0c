//! Deciding: each approve or reject is a fresh passkey assertion over a challenge derived from
//! the request id, the decision, the transaction hash and a nonce (`crate::challenge`).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::enroll::{ceremony_consumed, ceremony_expired, ceremony_mismatch};
use super::extract::StrictJson;
use super::problem::ApiError;
use super::session::{check_origin, random32, Approver, Finish};
use super::AppState;
use crate::assertion::AssertionError;
use crate::challenge::{decision_challenge, Decision};
use crate::passkeys::{b64, unb64, AssertionResponse, CEREMONY_SECS};
use crate::store::{
    ApprovalRecord, Ceremony, CeremonyKind, DecisionOutcome, DecisionRecord, NewEvent,
    ReceiptSigner, Status, Taken, User,
};
use crate::tx_hash::TxHash;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionOptions {
    decision: Decision,
}

fn refused(status: StatusCode, code: &'static str, detail: &str) -> ApiError {
    ApiError::new(status, code, detail)
}

/// Writes a refusal to the audit chain and returns it; a refusal that cannot be audited is
/// still refused.
async fn audited(state: &AppState, user: &User, approval_id: &str, err: ApiError) -> ApiError {
    let actor = format!("user:{}", user.username);
    let ev = NewEvent {
        kind: "decision_refused",
        actor: &actor,
        approval_id: Some(approval_id),
        data: json!({ "reason": err.code }),
    };
    if let Err(e) = state.store.record(state.clock.now(), ev).await {
        tracing::error!(error = %e, "could not audit a refused decision");
    }
    tracing::warn!(target: "countersign::security", user = %user.username, approval_id, code = err.code, "decision refused");
    err
}

/// Whether this user may decide this request now: in an eligible group, and not its
/// initiator unless the policy allowed self-approval when the request was made.
pub(super) fn eligibility(user: &User, approval: &ApprovalRecord) -> Result<(), ApiError> {
    if user.username == approval.initiator && !approval.self_approval {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "self_approval_forbidden",
            "you initiated this request, so someone else must decide it",
        ));
    }
    if !user.in_any(&approval.required_groups) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "not_eligible",
            "you are not in a group that may decide this request",
        ));
    }
    Ok(())
}

async fn pending_approval(state: &AppState, id: &str) -> Result<ApprovalRecord, ApiError> {
    let approval = state
        .approval_now(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if approval.status != Status::Pending {
        return Err(not_pending(approval.status));
    }
    Ok(approval)
}

fn not_pending(status: Status) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_pending",
        format!("the request is {}", status.as_str()),
    )
    .with("approval_status", status.as_str())
}

fn already_decided() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_decided",
        "you have already decided this request",
    )
}

fn credential_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "credential_not_allowed",
        "this passkey may not be used for this decision",
    )
}

#[tracing::instrument(skip_all, fields(user = %approver.0.username, approval_id = %path))]
pub async fn options(
    state: web::Data<AppState>,
    req: HttpRequest,
    approver: Approver,
    path: web::Path<String>,
    body: StrictJson<DecisionOptions>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    let user = approver.0;
    state.ceremony_allowed(&format!("user:{}", user.id))?;
    let decision = body.0.decision;
    let approval = pending_approval(&state, &path).await?;
    if let Err(e) = eligibility(&user, &approval) {
        return Err(audited(&state, &user, &approval.id, e).await);
    }
    if state
        .store
        .decisions(&approval.id)
        .await?
        .iter()
        .any(|d| d.user_id == user.id)
    {
        return Err(already_decided());
    }
    let allow: Vec<String> = state
        .store
        .user_credentials(&user.id)
        .await?
        .into_iter()
        .filter(|c| c.usable())
        .map(|c| c.id)
        .collect();
    if allow.is_empty() {
        return Err(credential_not_allowed());
    }
    let (id_bytes, tx_hash) = binding(&approval)?;
    let nonce = random32();
    let challenge = decision_challenge(&id_bytes, decision, tx_hash.as_bytes(), &nonce);
    let now = state.clock.now();
    let ceremony = Ceremony {
        // Time-ordered like request ids (see `approvals::create`).
        id: uuid::Uuid::now_v7().to_string(),
        kind: CeremonyKind::Decision,
        user_id: Some(user.id.clone()),
        approval_id: Some(approval.id.clone()),
        decision: Some(decision.as_str().into()),
        scope: json!({ "challenge": b64(&challenge), "nonce": b64(&nonce), "allow": allow }),
        created_at: now,
        expires_at: now + CEREMONY_SECS,
    };
    let actor = format!("user:{}", user.username);
    let ev = NewEvent {
        kind: "ceremony_started",
        actor: &actor,
        approval_id: Some(&approval.id),
        data: json!({ "ceremony": ceremony.id, "decision": decision.as_str() }),
    };
    state.store.create_ceremony(&ceremony, Some(ev)).await?;
    let public_key = state.rp.request_options(&challenge, &allow);
    Ok(HttpResponse::Ok()
        .json(json!({ "ceremony": ceremony.id, "publicKey": public_key, "nonce": b64(&nonce) })))
}

/// The request id and transaction hash as the challenge binds them.
fn binding(approval: &ApprovalRecord) -> Result<([u8; 16], TxHash), ApiError> {
    let id = uuid::Uuid::parse_str(&approval.id).map_err(|_| ApiError::internal())?;
    let tx_hash = TxHash::parse(&approval.tx_hash).map_err(|_| ApiError::internal())?;
    Ok((*id.as_bytes(), tx_hash))
}

#[tracing::instrument(skip_all, fields(user = %approver.0.username, approval_id = %path))]
pub async fn finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    approver: Approver,
    path: web::Path<String>,
    body: StrictJson<Finish>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    let user = approver.0;
    let id = path.into_inner();
    match decide(&state, &user, &id, &body.0).await {
        Ok((approval, decisions)) => Ok(HttpResponse::Ok().json(super::views::approver_view(
            &state, &approval, &decisions, &user,
        ))),
        Err(e) => Err(audited(&state, &user, &id, e).await),
    }
}

async fn decide(
    state: &AppState,
    user: &User,
    id: &str,
    finish: &Finish,
) -> Result<(ApprovalRecord, Vec<DecisionRecord>), ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ApiError::not_found());
    }
    // Read, verify, then consume inside the one transaction that records the decision: a
    // successful decision costs one commit. Every refusal below ends the ceremony too.
    let ceremony = match state
        .store
        .peek_ceremony(
            &finish.ceremony,
            CeremonyKind::Decision,
            Some(&user.id),
            Some(id),
        )
        .await?
    {
        Taken::Ceremony(c) => c,
        Taken::Mismatch => return Err(ceremony_mismatch()),
        Taken::Gone => return Err(ceremony_consumed()),
    };
    match check(state, user, id, finish, &ceremony).await {
        Ok((approval, record, counter)) => {
            let now = state.clock.now();
            let signer: Arc<dyn ReceiptSigner> = state.issuer.clone();
            match state
                .store
                .record_decision(&approval, &record, &ceremony.id, counter, signer, now)
                .await?
            {
                DecisionOutcome::Recorded(approval, decisions) => {
                    if approval.status == Status::Approved {
                        crate::metrics::Metrics::inc(&state.metrics.receipts_issued);
                    }
                    Ok((*approval, decisions))
                }
                DecisionOutcome::AlreadyDecided => Err(already_decided()),
                DecisionOutcome::NotPending(status) => Err(not_pending(status)),
                DecisionOutcome::CeremonyConsumed => Err(ceremony_consumed()),
                DecisionOutcome::PossibleClone => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "possible_clone",
                    "this passkey's signature counter went backwards; it has been blocked",
                )),
            }
        }
        // A concurrent finish with the same ceremony may have won meanwhile (and, say, approved
        // the request): then the answer is that the ceremony was used, whatever else failed.
        Err(e) => match state.store.discard_ceremony(&ceremony.id).await? {
            true => Err(e),
            false => Err(ceremony_consumed()),
        },
    }
}

/// Every check of a decision finish that needs no write: the ceremony's lifetime, the
/// credential, the person and the request as they stand now, and WebAuthn L3 §7.2.
async fn check(
    state: &AppState,
    user: &User,
    id: &str,
    finish: &Finish,
    ceremony: &Ceremony,
) -> Result<(ApprovalRecord, DecisionRecord, i64), ApiError> {
    let now = state.clock.now();
    if ceremony.expires_at <= now {
        return Err(ceremony_expired());
    }
    let decision: Decision = ceremony
        .decision
        .as_deref()
        .and_then(|d| d.parse().ok())
        .ok_or_else(ApiError::internal)?;
    let assertion_invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "assertion_invalid",
            "the passkey assertion did not verify",
        )
    };
    let assertion = AssertionResponse::parse(&finish.credential).ok_or_else(assertion_invalid)?;
    let allowed = ceremony
        .scope
        .get("allow")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|c| c.as_str() == Some(&assertion.credential_id))
        });
    // Read now, not at options time: a revoked passkey, a disabled user or a removal from the
    // group in between is honoured.
    let cred = match state.store.credential(&assertion.credential_id).await? {
        Some(c) if allowed && c.user_id == user.id && c.usable() => c,
        _ => return Err(credential_not_allowed()),
    };
    // `user` came from this request's session, read just now with its current groups, and a
    // disabled user has no session: no second read is needed.
    let approval = pending_approval(state, id).await?;
    eligibility(user, &approval)?;

    // The challenge is recomputed from server state, not taken from the ceremony alone, so a
    // ceremony can only ever verify against the transaction this request holds.
    let (id_bytes, tx_hash) = binding(&approval)?;
    let nonce: [u8; 32] = ceremony
        .scope
        .get("nonce")
        .and_then(Value::as_str)
        .and_then(unb64)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(ApiError::internal)?;
    let challenge = decision_challenge(&id_bytes, decision, tx_hash.as_bytes(), &nonce);
    let verified = state.rp.verify(&cred, &assertion, &challenge).map_err(|e| match e {
        AssertionError::UserNotVerified => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "user_verification_required",
            "the passkey did not verify who you are (PIN or biometric)",
        ),
        other => {
            tracing::warn!(target: "countersign::security", error = %other, "assertion refused");
            assertion_invalid()
        }
    })?;
    let key = crate::assertion::Es256Key::from_xy(&cred.public_x, &cred.public_y)
        .map_err(|_| ApiError::internal())?;
    let record = DecisionRecord {
        approval_id: approval.id.clone(),
        user_id: user.id.clone(),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        decision,
        credential_id: cred.id.clone(),
        at: now,
        nonce: nonce.to_vec(),
        authenticator_data: assertion.authenticator_data,
        client_data_json: assertion.client_data_json,
        signature: assertion.signature,
        public_jwk: key.to_jwk(),
        user_verified: verified.user_verified,
    };
    Ok((approval, record, i64::from(verified.counter)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MineQuery {
    status: Option<String>,
}

/// `GET /v1/me/approvals?status=pending` (the inbox) or `?status=decided` (history).
#[tracing::instrument(skip_all, fields(user = %approver.0.username))]
pub async fn mine(
    state: web::Data<AppState>,
    approver: Approver,
    query: web::Query<MineQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = approver.0;
    let now = state.clock.now();
    let mut out = Vec::new();
    match query.status.as_deref().unwrap_or("pending") {
        "pending" => {
            for approval in state.store.undecided_pending(&user, now, 500).await? {
                if eligibility(&user, &approval).is_ok() {
                    let decisions = state.store.decisions(&approval.id).await?;
                    out.push(listed(&state, &approval, &decisions, &user)?);
                }
            }
        }
        "decided" => {
            for (approval, _, _) in state.store.decided_by(&user, 200).await? {
                let approval = state.store.settle(approval, now).await?;
                let decisions = state.store.decisions(&approval.id).await?;
                out.push(listed(&state, &approval, &decisions, &user)?);
            }
        }
        _ => return Err(ApiError::invalid_request("status is pending or decided")),
    }
    Ok(HttpResponse::Ok().json(json!({ "approvals": out })))
}

fn listed(
    state: &AppState,
    approval: &ApprovalRecord,
    decisions: &[DecisionRecord],
    user: &User,
) -> Result<Value, ApiError> {
    serde_json::to_value(super::views::approver_view(
        state, approval, decisions, user,
    ))
    .map_err(|_| ApiError::internal())
}

//! Passkey enrolment through a one-time invitation link.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{EmptyBody, StrictJson};
use super::problem::ApiError;
use super::session::check_origin;
use super::AppState;
use crate::client::key_hash;
use crate::passkeys::{b64, RegistrationError, CEREMONY_SECS};
use crate::store::{Ceremony, CeremonyKind, EnrolOutcome, InvitationState, Taken, User};

fn invitation_used() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "invitation_used",
        "this enrolment link was used already",
    )
}

fn invitation_expired() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "invitation_expired",
        "this enrolment link has expired; ask for a new one",
    )
}

/// The invitation's user, if the link can still be used.
pub async fn usable_invitation(
    state: &AppState,
    token: &str,
) -> Result<(User, [u8; 32]), ApiError> {
    let hash = key_hash(token);
    match state.store.invitation(&hash, state.clock.now()).await? {
        None => Err(ApiError::not_found()),
        Some((_, InvitationState::Used)) => Err(invitation_used()),
        Some((_, InvitationState::Expired)) => Err(invitation_expired()),
        Some((user, InvitationState::Usable)) => Ok((user, hash)),
    }
}

#[tracing::instrument(skip_all)]
pub async fn options(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    state.ceremony_allowed(&super::session::peer_key(&req))?;
    let (user, hash) = usable_invitation(&state, &path).await?;
    let existing = state.store.user_credentials(&user.id).await?;
    let (public_key, reg_state) = state.rp.start_registration(&user, &existing).map_err(|e| {
        tracing::error!(error = %e, "starting a registration");
        ApiError::internal()
    })?;
    let now = state.clock.now();
    let ceremony = Ceremony {
        id: uuid::Uuid::new_v4().to_string(),
        kind: CeremonyKind::Enroll,
        user_id: Some(user.id.clone()),
        approval_id: None,
        decision: None,
        scope: json!({ "state": reg_state, "invitation": b64(&hash) }),
        created_at: now,
        expires_at: now + CEREMONY_SECS,
    };
    state.store.create_ceremony(&ceremony, None).await?;
    Ok(HttpResponse::Ok().json(json!({ "ceremony": ceremony.id, "publicKey": public_key })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollFinish {
    ceremony: String,
    credential: Value,
    #[serde(default)]
    label: Option<String>,
}

#[tracing::instrument(skip_all)]
pub async fn finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: StrictJson<EnrollFinish>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    let body = body.0;
    let label = body.label.unwrap_or_else(|| "Passkey".into());
    let label = label.trim();
    super::approvals::plain_text("label", label, 64)?;
    let (user, hash) = usable_invitation(&state, &path).await?;
    let ceremony = match state
        .store
        .take_ceremony(&body.ceremony, CeremonyKind::Enroll, Some(&user.id), None)
        .await?
    {
        Taken::Ceremony(c) => c,
        Taken::Mismatch => return Err(ceremony_mismatch()),
        Taken::Gone => return Err(ceremony_consumed()),
    };
    if ceremony.scope.get("invitation").and_then(Value::as_str) != Some(b64(&hash).as_str()) {
        return Err(ceremony_mismatch());
    }
    if ceremony.expires_at <= state.clock.now() {
        return Err(ceremony_expired());
    }
    let reg_state = ceremony.scope.get("state").cloned().unwrap_or(Value::Null);
    let cred = state.rp.finish_registration(&body.credential, &reg_state, label).map_err(|e| {
        tracing::warn!(target: "countersign::security", error = %e, user = %user.username, "enrolment refused");
        match e {
            RegistrationError::NotEs256 => ApiError::new(StatusCode::BAD_REQUEST, "unsupported_algorithm", e.to_string()),
            RegistrationError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, "registration_invalid", "the passkey registration did not verify"),
        }
    })?;
    match state
        .store
        .enrol(&hash, &user, &cred, state.clock.now())
        .await?
    {
        EnrolOutcome::Enrolled => Ok(HttpResponse::Created()
            .json(json!({ "user": user.username, "credential_id": cred.id }))),
        EnrolOutcome::InvitationUsed => Err(invitation_used()),
        EnrolOutcome::InvitationExpired => Err(invitation_expired()),
        EnrolOutcome::CredentialExists => Err(ApiError::new(
            StatusCode::CONFLICT,
            "credential_exists",
            "this passkey is enrolled already",
        )),
    }
}

pub fn ceremony_mismatch() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "ceremony_mismatch",
        "the ceremony belongs to another request or decision",
    )
}

pub fn ceremony_consumed() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "ceremony_consumed",
        "the ceremony was used already; start again",
    )
}

pub fn ceremony_expired() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "ceremony_expired",
        "the ceremony expired; start again",
    )
}

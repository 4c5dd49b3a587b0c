//! Passkey enrolment through a one-time invitation link.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::super::extract::{Empty, EmptyBody, StrictJson};
use super::super::problem::ApiError;
use super::super::{peer_key, AppState};
use super::Started;
use crate::domain::client::key_hash;
use crate::domain::Refusal;
use crate::passkeys::b64;
use crate::service::enrol;

/// The token is checked first: a valid invitation's ceremonies count against that invitation,
/// a refused token's against the caller's address, so a flood of invalid tokens from behind
/// the same proxy never locks a real invitee out.
#[utoipa::path(
    post,
    path = "/v1/enroll/{token}/options",
    operation_id = "beginEnrolment",
    tag = "approver",
    params(("token" = String, Path, description = "The invitation link's token")),
    request_body(content = Empty, description = "Nothing, or `{}`"),
    responses((status = 200, description = "The passkey registration begun", body = Started)),
    extensions(("x-refusals" = json!([
        Refusal::RateLimited,
        Refusal::InvitationUsed,
        Refusal::InvitationExpired,
    ]))),
)]
#[tracing::instrument(skip_all)]
pub async fn options(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    let token = path.into_inner();
    let (user, hash) = match enrol::invitation(&state.svc, &token, state.svc.clock.now()).await {
        Ok(found) => found,
        Err(e) => {
            state.ceremony_allowed(&format!("refused:{}", peer_key(&req)))?;
            return Err(e);
        }
    };
    state.ceremony_allowed(&format!("invitation:{}", b64(&key_hash(&token))))?;
    let (ceremony, public_key) = enrol::options(&state.svc, &user, hash).await?;
    state
        .metrics
        .ceremonies
        .get_or_create(&crate::metrics::Kind { kind: "enrolment" })
        .inc();
    Ok(HttpResponse::Ok().json(Started {
        ceremony,
        public_key,
        nonce: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollFinish {
    ceremony: String,
    /// The `PublicKeyCredential` the browser made, in its `toJSON()` form.
    #[schema(value_type = Object)]
    credential: Value,
    /// What the person calls this passkey (default "Passkey").
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    label: Option<String>,
}

/// A passkey enrolled.
#[derive(Serialize, ToSchema)]
pub struct Enrolled {
    user: String,
    #[schema(value_type = String)]
    credential_id: crate::domain::CredentialId,
}

/// Enrols the passkey the browser made, and spends the invitation.
#[utoipa::path(
    post,
    path = "/v1/enroll/{token}/finish",
    operation_id = "finishEnrolment",
    tag = "approver",
    params(("token" = String, Path, description = "The invitation link's token")),
    request_body = EnrollFinish,
    responses((status = 201, description = "Enrolled", body = Enrolled)),
    extensions(("x-refusals" = json!([
        Refusal::InvitationUsed,
        Refusal::InvitationExpired,
        Refusal::CeremonyMismatch,
        Refusal::CeremonyConsumed,
        Refusal::CeremonyExpired,
        Refusal::RegistrationInvalid,
        Refusal::UnsupportedAlgorithm,
        Refusal::CredentialExists,
    ]))),
)]
#[tracing::instrument(skip_all)]
pub async fn finish(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: StrictJson<EnrollFinish>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let (user, credential) = enrol::finish(
        &state.svc,
        &path,
        &body.ceremony,
        &body.credential,
        body.label.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Created().json(Enrolled {
        user: user.username,
        credential_id: credential,
    }))
}

//! Passkey enrolment through a one-time invitation link.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::super::extract::{EmptyBody, StrictJson};
use super::super::problem::ApiError;
use super::super::{peer_key, AppState};
use crate::domain::client::key_hash;
use crate::passkeys::b64;
use crate::service::enrol;

/// The token is checked first: a valid invitation's ceremonies count against that invitation,
/// a refused token's against the caller's address, so a flood of invalid tokens from behind
/// the same proxy never locks a real invitee out.
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
    Ok(HttpResponse::Ok().json(json!({ "ceremony": ceremony, "publicKey": public_key })))
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
    Ok(HttpResponse::Created().json(json!({ "user": user.username, "credential_id": credential })))
}

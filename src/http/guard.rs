//! Who is calling, settled before any body is read: middleware on each resource, so that an
//! invalid API key is a 401 and a foreign Origin a 403 whatever the body holds, every time
//! (extractors of one handler run concurrently, and a body error could otherwise win).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use super::problem::ApiError;
use super::AppState;
use crate::assertion::same_origin;
use crate::domain::Refusal;
use crate::service::authenticate;
use crate::service::sign_in::{session_hash, session_user};

fn state(req: &ServiceRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Refusal::Internal.into())
}

/// The API key of `Authorization: Bearer …`: the client must exist, not be revoked and be
/// within its rate.
pub async fn client(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state(&req)?;
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Boxed: a held long-poll then keeps none of this lookup's state.
    let client = Box::pin(authenticate::client(&state.svc, key)).await?;
    if !state.limits.client.allow(&client.id.to_string()) {
        tracing::warn!(target: "countersign::security", client = %client.name, "API client rate-limited");
        state
            .metrics
            .rate_limited
            .get_or_create(&crate::metrics::Kind { kind: "client" })
            .inc();
        return Err(ApiError::from(Refusal::RateLimited).into());
    }
    req.extensions_mut().insert(client);
    next.call(req).await
}

/// State-changing approver calls must come from our own pages (or a client that says so):
/// the `Origin` header must be the configured public origin.
fn check_origin(req: &ServiceRequest, state: &AppState) -> Result<(), ApiError> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if same_origin(o, &state.config.public_origin) => Ok(()),
        other => {
            tracing::warn!(target: "countersign::security", origin = ?other, "refused: bad Origin");
            Err(Refusal::BadOrigin.into())
        }
    }
}

/// Calls before sign-in that change something (sign-in, enrolment, sign-out): our Origin.
pub async fn origin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state(&req)?;
    if req.method() != Method::GET {
        check_origin(&req, &state)?;
    }
    next.call(req).await
}

/// The session cookie's value, if one came.
pub fn presented_session(req: &actix_web::HttpRequest, state: &AppState) -> Option<[u8; 32]> {
    req.cookie(state.cookie_name())
        .map(|c| session_hash(c.value()))
}

/// Signed-in approver calls: a live session (401 otherwise), then, for anything but a read,
/// our Origin (403).
pub async fn approver(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state(&req)?;
    let not_signed_in =
        || ApiError::from(Refusal::Unauthorized).detail("sign in with your passkey first");
    let hash = presented_session(req.request(), &state).ok_or_else(not_signed_in)?;
    let user = session_user(&state.svc, &hash)
        .await?
        .ok_or_else(not_signed_in)?;
    if req.method() != Method::GET {
        check_origin(&req, &state)?;
    }
    req.extensions_mut().insert(user);
    next.call(req).await
}

//! Approver sessions over HTTP: sign-in options and finish (the session cookie), sign-out.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::extract::{Empty, EmptyBody, StrictJson};
use super::super::guard::presented_session;
use super::super::problem::ApiError;
use super::super::{peer_key, AppState};
use super::decisions::Finish;
use super::Started;
use crate::domain::Refusal;
use crate::service::sign_in::{self, ABSOLUTE_SECS};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInOptions {
    /// Whose passkeys to offer; without it, any discoverable passkey.
    username: Option<String>,
}

/// Begins a passkey sign-in. Before sign-in, every ceremony begun is counted against the
/// caller's address.
#[utoipa::path(
    post,
    path = "/v1/session/options",
    operation_id = "beginSignIn",
    tag = "approver",
    request_body = SignInOptions,
    responses((status = 200, description = "The sign-in begun", body = Started)),
    extensions(("x-refusals" = json!([Refusal::RateLimited]))),
)]
#[tracing::instrument(skip_all)]
pub async fn options(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: StrictJson<SignInOptions>,
) -> Result<HttpResponse, ApiError> {
    state.ceremony_allowed(&peer_key(&req))?;
    let (ceremony, public_key) = sign_in::options(&state.svc, body.0.username.as_deref()).await?;
    state
        .metrics
        .ceremonies
        .get_or_create(&crate::metrics::Kind { kind: "sign_in" })
        .inc();
    Ok(HttpResponse::Ok().json(Started {
        ceremony,
        public_key,
        nonce: None,
    }))
}

/// Who signed in.
#[derive(Serialize, ToSchema)]
pub struct SignedIn<'a> {
    user: &'a str,
    name: &'a str,
}

/// Signs in with the passkey's assertion: sets the session cookie.
#[utoipa::path(
    post,
    path = "/v1/session/finish",
    operation_id = "finishSignIn",
    tag = "approver",
    request_body = Finish,
    responses((
        status = 200,
        description = "Signed in; the response sets the session cookie",
        body = SignedIn
    )),
    extensions(("x-refusals" = json!([Refusal::AuthenticationFailed]))),
)]
#[tracing::instrument(skip_all)]
pub async fn finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: StrictJson<Finish>,
) -> Result<HttpResponse, ApiError> {
    let old = presented_session(&req, &state);
    let signed = sign_in::finish(&state.svc, &body.0.ceremony, &body.0.credential, old).await?;
    state.metrics.sessions.inc();
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&state, signed.cookie))
        .json(SignedIn {
            user: &signed.user.username,
            name: &signed.user.display_name,
        }))
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(state.cookie_name(), value)
        .path("/")
        .http_only(true)
        .secure(state.config.is_https())
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::seconds(ABSOLUTE_SECS))
        .finish()
}

/// Signs out: ends the session the cookie names, if any, and removes the cookie.
#[utoipa::path(
    post,
    path = "/v1/session/logout",
    operation_id = "signOut",
    tag = "approver",
    request_body(content = Empty, description = "Nothing, or `{}`"),
    responses((status = 204, description = "Signed out")),
)]
#[tracing::instrument(skip_all)]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    if let Some(hash) = presented_session(&req, &state) {
        sign_in::sign_out(&state.svc, &hash).await?;
    }
    let mut gone = session_cookie(&state, String::new());
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

//! Approver sessions: cookies, the Origin check on state-changing calls, sign-in and sign-out.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::extract::{EmptyBody, StrictJson};
use super::problem::ApiError;
use super::AppState;
use crate::assertion::same_origin;
use crate::passkeys::{b64, unb64, AssertionResponse, CEREMONY_SECS};
use crate::store::{Ceremony, CeremonyKind, Taken, User};

/// A session ends after this long without use…
pub const IDLE_SECS: i64 = 30 * 60;
/// …and after this long whatever happens.
pub const ABSOLUTE_SECS: i64 = 12 * 60 * 60;

pub fn cookie_name(state: &AppState) -> &'static str {
    if state.config.is_https() {
        "__Host-countersign-session"
    } else {
        "countersign-session"
    }
}

fn session_hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

pub(super) fn presented_session(req: &HttpRequest, state: &AppState) -> Option<[u8; 32]> {
    req.cookie(cookie_name(state))
        .map(|c| session_hash(c.value()))
}

/// State-changing approver calls must come from our own pages (or a client that says so):
/// the `Origin` header must be the configured public origin.
pub fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if same_origin(o, &state.config.public_origin) => Ok(()),
        other => {
            tracing::warn!(target: "countersign::security", origin = ?other, path = %req.path(), "refused: bad Origin");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_origin",
                "the Origin header is not this server's origin",
            ))
        }
    }
}

/// The signed-in approver.
pub struct Approver(pub User);

impl FromRequest for Approver {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(ApiError::internal)?;
            let hash = presented_session(&req, &state).ok_or_else(not_signed_in)?;
            match state
                .store
                .session_user(&hash, state.clock.now(), IDLE_SECS)
                .await?
            {
                Some(user) => Ok(Approver(user)),
                None => Err(not_signed_in()),
            }
        })
    }
}

fn not_signed_in() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign in with your passkey first",
    )
}

fn authentication_failed() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "authentication_failed",
        "sign-in failed",
    )
}

/// Rate-limit key for calls made before sign-in: the peer address.
pub fn peer_key(req: &HttpRequest) -> String {
    format!(
        "addr:{}",
        req.peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    )
}

pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInOptions {
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    pub ceremony: String,
    pub credential: Value,
}

/// A stand-in credential id for a username that has no passkeys, so that the options do not
/// reveal which usernames exist: stable per name, unguessable without the master key.
fn decoy_credential(state: &AppState, username: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"countersign/decoy-credential/v1\0");
    h.update(state.master_key.0);
    h.update(username.as_bytes());
    b64(h.finalize().get(..16).unwrap_or_default())
}

#[tracing::instrument(skip_all)]
pub async fn options(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: StrictJson<SignInOptions>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    let challenge = random32();
    let allow = match &body.0.username {
        None => None,
        Some(name) => {
            let usable = match state.store.user_by_username(name).await? {
                Some(u) if u.disabled_at.is_none() => state
                    .store
                    .user_credentials(&u.id)
                    .await?
                    .into_iter()
                    .filter(|c| c.usable())
                    .map(|c| c.id)
                    .collect(),
                _ => Vec::new(),
            };
            Some(if usable.is_empty() {
                vec![decoy_credential(&state, name)]
            } else {
                usable
            })
        }
    };
    let now = state.clock.now();
    let ceremony = Ceremony {
        id: uuid::Uuid::new_v4().to_string(),
        kind: CeremonyKind::SignIn,
        user_id: None,
        approval_id: None,
        decision: None,
        scope: json!({ "challenge": b64(&challenge), "allow": allow }),
        created_at: now,
        expires_at: now + CEREMONY_SECS,
    };
    state.store.create_ceremony(&ceremony, None).await?;
    let public_key = state
        .rp
        .request_options(&challenge, allow.as_deref().unwrap_or_default());
    Ok(HttpResponse::Ok().json(json!({ "ceremony": ceremony.id, "publicKey": public_key })))
}

/// Why a sign-in failed, for the log only: the caller always sees `authentication_failed`.
async fn sign_in(state: &AppState, finish: &Finish) -> Result<User, String> {
    let now = state.clock.now();
    let ceremony = match state
        .store
        .take_ceremony(&finish.ceremony, CeremonyKind::SignIn, None, None)
        .await
    {
        Ok(Taken::Ceremony(c)) => c,
        Ok(other) => return Err(format!("ceremony: {other:?}")),
        Err(e) => return Err(format!("store: {e}")),
    };
    if ceremony.expires_at <= now {
        return Err("ceremony expired".into());
    }
    let assertion = AssertionResponse::parse(&finish.credential).ok_or("malformed credential")?;
    if let Some(allow) = ceremony.scope.get("allow").and_then(Value::as_array) {
        if !allow
            .iter()
            .any(|id| id.as_str() == Some(assertion.credential_id.as_str()))
        {
            return Err("credential not in allowCredentials".into());
        }
    }
    let cred = state
        .store
        .credential(&assertion.credential_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("unknown credential")?;
    if !cred.usable() {
        return Err("credential revoked or flagged".into());
    }
    let user = state
        .store
        .user_by_id(&cred.user_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no user")?;
    if user.disabled_at.is_some() {
        return Err("user disabled".into());
    }
    if let Some(handle) = &assertion.user_handle {
        let expected = uuid::Uuid::parse_str(&user.id).map_err(|e| e.to_string())?;
        if handle.as_slice() != expected.as_bytes() {
            return Err("userHandle does not match the credential's user".into());
        }
    }
    let challenge = ceremony
        .scope
        .get("challenge")
        .and_then(Value::as_str)
        .and_then(unb64)
        .ok_or("ceremony without challenge")?;
    let verified = state
        .rp
        .verify(&cred, &assertion, &challenge)
        .map_err(|e| format!("assertion: {e}"))?;
    if !state
        .store
        .advance_counter(&cred.id, &user.username, i64::from(verified.counter), now)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err("signature counter did not advance (possible clone)".into());
    }
    Ok(user)
}

#[tracing::instrument(skip_all)]
pub async fn finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: StrictJson<Finish>,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    let user = match sign_in(&state, &body.0).await {
        Ok(user) => user,
        Err(reason) => {
            tracing::warn!(target: "countersign::security", reason, "sign-in failed");
            return Err(authentication_failed());
        }
    };
    // Always a new session id: whatever cookie came in (possibly planted) is ended.
    let value = b64(&random32());
    let now = state.clock.now();
    let old = presented_session(&req, &state);
    state
        .store
        .create_session(
            &session_hash(&value),
            &user.id,
            old.as_ref(),
            now,
            now + ABSOLUTE_SECS,
        )
        .await?;
    tracing::info!(target: "countersign::security", user = %user.username, "signed in");
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&state, value))
        .json(json!({ "user": user.username, "name": user.display_name })))
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(cookie_name(state), value)
        .path("/")
        .http_only(true)
        .secure(state.config.is_https())
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::seconds(ABSOLUTE_SECS))
        .finish()
}

#[tracing::instrument(skip_all)]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    _body: EmptyBody,
) -> Result<HttpResponse, ApiError> {
    check_origin(&req, &state)?;
    if let Some(hash) = presented_session(&req, &state) {
        state.store.delete_session(&hash).await?;
    }
    let mut gone = session_cookie(&state, String::new());
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

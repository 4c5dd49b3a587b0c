//! Request extractors that enforce the contract's conventions before a handler runs: JSON only
//! (415), at most 64 KiB (413), unknown fields refused (400), and a deadline for the body to
//! arrive (408). Who is calling has been settled before any body is read (see `guard`).

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use super::AppState;
use crate::domain::{Client, Refusal, User};

pub const BODY_LIMIT: usize = 64 * 1024;

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn declared_too_large(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > BODY_LIMIT)
}

/// How long a body may take to arrive, from the configuration.
fn deadline(req: &HttpRequest) -> Duration {
    req.app_data::<web::Data<AppState>>()
        .map_or(Duration::from_secs(20), |s| {
            Duration::from_secs(s.config.client_timeout_secs)
        })
}

/// Reads the body, refusing more than [`BODY_LIMIT`] bytes without buffering them, and a
/// body that does not arrive within `deadline` (a client that sends headers and idles holds a
/// connection and a file descriptor until then, not forever).
async fn read_limited(mut payload: Payload, deadline: Duration) -> Result<Vec<u8>, ApiError> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| match e {
                actix_web::error::PayloadError::Overflow => {
                    ApiError::from(Refusal::PayloadTooLarge)
                }
                other => ApiError::from(Refusal::InvalidRequest)
                    .detail(format!("could not read the body: {other}")),
            })?;
            if body.len() + chunk.len() > BODY_LIMIT {
                return Err(Refusal::PayloadTooLarge.into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(body) => body,
        Err(_) => {
            tracing::warn!(target: "countersign::security", "request body did not arrive in time");
            Err(Refusal::RequestTimeout.into())
        }
    }
}

fn invalid_json(e: serde_json::Error) -> ApiError {
    ApiError::from(Refusal::InvalidRequest).detail(format!("invalid JSON body: {e}"))
}

/// Every body is a JSON object. serde would also fill a struct from an array of its fields in
/// order (`[]` for `{}`), which no client is told it may send.
fn object(body: &[u8]) -> Result<&[u8], ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(body),
        _ => Err(ApiError::from(Refusal::InvalidRequest).detail("the body must be a JSON object")),
    }
}

/// A JSON body deserialised strictly (the target types use `deny_unknown_fields`).
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for StrictJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let precheck: Result<(), ApiError> = if declared_too_large(req) {
            Err(Refusal::PayloadTooLarge.into())
        } else if !is_json(req) {
            Err(Refusal::UnsupportedMediaType.into())
        } else {
            Ok(())
        };
        let (payload, deadline) = (payload.take(), deadline(req));
        Box::pin(async move {
            precheck?;
            let body = read_limited(payload, deadline).await?;
            serde_json::from_slice(object(&body)?)
                .map(StrictJson)
                .map_err(invalid_json)
        })
    }
}

/// For calls that take no parameters: an empty body, or a JSON `{}`.
pub struct EmptyBody;

/// The one JSON body a call without parameters takes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

impl FromRequest for EmptyBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (json, too_large) = (is_json(req), declared_too_large(req));
        let (payload, deadline) = (payload.take(), deadline(req));
        Box::pin(async move {
            if too_large {
                return Err(Refusal::PayloadTooLarge.into());
            }
            let body = read_limited(payload, deadline).await?;
            if body.is_empty() {
                return Ok(EmptyBody);
            }
            if !json {
                return Err(Refusal::UnsupportedMediaType.into());
            }
            serde_json::from_slice::<Empty>(object(&body)?)
                .map(|_| EmptyBody)
                .map_err(invalid_json)
        })
    }
}

/// The service client the `guard::client` middleware authenticated.
pub struct ServiceClient(pub Client);

impl FromRequest for ServiceClient {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let client = req.extensions().get::<Client>().cloned();
        // A route that takes a client without the guard is a wiring bug: refuse, never serve.
        std::future::ready(
            client
                .map(ServiceClient)
                .ok_or_else(|| Refusal::Unauthorized.into()),
        )
    }
}

/// The signed-in approver the `guard::approver` middleware found.
pub struct Approver(pub User);

impl FromRequest for Approver {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user = req.extensions().get::<User>().cloned();
        std::future::ready(user.map(Approver).ok_or_else(|| {
            ApiError::from(Refusal::Unauthorized).detail("sign in with your passkey first")
        }))
    }
}

//! Request extractors that enforce the contract's conventions before a handler runs:
//! JSON only (415), at most 64 KiB (413), unknown fields refused (400), and API-key auth.

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use super::AppState;
use crate::client::{key_hash, Client};

pub const BODY_LIMIT: usize = 64 * 1024;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request bodies are limited to 64 KiB",
    )
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body, refusing more than [`BODY_LIMIT`] bytes without buffering them.
async fn read_limited(mut payload: Payload) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            other => ApiError::invalid_request(format!("could not read the body: {other}")),
        })?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn declared_too_large(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > BODY_LIMIT)
}

/// A JSON body deserialised strictly (the target types use `deny_unknown_fields`).
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for StrictJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let precheck = if declared_too_large(req) {
            Err(too_large())
        } else if !is_json(req) {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            ))
        } else {
            Ok(())
        };
        let payload = payload.take();
        Box::pin(async move {
            precheck?;
            let body = read_limited(payload).await?;
            serde_json::from_slice(&body)
                .map(StrictJson)
                .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
        })
    }
}

/// For calls that take no parameters: an empty body, or a JSON `{}`.
pub struct EmptyBody;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

impl FromRequest for EmptyBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let too_large = declared_too_large(req);
        let payload = payload.take();
        Box::pin(async move {
            if too_large {
                return Err(self::too_large());
            }
            let body = read_limited(payload).await?;
            if body.is_empty() {
                return Ok(EmptyBody);
            }
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send Content-Type: application/json",
                ));
            }
            serde_json::from_slice::<Empty>(&body)
                .map(|_| EmptyBody)
                .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
        })
    }
}

/// The service client authenticated by `Authorization: Bearer <api key>`.
pub struct ServiceClient(pub Client);

impl FromRequest for ServiceClient {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let hash = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|key| key_hash(key.trim()));
        Box::pin(async move {
            let (Some(state), Some(hash)) = (state, hash) else {
                return Err(ApiError::unauthorized());
            };
            match state.store.client_by_key_hash(&hash).await? {
                Some(client) if client.revoked_at.is_none() => {
                    if !state.client_limit.allow(&client.id) {
                        tracing::warn!(target: "countersign::security", client = %client.name, "API client rate-limited");
                        return Err(ApiError::rate_limited());
                    }
                    Ok(ServiceClient(client))
                }
                Some(client) => {
                    tracing::warn!(target: "countersign::security", client = %client.name, "revoked API key used");
                    Err(ApiError::unauthorized())
                }
                None => {
                    tracing::warn!(target: "countersign::security", "unknown API key used");
                    Err(ApiError::unauthorized())
                }
            }
        })
    }
}

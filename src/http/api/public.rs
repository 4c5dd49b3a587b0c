use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::super::problem::ApiError;
use crate::domain::client::key_hash;
use crate::domain::Refusal;

use crate::http::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.svc.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store unreachable");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "store_unavailable" }))
        }
    }
}

/// `/metrics`; with `metrics_token` set, only for `Authorization: Bearer <token>`.
pub async fn metrics(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &state.config.metrics_token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared as hashes, so the comparison takes the same time wherever they differ.
        if key_hash(presented) != key_hash(token) {
            return Err(ApiError::from(Refusal::Unauthorized)
                .detail("/metrics needs Authorization: Bearer <metrics_token>"));
        }
    }
    let backlog = match state.svc.store.backlog().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "reading the outbox backlog for /metrics");
            None
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE))
        .body(state.metrics.render(backlog)))
}

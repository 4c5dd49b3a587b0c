//! What anyone may ask: liveness, readiness and the metrics (behind `metrics_token` when set).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::super::problem::ApiError;
use crate::domain::client::key_hash;
use crate::domain::Refusal;

use crate::http::AppState;

/// How the server is.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (live), `ready`, or `store_unavailable`.
    #[schema(pattern = "^(ok|ready|store_unavailable)$")]
    status: &'static str,
}

/// Whether the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "public",
    responses((status = 200, description = "Live", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Whether the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "public",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The store does not answer", body = Health),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.svc.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(Health { status: "ready" }),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: store unreachable");
            HttpResponse::ServiceUnavailable().json(Health {
                status: "store_unavailable",
            })
        }
    }
}

/// The metrics, in OpenMetrics text; with `metrics_token` set, only for
/// `Authorization: Bearer <token>`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "public",
    responses((
        status = 200,
        description = "OpenMetrics text",
        content_type = "application/openmetrics-text",
        body = String
    )),
    extensions(("x-refusals" = json!([Refusal::Unauthorized]))),
)]
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

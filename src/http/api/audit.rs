//! `GET /v1/audit`: the audit log for clients with the audit right.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::super::extract::ServiceClient;
use super::super::problem::ApiError;
use super::super::AppState;
use crate::service::audit_log::export as audit_export;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

#[tracing::instrument(skip_all, fields(client = %client.0.name))]
pub async fn export(
    state: web::Data<AppState>,
    client: ServiceClient,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let (events, next) =
        audit_export(&state.svc, &client.0, page.after, page.limit.unwrap_or(100)).await?;
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next": next })))
}

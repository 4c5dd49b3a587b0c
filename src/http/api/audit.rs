//! `GET /v1/audit`: the audit log for clients with the audit right.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::super::extract::ServiceClient;
use super::super::problem::ApiError;
use super::super::AppState;
use crate::audit::AuditEvent;
use crate::domain::Refusal;
use crate::service::audit_log::export as audit_export;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The `seq` after which the page starts (the `next` of the page before).
    #[serde(default)]
    #[param(minimum = 0)]
    after: i64,
    /// Events a page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// A page of the audit log, oldest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    events: Vec<AuditEvent>,
    /// Where the next page starts (`after`), or null at the end.
    next: Option<i64>,
}

/// The audit log, each event chained to the one before by its hash (clients with the audit
/// right).
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "exportAudit",
    tag = "service",
    params(Page),
    responses((status = 200, description = "A page of events", body = AuditPage)),
    extensions(("x-refusals" = json!([Refusal::Forbidden]))),
)]
#[tracing::instrument(skip_all, fields(client = %client.0.name))]
pub async fn export(
    state: web::Data<AppState>,
    client: ServiceClient,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let (events, next) =
        audit_export(&state.svc, &client.0, page.after, page.limit.unwrap_or(100)).await?;
    Ok(HttpResponse::Ok().json(AuditPage { events, next }))
}

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::super::extract::ServiceClient;
use super::super::problem::ApiError;
use super::super::AppState;
use crate::domain::Refusal;

const MAX_LIMIT: i64 = 1000;

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
    if !client.0.rights.audit {
        return Err(
            ApiError::from(Refusal::Forbidden).detail("this client may not read the audit log")
        );
    }
    let limit = page.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) || page.after < 0 {
        return Err(ApiError::from(Refusal::InvalidRequest).detail(format!(
            "limit is 1 to {MAX_LIMIT}; after is a sequence number"
        )));
    }
    // One extra row tells whether there is a next page.
    let mut events = state.svc.store.audit_page(page.after, limit + 1).await?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next": next })))
}

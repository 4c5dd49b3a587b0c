//! `GET /v1/me/approvals`: what the signed-in person may decide, or what they decided.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::super::extract::Approver;
use super::super::problem::ApiError;
use super::super::AppState;
use super::views::ApproverView;
use crate::domain::Refusal;
use crate::service::inbox::{history, inbox, Listing, DEFAULT_PAGE, MAX_PAGE};
use crate::store::{Cursor, Page};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MineQuery {
    status: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

/// `?status=pending` (the inbox, the default) or `?status=decided` (history), a page at a
/// time: `limit` (1–200, default 100) and `before`, the `next` of the page before.
#[tracing::instrument(skip_all, fields(user = %approver.0.username))]
pub async fn approvals(
    state: web::Data<AppState>,
    approver: Approver,
    query: web::Query<MineQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = approver.0;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            ApiError::from(Refusal::InvalidRequest).detail(format!("limit is 1 to {MAX_PAGE}"))
        );
    }
    let before = match &query.before {
        None => None,
        Some(text) => Some(Cursor::parse(text).ok_or_else(|| {
            ApiError::from(Refusal::InvalidRequest).detail("before is the next of an earlier page")
        })?),
    };
    let page = Page { before, limit };
    let listing: Listing = match query.status.as_deref().unwrap_or("pending") {
        "pending" => inbox(&state.svc, &user, page).await?,
        "decided" => history(&state.svc, &user, page).await?,
        _ => {
            return Err(
                ApiError::from(Refusal::InvalidRequest).detail("status is pending or decided")
            )
        }
    };
    let out: Vec<ApproverView> = listing
        .items
        .iter()
        .map(|l| ApproverView::new(&state.svc.policy, &l.request, &l.votes, &user))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "approvals": out,
        "next": listing.next.map(|c| c.to_string()),
    })))
}

//! `GET /v1/me/approvals`: what the signed-in person may decide, or what they decided.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::super::extract::Approver;
use super::super::problem::ApiError;
use super::super::AppState;
use super::views::ApproverView;
use crate::domain::Refusal;
use crate::service::inbox::{history, inbox, Listing, DEFAULT_PAGE, MAX_PAGE};
use crate::store::{Cursor, Page};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MineQuery {
    /// `pending` (the inbox, the default) or `decided` (history).
    #[param(pattern = "^(pending|decided)$")]
    status: Option<String>,
    /// Requests a page, 1 to 200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next` of the page before.
    #[param(
        pattern = "^[0-9]{1,18}\\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    before: Option<String>,
}

/// A page of requests as the approver sees them.
#[derive(Serialize, ToSchema)]
pub struct Mine<'a> {
    approvals: Vec<ApproverView<'a>>,
    /// `before` for the next page, or null at the end.
    next: Option<String>,
}

/// What the signed-in person may decide, or what they decided, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/me/approvals",
    operation_id = "myApprovals",
    tag = "approver",
    params(MineQuery),
    responses((status = 200, description = "A page of requests", body = Mine)),
)]
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
    Ok(HttpResponse::Ok().json(Mine {
        approvals: out,
        next: listing.next.map(|c| c.to_string()),
    }))
}

//! `/history`: the requests this person decided, with their decision and where each stands.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::problem::ApiError;
use super::super::AppState;
use super::respond::{failure, html, query_param, sign_in_first, signed_in};
use super::view::{rows, Row, Shell};
use crate::domain::User;
use crate::service::inbox::{history as decided, DEFAULT_PAGE};
use crate::store::{Cursor, Page};

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    shell: Shell,
    rows: Vec<Row>,
    later: bool,
    older: Option<String>,
}

pub async fn history(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match signed_in(&state, &req).await {
        Ok(Some(u)) => u,
        Ok(None) => return sign_in_first("/history"),
        Err(e) => return failure(None, &e),
    };
    let before = query_param(&req, "before").and_then(|c| Cursor::parse(&c));
    match page(&state, &user, before).await {
        Ok(page) => html(StatusCode::OK, &page),
        Err(e) => failure(Some(&user), &e),
    }
}

async fn page(
    state: &AppState,
    user: &User,
    before: Option<Cursor>,
) -> Result<HistoryPage, ApiError> {
    let page = Page {
        before,
        limit: DEFAULT_PAGE,
    };
    let listing = decided(&state.svc, user, page).await?;
    let (rows, older) = rows(
        &state.svc.policy,
        &listing,
        state.svc.clock.now(),
        Some(user),
    );
    Ok(HistoryPage {
        shell: Shell::new(Some(user), "history", "History")
            .with_admin(crate::service::console::is_admin(&state.svc, user)),
        rows,
        later: before.is_some(),
        older,
    })
}

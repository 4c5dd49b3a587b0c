//! `/`: the sign-in page, or, signed in, the inbox.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::problem::ApiError;
use super::super::AppState;
use super::respond::{failure, html, query_param, safe_next, see_other, signed_in};
use super::view::{rows, Row, Shell};
use crate::domain::User;
use crate::service::inbox::{inbox, DEFAULT_PAGE};
use crate::store::{Cursor, Page};

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    shell: Shell,
    next: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    shell: Shell,
    rows: Vec<Row>,
    /// Whether this page continues an earlier one.
    later: bool,
    /// Where the next page of older requests starts.
    older: Option<String>,
}

pub async fn index(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match signed_in(&state, &req).await {
        Ok(u) => u,
        Err(e) => return failure(None, &e),
    };
    let next = safe_next(&req);
    let Some(user) = user else {
        return html(
            StatusCode::OK,
            &SignInPage {
                shell: Shell::new(None, "", "Sign in"),
                next: next.unwrap_or_default(),
            },
        );
    };
    if let Some(next) = next {
        return see_other(&next);
    }
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
) -> Result<InboxPage, ApiError> {
    let page = Page {
        before,
        limit: DEFAULT_PAGE,
    };
    let listing = inbox(&state.svc, user, page).await?;
    let (rows, older) = rows(&state.svc.policy, &listing, state.svc.clock.now(), None);
    Ok(InboxPage {
        shell: Shell::new(Some(user), "inbox", "Inbox")
            .with_admin(crate::service::console::is_admin(&state.svc, user)),
        rows,
        later: before.is_some(),
        older,
    })
}

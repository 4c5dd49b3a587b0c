//! How a page answers: the headers every page carries, rendering, redirects, the messages a
//! page shows instead of content, and who is signed in.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::guard::presented_session;
use super::super::problem::ApiError;
use super::super::AppState;
use super::view::Shell;
use super::CSP;
use crate::domain::{ApprovalId, Refusal, User};
use crate::service::sign_in::session_user;

/// Headers every page carries beyond the app-wide ones (`Cache-Control: no-store`,
/// `nosniff`, `Referrer-Policy: no-referrer`, set in `http::app`).
pub fn page_headers(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("Cross-Origin-Opener-Policy", "same-origin"))
        .insert_header(("Cross-Origin-Resource-Policy", "same-origin"));
}

pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => {
            let mut res = HttpResponse::build(status);
            page_headers(&mut res);
            res.content_type("text/html; charset=utf-8").body(body)
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            let mut res = HttpResponse::InternalServerError();
            page_headers(&mut res);
            res.content_type("text/plain; charset=utf-8")
                .body("Something went wrong on the server. Please reload the page.")
        }
    }
}

pub fn see_other(location: &str) -> HttpResponse {
    let mut res = HttpResponse::SeeOther();
    page_headers(&mut res);
    res.insert_header((header::LOCATION, location.to_owned()))
        .finish()
}

/// A page that only says something (not found, not yours, link used, server trouble).
#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    shell: Shell,
    heading: String,
    body: String,
    tone: &'static str,
    link: Option<(String, String)>,
}

pub fn message(
    status: StatusCode,
    user: Option<&User>,
    heading: &str,
    body: &str,
    link: Option<(&str, &str)>,
) -> HttpResponse {
    let tone = if status.is_server_error() {
        "danger"
    } else {
        "neutral"
    };
    html(
        status,
        &MessagePage {
            shell: Shell::new(user, "", heading),
            heading: heading.to_owned(),
            body: body.to_owned(),
            tone,
            link: link.map(|(href, text)| (href.to_owned(), text.to_owned())),
        },
    )
}

/// A store or server failure, as a page rather than problem JSON.
pub fn failure(user: Option<&User>, err: &ApiError) -> HttpResponse {
    if err.refusal() == Refusal::StoreUnavailable {
        tracing::warn!(error = %err, "page: store unavailable");
        message(
            StatusCode::SERVICE_UNAVAILABLE,
            user,
            "countersign is temporarily unavailable",
            "The server cannot reach its database right now. Nothing has been approved or \
             rejected. Please try again in a minute.",
            None,
        )
    } else {
        tracing::error!(error = %err, "page: server error");
        message(
            StatusCode::INTERNAL_SERVER_ERROR,
            user,
            "Something went wrong",
            "The server could not show this page. Nothing has been approved or rejected. \
             Please reload the page.",
            None,
        )
    }
}

pub fn not_found(user: Option<&User>) -> HttpResponse {
    message(
        StatusCode::NOT_FOUND,
        user,
        "Request not found",
        "There is no approval request at this address. Check the link, or open your inbox.",
        Some(("/", "Go to your inbox")),
    )
}

/// The signed-in approver, if any. Unlike the JSON API (401), a page without a session shows
/// the sign-in page instead.
pub async fn signed_in(state: &AppState, req: &HttpRequest) -> Result<Option<User>, ApiError> {
    match presented_session(req, state) {
        Some(hash) => session_user(&state.svc, &hash).await,
        None => Ok(None),
    }
}

/// A query parameter of the page's URL.
pub fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok()?;
    query.get(name).cloned()
}

/// `next` after sign-in: only our own pages, so the parameter cannot send an approver to
/// another site (an open redirect would make a convincing phishing link).
pub fn safe_next(req: &HttpRequest) -> Option<String> {
    let next = query_param(req, "next")?;
    let ok = next == "/history"
        || next
            .strip_prefix("/approvals/")
            .is_some_and(|id| ApprovalId::parse(id).is_ok());
    ok.then_some(next)
}

pub fn sign_in_first(path: &str) -> HttpResponse {
    see_other(&format!("/?next={path}"))
}

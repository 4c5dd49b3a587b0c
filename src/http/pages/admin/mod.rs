//! The admin console's pages (`/admin/…`, members of the admin group): people, clients and
//! their webhooks, signing keys, every request, the audit log, and one change. Every change
//! made from them is a proposal (`POST /v1/admin/changes`, sent by `static/app.js` from the
//! forms marked `data-op`) that another admin decides on the ordinary approval page.

mod change;
mod records;
mod setup;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use super::super::problem::ApiError;
use super::super::AppState;
use super::respond::{failure, html, message, not_found, sign_in_first, signed_in};
use super::view::{Shell, When};
use crate::clock::UnixTime;
use crate::domain::{Refusal, User};
use crate::service::console;

pub use change::change;
pub use records::{audit, audit_export, requests};
pub use setup::{clients, keys, people};

/// The signed-in admin, or the response that replaces the page.
async fn admin(state: &AppState, req: &HttpRequest, path: &str) -> Result<User, HttpResponse> {
    let user = match signed_in(state, req).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(sign_in_first(path)),
        Err(e) => return Err(failure(None, &e)),
    };
    match console::admin_only(&state.svc, &user) {
        Ok(()) => Ok(user),
        Err(e) => Err(trouble(&user, &ApiError::from(e))),
    }
}

/// A refusal as a page: the console is for admins (403), a change that is not one (404),
/// anything else a failure.
fn trouble(user: &User, err: &ApiError) -> HttpResponse {
    match err.refusal() {
        Refusal::Forbidden => message(
            StatusCode::FORBIDDEN,
            Some(user),
            "This is for administrators",
            "The admin console is for members of the admin group. Ask an administrator if you \
             need a change made.",
            Some(("/", "Go to your inbox")),
        ),
        Refusal::NotFound => not_found(Some(user)),
        _ => failure(Some(user), err),
    }
}

fn shell(user: &User, tab: &'static str, title: &str) -> AdminShell {
    AdminShell {
        shell: Shell::new(Some(user), "admin", title).with_admin(true),
        tab,
    }
}

pub struct AdminShell {
    pub shell: Shell,
    /// Which console tab is current.
    pub tab: &'static str,
}

fn render(page: Result<impl Template, ApiError>, user: &User) -> HttpResponse {
    match page {
        Ok(page) => html(StatusCode::OK, &page),
        Err(e) => trouble(user, &e),
    }
}

fn when(t: Option<UnixTime>) -> Option<When> {
    t.map(When::at)
}

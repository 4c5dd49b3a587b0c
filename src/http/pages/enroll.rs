//! `/enroll/{token}`: name and create a passkey from an invitation link.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::AppState;
use super::respond::{failure, html, message, signed_in};
use super::view::Shell;
use crate::domain::text::reveal;
use crate::domain::Refusal;
use crate::service::enrol::invitation;

#[derive(Template)]
#[template(path = "enroll.html")]
struct EnrollPage {
    shell: Shell,
    token: String,
    name: String,
    username: String,
    groups: String,
}

pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let token = path.into_inner();
    let user = signed_in(&state, &req).await.ok().flatten();
    match invitation(&state.svc, &token, state.svc.clock.now()).await {
        Ok((invited, _)) => html(
            StatusCode::OK,
            &EnrollPage {
                shell: Shell::new(user.as_ref(), "", "Set up your passkey"),
                token,
                name: reveal(&invited.display_name).0,
                username: invited.username,
                groups: invited.groups.join(", "),
            },
        ),
        Err(e) => match e.refusal() {
            Refusal::InvitationUsed => message(
                StatusCode::GONE,
                user.as_ref(),
                "This invitation link was already used",
                "A passkey has already been set up with this link, and a link works only once. \
                 If you just did that, sign in. If you did not, tell your administrator now.",
                Some(("/", "Sign in")),
            ),
            Refusal::InvitationExpired => message(
                StatusCode::GONE,
                user.as_ref(),
                "This invitation link has expired",
                "Invitation links work for a limited time. Ask your administrator for a new one.",
                None,
            ),
            Refusal::NotFound => message(
                StatusCode::NOT_FOUND,
                user.as_ref(),
                "This invitation link is not valid",
                "Check that you opened the whole link from your invitation. If it still does \
                 not work, ask your administrator for a new one.",
                None,
            ),
            _ => failure(user.as_ref(), &e),
        },
    }
}

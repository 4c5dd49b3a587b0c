//! The approver pages (API.md "Pages"): sign-in and inbox, one request, history, enrolment;
//! and the admin console (`admin`).
//!
//! Everything a page shows is rendered from store records and the policy, never from anything
//! the browser sent, and askama escapes every value (no `|safe` on data). The one script
//! (`static/app.js`) only runs the passkey ceremonies against the approver JSON API and makes
//! times local; a decision posts nothing but "approve" or "reject".

mod admin;
mod approval;
mod assets;
mod enroll;
mod history;
mod inbox;
mod respond;
mod rules;
mod view;

use actix_web::web;

/// No inline script or style anywhere, so the policy can forbid both: a payee name that
/// smuggles markup past escaping still could not run or restyle the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(inbox::index))
        .route("/approvals/{id}", web::get().to(approval::approval))
        .route("/history", web::get().to(history::history))
        .route("/enroll/{token}", web::get().to(enroll::enroll))
        .route("/admin", web::get().to(admin::people))
        .route("/admin/clients", web::get().to(admin::clients))
        .route("/admin/keys", web::get().to(admin::keys))
        .route("/admin/requests", web::get().to(admin::requests))
        .route("/admin/audit", web::get().to(admin::audit))
        .route("/admin/audit.jsonl", web::get().to(admin::audit_export))
        .route("/admin/changes/{id}", web::get().to(admin::change))
        .route("/static/app.js", web::get().to(assets::app_js))
        .route("/static/app.css", web::get().to(assets::app_css))
        .route("/static/icon.svg", web::get().to(assets::icon));
}

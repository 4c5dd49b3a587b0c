//! One console change: what it is, where it stands, what it produced, and its secret (with a
//! QR code of an invitation link) to its proposer, once.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::super::problem::ApiError;
use super::super::super::AppState;
use super::super::respond::{html, not_found};
use super::super::view::{status_view, Shell, StatusView, When};
use super::{admin, shell, trouble};
use crate::domain::ApprovalId;
use crate::service::console::{self as console, ChangeView};

// One change.

#[derive(Template)]
#[template(path = "admin/change.html")]
struct ChangePage {
    shell: Shell,
    id: String,
    op: String,
    fields: Vec<(String, String)>,
    status: StatusView,
    proposed_by: String,
    created: When,
    carried_out: Option<When>,
    failure: Option<String>,
    result: Vec<(String, String)>,
    /// Shown this once.
    secret: Option<(&'static str, String)>,
    /// The invitation link as a QR code (SVG), to open on a phone.
    qr: Option<String>,
}

pub async fn change(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let user = match admin(&state, &req, "/admin").await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let Ok(id) = ApprovalId::parse(&path) else {
        return not_found(Some(&user));
    };
    let view: ChangeView = match console::read(&state.svc, &user, id).await {
        Ok(v) => v,
        Err(e) => return trouble(&user, &ApiError::from(e)),
    };
    let pairs = |v: &serde_json::Value| -> Vec<(String, String)> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.as_str() != "op")
                    .map(|(k, v)| (k.replace('_', " "), shown(k, v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let qr = match &view.secret {
        Some(("enroll_url", url)) => qr_svg(url),
        _ => None,
    };
    let page = ChangePage {
        shell: shell(&user, "", "Console change").shell,
        id: id.to_string(),
        op: view
            .change
            .get("op")
            .and_then(|o| o.as_str())
            .unwrap_or_default()
            .to_owned(),
        fields: pairs(&view.change),
        status: status_view(view.request.status),
        proposed_by: view.request.initiator.id().to_owned(),
        created: When::at(view.request.created_at),
        carried_out: view
            .record
            .as_ref()
            .filter(|r| r.failure.is_none())
            .map(|r| When::at(r.carried_out_at)),
        failure: view.record.as_ref().and_then(|r| r.failure.clone()),
        result: pairs(
            &view
                .record
                .as_ref()
                .and_then(|r| r.outcome.clone())
                .unwrap_or_default(),
        ),
        secret: view.secret.clone(),
        qr,
    };
    html(StatusCode::OK, &page)
}

/// A member of a change or its outcome as a person reads it: lists joined, times as times.
fn shown(key: &str, v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Number(n) if key.ends_with("_at") => match n.as_i64() {
            Some(t) => When::at(t).utc,
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A QR code of `text` as inline SVG: paths only, no script or style, so the page's CSP holds.
fn qr_svg(text: &str) -> Option<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // The renderer starts with an XML declaration, which has no place inside HTML.
    Some(match svg.find("<svg") {
        Some(i) => svg.get(i..).unwrap_or_default().to_owned(),
        None => svg,
    })
}

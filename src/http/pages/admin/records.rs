//! The console's pages of what happened: every request, and the audit log.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::super::problem::ApiError;
use super::super::super::AppState;
use super::super::respond::query_param;
use super::super::view::{rows, status_view, Row, Shell, StatusView, When};
use super::{admin, render, shell, trouble, AdminShell};
use crate::clock::UnixTime;
use crate::domain::Status;
use crate::service::console::read::{self, AuditFilter};
use crate::service::inbox::DEFAULT_PAGE;
use crate::store::{Cursor, Page, RequestFilter};

// Requests.

#[derive(Template)]
#[template(path = "admin/requests.html")]
struct RequestsPage {
    shell: Shell,
    tab: &'static str,
    rows: Vec<RequestRow>,
    filter: FilterView,
    older: Option<String>,
}

struct RequestRow {
    row: Row,
    action: String,
    created: When,
    status: StatusView,
    votes: Vec<String>,
    risk: String,
    revocable: bool,
}

#[derive(Default)]
struct FilterView {
    /// Every status, and whether it is the one filtered on.
    statuses: Vec<(&'static str, bool)>,
    action: String,
    initiator: String,
    since: String,
    until: String,
    /// The filter as a query string, for the link to the next page.
    query: String,
}

/// The start (UTC) of the day `YYYY-MM-DD` (no calendar crate for one use).
fn day(text: &str) -> Option<UnixTime> {
    let mut parts = text.splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400)
}

/// The filters among `keys` that are set, as query parameters (`&k=v…`) for the next page's link.
fn query_of(req: &HttpRequest, keys: &[&str]) -> String {
    keys.iter()
        .filter_map(|k| non_empty(query_param(req, k)).map(|v| (k, v)))
        .map(|(k, v)| {
            let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            format!("&{k}={v}")
        })
        .collect()
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub async fn requests(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match admin(&state, &req, "/admin/requests").await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let q = |name| non_empty(query_param(&req, name));
    let filter = RequestFilter {
        status: q("status"),
        action: q("action"),
        initiator: q("initiator"),
        since: q("since").as_deref().and_then(day),
        until: q("until").as_deref().and_then(day).map(|d| d + 86_400),
    };
    let view = FilterView {
        statuses: [
            Status::Pending,
            Status::Approved,
            Status::Rejected,
            Status::Expired,
            Status::Cancelled,
            Status::Revoked,
        ]
        .iter()
        .map(|s| (s.as_str(), filter.status.as_deref() == Some(s.as_str())))
        .collect(),
        action: q("action").unwrap_or_default(),
        initiator: q("initiator").unwrap_or_default(),
        since: q("since").unwrap_or_default(),
        until: q("until").unwrap_or_default(),
        query: query_of(&req, &["status", "action", "initiator", "since", "until"]),
    };
    let before = q("before").and_then(|c| Cursor::parse(&c));
    let page = async {
        let page = Page {
            before,
            limit: DEFAULT_PAGE,
        };
        let listing = read::requests(&state.svc, &user, &filter, page).await?;
        let now = state.svc.clock.now();
        let (shown, older) = rows(&state.svc.policy, &listing, now, None);
        let AdminShell { shell, tab } = shell(&user, "requests", "Requests");
        Ok(RequestsPage {
            shell,
            tab,
            filter: view,
            older,
            rows: shown
                .into_iter()
                .zip(&listing.items)
                .map(|(row, l)| RequestRow {
                    action: l.request.action.clone(),
                    created: When::at(l.request.created_at),
                    status: status_view(l.request.status),
                    votes: l
                        .votes
                        .iter()
                        .map(|v| {
                            format!(
                                "{} {} {}",
                                v.username,
                                v.decision.as_str(),
                                When::at(v.at).utc
                            )
                        })
                        .collect(),
                    risk: l
                        .request
                        .risk
                        .as_ref()
                        .map(|r| format!("{}/100", r.score))
                        .unwrap_or_default(),
                    revocable: l.request.status == Status::Approved
                        && l.request.action != crate::domain::ADMIN_ACTION,
                    row,
                })
                .collect(),
        })
    }
    .await;
    render(page, &user)
}

// The audit log.

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    shell: Shell,
    tab: &'static str,
    events: Vec<EventView>,
    filter: AuditFilterView,
    next: Option<i64>,
    /// Set when verification was asked for: the outcome.
    verified: Option<Result<i64, String>>,
    /// Whether earlier events exist than this page shows (a link back to the start).
    from_start: bool,
}

struct EventView {
    seq: i64,
    at: String,
    kind: String,
    actor: String,
    approval_id: String,
    data: String,
}

#[derive(Default)]
struct AuditFilterView {
    kind: String,
    actor: String,
    approval_id: String,
    since: String,
    until: String,
    query: String,
}

fn audit_filter(req: &HttpRequest) -> (AuditFilter, AuditFilterView) {
    let q = |name| non_empty(query_param(req, name));
    let filter = AuditFilter {
        kind: q("kind"),
        actor: q("actor"),
        approval_id: q("approval_id"),
        since: q("since"),
        until: q("until"),
    };
    let view = AuditFilterView {
        kind: q("kind").unwrap_or_default(),
        actor: q("actor").unwrap_or_default(),
        approval_id: q("approval_id").unwrap_or_default(),
        since: q("since").unwrap_or_default(),
        until: q("until").unwrap_or_default(),
        query: query_of(req, &["kind", "actor", "approval_id", "since", "until"]),
    };
    (filter, view)
}

pub async fn audit(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match admin(&state, &req, "/admin/audit").await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let (filter, view) = audit_filter(&req);
    let after: Option<i64> = query_param(&req, "after").and_then(|a| a.parse().ok());
    let page = async {
        let after = match after {
            Some(a) => a,
            None => read::recent_start(&state.svc, &user).await?,
        };
        let (events, next) = read::audit(&state.svc, &user, &filter, after, 100).await?;
        let verified = match query_param(&req, "verify").is_some() {
            true => Some(read::verify_chain(&state.svc, &user).await?),
            false => None,
        };
        let AdminShell { shell, tab } = shell(&user, "audit", "Audit log");
        Ok(AuditPage {
            shell,
            tab,
            filter: view,
            next,
            verified,
            from_start: after > 0,
            events: events
                .into_iter()
                .map(|e| EventView {
                    seq: e.seq,
                    at: e.at,
                    kind: e.kind,
                    actor: e.actor,
                    approval_id: e.approval_id.unwrap_or_default(),
                    data: e.data.to_string(),
                })
                .collect(),
        })
    }
    .await;
    render(page, &user)
}

/// `/admin/audit.jsonl`: the events the filter admits, one JSON object a line, as the audit
/// API gives them (with their hashes, so the export can be verified on its own).
pub async fn audit_export(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match admin(&state, &req, "/admin/audit").await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let (filter, _) = audit_filter(&req);
    let mut out = String::new();
    let mut after = 0;
    loop {
        let (events, next) = match read::audit(&state.svc, &user, &filter, after, 1000).await {
            Ok(page) => page,
            Err(e) => return trouble(&user, &ApiError::from(e)),
        };
        for e in &events {
            if let Ok(line) = serde_json::to_string(e) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"countersign-audit.jsonl\"",
        ))
        .body(out)
}

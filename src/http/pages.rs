//! The approver pages (API.md "Pages"): sign-in and inbox, one request, history, enrolment.
//!
//! Everything a page shows is rendered here from store records and the policy, never from
//! anything the browser sent, and askama escapes every value (no `|safe` on data). The one
//! script (`static/app.js`) only runs the passkey ceremonies against the approver JSON API and
//! makes times local; a decision posts nothing but "approve" or "reject".

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::problem::ApiError;
use super::session::IDLE_SECS;
use super::AppState;
use crate::challenge::Decision;
use crate::clock::{rfc3339, UnixTime};
use crate::policy::{ActionPolicy, Condition, DisplayValue, Format};
use crate::store::{ApprovalRecord, DecisionRecord, Status, User};
use crate::tx_hash::TxHash;

/// No inline script or style anywhere, so the policy can forbid both: a payee name that
/// smuggles markup past escaping still could not run or restyle the page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const APP_JS: &str = include_str!("../../static/app.js");
const APP_CSS: &str = include_str!("../../static/app.css");
const ICON_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1d4ed8"/><path d="M9 16.5l4.5 4.5L23 11.5" fill="none" stroke="#fff" stroke-width="3.2" stroke-linecap="round" stroke-linejoin="round"/></svg>"##;

/// Lists are capped like the JSON API's: a page of hundreds is not read anyway.
const INBOX_LIMIT: i64 = 500;
const HISTORY_LIMIT: i64 = 200;
/// How many display fields a list row shows; the request page shows all of them.
const KEY_FIELDS: usize = 3;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/approvals/{id}", web::get().to(approval))
        .route("/history", web::get().to(history))
        .route("/enroll/{token}", web::get().to(enroll))
        .route("/static/app.js", web::get().to(app_js))
        .route("/static/app.css", web::get().to(app_css))
        .route("/static/icon.svg", web::get().to(icon));
}

// ---------------------------------------------------------------------------------------
// Responses

/// Headers every page carries beyond the app-wide ones (`Cache-Control: no-store`,
/// `nosniff`, `Referrer-Policy: no-referrer`, set in `http::app`).
fn page_headers(res: &mut actix_web::HttpResponseBuilder) {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("Cross-Origin-Opener-Policy", "same-origin"))
        .insert_header(("Cross-Origin-Resource-Policy", "same-origin"));
}

fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
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

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    page_headers(&mut res);
    res.content_type(content_type).body(body)
}

async fn app_js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon() -> HttpResponse {
    asset("image/svg+xml", ICON_SVG)
}

fn see_other(location: &str) -> HttpResponse {
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

fn message(
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
fn failure(user: Option<&User>, err: &ApiError) -> HttpResponse {
    if err.status == StatusCode::SERVICE_UNAVAILABLE {
        message(
            err.status,
            user,
            "countersign is temporarily unavailable",
            "The server cannot reach its database right now. Nothing has been approved or \
             rejected. Please try again in a minute.",
            None,
        )
    } else {
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

fn not_found(user: Option<&User>) -> HttpResponse {
    message(
        StatusCode::NOT_FOUND,
        user,
        "Request not found",
        "There is no approval request at this address. Check the link, or open your inbox.",
        Some(("/", "Go to your inbox")),
    )
}

// ---------------------------------------------------------------------------------------
// Who is signed in

/// The signed-in approver, if any. Unlike the `Approver` extractor (401 JSON), a page
/// without a session shows the sign-in page instead.
async fn signed_in(state: &AppState, req: &HttpRequest) -> Result<Option<User>, ApiError> {
    let Some(hash) = super::session::presented_session(req, state) else {
        return Ok(None);
    };
    Ok(state
        .store
        .session_user(&hash, state.clock.now(), IDLE_SECS)
        .await?)
}

/// `next` after sign-in: only our own pages, so the parameter cannot send an approver to
/// another site (an open redirect would make a convincing phishing link).
fn safe_next(req: &HttpRequest) -> Option<String> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok()?;
    let next = query.get("next")?;
    let ok = next == "/history"
        || next
            .strip_prefix("/approvals/")
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok() && id.len() == 36);
    ok.then(|| next.clone())
}

fn sign_in_first(path: &str) -> HttpResponse {
    see_other(&format!("/?next={path}"))
}

/// Whether the policy lets this user decide this request: in an eligible group, and not its
/// initiator unless self-approval was allowed. The JSON API checks the same at every step
/// and stays the authority; the pages use it to list and to explain.
fn may_decide(user: &User, a: &ApprovalRecord) -> bool {
    super::decide::eligibility(user, a).is_ok()
}

// ---------------------------------------------------------------------------------------
// View models

struct Shell {
    user: Option<Who>,
    nav: &'static str,
    title: String,
}

struct Who {
    name: String,
    username: String,
}

impl Shell {
    fn new(user: Option<&User>, nav: &'static str, title: &str) -> Shell {
        Shell {
            user: user.map(|u| Who {
                name: u.display_name.clone(),
                username: u.username.clone(),
            }),
            nav,
            title: title.to_owned(),
        }
    }
}

/// A moment, rendered as UTC by the server; the script adds the viewer's local time.
struct When {
    iso: String,
    utc: String,
}

impl When {
    fn at(t: UnixTime) -> When {
        let iso = rfc3339(t);
        let utc = match (iso.get(..10), iso.get(11..16)) {
            (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
            _ => iso.clone(),
        };
        When { iso, utc }
    }
}

/// One displayed field of the policy, formatted.
struct Field {
    label: String,
    /// `text`, `money`, `iban`, `datetime` or `json`: picks the layout.
    kind: &'static str,
    value: String,
    currency: String,
    /// The amount exactly as the service sent it, when grouping changed how it looks.
    exact: String,
    present: bool,
    /// The value held characters that are invisible or reorder text; they are shown as
    /// code points and the field is flagged.
    hidden_chars: bool,
}

impl Field {
    fn from(v: DisplayValue) -> Field {
        let kind = match v.format {
            Format::Text => "text",
            Format::Money => "money",
            Format::Iban => "iban",
            Format::Datetime => "datetime",
            Format::Json => "json",
        };
        let (value, hidden_value) = reveal(&v.formatted);
        let (currency, hidden_currency) = reveal(v.currency.as_deref().unwrap_or_default());
        let exact = if v.format == Format::Money && v.present && v.raw != v.formatted {
            v.raw
        } else {
            String::new()
        };
        Field {
            label: v.label,
            kind,
            value,
            currency,
            exact,
            present: v.present,
            hidden_chars: hidden_value || hidden_currency,
        }
    }
}

/// Characters that change how text looks without being seen: bidirectional controls can
/// reorder an IBAN or a name on screen, zero-width ones hide the difference between two
/// look-alike payees, control characters break lines. They are shown as `⟨U+202E⟩`.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

fn reveal(s: &str) -> (String, bool) {
    reveal_except(s, None)
}

/// Like [`reveal`], keeping `keep` as it is (the line breaks of pretty-printed JSON, whose
/// strings have their own line breaks escaped).
fn reveal_except(s: &str, keep: Option<char>) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut found = false;
    for c in s.chars() {
        if is_hidden(c) && Some(c) != keep {
            found = true;
            out.push_str(&format!("⟨U+{:04X}⟩", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    (out, found)
}

fn fields(state: &AppState, a: &ApprovalRecord) -> Vec<Field> {
    let Some(action) = state.policy.action(&a.action) else {
        return Vec::new();
    };
    match crate::jcs::parse(a.transaction_jcs.as_bytes()) {
        Ok(tx) => action
            .display_values(&tx)
            .into_iter()
            .map(Field::from)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn title(state: &AppState, a: &ApprovalRecord) -> String {
    state
        .policy
        .action(&a.action)
        .map_or_else(|| a.action.clone(), |p| p.title.clone())
}

/// "3 min", "1 h 5 min", "2 d 4 h": precise enough to act on, short enough for a list.
fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ => match (s / 86_400, (s % 86_400) / 3600) {
            (d, 0) => format!("{d} d"),
            (d, h) => format!("{d} d {h} h"),
        },
    }
}

fn ago(secs: i64) -> String {
    if secs < 60 {
        "just now".to_owned()
    } else {
        format!("{} ago", span(secs))
    }
}

struct StatusView {
    /// The CSS modifier and the machine word: pending, approved, rejected, expired, cancelled.
    key: &'static str,
    label: &'static str,
}

fn status_view(s: Status) -> StatusView {
    let label = match s {
        Status::Pending => "Waiting for decision",
        Status::Approved => "Approved",
        Status::Rejected => "Rejected",
        Status::Expired => "Expired",
        Status::Cancelled => "Cancelled",
    };
    StatusView {
        key: s.as_str(),
        label,
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A row of the inbox or the history.
struct Row {
    id: String,
    title: String,
    status: StatusView,
    fields: Vec<Field>,
    initiator: String,
    age: String,
    seconds_left: i64,
    time_left: String,
    progress: String,
    risk: Option<RiskView>,
    /// History only: what this user decided, and when.
    mine: Option<Mine>,
}

/// What this user decided on a request.
struct Mine {
    /// approved or rejected
    word: &'static str,
    at: When,
}

fn row(state: &AppState, a: &ApprovalRecord, decisions: &[DecisionRecord], now: UnixTime) -> Row {
    let approvals = decisions
        .iter()
        .filter(|d| d.decision == Decision::Approve)
        .count();
    let approvals = i64::try_from(approvals).unwrap_or(i64::MAX);
    let seconds_left = (a.expires_at - now).max(0);
    Row {
        id: a.id.clone(),
        title: title(state, a),
        status: status_view(a.status),
        fields: fields(state, a).into_iter().take(KEY_FIELDS).collect(),
        initiator: reveal(&a.initiator).0,
        age: ago(now - a.created_at),
        seconds_left,
        time_left: span(seconds_left),
        progress: format!("{approvals} of {} approvals", a.required_approvals),
        risk: risk(a),
        mine: None,
    }
}

struct RiskView {
    score: u64,
    /// low, medium or high: the badge colour and word.
    level: &'static str,
    label: &'static str,
    reasons: Vec<String>,
}

fn risk(a: &ApprovalRecord) -> Option<RiskView> {
    let risk = a.risk.as_ref()?;
    let score = risk.get("score")?.as_u64()?;
    let (level, label) = match score {
        0..=39 => ("low", "Low risk"),
        40..=69 => ("medium", "Elevated risk"),
        _ => ("high", "High risk"),
    };
    let reasons = risk
        .get("reasons")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str())
                .map(|s| reveal(s).0)
                .collect()
        })
        .unwrap_or_default();
    Some(RiskView {
        score,
        level,
        label,
        reasons,
    })
}

// ---------------------------------------------------------------------------------------
// `/`: sign-in, or the inbox

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
}

async fn index(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
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
    match inbox_rows(&state, &user).await {
        Ok(rows) => html(
            StatusCode::OK,
            &InboxPage {
                shell: Shell::new(Some(&user), "inbox", "Inbox"),
                rows,
            },
        ),
        Err(e) => failure(Some(&user), &e),
    }
}

async fn inbox_rows(state: &AppState, user: &User) -> Result<Vec<Row>, ApiError> {
    let now = state.clock.now();
    let mut rows = Vec::new();
    for a in state
        .store
        .undecided_pending(user, now, INBOX_LIMIT)
        .await?
    {
        if may_decide(user, &a) {
            let decisions = state.store.decisions(&a.id).await?;
            rows.push(row(state, &a, &decisions, now));
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// `/history`

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    shell: Shell,
    rows: Vec<Row>,
}

async fn history(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let user = match signed_in(&state, &req).await {
        Ok(Some(u)) => u,
        Ok(None) => return sign_in_first("/history"),
        Err(e) => return failure(None, &e),
    };
    match history_rows(&state, &user).await {
        Ok(rows) => html(
            StatusCode::OK,
            &HistoryPage {
                shell: Shell::new(Some(&user), "history", "History"),
                rows,
            },
        ),
        Err(e) => failure(Some(&user), &e),
    }
}

async fn history_rows(state: &AppState, user: &User) -> Result<Vec<Row>, ApiError> {
    let now = state.clock.now();
    let mut rows = Vec::new();
    for (a, mine, at) in state.store.decided_by(user, HISTORY_LIMIT).await? {
        // A request this user approved may still be waiting for others, and may have run out.
        let a = state.store.settle(a, now).await?;
        let decisions = state.store.decisions(&a.id).await?;
        let mut r = row(state, &a, &decisions, now);
        r.mine = Some(Mine {
            word: decision_word(mine),
            at: When::at(at),
        });
        rows.push(r);
    }
    Ok(rows)
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    }
}

// ---------------------------------------------------------------------------------------
// `/approvals/{id}`

struct DecisionView {
    name: String,
    username: String,
    /// approved or rejected
    word: &'static str,
    approved: bool,
    at: When,
    you: bool,
}

struct RuleView {
    name: String,
    explanation: String,
}

#[derive(Template)]
#[template(path = "approval.html")]
struct ApprovalPage {
    shell: Shell,
    id: String,
    title: String,
    action: String,
    status: StatusView,
    fields: Vec<Field>,
    policy_known: bool,
    any_hidden_chars: bool,
    canonical: String,
    pretty: String,
    tx_hash: String,
    fingerprint: String,
    initiator: String,
    initiator_is_you: bool,
    audience: String,
    risk: Option<RiskView>,
    required: i64,
    groups: String,
    rules: Vec<RuleView>,
    approvals: i64,
    still_needed: i64,
    decisions: Vec<DecisionView>,
    created: When,
    expires: When,
    decided: Option<When>,
    seconds_left: i64,
    time_left: String,
    can_decide: bool,
    /// Why this user cannot decide (when the request is still pending).
    blocked: String,
    /// What this user decided, if anything.
    mine: Option<Mine>,
}

async fn approval(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    let user = match signed_in(&state, &req).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return if uuid::Uuid::parse_str(&id).is_ok() && id.len() == 36 {
                sign_in_first(&format!("/approvals/{id}"))
            } else {
                sign_in_first("/")
            }
        }
        Err(e) => return failure(None, &e),
    };
    match approval_page(&state, &user, &id).await {
        Ok(Some(page)) => html(StatusCode::OK, &page),
        Ok(None) => not_found(Some(&user)),
        Err(Refusal::NotYours) => message(
            StatusCode::FORBIDDEN,
            Some(&user),
            "This request is not for you",
            "You are not in a group that may decide this request, so its details are not \
             shown. If you think you should decide it, ask your administrator.",
            Some(("/", "Go to your inbox")),
        ),
        Err(Refusal::Api(e)) => failure(Some(&user), &e),
    }
}

enum Refusal {
    NotYours,
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        Refusal::Api(e.into())
    }
}

async fn approval_page(
    state: &AppState,
    user: &User,
    id: &str,
) -> Result<Option<ApprovalPage>, Refusal> {
    let now = state.clock.now();
    let Some(a) = state.approval_now(id).await? else {
        return Ok(None);
    };
    let decisions = state.store.decisions(&a.id).await?;
    let mine = decisions.iter().find(|d| d.user_id == user.id);
    // Who may see a transaction: whoever may decide it, and whoever did (their history).
    if !user.in_any(&a.required_groups) && mine.is_none() {
        return Err(Refusal::NotYours);
    }
    let fields = fields(state, &a);
    let approvals = decisions
        .iter()
        .filter(|d| d.decision == Decision::Approve)
        .count();
    let approvals = i64::try_from(approvals).unwrap_or(i64::MAX);
    let pending = a.status == Status::Pending;
    let seconds_left = if pending {
        (a.expires_at - now).max(0)
    } else {
        0
    };
    let initiator_is_you = a.initiator == user.username;
    let blocked = if !pending || mine.is_some() {
        String::new()
    } else if initiator_is_you && !a.self_approval {
        "You started this request, so someone else has to approve or reject it.".to_owned()
    } else if !may_decide(user, &a) {
        "You are not in a group that may decide this request.".to_owned()
    } else {
        String::new()
    };
    let can_decide = pending && mine.is_none() && seconds_left > 0 && may_decide(user, &a);
    let action = state.policy.action(&a.action);
    let (tx_hash_text, fingerprint) = match TxHash::parse(&a.tx_hash) {
        Ok(h) => (h.to_string(), h.fingerprint()),
        Err(_) => (a.tx_hash.clone(), String::new()),
    };
    let pretty = crate::jcs::parse(a.transaction_jcs.as_bytes())
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v.to_serde()).ok())
        .unwrap_or_else(|| a.transaction_jcs.clone());
    Ok(Some(ApprovalPage {
        shell: Shell::new(Some(user), "inbox", &title(state, &a)),
        id: a.id.clone(),
        title: title(state, &a),
        action: a.action.clone(),
        status: status_view(a.status),
        any_hidden_chars: fields.iter().any(|f| f.hidden_chars),
        policy_known: action.is_some(),
        fields,
        canonical: reveal(&a.transaction_jcs).0,
        pretty: reveal_except(&pretty, Some('\n')).0,
        tx_hash: tx_hash_text,
        fingerprint,
        initiator: reveal(&a.initiator).0,
        initiator_is_you,
        audience: a.audience.clone(),
        risk: risk(&a),
        required: a.required_approvals,
        groups: a.required_groups.join(", "),
        rules: rules(action, &a.rule),
        approvals,
        still_needed: (a.required_approvals - approvals).max(0),
        decisions: decisions
            .iter()
            .map(|d| DecisionView {
                name: d.display_name.clone(),
                username: d.username.clone(),
                word: decision_word(d.decision),
                approved: d.decision == Decision::Approve,
                at: When::at(d.at),
                you: d.user_id == user.id,
            })
            .collect(),
        created: When::at(a.created_at),
        expires: When::at(a.expires_at),
        decided: a.decided_at.map(When::at),
        seconds_left,
        time_left: span(seconds_left),
        can_decide,
        blocked,
        mine: mine.map(|d| Mine {
            word: decision_word(d.decision),
            at: When::at(d.at),
        }),
    }))
}

/// What each rule that applied means, from the current policy. The request records the
/// names it matched when it was made; a rule since removed is shown by name only.
fn rules(action: Option<&ActionPolicy>, rule: &str) -> Vec<RuleView> {
    if rule == "default" || rule.is_empty() {
        return Vec::new();
    }
    rule.split('+')
        .map(|name| {
            let found = action.and_then(|a| a.rules.iter().find(|r| r.name == name));
            let explanation = match (found, action) {
                (Some(r), Some(a)) => {
                    let when = match &r.when {
                        Condition::AtLeast { pointer, at_least } => format!(
                            "{} is at least {}",
                            label_of(a, pointer),
                            crate::policy::money(&at_least.to_string())
                        ),
                        Condition::Equals { pointer, equals } => {
                            format!("{} is “{}”", label_of(a, pointer), equals)
                        }
                        Condition::RiskAtLeast { risk_at_least } => {
                            format!("the risk score is at least {risk_at_least}")
                        }
                    };
                    let mut effects = Vec::new();
                    if let Some(groups) = &r.approvers {
                        effects.push(format!("only {} may decide", groups.join(", ")));
                    }
                    if let Some(q) = r.quorum {
                        effects.push(format!(
                            "at least {} needed",
                            plural(i64::from(q), "approval", "approvals")
                        ));
                    }
                    if let Some(q) = r.add_quorum {
                        effects.push(format!(
                            "{} more needed",
                            plural(i64::from(q), "approval", "approvals")
                        ));
                    }
                    format!("Applies when {when}: {}.", effects.join("; "))
                }
                _ => "This rule is no longer in the policy.".to_owned(),
            };
            RuleView {
                name: name.to_owned(),
                explanation,
            }
        })
        .collect()
}

fn label_of(action: &ActionPolicy, pointer: &str) -> String {
    action
        .display
        .iter()
        .find(|d| d.pointer == pointer)
        .map_or_else(|| format!("the field {pointer}"), |d| d.label.clone())
}

// ---------------------------------------------------------------------------------------
// `/enroll/{token}`

#[derive(Template)]
#[template(path = "enroll.html")]
struct EnrollPage {
    shell: Shell,
    token: String,
    name: String,
    username: String,
    groups: String,
}

async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let token = path.into_inner();
    let user = signed_in(&state, &req).await.ok().flatten();
    match super::enroll::usable_invitation(&state, &token).await {
        Ok((invited, _)) => html(
            StatusCode::OK,
            &EnrollPage {
                shell: Shell::new(user.as_ref(), "", "Set up your passkey"),
                token,
                name: invited.display_name,
                username: invited.username,
                groups: invited.groups.join(", "),
            },
        ),
        Err(e) => match e.code {
            "invitation_used" => message(
                StatusCode::GONE,
                user.as_ref(),
                "This invitation link was already used",
                "A passkey has already been set up with this link, and a link works only once. \
                 If you just did that, sign in. If you did not, tell your administrator now.",
                Some(("/", "Sign in")),
            ),
            "invitation_expired" => message(
                StatusCode::GONE,
                user.as_ref(),
                "This invitation link has expired",
                "Invitation links work for a limited time. Ask your administrator for a new one.",
                None,
            ),
            "not_found" => message(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_shown() {
        assert_eq!(
            reveal("ACME\u{202E}HbmG"),
            ("ACME⟨U+202E⟩HbmG".to_owned(), true)
        );
        assert_eq!(reveal("Zoë & Co"), ("Zoë & Co".to_owned(), false));
        assert!(reveal("a\u{200B}b").1);
        assert!(reveal("line\nbreak").1);
        assert_eq!(
            reveal_except("{\n  \"a\": \"\u{202E}\"\n}", Some('\n')),
            ("{\n  \"a\": \"⟨U+202E⟩\"\n}".to_owned(), true)
        );
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(-5), "0 s");
        assert_eq!(span(59), "59 s");
        assert_eq!(span(1800), "30 min");
        assert_eq!(span(3600), "1 h");
        assert_eq!(span(3900), "1 h 5 min");
        assert_eq!(span(2 * 86_400 + 4 * 3600 + 59), "2 d 4 h");
        assert_eq!(ago(10), "just now");
        assert_eq!(ago(600), "10 min ago");
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(crate::policy::money("10000"), "10,000");
        assert_eq!(crate::policy::money("1234567.5"), "1,234,567.5");
        assert_eq!(crate::policy::money("999"), "999");
    }

    #[test]
    fn utc_text() {
        let w = When::at(1_795_000_000);
        assert_eq!(w.iso, "2026-11-18T11:06:40Z");
        assert_eq!(w.utc, "2026-11-18 11:06 UTC");
    }
}

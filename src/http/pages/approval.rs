//! `/approvals/{id}`: one request, every displayed field, the full transaction, its
//! fingerprint, what the policy requires and why, the decisions so far, Approve and Reject.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::super::problem::ApiError;
use super::super::AppState;
use super::respond::{failure, html, message, not_found, sign_in_first, signed_in};
use super::rules::{rules, RuleView};
use super::view::{
    decision_word, fields_of, others, risk, span, status_view, title, Field, Mine, OtherView,
    RiskView, Shell, StatusView, When,
};
use crate::domain::decision::approvals;
use crate::domain::text::{reveal, reveal_except};
use crate::domain::{groups_of, ApprovalId, Decision, Refusal, Status, User};
use crate::policy::REDACTED;
use crate::service::decide::{eligibility, progress, who_may_decide};
use crate::service::inbox::request_for;

struct DecisionView {
    name: String,
    username: String,
    stage: String,
    /// approved or rejected
    word: &'static str,
    approved: bool,
    at: When,
    you: bool,
}

/// A stage of the request as the page shows it.
#[derive(Clone)]
struct StageRow {
    name: String,
    groups: String,
    quorum: u32,
    approved: u32,
    remaining: u32,
    /// "Display Name (username)" of everyone who could still approve in it (while pending).
    names: Vec<String>,
    /// Fewer people left who could approve in it than it still needs.
    stuck: bool,
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
    others: Vec<OtherView>,
    /// Each stage, its progress and who could still approve in it.
    stages: Vec<StageRow>,
    /// The stages that still need approvals.
    open_stages: Vec<StageRow>,
    /// Their groups.
    open_groups: String,
    policy_known: bool,
    any_hidden_chars: bool,
    /// A field is a secret, shown (and kept) only as its hash commitment.
    any_redacted: bool,
    canonical: String,
    pretty: String,
    tx_hash: String,
    fingerprint: String,
    initiator: String,
    initiator_is_you: bool,
    audience: String,
    risk: Option<RiskView>,
    required: i64,
    /// Every group of every stage.
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

pub async fn approval(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = ApprovalId::parse(&path).ok();
    let user = match signed_in(&state, &req).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return match id {
                Some(id) => sign_in_first(&format!("/approvals/{id}")),
                None => sign_in_first("/"),
            }
        }
        Err(e) => return failure(None, &e),
    };
    let Some(id) = id else {
        return not_found(Some(&user));
    };
    match page(&state, &user, id).await {
        Ok(Some(page)) => html(StatusCode::OK, &page),
        Ok(None) => not_found(Some(&user)),
        Err(e) if e.refusal() == Refusal::NotEligible => message(
            StatusCode::FORBIDDEN,
            Some(&user),
            "This request is not for you",
            "You are not in a group that may decide this request, so its details are not \
             shown. If you think you should decide it, ask your administrator.",
            Some(("/", "Go to your inbox")),
        ),
        Err(e) => failure(Some(&user), &e),
    }
}

async fn page(
    state: &AppState,
    user: &User,
    id: ApprovalId,
) -> Result<Option<ApprovalPage>, ApiError> {
    let svc = &state.svc;
    let Some((a, votes)) = request_for(svc, user, id).await? else {
        return Ok(None);
    };
    let now = svc.clock.now();
    let mine = votes.iter().find(|v| v.user_id == user.id);
    // Parsed once for the display fields, the other fields and the pretty form.
    let tx = a.transaction().ok();
    let (fields, others) = match &tx {
        Some(tx) => (fields_of(&svc.policy, &a, tx), others(&svc.policy, &a, tx)),
        None => (Vec::new(), Vec::new()),
    };
    let pending = a.status == Status::Pending;
    let able = match pending {
        true => who_may_decide(svc, &a).await?,
        false => Vec::new(),
    };
    let progress = progress(&a, &votes, &able);
    let open_groups =
        groups_of(progress.iter().filter(|p| p.remaining > 0).map(|p| p.stage)).join(", ");
    let stages: Vec<StageRow> = progress
        .iter()
        .map(|p| StageRow {
            name: p.stage.name.clone(),
            groups: p.stage.groups.join(", "),
            quorum: p.stage.quorum,
            approved: p.approved,
            remaining: p.remaining,
            names: p
                .eligible
                .iter()
                .map(|u| format!("{} ({})", reveal(&u.display_name).0, u.username))
                .collect(),
            stuck: pending && p.stuck(),
        })
        .collect();
    let open_stages = stages.iter().filter(|s| s.remaining > 0).cloned().collect();
    let approved = i64::from(approvals(votes.iter().map(|v| v.decision)));
    let required = i64::from(a.required.approvals());
    let seconds_left = if pending {
        (a.expires_at - now).max(0)
    } else {
        0
    };
    let eligible = eligibility(user, &a, None);
    let blocked = match (pending && mine.is_none(), &eligible) {
        (true, Err(e)) if e.refusal() == Refusal::SelfApprovalForbidden => {
            "You started this request, so someone else has to approve or reject it.".to_owned()
        }
        (true, Err(_)) => "You are not in a group that may decide this request.".to_owned(),
        _ => String::new(),
    };
    let can_decide = pending && mine.is_none() && seconds_left > 0 && eligible.is_ok();
    let action = svc.policy.action(&a.action);
    let pretty = tx
        .and_then(|v| serde_json::to_string_pretty(&v.to_serde()).ok())
        .unwrap_or_else(|| a.transaction_jcs.clone());
    Ok(Some(ApprovalPage {
        shell: Shell::new(Some(user), "inbox", &title(&svc.policy, &a))
            .with_admin(crate::service::console::is_admin(svc, user)),
        id: a.id.to_string(),
        title: title(&svc.policy, &a),
        action: a.action.clone(),
        status: status_view(a.status),
        any_hidden_chars: fields.iter().any(|f| f.hidden_chars)
            || others.iter().any(|o| o.hidden_chars),
        any_redacted: fields.iter().any(|f| f.present && f.value == REDACTED),
        policy_known: action.is_some(),
        fields,
        others,
        stages,
        open_stages,
        open_groups,
        canonical: reveal(&a.transaction_jcs).0,
        pretty: reveal_except(&pretty, Some('\n')).0,
        tx_hash: a.tx_hash.to_string(),
        fingerprint: a.tx_hash.fingerprint(),
        initiator: reveal(&a.initiator.label()).0,
        initiator_is_you: a.initiator.is(&user.username),
        audience: a.audience.clone(),
        risk: risk(&a),
        required,
        groups: a.required.groups().join(", "),
        rules: rules(action, &a.required.rules),
        approvals: approved,
        still_needed: (required - approved).max(0),
        decisions: votes
            .iter()
            .map(|v| DecisionView {
                name: reveal(&v.display_name).0,
                username: v.username.clone(),
                stage: v.stage.clone(),
                word: decision_word(v.decision),
                approved: v.decision == Decision::Approve,
                at: When::at(v.at),
                you: v.user_id == user.id,
            })
            .collect(),
        created: When::at(a.created_at),
        expires: When::at(a.expires_at),
        decided: a.decided_at.map(When::at),
        seconds_left,
        time_left: span(seconds_left),
        can_decide,
        blocked,
        mine: Mine::of(&votes, user),
    }))
}

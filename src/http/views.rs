//! How a request looks to its creating service and to an approver. Both come only from server
//! state: nothing an approver's browser sends changes what is shown or approved.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::AppState;
use crate::challenge::Decision;
use crate::clock::rfc3339;
use crate::jcs;
use crate::policy::DisplayValue;
use crate::store::{ApprovalRecord, DecisionRecord, User};
use crate::tx_hash::TxHash;

#[derive(Serialize)]
struct Person<'a> {
    user: &'a str,
    name: &'a str,
    at: String,
}

fn decided(decisions: &[DecisionRecord], which: Decision) -> Vec<Person<'_>> {
    decisions
        .iter()
        .filter(|d| d.decision == which)
        .map(|d| Person {
            user: &d.username,
            name: &d.display_name,
            at: rfc3339(d.at),
        })
        .collect()
}

#[derive(Serialize)]
struct Required<'a> {
    approvals: i64,
    groups: &'a [String],
    rule: &'a str,
}

/// The request as its creating client sees it (`GET /v1/approvals/{id}`). Serialised straight
/// from the records: the transaction is stored canonical, so it goes out as it is.
#[derive(Serialize)]
pub struct ServiceView<'a> {
    id: &'a str,
    status: &'static str,
    action: &'a str,
    tx_hash: &'a str,
    transaction: Option<&'a RawValue>,
    initiator: &'a str,
    audience: &'a str,
    created_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_url: Option<String>,
    required: Required<'a>,
    policy_rev: &'a str,
    approvals: Vec<Person<'a>>,
    rejections: Vec<Person<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<&'a str>,
}

pub fn service_view<'a>(
    rec: &'a ApprovalRecord,
    decisions: &'a [DecisionRecord],
    receipt: Option<&'a str>,
    origin: &str,
) -> ServiceView<'a> {
    let url = format!("{origin}/approvals/{}", rec.id);
    view(rec, decisions, receipt, Some(url))
}

fn view<'a>(
    rec: &'a ApprovalRecord,
    decisions: &'a [DecisionRecord],
    receipt: Option<&'a str>,
    approval_url: Option<String>,
) -> ServiceView<'a> {
    ServiceView {
        id: &rec.id,
        status: rec.status.as_str(),
        action: &rec.action,
        tx_hash: &rec.tx_hash,
        transaction: serde_json::from_str(&rec.transaction_jcs).ok(),
        initiator: &rec.initiator,
        audience: &rec.audience,
        created_at: rfc3339(rec.created_at),
        expires_at: rfc3339(rec.expires_at),
        approval_url,
        required: Required {
            approvals: rec.required_approvals,
            groups: &rec.required_groups,
            rule: &rec.rule,
        },
        policy_rev: &rec.policy_rev,
        approvals: decided(decisions, Decision::Approve),
        rejections: decided(decisions, Decision::Reject),
        risk: rec.risk.as_ref(),
        decided_at: rec.decided_at.map(rfc3339),
        receipt,
    }
}

/// The request as an approver sees it: the service view (without the link to its own page)
/// plus what the page shows.
#[derive(Serialize)]
pub struct ApproverView<'a> {
    #[serde(flatten)]
    request: ServiceView<'a>,
    title: &'a str,
    fingerprint: String,
    transaction_canonical: &'a str,
    display: Vec<DisplayValue>,
    your_decision: Option<&'static str>,
}

pub fn approver_view<'a>(
    state: &'a AppState,
    rec: &'a ApprovalRecord,
    decisions: &'a [DecisionRecord],
    user: &User,
) -> ApproverView<'a> {
    let action = state.policy.action(&rec.action);
    let display = match (action, jcs::parse(rec.transaction_jcs.as_bytes())) {
        (Some(a), Ok(tx)) => a.display_values(&tx),
        _ => Vec::new(),
    };
    ApproverView {
        request: view(rec, decisions, None, None),
        title: action.map_or(rec.action.as_str(), |a| a.title.as_str()),
        fingerprint: TxHash::parse(&rec.tx_hash)
            .map(|h| h.fingerprint())
            .unwrap_or_default(),
        transaction_canonical: &rec.transaction_jcs,
        display,
        your_decision: decisions
            .iter()
            .find(|d| d.user_id == user.id)
            .map(|d| d.decision.as_str()),
    }
}

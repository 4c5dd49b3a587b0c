//! How a request looks to its creating service and to an approver. Both come only from server
//! state: nothing an approver's browser sends changes what is shown or approved.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::text::reveal;
use crate::domain::{Decision, Initiator, Request, Risk, Status, User, Vote};
use crate::policy::{DisplayValue, OtherField, Policy, Redaction};
use crate::service::decide::progress;

/// Who decided, when, in which stage.
#[derive(Serialize, ToSchema)]
struct Person<'a> {
    user: &'a str,
    name: &'a str,
    at: String,
    stage: &'a str,
}

fn decided(votes: &[Vote], which: Decision) -> Vec<Person<'_>> {
    votes
        .iter()
        .filter(|v| v.decision == which)
        .map(|v| Person {
            user: &v.username,
            name: &v.display_name,
            at: rfc3339(v.at),
            stage: &v.stage,
        })
        .collect()
}

/// What approving takes: the stages in order, each a quorum of its groups.
#[derive(Serialize, ToSchema)]
struct Required<'a> {
    approvals: u32,
    groups: Vec<String>,
    rule: String,
    stages: Vec<StageView<'a>>,
}

#[derive(Serialize, ToSchema)]
struct StageView<'a> {
    name: &'a str,
    groups: &'a [String],
    quorum: u32,
    approved: u32,
    remaining: u32,
    /// People who may still decide in the stage (enabled, with a usable passkey, not the
    /// requester, not decided yet); where it was not worked out, absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    eligible: Option<usize>,
}

/// The request as its creating client sees it (`GET /v1/approvals/{id}`). Serialised straight
/// from the records: the transaction is stored canonical, so it goes out as it is.
#[derive(Serialize, ToSchema)]
pub struct ServiceView<'a> {
    id: String,
    #[schema(value_type = Status)]
    status: &'static str,
    action: &'a str,
    /// The SHA-256 of the canonical transaction, base64url without padding.
    #[schema(pattern = "^[A-Za-z0-9_-]{43}$")]
    tx_hash: String,
    /// The transaction as stored: canonical (RFC 8785), secrets redacted.
    #[schema(value_type = Object)]
    transaction: Option<&'a RawValue>,
    /// As sent: a username or the party object.
    #[schema(value_type = Initiator)]
    initiator: serde_json::Value,
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
    risk: Option<&'a Risk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<String>,
    /// The signed receipt (a compact JWS), once approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<&'a str>,
    /// In the 201 response only: the salt of each redacted field's commitment.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    redactions: &'a [Redaction],
}

impl<'a> ServiceView<'a> {
    /// With `origin`, the view carries the link to the request's page; with `able` (who could
    /// decide it; nobody once it is decided), each stage says how many people may still decide.
    pub fn new(
        r: &'a Request,
        votes: &'a [Vote],
        receipt: Option<&'a str>,
        origin: Option<&str>,
        able: Option<&'a [User]>,
    ) -> ServiceView<'a> {
        ServiceView {
            id: r.id.to_string(),
            status: r.status.as_str(),
            action: &r.action,
            tx_hash: r.tx_hash.to_string(),
            transaction: serde_json::from_str(&r.transaction_jcs).ok(),
            initiator: r.initiator.to_json(),
            audience: &r.audience,
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            approval_url: origin.map(|o| format!("{o}/approvals/{}", r.id)),
            required: Required {
                approvals: r.required.approvals(),
                groups: r.required.groups(),
                rule: r.required.rule_label(),
                stages: progress(r, votes, able.unwrap_or_default())
                    .into_iter()
                    .map(|p| StageView {
                        name: &p.stage.name,
                        groups: &p.stage.groups,
                        quorum: p.stage.quorum,
                        approved: p.approved,
                        remaining: p.remaining,
                        eligible: able.map(|_| p.eligible.len()),
                    })
                    .collect(),
            },
            policy_rev: &r.policy_rev,
            approvals: decided(votes, Decision::Approve),
            rejections: decided(votes, Decision::Reject),
            risk: r.risk.as_ref(),
            decided_at: r.decided_at.map(rfc3339),
            receipt,
            redactions: &[],
        }
    }

    pub fn with_redactions(self, redactions: &'a [Redaction]) -> ServiceView<'a> {
        ServiceView { redactions, ..self }
    }
}

/// The request as an approver sees it: the service view (without the link to its own page)
/// plus what the page shows.
#[derive(Serialize, ToSchema)]
pub struct ApproverView<'a> {
    #[serde(flatten)]
    request: ServiceView<'a>,
    title: &'a str,
    fingerprint: String,
    transaction_canonical: &'a str,
    display: Vec<DisplayValue>,
    /// Every other leaf of the transaction (JSON pointer and value, unseen characters made
    /// visible as on the page): nothing the passkey signs is left out.
    other_fields: Vec<OtherField>,
    #[schema(value_type = Option<Decision>)]
    your_decision: Option<&'static str>,
}

impl<'a> ApproverView<'a> {
    pub fn new(
        policy: &'a Policy,
        r: &'a Request,
        votes: &'a [Vote],
        user: &User,
    ) -> ApproverView<'a> {
        let action = policy.action(&r.action);
        let tx = r.transaction().ok();
        let display = match (action, &tx) {
            (Some(a), Some(tx)) => a.display_values(tx),
            _ => Vec::new(),
        };
        let other_fields = tx
            .map(|tx| policy.other_fields(&r.action, &tx))
            .unwrap_or_default()
            .into_iter()
            .map(|o| OtherField {
                pointer: reveal(&o.pointer).0,
                value: reveal(&o.value).0,
            })
            .collect();
        ApproverView {
            request: ServiceView::new(r, votes, None, None, None),
            title: action.map_or(r.action.as_str(), |a| a.title.as_str()),
            fingerprint: r.tx_hash.fingerprint(),
            transaction_canonical: &r.transaction_jcs,
            display,
            other_fields,
            your_decision: votes
                .iter()
                .find(|v| v.user_id == user.id)
                .map(|v| v.decision.as_str()),
        }
    }
}

//! How a request looks to its creating service and to an approver. Both come only from server
//! state: nothing an approver's browser sends changes what is shown or approved.

use serde_json::{json, Value};

use super::AppState;
use crate::challenge::Decision;
use crate::clock::rfc3339;
use crate::jcs;
use crate::store::{ApprovalRecord, DecisionRecord, User};
use crate::tx_hash::TxHash;

fn decided(decisions: &[DecisionRecord], which: Decision) -> Vec<Value> {
    decisions
        .iter()
        .filter(|d| d.decision == which)
        .map(|d| json!({ "user": d.username, "name": d.display_name, "at": rfc3339(d.at) }))
        .collect()
}

/// The request as its creating client sees it (`GET /v1/approvals/{id}`).
pub fn service_view(
    rec: &ApprovalRecord,
    decisions: &[DecisionRecord],
    receipt: Option<&str>,
    origin: &str,
) -> Value {
    let transaction = jcs::parse(rec.transaction_jcs.as_bytes())
        .map(|v| v.to_serde())
        .unwrap_or(Value::Null);
    let mut v = json!({
        "id": rec.id,
        "status": rec.status.as_str(),
        "action": rec.action,
        "tx_hash": rec.tx_hash,
        "transaction": transaction,
        "initiator": rec.initiator,
        "audience": rec.audience,
        "created_at": rfc3339(rec.created_at),
        "expires_at": rfc3339(rec.expires_at),
        "approval_url": format!("{origin}/approvals/{}", rec.id),
        "required": { "approvals": rec.required_approvals, "groups": rec.required_groups, "rule": rec.rule },
        "policy_rev": rec.policy_rev,
        "approvals": decided(decisions, Decision::Approve),
        "rejections": decided(decisions, Decision::Reject),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(risk) = &rec.risk {
            obj.insert("risk".into(), risk.clone());
        }
        if let Some(at) = rec.decided_at {
            obj.insert("decided_at".into(), rfc3339(at).into());
        }
        if let Some(receipt) = receipt {
            obj.insert("receipt".into(), receipt.into());
        }
    }
    v
}

/// The request as an approver sees it: the service view plus what the page shows.
pub fn approver_view(
    state: &AppState,
    rec: &ApprovalRecord,
    decisions: &[DecisionRecord],
    user: &User,
) -> Value {
    let mut v = service_view(rec, decisions, None, &state.config.public_origin);
    let tx = jcs::parse(rec.transaction_jcs.as_bytes()).ok();
    let action = state.policy.action(&rec.action);
    let display = match (action, &tx) {
        (Some(a), Some(tx)) => json!(a.display_values(tx)),
        _ => json!([]),
    };
    let mine = decisions
        .iter()
        .find(|d| d.user_id == user.id)
        .map(|d| d.decision.as_str());
    if let Some(obj) = v.as_object_mut() {
        obj.remove("approval_url");
        obj.insert(
            "title".into(),
            json!(action.map_or(rec.action.as_str(), |a| a.title.as_str())),
        );
        obj.insert(
            "fingerprint".into(),
            json!(TxHash::parse(&rec.tx_hash)
                .map(|h| h.fingerprint())
                .unwrap_or_default()),
        );
        obj.insert("transaction_canonical".into(), json!(rec.transaction_jcs));
        obj.insert("display".into(), display);
        obj.insert("your_decision".into(), json!(mine));
    }
    v
}

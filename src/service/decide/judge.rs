//! What decisions amount to, and the decision judged ahead: the quorum rule, the receipt
//! signed before the transaction (signing under a write lock would make every other writer
//! wait for a signature), and the events, so that a store can record it all in one go.

use std::sync::Arc;

use serde_json::json;

use super::super::{Result, Services};
use crate::clock::UnixTime;
use crate::domain::decision::receipt_order;
use crate::domain::{Actor, Decision, DecisionRecord, EventKind, NewEvent, Request, Status};
use crate::issuer::Issuer;
use crate::store::{IssuedReceipt, Judge, Plan, SealedKey};

/// What the decisions on a request (receipt order, the newest included) amount to: a verified
/// rejection rejects at once; every stage approved by enough distinct people approves.
pub fn verdict(request: &Request, decisions: &[DecisionRecord]) -> Option<Status> {
    if decisions
        .iter()
        .any(|d| d.vote.decision == Decision::Reject)
    {
        Some(Status::Rejected)
    } else if request.required.met(decisions.iter().map(|d| &d.vote)) {
        Some(Status::Approved)
    } else {
        None
    }
}

/// Judges `record` over the decisions recorded now (placing it in the first of `stages` still
/// open), and signs the receipt if it approves. `None` when an approval finds no key to sign
/// with here: the transaction then judges alone.
pub(super) async fn plan(
    svc: &Services,
    request: &Request,
    record: &DecisionRecord,
    stages: &[String],
    now: UnixTime,
) -> Result<Option<Plan>> {
    // With a quorum of one, any earlier decision would have decided the request already.
    let mut decisions = if request.required.approvals() > 1 {
        svc.store.decisions(request.id).await?
    } else {
        Vec::new()
    };
    let prior = decisions.iter().map(|d| d.vote.user_id).collect();
    let record = record.placed(&request.required, &decisions, stages);
    let stage = record.vote.stage.clone();
    decisions.push(record.clone());
    receipt_order(&mut decisions);
    let mut after = request.clone();
    let mut receipt = None;
    if let Some(status) = verdict(request, &decisions) {
        after.status = status;
        after.decided_at = Some(now);
        if status == Status::Approved {
            let key = match svc.issuer.last_key() {
                Some(key) => key,
                None => match svc.store.active_key().await? {
                    Some(key) => key,
                    None => return Ok(None),
                },
            };
            match svc.issuer.sign(request, &decisions, &key, now) {
                Ok(signed) => receipt = Some((signed, key.kid)),
                Err(e) => {
                    tracing::warn!(error = %e, "signing a receipt ahead; the transaction will sign");
                    return Ok(None);
                }
            }
        }
    }
    let events = events(
        &after,
        &record,
        receipt.as_ref().map(|(r, kid)| (r, kid.as_str())),
    );
    Ok(Some(Plan {
        prior,
        stage,
        request: after,
        decisions,
        receipt,
        events,
    }))
}

/// The events that record `decision` and what it did to `request` (as it now stands).
fn events(
    request: &Request,
    decision: &DecisionRecord,
    receipt: Option<(&IssuedReceipt, &str)>,
) -> Vec<NewEvent> {
    let kind = match decision.vote.decision {
        Decision::Approve => EventKind::ApprovalRecorded,
        Decision::Reject => EventKind::RejectionRecorded,
    };
    let mut events = vec![NewEvent::new(
        kind,
        Actor::User(decision.vote.username.clone()),
        json!({ "user": decision.vote.username, "credential_id": decision.credential_id, "tx_hash": request.tx_hash, "stage": decision.vote.stage }),
    )
    .about(request.id)];
    let rule = json!({ "rule": request.required.rule_label() });
    match (request.status, receipt) {
        (Status::Approved, Some((r, kid))) => {
            events.push(
                NewEvent::new(EventKind::RequestApproved, Actor::System, rule).about(request.id),
            );
            events.push(
                NewEvent::new(
                    EventKind::ReceiptIssued,
                    Actor::System,
                    json!({ "jti": r.jti, "kid": kid, "audience": request.audience, "expires_at": r.expires_at }),
                )
                .about(request.id),
            );
        }
        (Status::Rejected, _) => {
            events.push(
                NewEvent::new(EventKind::RequestRejected, Actor::System, rule).about(request.id),
            );
        }
        _ => {}
    }
    events
}

/// The decision transaction's rules, for the store to apply under its lock.
pub(super) struct Quorum {
    pub issuer: Arc<Issuer>,
    pub plan: Option<Plan>,
}

impl Judge for Quorum {
    fn may_have_decisions(&self, request: &Request) -> bool {
        // One rejection decides, and so does the last approval: a pending request with a
        // quorum of one has no decisions.
        request.required.approvals() > 1
    }

    fn verdict(&self, request: &Request, decisions: &[DecisionRecord]) -> Option<Status> {
        verdict(request, decisions)
    }

    fn issue(
        &self,
        request: &Request,
        approvals: &[DecisionRecord],
        key: &SealedKey,
        now: UnixTime,
    ) -> std::result::Result<IssuedReceipt, String> {
        match &self.plan {
            Some(Plan {
                decisions,
                receipt: Some((receipt, kid)),
                ..
            }) if *kid == key.kid && decisions == approvals => Ok(receipt.clone()),
            _ => {
                tracing::debug!("approvals or signing key changed since judging; signing again");
                self.issuer.sign(request, approvals, key, now)
            }
        }
    }

    fn events(
        &self,
        request: &Request,
        decision: &DecisionRecord,
        receipt: Option<(&IssuedReceipt, &str)>,
    ) -> Vec<NewEvent> {
        events(request, decision, receipt)
    }

    fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }
}

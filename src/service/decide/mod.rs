//! Deciding: each approve or reject is a fresh passkey assertion over a challenge derived from
//! the request id, the decision, the transaction hash and a nonce (`crate::challenge`). The
//! rules of a decision live here: who may decide (an eligible group, never the initiator unless
//! the policy allows it, once per person whatever passkeys they hold), what the decisions amount
//! to (one rejection rejects, the quorum of distinct people approves), and the receipt.

mod judge;

use std::sync::Arc;

use serde_json::{json, Value};

use super::read_request::settle;
use super::{not_pending, random32, refuse, Error, Result, Services};
use crate::assertion::{AssertionError, Es256Key};
use crate::challenge::decision_challenge;
use crate::clock::UnixTime;
use crate::domain::{
    Actor, ApprovalId, Ceremony, CeremonyId, CeremonyKind, CeremonyState, CredentialId, Decision,
    DecisionRecord, EventKind, NewEvent, Refusal, Request, Status, Taken, User, Vote,
    CEREMONY_SECS,
};
use crate::passkeys::AssertionResponse;
use crate::store::{DecisionOutcome, Expect, NewDecision};
pub use judge::verdict;
use judge::Quorum;

/// Whether this person may decide this request now: in an eligible group, and not its
/// initiator (however either is spelled) unless the policy allowed self-approval when the
/// request was made.
pub fn eligibility(user: &User, request: &Request) -> Result<(), Refusal> {
    if request.initiator.is(&user.username) && !request.self_approval {
        return Err(Refusal::SelfApprovalForbidden);
    }
    if !user.in_any(&request.required.groups) {
        return Err(Refusal::NotEligible);
    }
    Ok(())
}

/// Everyone who could decide `request` now: enabled, in an eligible group, holding a usable
/// passkey, and not its initiator unless the policy allowed self-approval.
pub async fn who_may_decide(svc: &Services, request: &Request) -> Result<Vec<User>> {
    Ok(svc
        .store
        .able_approvers(&request.required.groups)
        .await?
        .into_iter()
        .filter(|u| request.self_approval || !request.initiator.is(&u.username))
        .collect())
}

/// A decision ceremony's start: the request options for the browser and the nonce.
#[derive(Debug)]
pub struct Options {
    pub ceremony: CeremonyId,
    pub public_key: Value,
    pub nonce: [u8; 32],
}

/// `POST /v1/approvals/{id}/decision/options`.
#[tracing::instrument(skip(svc, user), fields(user = %user.username))]
pub async fn options(
    svc: &Services,
    user: &User,
    id: ApprovalId,
    decision: Decision,
) -> Result<Options> {
    let now = svc.clock.now();
    let request = pending(svc, id, now).await?;
    if let Err(refusal) = eligibility(user, &request) {
        return Err(audited(svc, user, id, refusal.into(), now).await);
    }
    if svc
        .store
        .decisions(id)
        .await?
        .iter()
        .any(|d| d.vote.user_id == user.id)
    {
        return refuse(Refusal::AlreadyDecided);
    }
    let allow: Vec<CredentialId> = svc
        .store
        .credentials_of(user.id)
        .await?
        .into_iter()
        .filter(|c| c.usable())
        .map(|c| c.id)
        .collect();
    if allow.is_empty() {
        return refuse(Refusal::CredentialNotAllowed);
    }
    let nonce = random32();
    let challenge = decision_challenge(id.as_bytes(), decision, request.tx_hash.as_bytes(), &nonce);
    let public_key = svc.rp.request_options(&challenge, &allow);
    let ceremony = Ceremony {
        id: CeremonyId::generate(),
        state: CeremonyState::Decision {
            user: user.id,
            approval: id,
            decision,
            nonce,
            allow,
        },
        created_at: now,
        expires_at: now + CEREMONY_SECS,
    };
    let event = NewEvent::new(
        EventKind::CeremonyStarted,
        Actor::User(user.username.clone()),
        json!({ "ceremony": ceremony.id, "decision": decision.as_str() }),
    )
    .about(id);
    svc.store.start_ceremony(&ceremony, Some(event)).await?;
    Ok(Options {
        ceremony: ceremony.id,
        public_key,
        nonce,
    })
}

/// `POST /v1/approvals/{id}/decision/finish`: the request as it now stands and its decisions.
/// Every refusal is audited.
#[tracing::instrument(skip(svc, user, credential), fields(user = %user.username))]
pub async fn finish(
    svc: &Services,
    user: &User,
    id: ApprovalId,
    ceremony: &str,
    credential: &Value,
) -> Result<(Request, Vec<DecisionRecord>)> {
    let now = svc.clock.now();
    match decide(svc, user, id, ceremony, credential, now).await {
        Ok(done) => Ok(done),
        Err(e) => Err(audited(svc, user, id, e, now).await),
    }
}

async fn decide(
    svc: &Services,
    user: &User,
    id: ApprovalId,
    ceremony: &str,
    credential: &Value,
    now: UnixTime,
) -> Result<(Request, Vec<DecisionRecord>)> {
    // An id that is not one names no ceremony: as good as consumed.
    let ceremony_id =
        CeremonyId::parse(ceremony).map_err(|_| Error::from(Refusal::CeremonyConsumed))?;
    let expect = Expect {
        kind: CeremonyKind::Decision,
        user: Some(user.id),
        approval: Some(id),
    };
    // Read, verify, then consume inside the one transaction that records the decision: a
    // successful decision costs one commit. Every refusal below ends the ceremony too.
    let ceremony = match svc.store.peek_ceremony(ceremony_id, expect).await? {
        Taken::Ceremony(c) => c,
        Taken::Mismatch => return refuse(Refusal::CeremonyMismatch),
        Taken::Gone => return refuse(Refusal::CeremonyConsumed),
    };
    let (request, record, counter) = match check(svc, user, id, credential, &ceremony, now).await {
        Ok(checked) => checked,
        // A concurrent finish with the same ceremony may have won meanwhile (and, say, approved
        // the request): then the answer is that the ceremony was used, whatever else failed.
        Err(e) => {
            return match svc.store.discard_ceremony(ceremony_id).await? {
                true => Err(e),
                false => refuse(Refusal::CeremonyConsumed),
            }
        }
    };
    let judge = Arc::new(Quorum {
        issuer: svc.issuer.clone(),
        plan: judge::plan(svc, &request, &record, now).await?,
    });
    let on_clone = NewEvent::new(
        EventKind::CloneSuspected,
        Actor::User(user.username.clone()),
        json!({ "credential_id": record.credential_id, "presented_counter": counter }),
    );
    let decision = NewDecision {
        record,
        ceremony: ceremony_id,
        counter,
        on_clone,
    };
    match svc.store.record_decision(&decision, judge, now).await? {
        DecisionOutcome::Recorded(request, decisions) => Ok((*request, decisions)),
        DecisionOutcome::AlreadyDecided => {
            // Usually consumed by the transaction already; not when it was rolled back.
            svc.store.discard_ceremony(ceremony_id).await?;
            refuse(Refusal::AlreadyDecided)
        }
        DecisionOutcome::CeremonyConsumed => refuse(Refusal::CeremonyConsumed),
        DecisionOutcome::PossibleClone => refuse(Refusal::PossibleClone),
        DecisionOutcome::NotPending => {
            // A finish with the same ceremony that got in first (and, say, approved the
            // request) makes this one a replay.
            if !svc.store.discard_ceremony(ceremony_id).await? {
                return refuse(Refusal::CeremonyConsumed);
            }
            let status = match svc.store.request(id).await? {
                Some(r) => settle(svc, r, now).await?.status,
                None => Status::Cancelled,
            };
            Err(not_pending(status))
        }
    }
}

/// Every check of a decision finish that needs no write: the ceremony's lifetime, the
/// credential, the person and the request as they stand now, and WebAuthn L3 §7.2.
async fn check(
    svc: &Services,
    user: &User,
    id: ApprovalId,
    credential: &Value,
    ceremony: &Ceremony,
    now: UnixTime,
) -> Result<(Request, DecisionRecord, u32)> {
    if ceremony.expires_at <= now {
        return refuse(Refusal::CeremonyExpired);
    }
    let CeremonyState::Decision {
        decision,
        nonce,
        allow,
        ..
    } = &ceremony.state
    else {
        return refuse(Refusal::CeremonyMismatch);
    };
    let assertion = AssertionResponse::parse(credential).ok_or(Refusal::AssertionInvalid)?;
    // Read now, not at options time: a revoked passkey, a disabled user or a removal from the
    // group in between is honoured.
    let cred = match svc.store.credential(&assertion.credential_id).await? {
        Some(c) if allow.contains(&c.id) && c.user_id == user.id && c.usable() => c,
        _ => return refuse(Refusal::CredentialNotAllowed),
    };
    // `user` came from this request's session, read just now with its current groups, and a
    // disabled user has no session: no second read is needed.
    let request = pending(svc, id, now).await?;
    eligibility(user, &request)?;
    // The challenge is recomputed from server state, not taken from the ceremony alone, so a
    // ceremony can only ever verify against the transaction this request holds.
    let challenge = decision_challenge(id.as_bytes(), *decision, request.tx_hash.as_bytes(), nonce);
    let verified = svc
        .rp
        .verify(&cred, &assertion, &challenge)
        .map_err(|e| match e {
            AssertionError::UserNotVerified => Refusal::UserVerificationRequired,
            other => {
                tracing::warn!(target: "countersign::security", error = %other, "assertion refused");
                Refusal::AssertionInvalid
            }
        })?;
    let key = Es256Key::from_xy(&cred.public_x, &cred.public_y).map_err(|_| Refusal::Internal)?;
    let record = DecisionRecord {
        approval_id: id,
        vote: Vote {
            user_id: user.id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            decision: *decision,
            at: now,
        },
        credential_id: cred.id,
        nonce: *nonce,
        authenticator_data: assertion.authenticator_data,
        client_data_json: assertion.client_data_json,
        signature: assertion.signature,
        public_jwk: key.to_jwk(),
        user_verified: verified.user_verified,
    };
    Ok((request, record, verified.counter))
}

/// The request, if it is still pending at `now` (expired first if its time is up).
async fn pending(svc: &Services, id: ApprovalId, now: UnixTime) -> Result<Request> {
    let Some(request) = svc.store.request(id).await? else {
        return refuse(Refusal::NotFound);
    };
    let request = settle(svc, request, now).await?;
    if request.status != Status::Pending {
        return Err(not_pending(request.status));
    }
    Ok(request)
}

/// Writes a refusal to the audit chain and returns it; a refusal that cannot be audited is
/// still refused.
async fn audited(svc: &Services, user: &User, id: ApprovalId, err: Error, now: UnixTime) -> Error {
    let code = err.refusal().code();
    let event = NewEvent::new(
        EventKind::DecisionRefused,
        Actor::User(user.username.clone()),
        json!({ "reason": code }),
    )
    .about(id);
    if let Err(e) = svc.store.record(event, now).await {
        tracing::error!(error = %e, "could not audit a refused decision");
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientId, CredentialId, Initiator, Requirement, UserId};

    fn request(quorum: u32) -> Request {
        Request {
            id: ApprovalId::generate(),
            client_id: ClientId::generate(),
            action: "payment.transfer".into(),
            transaction_jcs: "{}".into(),
            tx_hash: crate::tx_hash::TxHash::of_json(b"{}").unwrap().0,
            initiator: Initiator::parse("Dave").unwrap(),
            audience: "payments".into(),
            risk: None,
            policy_rev: "rev".into(),
            required: Requirement {
                approvals: quorum,
                groups: vec!["finance".into()],
                rules: vec![],
            },
            status: Status::Pending,
            created_at: 0,
            expires_at: 100,
            decided_at: None,
            self_approval: false,
            receipt_ttl: 300,
        }
    }

    fn decision(name: &str, d: Decision) -> DecisionRecord {
        DecisionRecord {
            approval_id: ApprovalId::generate(),
            vote: Vote {
                user_id: UserId::generate(),
                username: name.into(),
                display_name: name.into(),
                decision: d,
                at: 1,
            },
            credential_id: CredentialId::from_raw(name.as_bytes()).unwrap(),
            nonce: [0; 32],
            authenticator_data: vec![],
            client_data_json: vec![],
            signature: vec![],
            public_jwk: Value::Null,
            user_verified: true,
        }
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            id: UserId::generate(),
            username: name.into(),
            display_name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            created_at: 0,
            disabled_at: None,
        }
    }

    #[test]
    fn the_quorum_counts_approvals_and_one_rejection_rejects() {
        let r = request(2);
        assert_eq!(verdict(&r, &[decision("a", Decision::Approve)]), None);
        assert_eq!(
            verdict(
                &r,
                &[
                    decision("a", Decision::Approve),
                    decision("b", Decision::Approve)
                ]
            ),
            Some(Status::Approved)
        );
        assert_eq!(
            verdict(
                &r,
                &[
                    decision("a", Decision::Approve),
                    decision("b", Decision::Reject)
                ]
            ),
            Some(Status::Rejected)
        );
    }

    #[test]
    fn the_initiator_cannot_decide_however_spelled() {
        let r = request(1);
        for name in ["dave", "DAVE"] {
            assert_eq!(
                eligibility(&user(name, &["finance"]), &r),
                Err(Refusal::SelfApprovalForbidden)
            );
        }
        assert_eq!(eligibility(&user("erin", &["finance"]), &r), Ok(()));
        assert_eq!(
            eligibility(&user("erin", &["admins"]), &r),
            Err(Refusal::NotEligible)
        );
        let mut allowed = r;
        allowed.self_approval = true;
        assert_eq!(eligibility(&user("dave", &["finance"]), &allowed), Ok(()));
    }
}

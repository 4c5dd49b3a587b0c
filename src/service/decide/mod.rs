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
    Actor, ApprovalId, Ceremony, CeremonyId, CeremonyKind, CeremonyState, Credential, Decision,
    DecisionRecord, EventKind, NewEvent, Refusal, Request, Stage, Status, Taken, User, Vote,
    CEREMONY_SECS,
};
use crate::passkeys::AssertionResponse;
use crate::store::{DecisionOutcome, Expect, NewDecision};
pub use judge::verdict;
use judge::Quorum;

/// Whether this person may decide this request now, and in which stages (in order): in a
/// group of some stage (of `stage`, when they asked for one), and not its initiator (however
/// either is spelled) unless the policy allowed self-approval when the request was made.
pub fn eligibility(
    user: &User,
    request: &Request,
    stage: Option<&str>,
) -> Result<Vec<String>, Error> {
    if request.initiator.is(&user.username) && !request.self_approval {
        return refuse(Refusal::SelfApprovalForbidden);
    }
    let stages = request.required.stages_for(&user.groups);
    match stage {
        None if stages.is_empty() => refuse(Refusal::NotEligible),
        None => Ok(stages),
        Some(asked) if stages.iter().any(|s| s == asked) => Ok(vec![asked.to_owned()]),
        Some(asked) => Err(Error::from(Refusal::NotEligible).detail(
            if request.required.stages.iter().any(|s| s.name == asked) {
                format!("you are not in a group of stage {asked:?}")
            } else {
                format!("this request has no stage {asked:?}")
            },
        )),
    }
}

/// Everyone who could decide `request` now: enabled, in an eligible group, holding a usable
/// passkey, and not its initiator unless the policy allowed self-approval.
pub async fn who_may_decide(svc: &Services, request: &Request) -> Result<Vec<User>> {
    Ok(svc
        .store
        .able_approvers(&request.required.groups())
        .await?
        .into_iter()
        .filter(|u| request.self_approval || !request.initiator.is(&u.username))
        .collect())
}

/// A stage of a request and how far it has come.
#[derive(Debug, Clone, PartialEq)]
pub struct StageProgress<'a> {
    pub stage: &'a Stage,
    pub approved: u32,
    pub remaining: u32,
    /// Of the people who could decide the request (`who_may_decide`), those in this stage's
    /// groups who have not decided yet.
    pub eligible: Vec<&'a User>,
}

impl StageProgress<'_> {
    /// Fewer people left who could approve in it than approvals it still needs.
    pub fn stuck(&self) -> bool {
        (self.eligible.len() as u64) < u64::from(self.remaining)
    }
}

/// Each stage of `request` with its approvals so far, what it still needs and, of `able`, who
/// may still decide in it.
pub fn progress<'a>(
    request: &'a Request,
    votes: &[Vote],
    able: &'a [User],
) -> Vec<StageProgress<'a>> {
    let tally = request.required.tally(votes);
    request
        .required
        .stages
        .iter()
        .zip(tally)
        .map(|(stage, approved)| StageProgress {
            stage,
            approved,
            remaining: stage.quorum.saturating_sub(approved),
            eligible: able
                .iter()
                .filter(|u| stage.admits(&u.groups) && !votes.iter().any(|v| v.user_id == u.id))
                .collect(),
        })
        .collect()
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
    stage: Option<String>,
) -> Result<Options> {
    let now = svc.clock.now();
    let Some(read) = svc.store.options_read(id, user.id).await? else {
        return refuse(Refusal::NotFound);
    };
    let request = pending(svc, read.request, now).await?;
    if let Err(refusal) = eligibility(user, &request, stage.as_deref()) {
        return Err(audited(svc, user, id, refusal, now).await);
    }
    if read.decided {
        return refuse(Refusal::AlreadyDecided);
    }
    let allow = read.passkeys;
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
            stage,
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
        Ok(done) => {
            if done.0.action == crate::domain::ADMIN_ACTION && done.0.status == Status::Approved {
                // A console change is carried out once approved; should this fail, the next
                // reader of the change or the sweeper carries it out.
                if let Err(e) = super::console::carry_out(svc, id).await {
                    tracing::error!(error = %e, approval_id = %id, "carrying out a console change");
                }
            }
            Ok(done)
        }
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
    // The ceremony, the passkey and the request are read at once (one round trip on
    // PostgreSQL), then judged in that order.
    let assertion = AssertionResponse::parse(credential);
    let read = svc
        .store
        .finish_read(
            ceremony_id,
            expect,
            assertion.as_ref().map(|a| &a.credential_id),
            id,
        )
        .await?;
    let request = match read.request {
        Some(request) => pending(svc, request, now).await,
        None => refuse(Refusal::NotFound),
    };
    let ceremony = match read.ceremony {
        Taken::Ceremony(c) => c,
        Taken::Mismatch => return refuse(Refusal::CeremonyMismatch),
        Taken::Gone => return refuse(Refusal::CeremonyConsumed),
    };
    let read = Read {
        assertion,
        cred: read.credential,
        request,
    };
    let (request, record, stages, counter) = match check(svc, user, id, read, &ceremony, now).await
    {
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
        plan: judge::plan(svc, &request, &record, &stages, now).await?,
    });
    let on_clone = NewEvent::new(
        EventKind::CloneSuspected,
        Actor::User(user.username.clone()),
        json!({ "credential_id": record.credential_id, "presented_counter": counter }),
    );
    let decision = NewDecision {
        record,
        stages,
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

/// What a finish reads besides its ceremony.
struct Read {
    assertion: Option<AssertionResponse>,
    cred: Option<Credential>,
    request: Result<Request>,
}

/// Every check of a decision finish that needs no write: the ceremony's lifetime, the
/// credential, the person and the request as they stand now, and WebAuthn L3 §7.2. Gives the
/// decision (its stage still to be placed), the stages it may go to, and the counter.
async fn check(
    svc: &Services,
    user: &User,
    id: ApprovalId,
    read: Read,
    ceremony: &Ceremony,
    now: UnixTime,
) -> Result<(Request, DecisionRecord, Vec<String>, u32)> {
    if ceremony.expires_at <= now {
        return refuse(Refusal::CeremonyExpired);
    }
    let CeremonyState::Decision {
        decision,
        nonce,
        allow,
        stage,
        ..
    } = &ceremony.state
    else {
        return refuse(Refusal::CeremonyMismatch);
    };
    let assertion = read.assertion.ok_or(Refusal::AssertionInvalid)?;
    // Read now, not at options time: a revoked passkey, a disabled user or a removal from the
    // group in between is honoured.
    let cred = match read.cred {
        Some(c) if allow.contains(&c.id) && c.user_id == user.id && c.usable() => c,
        _ => return refuse(Refusal::CredentialNotAllowed),
    };
    // `user` came from this request's session, read just now with its current groups, and a
    // disabled user has no session: no second read is needed.
    let request = read.request?;
    let stages = eligibility(user, &request, stage.as_deref())?;
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
            stage: String::new(),
        },
        credential_id: cred.id,
        nonce: *nonce,
        authenticator_data: assertion.authenticator_data,
        client_data_json: assertion.client_data_json,
        signature: assertion.signature,
        public_jwk: key.to_jwk(),
        user_verified: verified.user_verified,
    };
    Ok((request, record, stages, verified.counter))
}

/// The request, if it is still pending at `now` (expired first if its time is up).
async fn pending(svc: &Services, request: Request, now: UnixTime) -> Result<Request> {
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
                stages: vec![crate::domain::Stage {
                    name: "default".into(),
                    groups: vec!["finance".into()],
                    quorum,
                }],
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
                stage: "default".into(),
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
            email: None,
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
        let code = |u: &User, r: &Request, stage: Option<&str>| {
            eligibility(u, r, stage).map_err(|e| e.refusal())
        };
        for name in ["dave", "DAVE"] {
            assert_eq!(
                code(&user(name, &["finance"]), &r, None),
                Err(Refusal::SelfApprovalForbidden)
            );
        }
        let erin = user("erin", &["finance"]);
        assert_eq!(code(&erin, &r, None), Ok(vec!["default".to_owned()]));
        assert_eq!(
            code(&user("erin", &["admins"]), &r, None),
            Err(Refusal::NotEligible)
        );
        assert_eq!(
            code(&erin, &r, Some("security")),
            Err(Refusal::NotEligible),
            "no such stage"
        );
        let mut allowed = r;
        allowed.self_approval = true;
        assert!(code(&user("dave", &["finance"]), &allowed, None).is_ok());
    }

    #[test]
    fn people_in_several_stages_may_ask_for_one() {
        let mut r = request(1);
        r.required.stages.push(crate::domain::Stage {
            name: "security".into(),
            groups: vec!["security".into()],
            quorum: 1,
        });
        let both = user("erin", &["security", "finance"]);
        let code = |stage| eligibility(&both, &r, stage).map_err(|e| e.refusal());
        assert_eq!(
            code(None),
            Ok(vec!["default".to_owned(), "security".to_owned()]),
            "in stage order"
        );
        assert_eq!(code(Some("security")), Ok(vec!["security".to_owned()]));
        let sam = user("sam", &["security"]);
        assert_eq!(
            eligibility(&sam, &r, Some("default")).map_err(|e| e.refusal()),
            Err(Refusal::NotEligible)
        );
        // Two approvals in one stage leave the other unmet.
        let mut a = decision("a", Decision::Approve);
        let mut b = decision("b", Decision::Approve);
        assert_eq!(verdict(&r, &[a.clone(), b.clone()]), None);
        b.vote.stage = "security".into();
        assert_eq!(verdict(&r, &[a.clone(), b.clone()]), Some(Status::Approved));
        a.vote.stage = "security".into();
        assert_eq!(verdict(&r, &[a, b]), None);
    }
}

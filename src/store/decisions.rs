//! Approvers' decisions, each with the raw assertion that proves it, and the quorum check.

use std::sync::{Arc, LazyLock};

use serde_json::json;

use super::approvals::{approval_from_row, prefixed_cols, APPROVAL_COLS};
use super::audit::{append_all, NewEvent};
use super::receipts::{active_key, ReceiptSigner};
use super::sql::{args, Columns, WriteTx};
use super::users::advance_counter_in;
use super::users::User;
use super::{get, is_unique, ApprovalRecord, Status, Store, StoreError, StoreResult};
use crate::challenge::Decision;
use crate::clock::UnixTime;

/// A verified decision with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub approval_id: String,
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub decision: Decision,
    pub credential_id: String,
    pub at: UnixTime,
    pub nonce: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub signature: Vec<u8>,
    pub public_jwk: serde_json::Value,
    pub user_verified: bool,
}

#[derive(Debug, PartialEq)]
pub enum DecisionOutcome {
    /// Recorded; the request as it now stands (approved or rejected if this decided it) and
    /// its decisions, this one included.
    Recorded(Box<ApprovalRecord>, Vec<DecisionRecord>),
    AlreadyDecided,
    NotPending(Status),
    /// Another finish consumed the ceremony first.
    CeremonyConsumed,
    /// The signature counter did not advance; the credential is now flagged.
    PossibleClone,
}

const DECISION_COLS: &str =
    "approval_id, user_id, decision, username, display_name, credential_id, at, nonce, \
     authenticator_data, client_data_json, signature, public_jwk, user_verified";

fn decision_from_row(row: &impl Columns) -> StoreResult<DecisionRecord> {
    let decision: String = get(row, "decision")?;
    let jwk: String = get(row, "public_jwk")?;
    Ok(DecisionRecord {
        approval_id: get(row, "approval_id")?,
        user_id: get(row, "user_id")?,
        username: get(row, "username")?,
        display_name: get(row, "display_name")?,
        decision: decision
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("decision {decision:?}")))?,
        credential_id: get(row, "credential_id")?,
        at: get(row, "at")?,
        nonce: get(row, "nonce")?,
        authenticator_data: get(row, "authenticator_data")?,
        client_data_json: get(row, "client_data_json")?,
        signature: get(row, "signature")?,
        public_jwk: serde_json::from_str(&jwk)
            .map_err(|e| super::StoreError::Corrupt(format!("public_jwk: {e}")))?,
        user_verified: get::<i64>(row, "user_verified")? != 0,
    })
}

/// A receipt signed before the write transaction, over the approvals it expected to find.
/// Signing under the write lock would make every other writer wait for a signature; this way
/// the transaction only checks that it found those approvals and that key still active.
#[derive(Clone)]
struct Presigned {
    over: Vec<DecisionRecord>,
    kid: String,
    jti: String,
    token: String,
    expires_at: UnixTime,
}

/// Signs a receipt; a failure means the stored key did not open.
fn sign(
    signer: &dyn ReceiptSigner,
    approval: &ApprovalRecord,
    approvals: &[DecisionRecord],
    kid: &str,
    sealed: &[u8],
    now: UnixTime,
) -> StoreResult<(String, String, UnixTime)> {
    signer
        .sign(approval, approvals, kid, sealed, now)
        .map_err(|e| StoreError::Corrupt(format!("signing a receipt: {e}")))
}

/// The decisions on a request, in receipt order. While it is pending they are all approvals:
/// a rejection decides it.
static DECISIONS_OF: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {DECISION_COLS} FROM decisions WHERE approval_id = $1 ORDER BY at, username")
});
static INSERT_DECISION: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO decisions ({DECISION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
});
/// Locking the request row makes concurrent last approvals (on any replica) take turns; on a
/// writer that excludes all others, reading it is enough.
static LOCK_PENDING: LazyLock<String> = LazyLock::new(|| {
    format!("UPDATE approvals SET status = status WHERE id = $1 AND status = 'pending' AND expires_at > $2 RETURNING {APPROVAL_COLS}")
});
static READ_PENDING: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1 AND status = 'pending' AND expires_at > $2")
});

/// Adds `d` as the transaction records it (at `now`) to the decisions before it, keeping
/// receipt order; presigning and the transaction must agree on it to the byte.
fn with_decision(decisions: &mut Vec<DecisionRecord>, d: &DecisionRecord, now: UnixTime) {
    decisions.push(DecisionRecord {
        at: now,
        ..d.clone()
    });
    decisions.sort_by(|a, b| (a.at, &a.username).cmp(&(b.at, &b.username)));
}

impl Store {
    /// Records one verified decision on `approval` (as read when it was verified). The request
    /// row is locked first, so when the last approvals arrive together (on any number of
    /// replicas) exactly one of them sees the quorum and flips the request; a rejection
    /// decides it at once.
    #[tracing::instrument(skip(self, approval, d, signer), fields(approval_id = %d.approval_id, user = %d.username, decision = d.decision.as_str()))]
    pub async fn record_decision(
        &self,
        approval: &ApprovalRecord,
        d: &DecisionRecord,
        ceremony_id: &str,
        counter: i64,
        signer: Arc<dyn ReceiptSigner>,
        now: UnixTime,
    ) -> StoreResult<DecisionOutcome> {
        let presigned = self.presign(approval, d, signer.as_ref(), now).await?;
        let outcome = match &self.direct {
            Some(direct) => {
                let (d, ceremony_id) = (d.clone(), ceremony_id.to_string());
                direct
                    .transact(move |tx| {
                        let fut = decide_in(
                            tx,
                            &d,
                            &ceremony_id,
                            counter,
                            &*signer,
                            presigned.as_ref(),
                            now,
                        );
                        super::sqlite::block_on(fut)?
                    })
                    .await?
            }
            None => {
                let mut tx = self.begin_write().await?;
                let (outcome, keep) = decide_in(
                    &mut tx,
                    d,
                    ceremony_id,
                    counter,
                    &*signer,
                    presigned.as_ref(),
                    now,
                )
                .await?;
                if keep {
                    self.announce(&mut tx, &d.approval_id).await?;
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                outcome
            }
        };
        Ok(match outcome {
            DecisionOutcome::Recorded(approval, decisions) => {
                self.committed(&d.approval_id);
                DecisionOutcome::Recorded(approval, decisions)
            }
            DecisionOutcome::CeremonyConsumed => DecisionOutcome::CeremonyConsumed,
            // Refused after verifying; the transaction ended the ceremony.
            DecisionOutcome::PossibleClone => {
                self.flag_clone(
                    &d.credential_id,
                    &d.username,
                    counter,
                    Some(ceremony_id),
                    now,
                )
                .await?;
                DecisionOutcome::PossibleClone
            }
            DecisionOutcome::AlreadyDecided => {
                // Usually consumed by the transaction already; not when it was rolled back.
                self.discard_ceremony(ceremony_id).await?;
                DecisionOutcome::AlreadyDecided
            }
            DecisionOutcome::NotPending(_) => {
                // A finish with the same ceremony that got in first (and, say, approved the
                // request) makes this one a replay.
                if !self.discard_ceremony(ceremony_id).await? {
                    return Ok(DecisionOutcome::CeremonyConsumed);
                }
                let status = self
                    .expire_if_due(&d.approval_id, now)
                    .await?
                    .map_or(Status::Cancelled, |a| a.status);
                DecisionOutcome::NotPending(status)
            }
        })
    }

    /// Signs the receipt ahead when this approval would meet the quorum with those already
    /// recorded.
    async fn presign(
        &self,
        approval: &ApprovalRecord,
        d: &DecisionRecord,
        signer: &dyn ReceiptSigner,
        now: UnixTime,
    ) -> StoreResult<Option<Presigned>> {
        if d.decision != Decision::Approve {
            return Ok(None);
        }
        // With a quorum of one, any earlier approval would have decided the request already.
        let mut over = if approval.required_approvals > 1 {
            self.decisions(&d.approval_id).await?
        } else {
            Vec::new()
        };
        with_decision(&mut over, d, now);
        if i64::try_from(over.len()).unwrap_or(i64::MAX) < approval.required_approvals {
            return Ok(None);
        }
        let (kid, sealed) = match signer.last_key() {
            Some(key) => key,
            None => match self.read_optional(super::receipts::ACTIVE_KEY, &[]).await? {
                Some(row) => (get(&row, "kid")?, get(&row, "sealed")?),
                None => return Ok(None),
            },
        };
        let (jti, token, expires_at) = sign(signer, approval, &over, &kid, &sealed, now)?;
        Ok(Some(Presigned {
            over,
            kid,
            jti,
            token,
            expires_at,
        }))
    }

    pub async fn decisions(&self, approval_id: &str) -> StoreResult<Vec<DecisionRecord>> {
        self.read_all(&DECISIONS_OF, args![approval_id])
            .await?
            .iter()
            .map(decision_from_row)
            .collect()
    }

    /// Pending, unexpired requests this user has not decided yet, newest first. Eligibility
    /// (groups, initiator) is the caller's to filter: it needs the user and the policy.
    pub async fn undecided_pending(
        &self,
        user: &User,
        now: UnixTime,
        limit: i64,
    ) -> StoreResult<Vec<ApprovalRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM approvals a WHERE a.status = 'pending' AND a.expires_at > $1 \
             AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.approval_id = a.id AND d.user_id = $2) \
             ORDER BY a.created_at DESC, a.id LIMIT $3",
            prefixed_cols("a")
        ))
        .bind(now)
        .bind(&user.id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(approval_from_row).collect()
    }

    /// Requests this user decided, newest decision first.
    pub async fn decided_by(
        &self,
        user: &User,
        limit: i64,
    ) -> StoreResult<Vec<(ApprovalRecord, Decision, UnixTime)>> {
        let rows = sqlx::query(&format!(
            "SELECT {}, d.decision AS my_decision, d.at AS my_at FROM approvals a JOIN decisions d ON d.approval_id = a.id \
             WHERE d.user_id = $1 ORDER BY d.at DESC, a.id LIMIT $2",
            prefixed_cols("a")
        ))
        .bind(&user.id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let decision: String = get(row, "my_decision")?;
                let decision = decision
                    .parse()
                    .map_err(|_| super::StoreError::Corrupt("decision".into()))?;
                Ok((approval_from_row(row)?, decision, get(row, "my_at")?))
            })
            .collect()
    }
}

/// The decision transaction: lock the request, consume the ceremony, advance the signature
/// counter, record the decision, and on reaching the quorum approve and store the receipt.
/// Returns the outcome and whether to commit: a refusal once the ceremony is consumed commits
/// that, so the ceremony cannot be tried again; before, it has changed nothing.
/// `NotPending`'s status is settled by the caller, after this transaction.
async fn decide_in<T: WriteTx>(
    tx: &mut T,
    d: &DecisionRecord,
    ceremony_id: &str,
    counter: i64,
    signer: &dyn ReceiptSigner,
    presigned: Option<&Presigned>,
    now: UnixTime,
) -> StoreResult<(DecisionOutcome, bool)> {
    let lock: &str = if T::EXCLUSIVE {
        &READ_PENDING
    } else {
        &LOCK_PENDING
    };
    let Some(row) = tx.fetch_optional(lock, args![&d.approval_id, now]).await? else {
        return Ok((DecisionOutcome::NotPending(Status::Pending), false));
    };
    let mut approval = approval_from_row(&row)?;
    // Of any number of concurrent finishes with this ceremony (on any replica), one deletes it.
    let consumed = tx
        .execute(
            "DELETE FROM ceremonies WHERE id = $1 AND approval_id = $2 AND user_id = $3",
            args![ceremony_id, &d.approval_id, &d.user_id],
        )
        .await?;
    if consumed != 1 {
        return Ok((DecisionOutcome::CeremonyConsumed, false));
    }
    // The approvals so far decide the quorum with this one and, when it is met, go into the
    // receipt. With a quorum of one, a pending request has none: any decision decides it.
    let mut decisions = if approval.required_approvals > 1 {
        tx.fetch_all(&DECISIONS_OF, args![&d.approval_id])
            .await?
            .iter()
            .map(decision_from_row)
            .collect::<StoreResult<Vec<_>>>()?
    } else {
        Vec::new()
    };
    if decisions.iter().any(|r| r.user_id == d.user_id) {
        return Ok((DecisionOutcome::AlreadyDecided, true));
    }
    if !advance_counter_in(tx, &d.credential_id, counter, now).await? {
        return Ok((DecisionOutcome::PossibleClone, true));
    }
    let jwk = d.public_jwk.to_string();
    let inserted = tx
        .execute(
            &INSERT_DECISION,
            args![
                &d.approval_id,
                &d.user_id,
                d.decision.as_str(),
                &d.username,
                &d.display_name,
                &d.credential_id,
                now,
                &d.nonce,
                &d.authenticator_data,
                &d.client_data_json,
                &d.signature,
                &jwk,
                i64::from(d.user_verified),
            ],
        )
        .await;
    match inserted {
        // Only when the quorum-of-one shortcut above met a decision it did not expect.
        Err(e) if is_unique(&e) => return Ok((DecisionOutcome::AlreadyDecided, false)),
        other => other?,
    };
    with_decision(&mut decisions, d, now);
    let approvals: Vec<DecisionRecord> = decisions
        .iter()
        .filter(|r| r.decision == Decision::Approve)
        .cloned()
        .collect();
    let decided = match d.decision {
        Decision::Reject => Some(Status::Rejected),
        Decision::Approve => (i64::try_from(approvals.len()).unwrap_or(i64::MAX)
            >= approval.required_approvals)
            .then_some(Status::Approved),
    };
    if let Some(status) = decided {
        tx.execute(
            "UPDATE approvals SET status = $1, decided_at = $2 WHERE id = $3",
            args![status.as_str(), now, &d.approval_id],
        )
        .await?;
        approval.status = status;
        approval.decided_at = Some(now);
    }
    let actor = format!("user:{}", d.username);
    let mut events = vec![NewEvent {
        kind: match d.decision {
            Decision::Approve => "approval_recorded",
            Decision::Reject => "rejection_recorded",
        },
        actor: &actor,
        approval_id: Some(&d.approval_id),
        data: json!({ "user": d.username, "credential_id": d.credential_id, "tx_hash": approval.tx_hash }),
    }];
    match decided {
        Some(Status::Approved) => {
            // The receipt is stored with the approval itself: after any crash there is either
            // an approved request with its receipt, or neither.
            let (kid, sealed) = active_key(tx).await?;
            let receipt = match presigned {
                Some(p) if p.kid == kid && p.over == approvals => {
                    (p.jti.clone(), p.token.clone(), p.expires_at)
                }
                _ => {
                    tracing::debug!(
                        "approvals or signing key changed since presigning; signing again"
                    );
                    sign(signer, &approval, &approvals, &kid, &sealed, now)?
                }
            };
            let (jti, token, expires_at) = receipt;
            tx.execute(
                "INSERT INTO receipts (jti, approval_id, kid, audience, token, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                args![&jti, &d.approval_id, &kid, &approval.audience, &token, now, expires_at],
            )
            .await?;
            events.push(NewEvent {
                kind: "request_approved",
                actor: "system",
                approval_id: Some(&d.approval_id),
                data: json!({ "rule": approval.rule }),
            });
            events.push(NewEvent {
                kind: "receipt_issued",
                actor: "system",
                approval_id: Some(&d.approval_id),
                data: json!({ "jti": jti, "kid": kid, "audience": approval.audience, "expires_at": expires_at }),
            });
        }
        Some(_) => events.push(NewEvent {
            kind: "request_rejected",
            actor: "system",
            approval_id: Some(&d.approval_id),
            data: json!({ "rule": approval.rule }),
        }),
        None => {}
    }
    append_all(tx, now, events).await?;
    Ok((
        DecisionOutcome::Recorded(Box::new(approval), decisions),
        true,
    ))
}

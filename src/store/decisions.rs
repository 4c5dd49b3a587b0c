//! Approvers' decisions, each with the raw assertion that proves it, and the quorum check.

use serde_json::json;
use sqlx::any::AnyRow;

use super::approvals::{approval_from_row, prefixed_cols, APPROVAL_COLS};
use super::audit::{append_all, NewEvent};
use super::receipts::{active_key, ReceiptSigner};
use super::users::advance_counter_in;
use super::users::User;
use super::{get, is_unique_violation, ApprovalRecord, Status, Store, StoreError, StoreResult};
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
    /// Recorded; the request as it now stands (approved or rejected if this decided it).
    Recorded(Box<ApprovalRecord>),
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

fn decision_from_row(row: &AnyRow) -> StoreResult<DecisionRecord> {
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

impl Store {
    /// Records one verified decision. The request row is locked first, so when the last
    /// approvals arrive together (on any number of replicas) exactly one of them sees the quorum
    /// and flips the request; a rejection decides it at once.
    #[tracing::instrument(skip(self, d, signer), fields(approval_id = %d.approval_id, user = %d.username, decision = d.decision.as_str()))]
    pub async fn record_decision(
        &self,
        d: &DecisionRecord,
        ceremony_id: &str,
        counter: i64,
        signer: &dyn ReceiptSigner,
        now: UnixTime,
    ) -> StoreResult<DecisionOutcome> {
        let outcome = self
            .try_record_decision(d, ceremony_id, counter, signer, now)
            .await?;
        match &outcome {
            DecisionOutcome::Recorded(_) | DecisionOutcome::CeremonyConsumed => {}
            // Refused after verifying: the ceremony still ends, so it cannot be tried again.
            DecisionOutcome::PossibleClone => {
                self.flag_clone(
                    &d.credential_id,
                    &d.username,
                    counter,
                    Some(ceremony_id),
                    now,
                )
                .await?
            }
            DecisionOutcome::AlreadyDecided | DecisionOutcome::NotPending(_) => {
                self.discard_ceremony(ceremony_id).await?;
            }
        }
        Ok(outcome)
    }

    /// One transaction: consume the ceremony, lock the request, advance the signature counter,
    /// record the decision, and on reaching the quorum approve and issue the receipt.
    async fn try_record_decision(
        &self,
        d: &DecisionRecord,
        ceremony_id: &str,
        counter: i64,
        signer: &dyn ReceiptSigner,
        now: UnixTime,
    ) -> StoreResult<DecisionOutcome> {
        let mut tx = self.begin_write().await?;
        // Of any number of concurrent finishes with this ceremony (on any replica), one deletes it.
        let consumed = sqlx::query(
            "DELETE FROM ceremonies WHERE id = $1 AND approval_id = $2 AND user_id = $3",
        )
        .bind(ceremony_id)
        .bind(&d.approval_id)
        .bind(&d.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if consumed != 1 {
            tx.rollback().await?;
            return Ok(DecisionOutcome::CeremonyConsumed);
        }
        let row = sqlx::query(&format!(
            "UPDATE approvals SET status = status WHERE id = $1 AND status = 'pending' AND expires_at > $2 RETURNING {APPROVAL_COLS}"
        ))
        .bind(&d.approval_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            let status = self
                .expire_if_due(&d.approval_id, now)
                .await?
                .map_or(Status::Cancelled, |a| a.status);
            return Ok(DecisionOutcome::NotPending(status));
        };
        let mut approval = approval_from_row(&row)?;
        if !advance_counter_in(&mut tx, &d.credential_id, counter, now).await? {
            tx.rollback().await?;
            return Ok(DecisionOutcome::PossibleClone);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO decisions ({DECISION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&d.approval_id)
        .bind(&d.user_id)
        .bind(d.decision.as_str())
        .bind(&d.username)
        .bind(&d.display_name)
        .bind(&d.credential_id)
        .bind(now)
        .bind(d.nonce.clone())
        .bind(d.authenticator_data.clone())
        .bind(d.client_data_json.clone())
        .bind(d.signature.clone())
        .bind(d.public_jwk.to_string())
        .bind(i64::from(d.user_verified))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                return Ok(DecisionOutcome::AlreadyDecided);
            }
            other => other?,
        };
        // The approvals so far (this one included) decide the quorum and, when it is met, go
        // into the receipt.
        let approvals = match d.decision {
            Decision::Reject => Vec::new(),
            Decision::Approve => {
                let rows = sqlx::query(&format!(
                    "SELECT {DECISION_COLS} FROM decisions WHERE approval_id = $1 AND decision = 'approve' ORDER BY at, username"
                ))
                .bind(&d.approval_id)
                .fetch_all(&mut *tx)
                .await?;
                rows.iter()
                    .map(decision_from_row)
                    .collect::<StoreResult<Vec<_>>>()?
            }
        };
        let decided = match d.decision {
            Decision::Reject => Some(Status::Rejected),
            Decision::Approve => (i64::try_from(approvals.len()).unwrap_or(i64::MAX)
                >= approval.required_approvals)
                .then_some(Status::Approved),
        };
        if let Some(status) = decided {
            sqlx::query("UPDATE approvals SET status = $1, decided_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(&d.approval_id)
                .execute(&mut *tx)
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
        if let Some(status) = decided {
            events.push(NewEvent {
                kind: if status == Status::Approved {
                    "request_approved"
                } else {
                    "request_rejected"
                },
                actor: "system",
                approval_id: Some(&d.approval_id),
                data: json!({ "rule": approval.rule }),
            });
        }
        // The receipt is signed and stored with the approval itself: after any crash there is
        // either an approved request with its receipt, or neither.
        if decided == Some(Status::Approved) {
            let (kid, sealed) = active_key(&mut tx).await?;
            let (jti, token, expires_at) =
                signer
                    .sign(&approval, &approvals, &kid, &sealed, now)
                    .map_err(|e| StoreError::Corrupt(format!("signing a receipt: {e}")))?;
            sqlx::query(
                "INSERT INTO receipts (jti, approval_id, kid, audience, token, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&jti)
            .bind(&d.approval_id)
            .bind(&kid)
            .bind(&approval.audience)
            .bind(&token)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            events.push(NewEvent {
                kind: "receipt_issued",
                actor: "system",
                approval_id: Some(&d.approval_id),
                data: json!({ "jti": jti, "kid": kid, "audience": approval.audience, "expires_at": expires_at }),
            });
        }
        append_all(&mut tx, now, events).await?;
        self.announce(&mut tx, &d.approval_id).await?;
        tx.commit().await?;
        self.committed(&d.approval_id);
        Ok(DecisionOutcome::Recorded(Box::new(approval)))
    }

    pub async fn decisions(&self, approval_id: &str) -> StoreResult<Vec<DecisionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLS} FROM decisions WHERE approval_id = $1 ORDER BY at, username"
        ))
        .bind(approval_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(decision_from_row).collect()
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

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use sqlx::{FromRow, PgConnection, Row};

use super::super::super::rows::{
    aliased, credential_ids, qualified, CeremonyRow, CredentialRow, DecisionRow, Pending,
    RequestRow, CEREMONY_COLS, CREDENTIAL_COLS, DECISION_COLS, REQUEST_COLS,
};
use super::super::super::{
    DecisionOutcome, DecisionStore, Expect, FinishRead, IssuedReceipt, Judge, NewDecision,
    OptionsRead, Plan, SealedKey, StoreError, StoreResult,
};
use super::super::{is_unique, PgStore};
use super::{announce, append, part};
use crate::clock::UnixTime;
use crate::domain::decision::receipt_order;
use crate::domain::{
    ApprovalId, Ceremony, CeremonyId, CredentialId, Decision, DecisionRecord, NewEvent, Status,
    Taken, UserId, CEREMONY_SECS,
};

static DECISIONS_OF: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {DECISION_COLS} FROM decisions WHERE approval_id = $1 ORDER BY at, username")
});
static INSERT_DECISION: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO decisions ({DECISION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
});
/// Locking the request row makes concurrent last approvals, on any replica, take turns.
static LOCK_PENDING: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {REQUEST_COLS} FROM approvals WHERE id = $1 AND status = 'pending' AND expires_at > $2 FOR UPDATE")
});
/// A ceremony and its event in one statement. Ceremonies past their time go with it: garbage
/// once a late finish has had the time to be told so (`ceremony_expired` rather than
/// `ceremony_consumed`).
static START_CEREMONY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH old AS (DELETE FROM ceremonies WHERE expires_at < $13), \
         c AS (INSERT INTO ceremonies ({CEREMONY_COLS}) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)) \
         INSERT INTO audit_pending (at, kind, actor, approval_id, data) \
         SELECT $10, $14, $15, $16, $17 WHERE $14::TEXT IS NOT NULL"
    )
});
static CEREMONY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {CEREMONY_COLS} FROM ceremonies WHERE id = $1"));
/// The request, whether this person decided it, and their passkeys that may decide (as
/// `Credential::usable` says): what a decision's options need, in one round trip.
static OPTIONS_READ: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, \
            EXISTS (SELECT 1 FROM decisions d WHERE d.approval_id = a.id AND d.user_id = $2) \
              AS decided, \
            ARRAY(SELECT k.id FROM credentials k \
                  WHERE k.user_id = $2 AND k.revoked_at IS NULL AND k.flagged_at IS NULL \
                  ORDER BY k.created_at, k.id) AS passkeys \
         FROM approvals a WHERE a.id = $1",
        qualified(REQUEST_COLS, "a")
    )
});
/// The ceremony, the passkey and the request, each perhaps absent, in one row: what a
/// decision's finish needs before it verifies, in one round trip.
static FINISH_READ: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {}, {} FROM (SELECT 1) AS one \
         LEFT JOIN ceremonies c ON c.id = $1 \
         LEFT JOIN credentials k ON k.id = $2 \
         LEFT JOIN approvals a ON a.id = $3",
        aliased(CEREMONY_COLS, "c"),
        aliased(CREDENTIAL_COLS, "k"),
        aliased(REQUEST_COLS, "a")
    )
});
static TAKE_CEREMONY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM ceremonies WHERE id = $1 AND kind = $2 AND COALESCE(user_id, '') = $3 \
         AND COALESCE(approval_id, '') = $4 RETURNING {CEREMONY_COLS}"
    )
});

#[async_trait]
impl DecisionStore for PgStore {
    #[tracing::instrument(skip_all, fields(ceremony = %ceremony.id, kind = ceremony.state.kind().as_str()))]
    async fn start_ceremony(
        &self,
        ceremony: &Ceremony,
        event: Option<NewEvent>,
    ) -> StoreResult<()> {
        let row = CeremonyRow::of(ceremony);
        let pending = event.as_ref().map(|e| Pending::unlogged(e, row.created_at));
        sqlx::query(&START_CEREMONY)
            .bind(&row.id)
            .bind(&row.kind)
            .bind(&row.user_id)
            .bind(&row.approval_id)
            .bind(&row.decision)
            .bind(&row.secret)
            .bind(&row.allow)
            .bind(&row.invitation)
            .bind(&row.registration)
            .bind(row.created_at)
            .bind(row.expires_at)
            .bind(&row.stage)
            .bind(row.created_at - CEREMONY_SECS)
            .bind(pending.as_ref().map(|e| e.kind.as_str()))
            .bind(pending.as_ref().map(|e| e.actor.as_str()))
            .bind(pending.as_ref().and_then(|e| e.approval_id.as_deref()))
            .bind(pending.as_ref().map(|e| e.data.to_string()))
            .execute(&mut *self.conns.get().await?)
            .await?;
        if let (Some(event), Some(pending)) = (&event, &pending) {
            self.recorded(event, pending);
        }
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn options_read(&self, id: ApprovalId, user: UserId) -> StoreResult<Option<OptionsRead>> {
        let row = sqlx::query(&OPTIONS_READ)
            .bind(id.to_string())
            .bind(user.to_string())
            .fetch_optional(&mut *self.conns.get().await?)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let passkeys: Vec<String> = row.try_get("passkeys")?;
        Ok(Some(OptionsRead {
            request: RequestRow::from_row(&row)?.into_domain()?,
            decided: row.try_get("decided")?,
            passkeys: credential_ids(&passkeys)?,
        }))
    }

    #[tracing::instrument(skip(self))]
    async fn finish_read(
        &self,
        ceremony: CeremonyId,
        expect: Expect,
        credential: Option<&CredentialId>,
        id: ApprovalId,
    ) -> StoreResult<FinishRead> {
        let row = sqlx::query(&FINISH_READ)
            .bind(ceremony.to_string())
            .bind(credential.map(CredentialId::as_str))
            .bind(id.to_string())
            .fetch_one(&mut *self.conns.get().await?)
            .await?;
        Ok(FinishRead {
            ceremony: CeremonyRow::classify(part(&row, "c")?, expect)?,
            credential: part::<CredentialRow>(&row, "k")?
                .map(CredentialRow::into_domain)
                .transpose()?,
            request: part::<RequestRow>(&row, "a")?
                .map(RequestRow::into_domain)
                .transpose()?,
        })
    }

    #[tracing::instrument(skip(self))]
    async fn take_ceremony(&self, id: CeremonyId, expect: Expect) -> StoreResult<Taken> {
        let taken = sqlx::query_as::<_, CeremonyRow>(&TAKE_CEREMONY)
            .bind(id.to_string())
            .bind(expect.kind.as_str())
            .bind(expect.user.map(|u| u.to_string()).unwrap_or_default())
            .bind(expect.approval.map(|a| a.to_string()).unwrap_or_default())
            .fetch_optional(&mut *self.conns.get().await?)
            .await?;
        let row = match taken {
            Some(row) => Some(row),
            // Left in place: someone else's, or another kind. Tell it from gone.
            None => {
                sqlx::query_as::<_, CeremonyRow>(&CEREMONY)
                    .bind(id.to_string())
                    .fetch_optional(&mut *self.conns.get().await?)
                    .await?
            }
        };
        CeremonyRow::classify(row, expect)
    }

    #[tracing::instrument(skip(self))]
    async fn discard_ceremony(&self, id: CeremonyId) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM ceremonies WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *self.conns.get().await?)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    #[tracing::instrument(skip(self))]
    async fn decisions(&self, id: ApprovalId) -> StoreResult<Vec<DecisionRecord>> {
        sqlx::query_as::<_, DecisionRow>(&DECISIONS_OF)
            .bind(id.to_string())
            .fetch_all(&mut *self.conns.get().await?)
            .await?
            .into_iter()
            .map(DecisionRow::into_domain)
            .collect()
    }

    #[tracing::instrument(skip_all, fields(approval_id = %decision.record.approval_id, user = %decision.record.vote.username))]
    async fn record_decision(
        &self,
        decision: &NewDecision,
        judge: Arc<dyn Judge>,
        now: UnixTime,
    ) -> StoreResult<DecisionOutcome> {
        if let Some(plan) = judge.plan() {
            if let Some(outcome) = self.record_planned(decision, plan, now).await? {
                return Ok(outcome);
            }
        }
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let (outcome, keep) = decide(&mut tx, decision, judge.as_ref(), now).await?;
        if keep {
            if matches!(outcome, DecisionOutcome::Recorded(..)) {
                announce(&mut tx, decision.record.approval_id).await?;
            }
            self.commit(tx).await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }
}

impl PgStore {
    /// The decision as the service judged it, in one round trip (`countersign_record_decision`,
    /// migration 0008); `None` if what it was judged over no longer holds (nothing written).
    async fn record_planned(
        &self,
        d: &NewDecision,
        plan: &Plan,
        now: UnixTime,
    ) -> StoreResult<Option<DecisionOutcome>> {
        let rec = &d.record;
        let events: Vec<Pending> = plan
            .events
            .iter()
            .map(|e| Pending::unlogged(e, now))
            .collect();
        let on_clone = Pending::unlogged(&d.on_clone, now);
        let (receipt, kid) = match &plan.receipt {
            Some((r, kid)) => (Some(r), Some(kid.as_str())),
            None => (None, None),
        };
        let status = (plan.request.status != Status::Pending).then(|| plan.request.status.as_str());
        let answer: String = sqlx::query_scalar(
            "SELECT countersign_record_decision($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
        )
        .bind(rec.approval_id.to_string())
        .bind(now)
        .bind(d.ceremony.to_string())
        .bind(rec.vote.user_id.to_string())
        .bind(
            plan.prior
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .bind(rec.credential_id.as_str())
        .bind(i64::from(d.counter))
        .bind(rec.vote.decision.as_str())
        .bind(&rec.vote.username)
        .bind(&rec.vote.display_name)
        .bind(rec.nonce.as_slice())
        .bind(&rec.authenticator_data)
        .bind(&rec.client_data_json)
        .bind(&rec.signature)
        .bind(rec.public_jwk.to_string())
        .bind(i64::from(rec.user_verified))
        .bind(&plan.stage)
        .bind(status)
        .bind(kid)
        .bind(receipt.map(|r| r.jti.to_string()))
        .bind(receipt.map(|r| r.token.as_str()))
        .bind(receipt.map(|r| r.expires_at))
        .bind(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.data.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(&on_clone.kind)
        .bind(&on_clone.actor)
        .bind(on_clone.data.to_string())
        .fetch_one(&mut *self.conns.get().await?)
        .await?;
        let outcome = match answer.as_str() {
            "recorded" => {
                for (pending, event) in events.iter().zip(&plan.events) {
                    self.recorded(event, pending);
                }
                DecisionOutcome::Recorded(Box::new(plan.request.clone()), plan.decisions.clone())
            }
            "clone" => {
                self.recorded(&d.on_clone, &on_clone);
                DecisionOutcome::PossibleClone
            }
            "already_decided" => DecisionOutcome::AlreadyDecided,
            "consumed" => DecisionOutcome::CeremonyConsumed,
            "not_pending" => DecisionOutcome::NotPending,
            "stale" => return Ok(None),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "countersign_record_decision answered {other:?}"
                )))
            }
        };
        Ok(Some(outcome))
    }
}

/// The decision transaction: lock the pending request, consume the ceremony, refuse a second
/// decision by the same person, advance the counter, insert the decision, and let the judge
/// decide the request. Returns whether to commit: a refusal once the ceremony is consumed
/// commits that (the ceremony cannot be tried again); one before it changes nothing.
async fn decide(
    tx: &mut PgConnection,
    d: &NewDecision,
    judge: &dyn Judge,
    now: UnixTime,
) -> StoreResult<(DecisionOutcome, bool)> {
    let id = d.record.approval_id.to_string();
    let user = d.record.vote.user_id.to_string();
    let row = sqlx::query_as::<_, RequestRow>(&LOCK_PENDING)
        .bind(&id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok((DecisionOutcome::NotPending, false));
    };
    let mut request = row.into_domain()?;
    let consumed =
        sqlx::query("DELETE FROM ceremonies WHERE id = $1 AND approval_id = $2 AND user_id = $3")
            .bind(d.ceremony.to_string())
            .bind(&id)
            .bind(&user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if consumed != 1 {
        return Ok((DecisionOutcome::CeremonyConsumed, false));
    }
    let mut decisions = if judge.may_have_decisions(&request) {
        sqlx::query_as::<_, DecisionRow>(&DECISIONS_OF)
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(DecisionRow::into_domain)
            .collect::<StoreResult<Vec<_>>>()?
    } else {
        Vec::new()
    };
    if decisions
        .iter()
        .any(|x| x.vote.user_id == d.record.vote.user_id)
    {
        return Ok((DecisionOutcome::AlreadyDecided, true));
    }
    let placed = d.record.placed(&request.required, &decisions, &d.stages);
    let rec = &placed;
    if !super::people::advance_counter_in(tx, &rec.credential_id, d.counter, now).await? {
        super::people::flag_clone_in(tx, &rec.credential_id, now).await?;
        append(tx, std::slice::from_ref(&d.on_clone), now).await?;
        return Ok((DecisionOutcome::PossibleClone, true));
    }
    let inserted = sqlx::query(&INSERT_DECISION)
        .bind(&id)
        .bind(&user)
        .bind(rec.vote.decision.as_str())
        .bind(&rec.vote.username)
        .bind(&rec.vote.display_name)
        .bind(rec.credential_id.as_str())
        .bind(rec.vote.at)
        .bind(rec.nonce.as_slice())
        .bind(&rec.authenticator_data)
        .bind(&rec.client_data_json)
        .bind(&rec.signature)
        .bind(rec.public_jwk.to_string())
        .bind(i64::from(rec.user_verified))
        .bind(&rec.vote.stage)
        .execute(&mut *tx)
        .await;
    match inserted {
        // Only when the judge said the request could hold no decisions, and it did.
        Err(e) if is_unique(&e) => return Ok((DecisionOutcome::AlreadyDecided, false)),
        other => other?,
    };
    decisions.push(rec.clone());
    receipt_order(&mut decisions);
    let mut receipt: Option<(IssuedReceipt, String)> = None;
    if let Some(status) = judge.verdict(&request, &decisions) {
        if !request.status.can_become(status) {
            return Err(StoreError::Corrupt(format!(
                "a verdict of {status:?} on a pending request"
            )));
        }
        if status == Status::Approved {
            // The receipt is stored with the approval itself: after any crash there is either
            // an approved request with its receipt, or neither.
            let key = active_key(tx)
                .await?
                .ok_or_else(|| StoreError::Corrupt("no active signing key".into()))?;
            let approvals: Vec<DecisionRecord> = decisions
                .iter()
                .filter(|x| x.vote.decision == Decision::Approve)
                .cloned()
                .collect();
            let issued = judge
                .issue(&request, &approvals, &key, now)
                .map_err(|e| StoreError::Corrupt(format!("signing a receipt: {e}")))?;
            sqlx::query("INSERT INTO receipts (jti, approval_id, kid, audience, token, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(issued.jti.to_string())
                .bind(&id)
                .bind(&key.kid)
                .bind(&request.audience)
                .bind(&issued.token)
                .bind(now)
                .bind(issued.expires_at)
                .execute(&mut *tx)
                .await?;
            receipt = Some((issued, key.kid));
        }
        sqlx::query("UPDATE approvals SET status = $1, decided_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        request.status = status;
        request.decided_at = Some(now);
    }
    let events = judge.events(
        &request,
        rec,
        receipt.as_ref().map(|(r, kid)| (r, kid.as_str())),
    );
    append(tx, &events, now).await?;
    Ok((
        DecisionOutcome::Recorded(Box::new(request), decisions),
        true,
    ))
}

/// The key new receipts are signed with: the newest that is not retired.
pub(super) async fn active_key(conn: &mut PgConnection) -> StoreResult<Option<SealedKey>> {
    let row = sqlx::query("SELECT kid, sealed FROM signing_keys WHERE retired_at IS NULL ORDER BY generation DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some(SealedKey {
            kid: r.try_get("kid")?,
            sealed: r.try_get("sealed")?,
        }),
        None => None,
    })
}

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use rusqlite::{params, Connection};

use super::super::super::rows::{
    credential_ids, CeremonyRow, CredentialRow, DecisionRow, RequestRow, CEREMONY_COLS,
    DECISION_COLS, REQUEST_COLS,
};
use super::super::super::{
    DecisionOutcome, DecisionStore, Expect, FinishRead, IssuedReceipt, Judge, NewDecision,
    OptionsRead, SealedKey, StoreError, StoreResult,
};
use super::super::{is_unique, Outcome, SqliteStore};
use super::{all, append, exec, first};
use crate::clock::UnixTime;
use crate::domain::decision::receipt_order;
use crate::domain::{
    ApprovalId, Ceremony, CeremonyId, CredentialId, Decision, DecisionRecord, NewEvent, Status,
    Taken, UserId, CEREMONY_SECS,
};

static DECISIONS_OF: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {DECISION_COLS} FROM decisions WHERE approval_id = ?1 ORDER BY at, username")
});
static INSERT_DECISION: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO decisions ({DECISION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")
});
/// On the writer, which excludes every other writer, reading the row is as good as locking it.
static READ_PENDING: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {REQUEST_COLS} FROM approvals WHERE id = ?1 AND status = 'pending' AND expires_at > ?2")
});
static INSERT_CEREMONY: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO ceremonies ({CEREMONY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")
});
static CEREMONY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {CEREMONY_COLS} FROM ceremonies WHERE id = ?1"));
/// A person's passkeys that may decide, as `Credential::usable` says.
const USABLE_PASSKEYS: &str = "SELECT id FROM credentials \
     WHERE user_id = ?1 AND revoked_at IS NULL AND flagged_at IS NULL ORDER BY created_at, id";
static TAKE_CEREMONY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM ceremonies WHERE id = ?1 AND kind = ?2 AND COALESCE(user_id, '') = ?3 \
         AND COALESCE(approval_id, '') = ?4 RETURNING {CEREMONY_COLS}"
    )
});

#[async_trait]
impl DecisionStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(ceremony = %ceremony.id, kind = ceremony.state.kind().as_str()))]
    async fn start_ceremony(
        &self,
        ceremony: &Ceremony,
        event: Option<NewEvent>,
    ) -> StoreResult<()> {
        let row = CeremonyRow::of(ceremony);
        self.engine
            .write(move |conn| {
                // Ceremonies past their time are garbage once a late finish has had the time
                // to be told so (`ceremony_expired` rather than `ceremony_consumed`).
                exec(
                    conn,
                    "DELETE FROM ceremonies WHERE expires_at < ?1",
                    params![row.created_at - CEREMONY_SECS],
                )?;
                exec(
                    conn,
                    &INSERT_CEREMONY,
                    params![
                        row.id,
                        row.kind,
                        row.user_id,
                        row.approval_id,
                        row.decision,
                        row.secret,
                        row.allow,
                        row.invitation,
                        row.registration,
                        row.created_at,
                        row.expires_at,
                        row.stage
                    ],
                )?;
                append(conn, event.as_slice(), row.created_at)?;
                Ok(Outcome::Keep(()))
            })
            .await
    }

    #[tracing::instrument(skip(self))]
    async fn options_read(&self, id: ApprovalId, user: UserId) -> StoreResult<Option<OptionsRead>> {
        let (id, user) = (id.to_string(), user.to_string());
        let read = self.engine.read(|conn| {
            let Some(request) = first::<RequestRow>(conn, &super::requests::BY_ID, params![id])?
            else {
                return Ok(None);
            };
            let decided = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM decisions WHERE approval_id = ?1 AND user_id = ?2)",
                )?
                .query_row(params![id, user], |r| r.get(0))?;
            let passkeys = conn
                .prepare_cached(USABLE_PASSKEYS)?
                .query_map(params![user], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((request, decided, passkeys)))
        })?;
        read.map(|(request, decided, passkeys)| {
            Ok(OptionsRead {
                request: request.into_domain()?,
                decided,
                passkeys: credential_ids(&passkeys)?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip(self))]
    async fn finish_read(
        &self,
        ceremony: CeremonyId,
        expect: Expect,
        credential: Option<&CredentialId>,
        id: ApprovalId,
    ) -> StoreResult<FinishRead> {
        let (c, k, r) = self.engine.read(|conn| {
            let c = first::<CeremonyRow>(conn, &CEREMONY, params![ceremony.to_string()])?;
            let k = match credential {
                Some(k) => {
                    first::<CredentialRow>(conn, &super::people::CREDENTIAL, params![k.as_str()])?
                }
                None => None,
            };
            let r = first::<RequestRow>(conn, &super::requests::BY_ID, params![id.to_string()])?;
            Ok((c, k, r))
        })?;
        Ok(FinishRead {
            ceremony: CeremonyRow::classify(c, expect)?,
            credential: k.map(CredentialRow::into_domain).transpose()?,
            request: r.map(RequestRow::into_domain).transpose()?,
        })
    }

    #[tracing::instrument(skip(self))]
    async fn take_ceremony(&self, id: CeremonyId, expect: Expect) -> StoreResult<Taken> {
        let row = self
            .engine
            .write(move |conn| {
                let taken = first::<CeremonyRow>(
                    conn,
                    &TAKE_CEREMONY,
                    params![
                        id.to_string(),
                        expect.kind.as_str(),
                        expect.user.map(|u| u.to_string()).unwrap_or_default(),
                        expect.approval.map(|a| a.to_string()).unwrap_or_default(),
                    ],
                )?;
                Ok(Outcome::Keep(match taken {
                    Some(row) => Some(row),
                    // Left in place: someone else's, or another kind. Tell it from gone.
                    None => first::<CeremonyRow>(conn, &CEREMONY, params![id.to_string()])?,
                }))
            })
            .await?;
        CeremonyRow::classify(row, expect)
    }

    #[tracing::instrument(skip(self))]
    async fn discard_ceremony(&self, id: CeremonyId) -> StoreResult<bool> {
        self.engine
            .write(move |conn| {
                let n = exec(
                    conn,
                    "DELETE FROM ceremonies WHERE id = ?1",
                    params![id.to_string()],
                )?;
                Ok(Outcome::Keep(n == 1))
            })
            .await
    }

    #[tracing::instrument(skip(self))]
    async fn decisions(&self, id: ApprovalId) -> StoreResult<Vec<DecisionRecord>> {
        self.engine
            .read(|conn| all::<DecisionRow>(conn, &DECISIONS_OF, params![id.to_string()]))?
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
        let d = decision.clone();
        let id = d.record.approval_id;
        let outcome = self
            .engine
            .write(move |conn| decide(conn, &d, judge.as_ref(), now))
            .await?;
        if matches!(outcome, DecisionOutcome::Recorded(..)) {
            self.changed(id);
        }
        Ok(outcome)
    }
}

/// The decision transaction: take the pending request, consume the ceremony, refuse a second
/// decision by the same person, advance the counter, insert the decision, and let the judge
/// decide the request. A refusal once the ceremony is consumed keeps that consumption (the
/// ceremony cannot be tried again); one before it changes nothing.
fn decide(
    conn: &Connection,
    d: &NewDecision,
    judge: &dyn Judge,
    now: UnixTime,
) -> StoreResult<Outcome<DecisionOutcome>> {
    let id = d.record.approval_id.to_string();
    let user = d.record.vote.user_id.to_string();
    let Some(row) = first::<RequestRow>(conn, &READ_PENDING, params![id, now])? else {
        return Ok(Outcome::Drop(DecisionOutcome::NotPending));
    };
    let mut request = row.into_domain()?;
    let consumed = exec(
        conn,
        "DELETE FROM ceremonies WHERE id = ?1 AND approval_id = ?2 AND user_id = ?3",
        params![d.ceremony.to_string(), id, user],
    )?;
    if consumed != 1 {
        return Ok(Outcome::Drop(DecisionOutcome::CeremonyConsumed));
    }
    let mut decisions = if judge.may_have_decisions(&request) {
        all::<DecisionRow>(conn, &DECISIONS_OF, params![id])?
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
        return Ok(Outcome::Keep(DecisionOutcome::AlreadyDecided));
    }
    let placed = d.record.placed(&request.required, &decisions, &d.stages);
    let rec = &placed;
    if !super::people::advance_counter_in(conn, &rec.credential_id, d.counter, now)? {
        super::people::flag_clone_in(conn, &rec.credential_id, now)?;
        append(conn, std::slice::from_ref(&d.on_clone), now)?;
        return Ok(Outcome::Keep(DecisionOutcome::PossibleClone));
    }
    let inserted = conn.prepare_cached(&INSERT_DECISION)?.execute(params![
        id,
        user,
        rec.vote.decision.as_str(),
        rec.vote.username,
        rec.vote.display_name,
        rec.credential_id.as_str(),
        rec.vote.at,
        rec.nonce.as_slice(),
        rec.authenticator_data,
        rec.client_data_json,
        rec.signature,
        rec.public_jwk.to_string(),
        i64::from(rec.user_verified),
        rec.vote.stage,
    ]);
    match inserted {
        // Only when the judge said the request could hold no decisions, and it did.
        Err(e) if is_unique(&e) => return Ok(Outcome::Drop(DecisionOutcome::AlreadyDecided)),
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
            let key = active_key(conn)?;
            let approvals: Vec<DecisionRecord> = decisions
                .iter()
                .filter(|x| x.vote.decision == Decision::Approve)
                .cloned()
                .collect();
            let issued = judge
                .issue(&request, &approvals, &key, now)
                .map_err(|e| StoreError::Corrupt(format!("signing a receipt: {e}")))?;
            exec(conn,
                "INSERT INTO receipts (jti, approval_id, kid, audience, token, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![issued.jti.to_string(), id, key.kid, request.audience, issued.token, now, issued.expires_at])?;
            receipt = Some((issued, key.kid));
        }
        exec(
            conn,
            "UPDATE approvals SET status = ?1, decided_at = ?2 WHERE id = ?3",
            params![status.as_str(), now, id],
        )?;
        request.status = status;
        request.decided_at = Some(now);
    }
    let events = judge.events(
        &request,
        rec,
        receipt.as_ref().map(|(r, kid)| (r, kid.as_str())),
    );
    append(conn, &events, now)?;
    Ok(Outcome::Keep(DecisionOutcome::Recorded(
        Box::new(request),
        decisions,
    )))
}

pub(super) fn active_key(conn: &Connection) -> StoreResult<SealedKey> {
    conn.prepare_cached(
        "SELECT kid, sealed FROM signing_keys WHERE retired_at IS NULL ORDER BY generation DESC LIMIT 1",
    )?
    .query_row([], |r| Ok(SealedKey { kid: r.get(0)?, sealed: r.get(1)? }))
    .map_err(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::Corrupt("no active signing key".into()),
        other => other.into(),
    })
}

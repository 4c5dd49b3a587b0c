use serde_json::json;

use super::audit::{append, NewEvent};
use super::sql::{args, Columns};
use super::{get, hash32, is_unique_violation, json_col, Store, StoreError, StoreResult};
use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> StoreResult<Status> {
        Ok(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "rejected" => Status::Rejected,
            "expired" => Status::Expired,
            "cancelled" => Status::Cancelled,
            other => return Err(StoreError::Corrupt(format!("unknown status {other:?}"))),
        })
    }
}

/// An approval request as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub id: String,
    pub client_id: String,
    pub action: String,
    /// RFC 8785 form of the transaction: what was hashed and what the page shows.
    pub transaction_jcs: String,
    pub tx_hash: String,
    pub initiator: String,
    pub audience: String,
    pub risk: Option<serde_json::Value>,
    pub policy_rev: String,
    pub required_approvals: i64,
    pub required_groups: Vec<String>,
    pub rule: String,
    pub status: Status,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub decided_at: Option<UnixTime>,
    /// Whether the initiator may decide, as the policy said when the request was made.
    pub self_approval: bool,
    /// Receipt lifetime in seconds, as the policy said when the request was made.
    pub receipt_ttl: i64,
}

pub(super) const APPROVAL_COLS: &str = "id, client_id, action, transaction_jcs, tx_hash, initiator, audience, risk, \
     policy_rev, required_approvals, required_groups, rule, status, created_at, expires_at, decided_at, self_approval, receipt_ttl";

/// The columns qualified by a table alias, for joins.
pub(super) fn prefixed_cols(alias: &str) -> String {
    APPROVAL_COLS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn approval_from_row(row: &impl Columns) -> StoreResult<ApprovalRecord> {
    let risk: Option<String> = get(row, "risk")?;
    let status: String = get(row, "status")?;
    Ok(ApprovalRecord {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        action: get(row, "action")?,
        transaction_jcs: get(row, "transaction_jcs")?,
        tx_hash: get(row, "tx_hash")?,
        initiator: get(row, "initiator")?,
        audience: get(row, "audience")?,
        risk: risk
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("risk: {e}")))?,
        policy_rev: get(row, "policy_rev")?,
        required_approvals: get(row, "required_approvals")?,
        required_groups: json_col(row, "required_groups")?,
        rule: get(row, "rule")?,
        status: Status::parse(&status)?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        decided_at: get(row, "decided_at")?,
        self_approval: get::<i64>(row, "self_approval")? != 0,
        receipt_ttl: get(row, "receipt_ttl")?,
    })
}

/// An `Idempotency-Key` with the hash of the request it came with and the response to replay.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: [u8; 32],
    pub response: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// The same key and request came before: here is the first response.
    Replayed(String),
    /// The same key came before with another request.
    KeyConflict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    Cancelled(ApprovalRecord),
    NotPending(ApprovalRecord),
    NotFound,
}

impl Store {
    #[tracing::instrument(skip_all, fields(approval_id = %rec.id, action = %rec.action))]
    pub async fn create_approval(
        &self,
        rec: &ApprovalRecord,
        idem: Option<&Idempotency>,
        actor: &str,
    ) -> StoreResult<Created> {
        loop {
            match self.try_create_approval(rec, idem, actor).await {
                // Another request with the same key committed between our look-up and insert:
                // go round once more and find it.
                Err(StoreError::Conflict("idempotency key")) => continue,
                other => return other,
            }
        }
    }

    async fn try_create_approval(
        &self,
        rec: &ApprovalRecord,
        idem: Option<&Idempotency>,
        actor: &str,
    ) -> StoreResult<Created> {
        let mut tx = self.begin_write().await?;
        if let Some(idem) = idem {
            let prior = sqlx::query("SELECT request_hash, response FROM idempotency_keys WHERE client_id = $1 AND key = $2")
                .bind(&rec.client_id)
                .bind(&idem.key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(prior) = prior {
                let hash = hash32(get(&prior, "request_hash")?, "request_hash")?;
                return Ok(if hash == idem.request_hash {
                    Created::Replayed(get(&prior, "response")?)
                } else {
                    Created::KeyConflict
                });
            }
        }
        sqlx::query(&format!(
            "INSERT INTO approvals ({APPROVAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(&rec.id)
        .bind(&rec.client_id)
        .bind(&rec.action)
        .bind(&rec.transaction_jcs)
        .bind(&rec.tx_hash)
        .bind(&rec.initiator)
        .bind(&rec.audience)
        .bind(rec.risk.as_ref().map(|r| r.to_string()))
        .bind(&rec.policy_rev)
        .bind(rec.required_approvals)
        .bind(serde_json::Value::from(rec.required_groups.clone()).to_string())
        .bind(&rec.rule)
        .bind(rec.status.as_str())
        .bind(rec.created_at)
        .bind(rec.expires_at)
        .bind(rec.decided_at)
        .bind(i64::from(rec.self_approval))
        .bind(rec.receipt_ttl)
        .execute(&mut *tx)
        .await?;
        if let Some(idem) = idem {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (client_id, key, request_hash, approval_id, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&rec.client_id)
            .bind(&idem.key)
            .bind(idem.request_hash.to_vec())
            .bind(&rec.id)
            .bind(&idem.response)
            .bind(rec.created_at)
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict("idempotency key"))
                }
                other => other?,
            };
        }
        let ev = NewEvent {
            kind: "request_created",
            actor,
            approval_id: Some(&rec.id),
            data: json!({
                "action": rec.action,
                "tx_hash": rec.tx_hash,
                "initiator": rec.initiator,
                "audience": rec.audience,
                "risk": rec.risk,
                "policy_rev": rec.policy_rev,
                "required": { "approvals": rec.required_approvals, "groups": rec.required_groups, "rule": rec.rule },
            }),
        };
        append(&mut tx, rec.created_at, ev).await?;
        tx.commit().await?;
        Ok(Created::New)
    }

    #[tracing::instrument(skip(self))]
    pub async fn approval(&self, id: &str) -> StoreResult<Option<ApprovalRecord>> {
        let sql = format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1");
        let row = self.read_optional(&sql, args![id]).await?;
        row.as_ref().map(approval_from_row).transpose()
    }

    /// Marks a pending request expired once its time is up; returns it as it now stands.
    /// Reads do this lazily, so no background sweeper is needed for correctness.
    #[tracing::instrument(skip(self))]
    pub async fn expire_if_due(
        &self,
        id: &str,
        now: UnixTime,
    ) -> StoreResult<Option<ApprovalRecord>> {
        match self.approval(id).await? {
            Some(rec) => self.settle(rec, now).await.map(Some),
            None => Ok(None),
        }
    }

    /// A record just read, as it stands now: only a pending request whose time is up takes the
    /// write lock (to be marked expired); every other record is returned as it is.
    pub async fn settle(&self, rec: ApprovalRecord, now: UnixTime) -> StoreResult<ApprovalRecord> {
        if rec.status != Status::Pending || rec.expires_at > now {
            return Ok(rec);
        }
        let id = rec.id.as_str();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE approvals SET status = 'expired', decided_at = expires_at \
             WHERE id = $1 AND status = 'pending' AND expires_at <= $2 RETURNING {APPROVAL_COLS}"
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            // Someone else decided or expired it meanwhile.
            tx.rollback().await?;
            return Ok(self.approval(id).await?.unwrap_or(rec));
        };
        let expired = approval_from_row(&row)?;
        let ev = NewEvent {
            kind: "request_expired",
            actor: "system",
            approval_id: Some(id),
            data: json!({}),
        };
        self.announce(&mut tx, id).await?;
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        self.committed(id);
        Ok(expired)
    }

    /// The creating client withdraws a pending, unexpired request.
    #[tracing::instrument(skip(self))]
    pub async fn cancel_approval(
        &self,
        id: &str,
        client_id: &str,
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<CancelOutcome> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE approvals SET status = 'cancelled', decided_at = $3 \
             WHERE id = $1 AND client_id = $2 AND status = 'pending' AND expires_at > $3 RETURNING {APPROVAL_COLS}"
        ))
        .bind(id)
        .bind(client_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(match self.expire_if_due(id, now).await? {
                Some(rec) if rec.client_id == client_id => CancelOutcome::NotPending(rec),
                _ => CancelOutcome::NotFound,
            });
        };
        let rec = approval_from_row(&row)?;
        let ev = NewEvent {
            kind: "request_cancelled",
            actor,
            approval_id: Some(id),
            data: json!({}),
        };
        self.announce(&mut tx, id).await?;
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        self.committed(id);
        Ok(CancelOutcome::Cancelled(rec))
    }
}

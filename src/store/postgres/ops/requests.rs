use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::Row;

use super::super::super::rows::{
    group_votes, qualified, RequestCols, RequestRow, VoteRow, REQUEST_COLS, VOTE_COLS,
};
use super::super::super::{
    CancelOutcome, Created, Idempotency, InboxOf, Listed, Page, RequestStore, Snapshot, StoreError,
    StoreResult,
};
use super::super::{is_unique, PgStore};
use super::{announce, append};
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, ClientId, NewEvent, Request, UserId};

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO approvals ({REQUEST_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)")
});
static BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {REQUEST_COLS} FROM approvals WHERE id = $1"));
/// A request with its votes and its receipt: one row per vote (or one with NULL votes).
static SNAPSHOT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS}, r.token AS receipt FROM approvals a \
         LEFT JOIN decisions d ON d.approval_id = a.id LEFT JOIN receipts r ON r.approval_id = a.id \
         WHERE a.id = $1 ORDER BY d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});
static EXPIRE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE approvals SET status = 'expired', decided_at = expires_at \
             WHERE id = $1 AND status = 'pending' AND expires_at <= $2 RETURNING {REQUEST_COLS}"
    )
});
static CANCEL: LazyLock<String> = LazyLock::new(|| {
    format!("UPDATE approvals SET status = 'cancelled', decided_at = $3 \
             WHERE id = $1 AND client_id = $2 AND status = 'pending' AND expires_at > $3 RETURNING {REQUEST_COLS}")
});
/// The page of the inbox is cut after every eligibility condition has been applied. Ids
/// compare byte-wise (`COLLATE "C"`), as the cursor does.
static INBOX: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS} FROM ( \
            SELECT * FROM approvals x \
            WHERE x.status = 'pending' AND x.expires_at > $1 \
              AND ($2::BIGINT IS NULL OR (x.created_at, x.id COLLATE \"C\") < ($2, $3::TEXT COLLATE \"C\")) \
              AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(x.required_groups::jsonb) g \
                          WHERE g = ANY($4)) \
              AND (x.self_approval = 1 OR x.initiator_key <> $5) \
              AND NOT EXISTS (SELECT 1 FROM decisions m WHERE m.approval_id = x.id AND m.user_id = $6) \
            ORDER BY x.created_at DESC, x.id COLLATE \"C\" DESC LIMIT $7) a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         ORDER BY a.created_at DESC, a.id COLLATE \"C\" DESC, d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});
static HISTORY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS} FROM ( \
            SELECT x.*, m.at AS my_at FROM decisions m JOIN approvals x ON x.id = m.approval_id \
            WHERE m.user_id = $1 \
              AND ($2::BIGINT IS NULL OR (m.at, m.approval_id COLLATE \"C\") < ($2, $3::TEXT COLLATE \"C\")) \
            ORDER BY m.at DESC, m.approval_id COLLATE \"C\" DESC LIMIT $4) a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         ORDER BY a.my_at DESC, a.id COLLATE \"C\" DESC, d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});

/// A list query's rows, each a request and one of its votes.
fn listed(rows: Vec<sqlx::postgres::PgRow>) -> StoreResult<Vec<Listed>> {
    use sqlx::FromRow;
    let pairs = rows
        .iter()
        .map(|r| Ok((RequestRow::from_row(r)?, VoteRow::from_row(r)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    group_votes(pairs)
}

#[async_trait]
impl RequestStore for PgStore {
    #[tracing::instrument(skip_all, fields(approval_id = %request.id))]
    async fn create_request(
        &self,
        request: &Request,
        idempotency: Option<&Idempotency>,
        event: NewEvent,
    ) -> StoreResult<Created> {
        loop {
            match self.try_create(request, idempotency, &event).await {
                // Another request with the same key committed between our look-up and insert:
                // go round once more and find it.
                Err(StoreError::Conflict("idempotency key")) => continue,
                other => return other,
            }
        }
    }

    #[tracing::instrument(skip(self))]
    async fn request(&self, id: ApprovalId) -> StoreResult<Option<Request>> {
        sqlx::query_as::<_, RequestRow>(&BY_ID)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(RequestRow::into_domain)
            .transpose()
    }

    #[tracing::instrument(skip(self))]
    async fn snapshot(&self, id: ApprovalId) -> StoreResult<Option<Snapshot>> {
        let rows = sqlx::query(&SNAPSHOT)
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        let receipt: Option<String> = match rows.first() {
            Some(r) => r.try_get("receipt")?,
            None => None,
        };
        Ok(listed(rows)?.pop().map(|l| Snapshot {
            request: l.request,
            votes: l.votes,
            receipt,
        }))
    }

    #[tracing::instrument(skip(self, event))]
    async fn expire_request(
        &self,
        id: ApprovalId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<Option<Request>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as::<_, RequestRow>(&EXPIRE)
            .bind(id.to_string())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            // Not due, decided, or someone else expired it meanwhile: as it stands.
            tx.rollback().await?;
            return self.request(id).await;
        };
        announce(&mut tx, id).await?;
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        tx.commit().await?;
        row.into_domain().map(Some)
    }

    #[tracing::instrument(skip(self, event))]
    async fn cancel_request(
        &self,
        id: ApprovalId,
        client: ClientId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as::<_, RequestRow>(&CANCEL)
            .bind(id.to_string())
            .bind(client.to_string())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(match self.request(id).await? {
                Some(r) if r.client_id == client => CancelOutcome::NotPending(r),
                _ => CancelOutcome::NotFound,
            });
        };
        announce(&mut tx, id).await?;
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        tx.commit().await?;
        Ok(CancelOutcome::Cancelled(row.into_domain()?))
    }

    #[tracing::instrument(skip(self, of), fields(user = %of.user))]
    async fn inbox(&self, of: &InboxOf<'_>, now: UnixTime, page: Page) -> StoreResult<Vec<Listed>> {
        let (at, id) = page.bounds();
        let rows = sqlx::query(&INBOX)
            .bind(now)
            .bind(at)
            .bind(id)
            .bind(of.groups)
            .bind(of.identity)
            .bind(of.user.to_string())
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await?;
        listed(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn history(&self, user: UserId, page: Page) -> StoreResult<Vec<Listed>> {
        let (at, id) = page.bounds();
        let rows = sqlx::query(&HISTORY)
            .bind(user.to_string())
            .bind(at)
            .bind(id)
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await?;
        listed(rows)
    }
}

impl PgStore {
    async fn try_create(
        &self,
        r: &Request,
        idem: Option<&Idempotency>,
        event: &NewEvent,
    ) -> StoreResult<Created> {
        let cols = RequestCols::of(r)?;
        let client = r.client_id.to_string();
        let mut tx = self.pool.begin().await?;
        if let Some(idem) = idem {
            let prior = sqlx::query("SELECT request_hash, response FROM idempotency_keys WHERE client_id = $1 AND key = $2")
                .bind(&client)
                .bind(&idem.key)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(prior) = prior {
                let hash: Vec<u8> = prior.try_get("request_hash")?;
                return Ok(if hash == idem.request_hash {
                    Created::Replayed(prior.try_get("response")?)
                } else {
                    Created::KeyConflict
                });
            }
        }
        sqlx::query(&INSERT)
            .bind(r.id.to_string())
            .bind(&client)
            .bind(&r.action)
            .bind(&r.transaction_jcs)
            .bind(r.tx_hash.to_string())
            .bind(r.initiator.text())
            .bind(r.initiator.key())
            .bind(&r.audience)
            .bind(&cols.risk)
            .bind(&r.policy_rev)
            .bind(i64::from(r.required.approvals))
            .bind(&cols.groups)
            .bind(&cols.rules)
            .bind(r.status.as_str())
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.decided_at)
            .bind(i64::from(r.self_approval))
            .bind(r.receipt_ttl)
            .execute(&mut *tx)
            .await?;
        if let Some(idem) = idem {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (client_id, key, request_hash, approval_id, response, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&client)
            .bind(&idem.key)
            .bind(idem.request_hash.as_slice())
            .bind(r.id.to_string())
            .bind(&idem.response)
            .bind(r.created_at)
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique(&e) => return Err(StoreError::Conflict("idempotency key")),
                other => other?,
            };
        }
        append(&mut tx, std::slice::from_ref(event), r.created_at).await?;
        tx.commit().await?;
        Ok(Created::New)
    }
}

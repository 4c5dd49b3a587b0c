use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::Row;

use super::super::super::rows::Pending;
use super::super::super::rows::{
    bytes32, group_votes, id, qualified, RequestCols, RequestRow, VoteRow, REQUEST_COLS, VOTE_COLS,
};
use super::super::super::{
    ClientChange, ClientStore, Created, Idempotency, InboxOf, Listed, Page, RequestFilter,
    RequestStore, Snapshot, StoreError, StoreResult,
};
use super::super::{is_unique, PgStore, CHANNEL};
use crate::clock::UnixTime;
use crate::domain::delivery::{message_id, REQUEST_CREATED};
use crate::domain::{ApprovalId, ClientId, NewEvent, Request, UserId};

/// A new request in one statement: unless its idempotency key was used, the request, the key,
/// the event and, when `announce`, the announcement for its approvers. Without a key (`keyed`
/// false) there is nothing to look up or keep, and the statement leaves both out rather than
/// skipping them at run time: pgbench, the statement alone at 8 clients, 10–14% less of
/// PostgreSQL's CPU a create. Likewise a server that announces nothing pays nothing for it.
/// The request's 22 parameters come first, then the key's three when `keyed`, then the
/// event's three and the announcement's two.
fn create(keyed: bool, announce: bool) -> String {
    let next = if keyed { 26 } else { 23 };
    let (kind, actor, data, message, channel_event) =
        (next, next + 1, next + 2, next + 3, next + 4);
    let announcement = if announce {
        format!(
            ", o AS ( \
                INSERT INTO outbox (id, channel, event, approval_id, at, next_at) \
                SELECT ${message}, 'announce', ${channel_event}, a.id, $15, $15 FROM a)"
        )
    } else {
        String::new()
    };
    let (prior, unless_used, kept, answer) = if keyed {
        (
            "prior AS ( \
                SELECT request_hash, response FROM idempotency_keys \
                WHERE client_id = $2 AND key = $23),",
            "NOT EXISTS (SELECT 1 FROM prior) AND",
            ", i AS ( \
                INSERT INTO idempotency_keys (client_id, key, request_hash, approval_id, response, created_at) \
                SELECT $2, $23, $24, a.id, $25, $15 FROM a)",
            "(SELECT request_hash FROM prior) AS request_hash, \
             (SELECT response FROM prior) AS response",
        )
    } else {
        (
            "",
            "",
            "",
            "NULL::BYTEA AS request_hash, NULL::TEXT AS response",
        )
    };
    format!(
        "WITH {prior} \
         a AS ( \
            INSERT INTO approvals ({REQUEST_COLS}) \
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22 \
            WHERE {unless_used} EXISTS (SELECT 1 FROM clients c WHERE c.id = $2 AND c.revoked_at IS NULL) \
            RETURNING id){kept}, \
         e AS ( \
            INSERT INTO audit_pending (at, kind, actor, approval_id, data) \
            SELECT $15, ${kind}, ${actor}, a.id, ${data} FROM a){announcement} \
         SELECT (SELECT COUNT(*) FROM a) AS created, {answer}"
    )
}
static CREATE: LazyLock<String> = LazyLock::new(|| create(false, false));
static CREATE_ANNOUNCED: LazyLock<String> = LazyLock::new(|| create(false, true));
static CREATE_KEYED: LazyLock<String> = LazyLock::new(|| create(true, false));
static CREATE_KEYED_ANNOUNCED: LazyLock<String> = LazyLock::new(|| create(true, true));
static BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {REQUEST_COLS} FROM approvals WHERE id = $1"));
/// A request with its votes and its receipt: one row per vote (or one with NULL votes).
static SNAPSHOT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS}, r.token AS receipt, \
            (SELECT c.revoked_at IS NULL FROM clients c WHERE c.id = a.client_id) AS client_active \
         FROM approvals a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         LEFT JOIN receipts r ON r.approval_id = a.id AND r.revoked_at IS NULL \
         WHERE a.id = $1 ORDER BY d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});
/// A request's conditional change of status, its event and its notice to every replica (sent
/// when the statement commits), in one statement: `update` is an `UPDATE … RETURNING` whose
/// `$at` is the time, after the common table expressions `with` (empty, or ending in a comma);
/// the event's kind, actor and data follow as the last three parameters.
fn transition(with: &str, update: &str, at: &str, next: u8) -> String {
    let (kind, actor, data) = (next, next + 1, next + 2);
    format!(
        "WITH {with} u AS ({update} RETURNING {REQUEST_COLS}), \
         e AS (INSERT INTO audit_pending (at, kind, actor, approval_id, data) \
               SELECT {at}, ${kind}, ${actor}, u.id, ${data} FROM u), \
         n AS (SELECT pg_notify('{CHANNEL}', u.id) FROM u) \
         SELECT u.*, (SELECT COUNT(*) FROM n) AS notices FROM u"
    )
}
static EXPIRE: LazyLock<String> = LazyLock::new(|| {
    transition(
        "",
        "UPDATE approvals SET status = 'expired', decided_at = expires_at \
         WHERE id = $1 AND status = 'pending' AND expires_at <= $2",
        "$2",
        3,
    )
});
static CANCEL: LazyLock<String> = LazyLock::new(|| {
    transition(
        "",
        "UPDATE approvals SET status = 'cancelled', decided_at = $3 \
         WHERE id = $1 AND client_id = $2 AND status = 'pending' AND expires_at > $3 \
           AND EXISTS (SELECT 1 FROM clients c WHERE c.id = $2 AND c.revoked_at IS NULL)",
        "$3",
        4,
    )
});
/// The receipt made unredeemable (unless redeemed meanwhile: whichever of the two statements
/// takes the receipt's row first wins) and the request revoked.
static REVOKE: LazyLock<String> = LazyLock::new(|| {
    transition(
        "r AS ( \
            UPDATE receipts SET revoked_at = $3 \
            WHERE approval_id = $1 AND redeemed_at IS NULL AND revoked_at IS NULL \
              AND EXISTS (SELECT 1 FROM approvals a \
                          WHERE a.id = $1 AND ($2::TEXT IS NULL OR a.client_id = $2) \
                            AND a.status = 'approved') \
              AND ($2::TEXT IS NULL OR EXISTS (SELECT 1 FROM clients c \
                                               WHERE c.id = $2 AND c.revoked_at IS NULL)) \
            RETURNING approval_id),",
        "UPDATE approvals SET status = 'revoked' WHERE id IN (SELECT approval_id FROM r)",
        "$3",
        4,
    )
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
              AND (x.self_approval = 1 OR (x.initiator_key <> $5 AND x.behalf_key <> $5)) \
              AND NOT EXISTS (SELECT 1 FROM decisions m WHERE m.approval_id = x.id AND m.user_id = $6) \
            ORDER BY x.created_at DESC, x.id COLLATE \"C\" DESC LIMIT $7) a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         ORDER BY a.created_at DESC, a.id COLLATE \"C\" DESC, d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});
/// The console's list: every filter is a parameter that may be NULL.
static ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS} FROM ( \
            SELECT * FROM approvals x \
            WHERE ($1::TEXT IS NULL OR x.status = $1) AND ($2::TEXT IS NULL OR x.action = $2) \
              AND ($3::TEXT IS NULL OR x.initiator = $3) \
              AND ($4::BIGINT IS NULL OR x.created_at >= $4) \
              AND ($5::BIGINT IS NULL OR x.created_at < $5) \
              AND ($6::BIGINT IS NULL OR (x.created_at, x.id COLLATE \"C\") < ($6, $7::TEXT COLLATE \"C\")) \
            ORDER BY x.created_at DESC, x.id COLLATE \"C\" DESC LIMIT $8) a \
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
        announce: bool,
    ) -> StoreResult<Created> {
        loop {
            match self
                .try_create(request, idempotency, &event, announce)
                .await
            {
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
            .fetch_optional(&mut *self.conns.get().await?)
            .await?
            .map(RequestRow::into_domain)
            .transpose()
    }

    async fn prior_response(
        &self,
        client: ClientId,
        key: &str,
    ) -> StoreResult<Option<([u8; 32], String)>> {
        let prior: Option<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT request_hash, response FROM idempotency_keys WHERE client_id = $1 AND key = $2",
        )
        .bind(client.to_string())
        .bind(key)
        .fetch_optional(&mut *self.conns.get().await?)
        .await?;
        prior
            .map(|(hash, response)| Ok((bytes32("request_hash", hash)?, response)))
            .transpose()
    }

    #[tracing::instrument(skip(self))]
    async fn snapshot(&self, id: ApprovalId) -> StoreResult<Option<Snapshot>> {
        let rows = sqlx::query(&SNAPSHOT)
            .bind(id.to_string())
            .fetch_all(&mut *self.conns.get().await?)
            .await?;
        let (receipt, client_active): (Option<String>, bool) = match rows.first() {
            Some(r) => (
                r.try_get("receipt")?,
                r.try_get::<Option<bool>, _>("client_active")?
                    .unwrap_or(false),
            ),
            None => (None, false),
        };
        Ok(listed(rows)?.pop().map(|l| Snapshot {
            request: l.request,
            votes: l.votes,
            receipt,
            client_active,
            able: Vec::new(),
        }))
    }

    #[tracing::instrument(skip(self, event))]
    async fn expire_request(
        &self,
        id: ApprovalId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<Option<Request>> {
        let e = Pending::unlogged(&event, now);
        let row = sqlx::query_as::<_, RequestRow>(&EXPIRE)
            .bind(id.to_string())
            .bind(now)
            .bind(&e.kind)
            .bind(&e.actor)
            .bind(e.data.to_string())
            .fetch_optional(&mut *self.conns.get().await?)
            .await?;
        let Some(row) = row else {
            // Not due, decided, or someone else expired it meanwhile: as it stands.
            return self.request(id).await;
        };
        self.recorded(&event, &e);
        row.into_domain().map(Some)
    }

    #[tracing::instrument(skip(self, event))]
    async fn cancel_request(
        &self,
        id: ApprovalId,
        client: ClientId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<ClientChange> {
        self.client_change(&CANCEL, id, Some(client), event, now)
            .await
    }

    #[tracing::instrument(skip(self, event))]
    async fn revoke_request(
        &self,
        id: ApprovalId,
        client: Option<ClientId>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<ClientChange> {
        self.client_change(&REVOKE, id, client, event, now).await
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
            .fetch_all(&mut *self.conns.get().await?)
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
            .fetch_all(&mut *self.conns.get().await?)
            .await?;
        listed(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn all_requests(&self, filter: &RequestFilter, page: Page) -> StoreResult<Vec<Listed>> {
        let (at, id) = page.bounds();
        let rows = sqlx::query(&ALL)
            .bind(&filter.status)
            .bind(&filter.action)
            .bind(&filter.initiator)
            .bind(filter.since)
            .bind(filter.until)
            .bind(at)
            .bind(id)
            .bind(i64::from(page.limit))
            .fetch_all(&mut *self.conns.get().await?)
            .await?;
        listed(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn pending_since(&self, since: UnixTime, limit: u32) -> StoreResult<Vec<ApprovalId>> {
        self.pending_ids(
            "SELECT id FROM approvals WHERE status = 'pending' AND created_at >= $1 \
             ORDER BY created_at DESC LIMIT $2",
            since,
            i64::from(limit),
        )
        .await
    }

    #[tracing::instrument(skip(self))]
    async fn due_requests(&self, now: UnixTime, limit: i64) -> StoreResult<Vec<ApprovalId>> {
        self.pending_ids(
            "SELECT id FROM approvals WHERE status = 'pending' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2",
            now,
            limit,
        )
        .await
    }
}

impl PgStore {
    /// The ids a query of pending requests (`$1` a time, `$2` a limit) selects.
    async fn pending_ids(
        &self,
        sql: &'static str,
        at: UnixTime,
        limit: i64,
    ) -> StoreResult<Vec<ApprovalId>> {
        let ids: Vec<String> = sqlx::query_scalar(sql)
            .bind(at)
            .bind(limit)
            .fetch_all(&mut *self.conns.get().await?)
            .await?;
        ids.iter()
            .map(|text| id("request id", ApprovalId::parse, text))
            .collect()
    }

    /// A change the creating client (`None`: an admin, whoever created it) asked for, in one
    /// statement (`CANCEL`, `REVOKE`: the request's id, the client's, the time, then the
    /// event), and if it was not made, why. A console change it carries out is recorded in
    /// the same transaction.
    async fn client_change(
        &self,
        statement: &str,
        id: ApprovalId,
        client: Option<ClientId>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<ClientChange> {
        let e = Pending::unlogged(&event, now);
        let query = sqlx::query_as::<_, RequestRow>(statement)
            .bind(id.to_string())
            .bind(client.map(|c| c.to_string()))
            .bind(now)
            .bind(&e.kind)
            .bind(&e.actor)
            .bind(e.data.to_string());
        let mut conn = self.conns.get().await?;
        let row = match event.carries.as_deref() {
            None => query.fetch_optional(&mut *conn).await?,
            Some(carried) => {
                let mut tx = conn.begin().await?;
                let row = query.fetch_optional(&mut *tx).await?;
                if row.is_some() {
                    super::console::carried_out(&mut tx, carried, now).await?;
                }
                tx.commit().await?;
                row
            }
        };
        drop(conn);
        let Some(row) = row else {
            if let Some(client) = client {
                if !self.client_active(client).await? {
                    return Ok(ClientChange::ClientRevoked);
                }
            }
            return Ok(match self.request(id).await? {
                Some(r) if client.is_none_or(|c| r.client_id == c) => ClientChange::Refused(r),
                _ => ClientChange::NotFound,
            });
        };
        self.recorded(&event, &e);
        Ok(ClientChange::Made(row.into_domain()?))
    }

    /// One statement, so one round trip: the idempotency look-up, the request, its key and
    /// its event. A key raced by another request fails on its uniqueness and is tried again.
    async fn try_create(
        &self,
        r: &Request,
        idem: Option<&Idempotency>,
        event: &NewEvent,
        announce: bool,
    ) -> StoreResult<Created> {
        let cols = RequestCols::of(r)?;
        let e = Pending::unlogged(event, r.created_at);
        let sql: &str = match (idem.is_some(), announce) {
            (false, false) => &CREATE,
            (false, true) => &CREATE_ANNOUNCED,
            (true, false) => &CREATE_KEYED,
            (true, true) => &CREATE_KEYED_ANNOUNCED,
        };
        let mut query = sqlx::query(sql)
            .bind(r.id.to_string())
            .bind(r.client_id.to_string())
            .bind(&r.action)
            .bind(&r.transaction_jcs)
            .bind(r.tx_hash.to_string())
            .bind(r.initiator.id())
            .bind(r.initiator.person_key())
            .bind(&r.audience)
            .bind(&cols.risk)
            .bind(&r.policy_rev)
            .bind(cols.approvals)
            .bind(&cols.groups)
            .bind(&cols.rules)
            .bind(r.status.as_str())
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.decided_at)
            .bind(i64::from(r.self_approval))
            .bind(r.receipt_ttl)
            .bind(r.initiator.party())
            .bind(r.initiator.behalf_key())
            .bind(&cols.stages);
        if let Some(i) = idem {
            query = query
                .bind(i.key.as_str())
                .bind(i.request_hash.as_slice())
                .bind(i.response.as_str());
        }
        query = query.bind(&e.kind).bind(&e.actor).bind(e.data.to_string());
        if announce {
            query = query.bind(message_id()).bind(REQUEST_CREATED);
        }
        let row = query.fetch_one(&mut *self.conns.get().await?).await;
        let row = match row {
            Err(e) if is_unique(&e) => return Err(StoreError::Conflict("idempotency key")),
            other => other?,
        };
        if row.try_get::<i64, _>("created")? == 1 {
            self.recorded(event, &e);
            return Ok(Created::New);
        }
        let hash: Option<Vec<u8>> = row.try_get("request_hash")?;
        Ok(match (hash, idem) {
            (Some(hash), Some(idem)) if hash == idem.request_hash => {
                Created::Replayed(row.try_get("response")?)
            }
            (Some(_), _) => Created::KeyConflict,
            // Neither made nor replayed: the client was revoked meanwhile.
            (None, _) => Created::ClientRevoked,
        })
    }
}

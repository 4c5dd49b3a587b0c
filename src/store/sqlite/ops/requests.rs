use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::super::super::rows::{
    bytes32, group_votes, id, qualified, RequestCols, RequestRow, VoteRow, REQUEST_COLS, VOTE_COLS,
};
use super::super::super::{
    ClientChange, ClientStore, Created, Idempotency, InboxOf, Listed, Page, RequestFilter,
    RequestStore, Snapshot, StoreError, StoreResult,
};
use super::super::{Outcome, SqliteStore};
use super::{all, append, exec, first};
use crate::clock::UnixTime;
use crate::domain::delivery::{message_id, REQUEST_CREATED};
use crate::domain::{ApprovalId, ClientId, NewEvent, Request, UserId};

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!("INSERT INTO approvals ({REQUEST_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)")
});
pub(super) static BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {REQUEST_COLS} FROM approvals WHERE id = ?1"));
/// A request with its votes and its receipt: one row per vote (or one with NULL votes).
static SNAPSHOT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS}, r.token AS receipt, \
            (SELECT c.revoked_at IS NULL FROM clients c WHERE c.id = a.client_id) AS client_active \
         FROM approvals a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         LEFT JOIN receipts r ON r.approval_id = a.id AND r.revoked_at IS NULL \
         WHERE a.id = ?1 ORDER BY d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});
static EXPIRE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE approvals SET status = 'expired', decided_at = expires_at \
             WHERE id = ?1 AND status = 'pending' AND expires_at <= ?2 RETURNING {REQUEST_COLS}"
    )
});
static CANCEL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE approvals SET status = 'cancelled', decided_at = ?3 \
             WHERE id = ?1 AND client_id = ?2 AND status = 'pending' AND expires_at > ?3 \
               AND EXISTS (SELECT 1 FROM clients c WHERE c.id = ?2 AND c.revoked_at IS NULL) \
             RETURNING {REQUEST_COLS}"
    )
});
/// The receipt made unredeemable, unless redeemed already; the request follows in the same
/// transaction.
const REVOKE_RECEIPT: &str = "UPDATE receipts SET revoked_at = ?3 \
     WHERE approval_id = ?1 AND redeemed_at IS NULL AND revoked_at IS NULL \
       AND EXISTS (SELECT 1 FROM approvals a \
                   WHERE a.id = ?1 AND (?2 IS NULL OR a.client_id = ?2) AND a.status = 'approved') \
       AND (?2 IS NULL OR EXISTS (SELECT 1 FROM clients c WHERE c.id = ?2 AND c.revoked_at IS NULL))";
static REVOKE: LazyLock<String> = LazyLock::new(|| {
    format!("UPDATE approvals SET status = 'revoked' WHERE id = ?1 RETURNING {REQUEST_COLS}")
});
/// Recent arrivals, on the partial index of pending requests (`approvals_pending`).
const PENDING_SINCE: &str =
    "SELECT id FROM approvals WHERE status = 'pending' AND created_at >= ?1 \
     ORDER BY created_at DESC LIMIT ?2";
/// Pending requests whose time is up.
const DUE: &str = "SELECT id FROM approvals WHERE status = 'pending' AND expires_at <= ?1 \
     ORDER BY expires_at LIMIT ?2";
/// The page of the inbox is cut after every eligibility condition has been applied.
static INBOX: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS} FROM ( \
            SELECT * FROM approvals x \
            WHERE x.status = 'pending' AND x.expires_at > ?1 \
              AND (?2 IS NULL OR (x.created_at, x.id) < (?2, ?3)) \
              AND EXISTS (SELECT 1 FROM json_each(x.required_groups) g \
                          WHERE g.value IN (SELECT value FROM json_each(?4))) \
              AND (x.self_approval = 1 OR (x.initiator_key <> ?5 AND x.behalf_key <> ?5)) \
              AND NOT EXISTS (SELECT 1 FROM decisions m WHERE m.approval_id = x.id AND m.user_id = ?6) \
            ORDER BY x.created_at DESC, x.id DESC LIMIT ?7) a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         ORDER BY a.created_at DESC, a.id DESC, d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});
/// The console's list: every filter is a parameter that may be NULL.
static ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS} FROM ( \
            SELECT * FROM approvals x \
            WHERE (?1 IS NULL OR x.status = ?1) AND (?2 IS NULL OR x.action = ?2) \
              AND (?3 IS NULL OR x.initiator = ?3) AND (?4 IS NULL OR x.created_at >= ?4) \
              AND (?5 IS NULL OR x.created_at < ?5) \
              AND (?6 IS NULL OR (x.created_at, x.id) < (?6, ?7)) \
            ORDER BY x.created_at DESC, x.id DESC LIMIT ?8) a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         ORDER BY a.created_at DESC, a.id DESC, d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});
static HISTORY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {VOTE_COLS} FROM ( \
            SELECT x.*, m.at AS my_at FROM decisions m JOIN approvals x ON x.id = m.approval_id \
            WHERE m.user_id = ?1 AND (?2 IS NULL OR (m.at, m.approval_id) < (?2, ?3)) \
            ORDER BY m.at DESC, m.approval_id DESC LIMIT ?4) a \
         LEFT JOIN decisions d ON d.approval_id = a.id \
         ORDER BY a.my_at DESC, a.id DESC, d.at, d.username",
        qualified(REQUEST_COLS, "a")
    )
});

/// The receipt column of a snapshot row.
pub(super) struct Receipt {
    receipt: Option<String>,
    client_active: bool,
}

crate::store::rows::from_row! { Receipt { receipt, client_active } }

#[async_trait]
impl RequestStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(approval_id = %request.id))]
    async fn create_request(
        &self,
        request: &Request,
        idempotency: Option<&Idempotency>,
        event: NewEvent,
        announce: bool,
    ) -> StoreResult<Created> {
        let r = request.clone();
        let cols = RequestCols::of(&r)?;
        let idem = idempotency.cloned();
        let client = r.client_id.to_string();
        self.engine
            .write(move |conn| {
                if !super::clients::active(conn, &client)? {
                    return Ok(Outcome::Keep(Created::ClientRevoked));
                }
                if let Some(idem) = &idem {
                    // The writer excludes every other writer: a key looked up here cannot be
                    // taken before the insert below.
                    let prior: Option<(Vec<u8>, String)> = conn
                        .prepare_cached("SELECT request_hash, response FROM idempotency_keys WHERE client_id = ?1 AND key = ?2")?
                        .query_row(params![client, idem.key], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()?;
                    if let Some((hash, response)) = prior {
                        return Ok(Outcome::Keep(if hash == idem.request_hash {
                            Created::Replayed(response)
                        } else {
                            Created::KeyConflict
                        }));
                    }
                }
                exec(conn, &INSERT, params![
                    r.id.to_string(),
                    client,
                    r.action,
                    r.transaction_jcs,
                    r.tx_hash.to_string(),
                    r.initiator.id(),
                    r.initiator.person_key(),
                    r.audience,
                    cols.risk,
                    r.policy_rev,
                    cols.approvals,
                    cols.groups,
                    cols.rules,
                    r.status.as_str(),
                    r.created_at,
                    r.expires_at,
                    r.decided_at,
                    i64::from(r.self_approval),
                    r.receipt_ttl,
                    r.initiator.party(),
                    r.initiator.behalf_key(),
                    cols.stages,
                ])?;
                if let Some(idem) = &idem {
                    exec(conn,
                        "INSERT INTO idempotency_keys (client_id, key, request_hash, approval_id, response, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![client, idem.key, idem.request_hash.as_slice(), r.id.to_string(), idem.response, r.created_at])?;
                }
                append(conn, std::slice::from_ref(&event), r.created_at)?;
                if announce {
                    exec(conn,
                        "INSERT INTO outbox (id, channel, event, approval_id, at, next_at) VALUES (?1, 'announce', ?2, ?3, ?4, ?4)",
                        params![message_id(), REQUEST_CREATED, r.id.to_string(), r.created_at])?;
                }
                Ok(Outcome::Keep(Created::New))
            })
            .await
    }

    #[tracing::instrument(skip(self))]
    async fn request(&self, id: ApprovalId) -> StoreResult<Option<Request>> {
        self.engine
            .read(|conn| first::<RequestRow>(conn, &BY_ID, params![id.to_string()]))?
            .map(RequestRow::into_domain)
            .transpose()
    }

    async fn prior_response(
        &self,
        client: ClientId,
        key: &str,
    ) -> StoreResult<Option<([u8; 32], String)>> {
        let prior: Option<(Vec<u8>, String)> = self.engine.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT request_hash, response FROM idempotency_keys WHERE client_id = ?1 AND key = ?2",
                )?
                .query_row(params![client.to_string(), key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        })?;
        prior
            .map(|(hash, response)| Ok((bytes32("request_hash", hash)?, response)))
            .transpose()
    }

    #[tracing::instrument(skip(self))]
    async fn snapshot(&self, id: ApprovalId) -> StoreResult<Option<Snapshot>> {
        let rows = self.engine.read(|conn| {
            all::<((RequestRow, VoteRow), Receipt)>(conn, &SNAPSHOT, params![id.to_string()])
        })?;
        let receipt = rows.first().and_then(|(_, r)| r.receipt.clone());
        let client_active = rows.first().is_some_and(|(_, r)| r.client_active);
        let rows = rows.into_iter().map(|(pair, _)| pair).collect();
        Ok(group_votes(rows)?.pop().map(|l| Snapshot {
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
        let expired = self
            .engine
            .write(move |conn| {
                let row = first::<RequestRow>(conn, &EXPIRE, params![id.to_string(), now])?;
                if row.is_some() {
                    append(conn, std::slice::from_ref(&event), now)?;
                }
                Ok(Outcome::Keep(row))
            })
            .await?;
        match expired {
            Some(row) => {
                self.changed(id);
                row.into_domain().map(Some)
            }
            // Not due, decided, or someone else expired it meanwhile: as it stands.
            None => self.request(id).await,
        }
    }

    #[tracing::instrument(skip(self, event))]
    async fn cancel_request(
        &self,
        id: ApprovalId,
        client: ClientId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<ClientChange> {
        let change = move |conn: &Connection| {
            first::<RequestRow>(
                conn,
                &CANCEL,
                params![id.to_string(), client.to_string(), now],
            )
        };
        self.client_change(change, id, Some(client), event, now)
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
        let change = move |conn: &Connection| {
            let key = id.to_string();
            if exec(
                conn,
                REVOKE_RECEIPT,
                params![key, client.map(|c| c.to_string()), now],
            )? == 0
            {
                return Ok(None);
            }
            first::<RequestRow>(conn, &REVOKE, params![key])
        };
        self.client_change(change, id, client, event, now).await
    }

    #[tracing::instrument(skip(self, of), fields(user = %of.user))]
    async fn inbox(&self, of: &InboxOf<'_>, now: UnixTime, page: Page) -> StoreResult<Vec<Listed>> {
        let (before_at, before_id) = page.bounds();
        let groups =
            serde_json::to_string(of.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = self.engine.read(|conn| {
            all::<(RequestRow, VoteRow)>(
                conn,
                &INBOX,
                params![
                    now,
                    before_at,
                    before_id,
                    groups,
                    of.identity,
                    of.user.to_string(),
                    page.limit
                ],
            )
        })?;
        group_votes(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn history(&self, user: UserId, page: Page) -> StoreResult<Vec<Listed>> {
        let (before_at, before_id) = page.bounds();
        let rows = self.engine.read(|conn| {
            all::<(RequestRow, VoteRow)>(
                conn,
                &HISTORY,
                params![user.to_string(), before_at, before_id, page.limit],
            )
        })?;
        group_votes(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn all_requests(&self, filter: &RequestFilter, page: Page) -> StoreResult<Vec<Listed>> {
        let (before_at, before_id) = page.bounds();
        let f = filter.clone();
        let rows = self.engine.read(|conn| {
            all::<(RequestRow, VoteRow)>(
                conn,
                &ALL,
                params![
                    f.status,
                    f.action,
                    f.initiator,
                    f.since,
                    f.until,
                    before_at,
                    before_id,
                    page.limit
                ],
            )
        })?;
        group_votes(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn pending_since(&self, since: UnixTime, limit: u32) -> StoreResult<Vec<ApprovalId>> {
        self.pending_ids(PENDING_SINCE, since, i64::from(limit))
    }

    #[tracing::instrument(skip(self))]
    async fn due_requests(&self, now: UnixTime, limit: i64) -> StoreResult<Vec<ApprovalId>> {
        self.pending_ids(DUE, now, limit)
    }
}

impl SqliteStore {
    /// The ids a query of pending requests (`?1` a time, `?2` a limit) selects.
    fn pending_ids(&self, sql: &str, at: UnixTime, limit: i64) -> StoreResult<Vec<ApprovalId>> {
        let ids = self.engine.read(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![at, limit], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        ids.iter()
            .map(|text| id("request id", ApprovalId::parse, text))
            .collect()
    }

    /// A change the creating client (`None`: an admin, whoever created it) asked for, made by
    /// `change` on the writer (the request as it then stands, or `None` if not made) with its
    /// event, and if it was not made, why.
    async fn client_change(
        &self,
        mut change: impl FnMut(&Connection) -> StoreResult<Option<RequestRow>> + Send + 'static,
        id: ApprovalId,
        client: Option<ClientId>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<ClientChange> {
        let made = self
            .engine
            .write(move |conn| {
                let row = change(conn)?;
                if row.is_some() {
                    append(conn, std::slice::from_ref(&event), now)?;
                }
                Ok(Outcome::Keep(row))
            })
            .await?;
        if let Some(row) = made {
            self.changed(id);
            return Ok(ClientChange::Made(row.into_domain()?));
        }
        if let Some(client) = client {
            if !self.client_active(client).await? {
                return Ok(ClientChange::ClientRevoked);
            }
        }
        Ok(match self.request(id).await? {
            Some(r) if client.is_none_or(|c| r.client_id == c) => ClientChange::Refused(r),
            _ => ClientChange::NotFound,
        })
    }
}

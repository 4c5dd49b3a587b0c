use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::super::super::rows::{
    delivery_after, to_json, DeliveryRow, WebhookRow, DELIVERY_COLS, PURGE_GRACE, WEBHOOK_COLS,
};
use super::super::super::{OutboxStore, StoreResult};
use super::super::{Outcome, SqliteStore};
use super::{all, append, exec, first};
use crate::clock::UnixTime;
use crate::domain::delivery::message_id;
use crate::domain::{
    AttemptOutcome, Attempted, ClientId, Delivery, DeliveryStatus, NewDelivery, NewEvent, Webhook,
};

/// A due message no server holds.
const DUE: &str =
    "status = 'pending' AND next_at <= ?1 AND (lease_until IS NULL OR lease_until <= ?1)";

/// On the partial index of pending messages.
const BACKLOG: &str = "SELECT COUNT(*) FROM outbox WHERE status = 'pending'";

#[async_trait]
impl OutboxStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(client = %webhook.client_id))]
    async fn set_webhook(
        &self,
        webhook: &Webhook,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let w = webhook.clone();
        let (events, secrets) = (to_json(&w.events)?, to_json(&w.secrets)?);
        self.engine
            .write(move |conn| {
                let client = w.client_id.to_string();
                if !super::clients::active(conn, &client)? {
                    return Ok(Outcome::Keep(false));
                }
                exec(conn,
                    "INSERT INTO webhooks (client_id, url, events, secrets, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (client_id) DO UPDATE SET url = excluded.url, events = excluded.events, \
                     secrets = excluded.secrets, created_at = excluded.created_at, disabled_at = NULL, disabled_why = NULL",
                    params![client, w.url, events, secrets, w.created_at])?;
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(true))
            })
            .await
    }

    #[tracing::instrument(skip(self, event))]
    async fn remove_webhook(
        &self,
        client: ClientId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        self.engine
            .write(move |conn| {
                let client = client.to_string();
                if exec(conn, "DELETE FROM webhooks WHERE client_id = ?1", params![client])? == 0 {
                    return Ok(Outcome::Keep(false));
                }
                exec(conn,
                    "UPDATE outbox SET status = 'failed', lease_until = NULL, last_error = 'the endpoint was removed' \
                     WHERE client_id = ?1 AND channel = 'webhook' AND status = 'pending'",
                    params![client])?;
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(true))
            })
            .await
    }

    async fn webhook(&self, client: ClientId) -> StoreResult<Option<Webhook>> {
        self.engine
            .read(|conn| {
                first::<WebhookRow>(
                    conn,
                    &format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE client_id = ?1"),
                    params![client.to_string()],
                )
            })?
            .map(WebhookRow::into_domain)
            .transpose()
    }

    async fn claim_deliveries(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        // Looked for first on a reader: most looks find nothing, and need not queue for the writer.
        let due: bool = self.engine.read(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM outbox WHERE {DUE})"))?
                .query_row(params![now], |r| r.get(0))?)
        })?;
        if !due {
            return Ok(Vec::new());
        }
        let rows = self
            .engine
            .write(move |conn| {
                Ok(Outcome::Keep(all::<DeliveryRow>(
                    conn,
                    &format!(
                        "UPDATE outbox SET lease_until = ?2 WHERE id IN \
                              (SELECT id FROM outbox WHERE {DUE} ORDER BY next_at LIMIT ?3) \
                              RETURNING {DELIVERY_COLS}"
                    ),
                    params![now, lease_until, limit],
                )?))
            })
            .await?;
        DeliveryRow::all(rows)
    }

    #[tracing::instrument(skip(self, attempted, gone))]
    async fn finish_delivery(
        &self,
        id: &str,
        lease: UnixTime,
        attempted: &Attempted,
        gone: Option<NewEvent>,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (id, a) = (id.to_owned(), attempted.clone());
        self.engine
            .write(move |conn| {
                let (status, next_at, delivered_at) = delivery_after(&a, now);
                let client: Option<Option<String>> = conn
                    .prepare_cached(
                        "UPDATE outbox SET payload = ?1, attempts = attempts + 1, last_code = ?2, last_error = ?3, \
                         lease_until = NULL, status = ?4, next_at = coalesce(?5, next_at), delivered_at = ?6 \
                         WHERE id = ?7 AND lease_until = ?8 AND status = 'pending' RETURNING client_id")?
                    .query_row(params![a.payload, a.code, a.error, status, next_at, delivered_at, id, lease], |r| r.get(0))
                    .optional()?;
                let Some(client) = client else {
                    return Ok(Outcome::Keep(false));
                };
                if let (AttemptOutcome::EndpointGone, Some(client)) = (a.outcome, client) {
                    let disabled = exec(conn,
                        "UPDATE webhooks SET disabled_at = ?1, disabled_why = 'the endpoint answered 410 Gone' \
                         WHERE client_id = ?2 AND disabled_at IS NULL",
                        params![now, client])?;
                    exec(conn,
                        "UPDATE outbox SET status = 'failed', lease_until = NULL, last_error = 'the endpoint is disabled (410 Gone)' \
                         WHERE client_id = ?1 AND channel = 'webhook' AND status = 'pending'",
                        params![client])?;
                    if disabled == 1 {
                        append(conn, gone.as_slice(), now)?;
                    }
                }
                Ok(Outcome::Keep(true))
            })
            .await
    }

    #[tracing::instrument(skip(self, messages))]
    async fn expand_announcement(
        &self,
        id: &str,
        lease: UnixTime,
        messages: &[NewDelivery],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (id, messages) = (id.to_owned(), messages.to_vec());
        self.engine
            .write(move |conn| {
                let done = exec(conn,
                    "UPDATE outbox SET status = 'delivered', delivered_at = ?1, lease_until = NULL, attempts = attempts + 1 \
                     WHERE id = ?2 AND lease_until = ?3 AND status = 'pending'",
                    params![now, id, lease])? == 1;
                if done {
                    for m in &messages {
                        exec(conn,
                            "INSERT INTO outbox (id, channel, target, event, approval_id, at, payload, next_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            params![message_id(), m.channel.as_str(), m.target, m.event, m.approval_id.to_string(), m.at, m.payload, now])?;
                    }
                }
                Ok(Outcome::Keep(done))
            })
            .await
    }

    async fn deliveries(
        &self,
        client: ClientId,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = self.engine.read(|conn| {
            all::<DeliveryRow>(conn,
                &format!("SELECT {DELIVERY_COLS} FROM outbox WHERE client_id = ?1 AND channel = 'webhook' \
                          AND (?2 IS NULL OR status = ?2) ORDER BY at DESC, id DESC LIMIT ?3"),
                params![client.to_string(), status.map(DeliveryStatus::as_str), limit])
        })?;
        DeliveryRow::all(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn retry_delivery(
        &self,
        client: ClientId,
        id: &str,
        now: UnixTime,
    ) -> StoreResult<Option<Delivery>> {
        let id = id.to_owned();
        let row = self.engine
            .write(move |conn| {
                let client = client.to_string();
                let again = first::<DeliveryRow>(conn,
                    &format!("UPDATE outbox SET status = 'pending', attempts = 0, next_at = ?3, lease_until = NULL, delivered_at = NULL \
                              WHERE id = ?1 AND client_id = ?2 AND channel = 'webhook' AND status <> 'pending' \
                              RETURNING {DELIVERY_COLS}"),
                    params![id, client, now])?;
                Ok(Outcome::Keep(match again {
                    Some(row) => Some(row),
                    None => first::<DeliveryRow>(conn,
                        &format!("SELECT {DELIVERY_COLS} FROM outbox WHERE id = ?1 AND client_id = ?2 AND channel = 'webhook'"),
                        params![id, client])?,
                }))
            })
            .await?;
        row.map(DeliveryRow::into_domain).transpose()
    }

    async fn backlog(&self) -> StoreResult<i64> {
        self.engine
            .read(|conn| Ok(conn.query_row(BACKLOG, [], |r| r.get(0))?))
    }

    async fn purge(&self, now: UnixTime, idle_before: UnixTime) -> StoreResult<(u64, u64)> {
        self.engine
            .write(move |conn| {
                let ceremonies = exec(
                    conn,
                    "DELETE FROM ceremonies WHERE expires_at <= ?1",
                    params![now - PURGE_GRACE],
                )?;
                let sessions = exec(
                    conn,
                    "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?2",
                    params![now, idle_before],
                )?;
                Ok(Outcome::Keep((ceremonies as u64, sessions as u64)))
            })
            .await
    }
}

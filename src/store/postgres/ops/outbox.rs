use async_trait::async_trait;

use super::super::super::rows::{
    delivery_after, to_json, DeliveryRow, WebhookRow, DELIVERY_COLS, PURGE_GRACE, WEBHOOK_COLS,
};
use super::super::super::{OutboxStore, StoreResult};
use super::super::PgStore;
use super::append;
use crate::clock::UnixTime;
use crate::domain::delivery::message_id;
use crate::domain::{
    AttemptOutcome, Attempted, ClientId, Delivery, DeliveryStatus, NewDelivery, NewEvent, Webhook,
};

/// Events as JSON text, as the SQLite store keeps them.
fn webhook_cols() -> String {
    WEBHOOK_COLS.replace("events", "array_to_json(events)::text AS events")
}

#[async_trait]
impl OutboxStore for PgStore {
    #[tracing::instrument(skip_all, fields(client = %webhook.client_id))]
    async fn set_webhook(
        &self,
        webhook: &Webhook,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let set = sqlx::query(
            "INSERT INTO webhooks (client_id, url, events, secrets, created_at) \
             SELECT $1, $2, $3, $4, $5 FROM clients c WHERE c.id = $1 AND c.revoked_at IS NULL \
             ON CONFLICT (client_id) DO UPDATE SET url = excluded.url, events = excluded.events, \
             secrets = excluded.secrets, created_at = excluded.created_at, disabled_at = NULL, disabled_why = NULL",
        )
        .bind(webhook.client_id.to_string())
        .bind(&webhook.url)
        .bind(&webhook.events)
        .bind(to_json(&webhook.secrets)?)
        .bind(webhook.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !set {
            return Ok(false);
        }
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    #[tracing::instrument(skip(self, event))]
    async fn remove_webhook(
        &self,
        client: ClientId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let removed = sqlx::query("DELETE FROM webhooks WHERE client_id = $1")
            .bind(client.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !removed {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE outbox SET status = 'failed', lease_until = NULL, last_error = 'the endpoint was removed' \
             WHERE client_id = $1 AND channel = 'webhook' AND status = 'pending'",
        )
        .bind(client.to_string())
        .execute(&mut *tx)
        .await?;
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn webhook(&self, client: ClientId) -> StoreResult<Option<Webhook>> {
        sqlx::query_as::<_, WebhookRow>(&format!(
            "SELECT {} FROM webhooks WHERE client_id = $1",
            webhook_cols()
        ))
        .bind(client.to_string())
        .fetch_optional(&mut *self.conns.get().await?)
        .await?
        .map(WebhookRow::into_domain)
        .transpose()
    }

    /// Rows another replica is claiming are skipped, not waited for; a claimed row's lease
    /// keeps the others off it once the claim commits. Webhook messages are written as their
    /// events are chained (migration 0014), so the events recorded so far are chained first,
    /// unless another replica is chaining them (its messages are found by the next look).
    async fn claim_deliveries(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        self.chain_pending(false).await?;
        let rows = sqlx::query_as::<_, DeliveryRow>(&format!(
            "UPDATE outbox SET lease_until = $2 WHERE id IN ( \
                SELECT id FROM outbox \
                WHERE status = 'pending' AND next_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
                ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {DELIVERY_COLS}"
        ))
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(&mut *self.conns.get().await?)
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
        let (status, next_at, delivered_at) = delivery_after(attempted, now);
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let client: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE outbox SET payload = $1, attempts = attempts + 1, last_code = $2, last_error = $3, \
             lease_until = NULL, status = $4, next_at = coalesce($5, next_at), delivered_at = $6 \
             WHERE id = $7 AND lease_until = $8 AND status = 'pending' RETURNING client_id",
        )
        .bind(&attempted.payload)
        .bind(attempted.code.map(|c| i32::try_from(c).unwrap_or(0)))
        .bind(&attempted.error)
        .bind(status)
        .bind(next_at)
        .bind(delivered_at)
        .bind(id)
        .bind(lease)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(client) = client else {
            return Ok(false);
        };
        if let (AttemptOutcome::EndpointGone, Some(client)) = (attempted.outcome, client) {
            let disabled = sqlx::query(
                "UPDATE webhooks SET disabled_at = $1, disabled_why = 'the endpoint answered 410 Gone' \
                 WHERE client_id = $2 AND disabled_at IS NULL",
            )
            .bind(now)
            .bind(&client)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE outbox SET status = 'failed', lease_until = NULL, last_error = 'the endpoint is disabled (410 Gone)' \
                 WHERE client_id = $1 AND channel = 'webhook' AND status = 'pending'",
            )
            .bind(&client)
            .execute(&mut *tx)
            .await?;
            if disabled == 1 {
                append(&mut tx, gone.as_slice(), now).await?;
            }
        }
        self.commit(tx).await?;
        Ok(true)
    }

    #[tracing::instrument(skip(self, messages))]
    async fn expand_announcement(
        &self,
        id: &str,
        lease: UnixTime,
        messages: &[NewDelivery],
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let done = sqlx::query(
            "UPDATE outbox SET status = 'delivered', delivered_at = $1, lease_until = NULL, attempts = attempts + 1 \
             WHERE id = $2 AND lease_until = $3 AND status = 'pending'",
        )
        .bind(now)
        .bind(id)
        .bind(lease)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !done {
            return Ok(false);
        }
        for m in messages {
            sqlx::query(
                "INSERT INTO outbox (id, channel, target, event, approval_id, at, payload, next_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(message_id())
            .bind(m.channel.as_str())
            .bind(&m.target)
            .bind(&m.event)
            .bind(m.approval_id.to_string())
            .bind(m.at)
            .bind(&m.payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Chains first, so that the log shows every message of the changes made before it.
    async fn deliveries(
        &self,
        client: ClientId,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>> {
        self.chain_pending(true).await?;
        let rows = sqlx::query_as::<_, DeliveryRow>(&format!(
            "SELECT {DELIVERY_COLS} FROM outbox WHERE client_id = $1 AND channel = 'webhook' \
             AND ($2::TEXT IS NULL OR status = $2) ORDER BY at DESC, id DESC LIMIT $3"
        ))
        .bind(client.to_string())
        .bind(status.map(DeliveryStatus::as_str))
        .bind(limit)
        .fetch_all(&mut *self.conns.get().await?)
        .await?;
        DeliveryRow::all(rows)
    }

    #[tracing::instrument(skip(self))]
    async fn retry_delivery(
        &self,
        client: ClientId,
        id: &str,
        now: UnixTime,
    ) -> StoreResult<Option<Delivery>> {
        let row = sqlx::query_as::<_, DeliveryRow>(&format!(
            "WITH again AS ( \
                UPDATE outbox SET status = 'pending', attempts = 0, next_at = $3, lease_until = NULL, delivered_at = NULL \
                WHERE id = $1 AND client_id = $2 AND channel = 'webhook' AND status <> 'pending' \
                RETURNING {DELIVERY_COLS}) \
             SELECT * FROM again \
             UNION ALL \
             SELECT {DELIVERY_COLS} FROM outbox \
             WHERE id = $1 AND client_id = $2 AND channel = 'webhook' AND NOT EXISTS (SELECT 1 FROM again)"
        ))
        .bind(id)
        .bind(client.to_string())
        .bind(now)
        .fetch_optional(&mut *self.conns.get().await?)
        .await?;
        row.map(DeliveryRow::into_domain).transpose()
    }

    async fn backlog(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
                .fetch_one(&mut *self.conns.get().await?)
                .await?,
        )
    }

    async fn purge(&self, now: UnixTime, idle_before: UnixTime) -> StoreResult<(u64, u64)> {
        let mut conn = self.conns.get().await?;
        let ceremonies = sqlx::query("DELETE FROM ceremonies WHERE expires_at <= $1")
            .bind(now - PURGE_GRACE)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        let sessions =
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                .bind(now)
                .bind(idle_before)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        Ok((ceremonies, sessions))
    }
}

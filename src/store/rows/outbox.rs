//! Outbox and webhook rows.

use super::{id, json};
use crate::clock::UnixTime;
use crate::domain::{
    ApprovalId, AttemptOutcome, Attempted, Channel, ClientId, Delivery, DeliveryStatus,
    SealedSecret, Webhook,
};
use crate::store::{StoreError, StoreResult};

pub(in crate::store) const DELIVERY_COLS: &str =
    "id, channel, client_id, target, event, approval_id, at, payload, status, attempts, next_at, \
     lease_until, last_code, last_error, delivered_at";

#[derive(Debug, sqlx::FromRow)]
pub(in crate::store) struct DeliveryRow {
    pub id: String,
    pub channel: String,
    pub client_id: Option<String>,
    pub target: Option<String>,
    pub event: String,
    pub approval_id: String,
    pub at: i64,
    pub payload: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub next_at: i64,
    pub lease_until: Option<i64>,
    pub last_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

impl DeliveryRow {
    pub fn all(rows: Vec<DeliveryRow>) -> StoreResult<Vec<Delivery>> {
        rows.into_iter().map(DeliveryRow::into_domain).collect()
    }

    pub fn into_domain(self) -> StoreResult<Delivery> {
        Ok(Delivery {
            channel: Channel::parse(&self.channel)
                .ok_or_else(|| StoreError::Corrupt("outbox channel".into()))?,
            client_id: self
                .client_id
                .as_deref()
                .map(|c| id("client id", ClientId::parse, c))
                .transpose()?,
            approval_id: id("approval id", ApprovalId::parse, &self.approval_id)?,
            status: DeliveryStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt("outbox status".into()))?,
            id: self.id,
            target: self.target,
            event: self.event,
            at: self.at,
            payload: self.payload,
            attempts: i64::from(self.attempts),
            next_at: self.next_at,
            lease_until: self.lease_until,
            last_code: self.last_code.map(i64::from),
            last_error: self.last_error,
            delivered_at: self.delivered_at,
        })
    }
}

/// Events as a JSON list on both databases (PostgreSQL selects its array as JSON).
pub(in crate::store) const WEBHOOK_COLS: &str =
    "client_id, url, events, secrets, created_at, disabled_at, disabled_why";

#[derive(Debug, sqlx::FromRow)]
pub(in crate::store) struct WebhookRow {
    pub client_id: String,
    pub url: String,
    pub events: String,
    pub secrets: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub disabled_why: Option<String>,
}

impl WebhookRow {
    pub fn into_domain(self) -> StoreResult<Webhook> {
        Ok(Webhook {
            client_id: id("client id", ClientId::parse, &self.client_id)?,
            url: self.url,
            events: json("webhook events", &self.events)?,
            secrets: json::<Vec<SealedSecret>>("webhook secrets", &self.secrets)?,
            created_at: self.created_at,
            disabled_at: self.disabled_at,
            disabled_why: self.disabled_why,
        })
    }
}

/// Where an attempt leaves a message: status, next time, delivered time.
pub(in crate::store) fn delivery_after(
    a: &Attempted,
    now: UnixTime,
) -> (&'static str, Option<UnixTime>, Option<UnixTime>) {
    match a.outcome {
        AttemptOutcome::Delivered => (DeliveryStatus::Delivered.as_str(), None, Some(now)),
        AttemptOutcome::RetryAt(at) => (DeliveryStatus::Pending.as_str(), Some(at), None),
        AttemptOutcome::Failed | AttemptOutcome::EndpointGone => {
            (DeliveryStatus::Failed.as_str(), None, None)
        }
    }
}

/// Ceremonies are kept an hour past their end, so that finishing one late is still told
/// `ceremony_expired` rather than not found.
pub(in crate::store) const PURGE_GRACE: i64 = 3600;

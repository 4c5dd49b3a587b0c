//! The part of the store the background work needs: the outbox of webhooks and announcements,
//! the clients' endpoints, and the sweep of what time has ended.

use async_trait::async_trait;

use super::StoreResult;
use crate::clock::UnixTime;
use crate::domain::{
    Attempted, ClientId, Delivery, DeliveryStatus, NewDelivery, NewEvent, Webhook,
};

#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Sets the client's endpoint (replacing one it had), with `event`; false when the client
    /// is revoked. Messages already written keep going to the endpoint as it is when sent.
    async fn set_webhook(
        &self,
        webhook: &Webhook,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// Removes the client's endpoint; its pending messages fail. False when it had none.
    async fn remove_webhook(
        &self,
        client: ClientId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool>;

    async fn webhook(&self, client: ClientId) -> StoreResult<Option<Webhook>>;

    /// Takes up to `limit` pending messages that are due and that no server holds, holding each
    /// until `lease_until`: one server at a time attempts a message.
    async fn claim_deliveries(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;

    /// Records how an attempt on a message held with `lease` ended; false when the lease was
    /// lost. An endpoint gone (410) is also disabled, with `gone` (its event), and the client's
    /// other pending messages fail.
    async fn finish_delivery(
        &self,
        id: &str,
        lease: UnixTime,
        attempted: &Attempted,
        gone: Option<NewEvent>,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// Replaces an announcement held with `lease` by its messages (one per address and
    /// group), in one transaction: a crash leaves either the announcement or all of them.
    async fn expand_announcement(
        &self,
        id: &str,
        lease: UnixTime,
        messages: &[NewDelivery],
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// The client's webhook messages, newest first.
    async fn deliveries(
        &self,
        client: ClientId,
        status: Option<DeliveryStatus>,
        limit: i64,
    ) -> StoreResult<Vec<Delivery>>;

    /// Sends a message of the client's again: a failed or delivered one goes back in the queue,
    /// due now, with a fresh retry schedule; a pending one stays as it is. `None` when the
    /// client has no such message.
    async fn retry_delivery(
        &self,
        client: ClientId,
        id: &str,
        now: UnixTime,
    ) -> StoreResult<Option<Delivery>>;

    /// Messages waiting to be delivered (`/metrics`).
    async fn backlog(&self) -> StoreResult<i64>;

    /// Deletes ceremonies past their end and sessions past theirs (or idle since
    /// `idle_before`); returns how many of each.
    async fn purge(&self, now: UnixTime, idle_before: UnixTime) -> StoreResult<(u64, u64)>;
}

//! What the server sends out, and where each message stands: webhooks to the client that
//! created a request (Standard Webhooks v1), mail and chat messages telling approvers of a new
//! one. Every message is a row of the outbox, written with the change it tells of.

use std::fmt;

use super::ids::{ApprovalId, ClientId};
use crate::clock::UnixTime;

/// The webhook events a client may subscribe to (API.md), each the audit event that causes it.
pub const WEBHOOK_EVENTS: [(&str, super::EventKind); 6] = [
    ("approval.approved", super::EventKind::RequestApproved),
    ("approval.rejected", super::EventKind::RequestRejected),
    ("approval.expired", super::EventKind::RequestExpired),
    ("approval.cancelled", super::EventKind::RequestCancelled),
    ("approval.revoked", super::EventKind::RequestRevoked),
    ("receipt.redeemed", super::EventKind::ReceiptRedeemed),
];

/// The event of an announcement: a request approvers should hear of.
pub const REQUEST_CREATED: &str = "request.created";

/// A new message's id (`webhook-id`), as the triggers that write webhooks make them.
pub fn message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// Whether `name` is a webhook event type.
pub fn is_webhook_event(name: &str) -> bool {
    WEBHOOK_EVENTS.iter().any(|(n, _)| *n == name)
}

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// To the creating client's endpoint, signed.
    Webhook,
    /// To one approver's address.
    Email,
    /// To one group's chat webhook.
    Chat,
    /// A new request to tell approvers of: becomes one message per address and group.
    Announce,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Announce => "announce",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        [
            Channel::Webhook,
            Channel::Email,
            Channel::Chat,
            Channel::Announce,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet delivered; attempted when `next_at` comes.
    Pending,
    /// A receiver accepted it (2xx, or the mail server took it).
    Delivered,
    /// Given up: retries spent, or the endpoint is gone (410). A manual retry re-queues it.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// `msg_…`: the `webhook-id`, the same for every attempt.
    pub id: String,
    pub channel: Channel,
    pub client_id: Option<ClientId>,
    /// Email: the address; chat: the group.
    pub target: Option<String>,
    pub event: String,
    pub approval_id: ApprovalId,
    /// When the change it tells of happened.
    pub at: UnixTime,
    /// The body, fixed by the first attempt so that every retry sends the same.
    pub payload: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_at: UnixTime,
    /// Set while a server attempts it: the claim that attempt holds.
    pub lease_until: Option<UnixTime>,
    pub last_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<UnixTime>,
}

/// A message to add to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub channel: Channel,
    pub target: Option<String>,
    pub event: String,
    pub approval_id: ApprovalId,
    pub at: UnixTime,
    pub payload: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted {
    /// The body sent (kept, so that retries send the same).
    pub payload: String,
    /// The receiver's HTTP status, where there was one.
    pub code: Option<i64>,
    /// What went wrong, said without secrets; `None` when delivered.
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time.
    RetryAt(UnixTime),
    /// Give up on this message.
    Failed,
    /// Give up, and stop sending to this endpoint (it answered 410 Gone).
    EndpointGone,
}

/// A client's webhook endpoint, as stored (secrets sealed).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub client_id: ClientId,
    pub url: String,
    pub events: Vec<String>,
    /// Newest first; an older one signs too until its `until` (a rotation).
    pub secrets: Vec<SealedSecret>,
    pub created_at: UnixTime,
    pub disabled_at: Option<UnixTime>,
    pub disabled_why: Option<String>,
}

/// A webhook secret sealed by the master key, and until when it still signs (`None`: the
/// current one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedSecret {
    pub sealed: String,
    pub until: Option<UnixTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for c in [
            Channel::Webhook,
            Channel::Email,
            Channel::Chat,
            Channel::Announce,
        ] {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        for s in [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert!(is_webhook_event("receipt.redeemed"));
        assert!(!is_webhook_event("request.created"));
    }
}

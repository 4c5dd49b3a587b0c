//! What the audit chain records: which kind of event, who caused it, about which request. The
//! chain itself (hashing, verification) is `crate::audit`.

use std::fmt;

use super::ids::ApprovalId;

/// Every kind of audit event, as exported (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    RequestCreated,
    RequestExpired,
    RequestCancelled,
    RequestRevoked,
    CeremonyStarted,
    ApprovalRecorded,
    RejectionRecorded,
    DecisionRefused,
    RequestApproved,
    RequestRejected,
    ReceiptIssued,
    ReceiptRedeemed,
    RedemptionRefused,
    CloneSuspected,
    KeyRotated,
    KeyRetired,
    CredentialEnrolled,
    CredentialRevoked,
    ClientCreated,
    ClientRevoked,
    UserInvited,
    UserDisabled,
    UserGroupsChanged,
    WebhookSet,
    WebhookRemoved,
    WebhookDisabled,
    AdminChangeFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 27] = [
        EventKind::RequestCreated,
        EventKind::RequestExpired,
        EventKind::RequestCancelled,
        EventKind::RequestRevoked,
        EventKind::CeremonyStarted,
        EventKind::ApprovalRecorded,
        EventKind::RejectionRecorded,
        EventKind::DecisionRefused,
        EventKind::RequestApproved,
        EventKind::RequestRejected,
        EventKind::ReceiptIssued,
        EventKind::ReceiptRedeemed,
        EventKind::RedemptionRefused,
        EventKind::CloneSuspected,
        EventKind::KeyRotated,
        EventKind::KeyRetired,
        EventKind::CredentialEnrolled,
        EventKind::CredentialRevoked,
        EventKind::ClientCreated,
        EventKind::ClientRevoked,
        EventKind::UserInvited,
        EventKind::UserDisabled,
        EventKind::UserGroupsChanged,
        EventKind::WebhookSet,
        EventKind::WebhookRemoved,
        EventKind::WebhookDisabled,
        EventKind::AdminChangeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RequestCreated => "request_created",
            EventKind::RequestExpired => "request_expired",
            EventKind::RequestCancelled => "request_cancelled",
            EventKind::RequestRevoked => "request_revoked",
            EventKind::CeremonyStarted => "ceremony_started",
            EventKind::ApprovalRecorded => "approval_recorded",
            EventKind::RejectionRecorded => "rejection_recorded",
            EventKind::DecisionRefused => "decision_refused",
            EventKind::RequestApproved => "request_approved",
            EventKind::RequestRejected => "request_rejected",
            EventKind::ReceiptIssued => "receipt_issued",
            EventKind::ReceiptRedeemed => "receipt_redeemed",
            EventKind::RedemptionRefused => "redemption_refused",
            EventKind::CloneSuspected => "clone_suspected",
            EventKind::KeyRotated => "key_rotated",
            EventKind::KeyRetired => "key_retired",
            EventKind::CredentialEnrolled => "credential_enrolled",
            EventKind::CredentialRevoked => "credential_revoked",
            EventKind::ClientCreated => "client_created",
            EventKind::ClientRevoked => "client_revoked",
            EventKind::UserInvited => "user_invited",
            EventKind::UserDisabled => "user_disabled",
            EventKind::UserGroupsChanged => "user_groups_changed",
            EventKind::WebhookSet => "webhook_set",
            EventKind::WebhookRemoved => "webhook_removed",
            EventKind::WebhookDisabled => "webhook_disabled",
            EventKind::AdminChangeFailed => "admin_change_failed",
        }
    }

    /// Events a security team watches for: logged as security events besides being chained.
    pub fn is_security(self) -> bool {
        matches!(
            self,
            EventKind::DecisionRefused
                | EventKind::RedemptionRefused
                | EventKind::RequestRevoked
                | EventKind::CloneSuspected
                | EventKind::CredentialRevoked
                | EventKind::ClientRevoked
                | EventKind::UserDisabled
                | EventKind::KeyRetired
                | EventKind::AdminChangeFailed
                // Where receipts are sent to.
                | EventKind::WebhookSet
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused an event, as exported (`actor`): `system`, `operator` (the CLI on the host),
/// `client:NAME` or `user:USERNAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    System,
    Operator,
    Client(String),
    User(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::System => f.write_str("system"),
            Actor::Operator => f.write_str("operator"),
            Actor::Client(name) => write!(f, "client:{name}"),
            Actor::User(name) => write!(f, "user:{name}"),
        }
    }
}

/// An event to record with a state change, in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub actor: Actor,
    pub approval_id: Option<ApprovalId>,
    pub data: serde_json::Value,
    /// The console change this event's change carries out, recorded with it.
    pub carries: Option<Box<CarriedOut>>,
}

/// A console change carried out (or found impossible), recorded in the transaction that made
/// it: the record's key is the change's request, so a second attempt to carry it out fails on
/// it and rolls back with everything it did. The change's receipt is spent with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedOut {
    pub change: ApprovalId,
    /// What it produced, without secrets.
    pub outcome: Option<serde_json::Value>,
    /// Why it could not be made (then there is no outcome).
    pub failure: Option<String>,
    /// The secret it produced, sealed, for the proposer to read once.
    pub sealed_secret: Option<Vec<u8>>,
}

impl NewEvent {
    pub fn new(kind: EventKind, actor: Actor, data: serde_json::Value) -> NewEvent {
        NewEvent {
            kind,
            actor,
            approval_id: None,
            data,
            carries: None,
        }
    }

    /// This event records the console change `carried` as well. It is about that change,
    /// unless it is about another request already (then its data names the change).
    pub fn carrying(mut self, carried: CarriedOut) -> NewEvent {
        match (self.approval_id, &mut self.data) {
            (None, _) => self.approval_id = Some(carried.change),
            (Some(_), serde_json::Value::Object(data)) => {
                data.insert("change".into(), carried.change.to_string().into());
            }
            (Some(_), _) => {}
        }
        self.carries = Some(Box::new(carried));
        self
    }

    pub fn about(mut self, approval_id: ApprovalId) -> NewEvent {
        self.approval_id = Some(approval_id);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.as_str()), "{k} twice");
            assert!(k
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn actors_read_as_exported() {
        assert_eq!(Actor::System.to_string(), "system");
        assert_eq!(Actor::Operator.to_string(), "operator");
        assert_eq!(Actor::Client("demo".into()).to_string(), "client:demo");
        assert_eq!(Actor::User("bob".into()).to_string(), "user:bob");
    }
}

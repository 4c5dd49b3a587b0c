//! An approval request: what was asked, what the policy requires of it, and where it stands.

use serde::{Deserialize, Serialize};

use super::ids::{ApprovalId, ClientId};
use super::initiator::Initiator;
use super::requirement::Requirement;
use super::text::plain;
use crate::clock::UnixTime;
use crate::tx_hash::TxHash;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
    Cancelled,
    /// Approved, then withdrawn by its creating service before its receipt was redeemed.
    Revoked,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Approved,
        Status::Rejected,
        Status::Expired,
        Status::Cancelled,
        Status::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A request is decided once: a pending request moves to any other status, and every move
    /// is final but one: an approval may still be revoked (until its receipt is redeemed, which
    /// the store checks).
    pub fn can_become(self, next: Status) -> bool {
        match self {
            Status::Pending => next != Status::Pending && next != Status::Revoked,
            Status::Approved => next == Status::Revoked,
            _ => false,
        }
    }
}

/// The creating service's risk assessment, which rules may escalate on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Risk {
    #[cfg_attr(feature = "server", schema(maximum = 100))]
    pub score: u32,
    #[serde(default)]
    pub reasons: Vec<String>,
}

pub const MAX_RISK_SCORE: u32 = 100;
const MAX_REASONS: usize = 20;
const MAX_REASON_CHARS: usize = 200;

impl Risk {
    pub fn check(&self) -> Result<(), String> {
        if self.score > MAX_RISK_SCORE {
            return Err(format!("risk.score must be between 0 and {MAX_RISK_SCORE}"));
        }
        if self.reasons.len() > MAX_REASONS {
            return Err(format!("risk.reasons holds at most {MAX_REASONS} entries"));
        }
        self.reasons.iter().try_for_each(|r| {
            plain(r, MAX_REASON_CHARS).map_err(|e| format!("each risk reason {e}"))
        })
    }
}

/// An approval request as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: ApprovalId,
    pub client_id: ClientId,
    pub action: String,
    /// RFC 8785 form of the transaction: what was hashed and what the page shows.
    pub transaction_jcs: String,
    pub tx_hash: TxHash,
    pub initiator: Initiator,
    pub audience: String,
    pub risk: Option<Risk>,
    /// Hash of the policy document in force when the request was made.
    pub policy_rev: String,
    pub required: Requirement,
    pub status: Status,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub decided_at: Option<UnixTime>,
    /// Whether the initiator may decide, as the policy said when the request was made.
    pub self_approval: bool,
    /// Receipt lifetime in seconds, as the policy said when the request was made.
    pub receipt_ttl: i64,
}

impl Request {
    /// Where the request stands at `now`: a pending request whose time is up is expired, even
    /// before anyone has recorded that.
    pub fn status_at(&self, now: UnixTime) -> Status {
        if self.status == Status::Pending && self.expires_at <= now {
            Status::Expired
        } else {
            self.status
        }
    }

    /// The transaction, parsed from its stored canonical form by the parser that hashed it, so
    /// that nothing reads it otherwise than the hash binds it.
    pub fn transaction(&self) -> Result<crate::jcs::Value, crate::jcs::CanonError> {
        crate::jcs::parse(self.transaction_jcs.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_decided_once_and_only_an_approval_is_revoked() {
        for next in Status::ALL {
            assert_eq!(
                Status::Pending.can_become(next),
                !matches!(next, Status::Pending | Status::Revoked)
            );
            assert_eq!(Status::Approved.can_become(next), next == Status::Revoked);
            for from in Status::ALL
                .into_iter()
                .filter(|s| !matches!(s, Status::Pending | Status::Approved))
            {
                assert!(!from.can_become(next), "{from:?} -> {next:?}");
            }
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("Pending"), None);
    }

    #[test]
    fn risk_is_checked() {
        let ok = Risk {
            score: 100,
            reasons: vec!["new payee".into()],
        };
        assert!(ok.check().is_ok());
        assert!(Risk {
            score: 101,
            ..ok.clone()
        }
        .check()
        .is_err());
        assert!(Risk {
            reasons: vec!["x\u{202E}".into()],
            ..ok.clone()
        }
        .check()
        .is_err());
        assert!(Risk {
            reasons: vec!["r".into(); 21],
            ..ok
        }
        .check()
        .is_err());
    }

    #[test]
    fn initiators_compare_in_one_form() {
        let i = Initiator::parse(" Dave").unwrap();
        assert_eq!(i.id(), " Dave");
        assert!(i.is("dave"));
        assert!(i.is("DAVE"));
        assert!(!i.is("davey"));
        assert!(Initiator::parse("dave\u{200B}").is_err());
        assert!(Initiator::parse("").is_err());
    }
}

//! Decisions on requests: who decided what and when (a [`Vote`]), and the passkey assertion
//! that proves it ([`DecisionRecord`]), which goes into the receipt as evidence.

use super::ids::{ApprovalId, CredentialId, UserId};
use super::requirement::Requirement;
pub use crate::challenge::Decision;
use crate::clock::UnixTime;

/// Who decided what, and when: what lists and pages show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub user_id: UserId,
    pub username: String,
    pub display_name: String,
    pub decision: Decision,
    pub at: UnixTime,
    /// The stage the decision went to (see `Requirement::place`).
    pub stage: String,
}

/// A verified decision with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub approval_id: ApprovalId,
    pub vote: Vote,
    pub credential_id: CredentialId,
    pub nonce: [u8; 32],
    pub authenticator_data: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub signature: Vec<u8>,
    /// The credential's public key as a JWK, so evidence re-verifies without the database.
    pub public_jwk: serde_json::Value,
    pub user_verified: bool,
}

impl DecisionRecord {
    /// This decision placed in its stage over the earlier decisions `prior` (see
    /// [`Requirement::place`]), `candidates` being the stages the person may decide in.
    pub fn placed(
        &self,
        required: &Requirement,
        prior: &[DecisionRecord],
        candidates: &[String],
    ) -> DecisionRecord {
        let mut placed = self.clone();
        placed.vote.stage = required.place(prior.iter().map(|d| &d.vote), candidates);
        placed
    }
}

/// Decisions in the order receipts list them: by time, then by username.
pub fn receipt_order(decisions: &mut [DecisionRecord]) {
    decisions.sort_by(|a, b| (a.vote.at, &a.vote.username).cmp(&(b.vote.at, &b.vote.username)));
}

/// How many of `votes` approve.
pub fn approvals(votes: impl IntoIterator<Item = Decision>) -> u32 {
    let n = votes
        .into_iter()
        .filter(|d| *d == Decision::Approve)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

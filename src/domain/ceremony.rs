//! WebAuthn ceremonies in flight. Each is stored (any replica can finish what another started)
//! and consumed once; what finishing needs is typed per kind.

use super::ids::{ApprovalId, CeremonyId, CredentialId, UserId};
use super::Decision;
use crate::clock::UnixTime;

/// How long a ceremony (and the browser's prompt) may take.
pub const CEREMONY_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq)]
pub struct Ceremony {
    pub id: CeremonyId,
    pub state: CeremonyState,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CeremonyState {
    /// Registering a passkey through an invitation.
    Enrol {
        user: UserId,
        /// SHA-256 of the invitation token the ceremony was started with.
        invitation: [u8; 32],
        /// webauthn-rs's registration state (its own serialised form; opaque here).
        registration: String,
    },
    /// Signing in, with a random challenge.
    SignIn {
        challenge: [u8; 32],
        /// Username-first sign-in names the credentials it offered; a discoverable one, none.
        allow: Option<Vec<CredentialId>>,
    },
    /// Deciding one request. The challenge is derived from the request, the decision and the
    /// nonce (`crate::challenge`), so only the nonce is kept.
    Decision {
        user: UserId,
        approval: ApprovalId,
        decision: Decision,
        nonce: [u8; 32],
        allow: Vec<CredentialId>,
        /// The stage the person asked to decide in, if they named one.
        stage: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    Enrol,
    SignIn,
    Decision,
}

impl CeremonyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Enrol => "enroll",
            CeremonyKind::SignIn => "signin",
            CeremonyKind::Decision => "decision",
        }
    }
}

impl CeremonyState {
    pub fn kind(&self) -> CeremonyKind {
        match self {
            CeremonyState::Enrol { .. } => CeremonyKind::Enrol,
            CeremonyState::SignIn { .. } => CeremonyKind::SignIn,
            CeremonyState::Decision { .. } => CeremonyKind::Decision,
        }
    }

    /// The person who may finish it, where one is bound.
    pub fn user(&self) -> Option<UserId> {
        match self {
            CeremonyState::Enrol { user, .. } | CeremonyState::Decision { user, .. } => Some(*user),
            CeremonyState::SignIn { .. } => None,
        }
    }

    /// The request a decision ceremony is bound to.
    pub fn approval(&self) -> Option<ApprovalId> {
        match self {
            CeremonyState::Decision { approval, .. } => Some(*approval),
            _ => None,
        }
    }
}

/// What a finish expects a ceremony to be: a ceremony taken with another kind, person or
/// request is left in place (so nobody can spend somebody else's by posting its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub kind: CeremonyKind,
    pub user: Option<UserId>,
    pub approval: Option<ApprovalId>,
}

impl Expect {
    pub fn matches(&self, state: &CeremonyState) -> bool {
        state.kind() == self.kind && state.user() == self.user && state.approval() == self.approval
    }
}

#[derive(Debug, PartialEq)]
pub enum Taken {
    Ceremony(Ceremony),
    /// It exists but belongs to another kind, request or person: left in place.
    Mismatch,
    /// Never existed, or consumed already.
    Gone,
}

//! The decision transaction's inputs and outcomes, and the rules it applies ([`Judge`]),
//! supplied by the service that owns them.

use crate::clock::UnixTime;
use crate::domain::{
    CeremonyId, Credential, CredentialId, DecisionRecord, NewEvent, ReceiptId, Request, Status,
    Taken, UserId,
};

/// What a decision's options are judged on, in one read: the request, whether this person has
/// decided it, and their usable passkeys (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct OptionsRead {
    pub request: Request,
    pub decided: bool,
    pub passkeys: Vec<CredentialId>,
}

/// What a decision's finish is judged on, in one read: the ceremony (as `take_ceremony` would
/// classify it), the passkey the assertion names, and the request.
#[derive(Debug, PartialEq)]
pub struct FinishRead {
    pub ceremony: Taken,
    pub credential: Option<Credential>,
    pub request: Option<Request>,
}

/// A decision to record: verified, with the ceremony it consumes and the signature counter
/// its assertion carried.
#[derive(Debug, Clone)]
pub struct NewDecision {
    /// The decision; its stage is placed by the store, under the request's lock.
    pub record: DecisionRecord,
    /// The stages the person may decide in, in order (one, when they asked for it): the
    /// decision goes to the first that still needs approvals (`Requirement::place`).
    pub stages: Vec<String>,
    pub ceremony: CeremonyId,
    pub counter: u32,
    /// Recorded if the counter did not advance.
    pub on_clone: NewEvent,
}

#[derive(Debug, PartialEq)]
pub enum DecisionOutcome {
    /// Recorded; the request as it now stands and its decisions in receipt order.
    Recorded(Box<Request>, Vec<DecisionRecord>),
    AlreadyDecided,
    /// The request was no longer pending (its status is for the caller to read).
    NotPending,
    /// Another finish consumed the ceremony first.
    CeremonyConsumed,
    /// The signature counter did not advance: the credential is now flagged, the sessions it
    /// opened are ended, and that is audited.
    PossibleClone,
}

/// The rules a decision transaction applies, supplied by the service that owns them: the
/// store locks, counts and writes; the judge says what the decisions amount to and signs.
pub trait Judge: Send + Sync {
    /// Whether `request`, pending, can hold decisions already: if not (with a quorum of one,
    /// any decision decides a request), the transaction need not read them.
    fn may_have_decisions(&self, request: &Request) -> bool;
    /// The status `request` takes with `decisions` (the new one included, receipt order), if
    /// they decide it.
    fn verdict(&self, request: &Request, decisions: &[DecisionRecord]) -> Option<Status>;
    /// The receipt for an approved request, signed with `key` over `approvals`.
    fn issue(
        &self,
        request: &Request,
        approvals: &[DecisionRecord],
        key: &SealedKey,
        now: UnixTime,
    ) -> Result<IssuedReceipt, String>;
    /// The events that record `decision` and what it did (`request` as it now stands).
    fn events(
        &self,
        request: &Request,
        decision: &DecisionRecord,
        receipt: Option<(&IssuedReceipt, &str)>,
    ) -> Vec<NewEvent>;
    /// The decision as judged ahead, over what the service read before the transaction.
    fn plan(&self) -> Option<&Plan>;
}

/// A decision judged, signed and described ahead by the service. A store may record it as it
/// stands (PostgreSQL does, in one round trip) when, under the request's lock, the request
/// holds exactly the earlier decisions it was judged over and the receipt's key is still the
/// one to sign with; otherwise it asks the [`Judge`] again.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Who had decided before (the judgement holds only for exactly these).
    pub prior: Vec<UserId>,
    /// The stage the decision was placed in, over those earlier decisions.
    pub stage: String,
    /// The request once the decision is recorded.
    pub request: Request,
    /// Its decisions then, the new one included (receipt order).
    pub decisions: Vec<DecisionRecord>,
    /// The receipt, if the decision approves the request, and the key it was signed with.
    pub receipt: Option<(IssuedReceipt, String)>,
    /// What records the decision and what it did.
    pub events: Vec<NewEvent>,
}

/// A signing key as stored: its id and its private half sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    pub kid: String,
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedReceipt {
    pub jti: ReceiptId,
    pub token: String,
    pub expires_at: UnixTime,
}

//! Persistence: one [`Store`] trait of operations, one implementation per database
//! ([`sqlite`], [`postgres`]), each with its own SQL and its own migrations folder, and one
//! contract test suite (`tests/store.rs`) run against both.
//!
//! An operation is a whole unit of work, never a statement: every state change commits together
//! with its audit event, and every single-use transition (a ceremony, an invitation, a receipt,
//! a request's status) is one conditional statement, never a read followed by a write. No
//! policy lives here: where a transaction needs a rule (the decision's quorum, its receipt) the
//! service passes it in ([`Judge`]).

mod arrivals;
mod console;
mod decision;
mod lists;
mod outbox;
mod postgres;
mod rows;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::clock::UnixTime;
use crate::domain::{
    ApprovalId, Ceremony, CeremonyId, Client, ClientId, Credential, CredentialId, DecisionRecord,
    InvitationState, NewCredential, NewEvent, ReceiptId, Request, Rights, Taken, User, UserId,
    Vote,
};
use crate::signing::NewSigningKey;

pub use crate::domain::ceremony::Expect;
pub(crate) use arrivals::arrived;
pub use arrivals::{Arrivals, Expected};
pub use console::{ChangeRecord, ConsoleStore, CARRIED_OUT_ALREADY};
pub use decision::{
    DecisionOutcome, FinishRead, IssuedReceipt, Judge, NewDecision, OptionsRead, Plan, SealedKey,
};
pub use lists::{Cursor, InboxOf, Page, RequestFilter};
pub use outbox::OutboxStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now; the caller answers 503 and may retry.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the write (a client name that exists, a disabled user).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Stored data that does not decode: never expected, always logged.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
    #[error(transparent)]
    Audit(#[from] crate::audit::ChainError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens the store a URL names (`sqlite://PATH` or `postgres://…`) and applies its pending
/// migrations.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url)?))
    } else {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    }
}

/// An `Idempotency-Key` with the hash of the request it came with and the response to replay.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: [u8; 32],
    pub response: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// The same key and request came before: here is the first response.
    Replayed(String),
    /// The same key came before with another request.
    KeyConflict,
    /// The client was revoked (on some replica) since it was authenticated: nothing stored.
    ClientRevoked,
}

/// What became of a change the creating client asked for (a cancellation, a revocation).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientChange {
    /// Made; the request as it now stands.
    Made(Request),
    /// Not possible from where the request stands (as read after the attempt): nothing changed.
    Refused(Request),
    NotFound,
    /// The client was revoked since it was authenticated: nothing changed.
    ClientRevoked,
}

/// A request with who decided it so far and, once approved, its receipt: everything its
/// creating service reads, in one read.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub request: Request,
    pub votes: Vec<Vote>,
    /// Once approved, and until revoked.
    pub receipt: Option<String>,
    /// Whether the client that created it is still active (not revoked), as of this read.
    pub client_active: bool,
    /// While it is pending, the people who could decide it (filled by the service that reads
    /// it, `service::decide::who_may_decide`; the store leaves it empty).
    pub able: Vec<User>,
}

/// A request in a person's inbox or history, with every decision on it so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub request: Request,
    pub votes: Vec<Vote>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub public_jwk: serde_json::Value,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    pub jti: ReceiptId,
    pub approval_id: ApprovalId,
    pub kid: String,
    pub audience: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub redeemed_at: Option<UnixTime>,
    pub redeemed_by: Option<String>,
    /// When its creating service revoked the approval; a revoked receipt is never redeemed.
    pub revoked_at: Option<UnixTime>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    Redeemed(ReceiptRow),
    AlreadyRedeemed(ReceiptRow),
    Revoked(ReceiptRow),
    /// No such receipt, or one whose signing key has been retired.
    Unknown,
    /// The client was revoked since it was authenticated: nothing changed.
    ClientRevoked,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RetireOutcome {
    Retired,
    NotFound,
    /// The newest active key signs new receipts; rotate first.
    InUse,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EnrolOutcome {
    Enrolled,
    InvitationUsed,
    InvitationExpired,
    CredentialExists,
}

/// An invitation to store: the user is created (or re-invited) with it.
#[derive(Debug, Clone)]
pub struct NewInvitation<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub groups: &'a [String],
    /// Kept as it was when `None`.
    pub email: Option<&'a str>,
    pub token_hash: [u8; 32],
    pub expires_at: UnixTime,
}

/// A session to start, on the passkey that opened it: revoking or flagging that passkey ends it.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: [u8; 32],
    pub user_id: UserId,
    pub credential_id: CredentialId,
    pub expires_at: UnixTime,
    /// A session presented before sign-in, ended with it so that a planted id never survives.
    pub replaces: Option<[u8; 32]>,
}

/// What usable passkeys look like across all people: the lengths of their ids and how many
/// each enabled person holds. Decoy sign-in options are drawn from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialShapes {
    /// Raw byte lengths.
    pub id_lengths: Vec<usize>,
    pub per_person: Vec<usize>,
}

impl CredentialShapes {
    /// From the stored (base64url) id lengths and per-person counts a query returns.
    fn from_counts(text_lengths: &[i64], per_person: &[i64]) -> CredentialShapes {
        let to_usize = |n: &i64| usize::try_from(*n).ok();
        CredentialShapes {
            id_lengths: text_lengths
                .iter()
                .filter_map(to_usize)
                .map(|n| n * 3 / 4)
                .collect(),
            per_person: per_person.iter().filter_map(to_usize).collect(),
        }
    }
}

/// What waiters are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This request's change has committed.
    Request(ApprovalId),
    /// Notices may have been lost (a listener lost its connection): anything may have changed.
    Unknown,
}

/// Everything the services need from a database: one trait (with a part per area, so each
/// implementation keeps each area in its own file), one implementation per database.
#[async_trait]
pub trait Store:
    RequestStore
    + DecisionStore
    + ReceiptStore
    + PeopleStore
    + ClientStore
    + AuditStore
    + OutboxStore
    + ConsoleStore
{
    /// `/readyz`: can the store answer a query right now?
    async fn ping(&self) -> StoreResult<()>;

    /// Requests as they change, here and (PostgreSQL) on every replica. Subscribe before
    /// reading the state you wait on.
    fn subscribe(&self) -> broadcast::Receiver<Change>;

    /// Where to count writes on their way, if this store groups commits and waits for company.
    fn arrivals(&self) -> Option<Arrivals> {
        None
    }

    /// Where this store records how long its commits take, if it does (`/metrics`).
    fn commit_latency(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        None
    }
}

/// Approval requests: creating, reading, expiring, cancelling, and the approvers' lists.
#[async_trait]
pub trait RequestStore: Send + Sync + 'static {
    /// Stores a new pending request with its event and, when `announce`, the announcement that
    /// tells its approvers (the outbox); with an idempotency key, replays the first response of
    /// a repeat instead.
    async fn create_request(
        &self,
        request: &Request,
        idempotency: Option<&Idempotency>,
        event: NewEvent,
        announce: bool,
    ) -> StoreResult<Created>;

    /// What an earlier request with this idempotency key got, if one did: the hash of that
    /// request and its response.
    async fn prior_response(
        &self,
        client: ClientId,
        key: &str,
    ) -> StoreResult<Option<([u8; 32], String)>>;

    async fn request(&self, id: ApprovalId) -> StoreResult<Option<Request>>;

    /// The request, its decisions and its receipt, in one read.
    async fn snapshot(&self, id: ApprovalId) -> StoreResult<Option<Snapshot>>;

    /// Marks a pending request whose time is up expired, with `event`; returns it as it now
    /// stands.
    async fn expire_request(
        &self,
        id: ApprovalId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<Option<Request>>;

    /// The creating client withdraws a pending, unexpired request.
    async fn cancel_request(
        &self,
        id: ApprovalId,
        client: ClientId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<ClientChange>;

    /// The creating client (`None`: an admin's console change, whoever created it) revokes an
    /// approved request whose receipt is unredeemed: the request becomes `revoked` and its
    /// receipt unredeemable, in one step that a concurrent redemption of that receipt either
    /// precedes or loses to.
    async fn revoke_request(
        &self,
        id: ApprovalId,
        client: Option<ClientId>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<ClientChange>;

    /// Pending, unexpired requests this person may decide and has not, newest first.
    async fn inbox(&self, of: &InboxOf<'_>, now: UnixTime, page: Page) -> StoreResult<Vec<Listed>>;

    /// Requests this person decided, most recent decision first; the cursor is the decision's.
    async fn history(&self, user: UserId, page: Page) -> StoreResult<Vec<Listed>>;

    /// Every request `filter` admits, newest first, with its decisions (the console's list).
    async fn all_requests(&self, filter: &RequestFilter, page: Page) -> StoreResult<Vec<Listed>>;

    /// The pending requests created at or after `since`, newest first, at most `limit`: how
    /// the live pages' hub hears of requests made on other replicas (creating one sends no
    /// notice). One query on the partial index of pending requests.
    async fn pending_since(&self, since: UnixTime, limit: u32) -> StoreResult<Vec<ApprovalId>>;

    /// Pending requests whose time is up by `now`, the earliest due first, at most `limit`:
    /// what the sweeper expires.
    async fn due_requests(&self, now: UnixTime, limit: i64) -> StoreResult<Vec<ApprovalId>>;
}

/// WebAuthn ceremonies and the decision transaction.
#[async_trait]
pub trait DecisionStore: Send + Sync + 'static {
    /// Stores a ceremony (with its audit event, if any) and ends those whose time is up.
    async fn start_ceremony(&self, ceremony: &Ceremony, event: Option<NewEvent>)
        -> StoreResult<()>;

    /// What a decision's options need, in one read (one round trip on PostgreSQL); `None`
    /// when there is no such request.
    async fn options_read(&self, id: ApprovalId, user: UserId) -> StoreResult<Option<OptionsRead>>;

    /// What a decision's finish needs before it verifies, in one read (one round trip on
    /// PostgreSQL): the ceremony without consuming it, the passkey `credential` (none asked,
    /// none read) and the request.
    async fn finish_read(
        &self,
        ceremony: CeremonyId,
        expect: Expect,
        credential: Option<&CredentialId>,
        id: ApprovalId,
    ) -> StoreResult<FinishRead>;

    /// Consumes a ceremony in one statement if it is what the caller expects; of any number
    /// of concurrent calls exactly one gets it.
    async fn take_ceremony(&self, id: CeremonyId, expect: Expect) -> StoreResult<Taken>;

    /// Ends a ceremony whatever became of it; false when it had been consumed already.
    async fn discard_ceremony(&self, id: CeremonyId) -> StoreResult<bool>;

    /// A request's decisions in receipt order.
    async fn decisions(&self, id: ApprovalId) -> StoreResult<Vec<DecisionRecord>>;

    /// Records a verified decision in one transaction: takes the pending request's row (so
    /// concurrent last approvals, on any replica, take turns), consumes the ceremony, advances
    /// the passkey's counter, inserts the decision and, when `judge` says the decisions decide
    /// the request, moves it and (approved) stores the receipt `judge` signs — all audited.
    async fn record_decision(
        &self,
        decision: &NewDecision,
        judge: Arc<dyn Judge>,
        now: UnixTime,
    ) -> StoreResult<DecisionOutcome>;
}

/// Receipts and the keys that sign them.
#[async_trait]
pub trait ReceiptStore: Send + Sync + 'static {
    /// Marks a receipt redeemed by `client` (its name), with `event`: of any number of
    /// concurrent calls, on any replica, exactly one succeeds. Only while the client is active
    /// and the receipt's signing key is not retired.
    async fn redeem(
        &self,
        jti: ReceiptId,
        client: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<RedeemOutcome>;

    /// The receipt issued for a request, if any.
    async fn receipt_of(&self, id: ApprovalId) -> StoreResult<Option<ReceiptRow>>;

    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>>;

    /// The key new receipts are signed with: the newest that is not retired.
    async fn active_key(&self) -> StoreResult<Option<SealedKey>>;

    /// Adds a signing key with `event`: at start only when none is active (`only_if_none`), or
    /// on rotation. Returns whether it was added.
    async fn add_signing_key(
        &self,
        key: &NewSigningKey,
        only_if_none: bool,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// Retires a key with `event`: its receipts stop verifying and it leaves the JWKS.
    async fn retire_key(
        &self,
        kid: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<RetireOutcome>;
}

/// Approvers: invitations, passkeys and sessions.
#[async_trait]
pub trait PeopleStore: Send + Sync + 'static {
    /// Creates the user if new (or updates their name and groups) with a one-time invitation.
    async fn invite_user(
        &self,
        invitation: &NewInvitation<'_>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<User>;

    /// The invitation's user and whether it can still be used.
    async fn invitation(
        &self,
        token_hash: &[u8; 32],
        now: UnixTime,
    ) -> StoreResult<Option<(User, InvitationState)>>;

    /// Spends the invitation and stores the passkey in one transaction, with `event`.
    async fn enrol(
        &self,
        token_hash: &[u8; 32],
        user: &User,
        credential: &NewCredential,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<EnrolOutcome>;

    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    async fn users(&self) -> StoreResult<Vec<User>>;
    async fn has_users(&self) -> StoreResult<bool>;

    /// Disables a user and ends their sessions, with `event`; false when no active user has
    /// that name.
    async fn disable_user(
        &self,
        username: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// Replaces a user's groups, with `event`; false when there is no such user.
    async fn set_groups(
        &self,
        username: &str,
        groups: &[String],
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool>;

    async fn credential(&self, id: &CredentialId) -> StoreResult<Option<Credential>>;
    async fn credentials_of(&self, user: UserId) -> StoreResult<Vec<Credential>>;
    /// The enabled people in any of `groups` who hold a usable passkey (not revoked, not
    /// flagged), by username: who can decide a request of those groups.
    async fn able_approvers(&self, groups: &[String]) -> StoreResult<Vec<User>>;

    /// The usable passkeys of the enabled person with this username (none if there is no such
    /// person): one read whether or not they exist.
    async fn sign_in_credentials(&self, username: &str) -> StoreResult<Vec<CredentialId>>;

    async fn credential_shapes(&self) -> StoreResult<CredentialShapes>;

    /// Revokes a passkey and ends the sessions it opened, with `event`; false when the user has
    /// no such active passkey.
    async fn revoke_credential(
        &self,
        username: &str,
        credential: &CredentialId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool>;

    /// Records a verified sign-in's counter: it only moves forward, in one statement. When it
    /// does not (both non-zero), the passkey is flagged as a possible clone, the sessions it
    /// opened end, and `on_clone` is recorded; returns false.
    async fn advance_counter(
        &self,
        credential: &CredentialId,
        counter: u32,
        on_clone: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool>;

    async fn create_session(&self, session: &NewSession, now: UnixTime) -> StoreResult<()>;

    /// The signed-in, enabled user of a live session (within both the idle limit and its
    /// absolute end, on a passkey still usable), marking it seen.
    async fn session_user(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<User>>;

    /// Like [`PeopleStore::session_user`], without marking the session seen: whether a session
    /// is still live, asked by something that is not the person's own use (an open event
    /// stream), so that it does not keep the session from idling out.
    async fn session_alive(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<User>>;

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()>;
}

/// Service clients and their API keys.
#[async_trait]
pub trait ClientStore: Send + Sync + 'static {
    /// Creates a client with `event`; `Conflict` when the name is taken.
    async fn create_client(
        &self,
        name: &str,
        key_hash: &[u8; 32],
        rights: &Rights,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<Client>;

    /// The client holding this key, revoked or not. A store may answer from memory; the
    /// operations a client then asks for check again that it is not revoked, in their own
    /// statements, so a revocation on any replica holds from the moment it commits.
    async fn client_by_key_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<Client>>;

    /// Whether the client exists and is not revoked, read now (never from memory).
    async fn client_active(&self, id: ClientId) -> StoreResult<bool>;

    async fn clients(&self) -> StoreResult<Vec<Client>>;
    async fn has_clients(&self) -> StoreResult<bool>;

    /// Revokes a client's key at once, with `event`; false when no active client has that name.
    async fn revoke_client(&self, name: &str, event: NewEvent, now: UnixTime) -> StoreResult<bool>;
}

/// The audit chain.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Records an event that goes with no other change (a refusal).
    async fn record(&self, event: NewEvent, now: UnixTime) -> StoreResult<()>;

    /// Events with `seq > after`, oldest first.
    async fn audit_page(
        &self,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<crate::audit::AuditEvent>>;

    /// The last sequence number and hash, as the appenders recorded them.
    async fn audit_head(&self) -> StoreResult<(i64, [u8; 32])>;
}

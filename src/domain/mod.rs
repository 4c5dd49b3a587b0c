//! What countersign is about, as types: requests and where they stand, decisions with their
//! evidence, ceremonies, people, clients, audit events and the one list of refusals. Below the
//! services and the stores: it holds no I/O.

pub mod admin_change;
pub mod audit;
pub mod ceremony;
pub mod client;
pub mod decision;
pub mod delivery;
pub mod ids;
pub mod initiator;
pub mod people;
pub mod refusal;
pub mod request;
pub mod requirement;
pub mod text;

pub use admin_change::{
    lockout, Able, AdminChange, InvalidChange, Shortfall, ADMIN_ACTION, RESERVED_CLIENT,
};
pub use audit::{Actor, CarriedOut, EventKind, NewEvent};
pub use ceremony::{Ceremony, CeremonyKind, CeremonyState, Taken, CEREMONY_SECS};
pub use client::{Client, NewKey, Rights};
pub use decision::{Decision, DecisionRecord, Vote};
pub use delivery::{
    AttemptOutcome, Attempted, Channel, Delivery, DeliveryStatus, NewDelivery, SealedSecret,
    Webhook,
};
pub use ids::{ApprovalId, CeremonyId, ClientId, CredentialId, InvalidId, ReceiptId, UserId};
pub use initiator::{Initiator, InitiatorType};
pub use people::{Credential, InvitationState, NewCredential, User};
pub use refusal::Refusal;
pub use request::{Request, Risk, Status};
pub use requirement::{groups_of, Requirement, Stage, Unmet, DEFAULT_STAGE};

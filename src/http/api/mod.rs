//! The JSON API (API.md): the service API, the approver API, the admin console's API and the
//! public endpoints.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod decisions;
pub mod enroll;
pub mod events;
pub mod me;
pub mod public;
pub mod receipts;
pub mod session;
pub mod webhooks;
pub use crate::service::views;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{ApprovalId, CeremonyId, Refusal};

use super::problem::ApiError;

/// A WebAuthn ceremony begun: its id, to send back with the finish, and the options to pass
/// to `navigator.credentials`.
#[derive(Serialize, ToSchema)]
pub struct Started {
    #[schema(value_type = String)]
    pub ceremony: CeremonyId,
    /// `PublicKeyCredentialCreationOptions` or `…RequestOptions` (WebAuthn's JSON form).
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    pub public_key: Value,
    /// A decision's nonce (base64url), which the challenge is derived from with the request's
    /// `tx_hash` and the decision: the page recomputes the challenge before it asks the
    /// passkey.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// A request id from a path: anything else names nothing (404), and the store is not asked.
pub fn approval_id(text: &str) -> Result<ApprovalId, ApiError> {
    ApprovalId::parse(text).map_err(|_| Refusal::NotFound.into())
}

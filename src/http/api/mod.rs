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

use crate::domain::{ApprovalId, Refusal};

use super::problem::ApiError;

/// A request id from a path: anything else names nothing (404), and the store is not asked.
pub fn approval_id(text: &str) -> Result<ApprovalId, ApiError> {
    ApprovalId::parse(text).map_err(|_| Refusal::NotFound.into())
}

//! The creating service withdraws a pending request.

use serde_json::json;

use super::read_request::settle;
use super::{not_pending, Result, Services};
use crate::domain::{Actor, ApprovalId, Client, EventKind, NewEvent, Refusal};
use crate::store::{CancelOutcome, Snapshot};

/// `POST /v1/approvals/{id}/cancel`: pending → cancelled; anything else is `not_pending`.
#[tracing::instrument(skip(svc, client), fields(client = %client.name))]
pub async fn cancel_request(svc: &Services, client: &Client, id: ApprovalId) -> Result<Snapshot> {
    let now = svc.clock.now();
    let event = NewEvent::new(
        EventKind::RequestCancelled,
        Actor::Client(client.name.clone()),
        json!({}),
    )
    .about(id);
    match svc.store.cancel_request(id, client.id, event, now).await? {
        CancelOutcome::Cancelled(_) => match svc.store.snapshot(id).await? {
            Some(snap) => Ok(snap),
            None => Err(Refusal::NotFound.into()),
        },
        CancelOutcome::NotPending(request) => {
            Err(not_pending(settle(svc, request, now).await?.status))
        }
        CancelOutcome::NotFound => Err(Refusal::NotFound.into()),
        CancelOutcome::ClientRevoked => Err(Refusal::Unauthorized.into()),
    }
}

//! The creating service withdraws a pending request.

use serde_json::json;

use super::read_request::settle;
use super::{not_pending, Result, Services};
use crate::domain::{Actor, ApprovalId, Client, EventKind, NewEvent, Refusal};
use crate::store::{ClientChange, Snapshot};

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
        ClientChange::Made(_) => match svc.store.snapshot(id).await? {
            Some(snap) => Ok(snap),
            None => Err(Refusal::NotFound.into()),
        },
        ClientChange::Refused(request) => Err(not_pending(settle(svc, request, now).await?.status)),
        ClientChange::NotFound => Err(Refusal::NotFound.into()),
        ClientChange::ClientRevoked => Err(Refusal::Unauthorized.into()),
    }
}

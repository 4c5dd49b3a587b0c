//! The creating service takes back an approval it no longer wants carried out, before its
//! receipt is redeemed.

use serde_json::json;

use super::{Error, Result, Services};
use crate::domain::{Actor, ApprovalId, Client, EventKind, NewEvent, Refusal};
use crate::store::{ClientChange, Snapshot};

/// `POST /v1/approvals/{id}/revoke`: approved with an unredeemed receipt → revoked, and the
/// receipt can no longer be redeemed; anything else is `not_revocable`. Of a revocation and a
/// redemption racing each other exactly one happens.
#[tracing::instrument(skip(svc, client), fields(client = %client.name))]
pub async fn revoke_request(svc: &Services, client: &Client, id: ApprovalId) -> Result<Snapshot> {
    let now = svc.clock.now();
    let event = NewEvent::new(
        EventKind::RequestRevoked,
        Actor::Client(client.name.clone()),
        json!({}),
    )
    .about(id);
    match svc
        .store
        .revoke_request(id, Some(client.id), event, now)
        .await?
    {
        ClientChange::Made(_) => match svc.store.snapshot(id).await? {
            Some(snap) => Ok(snap),
            None => Err(Refusal::NotFound.into()),
        },
        ClientChange::Refused(request) => {
            let status = request.status_at(now);
            let detail = match status {
                crate::domain::Status::Approved => "its receipt was redeemed already".to_owned(),
                other => format!("the request is {}", other.as_str()),
            };
            Err(Error::from(Refusal::NotRevocable)
                .detail(detail)
                .with("approval_status", status.as_str()))
        }
        ClientChange::NotFound => Err(Refusal::NotFound.into()),
        ClientChange::ClientRevoked => Err(Refusal::Unauthorized.into()),
    }
}

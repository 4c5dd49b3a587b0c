//! The creating service reads its request, optionally waiting until it is decided.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::{refuse, Result, Services};
use crate::clock::UnixTime;
use crate::domain::{Actor, ApprovalId, Client, EventKind, NewEvent, Refusal, Request, Status};
use crate::store::Snapshot;

/// Longest wait a caller may ask for.
pub const MAX_WAIT_SECS: u64 = 30;

/// The request as it stands now, expired first if its time is up: every read settles expiry,
/// so no sweeper is needed for correctness.
pub async fn settle(svc: &Services, request: Request, now: UnixTime) -> Result<Request> {
    if request.status != Status::Pending || request.expires_at > now {
        return Ok(request);
    }
    let event = NewEvent::new(
        EventKind::RequestExpired,
        Actor::System,
        serde_json::json!({}),
    )
    .about(request.id);
    Ok(svc
        .store
        .expire_request(request.id, event, now)
        .await?
        .unwrap_or(request))
}

/// The request with its decisions and receipt, if `client` created it (others get the same
/// 404 as a missing one).
async fn visible(
    svc: &Services,
    client: &Client,
    id: ApprovalId,
    now: UnixTime,
) -> Result<Snapshot> {
    let Some(mut snap) = svc.store.snapshot(id).await? else {
        return refuse(Refusal::NotFound);
    };
    if snap.request.client_id != client.id {
        return refuse(Refusal::NotFound);
    }
    // Revoked since it was authenticated (perhaps on another replica).
    if !snap.client_active {
        return refuse(Refusal::Unauthorized);
    }
    if snap.request.status_at(now) != snap.request.status {
        snap.request = settle(svc, snap.request, now).await?;
    }
    Ok(snap)
}

/// `GET /v1/approvals/{id}[?wait=N]`: the request, held until it leaves `pending` or `wait`
/// seconds pass. Woken by the store's change notifications (every replica's, on PostgreSQL),
/// not by polling.
#[tracing::instrument(skip(svc, client), fields(client = %client.name))]
pub async fn read_request(
    svc: &Services,
    client: &Client,
    id: ApprovalId,
    wait: u64,
) -> Result<Snapshot> {
    if wait > MAX_WAIT_SECS {
        return Err(super::Error::from(Refusal::InvalidRequest)
            .detail(format!("wait is at most {MAX_WAIT_SECS} seconds")));
    }
    // Subscribe before reading so a change between the read and the wait is not missed.
    let mut changes = svc.store.subscribe();
    let mut snap = visible(svc, client, id, svc.clock.now()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    while snap.request.status == Status::Pending && tokio::time::Instant::now() < deadline {
        let left = snap.request.expires_at - svc.clock.now();
        let until_expiry = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        let wake = deadline.min(tokio::time::Instant::now() + until_expiry);
        tokio::select! {
            changed = changes.recv() => match changed {
                Ok(changed) if changed != id => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            () = tokio::time::sleep_until(wake) => {}
        }
        snap = visible(svc, client, id, svc.clock.now()).await?;
    }
    Ok(snap)
}

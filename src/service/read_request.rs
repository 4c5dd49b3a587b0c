//! The creating service reads its request, optionally waiting until it is decided.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{refuse, Result, Services};
use crate::clock::UnixTime;
use crate::domain::{Actor, ApprovalId, Client, EventKind, NewEvent, Refusal, Request, Status};
use crate::store::{Snapshot, Store};

/// Longest wait a caller may ask for.
pub const MAX_WAIT_SECS: u64 = 30;

/// The request as it stands now, expired first if its time is up: every read settles expiry,
/// so no sweeper is needed for correctness.
pub async fn settle(svc: &Services, request: Request, now: UnixTime) -> Result<Request> {
    expire(&*svc.store, request, now).await
}

async fn expire(store: &dyn Store, request: Request, now: UnixTime) -> Result<Request> {
    if request.status != Status::Pending || request.expires_at > now {
        return Ok(request);
    }
    Ok(expire_if_due(store, request.id, now)
        .await?
        .unwrap_or(request))
}

/// Expires request `id` with its event if it is pending and its time is up (one conditional
/// statement: on any number of servers it expires once); the request as it then stands.
pub async fn expire_if_due(
    store: &dyn Store,
    id: ApprovalId,
    now: UnixTime,
) -> Result<Option<Request>> {
    let event = NewEvent::new(
        EventKind::RequestExpired,
        Actor::System,
        serde_json::json!({}),
    )
    .about(id);
    Ok(store.expire_request(id, event, now).await?)
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
    if snap.request.status == Status::Pending {
        snap.able = super::decide::who_may_decide(svc, &snap.request).await?;
    }
    Ok(snap)
}

/// `GET /v1/approvals/{id}[?wait=N]`: the request, held until it leaves `pending` or `wait`
/// seconds pass. Woken by the store's change notices (every replica's, on PostgreSQL) with one
/// read shared by all the polls on the request ([`super::waits`]), never by polling.
#[tracing::instrument(skip(svc, client), fields(client = %client.name))]
pub async fn read_request(
    svc: &Services,
    client: &Client,
    id: ApprovalId,
    wait: u64,
) -> Result<Arc<Snapshot>> {
    if wait > MAX_WAIT_SECS {
        return Err(super::Error::from(Refusal::InvalidRequest)
            .detail(format!("wait is at most {MAX_WAIT_SECS} seconds")));
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    // Boxed, here and below: a held poll then keeps only what it waits with.
    let read = || Box::pin(visible(svc, client, id, svc.clock.now()));
    if wait == 0 {
        return Ok(Arc::new(read().await?));
    }
    // Joined before reading, so that a change in between is not missed.
    let mut waiter = svc.waits.join(id);
    let mut snap = visible_to(waiter.current(read()).await?, client)?;
    let mut expiry_due = true;
    while snap.request.status == Status::Pending {
        let mut wake = deadline;
        if expiry_due {
            let left = snap.request.expires_at - svc.clock.now();
            wake = wake.min(Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0)));
        }
        tokio::select! {
            shared = waiter.changed() => {
                snap = match shared {
                    Some(shared) => visible_to(shared, client)?,
                    None => Arc::new(read().await?),
                };
            }
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    break;
                }
                // Expired while waited on: one poll settles it, detached so that its caller
                // leaving does not undo it, and every poll hears of it as a change.
                expiry_due = false;
                if let Some(claim) = waiter.claim_expiry() {
                    let (store, request, now) = (svc.store.clone(), snap.request.clone(), svc.clock.now());
                    tokio::spawn(async move {
                        if let Err(e) = expire(&*store, request, now).await {
                            tracing::warn!(error = %e, "expiring a request waited on");
                            claim.give_back();
                        }
                    });
                }
            }
        }
    }
    Ok(snap)
}

/// A snapshot read for all the polls on a request, checked for this one's caller.
fn visible_to(snap: Arc<Snapshot>, client: &Client) -> Result<Arc<Snapshot>> {
    if snap.request.client_id != client.id {
        return refuse(Refusal::NotFound);
    }
    if !snap.client_active {
        return refuse(Refusal::Unauthorized);
    }
    Ok(snap)
}

//! The hub of a process: one task that hears every change while a stream is open and records
//! the events every stream reads (see the module above).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

use super::{lock, Audience, Kind, Shared, LOOKBACK, POLL_EVERY, POLL_LIMIT, READS};
use crate::clock::{Clock, UnixTime};
use crate::domain::{ApprovalId, Status};
use crate::store::{Change, Store};

/// The hub: idle (no query, no subscription) while no stream is open; otherwise hears every
/// change, reads each changed request once, looks for other replicas' new requests every
/// [`POLL_EVERY`], and records the events.
pub(super) async fn hub(shared: Arc<Shared>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    let reads = Arc::new(Semaphore::new(READS));
    loop {
        loop {
            let woken = shared.wake.notified();
            if shared.streams.load(Ordering::Acquire) > 0 {
                break;
            }
            woken.await;
        }
        let mut changes = store.subscribe();
        lock(&shared.log).gap();
        // What has been announced as new, and when it was seen.
        let mut announced: HashMap<ApprovalId, UnixTime> = HashMap::new();
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while shared.streams.load(Ordering::Acquire) > 0 {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(Change::Request(id)) => {
                        read(&reads, &shared, &store, &clock, id).await;
                    }
                    // Notices were lost: anything may have changed.
                    Ok(Change::Unknown) | Err(RecvError::Lagged(_)) => {
                        lock(&shared.log).record(Kind::Resync, None, None, Audience::default());
                    }
                    Err(RecvError::Closed) => return,
                },
                () = shared.local_ready.notified() => {
                    let arrived = std::mem::take(&mut *lock(&shared.local));
                    let now = clock.now();
                    let mut log = lock(&shared.log);
                    if shared.local_lost.swap(false, Ordering::AcqRel) {
                        log.record(Kind::Resync, None, None, Audience::default());
                    }
                    for (id, audience) in arrived {
                        if announced.insert(id, now).is_none() {
                            log.record(Kind::Arrived, Some(id), Some(Status::Pending), audience);
                        }
                    }
                }
                _ = tick.tick() => {
                    arrivals(&reads, &shared, &store, &clock, &mut announced).await;
                }
            }
        }
        lock(&shared.log).gap();
    }
}

/// One look for requests made since the last (here or on another replica) and not announced.
async fn arrivals(
    reads: &Arc<Semaphore>,
    shared: &Arc<Shared>,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    announced: &mut HashMap<ApprovalId, UnixTime>,
) {
    let now = clock.now();
    let ids = match store.pending_since(now - LOOKBACK, POLL_LIMIT).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "looking for new requests for the event streams");
            return;
        }
    };
    let full = ids.len() >= usize::try_from(POLL_LIMIT).unwrap_or(usize::MAX);
    // The oldest of a full answer is new: older new ones may be beyond it.
    if full && ids.last().is_some_and(|id| !announced.contains_key(id)) {
        lock(&shared.log).record(Kind::Resync, None, None, Audience::default());
    }
    for id in ids {
        if announced.insert(id, now).is_none() {
            read(reads, shared, store, clock, id).await;
        }
    }
    announced.retain(|_, seen| *seen >= now - 6 * LOOKBACK);
}

/// Reads a changed request once, in a task of its own (a few at a time), and records what
/// happened to it with who may hear of it.
async fn read(
    reads: &Arc<Semaphore>,
    shared: &Arc<Shared>,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    id: ApprovalId,
) {
    let Ok(permit) = reads.clone().acquire_owned().await else {
        return;
    };
    let (shared, store, clock) = (shared.clone(), store.clone(), clock.clone());
    tokio::spawn(async move {
        let snapshot = store.snapshot(id).await;
        let mut log = lock(&shared.log);
        match snapshot {
            Ok(Some(snap)) => {
                let status = snap.request.status_at(clock.now());
                let kind = if status != Status::Pending {
                    Kind::Status
                } else if snap.votes.is_empty() {
                    Kind::Arrived
                } else {
                    Kind::Decision
                };
                let audience = Audience::of(&snap.request, &snap.votes);
                log.record(kind, Some(id), Some(status), audience);
            }
            Ok(None) => {}
            // Who may see it is unknown: every page re-reads.
            Err(e) => {
                tracing::warn!(error = %e, approval_id = %id, "reading a changed request for the event streams");
                log.record(Kind::Resync, None, None, Audience::default());
            }
        }
        drop(permit);
    });
}

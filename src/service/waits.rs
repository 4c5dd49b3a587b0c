//! Long-polls share one read per change. A dispatcher (one task, started by the first wait)
//! hears the store's change notices, reads a changed request once if anyone waits on it, and
//! hands that snapshot to every poll waiting there. A waiting poll costs no query and no task
//! of its own, and a change to one request wakes only the polls on that request.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::runtime::Handle;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::domain::ApprovalId;
use crate::store::{Change, Snapshot, Store};

/// The polls waiting, by request.
pub struct Waits {
    store: Arc<dyn Store>,
    slots: Arc<Mutex<Slots>>,
    /// Where the dispatcher runs: the runtime that built the services, which outlives the
    /// per-thread runtimes of the HTTP workers.
    runtime: Option<Handle>,
    started: OnceLock<()>,
}

#[derive(Default)]
struct Slots {
    by_id: HashMap<ApprovalId, Weak<Slot>>,
    /// Entries whose polls have all gone are swept when the map grows to this size.
    sweep_at: usize,
}

/// What the polls on one request share.
struct Slot {
    id: ApprovalId,
    latest: watch::Sender<Latest>,
    reads: AtomicU64,
    /// Whether one of the polls has set about expiring the request.
    expiring: AtomicBool,
}

#[derive(Default)]
struct Latest {
    /// Reads are numbered as they start, so a slow earlier read never replaces a later one.
    seq: u64,
    /// `None` when the read failed: each poll then reads for itself.
    snapshot: Option<Arc<Snapshot>>,
}

/// One poll's place among those waiting on a request.
pub struct Waiter {
    slot: Arc<Slot>,
    rx: watch::Receiver<Latest>,
}

impl Waits {
    pub fn new(store: Arc<dyn Store>) -> Waits {
        Waits {
            store,
            slots: Arc::default(),
            runtime: Handle::try_current().ok(),
            started: OnceLock::new(),
        }
    }

    /// Joins the polls on `id`. Join before reading the state you wait on, so that a change
    /// in between is not missed.
    pub fn join(&self, id: ApprovalId) -> Waiter {
        self.started.get_or_init(|| {
            let task = dispatch(
                Arc::downgrade(&self.slots),
                self.store.clone(),
                self.store.subscribe(),
            );
            match &self.runtime {
                Some(rt) => drop(rt.spawn(task)),
                None => drop(tokio::spawn(task)),
            }
        });
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.by_id.get(&id).and_then(Weak::upgrade) {
            let rx = slot.latest.subscribe();
            return Waiter { slot, rx };
        }
        if slots.by_id.len() >= slots.sweep_at {
            slots.by_id.retain(|_, slot| slot.strong_count() > 0);
            slots.sweep_at = (slots.by_id.len() * 2).max(64);
        }
        let (latest, rx) = watch::channel(Latest::default());
        let slot = Arc::new(Slot {
            id,
            latest,
            reads: AtomicU64::new(0),
            expiring: AtomicBool::new(false),
        });
        slots.by_id.insert(id, Arc::downgrade(&slot));
        Waiter { slot, rx }
    }
}

impl Waiter {
    /// The request as read after its next change, or `None` if that read failed (read it
    /// yourself then).
    pub async fn changed(&mut self) -> Option<Arc<Snapshot>> {
        // The slot, and so the sender, lives as long as this waiter: this cannot fail.
        let _ = self.rx.changed().await;
        self.rx.borrow_and_update().snapshot.clone()
    }

    /// The request as last read for the polls on it, or as `read` reads it now (kept then for
    /// the polls that join after). What was read before is current: any change since has
    /// been announced and is being read for them all, and this waiter will hear of it.
    pub async fn current<F>(&self, read: F) -> Result<Arc<Snapshot>, super::Error>
    where
        F: Future<Output = Result<Snapshot, super::Error>>,
    {
        if let Some(shared) = self.rx.borrow().snapshot.clone() {
            return Ok(shared);
        }
        let seq = self.slot.reads.fetch_add(1, Ordering::AcqRel) + 1;
        let snapshot = Arc::new(read.await?);
        // Kept without waking anyone: the polls already waiting read the same state.
        self.slot.latest.send_if_modified(|latest| {
            if seq > latest.seq {
                *latest = Latest {
                    seq,
                    snapshot: Some(snapshot.clone()),
                };
            }
            false
        });
        Ok(snapshot)
    }

    /// For the first poll on this request to ask: that one expires it (and gives the claim
    /// back if it fails), and the others hear of it as a change.
    pub fn claim_expiry(&self) -> Option<ExpiryClaim> {
        let first = !self.slot.expiring.swap(true, Ordering::AcqRel);
        first.then(|| ExpiryClaim(self.slot.clone()))
    }
}

/// The right to expire a request waited on.
pub struct ExpiryClaim(Arc<Slot>);

impl ExpiryClaim {
    /// The expiry did not happen: the next poll to find the request due tries again.
    pub fn give_back(self) {
        self.0.expiring.store(false, Ordering::Release);
    }
}

fn lock(slots: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    // A panic while holding this lock leaves the map consistent (every step is one call).
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn dispatch(
    slots: Weak<Mutex<Slots>>,
    store: Arc<dyn Store>,
    mut changes: broadcast::Receiver<Change>,
) {
    loop {
        let change = changes.recv().await;
        let Some(slots) = slots.upgrade() else { return };
        let waited_on: Vec<Arc<Slot>> = {
            let slots = lock(&slots);
            match change {
                Ok(Change::Request(id)) => slots
                    .by_id
                    .get(&id)
                    .and_then(Weak::upgrade)
                    .into_iter()
                    .collect(),
                // Notices were lost: every request waited on may have changed.
                Ok(Change::Unknown) | Err(RecvError::Lagged(_)) => {
                    slots.by_id.values().filter_map(Weak::upgrade).collect()
                }
                Err(RecvError::Closed) => return,
            }
        };
        for slot in waited_on {
            tokio::spawn(refresh(store.clone(), slot));
        }
    }
}

/// Reads the request once for all its polls.
async fn refresh(store: Arc<dyn Store>, slot: Arc<Slot>) {
    let seq = slot.reads.fetch_add(1, Ordering::AcqRel) + 1;
    let snapshot = match store.snapshot(slot.id).await {
        Ok(found) => found.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, approval_id = %slot.id, "reading a changed request for its waiters");
            None
        }
    };
    slot.latest.send_if_modified(|latest| {
        let newer = seq > latest.seq;
        if newer {
            *latest = Latest { seq, snapshot };
        }
        newer
    });
}

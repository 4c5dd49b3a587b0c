//! What every server does besides answering: delivering the outbox and sweeping what time has
//! ended. Both are safe on any number of servers: a message is attempted under a lease, a
//! request expires in one conditional statement (so its event and webhook are written once),
//! and purging deletes only what no one can use any more.

use std::sync::Arc;
use std::time::Duration;

use super::{outbox, read_request, sign_in::IDLE_SECS, Result, Services};

/// How often a server sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Requests expired a sweep at most (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 200;

/// Starts the courier and the sweeper; they end with the runtime.
pub fn start(svc: Arc<Services>) {
    tokio::spawn(outbox::run(svc.clone()));
    tokio::spawn(async move {
        loop {
            if let Err(e) = sweep(&svc).await {
                tracing::warn!(error = %e, "sweeping");
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub expired: usize,
    /// Approved console changes carried out here (their server stopped first).
    pub changes: usize,
    pub ceremonies: u64,
    pub sessions: u64,
}

/// Expires the requests whose time is up (each with its `request_expired` event and its
/// `approval.expired` webhook), carries out approved console changes that were not, and
/// deletes ceremonies and sessions that have ended.
pub async fn sweep(svc: &Services) -> Result<Swept> {
    let now = svc.clock.now();
    let mut swept = Swept::default();
    for id in svc.store.due_requests(now, SWEEP_BATCH).await? {
        let after = read_request::expire_if_due(&*svc.store, id, now).await?;
        if after.is_some_and(|r| r.status == crate::domain::Status::Expired) {
            swept.expired += 1;
        }
    }
    swept.changes = super::console::carry_out_pending(svc, SWEEP_BATCH).await?;
    let (ceremonies, sessions) = svc.store.purge(now, now - IDLE_SECS).await?;
    swept.ceremonies = ceremonies;
    swept.sessions = sessions;
    if swept != Swept::default() {
        tracing::info!(
            expired = swept.expired,
            changes = swept.changes,
            ceremonies,
            sessions,
            "swept"
        );
    }
    Ok(swept)
}

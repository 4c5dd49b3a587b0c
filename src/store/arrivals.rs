//! Writes on their way, for a store that groups commits.

use std::sync::Arc;

/// Writes on their way: requests being handled that will write and have not yet, counted by the
/// HTTP layer, so that a store that groups commits waits for exactly those rather than guessing.
#[derive(Debug, Clone, Default)]
pub struct Arrivals(Arc<std::sync::atomic::AtomicUsize>);

tokio::task_local! {
    /// The write the current request is counted as, until it submits one.
    static ON_ITS_WAY: std::cell::RefCell<Option<Expected>>;
}

impl Arrivals {
    /// Runs `request` counted as a write on its way, until it submits its first write (see
    /// [`arrived`]) or ends.
    pub async fn expecting<F: std::future::Future>(&self, request: F) -> F::Output {
        let expected = Expected::new(self);
        ON_ITS_WAY
            .scope(std::cell::RefCell::new(Some(expected)), request)
            .await
    }

    /// How many are on their way.
    pub fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The current request has submitted its write: it is no longer on its way. A store calls this
/// once the write is queued (so that a batch never sees the count drop before the job).
pub(crate) fn arrived() {
    let _ = ON_ITS_WAY.try_with(|e| e.borrow_mut().take());
}

/// A write on its way; counted until dropped.
#[derive(Debug)]
pub struct Expected(Arrivals);

impl Expected {
    fn new(arrivals: &Arrivals) -> Expected {
        arrivals
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Expected(arrivals.clone())
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

//! The connections to PostgreSQL, without sqlx's pool: that pool pings the server each time a
//! connection goes back to it (sqlx 0.8 always does, in a task of its own), a round trip and a
//! server wake-up for every statement, which profiles of the flows showed costing more than the
//! statements' own work. Here a connection goes back as it is, unless it may not be clean: in a
//! transaction or with unsent bytes (an operation cancelled half-way; sqlx queues the rollback
//! of a dropped transaction there), or made before a connection failed (the server may have
//! restarted: every idle connection is suspect then), or whose `BEGIN` was cut short (sqlx
//! counts a transaction only once the server has answered it, so the server may be in one that
//! nobody will end, and the next user's writes would vanish with it). Those are closed
//! instead. A connection that was only waiting for a reply it will never read is fine: sqlx
//! reads what is left before its next statement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::super::{StoreError, StoreResult};

/// Connections open at most: the HTTP workers of one process rarely wait on more at once, and
/// a PostgreSQL server's default allows several replicas of this many.
const MAX: usize = 16;
/// How long an operation waits for a connection before the store counts as unavailable.
const WAIT: Duration = Duration::from_secs(3);

/// Counts connection failures (I/O, TLS, protocol) anywhere in the process: a connection made
/// before the latest one is not used again. A process-wide count, not one per store, because
/// failures are seen where sqlx's errors become [`StoreError`]s, which know no store; a store
/// that did not fail only reconnects once more than it needed.
static FAILURES: AtomicU64 = AtomicU64::new(0);

/// A connection failed: every connection made before now is closed on its next return.
pub(super) fn failed() {
    FAILURES.fetch_add(1, Ordering::AcqRel);
}

pub(super) struct Conns {
    options: PgConnectOptions,
    slots: Semaphore,
    idle: Mutex<Vec<(u64, PgConnection)>>,
}

impl Conns {
    pub fn new(url: &str) -> StoreResult<Conns> {
        let options: PgConnectOptions = url.parse()?;
        Ok(Conns {
            // Statements are logged by the store's own spans, not once more by sqlx.
            options: options.disable_statement_logging(),
            slots: Semaphore::new(MAX),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A connection for one operation: an idle one, or a new one if none is. An operation
    /// holds one at a time and gives it back before it asks for another: a crowd of operations
    /// each holding one while waiting for a second would wait until [`WAIT`] runs out.
    pub async fn get(&self) -> StoreResult<Conn<'_>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| StoreError::Unavailable("no database connection free".into()))?
            .map_err(|_| StoreError::Unavailable("the store is closing".into()))?;
        let failures = FAILURES.load(Ordering::Acquire);
        let reused = match self.idle.lock() {
            Ok(mut idle) => {
                idle.retain(|(made, _)| *made == failures);
                idle.pop()
            }
            Err(_) => None,
        };
        let (made, conn) = match reused {
            Some(c) => c,
            None => (failures, self.connect(deadline).await?),
        };
        Ok(Conn {
            conn: Some(conn),
            beginning: false,
            made,
            home: self,
            _slot: slot,
        })
    }

    /// A new connection, tried again until the deadline while the server is starting or has
    /// no connection to spare (as sqlx's pool did).
    async fn connect(&self, deadline: tokio::time::Instant) -> StoreResult<PgConnection> {
        let mut backoff = Duration::from_millis(10);
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.options.connect()).await;
            let error = match attempt {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => e,
                Err(_) => return Err(StoreError::Unavailable("connecting to PostgreSQL".into())),
            };
            let transient = match &error {
                sqlx::Error::Io(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                sqlx::Error::Database(db) => {
                    matches!(db.code().as_deref(), Some("53300" | "57P03"))
                }
                _ => false,
            };
            if !transient || tokio::time::Instant::now() + backoff >= deadline {
                return Err(error.into());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

pub(super) struct Conn<'a> {
    conn: Option<PgConnection>,
    /// A `BEGIN` was sent and not yet answered: set until `begin` returns.
    beginning: bool,
    made: u64,
    home: &'a Conns,
    _slot: SemaphorePermit<'a>,
}

impl Conn<'_> {
    /// Starts a transaction (use this, not sqlx's `begin`: see the module's note).
    pub async fn begin(&mut self) -> StoreResult<sqlx::Transaction<'_, sqlx::Postgres>> {
        self.beginning = true;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("connection gone".into()))?;
        let tx = conn.begin().await?;
        self.beginning = false;
        Ok(tx)
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // Taken only by `drop`.
        #[allow(clippy::expect_used)]
        self.conn.as_ref().expect("a connection until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        #[allow(clippy::expect_used)]
        self.conn.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let clean = !self.beginning && !conn.is_in_transaction() && !conn.should_flush();
        if clean && self.made == FAILURES.load(Ordering::Acquire) {
            if let Ok(mut idle) = self.home.idle.lock() {
                idle.push((self.made, conn));
            }
        }
        // Otherwise dropped: the socket closes, and the server rolls back what it held.
    }
}

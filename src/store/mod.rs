//! Persistence. One [`Store`] over sqlx's `Any` driver serves both databases with the same SQL
//! (integers for times, `$n` placeholders, `RETURNING`, `ON CONFLICT`), and [`Dialect`] holds the
//! few places where SQLite and PostgreSQL differ: how a write transaction starts and how other
//! replicas hear about a change. Each database has its own migrations folder.
//!
//! The decision path (its reads and its one write transaction) is written against
//! [`sql::WriteTx`] and, on a SQLite file, runs on direct connections ([`sqlite`]) instead of
//! sqlx's, which cost a thread round trip per statement; the SQL is the same.
//!
//! Every state change commits together with its audit event (see [`audit`]), and every
//! single-use transition is one conditional statement, never a read followed by a write.

mod approvals;
pub mod audit;
mod ceremonies;
mod clients;
mod decisions;
mod receipts;
mod sql;
mod sqlite;
mod users;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};
use tokio::sync::broadcast;

use sql::WriteTx;

pub use approvals::{ApprovalRecord, CancelOutcome, Created, Idempotency, Status};
pub use audit::NewEvent;
pub use ceremonies::{Ceremony, CeremonyKind, Taken};
pub use decisions::{DecisionOutcome, DecisionRecord};
pub use receipts::{ReceiptRow, ReceiptSigner, RedeemOutcome, RetireOutcome, SigningKeyRow};
pub use users::{Credential, EnrolOutcome, InvitationState, NewCredential, User};

/// Channel on which PostgreSQL replicas tell each other that an approval changed.
const PG_CHANNEL: &str = "countersign_approvals";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now; the caller answers 503 and may retry.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness rule refused the write (e.g. a client name that exists).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Stored data that does not decode: never expected, always logged.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::ChainError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            // PostgreSQL shutting down, refusing or out of connections (57P, 08, 53, and 55000
            // "database is not accepting connections").
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| {
                    c.starts_with("57P")
                        || c.starts_with("08")
                        || c.starts_with("53")
                        || c == "55000"
                }) =>
            {
                StoreError::Unavailable(e)
            }
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The same, for a statement issued through [`sql::WriteTx`].
fn is_unique(e: &StoreError) -> bool {
    match e {
        StoreError::Database(e) => is_unique_violation(e),
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        ),
        _ => false,
    }
}

#[derive(Clone)]
pub struct Store {
    dialect: Dialect,
    /// SQLite: a single connection, so writers in this process queue instead of meeting
    /// `database is locked`; PostgreSQL: the same pool as `read`.
    write: AnyPool,
    read: AnyPool,
    /// SQLite (a file): the writer thread and direct reads of the decision path (see [`sqlite`]).
    direct: Option<sqlite::Direct>,
    changes: broadcast::Sender<String>,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects and applies pending migrations.
    #[tracing::instrument(skip_all, fields(dialect))]
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        use anyhow::Context;
        sqlx::any::install_default_drivers();
        let (dialect, write, read) = if url.starts_with("sqlite:") {
            let url = sqlite_url(url);
            let write = sqlite_pool(1)
                .connect(&url)
                .await
                .context("opening the SQLite database")?;
            let read = sqlite_pool(8)
                .connect(&url)
                .await
                .context("opening the SQLite database")?;
            (Dialect::Sqlite, write, read)
        } else {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(3))
                .connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            (Dialect::Postgres, pool.clone(), pool)
        };
        tracing::Span::current().record("dialect", tracing::field::debug(dialect));
        let mut store = Store {
            dialect,
            write,
            read,
            direct: None,
            changes: broadcast::channel(1024).0,
            url: url.to_string(),
        };
        store.migrate().await?;
        if dialect == Dialect::Sqlite {
            // The file the pools opened, as SQLite names it; empty for an in-memory database,
            // which another connection could not share, so that keeps to the sqlx path.
            let file: String =
                sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_one(&store.write)
                    .await
                    .context("reading the SQLite file name")?;
            if !file.is_empty() {
                store.direct = Some(sqlite::Direct::start(&file)?);
            }
        }
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        let migrator = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator
            .run(&self.write)
            .await
            .context("applying database migrations")
    }

    /// `/readyz`: can the store answer a query right now?
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Rows for a read of the decision path: read directly on SQLite, from the pool otherwise.
    async fn read_all(&self, sql: &str, args: &[sql::Arg<'_>]) -> StoreResult<Vec<sql::Row>> {
        Ok(match &self.direct {
            Some(direct) => direct
                .read(sql, args)?
                .into_iter()
                .map(sql::Row::Owned)
                .collect(),
            None => sql::bind(sql, args)
                .fetch_all(&self.read)
                .await?
                .into_iter()
                .map(sql::Row::Any)
                .collect(),
        })
    }

    async fn read_optional(
        &self,
        sql: &str,
        args: &[sql::Arg<'_>],
    ) -> StoreResult<Option<sql::Row>> {
        Ok(self.read_all(sql, args).await?.into_iter().next())
    }

    /// Mean time of a minimal write transaction (one row updated, committed), one after
    /// another, on the path the decision transaction takes on this store: the load generator's
    /// baseline for what commits allow.
    pub async fn bench_commit(&self, n: u32) -> StoreResult<Duration> {
        const TOUCH: &str = "UPDATE audit_head SET seq = seq WHERE id = 1";
        let started = std::time::Instant::now();
        for _ in 0..n {
            match &self.direct {
                Some(direct) => {
                    direct
                        .transact(|tx| {
                            sqlite::block_on(tx.execute(TOUCH, &[]))?.map(|_| ((), true))
                        })
                        .await?
                }
                None => {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(TOUCH).execute(&mut *tx).await?;
                    tx.commit().await?;
                }
            }
        }
        Ok(started.elapsed() / n.max(1))
    }

    /// A write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so a
    /// transaction that reads before it writes cannot fail to upgrade under WAL.
    async fn begin_write(&self) -> StoreResult<Write> {
        let gate = match &self.direct {
            Some(direct) => Some(direct.gate().lock_owned().await),
            None => None,
        };
        let tx = match self.dialect {
            Dialect::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.write.begin().await?,
        };
        Ok(Write { tx, _gate: gate })
    }

    /// Tells waiters (here and, on PostgreSQL, on every replica) that an approval changed.
    /// On PostgreSQL the notification is part of the transaction, so it is delivered only on
    /// commit; on SQLite there are no other replicas and [`Store::committed`] sends it.
    async fn announce(&self, tx: &mut Write, approval_id: &str) -> StoreResult<()> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(PG_CHANNEL)
                .bind(approval_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    fn committed(&self, approval_id: &str) {
        if self.dialect == Dialect::Sqlite {
            // No receiver is fine: nobody is waiting.
            let _ = self.changes.send(approval_id.to_string());
        }
    }

    /// Approval ids as they change. Subscribe before reading the state you wait on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// On PostgreSQL, forwards other replicas' change notifications to [`Store::subscribe`]rs.
    /// The listener reconnects by itself after the database comes back.
    pub async fn start_change_listener(&self) -> anyhow::Result<()> {
        if self.dialect != Dialect::Postgres {
            return Ok(());
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(PG_CHANNEL).await?;
        let changes = self.changes.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        let _ = changes.send(n.payload().to_string());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener lost its connection; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }
}

/// A write transaction through sqlx. On SQLite it holds the process's write gate, which the
/// writer thread takes too: writers in this process queue for each other instead of meeting
/// the database's lock and sleeping in SQLite's busy handler.
pub(super) struct Write {
    tx: Transaction<'static, Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Write {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for Write {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Write {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

fn sqlite_pool(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        // Writers queue for the single write connection; a generous wait beats a 503.
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _| {
            Box::pin(async move {
                for pragma in [
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = FULL",
                    "PRAGMA foreign_keys = ON",
                    // Other processes (the CLI beside a running server) wait instead of failing.
                    "PRAGMA busy_timeout = 10000",
                ] {
                    conn.execute(pragma).await?;
                }
                Ok(())
            })
        })
}

fn get<T: sql::Col>(row: &impl sql::Columns, col: &str) -> StoreResult<T> {
    row.col(col)
}

fn json_col<T: serde::de::DeserializeOwned>(row: &impl sql::Columns, col: &str) -> StoreResult<T> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

fn hash32(bytes: Vec<u8>, what: &str) -> StoreResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

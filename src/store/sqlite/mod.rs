//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`, written by one
//! thread ([`engine`]) and read on pooled read-only connections. Its SQL and its migrations
//! (`migrations/sqlite`) are its own.

mod engine;
mod migrate;
mod ops;

use rusqlite::OpenFlags;
use tokio::sync::broadcast;

use super::{Change, StoreError};
use crate::domain::ApprovalId;
use engine::Engine;
pub(in crate::store) use engine::Outcome;
pub(in crate::store) use ops::{column, FromRow};

pub struct SqliteStore {
    engine: Engine,
    changes: broadcast::Sender<Change>,
    /// Who could approve, by the groups asked about, with the people revision it was read at
    /// (migration 0012: every change to people or passkeys bumps it, from any process).
    able: std::sync::Mutex<Able>,
}

/// Who could approve, by the groups asked about, with the people revision it was read at.
type Able = std::collections::HashMap<Vec<String>, (i64, Vec<crate::domain::User>)>;

impl SqliteStore {
    /// Opens (creating if need be) the file a `sqlite://PATH` URL names, applies pending
    /// migrations and starts the writer.
    pub fn open(url: &str) -> anyhow::Result<SqliteStore> {
        use anyhow::Context;
        let path = path_of(url)?;
        {
            let mut conn = engine::open(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )
            .with_context(|| format!("opening the SQLite database {path}"))?;
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .context("switching the SQLite database to WAL")?;
            migrate::run(&mut conn).context("applying database migrations")?;
        }
        Ok(SqliteStore {
            engine: Engine::start(&path)?,
            changes: broadcast::channel(1024).0,
            able: std::sync::Mutex::default(),
        })
    }

    /// Tells waiters that a request changed; its transaction has committed.
    fn changed(&self, id: ApprovalId) {
        // No receiver is fine: nobody is waiting.
        let _ = self.changes.send(Change::Request(id));
    }
}

/// The file of `sqlite://PATH` (or `sqlite:PATH`), without query parameters. An in-memory
/// database cannot be shared by a writer thread and readers, so it is refused.
fn path_of(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        anyhow::bail!("database_url {url:?}: SQLite needs a file (sqlite://PATH)");
    }
    Ok(path.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    C::DatabaseBusy
                        | C::DatabaseLocked
                        | C::CannotOpen
                        | C::DiskFull
                        | C::SystemIoFailure
                        | C::ReadOnly
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// Whether a statement failed on a unique or primary key constraint.
fn is_unique(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(
        f.extended_code,
        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_file() {
        assert_eq!(
            path_of("sqlite://countersign.db").unwrap(),
            "countersign.db"
        );
        assert_eq!(
            path_of("sqlite:///var/cs.db?mode=rwc").unwrap(),
            "/var/cs.db"
        );
        assert_eq!(path_of("sqlite:x.db").unwrap(), "x.db");
        assert!(path_of("sqlite::memory:").is_err());
        assert!(path_of("sqlite://").is_err());
    }
}

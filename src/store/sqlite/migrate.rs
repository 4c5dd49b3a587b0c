//! Applies `migrations/sqlite`, recording each in `_sqlx_migrations` exactly as sqlx's own
//! migrator does (version, description, SHA-384 checksum), so databases migrated by earlier
//! versions, which used sqlx for SQLite too, carry on where they stopped.

use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub(super) fn run(conn: &mut Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        );",
    )?;
    for m in MIGRATOR.iter() {
        if !m.migration_type.is_up_migration() {
            continue;
        }
        // One immediate transaction per migration: two processes starting together take
        // turns, and the second finds the first's work recorded.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let applied: Option<(Vec<u8>, bool)> = tx
            .query_row(
                "SELECT checksum, success FROM _sqlx_migrations WHERE version = ?1",
                params![m.version],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match applied {
            Some((_, false)) => bail!("migration {} was left half-applied", m.version),
            Some((checksum, true)) if checksum != *m.checksum => {
                bail!("migration {} was changed after it was applied", m.version)
            }
            Some(_) => continue,
            None => {}
        }
        let started = std::time::Instant::now();
        tx.execute_batch(&m.sql)
            .with_context(|| format!("migration {} ({})", m.version, m.description))?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            params![
                m.version,
                &*m.description,
                &*m.checksum,
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}

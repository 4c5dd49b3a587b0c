//! Applies `migrations/sqlite`, recording each in `_sqlx_migrations` exactly as sqlx's own
//! migrator does (version, description, SHA-384 checksum), so databases migrated by earlier
//! versions, which used sqlx for SQLite too, carry on where they stopped.

use anyhow::{bail, Context};
use rusqlite::{params, Connection, OptionalExtension};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Foreign keys are off while migrations run (a table with a CHECK to change is rebuilt, and
/// dropping the old one must not touch the rows that refer to it) and each migration's result is
/// checked for them before it commits: SQLite's own procedure for schema changes.
pub(super) fn run(conn: &mut Connection) -> anyhow::Result<()> {
    run_to(conn, i64::MAX)
}

/// Applies the migrations up to `last` (a version).
fn run_to(conn: &mut Connection, last: i64) -> anyhow::Result<()> {
    conn.pragma_update(None, "foreign_keys", false)?;
    let applied = apply(conn, last);
    conn.pragma_update(None, "foreign_keys", true)?;
    applied
}

fn apply(conn: &mut Connection, last: i64) -> anyhow::Result<()> {
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
        if !m.migration_type.is_up_migration() || m.version > last {
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
        let dangling: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = dangling {
            bail!(
                "migration {} left rows in {table} referring to nothing",
                m.version
            );
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A database made by the version before revocation keeps every row, and every reference
    /// between them, once the approvals table is rebuilt.
    #[test]
    fn rebuilding_approvals_keeps_what_refers_to_them() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        run_to(&mut conn, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO clients (id, name, key_hash, rights, created_at) VALUES ('c', 'svc', x'01', '{}', 1);
             INSERT INTO users (id, username, display_name, groups, created_at) VALUES ('u', 'bob', 'Bob', '[]', 1);
             INSERT INTO approvals (id, client_id, action, transaction_jcs, tx_hash, initiator, audience,
                 policy_rev, required_approvals, required_groups, status, created_at, expires_at,
                 decided_at, self_approval, receipt_ttl, rules, initiator_key)
                 VALUES ('a', 'c', 'pay', '{}', 'h', 'Carol', 'erp', 'p', 1, '[\"finance\"]', 'approved',
                         1, 9, 2, 0, 300, '[\"big\"]', 'carol');
             INSERT INTO idempotency_keys VALUES ('c', 'k', x'02', 'a', '{}', 1);
             INSERT INTO signing_keys (kid, generation, public_jwk, sealed, created_at) VALUES ('k1', 1, '{}', x'03', 1);
             INSERT INTO receipts (jti, approval_id, kid, audience, token, issued_at, expires_at)
                 VALUES ('j', 'a', 'k1', 'erp', 't', 2, 300);
             INSERT INTO decisions VALUES ('a', 'u', 'approve', 'bob', 'Bob', 'cred', 2, x'04', x'05', x'06', x'07', '{}', 1);",
        )
        .unwrap();
        run(&mut conn).unwrap();
        let row: (String, String, i64, String, String) = conn
            .query_row(
                "SELECT status, rules, receipt_ttl, initiator_key, initiator FROM approvals WHERE id = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "approved".into(),
                "[\"big\"]".into(),
                300,
                "carol".into(),
                "Carol".into()
            )
        );
        let fk_on: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(fk_on, "foreign keys are on again");
        // The references still hold: a receipt or decision for a request that is not there is
        // refused, and the request itself can now be revoked.
        assert!(conn
            .execute(
                "INSERT INTO receipts (jti, approval_id, kid, audience, token, issued_at, expires_at) \
                 VALUES ('j2', 'missing', 'k1', 'erp', 't', 2, 300)",
                [],
            )
            .is_err());
        conn.execute("UPDATE approvals SET status = 'revoked' WHERE id = 'a'", [])
            .unwrap();
        assert!(conn
            .execute("UPDATE approvals SET status = 'gone' WHERE id = 'a'", [])
            .is_err());
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'approvals' \
                 AND name IN ('approvals_client', 'approvals_pending')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 2);
        // Applying again finds everything done.
        run(&mut conn).unwrap();
    }
}

use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::super::super::console::{
    ChangeRecord, ConsoleStore, CARRIED_OUT_ALREADY, ERASE_SECRET, INSERT_CARRIED, RECORD_COLS,
    SPEND_RECEIPT, TAKE_SECRET, UNCARRIED,
};
use super::super::super::{StoreError, StoreResult};
use super::super::{Outcome, SqliteStore};
use super::exec;
use crate::clock::UnixTime;
use crate::domain::{ApprovalId, CarriedOut};

/// The shared statements with SQLite's numbered parameters.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}
static INSERT: LazyLock<String> = LazyLock::new(|| numbered(INSERT_CARRIED));
static SPEND: LazyLock<String> = LazyLock::new(|| numbered(SPEND_RECEIPT));
static TAKE: LazyLock<String> = LazyLock::new(|| numbered(TAKE_SECRET));
static ERASE: LazyLock<String> = LazyLock::new(|| numbered(ERASE_SECRET));
static LIST: LazyLock<String> = LazyLock::new(|| numbered(UNCARRIED));
static RECORD: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {RECORD_COLS} FROM admin_changes WHERE approval_id = ?1"));

/// Records a console change in the transaction that made it; a change recorded already fails
/// the transaction.
pub(super) fn carried_out(conn: &Connection, c: &CarriedOut, now: UnixTime) -> StoreResult<()> {
    let id = c.change.to_string();
    let outcome = c.outcome.as_ref().map(|o| o.to_string());
    if exec(
        conn,
        &INSERT,
        params![id, now, outcome, c.failure, c.sealed_secret],
    )? == 0
    {
        return Err(StoreError::Conflict(CARRIED_OUT_ALREADY));
    }
    exec(conn, &SPEND, params![id, now])?;
    Ok(())
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    #[tracing::instrument(skip(self))]
    async fn change_record(&self, id: ApprovalId) -> StoreResult<Option<ChangeRecord>> {
        let row = self.engine.read(|conn| {
            Ok(conn
                .prepare_cached(&RECORD)?
                .query_row(params![id.to_string()], |r| {
                    Ok((
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, bool>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })
                .optional()?)
        })?;
        row.map(|(at, outcome, failure, has_secret, taken)| {
            Ok(ChangeRecord {
                approval_id: id,
                carried_out_at: at,
                outcome: outcome
                    .map(|o| serde_json::from_str(&o))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("change outcome: {e}")))?,
                failure,
                has_secret,
                secret_taken_at: taken,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip(self))]
    async fn take_change_secret(
        &self,
        id: ApprovalId,
        now: UnixTime,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.engine
            .write(move |conn| {
                let sealed = conn
                    .prepare_cached(&TAKE)?
                    .query_row(params![id.to_string(), now], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?;
                if sealed.is_some() {
                    exec(conn, &ERASE, params![id.to_string()])?;
                }
                Ok(Outcome::Keep(sealed))
            })
            .await
    }

    async fn uncarried_changes(&self, limit: i64) -> StoreResult<Vec<ApprovalId>> {
        let ids = self.engine.read(|conn| {
            let mut stmt = conn.prepare_cached(&LIST)?;
            let rows = stmt.query_map(params![limit], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        ids.iter()
            .map(|t| ApprovalId::parse(t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }
}

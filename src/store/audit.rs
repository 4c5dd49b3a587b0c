//! Appending to and reading the audit chain. Appends happen inside the caller's transaction,
//! last, because the `audit_head` row lock they take serialises every writer until commit.

use sqlx::any::AnyRow;
use sqlx::Any;

use super::sql::{args, Arg, WriteTx};

use super::{get, hash32, Store, StoreError, StoreResult};
use crate::audit::{entry_hash, AuditEvent};
use crate::clock::{rfc3339, UnixTime};

/// An event to record with a state change.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub actor: &'a str,
    pub approval_id: Option<&'a str>,
    pub data: serde_json::Value,
}

pub(super) async fn append(
    tx: &mut impl WriteTx,
    now: UnixTime,
    ev: NewEvent<'_>,
) -> StoreResult<i64> {
    append_all(tx, now, vec![ev]).await
}

/// Appends several events in three statements whatever their number; returns the last seq.
pub(super) async fn append_all<T: WriteTx>(
    tx: &mut T,
    now: UnixTime,
    events: Vec<NewEvent<'_>>,
) -> StoreResult<i64> {
    let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
    // The head row is the lock that orders appends across replicas; a writer that already
    // excludes all others (SQLite's) only needs to read it.
    let head = if T::EXCLUSIVE {
        "SELECT seq + $1 AS seq, hash FROM audit_head WHERE id = 1"
    } else {
        "UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash"
    };
    let row = tx.fetch_one(head, args![n]).await?;
    let last: i64 = get(&row, "seq")?;
    let mut prev = hash32(get(&row, "hash")?, "audit head hash")?;
    let at = rfc3339(now);
    let mut rows = Vec::with_capacity(events.len());
    for (seq, ev) in (last - n + 1..).zip(events) {
        let hash = entry_hash(&prev, seq, &at, ev.kind, ev.actor, ev.approval_id, &ev.data)?;
        tracing::info!(target: "countersign::audit", seq, kind = ev.kind, actor = ev.actor, approval_id = ev.approval_id, "audit event");
        rows.push((seq, ev, prev, hash));
        prev = hash;
    }
    let values: Vec<String> = (0..rows.len())
        .map(|i| {
            let p = i * 8;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO audit_events (seq, at, kind, actor, approval_id, data, prev_hash, hash) VALUES {}",
        values.join(", ")
    );
    let data: Vec<String> = rows
        .iter()
        .map(|(_, ev, _, _)| ev.data.to_string())
        .collect();
    let mut binds = Vec::with_capacity(rows.len() * 8);
    for ((seq, ev, prev, hash), data) in rows.iter().zip(&data) {
        binds.extend([
            Arg::Int(*seq),
            Arg::Int(now),
            Arg::Text(ev.kind),
            Arg::Text(ev.actor),
            Arg::OptText(ev.approval_id),
            Arg::Text(data),
            Arg::Blob(prev.as_slice()),
            Arg::Blob(hash.as_slice()),
        ]);
    }
    tx.execute(&sql, &binds).await?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        args![last, prev.as_slice()],
    )
    .await?;
    Ok(last)
}

fn event_from_row(row: &AnyRow) -> StoreResult<AuditEvent> {
    let data: String = get(row, "data")?;
    Ok(AuditEvent {
        seq: get(row, "seq")?,
        at: rfc3339(get(row, "at")?),
        kind: get(row, "kind")?,
        actor: get(row, "actor")?,
        approval_id: get(row, "approval_id")?,
        data: serde_json::from_str(&data)
            .map_err(|e| StoreError::Corrupt(format!("audit data: {e}")))?,
        prev_hash: hash32(get(row, "prev_hash")?, "prev_hash")?,
        hash: hash32(get(row, "hash")?, "hash")?,
    })
}

impl Store {
    /// One conditional UPDATE and, when it changed exactly one row, its audit event, in one
    /// transaction: the shape of every operator change (revoke a client or a passkey, set
    /// groups). Returns whether it changed a row.
    pub(super) async fn update_audited<'q>(
        &self,
        update: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
        ev: NewEvent<'_>,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = update.execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            append(&mut tx, now, ev).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Events with `seq > after`, oldest first.
    #[tracing::instrument(skip(self))]
    pub async fn audit_page(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, actor, approval_id, data, prev_hash, hash FROM audit_events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The last sequence number and hash, as the appenders recorded them.
    pub async fn audit_head(&self) -> StoreResult<(i64, [u8; 32])> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.read)
            .await?;
        Ok((
            get(&row, "seq")?,
            hash32(get(&row, "hash")?, "audit head hash")?,
        ))
    }

    /// Records an event that goes with no other state change (e.g. a refused request).
    pub async fn record(&self, now: UnixTime, ev: NewEvent<'_>) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let seq = append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(seq)
    }
}

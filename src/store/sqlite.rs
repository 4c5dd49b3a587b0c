//! SQLite without a thread hop per statement, for the decision path. sqlx runs each SQLite
//! statement on a worker thread and answers through a channel, so a transaction of a dozen
//! statements crosses threads two dozen times while it holds the database's one write lock;
//! profiles of the decision finish showed that, not signatures or fsync, bounding throughput.
//!
//! Here one writer thread owns a connection and runs whole transactions as direct calls, and
//! transactions queued while one commits share the next commit; nobody is answered before the
//! commit that holds their change is durable. They share it without savepoints (which cost a
//! copy of every page a transaction touches): a transaction that fails or asks to drop changes
//! it has made rolls the batch back and is answered alone, and the others run again — so a
//! transaction may run more than once and must only touch the database. Reads run on the
//! caller's (async worker's) thread on a pooled read-only connection: a read of a few rows by
//! key from a WAL database never waits for the writer and takes microseconds, less than a trip
//! to another thread and back.
//!
//! If the writer thread ever died (a panic), callers would get `store_unavailable` until a
//! restart; nothing half-done is committed, because a batch commits only at its end.

use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::sql::{Arg, OwnedRow, WriteTx};
use super::{StoreError, StoreResult};

/// Transactions queued together commit together, up to this many.
const MAX_BATCH: usize = 64;

/// How long a batch that has company waits for more. Measured with the load generator (32
/// concurrent finishes): decisions arrive about every 0.6 ms, so a lone transaction rarely
/// finds company unless it waits; 2 ms makes batches of about six and saves more CPU per
/// decision (fewer WAL frames, fsyncs and transaction ends) than 0.2 ms or 1 ms did, at 2 ms of
/// latency under load and none when quiet.
const COMMIT_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

/// A queued transaction.
trait Job: Send {
    /// Runs it on the writer's connection (again, if its batch was rolled back); false when
    /// its changes must not be kept.
    fn run(&mut self, tx: &mut SqliteTx<'_>) -> bool;
    /// Answers it: whether the batch it last ran in was committed.
    fn reply(self: Box<Self>, committed: StoreResult<()>);
}

struct Transaction<F, T> {
    f: F,
    out: Option<StoreResult<(T, bool)>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for Transaction<F, T>
where
    T: Send,
    F: FnMut(&mut SqliteTx<'_>) -> StoreResult<(T, bool)> + Send,
{
    fn run(&mut self, tx: &mut SqliteTx<'_>) -> bool {
        let out = (self.f)(tx);
        let keep = matches!(out, Ok((_, true)));
        self.out = Some(out);
        keep
    }

    fn reply(self: Box<Self>, committed: StoreResult<()>) {
        let out = self.out.unwrap_or_else(|| Err(gone()));
        // The caller may have gone away; its transaction stands regardless.
        let _ = self.reply.send(committed.and(out.map(|(v, _)| v)));
    }
}

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// The writer thread and the read connections of one database file.
#[derive(Clone)]
pub(super) struct Direct {
    jobs: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Readers>,
    /// Held by the writer thread for each batch and by every sqlx write transaction.
    gate: Arc<tokio::sync::Mutex<()>>,
}

struct Readers {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

fn open(path: &str, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    // Statement journals (of multi-row statements inside a batch) stay in memory, not in files.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Direct {
    /// Opens the database file the pools use (migrated, in WAL mode) and starts the writer.
    pub(super) fn start(path: &str) -> anyhow::Result<Direct> {
        use anyhow::Context as _;
        let conn = open(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .context("opening the SQLite database for writing")?;
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let writer_gate = gate.clone();
        std::thread::Builder::new()
            .name("countersign-sqlite-writer".into())
            .spawn(move || run(conn, rx, &writer_gate))
            .context("starting the SQLite writer thread")?;
        Ok(Direct {
            jobs,
            gate,
            readers: Arc::new(Readers {
                path: path.to_string(),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    pub(super) fn gate(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.gate.clone()
    }

    /// Reads on the calling thread.
    pub(super) fn read(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<OwnedRow>> {
        let idle = self
            .readers
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => open(
                &self.readers.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?,
        };
        let rows = prepare(&conn, sql, args).and_then(|mut stmt| collect(&mut stmt));
        if let Ok(mut idle) = self.readers.idle.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        rows
    }

    /// Runs `f` in a transaction on the writer thread. `f` returns its result and whether to
    /// keep its changes; an error or `false` rolls its changes back. The answer comes after
    /// the commit.
    pub(super) async fn transact<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&mut SqliteTx<'_>) -> StoreResult<(T, bool)> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Transaction {
            f,
            out: None,
            reply,
        });
        self.jobs.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable(sqlx::Error::WorkerCrashed)
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, gate: &tokio::sync::Mutex<()>) {
    let mut previous = 0;
    while let Ok(first) = rx.recv() {
        // Jobs that arrive while a sqlx writer holds the gate join this batch.
        let _gate = gate.blocking_lock();
        let mut batch = vec![first];
        drain(&rx, &mut batch);
        if wait_for_company(batch.len(), previous) {
            std::thread::sleep(COMMIT_DELAY);
            drain(&rx, &mut batch);
        }
        previous = batch.len();
        if let Err(e) = commit_batch(&mut conn, batch) {
            tracing::error!(error = %e, "the SQLite writer could not commit a batch");
        }
    }
}

/// Whether a batch waits for more transactions before it commits (PostgreSQL's
/// `commit_delay` with `commit_siblings`): when others came with it or with the batch before,
/// more are likely on their way. One transaction after another (a quiet server, one client)
/// never waits.
fn wait_for_company(queued: usize, previous: usize) -> bool {
    queued > 1 || previous > 1
}

/// Adds what is queued to the batch, up to its limit.
fn drain(rx: &mpsc::Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Runs a batch in one transaction and answers every job of it.
fn commit_batch(
    conn: &mut Connection,
    mut batch: Vec<Box<dyn Job>>,
) -> Result<(), rusqlite::Error> {
    let mut tx = SqliteTx { conn };
    let result = loop {
        match tx.run_batch(&mut batch) {
            // This job is answered alone (its changes undone); the rest run again.
            Ok(Some(i)) => {
                if i < batch.len() {
                    batch.remove(i).reply(Ok(()));
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => {
                // Undo whatever the failure left open; nothing of this batch was kept.
                let _ = tx.exec("ROLLBACK");
                break Err(e);
            }
        }
    };
    let status = || match &result {
        Ok(()) => Ok(()),
        // The disk or the file refused the commit: a retry may succeed, so it is "unavailable".
        Err(e) => Err(StoreError::Unavailable(sqlx::Error::Io(
            std::io::Error::other(e.to_string()),
        ))),
    };
    for job in batch {
        job.reply(status());
    }
    result
}

/// A transaction on the writer thread's connection.
pub(super) struct SqliteTx<'c> {
    conn: &'c mut Connection,
}

impl SqliteTx<'_> {
    fn exec(&mut self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.raw_execute().map(|_| ())
    }

    /// Runs the batch in one transaction and commits it, or rolls it back and returns the
    /// index of the job that failed or asked to drop changes it had made.
    fn run_batch(&mut self, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<Option<usize>> {
        self.exec("BEGIN IMMEDIATE")?;
        for (i, job) in batch.iter_mut().enumerate() {
            let before = self.conn.total_changes();
            if !job.run(self) && self.conn.total_changes() != before {
                self.exec("ROLLBACK")?;
                return Ok(Some(i));
            }
        }
        self.exec("COMMIT")?;
        Ok(None)
    }
}

fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> StoreResult<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql)?;
    // `$n` is a named parameter to SQLite, numbered in order of first appearance; bind by
    // the number in its name, as sqlx does.
    for i in 1..=stmt.parameter_count() {
        let n: usize = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("parameter {i} of {sql}")))?;
        let arg = n
            .checked_sub(1)
            .and_then(|k| args.get(k))
            .ok_or_else(|| StoreError::Corrupt(format!("no argument ${n} for {sql}")))?;
        match *arg {
            Arg::Int(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::Text(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::OptText(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::Blob(v) => stmt.raw_bind_parameter(i, v)?,
        }
    }
    Ok(stmt)
}

/// Runs a transaction's logic written against [`WriteTx`] on a [`SqliteTx`]: every statement
/// there completes at once, so the future is ready on its first poll.
pub(super) fn block_on<T>(fut: impl std::future::Future<Output = T>) -> StoreResult<T> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(StoreError::Corrupt(
            "a writer-thread transaction waited on something".into(),
        )),
    }
}

impl WriteTx for SqliteTx<'_> {
    type Row = OwnedRow;
    const EXCLUSIVE: bool = true;

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let mut stmt = prepare(self.conn, sql, args)?;
        Ok(stmt.raw_execute()? as u64)
    }

    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> StoreResult<Vec<OwnedRow>> {
        collect(&mut prepare(self.conn, sql, args)?)
    }
}

fn collect(stmt: &mut rusqlite::CachedStatement<'_>) -> StoreResult<Vec<OwnedRow>> {
    let names: Arc<[String]> = stmt.column_names().iter().map(|n| n.to_string()).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..names.len())
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<_>>()?;
        out.push(OwnedRow {
            names: names.clone(),
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{args, Columns};

    fn database() -> (Direct, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("cs-direct-{}.db", uuid::Uuid::new_v4()));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL, b BLOB);",
        )
        .unwrap();
        (Direct::start(path.to_str().unwrap()).unwrap(), path)
    }

    fn insert(
        direct: &Direct,
        k: &'static str,
        keep: bool,
    ) -> impl std::future::Future<Output = StoreResult<u64>> {
        let direct = direct.clone();
        async move {
            direct
                .transact(move |tx| {
                    let n = block_on(tx.execute("INSERT INTO t (k, n) VALUES ($1, 1)", args![k]))??;
                    Ok((n, keep))
                })
                .await
        }
    }

    fn keys(direct: &Direct) -> Vec<String> {
        direct
            .read("SELECT k FROM t ORDER BY k", &[])
            .unwrap()
            .iter()
            .map(|r| r.col::<String>("k").unwrap())
            .collect()
    }

    #[tokio::test]
    async fn jobs_sharing_a_commit_keep_or_drop_their_own_changes() {
        let (direct, _path) = database();
        // Queued while the gate is held, so they share one commit; every other one asks to be
        // rolled back.
        let gate = direct.gate().lock_owned().await;
        let names: Vec<&'static str> = (0..40).map(|i| &*format!("k{i:02}").leak()).collect();
        let runs: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, k)| insert(&direct, k, i % 2 == 0))
            .collect();
        let all = tokio::spawn(futures_util::future::join_all(runs));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(gate);
        for r in all.await.unwrap() {
            assert_eq!(r.unwrap(), 1);
        }
        let expected: Vec<String> = names.iter().step_by(2).map(|k| k.to_string()).collect();
        assert_eq!(keys(&direct), expected);
    }

    #[tokio::test]
    async fn a_failing_job_leaves_the_others_of_its_batch_committed() {
        let (direct, _path) = database();
        let runs = vec![
            insert(&direct, "a", true),
            insert(&direct, "a", true),
            insert(&direct, "b", true),
        ];
        let results = futures_util::future::join_all(runs).await;
        // The duplicate key fails (a unique violation the caller can recognise) …
        let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(failures.len(), 1);
        assert!(crate::store::is_unique(failures[0]));
        // … and the rest stands.
        assert_eq!(keys(&direct), vec!["a".to_string(), "b".to_string()]);
    }

    #[tokio::test]
    async fn parameters_bind_by_the_number_in_their_name() {
        let (direct, _path) = database();
        // `$2` appears before `$1`: SQLite would number them 1 and 2 by appearance.
        direct
            .transact(|tx| {
                block_on(tx.execute(
                    "INSERT INTO t (n, k, b) VALUES ($2, $1, $3)",
                    args!["x", 7, &[1u8, 2][..]],
                ))??;
                Ok(((), true))
            })
            .await
            .unwrap();
        let rows = direct
            .read("SELECT k, n, b FROM t WHERE k = $1", args!["x"])
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].col::<i64>("n").unwrap(), 7);
        assert_eq!(rows[0].col::<Vec<u8>>("b").unwrap(), vec![1, 2]);
        assert!(
            rows[0].col::<i64>("k").is_err(),
            "a text column is not read as an integer"
        );
        assert!(
            direct
                .read("SELECT k FROM t WHERE k = $2", args!["x"])
                .is_err(),
            "a missing argument is refused"
        );
    }

    #[test]
    fn only_a_batch_with_company_waits_for_more() {
        assert!(
            !wait_for_company(1, 0),
            "the first transaction commits at once"
        );
        assert!(!wait_for_company(1, 1), "so does one after a lone one");
        assert!(wait_for_company(2, 1), "others came with it");
        assert!(wait_for_company(1, 3), "others came with the batch before");
    }

    #[test]
    fn block_on_refuses_a_future_that_waits() {
        assert!(block_on(std::future::pending::<()>()).is_err());
        assert_eq!(block_on(async { 5 }).unwrap(), 5);
    }
}

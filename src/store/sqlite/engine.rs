//! How SQLite is driven: one writer thread that owns the only read-write connection and runs
//! every write transaction as direct calls, and pooled read-only connections used on the
//! caller's thread.
//!
//! Why a thread and not a pool of async connections: an async SQLite driver hands each
//! statement to a worker thread and back, so a transaction of a dozen statements crosses
//! threads two dozen times while it holds the database's one write lock; profiles of the
//! decision finish showed that, not signatures or fsync, bounding throughput. Here a
//! transaction is one trip: queued as a closure, run, answered after its commit.
//!
//! Transactions queued while one commits share the next commit (group commit), and nobody is
//! answered before the commit that holds their change is durable. They share it without
//! savepoints (which cost a copy of every page a transaction touches): a transaction that fails
//! or asks to drop changes it has made rolls the batch back and is answered alone, and the
//! others run again — so a transaction may run more than once and must only touch the database.
//!
//! Reads take a read-only connection on the calling thread: a read of a few rows by key from a
//! WAL database never waits for the writer and takes microseconds, less than a trip to another
//! thread and back.
//!
//! If the writer thread ever died (a panic), callers would get `store_unavailable` until a
//! restart; nothing half-done is committed, because a batch commits only at its end.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::super::{Arrivals, StoreError, StoreResult};

/// Transactions queued together commit together, up to this many.
const MAX_BATCH: usize = 64;

/// The longest a batch waits for writes on their way. Measured with the load generator (32
/// concurrent finishes): decisions arrive about every 0.6 ms, so a lone transaction rarely
/// finds company unless it waits; waiting up to 2 ms makes batches of about six and saves more
/// CPU per decision (fewer WAL frames, fsyncs and transaction ends) than 0.2 ms or 1 ms did.
const COMMIT_DELAY: Duration = Duration::from_millis(2);

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// What a write transaction asks for its changes.
pub(in crate::store) enum Outcome<T> {
    /// Keep them (commit with the batch).
    Keep(T),
    /// Roll them back; the answer still goes to the caller.
    Drop(T),
}

/// A queued transaction.
trait Job: Send {
    /// Runs it on the writer's connection (again, if its batch was rolled back); false when
    /// its changes must not be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers it: whether the batch it last ran in was committed.
    fn reply(self: Box<Self>, committed: StoreResult<()>);
}

struct Transaction<F, T> {
    f: F,
    out: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> Job for Transaction<F, T>
where
    T: Send,
    F: FnMut(&Connection) -> StoreResult<Outcome<T>> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let (out, keep) = match (self.f)(conn) {
            Ok(Outcome::Keep(v)) => (Ok(v), true),
            Ok(Outcome::Drop(v)) => (Ok(v), false),
            Err(e) => (Err(e), false),
        };
        self.out = Some(out);
        keep
    }

    fn reply(self: Box<Self>, committed: StoreResult<()>) {
        let out = self.out.unwrap_or_else(|| Err(gone()));
        // The caller may have gone away; its transaction stands regardless.
        let _ = self.reply.send(committed.and(out));
    }
}

/// The writer thread and the read connections of one database file.
#[derive(Clone)]
pub(in crate::store) struct Engine {
    jobs: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Readers>,
    arrivals: Arrivals,
    /// How long each batch's COMMIT takes (the fsync, mostly).
    commits: prometheus_client::metrics::histogram::Histogram,
}

struct Readers {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

/// Opens a connection with the settings every connection here uses.
pub(super) fn open(path: &str, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    // Another process (the CLI beside a running server) waits on the lock instead of failing.
    // Statement journals (of multi-row statements inside a batch) stay in memory.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 10000; PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Engine {
    /// Starts the writer on a database file that is migrated and in WAL mode.
    pub(super) fn start(path: &str) -> anyhow::Result<Engine> {
        use anyhow::Context as _;
        let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .context("opening the SQLite database for writing")?;
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        let arrivals = Arrivals::default();
        let coming = arrivals.clone();
        let commits = crate::metrics::commit_histogram();
        let timed = commits.clone();
        std::thread::Builder::new()
            .name("countersign-sqlite-writer".into())
            .spawn(move || run(conn, rx, &coming, &timed))
            .context("starting the SQLite writer thread")?;
        Ok(Engine {
            jobs,
            readers: Arc::new(Readers {
                path: path.to_string(),
                idle: Mutex::new(Vec::new()),
            }),
            arrivals,
            commits,
        })
    }

    /// Where the writer records its commits' latency.
    pub(super) fn commits(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.commits.clone()
    }

    /// Where callers count writes on their way (see [`Arrivals`]).
    pub(super) fn arrivals(&self) -> Arrivals {
        self.arrivals.clone()
    }

    /// Runs `f` on a read-only connection, on the calling thread.
    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let idle = self
            .readers
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => open(&self.readers.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.readers.idle.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }

    /// Runs `f` in a write transaction on the writer thread; the answer comes after the commit.
    /// `f` may run more than once (see the module comment), so it must only touch the database.
    pub(super) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> StoreResult<Outcome<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Transaction {
            f,
            out: None,
            reply,
        });
        self.jobs.send(job).map_err(|_| gone())?;
        super::super::arrived();
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread has stopped".into())
}

fn run(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, coming: &Arrivals, commits: &Histogram) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        drain(&rx, &mut batch);
        wait_for_company(&rx, &mut batch, coming);
        if let Err(e) = commit_batch(&conn, batch, commits) {
            tracing::error!(error = %e, "the SQLite writer could not commit a batch");
        }
    }
}

/// Lets writes known to be on their way join the batch (PostgreSQL's `commit_delay` with
/// `commit_siblings`, but counted rather than guessed): a batch waits while requests being
/// handled have yet to submit their write, at most [`COMMIT_DELAY`]. A quiet server, or one
/// client, never waits; a closed loop of clients waits only for the ones still on their way.
fn wait_for_company(
    rx: &mpsc::Receiver<Box<dyn Job>>,
    batch: &mut Vec<Box<dyn Job>>,
    coming: &Arrivals,
) {
    let started = Instant::now();
    while batch.len() < MAX_BATCH && coming.count() > 0 {
        let Some(left) = COMMIT_DELAY.checked_sub(started.elapsed()) else {
            break;
        };
        match rx.recv_timeout(left) {
            Ok(job) => {
                batch.push(job);
                drain(rx, batch);
            }
            Err(_) => break,
        }
    }
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

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// Runs a batch in one transaction and answers every job of it.
fn commit_batch(
    conn: &Connection,
    mut batch: Vec<Box<dyn Job>>,
    commits: &Histogram,
) -> rusqlite::Result<()> {
    let result = loop {
        match run_batch(conn, &mut batch, commits) {
            // This job is answered alone (its changes undone); the rest run again.
            Ok(Some(i)) => {
                if i < batch.len() {
                    batch.remove(i).reply(Ok(()));
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => {
                // Undo whatever the failure left open; nothing of this batch was kept.
                let _ = exec(conn, "ROLLBACK");
                break Err(e);
            }
        }
    };
    let status = || match &result {
        Ok(()) => Ok(()),
        // The disk or the file refused the commit: a retry may succeed, so it is "unavailable".
        Err(e) => Err(StoreError::Unavailable(e.to_string())),
    };
    for job in batch {
        job.reply(status());
    }
    result
}

/// Runs the batch in one transaction and commits it, or rolls it back and returns the index
/// of the job that failed or asked to drop changes it had made.
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    commits: &Histogram,
) -> rusqlite::Result<Option<usize>> {
    exec(conn, "BEGIN IMMEDIATE")?;
    for (i, job) in batch.iter_mut().enumerate() {
        let before = conn.total_changes();
        if !job.run(conn) && conn.total_changes() != before {
            exec(conn, "ROLLBACK")?;
            return Ok(Some(i));
        }
    }
    let started = Instant::now();
    exec(conn, "COMMIT")?;
    commits.observe(started.elapsed().as_secs_f64());
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    fn database() -> Engine {
        let path = std::env::temp_dir().join(format!("cs-engine-{}.db", uuid::Uuid::new_v4()));
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL);",
        )
        .unwrap();
        Engine::start(path.to_str().unwrap()).unwrap()
    }

    async fn insert(engine: Engine, k: String, keep: bool) -> StoreResult<usize> {
        engine
            .write(move |conn| {
                let n = conn.execute("INSERT INTO t (k, n) VALUES (?1, 1)", params![k])?;
                Ok(if keep {
                    Outcome::Keep(n)
                } else {
                    Outcome::Drop(n)
                })
            })
            .await
    }

    fn keys(engine: &Engine) -> Vec<String> {
        engine
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .unwrap()
    }

    #[tokio::test]
    async fn jobs_sharing_a_commit_keep_or_drop_their_own_changes() {
        let engine = database();
        // Queued behind a slow transaction, so they share commits; every other one asks to be
        // rolled back.
        let slow = engine.clone();
        let slow = tokio::spawn(async move {
            slow.write(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                Ok(Outcome::Keep(()))
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let runs: Vec<_> = (0..40)
            .map(|i| tokio::spawn(insert(engine.clone(), format!("k{i:02}"), i % 2 == 0)))
            .collect();
        for r in runs {
            assert_eq!(r.await.unwrap().unwrap(), 1);
        }
        slow.await.unwrap().unwrap();
        let expected: Vec<String> = (0..40).step_by(2).map(|i| format!("k{i:02}")).collect();
        assert_eq!(keys(&engine), expected);
    }

    #[tokio::test]
    async fn a_failing_job_leaves_the_others_of_its_batch_committed() {
        let engine = database();
        let results = futures_util::future::join_all([
            insert(engine.clone(), "a".into(), true),
            insert(engine.clone(), "a".into(), true),
            insert(engine.clone(), "b".into(), true),
        ])
        .await;
        // The duplicate key fails, as a constraint the caller can recognise…
        let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(failures.len(), 1);
        assert!(matches!(failures[0], StoreError::Database(_)));
        // … and the rest stands.
        assert_eq!(keys(&engine), vec!["a".to_string(), "b".to_string()]);
    }

    #[tokio::test]
    async fn a_request_counts_as_on_its_way_until_it_writes() {
        let engine = database();
        let arrivals = engine.arrivals();
        let seen = arrivals
            .expecting(async {
                let before = engine.arrivals().count();
                insert(engine.clone(), "a".into(), true).await.unwrap();
                (before, engine.arrivals().count())
            })
            .await;
        assert_eq!(seen, (1, 0), "counted until its write was queued");
        assert_eq!(arrivals.count(), 0);
        // Counted but never writing: a batch commits after the longest wait anyway.
        let counted = arrivals.clone();
        let waiting = tokio::spawn(async move {
            let never = counted.expecting(std::future::pending::<()>());
            tokio::time::timeout(Duration::from_millis(200), never).await
        });
        tokio::task::yield_now().await;
        assert_eq!(insert(engine.clone(), "b".into(), true).await.unwrap(), 1);
        assert!(waiting.await.unwrap().is_err());
        assert_eq!(keys(&engine), vec!["a".to_string(), "b".to_string()]);
    }
}

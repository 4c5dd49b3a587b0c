//! The shared store: PostgreSQL through sqlx (`conns.rs` keeps the connections), for several
//! stateless replicas behind a load balancer. Its SQL and its migrations (`migrations/postgres`)
//! are its own. Rows that several transactions could change together are locked (`UPDATE …
//! RETURNING`, or `FOR UPDATE`) before they are read, and replicas hear of each other's changes
//! through `LISTEN`/`NOTIFY`.

mod cache;
mod conns;
mod ops;

pub(in crate::store) use ops::{column, FromPg};

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, Notify};

use super::{Change, StoreError};
use crate::domain::ApprovalId;

/// Channel on which replicas tell each other that an approval changed.
const CHANNEL: &str = "countersign_approvals";

pub struct PgStore {
    conns: Arc<conns::Conns>,
    changes: broadcast::Sender<Change>,
    /// Woken after a commit that recorded audit events.
    chainer: Arc<Notify>,
    cache: Arc<cache::Cache>,
    /// How long explicit transactions take to commit.
    commits: prometheus_client::metrics::histogram::Histogram,
}

/// How often the chainer looks for events other replicas recorded (its own wake it at once).
const CHAIN_EVERY: Duration = Duration::from_millis(200);
/// The least time between two rounds of the chainer: its own commits wake it, and a round per
/// commit was a quarter of the statements of a busy flow; a round every 20 ms chains what
/// came meanwhile in one batch. Readers of the chain never wait for it (they chain first).
const CHAIN_GAP: Duration = Duration::from_millis(20);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl PgStore {
    /// Connects, applies pending migrations and starts listening for other replicas' changes.
    #[tracing::instrument(skip_all)]
    pub async fn open(url: &str) -> anyhow::Result<PgStore> {
        use anyhow::Context;
        let conns = conns::Conns::new(url).context("reading the PostgreSQL URL")?;
        MIGRATOR
            .run(&mut *conns.get().await.context("connecting to PostgreSQL")?)
            .await
            .context("applying database migrations")?;
        let store = PgStore {
            conns: Arc::new(conns),
            changes: broadcast::channel(1024).0,
            chainer: Arc::new(Notify::new()),
            cache: Arc::new(cache::Cache::default()),
            commits: crate::metrics::commit_histogram(),
        };
        store.listen(url).await?;
        store.start_chainer();
        Ok(store)
    }

    /// Chains recorded audit events in the background: at once after this replica's commits,
    /// and every [`CHAIN_EVERY`] for other replicas'. Readers of the chain chain first too, so
    /// nothing waits on this task for correctness.
    fn start_chainer(&self) {
        let store = PgStore {
            conns: self.conns.clone(),
            changes: self.changes.clone(),
            chainer: self.chainer.clone(),
            cache: self.cache.clone(),
            commits: self.commits.clone(),
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = store.chainer.notified() => {}
                    () = tokio::time::sleep(CHAIN_EVERY) => {}
                }
                match store.chain_pending(false).await {
                    Ok(_) => tokio::time::sleep(CHAIN_GAP).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "chaining audit events; retrying");
                        tokio::time::sleep(CHAIN_EVERY).await;
                    }
                }
            }
        });
    }

    /// Forwards every replica's change notifications to [`super::Store::subscribe`]rs, and
    /// their invalidation notices to the cache. A lost connection is re-made by the listener;
    /// until then nothing is served from the cache, and after it nothing from before.
    async fn listen(&self, url: &str) -> anyhow::Result<()> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen_all([CHANNEL, cache::INVALIDATE]).await?;
        self.cache.set_live(true);
        let (changes, cache) = (self.changes.clone(), self.cache.clone());
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) if n.channel() == cache::INVALIDATE => cache.invalidate(),
                    Ok(Some(n)) => {
                        if let Ok(id) = ApprovalId::parse(n.payload()) {
                            let _ = changes.send(Change::Request(id));
                        }
                    }
                    // Reconnected: notices may have been missed meanwhile.
                    Ok(None) => {
                        tracing::warn!("change listener reconnected");
                        let _ = changes.send(Change::Unknown);
                        cache.set_live(true);
                    }
                    Err(e) => {
                        cache.set_live(false);
                        tracing::warn!(error = %e, "change listener lost its connection; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        // Connected again (and listening) once a query goes through.
                        if sqlx::query("SELECT 1").execute(&mut listener).await.is_ok() {
                            let _ = changes.send(Change::Unknown);
                            cache.set_live(true);
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // The connection itself failed, or the server is going away: none made before is used
        // again.
        let broken = match &e {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
            _ => false,
        };
        if broken {
            conns::failed();
        }
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            // PostgreSQL shutting down, refusing or out of connections (57P, 08, 53, and 55000
            // "database is not accepting connections").
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    c.starts_with("57P")
                        || c.starts_with("08")
                        || c.starts_with("53")
                        || c == "55000"
                }) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

fn is_unique(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

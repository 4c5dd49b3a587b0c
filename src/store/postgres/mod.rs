//! The shared store: PostgreSQL through sqlx's `PgPool`, for several stateless replicas behind
//! a load balancer. Its SQL and its migrations (`migrations/postgres`) are its own. Rows that
//! several transactions could change together are locked (`UPDATE … RETURNING`, or
//! `FOR UPDATE`) before they are read, and replicas hear of each other's changes through
//! `LISTEN`/`NOTIFY`.

mod ops;

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::StoreError;
use crate::domain::ApprovalId;

/// Channel on which replicas tell each other that an approval changed.
const CHANNEL: &str = "countersign_approvals";

pub struct PgStore {
    pool: PgPool,
    changes: broadcast::Sender<ApprovalId>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl PgStore {
    /// Connects, applies pending migrations and starts listening for other replicas' changes.
    #[tracing::instrument(skip_all)]
    pub async fn open(url: &str) -> anyhow::Result<PgStore> {
        use anyhow::Context;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations")?;
        let store = PgStore {
            pool,
            changes: broadcast::channel(1024).0,
        };
        store.listen(url).await?;
        Ok(store)
    }

    /// Forwards every replica's change notifications to [`super::Store::subscribe`]rs. The
    /// listener reconnects by itself after the database comes back.
    async fn listen(&self, url: &str) -> anyhow::Result<()> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        let changes = self.changes.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Ok(id) = ApprovalId::parse(n.payload()) {
                            let _ = changes.send(id);
                        }
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

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
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

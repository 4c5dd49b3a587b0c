//! WebAuthn ceremonies in flight and approver sessions. Both live in the database so that any
//! replica can finish what another started; both are consumed by single statements.

use super::audit::{append, NewEvent};
use super::sql::{args, Columns};
use super::users::User;
use super::{get, Store, StoreError, StoreResult};
use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    Enroll,
    SignIn,
    Decision,
}

impl CeremonyKind {
    fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Enroll => "enroll",
            CeremonyKind::SignIn => "signin",
            CeremonyKind::Decision => "decision",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ceremony {
    pub id: String,
    pub kind: CeremonyKind,
    /// Who may finish it (decision, enrolment) or who was named (username-first sign-in).
    pub user_id: Option<String>,
    /// The request a decision ceremony is bound to.
    pub approval_id: Option<String>,
    pub decision: Option<String>,
    /// What finishing needs: challenge, nonce, allowed credentials, library state.
    pub scope: serde_json::Value,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, PartialEq)]
pub enum Taken {
    Ceremony(Ceremony),
    /// It exists but belongs to another kind, request, decision or user: left in place.
    Mismatch,
    /// Never existed or already consumed.
    Gone,
}

impl Store {
    /// Stores a ceremony, with the audit event that goes with starting it, if any.
    #[tracing::instrument(skip(self, c, event), fields(ceremony = %c.id, kind = c.kind.as_str()))]
    pub async fn create_ceremony(
        &self,
        c: &Ceremony,
        event: Option<NewEvent<'_>>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Expired ceremonies are garbage; sweeping them here keeps the table small without a timer.
        sqlx::query("DELETE FROM ceremonies WHERE expires_at < $1")
            .bind(c.created_at - 3600)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ceremonies (id, kind, user_id, approval_id, decision, scope, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(c.kind.as_str())
        .bind(&c.user_id)
        .bind(&c.approval_id)
        .bind(&c.decision)
        .bind(c.scope.to_string())
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&mut *tx)
        .await?;
        if let Some(ev) = event {
            append(&mut tx, c.created_at, ev).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads a ceremony without consuming it, classified like [`Store::take_ceremony`]. The
    /// decision path verifies first and consumes inside the transaction that records the
    /// decision, so a successful decision costs one commit.
    pub async fn peek_ceremony(
        &self,
        id: &str,
        kind: CeremonyKind,
        user_id: Option<&str>,
        approval_id: Option<&str>,
    ) -> StoreResult<Taken> {
        let row = self
            .read_optional(
                "SELECT id, kind, user_id, approval_id, decision, scope, created_at, expires_at FROM ceremonies WHERE id = $1",
                args![id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Taken::Gone);
        };
        let stored_kind: String = get(&row, "kind")?;
        let c = ceremony_from_row(&row, kind)?;
        let matches = stored_kind == kind.as_str()
            && c.user_id.as_deref() == user_id
            && c.approval_id.as_deref() == approval_id;
        Ok(if matches {
            Taken::Ceremony(c)
        } else {
            Taken::Mismatch
        })
    }

    /// Ends a ceremony whatever became of it (a refused finish must not be retried); false
    /// when it had been consumed already.
    pub async fn discard_ceremony(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM ceremonies WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Consumes a ceremony in one statement if it matches what the caller is finishing; of any
    /// number of concurrent finishes exactly one gets it. `None` matches only NULL.
    #[tracing::instrument(skip(self))]
    pub async fn take_ceremony(
        &self,
        id: &str,
        kind: CeremonyKind,
        user_id: Option<&str>,
        approval_id: Option<&str>,
    ) -> StoreResult<Taken> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "DELETE FROM ceremonies WHERE id = $1 AND kind = $2 AND COALESCE(user_id, '') = $3 \
             AND COALESCE(approval_id, '') = $4 \
             RETURNING id, kind, user_id, approval_id, decision, scope, created_at, expires_at",
        )
        .bind(id)
        .bind(kind.as_str())
        .bind(user_id.unwrap_or(""))
        .bind(approval_id.unwrap_or(""))
        .fetch_optional(&mut *tx)
        .await?;
        let taken = match row {
            Some(row) => Taken::Ceremony(ceremony_from_row(&row, kind)?),
            None => {
                let exists = sqlx::query("SELECT 1 AS one FROM ceremonies WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if exists {
                    Taken::Mismatch
                } else {
                    Taken::Gone
                }
            }
        };
        tx.commit().await?;
        Ok(taken)
    }

    /// Starts a session; `replaces` (a session presented before sign-in) is ended with it, so a
    /// planted session id never survives a sign-in.
    #[tracing::instrument(skip_all, fields(user = %user_id))]
    pub async fn create_session(
        &self,
        id_hash: &[u8; 32],
        user_id: &str,
        replaces: Option<&[u8; 32]>,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        if let Some(old) = replaces {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(old.to_vec())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $3, $4)")
            .bind(id_hash.to_vec())
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The signed-in, enabled user of a live session (within both the idle and the absolute
    /// limit), marking it seen.
    #[tracing::instrument(skip_all)]
    pub async fn session_user(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<User>> {
        let row = self
            .read_optional(
                "SELECT s.last_seen_at, u.id, u.username, u.display_name, u.groups, u.created_at, u.disabled_at \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.id_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3 AND u.disabled_at IS NULL",
                args![id_hash.as_slice(), now, now - idle],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let last_seen: i64 = get(&row, "last_seen_at")?;
        // Writing on every request would serialise reads behind the writer; a minute is enough.
        if now - last_seen >= 60 {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash.to_vec())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(Some(super::users::user_from_row(&row)?))
    }

    pub async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn ceremony_from_row(row: &impl Columns, kind: CeremonyKind) -> StoreResult<Ceremony> {
    let scope: String = get(row, "scope")?;
    Ok(Ceremony {
        id: get(row, "id")?,
        kind,
        user_id: get(row, "user_id")?,
        approval_id: get(row, "approval_id")?,
        decision: get(row, "decision")?,
        scope: serde_json::from_str(&scope)
            .map_err(|e| StoreError::Corrupt(format!("ceremony scope: {e}")))?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

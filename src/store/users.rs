//! Approvers, their enrolment invitations and their passkeys.

use serde_json::json;

use super::audit::{append, NewEvent};
use super::sql::{args, Columns, WriteTx};
use super::{get, json_col, Store, StoreError, StoreResult};
use crate::clock::UnixTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub groups: Vec<String>,
    pub created_at: UnixTime,
    pub disabled_at: Option<UnixTime>,
}

impl User {
    pub fn in_any(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub public_x: Vec<u8>,
    pub public_y: Vec<u8>,
    pub counter: i64,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub flagged_at: Option<UnixTime>,
}

impl Credential {
    /// Usable for signing in and deciding: neither revoked nor flagged as a possible clone.
    pub fn usable(&self) -> bool {
        self.revoked_at.is_none() && self.flagged_at.is_none()
    }
}

/// A passkey to store once its registration verified.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: String,
    pub label: String,
    pub public_x: Vec<u8>,
    pub public_y: Vec<u8>,
    pub counter: i64,
    pub passkey: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationState {
    Usable,
    Used,
    Expired,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EnrolOutcome {
    Enrolled,
    InvitationUsed,
    InvitationExpired,
    CredentialExists,
}

const USER_COLS: &str = "id, username, display_name, groups, created_at, disabled_at";
const CRED_COLS: &str =
    "id, user_id, label, public_x, public_y, counter, created_at, last_used_at, revoked_at, flagged_at";

pub(super) fn user_from_row(row: &impl Columns) -> StoreResult<User> {
    Ok(User {
        id: get(row, "id")?,
        username: get(row, "username")?,
        display_name: get(row, "display_name")?,
        groups: json_col(row, "groups")?,
        created_at: get(row, "created_at")?,
        disabled_at: get(row, "disabled_at")?,
    })
}

fn credential_from_row(row: &impl Columns) -> StoreResult<Credential> {
    Ok(Credential {
        id: get(row, "id")?,
        user_id: get(row, "user_id")?,
        label: get(row, "label")?,
        public_x: get(row, "public_x")?,
        public_y: get(row, "public_y")?,
        counter: get(row, "counter")?,
        created_at: get(row, "created_at")?,
        last_used_at: get(row, "last_used_at")?,
        revoked_at: get(row, "revoked_at")?,
        flagged_at: get(row, "flagged_at")?,
    })
}

impl Store {
    /// Creates the user if new (or updates their groups and name) and a one-time invitation.
    #[tracing::instrument(skip(self, token_hash))]
    #[allow(clippy::too_many_arguments)]
    pub async fn invite_user(
        &self,
        username: &str,
        display_name: &str,
        groups: &[String],
        token_hash: &[u8; 32],
        expires_at: UnixTime,
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let groups_json = json!(groups).to_string();
        let existing = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let user = match existing {
            Some(row) => {
                let mut user = user_from_row(&row)?;
                if user.disabled_at.is_some() {
                    return Err(StoreError::Conflict("user is disabled"));
                }
                sqlx::query("UPDATE users SET display_name = $1, groups = $2 WHERE id = $3")
                    .bind(display_name)
                    .bind(&groups_json)
                    .bind(&user.id)
                    .execute(&mut *tx)
                    .await?;
                user.display_name = display_name.to_string();
                user.groups = groups.to_vec();
                user
            }
            None => {
                let user = User {
                    id: uuid::Uuid::new_v4().to_string(),
                    username: username.to_string(),
                    display_name: display_name.to_string(),
                    groups: groups.to_vec(),
                    created_at: now,
                    disabled_at: None,
                };
                sqlx::query(&format!(
                    "INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, NULL)"
                ))
                .bind(&user.id)
                .bind(username)
                .bind(display_name)
                .bind(&groups_json)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                user
            }
        };
        sqlx::query("INSERT INTO invitations (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash.to_vec())
            .bind(&user.id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        let ev = NewEvent {
            kind: "user_invited",
            actor,
            approval_id: None,
            data: json!({ "user": username, "groups": groups, "expires_at": expires_at }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The invitation's user and whether it can still be used.
    pub async fn invitation(
        &self,
        token_hash: &[u8; 32],
        now: UnixTime,
    ) -> StoreResult<Option<(User, InvitationState)>> {
        let row = sqlx::query(&format!(
            "SELECT i.used_at, i.expires_at, {} FROM invitations i JOIN users u ON u.id = i.user_id WHERE i.token_hash = $1",
            USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(token_hash.to_vec())
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let used: Option<i64> = get(&row, "used_at")?;
        let expires_at: i64 = get(&row, "expires_at")?;
        let user = user_from_row(&row)?;
        let state = if used.is_some() {
            InvitationState::Used
        } else if expires_at <= now || user.disabled_at.is_some() {
            InvitationState::Expired
        } else {
            InvitationState::Usable
        };
        Ok(Some((user, state)))
    }

    /// Spends the invitation and stores the passkey in one transaction: exactly one of any
    /// number of concurrent finishes enrols.
    #[tracing::instrument(skip(self, token_hash, cred), fields(credential_id = %cred.id))]
    pub async fn enrol(
        &self,
        token_hash: &[u8; 32],
        user: &User,
        cred: &NewCredential,
        now: UnixTime,
    ) -> StoreResult<EnrolOutcome> {
        let mut tx = self.begin_write().await?;
        let spent = sqlx::query(
            "UPDATE invitations SET used_at = $1 WHERE token_hash = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash.to_vec())
        .bind(&user.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if spent != 1 {
            let row = sqlx::query("SELECT used_at FROM invitations WHERE token_hash = $1")
                .bind(token_hash.to_vec())
                .fetch_optional(&mut *tx)
                .await?;
            let used = match row {
                Some(r) => get::<Option<i64>>(&r, "used_at")?.is_some(),
                None => false,
            };
            return Ok(if used {
                EnrolOutcome::InvitationUsed
            } else {
                EnrolOutcome::InvitationExpired
            });
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO credentials ({CRED_COLS}, passkey) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, $8)"
        ))
        .bind(&cred.id)
        .bind(&user.id)
        .bind(&cred.label)
        .bind(cred.public_x.clone())
        .bind(cred.public_y.clone())
        .bind(cred.counter)
        .bind(now)
        .bind(&cred.passkey)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if super::is_unique_violation(&e) => return Ok(EnrolOutcome::CredentialExists),
            other => other?,
        };
        let ev = NewEvent {
            kind: "credential_enrolled",
            actor: &format!("user:{}", user.username),
            approval_id: None,
            data: json!({ "user": user.username, "credential_id": cred.id, "label": cred.label }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(EnrolOutcome::Enrolled)
    }

    pub async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn has_users(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.read)
            .await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// Disables a user and ends their sessions; false when no active user has that name.
    #[tracing::instrument(skip(self))]
    pub async fn disable_user(
        &self,
        username: &str,
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("UPDATE users SET disabled_at = $1 WHERE username = $2 AND disabled_at IS NULL RETURNING id")
            .bind(now)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let id: String = get(&row, "id")?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        let ev = NewEvent {
            kind: "user_disabled",
            actor,
            approval_id: None,
            data: json!({ "user": username }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces a user's groups (taking effect on their next decision, even one in flight).
    #[tracing::instrument(skip(self))]
    pub async fn set_groups(
        &self,
        username: &str,
        groups: &[String],
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let update = sqlx::query("UPDATE users SET groups = $1 WHERE username = $2")
            .bind(json!(groups).to_string())
            .bind(username);
        let ev = NewEvent {
            kind: "user_groups_changed",
            actor,
            approval_id: None,
            data: json!({ "user": username, "groups": groups }),
        };
        self.update_audited(update, ev, now).await
    }

    pub async fn credential(&self, id: &str) -> StoreResult<Option<Credential>> {
        let sql = format!("SELECT {CRED_COLS} FROM credentials WHERE id = $1");
        let row = self.read_optional(&sql, args![id]).await?;
        row.as_ref().map(credential_from_row).transpose()
    }

    pub async fn user_credentials(&self, user_id: &str) -> StoreResult<Vec<Credential>> {
        let rows = sqlx::query(&format!(
            "SELECT {CRED_COLS} FROM credentials WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(credential_from_row).collect()
    }

    #[tracing::instrument(skip(self))]
    pub async fn revoke_credential(
        &self,
        username: &str,
        credential_id: &str,
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let update = sqlx::query(
            "UPDATE credentials SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND user_id = (SELECT id FROM users WHERE username = $3)",
        )
        .bind(now)
        .bind(credential_id)
        .bind(username);
        let ev = NewEvent {
            kind: "credential_revoked",
            actor,
            approval_id: None,
            data: json!({ "user": username, "credential_id": credential_id }),
        };
        self.update_audited(update, ev, now).await
    }

    /// Flags a credential whose signature counter did not advance (a possible clone), ends the
    /// ceremony it was used in, and audits it.
    pub async fn flag_clone(
        &self,
        credential_id: &str,
        username: &str,
        counter: i64,
        ceremony: Option<&str>,
        now: UnixTime,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE credentials SET flagged_at = $1 WHERE id = $2 AND flagged_at IS NULL")
            .bind(now)
            .bind(credential_id)
            .execute(&mut *tx)
            .await?;
        if let Some(c) = ceremony {
            sqlx::query("DELETE FROM ceremonies WHERE id = $1")
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        let ev = NewEvent {
            kind: "clone_suspected",
            actor: &format!("user:{username}"),
            approval_id: None,
            data: json!({ "credential_id": credential_id, "presented_counter": counter }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        tracing::warn!(target: "countersign::security", credential_id, username, counter, "signature counter did not advance: possible cloned authenticator; credential flagged");
        Ok(())
    }

    /// Records a verified use of a passkey: the counter only moves forward, in one statement.
    /// False when the stored counter is not below `counter` (both non-zero): a possible clone,
    /// which flags the credential and is audited.
    #[tracing::instrument(skip(self))]
    pub async fn advance_counter(
        &self,
        credential_id: &str,
        username: &str,
        counter: i64,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let moved = advance_counter_in(&mut tx, credential_id, counter, now).await?;
        tx.commit().await?;
        if !moved {
            self.flag_clone(credential_id, username, counter, None, now)
                .await?;
        }
        Ok(moved)
    }
}

/// WebAuthn L3 §7.2 step 21 as one conditional statement: true when the counter advanced (or
/// both it and the stored one are zero, for authenticators that do not count).
pub(super) async fn advance_counter_in(
    tx: &mut impl WriteTx,
    credential_id: &str,
    counter: i64,
    now: UnixTime,
) -> StoreResult<bool> {
    Ok(tx
        .execute(
            "UPDATE credentials SET counter = $1, last_used_at = $2 \
             WHERE id = $3 AND flagged_at IS NULL AND (counter < $1 OR ($1 = 0 AND counter = 0))",
            args![counter, now, credential_id],
        )
        .await?
        == 1)
}

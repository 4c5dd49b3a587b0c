use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use super::super::super::rows::{
    credential_ids, qualified, to_json, CredentialRow, UserRow, CREDENTIAL_COLS, USER_COLS,
};
use super::super::super::{
    CredentialShapes, EnrolOutcome, NewInvitation, NewSession, PeopleStore, StoreError, StoreResult,
};
use super::super::{is_unique, PgStore};
use super::append;
use crate::clock::UnixTime;
use crate::domain::{
    Credential, CredentialId, InvitationState, NewCredential, NewEvent, User, UserId,
};

static USER_BY_NAME: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLS} FROM users WHERE username = $1"));
static USER_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLS} FROM users WHERE id = $1"));
/// A live session's user, through a passkey that is still usable.
static ABLE_APPROVERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM users u WHERE u.disabled_at IS NULL \
           AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(u.groups::jsonb) g WHERE g = ANY($1)) \
           AND EXISTS (SELECT 1 FROM credentials c WHERE c.user_id = u.id \
                       AND c.revoked_at IS NULL AND c.flagged_at IS NULL) \
         ORDER BY u.username",
        qualified(USER_COLS, "u")
    )
});
static SESSION_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.last_seen_at AS last_seen_at, {} FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         JOIN credentials c ON c.id = s.credential_id AND c.user_id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3 \
           AND u.disabled_at IS NULL AND c.revoked_at IS NULL AND c.flagged_at IS NULL",
        qualified(USER_COLS, "u")
    )
});
const USABLE: &str = "FROM credentials c JOIN users u ON u.id = c.user_id \
     WHERE u.disabled_at IS NULL AND c.revoked_at IS NULL AND c.flagged_at IS NULL";

/// WebAuthn L3 §7.2 step 21 as one conditional statement: true when the counter advanced (or
/// both it and the stored one are zero, for authenticators that do not count).
pub(super) async fn advance_counter_in(
    tx: &mut PgConnection,
    credential: &CredentialId,
    counter: u32,
    now: UnixTime,
) -> StoreResult<bool> {
    let n = sqlx::query(
        "UPDATE credentials SET counter = $1, last_used_at = $2 \
         WHERE id = $3 AND flagged_at IS NULL AND (counter < $1 OR ($1 = 0 AND counter = 0))",
    )
    .bind(i64::from(counter))
    .bind(now)
    .bind(credential.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Flags a passkey as a possible clone and ends the sessions it opened.
pub(super) async fn flag_clone_in(
    tx: &mut PgConnection,
    credential: &CredentialId,
    now: UnixTime,
) -> StoreResult<()> {
    sqlx::query("UPDATE credentials SET flagged_at = $1 WHERE id = $2 AND flagged_at IS NULL")
        .bind(now)
        .bind(credential.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE credential_id = $1")
        .bind(credential.as_str())
        .execute(&mut *tx)
        .await?;
    // It no longer counts among who could approve.
    super::super::cache::invalidate(tx).await?;
    Ok(())
}

#[async_trait]
impl PeopleStore for PgStore {
    #[tracing::instrument(skip_all, fields(username = %invitation.username))]
    async fn invite_user(
        &self,
        invitation: &NewInvitation<'_>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<User> {
        let groups_json = to_json(&invitation.groups)?;
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let existing = sqlx::query_as::<_, UserRow>(&format!("{} FOR UPDATE", *USER_BY_NAME))
            .bind(invitation.username)
            .fetch_optional(&mut *tx)
            .await?;
        let user = match existing {
            Some(row) => {
                let mut user = row.into_domain()?;
                if user.disabled_at.is_some() {
                    return Err(StoreError::Conflict("user is disabled"));
                }
                sqlx::query("UPDATE users SET display_name = $1, groups = $2, email = coalesce($3, email) WHERE id = $4")
                    .bind(invitation.display_name)
                    .bind(&groups_json)
                    .bind(invitation.email)
                    .bind(user.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                invitation.display_name.clone_into(&mut user.display_name);
                user.groups = invitation.groups.to_vec();
                if let Some(email) = invitation.email {
                    user.email = Some(email.to_owned());
                }
                user
            }
            None => {
                let user = User {
                    id: UserId::generate(),
                    username: invitation.username.to_owned(),
                    display_name: invitation.display_name.to_owned(),
                    groups: invitation.groups.to_vec(),
                    created_at: now,
                    disabled_at: None,
                    email: invitation.email.map(str::to_owned),
                };
                sqlx::query(&format!(
                    "INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, NULL, $6)"
                ))
                .bind(user.id.to_string())
                .bind(&user.username)
                .bind(&user.display_name)
                .bind(&groups_json)
                .bind(now)
                .bind(&user.email)
                .execute(&mut *tx)
                .await?;
                user
            }
        };
        sqlx::query("INSERT INTO invitations (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(invitation.token_hash.as_slice())
            .bind(user.id.to_string())
            .bind(now)
            .bind(invitation.expires_at)
            .execute(&mut *tx)
            .await?;
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit_invalidating(tx).await?;
        Ok(user)
    }

    #[tracing::instrument(skip_all)]
    async fn invitation(
        &self,
        token_hash: &[u8; 32],
        now: UnixTime,
    ) -> StoreResult<Option<(User, InvitationState)>> {
        let row = sqlx::query(&format!(
            "SELECT i.used_at AS used_at, i.expires_at AS invitation_expires_at, {} FROM invitations i \
             JOIN users u ON u.id = i.user_id WHERE i.token_hash = $1",
            qualified(USER_COLS, "u")
        ))
        .bind(token_hash.as_slice())
        .fetch_optional(&mut *self.conns.get().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let used: Option<i64> = row.try_get("used_at")?;
        let expires_at: i64 = row.try_get("invitation_expires_at")?;
        let user = <UserRow as sqlx::FromRow<_>>::from_row(&row)?.into_domain()?;
        let state = if used.is_some() {
            InvitationState::Used
        } else if expires_at <= now || user.disabled_at.is_some() {
            InvitationState::Expired
        } else {
            InvitationState::Usable
        };
        Ok(Some((user, state)))
    }

    #[tracing::instrument(skip_all, fields(credential_id = %credential.id))]
    async fn enrol(
        &self,
        token_hash: &[u8; 32],
        user: &User,
        credential: &NewCredential,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<EnrolOutcome> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let spent = sqlx::query(
            "UPDATE invitations SET used_at = $1 WHERE token_hash = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash.as_slice())
        .bind(user.id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if spent != 1 {
            let used: Option<Option<i64>> =
                sqlx::query_scalar("SELECT used_at FROM invitations WHERE token_hash = $1")
                    .bind(token_hash.as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Ok(if used.flatten().is_some() {
                EnrolOutcome::InvitationUsed
            } else {
                EnrolOutcome::InvitationExpired
            });
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO credentials ({CREDENTIAL_COLS}, passkey) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL, $8)"
        ))
        .bind(credential.id.as_str())
        .bind(user.id.to_string())
        .bind(&credential.label)
        .bind(&credential.public_x)
        .bind(&credential.public_y)
        .bind(credential.counter)
        .bind(now)
        .bind(&credential.passkey)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique(&e) => return Ok(EnrolOutcome::CredentialExists),
            other => other?,
        };
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit_invalidating(tx).await?;
        Ok(EnrolOutcome::Enrolled)
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        sqlx::query_as::<_, UserRow>(&USER_BY_ID)
            .bind(id.to_string())
            .fetch_optional(&mut *self.conns.get().await?)
            .await?
            .map(UserRow::into_domain)
            .transpose()
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        sqlx::query_as::<_, UserRow>(&USER_BY_NAME)
            .bind(username)
            .fetch_optional(&mut *self.conns.get().await?)
            .await?
            .map(UserRow::into_domain)
            .transpose()
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        sqlx::query_as::<_, UserRow>(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .fetch_all(&mut *self.conns.get().await?)
            .await?
            .into_iter()
            .map(UserRow::into_domain)
            .collect()
    }

    #[tracing::instrument(skip(self))]
    async fn able_approvers(&self, groups: &[String]) -> StoreResult<Vec<User>> {
        if let Some(users) = self.cache.able(groups) {
            return Ok(users);
        }
        let generation = self.cache.generation();
        let users = sqlx::query_as::<_, UserRow>(&ABLE_APPROVERS)
            .bind(groups)
            .fetch_all(&mut *self.conns.get().await?)
            .await?
            .into_iter()
            .map(UserRow::into_domain)
            .collect::<StoreResult<Vec<_>>>()?;
        if let Some(generation) = generation {
            self.cache.put_able(generation, groups, &users);
        }
        Ok(users)
    }

    async fn has_users(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
            .fetch_one(&mut *self.conns.get().await?)
            .await?)
    }

    #[tracing::instrument(skip(self, event))]
    async fn disable_user(
        &self,
        username: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let id: Option<String> = sqlx::query_scalar("UPDATE users SET disabled_at = $1 WHERE username = $2 AND disabled_at IS NULL RETURNING id")
            .bind(now)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else { return Ok(false) };
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit_invalidating(tx).await?;
        Ok(true)
    }

    #[tracing::instrument(skip(self, event))]
    async fn set_groups(
        &self,
        username: &str,
        groups: &[String],
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let update = sqlx::query("UPDATE users SET groups = $1 WHERE username = $2")
            .bind(to_json(&groups)?)
            .bind(username);
        self.update_audited(update, event, now).await
    }

    async fn credential(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        sqlx::query_as::<_, CredentialRow>(&format!(
            "SELECT {CREDENTIAL_COLS} FROM credentials WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *self.conns.get().await?)
        .await?
        .map(CredentialRow::into_domain)
        .transpose()
    }

    async fn credentials_of(&self, user: UserId) -> StoreResult<Vec<Credential>> {
        sqlx::query_as::<_, CredentialRow>(&format!(
            "SELECT {CREDENTIAL_COLS} FROM credentials WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user.to_string())
        .fetch_all(&mut *self.conns.get().await?)
        .await?
        .into_iter()
        .map(CredentialRow::into_domain)
        .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn sign_in_credentials(&self, username: &str) -> StoreResult<Vec<CredentialId>> {
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT c.id {USABLE} AND u.username = $1 ORDER BY c.created_at, c.id"
        ))
        .bind(username)
        .fetch_all(&mut *self.conns.get().await?)
        .await?;
        credential_ids(&ids)
    }

    async fn credential_shapes(&self) -> StoreResult<CredentialShapes> {
        let lengths: Vec<i32> =
            sqlx::query_scalar(&format!("SELECT length(c.id) {USABLE} LIMIT 1000"))
                .fetch_all(&mut *self.conns.get().await?)
                .await?;
        let counts: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) {USABLE} GROUP BY c.user_id LIMIT 1000"
        ))
        .fetch_all(&mut *self.conns.get().await?)
        .await?;
        let lengths: Vec<i64> = lengths.into_iter().map(i64::from).collect();
        Ok(CredentialShapes::from_counts(&lengths, &counts))
    }

    #[tracing::instrument(skip(self, event))]
    async fn revoke_credential(
        &self,
        username: &str,
        credential: &CredentialId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let done = sqlx::query(
            "UPDATE credentials SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND user_id = (SELECT id FROM users WHERE username = $3)",
        )
        .bind(now)
        .bind(credential.as_str())
        .bind(username)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            sqlx::query("DELETE FROM sessions WHERE credential_id = $1")
                .bind(credential.as_str())
                .execute(&mut *tx)
                .await?;
            append(&mut tx, std::slice::from_ref(&event), now).await?;
            self.commit_invalidating(tx).await?;
        } else {
            self.commit(tx).await?;
        }
        Ok(done)
    }

    #[tracing::instrument(skip(self, on_clone))]
    async fn advance_counter(
        &self,
        credential: &CredentialId,
        counter: u32,
        on_clone: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let moved = advance_counter_in(&mut tx, credential, counter, now).await?;
        if !moved {
            flag_clone_in(&mut tx, credential, now).await?;
            append(&mut tx, std::slice::from_ref(&on_clone), now).await?;
        }
        self.commit(tx).await?;
        Ok(moved)
    }

    #[tracing::instrument(skip_all, fields(user = %session.user_id))]
    async fn create_session(&self, session: &NewSession, now: UnixTime) -> StoreResult<()> {
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        if let Some(old) = &session.replaces {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(old.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sessions (id_hash, user_id, credential_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5)")
            .bind(session.id_hash.as_slice())
            .bind(session.user_id.to_string())
            .bind(session.credential_id.as_str())
            .bind(now)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn session_user(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<User>> {
        let Some((last_seen, user)) = self.live_session(id_hash, now, idle).await? else {
            return Ok(None);
        };
        // Writing on every request would cost a write per read; a minute is enough.
        if now - last_seen >= 60 {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(id_hash.as_slice())
                .execute(&mut *self.conns.get().await?)
                .await?;
        }
        Ok(Some(user))
    }

    async fn session_alive(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<User>> {
        Ok(self
            .live_session(id_hash, now, idle)
            .await?
            .map(|(_, user)| user))
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash.as_slice())
            .execute(&mut *self.conns.get().await?)
            .await?;
        Ok(())
    }
}

impl PgStore {
    /// A live session's person and when it was last seen.
    async fn live_session(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<(i64, User)>> {
        let row = sqlx::query(&SESSION_USER)
            .bind(id_hash.as_slice())
            .bind(now)
            .bind(now - idle)
            .fetch_optional(&mut *self.conns.get().await?)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let last_seen: i64 = row.try_get("last_seen_at")?;
        let user = <UserRow as sqlx::FromRow<_>>::from_row(&row)?.into_domain()?;
        Ok(Some((last_seen, user)))
    }
}

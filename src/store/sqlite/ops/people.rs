use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::super::super::rows::{
    credential_ids, qualified, to_json, CredentialRow, UserRow, CREDENTIAL_COLS, USER_COLS,
};
use super::super::super::{
    CredentialShapes, EnrolOutcome, NewInvitation, NewSession, PeopleStore, StoreError, StoreResult,
};
use super::super::{is_unique, Outcome, SqliteStore};
use super::{all, append, exec, first};
use crate::clock::UnixTime;
use crate::domain::{
    Credential, CredentialId, InvitationState, NewCredential, NewEvent, User, UserId,
};

static USER_BY_NAME: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLS} FROM users WHERE username = ?1"));
static USER_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {USER_COLS} FROM users WHERE id = ?1"));
pub(super) static CREDENTIAL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {CREDENTIAL_COLS} FROM credentials WHERE id = ?1"));
/// A live session's user, through a passkey that is still usable.
static SESSION_USER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.last_seen_at AS last_seen_at, {} FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         JOIN credentials c ON c.id = s.credential_id AND c.user_id = s.user_id \
         WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND s.last_seen_at > ?3 \
           AND u.disabled_at IS NULL AND c.revoked_at IS NULL AND c.flagged_at IS NULL",
        qualified(USER_COLS, "u")
    )
});

/// WebAuthn L3 §7.2 step 21 as one conditional statement: true when the counter advanced (or
/// both it and the stored one are zero, for authenticators that do not count).
pub(super) fn advance_counter_in(
    conn: &Connection,
    credential: &CredentialId,
    counter: u32,
    now: UnixTime,
) -> StoreResult<bool> {
    Ok(exec(
        conn,
        "UPDATE credentials SET counter = ?1, last_used_at = ?2 \
         WHERE id = ?3 AND flagged_at IS NULL AND (counter < ?1 OR (?1 = 0 AND counter = 0))",
        params![i64::from(counter), now, credential.as_str()],
    )? == 1)
}

/// Flags a passkey as a possible clone and ends the sessions it opened.
pub(super) fn flag_clone_in(
    conn: &Connection,
    credential: &CredentialId,
    now: UnixTime,
) -> StoreResult<()> {
    exec(
        conn,
        "UPDATE credentials SET flagged_at = ?1 WHERE id = ?2 AND flagged_at IS NULL",
        params![now, credential.as_str()],
    )?;
    exec(
        conn,
        "DELETE FROM sessions WHERE credential_id = ?1",
        params![credential.as_str()],
    )?;
    Ok(())
}

/// Sets of groups whose approvers are kept at most.
const MAX_GROUP_SETS: usize = 1_000;

/// The enabled people in any of the groups (a JSON array) with a usable passkey.
static ABLE_APPROVERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM users u WHERE u.disabled_at IS NULL \
           AND EXISTS (SELECT 1 FROM json_each(u.groups) g \
                       WHERE g.value IN (SELECT value FROM json_each(?1))) \
           AND EXISTS (SELECT 1 FROM credentials c WHERE c.user_id = u.id \
                       AND c.revoked_at IS NULL AND c.flagged_at IS NULL) \
         ORDER BY u.username",
        qualified(USER_COLS, "u")
    )
});

#[async_trait]
impl PeopleStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(username = %invitation.username))]
    async fn invite_user(
        &self,
        invitation: &NewInvitation<'_>,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<User> {
        let username = invitation.username.to_owned();
        let display_name = invitation.display_name.to_owned();
        let groups = invitation.groups.to_vec();
        let groups_json = to_json(&groups)?;
        let email = invitation.email.map(str::to_owned);
        let (token_hash, expires_at) = (invitation.token_hash, invitation.expires_at);
        self.engine
            .write(move |conn| {
                let user = match first::<UserRow>(conn, &USER_BY_NAME, params![username])? {
                    Some(row) => {
                        let mut user = row.into_domain()?;
                        if user.disabled_at.is_some() {
                            return Err(StoreError::Conflict("user is disabled"));
                        }
                        exec(conn, "UPDATE users SET display_name = ?1, groups = ?2, email = coalesce(?3, email) WHERE id = ?4",
                            params![display_name, groups_json, email, user.id.to_string()])?;
                        user.display_name.clone_from(&display_name);
                        user.groups.clone_from(&groups);
                        if email.is_some() {
                            user.email.clone_from(&email);
                        }
                        user
                    }
                    None => {
                        let user = User {
                            id: UserId::generate(),
                            username: username.clone(),
                            display_name: display_name.clone(),
                            groups: groups.clone(),
                            created_at: now,
                            disabled_at: None,
                            email: email.clone(),
                        };
                        exec(conn, &format!("INSERT INTO users ({USER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)"),
                            params![user.id.to_string(), username, display_name, groups_json, now, email])?;
                        user
                    }
                };
                exec(conn, "INSERT INTO invitations (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![token_hash.as_slice(), user.id.to_string(), now, expires_at])?;
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(user))
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn invitation(
        &self,
        token_hash: &[u8; 32],
        now: UnixTime,
    ) -> StoreResult<Option<(User, InvitationState)>> {
        let found = self.engine.read(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT used_at, expires_at, user_id FROM invitations WHERE token_hash = ?1",
                )?
                .query_row(params![token_hash.as_slice()], |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            let Some((used, expires_at, user_id)) = row else {
                return Ok(None);
            };
            let user = first::<UserRow>(conn, &USER_BY_ID, params![user_id])?;
            Ok(user.map(|u| (used, expires_at, u)))
        })?;
        let Some((used, expires_at, user)) = found else {
            return Ok(None);
        };
        let user = user.into_domain()?;
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
        let (token_hash, user_id, c) = (*token_hash, user.id.to_string(), credential.clone());
        self.engine
            .write(move |conn| {
                let spent = exec(conn,
                    "UPDATE invitations SET used_at = ?1 WHERE token_hash = ?2 AND user_id = ?3 AND used_at IS NULL AND expires_at > ?1",
                    params![now, token_hash.as_slice(), user_id])?;
                if spent != 1 {
                    let used: Option<Option<i64>> = conn
                        .prepare_cached("SELECT used_at FROM invitations WHERE token_hash = ?1")?
                        .query_row(params![token_hash.as_slice()], |r| r.get(0))
                        .optional()?;
                    return Ok(Outcome::Drop(if used.flatten().is_some() {
                        EnrolOutcome::InvitationUsed
                    } else {
                        EnrolOutcome::InvitationExpired
                    }));
                }
                let inserted = conn.prepare_cached(&format!(
                    "INSERT INTO credentials ({CREDENTIAL_COLS}, passkey) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL, NULL, ?8)"
                ))?.execute(params![c.id.as_str(), user_id, c.label, c.public_x, c.public_y, c.counter, now, c.passkey]);
                match inserted {
                    Err(e) if is_unique(&e) => return Ok(Outcome::Drop(EnrolOutcome::CredentialExists)),
                    other => other?,
                };
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(EnrolOutcome::Enrolled))
            })
            .await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.engine
            .read(|conn| first::<UserRow>(conn, &USER_BY_ID, params![id.to_string()]))?
            .map(UserRow::into_domain)
            .transpose()
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        self.engine
            .read(|conn| first::<UserRow>(conn, &USER_BY_NAME, params![username]))?
            .map(UserRow::into_domain)
            .transpose()
    }

    #[tracing::instrument(skip(self))]
    async fn able_approvers(&self, groups: &[String]) -> StoreResult<Vec<User>> {
        let json = serde_json::to_string(groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.engine.read(|conn| {
            // The revision first: a change after it makes what is read next look stale.
            let rev: i64 = conn
                .prepare_cached("SELECT rev FROM people_revision WHERE id = 1")?
                .query_row([], |r| r.get(0))?;
            if let Some(users) = self.able.lock().ok().and_then(|able| {
                able.get(groups)
                    .filter(|(at, _)| *at == rev)
                    .map(|(_, users)| users.clone())
            }) {
                return Ok(users);
            }
            let users = all::<UserRow>(conn, &ABLE_APPROVERS, params![json])?
                .into_iter()
                .map(UserRow::into_domain)
                .collect::<StoreResult<Vec<_>>>()?;
            if let Ok(mut able) = self.able.lock() {
                if able.len() >= MAX_GROUP_SETS {
                    able.clear();
                }
                able.insert(groups.to_vec(), (rev, users.clone()));
            }
            Ok(users)
        })
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        self.engine
            .read(|conn| {
                all::<UserRow>(
                    conn,
                    &format!("SELECT {USER_COLS} FROM users ORDER BY username"),
                    [],
                )
            })?
            .into_iter()
            .map(UserRow::into_domain)
            .collect()
    }

    async fn has_users(&self) -> StoreResult<bool> {
        self.engine.read(|conn| {
            Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))?)
        })
    }

    #[tracing::instrument(skip(self, event))]
    async fn disable_user(
        &self,
        username: &str,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let username = username.to_owned();
        self.engine
            .write(move |conn| {
                let id: Option<String> = conn
                    .prepare_cached("UPDATE users SET disabled_at = ?1 WHERE username = ?2 AND disabled_at IS NULL RETURNING id")?
                    .query_row(params![now, username], |r| r.get(0))
                    .optional()?;
                let Some(id) = id else { return Ok(Outcome::Keep(false)) };
                exec(conn, "DELETE FROM sessions WHERE user_id = ?1", params![id])?;
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(true))
            })
            .await
    }

    #[tracing::instrument(skip(self, event))]
    async fn set_groups(
        &self,
        username: &str,
        groups: &[String],
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let params = vec![to_json(&groups)?.into(), username.to_owned().into()];
        self.update_audited(
            "UPDATE users SET groups = ?1 WHERE username = ?2",
            params,
            event,
            now,
        )
        .await
    }

    async fn credential(&self, id: &CredentialId) -> StoreResult<Option<Credential>> {
        self.engine
            .read(|conn| first::<CredentialRow>(conn, &CREDENTIAL, params![id.as_str()]))?
            .map(CredentialRow::into_domain)
            .transpose()
    }

    async fn credentials_of(&self, user: UserId) -> StoreResult<Vec<Credential>> {
        self.engine
            .read(|conn| {
                all::<CredentialRow>(conn,
                    &format!("SELECT {CREDENTIAL_COLS} FROM credentials WHERE user_id = ?1 ORDER BY created_at, id"),
                    params![user.to_string()])
            })?
            .into_iter()
            .map(CredentialRow::into_domain)
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn sign_in_credentials(&self, username: &str) -> StoreResult<Vec<CredentialId>> {
        let ids: Vec<String> = self.engine.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.id FROM users u JOIN credentials c ON c.user_id = u.id \
                 WHERE u.username = ?1 AND u.disabled_at IS NULL AND c.revoked_at IS NULL AND c.flagged_at IS NULL \
                 ORDER BY c.created_at, c.id",
            )?;
            let rows = stmt.query_map(params![username], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        credential_ids(&ids)
    }

    async fn credential_shapes(&self) -> StoreResult<CredentialShapes> {
        self.engine.read(|conn| {
            let usable = "FROM credentials c JOIN users u ON u.id = c.user_id \
                          WHERE u.disabled_at IS NULL AND c.revoked_at IS NULL AND c.flagged_at IS NULL";
            let lengths: Vec<i64> = conn
                .prepare_cached(&format!("SELECT length(c.id) {usable} LIMIT 1000"))?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let counts: Vec<i64> = conn
                .prepare_cached(&format!("SELECT COUNT(*) {usable} GROUP BY c.user_id LIMIT 1000"))?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(CredentialShapes::from_counts(&lengths, &counts))
        })
    }

    #[tracing::instrument(skip(self, event))]
    async fn revoke_credential(
        &self,
        username: &str,
        credential: &CredentialId,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let (username, credential) = (username.to_owned(), credential.clone());
        self.engine
            .write(move |conn| {
                let done = exec(
                    conn,
                    "UPDATE credentials SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL \
                     AND user_id = (SELECT id FROM users WHERE username = ?3)",
                    params![now, credential.as_str(), username],
                )? == 1;
                if done {
                    exec(
                        conn,
                        "DELETE FROM sessions WHERE credential_id = ?1",
                        params![credential.as_str()],
                    )?;
                    append(conn, std::slice::from_ref(&event), now)?;
                }
                Ok(Outcome::Keep(done))
            })
            .await
    }

    #[tracing::instrument(skip(self, on_clone))]
    async fn advance_counter(
        &self,
        credential: &CredentialId,
        counter: u32,
        on_clone: NewEvent,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let credential = credential.clone();
        self.engine
            .write(move |conn| {
                if advance_counter_in(conn, &credential, counter, now)? {
                    return Ok(Outcome::Keep(true));
                }
                flag_clone_in(conn, &credential, now)?;
                append(conn, std::slice::from_ref(&on_clone), now)?;
                Ok(Outcome::Keep(false))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(user = %session.user_id))]
    async fn create_session(&self, session: &NewSession, now: UnixTime) -> StoreResult<()> {
        let s = session.clone();
        self.engine
            .write(move |conn| {
                if let Some(old) = &s.replaces {
                    exec(conn, "DELETE FROM sessions WHERE id_hash = ?1", params![old.as_slice()])?;
                }
                exec(conn, "DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
                exec(conn,
                    "INSERT INTO sessions (id_hash, user_id, credential_id, created_at, last_seen_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                    params![s.id_hash.as_slice(), s.user_id.to_string(), s.credential_id.as_str(), now, s.expires_at])?;
                Ok(Outcome::Keep(()))
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn session_user(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<User>> {
        let Some((last_seen, user)) = self.live_session(id_hash, now, idle)? else {
            return Ok(None);
        };
        // Writing on every request would put every read behind the writer; a minute is enough.
        if now - last_seen >= 60 {
            let id_hash = *id_hash;
            self.engine
                .write(move |conn| {
                    exec(
                        conn,
                        "UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2",
                        params![now, id_hash.as_slice()],
                    )?;
                    Ok(Outcome::Keep(()))
                })
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
        Ok(self.live_session(id_hash, now, idle)?.map(|(_, user)| user))
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> StoreResult<()> {
        let id_hash = *id_hash;
        self.engine
            .write(move |conn| {
                exec(
                    conn,
                    "DELETE FROM sessions WHERE id_hash = ?1",
                    params![id_hash.as_slice()],
                )?;
                Ok(Outcome::Keep(()))
            })
            .await
    }
}

/// When a session was last seen.
struct LastSeen {
    last_seen_at: i64,
}

crate::store::rows::from_row! { LastSeen { last_seen_at } }

impl SqliteStore {
    /// A live session's person and when it was last seen.
    fn live_session(
        &self,
        id_hash: &[u8; 32],
        now: UnixTime,
        idle: i64,
    ) -> StoreResult<Option<(i64, User)>> {
        let found = self.engine.read(|conn| {
            first::<(LastSeen, UserRow)>(
                conn,
                &SESSION_USER,
                params![id_hash.as_slice(), now, now - idle],
            )
        })?;
        found
            .map(|(seen, user)| Ok((seen.last_seen_at, user.into_domain()?)))
            .transpose()
    }
}

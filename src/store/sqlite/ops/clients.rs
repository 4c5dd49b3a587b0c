use async_trait::async_trait;
use rusqlite::params;

use super::super::super::rows::{to_json, ClientRow, CLIENT_COLS};
use super::super::super::{ClientStore, StoreError, StoreResult};
use super::super::{is_unique, Outcome, SqliteStore};
use super::{all, append, first};
use crate::clock::UnixTime;
use crate::domain::{Client, ClientId, NewEvent, Rights};

#[async_trait]
impl ClientStore for SqliteStore {
    #[tracing::instrument(skip(self, key_hash, event))]
    async fn create_client(
        &self,
        name: &str,
        key_hash: &[u8; 32],
        rights: &Rights,
        event: NewEvent,
        now: UnixTime,
    ) -> StoreResult<Client> {
        let client = Client {
            id: ClientId::generate(),
            name: name.to_owned(),
            rights: rights.clone(),
            created_at: now,
            revoked_at: None,
        };
        let (c, key_hash, rights) = (client.clone(), *key_hash, to_json(rights)?);
        self.engine
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached("INSERT INTO clients (id, name, key_hash, rights, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![c.id.to_string(), c.name, key_hash.as_slice(), rights, now]);
                match inserted {
                    Err(e) if is_unique(&e) => return Err(StoreError::Conflict("client name exists")),
                    other => other?,
                };
                append(conn, std::slice::from_ref(&event), now)?;
                Ok(Outcome::Keep(()))
            })
            .await?;
        Ok(client)
    }

    #[tracing::instrument(skip_all)]
    async fn client_by_key_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<Client>> {
        self.engine
            .read(|conn| {
                first::<ClientRow>(
                    conn,
                    &format!("SELECT {CLIENT_COLS} FROM clients WHERE key_hash = ?1"),
                    params![key_hash.as_slice()],
                )
            })?
            .map(ClientRow::into_domain)
            .transpose()
    }

    async fn client_active(&self, id: ClientId) -> StoreResult<bool> {
        self.engine.read(|conn| active(conn, &id.to_string()))
    }

    async fn clients(&self) -> StoreResult<Vec<Client>> {
        self.engine
            .read(|conn| {
                all::<ClientRow>(
                    conn,
                    &format!("SELECT {CLIENT_COLS} FROM clients ORDER BY name"),
                    [],
                )
            })?
            .into_iter()
            .map(ClientRow::into_domain)
            .collect()
    }

    async fn has_clients(&self) -> StoreResult<bool> {
        self.engine.read(|conn| {
            Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM clients)", [], |r| r.get(0))?)
        })
    }

    #[tracing::instrument(skip(self, event))]
    async fn revoke_client(&self, name: &str, event: NewEvent, now: UnixTime) -> StoreResult<bool> {
        let params = vec![now.into(), name.to_owned().into()];
        self.update_audited(
            "UPDATE clients SET revoked_at = ?1 WHERE name = ?2 AND revoked_at IS NULL",
            params,
            event,
            now,
        )
        .await
    }
}

/// Whether the client with this id exists and is not revoked.
pub(super) fn active(conn: &rusqlite::Connection, id: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM clients WHERE id = ?1 AND revoked_at IS NULL)",
        )?
        .query_row(params![id], |r| r.get(0))?)
}

use async_trait::async_trait;

use super::super::super::rows::{to_json, ClientRow, CLIENT_COLS};
use super::super::super::{ClientStore, StoreError, StoreResult};
use super::super::{is_unique, PgStore};
use super::append;
use crate::clock::UnixTime;
use crate::domain::{Client, ClientId, NewEvent, Rights};

#[async_trait]
impl ClientStore for PgStore {
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
        let mut conn = self.conns.get().await?;
        let mut tx = conn.begin().await?;
        let inserted = sqlx::query("INSERT INTO clients (id, name, key_hash, rights, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(client.id.to_string())
            .bind(name)
            .bind(key_hash.as_slice())
            .bind(to_json(rights)?)
            .bind(now)
            .execute(&mut *tx)
            .await;
        match inserted {
            Err(e) if is_unique(&e) => return Err(StoreError::Conflict("client name exists")),
            other => other?,
        };
        append(&mut tx, std::slice::from_ref(&event), now).await?;
        self.commit(tx).await?;
        Ok(client)
    }

    #[tracing::instrument(skip_all)]
    async fn client_by_key_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<Client>> {
        if let Some(client) = self.cache.client(key_hash) {
            return Ok(Some(client));
        }
        let generation = self.cache.generation();
        let client = sqlx::query_as::<_, ClientRow>(&format!(
            "SELECT {CLIENT_COLS} FROM clients WHERE key_hash = $1"
        ))
        .bind(key_hash.as_slice())
        .fetch_optional(&mut *self.conns.get().await?)
        .await?
        .map(ClientRow::into_domain)
        .transpose()?;
        // Only clients found are kept: a key not known yet may be one being created now.
        if let (Some(generation), Some(client)) = (generation, &client) {
            self.cache.put_client(generation, *key_hash, client);
        }
        Ok(client)
    }

    async fn client_active(&self, id: ClientId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1 AND revoked_at IS NULL)",
        )
        .bind(id.to_string())
        .fetch_one(&mut *self.conns.get().await?)
        .await?)
    }

    async fn clients(&self) -> StoreResult<Vec<Client>> {
        sqlx::query_as::<_, ClientRow>(&format!("SELECT {CLIENT_COLS} FROM clients ORDER BY name"))
            .fetch_all(&mut *self.conns.get().await?)
            .await?
            .into_iter()
            .map(ClientRow::into_domain)
            .collect()
    }

    async fn has_clients(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM clients)")
            .fetch_one(&mut *self.conns.get().await?)
            .await?)
    }

    #[tracing::instrument(skip(self, event))]
    async fn revoke_client(&self, name: &str, event: NewEvent, now: UnixTime) -> StoreResult<bool> {
        let update = sqlx::query(
            "UPDATE clients SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name);
        self.update_audited(update, event, now).await
    }
}

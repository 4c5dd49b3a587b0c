use serde_json::json;
use sqlx::any::AnyRow;

use super::audit::{append, NewEvent};
use super::{get, is_unique_violation, json_col, Store, StoreError, StoreResult};
use crate::client::{Client, Rights};
use crate::clock::UnixTime;

fn client_from_row(row: &AnyRow) -> StoreResult<Client> {
    Ok(Client {
        id: get(row, "id")?,
        name: get(row, "name")?,
        rights: json_col(row, "rights")?,
        created_at: get(row, "created_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

const CLIENT_COLS: &str = "id, name, rights, created_at, revoked_at";

impl Store {
    /// Creates a client; `Conflict` when the name is taken.
    #[tracing::instrument(skip(self, key_hash))]
    pub async fn create_client(
        &self,
        name: &str,
        key_hash: &[u8; 32],
        rights: &Rights,
        actor: &str,
        now: UnixTime,
    ) -> StoreResult<Client> {
        let mut tx = self.begin_write().await?;
        let id = uuid::Uuid::new_v4().to_string();
        let rights_json =
            serde_json::to_string(rights).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let inserted = sqlx::query(
            "INSERT INTO clients (id, name, key_hash, rights, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(key_hash.to_vec())
        .bind(&rights_json)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict("client name exists"))
            }
            other => other?,
        };
        let ev = NewEvent {
            kind: "client_created",
            actor,
            approval_id: None,
            data: json!({ "client": name, "rights": rights }),
        };
        append(&mut tx, now, ev).await?;
        tx.commit().await?;
        Ok(Client {
            id,
            name: name.to_string(),
            rights: rights.clone(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// The client holding this key, revoked or not.
    #[tracing::instrument(skip_all)]
    pub async fn client_by_key_hash(&self, key_hash: &[u8; 32]) -> StoreResult<Option<Client>> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLS} FROM clients WHERE key_hash = $1"
        ))
        .bind(key_hash.to_vec())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    pub async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        let rows = sqlx::query(&format!("SELECT {CLIENT_COLS} FROM clients ORDER BY name"))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Revokes a client's key at once; false when no active client has that name.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_client(&self, name: &str, actor: &str, now: UnixTime) -> StoreResult<bool> {
        let update = sqlx::query(
            "UPDATE clients SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name);
        let ev = NewEvent {
            kind: "client_revoked",
            actor,
            approval_id: None,
            data: json!({ "client": name }),
        };
        self.update_audited(update, ev, now).await
    }

    /// Whether any client was ever created: the first start creates the `demo` client.
    pub async fn has_clients(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM clients")
            .fetch_one(&self.read)
            .await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }
}

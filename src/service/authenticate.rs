//! A backend service proves who it is: the API key of `Authorization: Bearer …`.

use super::{refuse, Result, Services};
use crate::domain::client::key_hash;
use crate::domain::{Client, Refusal};

/// The client holding `key`, if it exists and is not revoked (401 otherwise, the same for both).
pub async fn client(svc: &Services, key: Option<&str>) -> Result<Client> {
    let Some(key) = key else {
        return refuse(Refusal::Unauthorized);
    };
    match svc.store.client_by_key_hash(&key_hash(key.trim())).await? {
        Some(client) if client.revoked_at.is_none() => Ok(client),
        Some(client) => {
            tracing::warn!(target: "countersign::security", client = %client.name, "revoked API key used");
            refuse(Refusal::Unauthorized)
        }
        None => {
            tracing::warn!(target: "countersign::security", "unknown API key used");
            refuse(Refusal::Unauthorized)
        }
    }
}

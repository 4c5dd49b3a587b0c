//! What every request repeats — the API-key look-up, the published signing keys and who could
//! approve a request of some groups — kept in memory for as long as nothing that could make it
//! wrong has changed, on any replica. Every change that could (a client revoked, a key rotated
//! or retired, a person invited, enrolled, regrouped or disabled, a passkey revoked or flagged)
//! sends a notice in its own
//! transaction (`NOTIFY countersign_invalidate`, delivered when it commits), and any notice
//! empties the cache. While the listener is not connected notices could be missed, so nothing
//! is served from memory then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use sqlx::PgConnection;

use super::super::{SigningKeyRow, StoreResult};
use crate::domain::{Client, User};

/// The channel of invalidation notices.
pub(super) const INVALIDATE: &str = "countersign_invalidate";

/// Clients kept at most; a larger set starts over.
const MAX_CLIENTS: usize = 10_000;
/// Sets of groups whose approvers are kept at most.
const MAX_GROUP_SETS: usize = 1_000;

/// Who could approve, by the groups asked about, with the generation it was read under.
type Able = HashMap<Vec<String>, (u64, Vec<User>)>;

#[derive(Default)]
pub(super) struct Cache {
    /// Changes with every notice, and whenever the listener was disconnected: an entry read
    /// under an older generation is never served.
    generation: AtomicU64,
    live: AtomicBool,
    clients: Mutex<HashMap<[u8; 32], (u64, Client)>>,
    keys: Mutex<Option<(u64, Vec<SigningKeyRow>)>>,
    able: Mutex<Able>,
}

impl Cache {
    /// The generation to read under, or none while notices could be missed.
    pub fn generation(&self) -> Option<u64> {
        self.live
            .load(Ordering::Acquire)
            .then(|| self.generation.load(Ordering::Acquire))
    }

    /// Something changed (or may have, unseen): nothing read before is served again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn set_live(&self, live: bool) {
        self.invalidate();
        self.live.store(live, Ordering::Release);
    }

    fn current(&self, generation: u64) -> bool {
        self.generation() == Some(generation)
    }

    pub fn client(&self, key_hash: &[u8; 32]) -> Option<Client> {
        let clients = self.clients.lock().ok()?;
        let (generation, client) = clients.get(key_hash)?;
        self.current(*generation).then(|| client.clone())
    }

    /// Keeps a client read under `generation` (taken before the read).
    pub fn put_client(&self, generation: u64, key_hash: [u8; 32], client: &Client) {
        if let Ok(mut clients) = self.clients.lock() {
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
            clients.insert(key_hash, (generation, client.clone()));
        }
    }

    pub fn able(&self, groups: &[String]) -> Option<Vec<User>> {
        let able = self.able.lock().ok()?;
        let (generation, users) = able.get(groups)?;
        self.current(*generation).then(|| users.clone())
    }

    /// Keeps the approvers of `groups` read under `generation` (taken before the read).
    pub fn put_able(&self, generation: u64, groups: &[String], users: &[User]) {
        if let Ok(mut able) = self.able.lock() {
            if able.len() >= MAX_GROUP_SETS {
                able.clear();
            }
            able.insert(groups.to_vec(), (generation, users.to_vec()));
        }
    }

    pub fn keys(&self) -> Option<Vec<SigningKeyRow>> {
        let keys = self.keys.lock().ok()?;
        let (generation, keys) = keys.as_ref()?;
        self.current(*generation).then(|| keys.clone())
    }

    pub fn put_keys(&self, generation: u64, keys: &[SigningKeyRow]) {
        if let Ok(mut cached) = self.keys.lock() {
            *cached = Some((generation, keys.to_vec()));
        }
    }
}

/// Tells every replica, once this transaction commits, that what they keep may be wrong.
pub(super) async fn invalidate(tx: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(INVALIDATE)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientId, Rights};

    fn client() -> Client {
        Client {
            id: ClientId::generate(),
            name: "svc".into(),
            rights: Rights::default(),
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn nothing_is_served_while_notices_could_be_missed_or_after_one() {
        let cache = Cache::default();
        assert_eq!(cache.generation(), None, "not live yet");
        cache.set_live(true);
        let g = cache.generation().unwrap();
        cache.put_client(g, [1; 32], &client());
        assert!(cache.client(&[1; 32]).is_some());
        cache.invalidate();
        assert!(cache.client(&[1; 32]).is_none(), "a notice empties it");
        let g = cache.generation().unwrap();
        cache.put_client(g, [1; 32], &client());
        cache.set_live(false);
        assert!(
            cache.client(&[1; 32]).is_none(),
            "disconnected: nothing served"
        );
        cache.set_live(true);
        assert!(cache.client(&[1; 32]).is_none(), "and nothing from before");
        // Read under a generation a notice overtook: never served.
        let stale = cache.generation().unwrap();
        cache.invalidate();
        cache.put_client(stale, [2; 32], &client());
        assert!(cache.client(&[2; 32]).is_none());
    }
}

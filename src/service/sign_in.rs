//! Approver sessions: signing in with a passkey, the session a cookie carries, signing out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{random32, refuse, Result, Services};
use crate::clock::UnixTime;
use crate::domain::people::username;
use crate::domain::{
    Actor, Ceremony, CeremonyId, CeremonyKind, CeremonyState, CredentialId, EventKind, NewEvent,
    Refusal, Taken, User, CEREMONY_SECS,
};
use crate::passkeys::{b64, AssertionResponse};
use crate::store::{CredentialShapes, Expect, NewSession, StoreResult};

/// A session ends after this long without use…
pub const IDLE_SECS: i64 = 30 * 60;
/// …and after this long whatever happens.
pub const ABSOLUTE_SECS: i64 = 12 * 60 * 60;

/// What a cookie's value is stored as: its SHA-256, so the database alone opens no session.
pub fn session_hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// `POST /v1/session/options`: request options, with a username (its passkeys, or decoys
/// indistinguishable from passkeys when there is no such person) or without (any
/// discoverable passkey).
#[tracing::instrument(skip_all)]
pub async fn options(svc: &Services, name: Option<&str>) -> Result<(CeremonyId, Value)> {
    let now = svc.clock.now();
    let challenge = random32();
    let allow = match name {
        None => None,
        Some(name) => {
            // The same work whether or not the person exists: one read, and a decoy computed
            // either way.
            let key = username(name).unwrap_or_else(|_| name.to_owned());
            let real = svc.store.sign_in_credentials(&key).await?;
            let decoy = svc.decoys.ids(&key, &svc.decoys.shapes(svc).await?);
            Some(if real.is_empty() { decoy } else { real })
        }
    };
    let public_key = svc
        .rp
        .request_options(&challenge, allow.as_deref().unwrap_or_default());
    let ceremony = Ceremony {
        id: CeremonyId::generate(),
        state: CeremonyState::SignIn { challenge, allow },
        created_at: now,
        expires_at: now + CEREMONY_SECS,
    };
    svc.store.start_ceremony(&ceremony, None).await?;
    Ok((ceremony.id, public_key))
}

/// A new session: the person and the cookie value that opens it.
pub struct SignedIn {
    pub user: User,
    pub cookie: String,
}

/// `POST /v1/session/finish`. Every failure is the same `authentication_failed` (no user
/// enumeration); the reason goes to the security log only. The session id is always new, and
/// `replaces` (a cookie presented before sign-in, perhaps planted) is ended.
#[tracing::instrument(skip_all)]
pub async fn finish(
    svc: &Services,
    ceremony: &str,
    credential: &Value,
    replaces: Option<[u8; 32]>,
) -> Result<SignedIn> {
    let now = svc.clock.now();
    let user = match sign_in(svc, ceremony, credential, now).await {
        Ok(user) => user,
        Err(reason) => {
            tracing::warn!(target: "countersign::security", reason, "sign-in failed");
            return refuse(Refusal::AuthenticationFailed);
        }
    };
    let (user, credential) = user;
    let cookie = b64(&random32());
    let session = NewSession {
        id_hash: session_hash(&cookie),
        user_id: user.id,
        credential_id: credential,
        expires_at: now + ABSOLUTE_SECS,
        replaces,
    };
    svc.store.create_session(&session, now).await?;
    tracing::info!(target: "countersign::security", user = %user.username, "signed in");
    Ok(SignedIn { user, cookie })
}

/// Why a sign-in failed, for the log only.
async fn sign_in(
    svc: &Services,
    ceremony: &str,
    credential: &Value,
    now: UnixTime,
) -> Result<(User, CredentialId), String> {
    let store = |e: crate::store::StoreError| format!("store: {e}");
    let id = CeremonyId::parse(ceremony).map_err(|e| e.to_string())?;
    let expect = Expect {
        kind: CeremonyKind::SignIn,
        user: None,
        approval: None,
    };
    let ceremony = match svc.store.take_ceremony(id, expect).await.map_err(store)? {
        Taken::Ceremony(c) => c,
        other => return Err(format!("ceremony: {other:?}")),
    };
    if ceremony.expires_at <= now {
        return Err("ceremony expired".into());
    }
    let CeremonyState::SignIn { challenge, allow } = &ceremony.state else {
        return Err("not a sign-in ceremony".into());
    };
    let assertion = AssertionResponse::parse(credential).ok_or("malformed credential")?;
    if allow
        .as_ref()
        .is_some_and(|allow| !allow.contains(&assertion.credential_id))
    {
        return Err("credential not in allowCredentials".into());
    }
    let cred = svc
        .store
        .credential(&assertion.credential_id)
        .await
        .map_err(store)?
        .ok_or("unknown credential")?;
    if !cred.usable() {
        return Err("credential revoked or flagged".into());
    }
    let user = svc
        .store
        .user(cred.user_id)
        .await
        .map_err(store)?
        .ok_or("no user")?;
    if user.disabled_at.is_some() {
        return Err("user disabled".into());
    }
    if let Some(handle) = &assertion.user_handle {
        if handle.as_slice() != user.id.as_bytes() {
            return Err("userHandle does not match the credential's user".into());
        }
    }
    let verified = svc
        .rp
        .verify(&cred, &assertion, challenge)
        .map_err(|e| format!("assertion: {e}"))?;
    let on_clone = NewEvent::new(
        EventKind::CloneSuspected,
        Actor::User(user.username.clone()),
        json!({ "credential_id": cred.id, "presented_counter": verified.counter }),
    );
    if !svc
        .store
        .advance_counter(&cred.id, verified.counter, on_clone, now)
        .await
        .map_err(store)?
    {
        return Err("signature counter did not advance (possible clone)".into());
    }
    Ok((user, cred.id))
}

/// The signed-in, enabled person of a live session, if any.
pub async fn session_user(svc: &Services, id_hash: &[u8; 32]) -> Result<Option<User>> {
    Ok(svc
        .store
        .session_user(id_hash, svc.clock.now(), IDLE_SECS)
        .await?)
}

pub async fn sign_out(svc: &Services, id_hash: &[u8; 32]) -> Result<()> {
    Ok(svc.store.delete_session(id_hash).await?)
}

/// Stand-in credential ids for a username with no usable passkeys, so that sign-in options do
/// not tell who exists: how many and how long are drawn from the passkeys people really hold,
/// the bytes from a keyed hash of the username, so the same name always gets the same decoys.
pub(crate) struct Decoys {
    secret: [u8; 32],
    shapes: Mutex<Option<(Instant, CredentialShapes)>>,
}

/// How long a sample of passkey shapes is used before it is read again.
const SHAPES_FOR: Duration = Duration::from_secs(600);

impl Decoys {
    pub(crate) fn new(secret: [u8; 32]) -> Decoys {
        Decoys {
            secret,
            shapes: Mutex::new(None),
        }
    }

    async fn shapes(&self, svc: &Services) -> StoreResult<CredentialShapes> {
        if let Ok(cached) = self.shapes.lock() {
            if let Some((at, shapes)) = cached.as_ref() {
                if at.elapsed() < SHAPES_FOR {
                    return Ok(shapes.clone());
                }
            }
        }
        let shapes = svc.store.credential_shapes().await?;
        if let Ok(mut cached) = self.shapes.lock() {
            *cached = Some((Instant::now(), shapes.clone()));
        }
        Ok(shapes)
    }

    fn hash(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"countersign/decoy-credential/v2\0");
        h.update(self.secret);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    fn ids(&self, username: &str, shapes: &CredentialShapes) -> Vec<CredentialId> {
        let pick = |list: &[usize], seed: &[u8; 32], default: usize| {
            let n = u64::from_be_bytes(
                seed.get(..8)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or_default(),
            );
            let len = u64::try_from(list.len()).unwrap_or(u64::MAX).max(1);
            usize::try_from(n % len)
                .ok()
                .and_then(|i| list.get(i).copied())
                .unwrap_or(default)
        };
        let count = pick(
            &shapes.per_person,
            &self.hash(&[username.as_bytes(), b"count"]),
            1,
        )
        .max(1);
        (0..count)
            .filter_map(|i| {
                let i = (i as u64).to_be_bytes();
                let len = pick(
                    &shapes.id_lengths,
                    &self.hash(&[username.as_bytes(), b"length", &i]),
                    16,
                );
                let mut bytes = Vec::with_capacity(len);
                let mut block = 0u64;
                while bytes.len() < len {
                    bytes.extend_from_slice(&self.hash(&[
                        username.as_bytes(),
                        b"bytes",
                        &i,
                        &block.to_be_bytes(),
                    ]));
                    block += 1;
                }
                bytes.truncate(len);
                CredentialId::from_raw(&bytes).ok()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoys_take_the_shape_of_real_passkeys_and_are_stable() {
        let d = Decoys::new([7; 32]);
        let shapes = CredentialShapes {
            id_lengths: vec![32, 32, 64],
            per_person: vec![1, 2],
        };
        let a = d.ids("nobody", &shapes);
        assert_eq!(
            a,
            d.ids("nobody", &shapes),
            "the same name, the same decoys"
        );
        assert!((1..=2).contains(&a.len()));
        assert!(a.iter().all(|id| [32, 64].contains(&id.raw_len())));
        assert_ne!(d.ids("somebody", &shapes), a);
        // With no passkeys anywhere, one 16-byte id.
        let none = d.ids("x", &CredentialShapes::default());
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].raw_len(), 16);
        // Over many names, every count and length that real passkeys have turns up.
        let mut counts = std::collections::BTreeSet::new();
        let mut lengths = std::collections::BTreeSet::new();
        for i in 0..200 {
            let ids = d.ids(&format!("user{i}"), &shapes);
            counts.insert(ids.len());
            lengths.extend(ids.iter().map(CredentialId::raw_len));
        }
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(lengths.into_iter().collect::<Vec<_>>(), vec![32, 64]);
    }
}

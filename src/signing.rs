//! Receipt signing keys: P-256 keys whose private halves are stored sealed (AES-256-GCM) under
//! the operator's master key, so every replica sharing the database signs alike and the
//! database alone discloses nothing. The `kid` is the key's RFC 7638 thumbprint.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::{SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::master_key::MasterKey;

const AAD_PREFIX: &[u8] = b"countersign/signing-key/v1\0";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a sealed signing key did not open: wrong master key, or the stored key was altered")]
    Open,
    #[error("a sealed signing key is malformed")]
    Malformed,
}

pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    pub fn new(master: &MasterKey) -> Self {
        // A derived key, so the master key is never used directly for anything else.
        let mut h = Sha256::new();
        h.update(b"countersign/seal/v1\0");
        h.update(master.0);
        let key: [u8; 32] = h.finalize().into();
        Self {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    fn aad(kid: &str) -> Vec<u8> {
        [AAD_PREFIX, kid.as_bytes()].concat()
    }

    pub fn seal(&self, kid: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &Self::aad(kid),
                },
            )
            .map_err(|_| SealError::Malformed)?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    /// Opens a sealed key; the kid is authenticated, so a sealed key moved to another kid fails.
    pub fn open_key(&self, kid: &str, sealed: &[u8]) -> Result<SigningKey, SealError> {
        SigningKey::from_slice(&self.open(kid, sealed)?).map_err(|_| SealError::Malformed)
    }

    /// Opens what was sealed under `label` (a kid, or another secret's name).
    pub fn open(&self, label: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (nonce, ct) = sealed.split_at_checked(12).ok_or(SealError::Malformed)?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: &Self::aad(label),
                },
            )
            .map_err(|_| SealError::Open)
    }
}

/// A new key ready to store.
pub struct NewSigningKey {
    pub kid: String,
    pub public_jwk: serde_json::Value,
    pub sealed: Vec<u8>,
}

/// RFC 7638 thumbprint of a P-256 public key.
pub fn thumbprint(key: &VerifyingKey) -> String {
    let point = key.to_encoded_point(false);
    let b = |v: Option<&p256::FieldBytes>| {
        URL_SAFE_NO_PAD.encode(v.map(|f| f.to_vec()).unwrap_or_default())
    };
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b(point.x()),
        b(point.y())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

pub fn generate(sealer: &Sealer) -> Result<NewSigningKey, SealError> {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let public = *key.verifying_key();
    let kid = thumbprint(&public);
    let sealed = sealer.seal(&kid, &key.to_bytes())?;
    Ok(NewSigningKey {
        public_jwk: crate::receipt::jwk_for(&public, &kid),
        kid,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_is_bound_to_kid_and_master_key() {
        let sealer = Sealer::new(&MasterKey([7; 32]));
        let k = generate(&sealer).unwrap();
        let opened = sealer.open_key(&k.kid, &k.sealed).unwrap();
        assert_eq!(thumbprint(opened.verifying_key()), k.kid);
        assert!(matches!(
            sealer.open_key("other-kid", &k.sealed),
            Err(SealError::Open)
        ));
        assert!(matches!(
            Sealer::new(&MasterKey([8; 32])).open_key(&k.kid, &k.sealed),
            Err(SealError::Open)
        ));
        let mut tampered = k.sealed.clone();
        tampered[20] ^= 1;
        assert!(sealer.open_key(&k.kid, &tampered).is_err());
        assert!(!String::from_utf8_lossy(&k.sealed)
            .contains(&URL_SAFE_NO_PAD.encode(opened.to_bytes())));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example_shape() {
        // RFC 7638 computes over the required members in lexicographic order, no whitespace.
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let t = thumbprint(key.verifying_key());
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), 32);
    }
}

//! Service clients and their API keys. A key is shown once and stored only as its SHA-256:
//! keys are 256-bit random, so a fast hash is enough and lookups can go by hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const KEY_PREFIX: &str = "cs_";

/// What a client may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rights {
    /// Action-id globs (`*` matches any run of characters) the client may request approvals for.
    pub create: Vec<String>,
    /// Audiences whose receipts the client may redeem.
    pub redeem: Vec<String>,
    /// Whether the client may read the audit log.
    pub audit: bool,
}

impl Rights {
    pub fn everything() -> Self {
        Self {
            create: vec!["*".into()],
            redeem: vec!["*".into()],
            audit: true,
        }
    }
    pub fn may_create(&self, action: &str) -> bool {
        self.create.iter().any(|g| glob_match(g, action))
    }
    pub fn may_redeem(&self, audience: &str) -> bool {
        self.redeem.iter().any(|g| glob_match(g, audience))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: super::ClientId,
    pub name: String,
    pub rights: Rights,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A freshly generated key: the text goes to the operator once, the hash to the store.
pub struct NewKey {
    pub text: String,
    pub hash: [u8; 32],
}

impl NewKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let text = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = key_hash(&text);
        Self { text, hash }
    }
}

pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Client names: what an operator types and the audit log shows, so short and plain.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `*` matches any (possibly empty) run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = rest.get(i + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "payment.transfer"));
        assert!(glob_match("payment.*", "payment.transfer"));
        assert!(!glob_match("payment.*", "paymentXtransfer"));
        assert!(glob_match("payment.transfer", "payment.transfer"));
        assert!(!glob_match("payment.transfer", "payment.transfers"));
        assert!(glob_match("*.export", "secret.export"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn keys_are_random_and_hash_stably() {
        let a = NewKey::generate();
        let b = NewKey::generate();
        assert_ne!(a.text, b.text);
        assert!(a.text.starts_with("cs_"));
        assert_eq!(key_hash(&a.text), a.hash);
    }

    #[test]
    fn rights() {
        let r = Rights {
            create: vec!["payment.*".into()],
            redeem: vec!["payments-service".into()],
            audit: false,
        };
        assert!(r.may_create("payment.transfer"));
        assert!(!r.may_create("secret.export"));
        assert!(r.may_redeem("payments-service"));
        assert!(!r.may_redeem("admin-console"));
    }
}

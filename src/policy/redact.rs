//! Redacted fields: a display field marked `redact = true` holds a secret (a password, a
//! private key being exported). The transaction is hashed as submitted, so the executing service
//! redeems with the real value; what is stored, shown, logged, audited and returned holds in
//! its place only a commitment `{"redacted": b64url(SHA-256(salt ‖ JCS(value)))}` with a fresh
//! 32-byte salt, which only the creating client receives (`redactions` in the 201 response), so
//! that it alone can show which value was approved.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ActionPolicy;
use crate::jcs::{self, Value};

/// Where a value was redacted, and the salt of its commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Redaction {
    pub pointer: String,
    #[serde(serialize_with = "b64")]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub salt: [u8; 32],
}

fn b64<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&URL_SAFE_NO_PAD.encode(bytes))
}

/// `b64url(SHA-256(salt ‖ JCS(value)))`.
pub fn commitment(salt: &[u8; 32], value: &Value) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(jcs::canonicalize(value).as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

impl ActionPolicy {
    /// The transaction as it may be stored, if it holds a secret: every redacted field that is
    /// present replaced by its commitment, each with a salt from `salt`. `None` when there is
    /// nothing to redact (the transaction is stored as it is).
    pub fn redact(
        &self,
        tx: &Value,
        mut salt: impl FnMut() -> [u8; 32],
    ) -> Option<(Value, Vec<Redaction>)> {
        let secret = |f: &&super::DisplayField| {
            f.redact
                && tx
                    .pointer(&f.pointer)
                    .is_some_and(|v| !matches!(v, Value::Null))
        };
        if !self.display.iter().any(|f| secret(&f)) {
            return None;
        }
        let mut stored = tx.clone();
        let mut redactions = Vec::new();
        for field in self.display.iter().filter(secret) {
            let Some(value) = stored.pointer_mut(&field.pointer) else {
                continue;
            };
            let s = salt();
            let sealed = commitment(&s, value);
            *value = Value::Object(vec![("redacted".to_owned(), Value::String(sealed))]);
            redactions.push(Redaction {
                pointer: field.pointer.clone(),
                salt: s,
            });
        }
        Some((stored, redactions))
    }
}

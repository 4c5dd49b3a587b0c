//! The audit chain: `hash = SHA-256(prev_hash || JCS(entry))`, where `entry` is exactly the
//! exported fields other than the two hashes, so anyone holding an export can re-check it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jcs;

pub const GENESIS: [u8; 32] = [0; 32];

/// One audit event as exported (`GET /v1/audit`, `countersign audit export`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub approval_id: Option<String>,
    pub data: serde_json::Value,
    #[serde(with = "b64")]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub prev_hash: [u8; 32],
    #[serde(with = "b64")]
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub hash: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("audit entry {seq}: its data is not canonicalisable JSON ({source})")]
    Data { seq: i64, source: jcs::CanonError },
    #[error("audit entry {seq}: expected sequence number {expected} (an entry was deleted or reordered)")]
    Gap { seq: i64, expected: i64 },
    #[error("audit entry {seq}: prev_hash does not match the previous entry's hash")]
    Link { seq: i64 },
    #[error("audit entry {seq}: hash does not match its contents (the entry was edited)")]
    Hash { seq: i64 },
    #[error("the chain ends at entry {last} but the head records entry {head_seq} (entries were removed from the end)")]
    Head { last: i64, head_seq: i64 },
}

pub fn entry_hash(
    prev_hash: &[u8; 32],
    seq: i64,
    at: &str,
    kind: &str,
    actor: &str,
    approval_id: Option<&str>,
    data: &serde_json::Value,
) -> Result<[u8; 32], ChainError> {
    // The entry's members in RFC 8785 order (actor, approval_id, at, data, kind, seq), written
    // directly: this runs under the write lock for every event.
    let mut text = String::with_capacity(256);
    text.push_str("{\"actor\":");
    jcs::write_string(actor, &mut text);
    text.push_str(",\"approval_id\":");
    match approval_id {
        Some(id) => jcs::write_string(id, &mut text),
        None => text.push_str("null"),
    }
    text.push_str(",\"at\":");
    jcs::write_string(at, &mut text);
    text.push_str(",\"data\":");
    jcs::write_canonical_serde(data, 1, &mut text)
        .map_err(|source| ChainError::Data { seq, source })?;
    text.push_str(",\"kind\":");
    jcs::write_string(kind, &mut text);
    text.push_str(",\"seq\":");
    jcs::write_canonical_serde(&serde_json::Value::from(seq), 1, &mut text)
        .map_err(|source| ChainError::Data { seq, source })?;
    text.push('}');
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(text.as_bytes());
    Ok(h.finalize().into())
}

impl AuditEvent {
    pub fn computed_hash(&self) -> Result<[u8; 32], ChainError> {
        entry_hash(
            &self.prev_hash,
            self.seq,
            &self.at,
            &self.kind,
            &self.actor,
            self.approval_id.as_deref(),
            &self.data,
        )
    }
}

/// Walks a chain in order. Feed every event, then call [`ChainVerifier::finish`] with the head.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev: [u8; 32],
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev: GENESIS,
        }
    }
}

impl ChainVerifier {
    pub fn push(&mut self, e: &AuditEvent) -> Result<(), ChainError> {
        if e.seq != self.expected_seq {
            return Err(ChainError::Gap {
                seq: e.seq,
                expected: self.expected_seq,
            });
        }
        if e.prev_hash != self.prev {
            return Err(ChainError::Link { seq: e.seq });
        }
        if e.computed_hash()? != e.hash {
            return Err(ChainError::Hash { seq: e.seq });
        }
        self.expected_seq += 1;
        self.prev = e.hash;
        Ok(())
    }

    /// Number of entries checked so far.
    pub fn count(&self) -> i64 {
        self.expected_seq - 1
    }

    pub fn finish(&self, head_seq: i64, head_hash: &[u8; 32]) -> Result<i64, ChainError> {
        let last = self.count();
        if head_seq != last || head_hash != &self.prev {
            return Err(ChainError::Head { last, head_seq });
        }
        Ok(last)
    }
}

mod b64 {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let data = json!({"n": seq});
                let at = "2026-11-23T00:00:00Z".to_string();
                let hash = entry_hash(&prev, seq, &at, "k", "a", None, &data).unwrap();
                let e = AuditEvent {
                    seq,
                    at,
                    kind: "k".into(),
                    actor: "a".into(),
                    approval_id: None,
                    data,
                    prev_hash: prev,
                    hash,
                };
                prev = hash;
                e
            })
            .collect()
    }

    /// The hashed part of an event, as the export documents it.
    #[derive(Serialize)]
    struct Entry<'a> {
        seq: i64,
        at: &'a str,
        kind: &'a str,
        actor: &'a str,
        approval_id: Option<&'a str>,
        data: &'a serde_json::Value,
    }

    #[test]
    fn the_hash_is_over_the_canonical_form_of_the_exported_entry() {
        let data = json!({ "jti": "x", "n": -3, "nested": { "z": [true, null], "é": "\u{1}\"" } });
        for approval_id in [None, Some("0193")] {
            let entry = Entry {
                seq: 42,
                at: "2026-11-28T00:00:00Z",
                kind: "receipt_issued",
                actor: "user:\u{e9}ve",
                approval_id,
                data: &data,
            };
            let canonical =
                jcs::canonicalize(&jcs::parse(&serde_json::to_vec(&entry).unwrap()).unwrap());
            let expected: [u8; 32] = Sha256::new()
                .chain_update([7u8; 32])
                .chain_update(canonical.as_bytes())
                .finalize()
                .into();
            let got = entry_hash(
                &[7u8; 32],
                42,
                entry.at,
                entry.kind,
                entry.actor,
                approval_id,
                &data,
            )
            .unwrap();
            assert_eq!(got, expected);
        }
        assert!(entry_hash(&GENESIS, 1, "t", "k", "a", None, &json!({ "f": 0.5 })).is_err());
    }

    fn verify(events: &[AuditEvent], head: (i64, [u8; 32])) -> Result<i64, ChainError> {
        let mut v = ChainVerifier::default();
        for e in events {
            v.push(e)?;
        }
        v.finish(head.0, &head.1)
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify(&c, (5, c[4].hash)).unwrap(), 5);
    }

    #[test]
    fn edit_delete_reorder_and_truncation_are_caught() {
        let c = chain(5);
        let head = (5, c[4].hash);
        let mut edited = c.clone();
        edited[2].data = json!({"n": 99});
        assert!(matches!(
            verify(&edited, head),
            Err(ChainError::Hash { seq: 3 })
        ));
        let mut deleted = c.clone();
        deleted.remove(1);
        assert!(matches!(
            verify(&deleted, head),
            Err(ChainError::Gap {
                seq: 3,
                expected: 2
            })
        ));
        let mut reordered = c.clone();
        reordered.swap(1, 2);
        assert!(verify(&reordered, head).is_err());
        assert!(matches!(
            verify(&c[..4], head),
            Err(ChainError::Head {
                last: 4,
                head_seq: 5
            })
        ));
    }

    #[test]
    fn export_round_trips_through_json() {
        let c = chain(2);
        let text = serde_json::to_string(&c[1]).unwrap();
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c[1]);
        assert_eq!(back.computed_hash().unwrap(), c[1].hash);
    }
}

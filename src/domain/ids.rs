//! Typed identifiers: each kind of id is its own type, parsed once where it enters (a path, a
//! body, a stored row) and never re-parsed. UUIDs have exactly one spelling, the lowercase
//! hyphenated form, because they are compared as text in URLs, receipts and the audit log.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0} id")]
pub struct InvalidId(pub &'static str);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $generate:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub fn generate() -> Self {
                Self($generate)
            }

            /// The lowercase hyphenated form only.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                canonical_uuid(s).map(Self).ok_or(InvalidId($what))
            }

            /// The 16 bytes a challenge commits to.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn canonical_uuid(s: &str) -> Option<Uuid> {
    let canonical = s.len() == 36 && !s.bytes().any(|b| b.is_ascii_uppercase());
    canonical.then(|| Uuid::try_parse(s).ok()).flatten()
}

uuid_id!(
    /// An approval request. Time-ordered (UUIDv7, 74 random bits): rows written and decided
    /// together sit together in the B-trees, so a decision's commit rewrites a few shared
    /// pages rather than one random page per table.
    ApprovalId,
    "approval",
    Uuid::now_v7()
);
uuid_id!(
    /// An approver; also their WebAuthn user handle.
    UserId,
    "user",
    Uuid::new_v4()
);
uuid_id!(
    /// A service client (API key holder).
    ClientId,
    "client",
    Uuid::new_v4()
);
uuid_id!(
    /// A WebAuthn ceremony in flight. Time-ordered like requests, for the same locality.
    CeremonyId,
    "ceremony",
    Uuid::now_v7()
);
uuid_id!(
    /// A receipt (`jti`), redeemed once. Time-ordered like requests.
    ReceiptId,
    "receipt",
    Uuid::now_v7()
);

/// A passkey's credential id, as unpadded base64url of the authenticator's raw bytes (what
/// browsers send as `rawId`, and what `allowCredentials` lists).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CredentialId(String);

/// WebAuthn caps credential ids at 1023 bytes.
const MAX_CREDENTIAL_ID: usize = 1023;

impl CredentialId {
    pub fn from_raw(raw: &[u8]) -> Result<Self, InvalidId> {
        use base64::Engine;
        if raw.is_empty() || raw.len() > MAX_CREDENTIAL_ID {
            return Err(InvalidId("credential"));
        }
        Ok(Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
        ))
    }

    /// Unpadded base64url of 1 to 1023 bytes, in the one spelling `from_raw` gives.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| InvalidId("credential"))?;
        let id = Self::from_raw(&raw)?;
        if id.0 == s {
            Ok(id)
        } else {
            Err(InvalidId("credential"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The raw bytes' length, without decoding.
    pub fn raw_len(&self) -> usize {
        self.0.len() * 3 / 4
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CredentialId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_one_spelling() {
        let id = ApprovalId::generate();
        let text = id.to_string();
        assert_eq!(ApprovalId::parse(&text), Ok(id));
        assert!(ApprovalId::parse(&text.to_uppercase()).is_err());
        assert!(ApprovalId::parse(&text.replace('-', "")).is_err());
        assert!(ApprovalId::parse(&format!("{{{text}}}")).is_err());
        assert!(ApprovalId::parse("not-a-uuid").is_err());
        assert_eq!(
            UserId::parse("x").unwrap_err().to_string(),
            "not a valid user id"
        );
    }

    #[test]
    fn request_ids_are_time_ordered() {
        let a = ApprovalId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ApprovalId::generate();
        assert!(a.to_string() < b.to_string());
        assert_eq!(
            Uuid::parse_str(&a.to_string()).unwrap().get_version_num(),
            7
        );
        assert_eq!(
            Uuid::parse_str(&UserId::generate().to_string())
                .unwrap()
                .get_version_num(),
            4
        );
    }

    #[test]
    fn ids_serialise_as_text_and_parse_strictly() {
        let id = ClientId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ClientId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ClientId>("\"nope\"").is_err());
    }

    #[test]
    fn credential_ids_are_unpadded_base64url() {
        let id = CredentialId::from_raw(&[0xfb, 0xff, 0x01]).unwrap();
        assert_eq!(id.as_str(), "-_8B");
        assert_eq!(CredentialId::parse("-_8B"), Ok(id.clone()));
        assert_eq!(id.raw_len(), 3);
        assert!(CredentialId::parse("-_8B=").is_err(), "padding");
        assert!(CredentialId::parse("+/8B").is_err(), "standard alphabet");
        assert!(CredentialId::parse("").is_err());
        assert!(CredentialId::from_raw(&[0; 1024]).is_err());
    }
}

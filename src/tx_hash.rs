//! The transaction hash: SHA-256 over the JCS form of a transaction.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::jcs;

/// Length of the base64url form of 32 bytes without padding.
const ENCODED_LEN: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxHash([u8; 32]);

#[derive(Debug, thiserror::Error)]
pub enum TxHashParseError {
    #[error("a tx hash is unpadded base64url and must not contain '='")]
    Padding,
    #[error("a tx hash is {ENCODED_LEN} base64url characters, got {0} bytes")]
    Length(usize),
    #[error("a tx hash is base64url (A-Z a-z 0-9 - _): {0}")]
    Encoding(base64::DecodeError),
}

impl TxHash {
    pub fn of_value(v: &jcs::Value) -> TxHash {
        TxHash(Sha256::digest(jcs::canonicalize(v).as_bytes()).into())
    }

    pub fn of_json(input: &[u8]) -> Result<(TxHash, jcs::Value), jcs::CanonError> {
        let value = jcs::parse_object(input)?;
        Ok((TxHash::of_value(&value), value))
    }

    /// Accepts exactly one spelling per hash, so a hash can be compared as a
    /// string: no padding, no standard-alphabet `+`/`/`, and (the base64
    /// crate's default) no non-zero trailing bits.
    pub fn parse(b64url: &str) -> Result<TxHash, TxHashParseError> {
        if b64url.contains('=') {
            return Err(TxHashParseError::Padding);
        }
        if b64url.len() != ENCODED_LEN {
            return Err(TxHashParseError::Length(b64url.len()));
        }
        let mut bytes = [0u8; 32];
        let written = URL_SAFE_NO_PAD
            .decode_slice(b64url, &mut bytes)
            .map_err(|e| match e {
                base64::DecodeSliceError::DecodeError(e) => TxHashParseError::Encoding(e),
                base64::DecodeSliceError::OutputSliceTooSmall => {
                    TxHashParseError::Length(b64url.len())
                }
            })?;
        if written != bytes.len() {
            return Err(TxHashParseError::Length(b64url.len()));
        }
        Ok(TxHash(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Short enough to read aloud or compare by eye on a second device;
    /// 64 bits is for spotting a substituted transaction, not for security.
    pub fn fingerprint(&self) -> String {
        self.0
            .chunks(2)
            .take(4)
            .map(|pair| pair.iter().map(|b| format!("{b:02X}")).collect::<String>())
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl fmt::Display for TxHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl FromStr for TxHash {
    type Err = TxHashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TxHash::parse(s)
    }
}

impl Serialize for TxHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TxHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TxHash::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &str = "doymaMD4TdOb8mniXJo_CvSBLkECa2_q2aJmYHjvFvY";

    fn hash(input: &str) -> TxHash {
        TxHash::of_json(input.as_bytes())
            .expect("valid transaction")
            .0
    }

    #[test]
    fn known_vector() {
        let (h, value) = TxHash::of_json(br#"{"b":2,"a":"x"}"#).unwrap();
        assert_eq!(jcs::canonicalize(&value), r#"{"a":"x","b":2}"#);
        let direct: [u8; 32] = Sha256::digest(br#"{"a":"x","b":2}"#).into();
        assert_eq!(h.as_bytes(), &direct);
        assert_eq!(h.to_string(), KNOWN);
        assert_eq!(h.fingerprint(), "768C-A668-C0F8-4DD3");
        assert_eq!(TxHash::of_value(&value), h);
    }

    #[test]
    fn same_transaction_same_hash() {
        let a = hash(r#"{"payee":"ACME","amount":"1250.00","currency":"EUR"}"#);
        let b = hash(
            "{ \"currency\" : \"EUR\",\n\t\"amount\":\"1250.00\" , \"payee\":\"\\u0041CME\" }",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn any_change_changes_the_hash() {
        let base = hash(r#"{"payee":"ACME","amount":"1250.00"}"#);
        assert_ne!(base, hash(r#"{"payee":"ACME","amount":"1250.01"}"#));
        assert_ne!(base, hash(r#"{"payee":"ACMF","amount":"1250.00"}"#));
        assert_ne!(
            base,
            hash(r#"{"payee":"ACME","amount":"1250.00","memo":""}"#)
        );
    }

    #[test]
    fn of_json_refuses_what_jcs_refuses() {
        assert_eq!(
            TxHash::of_json(b"[]").unwrap_err(),
            jcs::CanonError::NotAnObject
        );
        assert!(matches!(
            TxHash::of_json(br#"{"a":1,"a":2}"#),
            Err(jcs::CanonError::DuplicateKey(_))
        ));
    }

    #[test]
    fn display_parse_round_trip() {
        let h = hash(r#"{"a":"x","b":2}"#);
        assert_eq!(TxHash::parse(&h.to_string()).unwrap(), h);
        assert_eq!(KNOWN.parse::<TxHash>().unwrap(), h);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{KNOWN}\""));
        assert_eq!(serde_json::from_str::<TxHash>(&json).unwrap(), h);
        assert!(serde_json::from_str::<TxHash>("\"short\"").is_err());
    }

    #[test]
    fn parse_refusals() {
        let padded = format!("{KNOWN}=");
        assert!(matches!(
            TxHash::parse(&padded),
            Err(TxHashParseError::Padding)
        ));
        let standard_alphabet = KNOWN.replace('_', "/");
        assert!(matches!(
            TxHash::parse(&standard_alphabet),
            Err(TxHashParseError::Encoding(_))
        ));
        assert!(matches!(
            TxHash::parse(""),
            Err(TxHashParseError::Length(0))
        ));
        assert!(matches!(
            TxHash::parse(&KNOWN[..42]),
            Err(TxHashParseError::Length(42))
        ));
        assert!(matches!(
            TxHash::parse(&format!("{KNOWN}A")),
            Err(TxHashParseError::Length(44))
        ));
        // The last character carries 2 spare bits; 'Z' sets one.
        let trailing_bits = format!("{}Z", &KNOWN[..42]);
        assert!(matches!(
            TxHash::parse(&trailing_bits),
            Err(TxHashParseError::Encoding(_))
        ));
        let non_ascii = format!("{}é", &KNOWN[..41]);
        assert!(matches!(
            TxHash::parse(&non_ascii),
            Err(TxHashParseError::Encoding(_))
        ));
    }
}

//! The WebAuthn challenge for one decision on one approval.
//!
//! The challenge is derived rather than random so that the passkey's signature
//! is evidence for exactly one decision on exactly one transaction: it cannot
//! be moved to another approval, turned from a reject into an approve, or
//! replayed once the server has spent the nonce.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Domain separator, versioned so that a later formula can never yield a
/// challenge an old signature already answers.
pub const DOMAIN: &[u8] = b"countersign/decision/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    /// The byte the challenge commits to; fixed by the design, so existing
    /// receipts stay verifiable.
    pub fn byte(self) -> u8 {
        match self {
            Decision::Approve => 0x01,
            Decision::Reject => 0x02,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a decision is \"approve\" or \"reject\"")]
pub struct ParseDecisionError;

impl FromStr for Decision {
    type Err = ParseDecisionError;

    /// Case-sensitive, like the serde form, so each decision has one spelling.
    fn from_str(s: &str) -> Result<Decision, ParseDecisionError> {
        match s {
            "approve" => Ok(Decision::Approve),
            "reject" => Ok(Decision::Reject),
            _ => Err(ParseDecisionError),
        }
    }
}

pub fn decision_challenge(
    approval_id: &[u8; 16],
    decision: Decision,
    tx_hash: &[u8; 32],
    nonce: &[u8; 32],
) -> [u8; 32] {
    // The 0x00 ends the domain so no other domain string can share a prefix
    // with this input; every later field has a fixed length and needs none.
    Sha256::new()
        .chain_update(DOMAIN)
        .chain_update([0x00])
        .chain_update(approval_id)
        .chain_update([decision.byte()])
        .chain_update(tx_hash)
        .chain_update(nonce)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f,
    ];

    fn seq(start: u8) -> [u8; 32] {
        std::array::from_fn(|i| start + i as u8)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Expected values computed independently with Python's hashlib over the
    /// same concatenation.
    #[test]
    fn fixed_vectors() {
        let tx = seq(0x20);
        let nonce = seq(0x40);
        assert_eq!(
            hex(&decision_challenge(&ID, Decision::Approve, &tx, &nonce)),
            "0a78c8bfd88d1af3f2c2a9960523d5e730f047684f16134da8e78370843bef04"
        );
        assert_eq!(
            hex(&decision_challenge(&ID, Decision::Reject, &tx, &nonce)),
            "93b7a145a730d771bbb933d9b4bb3e47c0a877c7ee87232b384533bdd91a91c9"
        );
    }

    #[test]
    fn every_input_changes_the_challenge() {
        let tx = seq(0x20);
        let nonce = seq(0x40);
        let base = decision_challenge(&ID, Decision::Approve, &tx, &nonce);

        let mut other_id = ID;
        other_id[15] ^= 1;
        let mut other_tx = tx;
        other_tx[0] ^= 1;
        let mut other_nonce = nonce;
        other_nonce[31] ^= 1;

        for changed in [
            decision_challenge(&other_id, Decision::Approve, &tx, &nonce),
            decision_challenge(&ID, Decision::Reject, &tx, &nonce),
            decision_challenge(&ID, Decision::Approve, &other_tx, &nonce),
            decision_challenge(&ID, Decision::Approve, &tx, &other_nonce),
        ] {
            assert_ne!(changed, base);
        }
    }

    #[test]
    fn decision_spellings() {
        for d in [Decision::Approve, Decision::Reject] {
            assert_eq!(d.as_str().parse::<Decision>(), Ok(d));
            assert_eq!(d.to_string(), d.as_str());
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
        }
        assert_eq!(Decision::Approve.byte(), 0x01);
        assert_eq!(Decision::Reject.byte(), 0x02);
        assert_eq!("Approve".parse::<Decision>(), Err(ParseDecisionError));
        assert_eq!("".parse::<Decision>(), Err(ParseDecisionError));
    }
}

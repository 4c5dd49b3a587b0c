//! Issuing receipts: the claims of `crate::receipt` filled from server state, signed with the
//! active key for the transaction that approves the request.

use std::sync::Mutex;

use p256::ecdsa::SigningKey;

use crate::passkeys::b64;
use crate::receipt::{sign, Approver, Claims, Evidence, PolicyRef};
use crate::signing::Sealer;
use crate::store::{ApprovalRecord, DecisionRecord, ReceiptSigner};

pub struct Issuer {
    sealer: Sealer,
    /// `iss`: the server's public origin.
    origin: String,
    /// The key last opened, with the sealed bytes it came from: opening costs a decryption and
    /// a point multiplication (the public key), as much again as the signature itself.
    opened: Mutex<Option<(String, Vec<u8>, SigningKey)>>,
}

impl Issuer {
    pub fn new(sealer: Sealer, origin: String) -> Issuer {
        Issuer {
            sealer,
            origin,
            opened: Mutex::new(None),
        }
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> Result<SigningKey, String> {
        let mut opened = self
            .opened
            .lock()
            .map_err(|_| "key cache poisoned".to_string())?;
        if let Some((k, s, key)) = opened.as_ref() {
            if k == kid && s == sealed {
                return Ok(key.clone());
            }
        }
        let key = self
            .sealer
            .open_key(kid, sealed)
            .map_err(|e| e.to_string())?;
        *opened = Some((kid.to_string(), sealed.to_vec(), key.clone()));
        Ok(key)
    }
}

impl ReceiptSigner for Issuer {
    fn sign(
        &self,
        approval: &ApprovalRecord,
        approvals: &[DecisionRecord],
        kid: &str,
        sealed: &[u8],
        now: i64,
    ) -> Result<(String, String, i64), String> {
        let key = self.open(kid, sealed)?;
        // Time-ordered like request ids (see `http::approvals::create`).
        let jti = uuid::Uuid::now_v7().to_string();
        let exp = now.saturating_add(approval.receipt_ttl);
        let claims = Claims {
            iss: self.origin.clone(),
            aud: approval.audience.clone(),
            sub: approval.id.clone(),
            jti: jti.clone(),
            iat: now,
            nbf: now,
            exp,
            act: approval.action.clone(),
            txh: approval.tx_hash.clone(),
            ini: approval.initiator.clone(),
            pol: PolicyRef {
                id: approval.action.clone(),
                rev: approval.policy_rev.clone(),
                rule: approval.rule.clone(),
            },
            risk: approval.risk.clone(),
            apv: approvals
                .iter()
                .map(|d| Approver {
                    sub: d.user_id.clone(),
                    name: d.display_name.clone(),
                    at: d.at,
                    cred: d.credential_id.clone(),
                    uv: d.user_verified,
                    ev: Evidence {
                        n: b64(&d.nonce),
                        ad: b64(&d.authenticator_data),
                        cd: b64(&d.client_data_json),
                        sig: b64(&d.signature),
                        jwk: d.public_jwk.clone(),
                    },
                })
                .collect(),
        };
        let token = sign(&claims, &key, kid).map_err(|e| e.to_string())?;
        Ok((jti, token, exp))
    }

    fn last_key(&self) -> Option<(String, Vec<u8>)> {
        let opened = self.opened.lock().ok()?;
        opened
            .as_ref()
            .map(|(kid, sealed, _)| (kid.clone(), sealed.clone()))
    }
}

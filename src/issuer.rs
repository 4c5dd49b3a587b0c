//! Issuing receipts: the claims of `crate::receipt` filled from a request and its approvals,
//! signed with a stored signing key.

use std::sync::{Arc, Mutex};

use crate::clock::UnixTime;
use crate::domain::{DecisionRecord, ReceiptId, Request};
use crate::es256::KeyPair;
use crate::passkeys::b64;
use crate::receipt::{sign, Approver, Claims, Evidence, PolicyRef};
use crate::signing::Sealer;
use crate::store::{IssuedReceipt, SealedKey};

pub struct Issuer {
    sealer: Sealer,
    /// `iss`: the server's public origin.
    origin: String,
    /// The key last opened, with the sealed bytes it came from: opening costs a decryption and
    /// point multiplications (the public key, and ring's check of it), more than the signature
    /// itself.
    opened: Mutex<Option<(SealedKey, Arc<KeyPair>)>>,
}

impl Issuer {
    pub fn new(sealer: Sealer, origin: String) -> Issuer {
        Issuer {
            sealer,
            origin,
            opened: Mutex::new(None),
        }
    }

    fn open(&self, key: &SealedKey) -> Result<Arc<KeyPair>, String> {
        let mut opened = self
            .opened
            .lock()
            .map_err(|_| "key cache poisoned".to_string())?;
        if let Some((k, signing)) = opened.as_ref() {
            if k == key {
                return Ok(signing.clone());
            }
        }
        let signing = Arc::new(KeyPair::from(
            self.sealer
                .open_key(&key.kid, &key.sealed)
                .map_err(|e| e.to_string())?,
        ));
        *opened = Some((key.clone(), signing.clone()));
        Ok(signing)
    }

    /// The key it signed with last, if any: enough to presign with, since the decision
    /// transaction checks the key is still the active one.
    pub fn last_key(&self) -> Option<SealedKey> {
        let opened = self.opened.lock().ok()?;
        opened.as_ref().map(|(key, _)| key.clone())
    }

    /// Signs the receipt of `request`, approved by `approvals` (receipt order), with `key`.
    pub fn sign(
        &self,
        request: &Request,
        approvals: &[DecisionRecord],
        key: &SealedKey,
        now: UnixTime,
    ) -> Result<IssuedReceipt, String> {
        let signing = self.open(key)?;
        let jti = ReceiptId::generate();
        let expires_at = now.saturating_add(request.receipt_ttl);
        let claims = Claims {
            iss: self.origin.clone(),
            aud: request.audience.clone(),
            sub: request.id.to_string(),
            jti: jti.to_string(),
            iat: now,
            nbf: now,
            exp: expires_at,
            act: request.action.clone(),
            txh: request.tx_hash.to_string(),
            ini: serde_json::from_value(request.initiator.to_json()).map_err(|e| e.to_string())?,
            pol: PolicyRef {
                id: request.action.clone(),
                rev: request.policy_rev.clone(),
                rule: request.required.rule_label(),
                stages: request
                    .required
                    .stages
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
            },
            risk: request
                .risk
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(|e| e.to_string())?,
            apv: approvals
                .iter()
                .map(|d| Approver {
                    sub: d.vote.user_id.to_string(),
                    name: d.vote.display_name.clone(),
                    stage: d.vote.stage.clone(),
                    at: d.vote.at,
                    cred: d.credential_id.to_string(),
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
        let token = sign(&claims, &signing, &key.kid).map_err(|e| e.to_string())?;
        Ok(IssuedReceipt {
            jti,
            token,
            expires_at,
        })
    }
}

//! The relying party: passkey registration through webauthn-rs, and assertion checking through
//! our own §7.2 implementation (`crate::assertion`).
//!
//! Why two paths: webauthn-rs 0.6 picks its own random authentication challenge and its
//! maintainers declined custom challenges (kanidm/webauthn-rs#549), while a decision's challenge
//! must be derived from the transaction (`crate::challenge`). Patching the library's serialised
//! state would work but ties correctness to its internal layout; verifying the assertion
//! ourselves with p256 keeps every check visible in one place, and the very same code re-checks
//! receipt evidence offline. Sign-in uses the same verifier with a random challenge, so there is
//! one assertion path. Registration (attestation parsing, COSE keys, UV) stays with the library.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    COSEAlgorithm, COSEKeyType, ECDSACurve, PasskeyRegistration, RegisterPublicKeyCredential, Url,
    Uuid,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::assertion::{verify_assertion, AssertionError, Es256Key, Expected, Verified};
use crate::domain::{Credential, CredentialId, NewCredential, User, CEREMONY_SECS};

pub struct RelyingParty {
    webauthn: Webauthn,
    origin: String,
    rp_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the registration response is not valid: {0}")]
    Invalid(String),
    #[error("only ES256 (P-256) passkeys are accepted")]
    NotEs256,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url as browsers and libraries send it: padding optional.
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

impl RelyingParty {
    pub fn new(public_origin: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let url = Url::parse(public_origin).context("public_origin is not a URL")?;
        let rp_id = url
            .host_str()
            .context("public_origin has no host")?
            .to_string();
        let webauthn = WebauthnBuilder::new(&rp_id, &url)
            .context("public_origin cannot be a WebAuthn relying party")?
            .rp_name("countersign")
            .build()
            .context("building the WebAuthn relying party")?;
        Ok(Self {
            webauthn,
            origin: public_origin.to_string(),
            rp_id,
        })
    }

    /// Creation options (W3C JSON form, the `publicKey` member) and the state to keep.
    pub fn start_registration(
        &self,
        user: &User,
        existing: &[Credential],
    ) -> anyhow::Result<(Value, Value)> {
        let handle = Uuid::from_bytes(*user.id.as_bytes());
        let exclude = existing
            .iter()
            .filter_map(|c| unb64(c.id.as_str()))
            .collect::<Vec<_>>();
        let (ccr, state) = self.webauthn.start_passkey_registration(
            handle,
            &user.username,
            &user.display_name,
            (!exclude.is_empty()).then_some(exclude),
        )?;
        let mut options = serde_json::to_value(ccr.public_key)?;
        // Ask only for what we accept (ES256), and prefer a discoverable credential so that
        // sign-in can start without a username (security keys without resident-key slots still
        // enrol). Both are requests to the authenticator; the key type is checked again after
        // registration.
        if let Some(obj) = options.as_object_mut() {
            obj.insert(
                "pubKeyCredParams".into(),
                json!([{ "type": "public-key", "alg": -7 }]),
            );
        }
        if let Some(sel) = options
            .get_mut("authenticatorSelection")
            .and_then(Value::as_object_mut)
        {
            sel.insert("residentKey".into(), json!("preferred"));
            sel.insert("requireResidentKey".into(), json!(false));
            sel.insert("userVerification".into(), json!("required"));
        }
        Ok((options, serde_json::to_value(state)?))
    }

    pub fn finish_registration(
        &self,
        response: &Value,
        state: &Value,
        label: &str,
    ) -> Result<NewCredential, RegistrationError> {
        let invalid = |e: String| RegistrationError::Invalid(e);
        let reg: RegisterPublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|e| invalid(e.to_string()))?;
        let state: PasskeyRegistration =
            serde_json::from_value(state.clone()).map_err(|e| invalid(e.to_string()))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&reg, &state)
            .map_err(|e| invalid(e.to_string()))?;
        let key = passkey.get_public_key();
        let (x, y) = match (&key.type_, &key.key) {
            (COSEAlgorithm::ES256, COSEKeyType::EC_EC2(ec))
                if ec.curve == ECDSACurve::SECP256R1 =>
            {
                (ec.x.clone(), ec.y.clone())
            }
            _ => return Err(RegistrationError::NotEs256),
        };
        Es256Key::from_xy(&x, &y).map_err(|_| RegistrationError::NotEs256)?;
        Ok(NewCredential {
            id: CredentialId::from_raw(passkey.cred_id().as_ref())
                .map_err(|e| invalid(e.to_string()))?,
            label: label.to_string(),
            public_x: x,
            public_y: y,
            counter: 0,
            passkey: serde_json::to_string(&passkey).map_err(|e| invalid(e.to_string()))?,
        })
    }

    /// Request options (W3C JSON form, the `publicKey` member) for our own challenge.
    pub fn request_options(&self, challenge: &[u8], allow: &[CredentialId]) -> Value {
        let allow: Vec<Value> = allow
            .iter()
            .map(|id| json!({ "type": "public-key", "id": id }))
            .collect();
        json!({
            "challenge": b64(challenge),
            "timeout": CEREMONY_SECS * 1000,
            "rpId": self.rp_id,
            "allowCredentials": allow,
            "userVerification": "required",
        })
    }

    /// WebAuthn L3 §7.2 for a known credential, with UV required.
    pub fn verify(
        &self,
        cred: &Credential,
        a: &AssertionResponse,
        challenge: &[u8],
    ) -> Result<Verified, AssertionError> {
        let key = Es256Key::from_xy(&cred.public_x, &cred.public_y)?;
        let expected = Expected {
            challenge,
            origin: &self.origin,
            rp_id: &self.rp_id,
            require_user_verification: true,
        };
        verify_assertion(
            &key,
            &a.authenticator_data,
            &a.client_data_json,
            &a.signature,
            &expected,
        )
    }
}

/// The parts of an AuthenticationResponseJSON (as `credential.toJSON()` gives it) we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionResponse {
    pub credential_id: CredentialId,
    pub authenticator_data: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub signature: Vec<u8>,
    pub user_handle: Option<Vec<u8>>,
}

impl AssertionResponse {
    pub fn parse(v: &Value) -> Option<AssertionResponse> {
        let field = |obj: &Value, name: &str| obj.get(name).and_then(Value::as_str).and_then(unb64);
        if v.get("type").and_then(Value::as_str) != Some("public-key") {
            return None;
        }
        let raw_id = field(v, "rawId").or_else(|| field(v, "id"))?;
        let r = v.get("response")?;
        Some(AssertionResponse {
            credential_id: CredentialId::from_raw(&raw_id).ok()?,
            authenticator_data: field(r, "authenticatorData")?,
            client_data_json: field(r, "clientDataJSON")?,
            signature: field(r, "signature")?,
            user_handle: field(r, "userHandle").filter(|h| !h.is_empty()),
        })
    }
}

//! Approvers for tests: a software passkey (webauthn-authenticator-rs) for the ordinary paths,
//! and a hand-built authenticator whose key we hold, so that hostile assertions (UV or UP
//! clear, wrong rpId, wrong origin, wrong type, a counter going backwards) carry valid
//! signatures and are refused for the right reason.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::{signature::Signer, DerSignature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use super::TestApp;

pub const ORIGIN: &str = "http://localhost:8080";
pub const RP_ID: &str = "localhost";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// What a crafted assertion gets wrong on purpose.
#[derive(Debug, Clone)]
pub struct Tweak {
    pub flags: u8,
    pub counter: Option<u32>,
    pub rp_id: String,
    pub origin: String,
    pub type_: String,
    pub challenge: Option<String>,
    pub garbage_signature: bool,
}

impl Default for Tweak {
    fn default() -> Self {
        Self {
            flags: 0x05, // UP | UV
            counter: None,
            rp_id: RP_ID.into(),
            origin: ORIGIN.into(),
            type_: "webauthn.get".into(),
            challenge: None,
            garbage_signature: false,
        }
    }
}

/// `name`, in `groups`, with a crafted passkey enrolled straight into `store` by the operator
/// (for servers in other processes, whose clock is the system's).
pub async fn enrol_crafted(
    store: &dyn countersign::store::Store,
    name: &str,
    groups: &[&str],
) -> (countersign::domain::User, Crafted) {
    use countersign::clock::{Clock, SystemClock};
    use countersign::domain::{Actor, CredentialId, EventKind, NewCredential, NewEvent};
    let operator = countersign::service::provision::Provisioner {
        store,
        clock: &SystemClock,
        origin: ORIGIN,
        actor: Actor::Operator,
        console: None,
    };
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let invitation = operator
        .invite(name, None, &groups, None, 3600)
        .await
        .unwrap();
    let token = invitation.url.rsplit('/').next().unwrap();
    let device = Crafted::new();
    let (x, y) = device.public_xy();
    let credential = NewCredential {
        id: CredentialId::parse(&device.cred_id_b64()).unwrap(),
        label: "k".into(),
        public_x: x,
        public_y: y,
        counter: 0,
        passkey: "{}".into(),
    };
    let event = NewEvent::new(EventKind::CredentialEnrolled, Actor::Operator, json!({}));
    let hash = countersign::domain::client::key_hash(token);
    store
        .enrol(
            &hash,
            &invitation.user,
            &credential,
            event,
            SystemClock.now(),
        )
        .await
        .unwrap();
    (invitation.user, device)
}

/// Signs `name` in over HTTP at `base` (a server in this or another process) with a crafted
/// passkey answering as `tweak` says; the session cookie (`name=value`).
pub async fn sign_in_crafted(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    device: &mut Crafted,
    tweak: &Tweak,
) -> String {
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .header("Origin", ORIGIN)
            .json(&body)
            .send()
    };
    let opts: Value = post("/v1/session/options", json!({ "username": name }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential = device.assert(&opts["publicKey"], tweak);
    let res = post(
        "/v1/session/finish",
        json!({ "ceremony": opts["ceremony"], "credential": credential }),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200, "sign-in of {name}");
    let set = res.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

pub struct Crafted {
    key: SigningKey,
    pub cred_id: Vec<u8>,
    pub counter: u32,
}

fn cbor_head(major: u8, len: u64) -> Vec<u8> {
    let m = major << 5;
    match len {
        0..=23 => vec![m | len as u8],
        24..=0xff => vec![m | 24, len as u8],
        0x100..=0xffff => vec![m | 25, (len >> 8) as u8, len as u8],
        _ => {
            let mut v = vec![m | 26];
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v
        }
    }
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = cbor_head(3, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
    v
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = cbor_head(2, b.len() as u64);
    v.extend_from_slice(b);
    v
}

impl Crafted {
    pub fn new() -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let cred_id: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
        Self {
            key,
            cred_id,
            counter: 0,
        }
    }

    /// The public key's coordinates, for enrolling straight into a store.
    pub fn public_xy(&self) -> (Vec<u8>, Vec<u8>) {
        let point = self.key.verifying_key().to_encoded_point(false);
        (point.x().unwrap().to_vec(), point.y().unwrap().to_vec())
    }

    pub fn cred_id_b64(&self) -> String {
        b64(&self.cred_id)
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut v = cbor_head(5, 5);
        v.extend(cbor_head(0, 1)); // kty
        v.extend(cbor_head(0, 2)); // EC2
        v.extend(cbor_head(0, 3)); // alg
        v.extend(cbor_head(1, 6)); // -7 (ES256)
        v.extend(cbor_head(1, 0)); // crv (-1)
        v.extend(cbor_head(0, 1)); // P-256
        v.extend(cbor_head(1, 1)); // x (-2)
        v.extend(cbor_bytes(point.x().unwrap()));
        v.extend(cbor_head(1, 2)); // y (-3)
        v.extend(cbor_bytes(point.y().unwrap()));
        v
    }

    /// A "none"-attestation registration response for creation options.
    pub fn register(&mut self, options: &Value) -> Value {
        let challenge = options["challenge"].as_str().unwrap();
        let cd = json!({ "type": "webauthn.create", "challenge": challenge, "origin": ORIGIN, "crossOrigin": false }).to_string();
        let mut auth_data = Sha256::digest(RP_ID.as_bytes()).to_vec();
        auth_data.push(0x45); // UP | UV | AT
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(self.cred_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.cred_id);
        auth_data.extend(self.cose_key());
        let mut att = cbor_head(5, 3);
        att.extend(cbor_text("fmt"));
        att.extend(cbor_text("none"));
        att.extend(cbor_text("attStmt"));
        att.extend(cbor_head(5, 0));
        att.extend(cbor_text("authData"));
        att.extend(cbor_bytes(&auth_data));
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": { "attestationObject": b64(&att), "clientDataJSON": b64(cd.as_bytes()) },
            "extensions": {}
        })
    }

    pub fn assert(&mut self, options: &Value, t: &Tweak) -> Value {
        let challenge = t
            .challenge
            .clone()
            .unwrap_or_else(|| options["challenge"].as_str().unwrap().to_string());
        let cd = json!({ "type": t.type_, "challenge": challenge, "origin": t.origin, "crossOrigin": false }).to_string();
        let counter = t.counter.unwrap_or_else(|| {
            self.counter += 1;
            self.counter
        });
        let mut auth_data = Sha256::digest(t.rp_id.as_bytes()).to_vec();
        auth_data.push(t.flags);
        auth_data.extend_from_slice(&counter.to_be_bytes());
        let mut msg = auth_data.clone();
        msg.extend_from_slice(&Sha256::digest(cd.as_bytes()));
        let sig: DerSignature = self.key.sign(&msg);
        let sig = if t.garbage_signature {
            sig.as_bytes()[..20].to_vec()
        } else {
            sig.as_bytes().to_vec()
        };
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(cd.as_bytes()),
                "signature": b64(&sig),
            },
            "clientExtensionResults": {}
        })
    }
}

pub enum Device {
    /// webauthn-authenticator-rs's software passkey, used on this origin.
    Soft(Box<SoftPasskey>, String),
    Crafted(Crafted),
}

impl Device {
    pub fn soft() -> Self {
        Device::soft_at(ORIGIN)
    }

    pub fn soft_at(origin: &str) -> Self {
        Device::Soft(Box::new(SoftPasskey::new(true)), origin.to_owned())
    }

    pub fn register(&mut self, options: &Value) -> Result<Value, String> {
        match self {
            Device::Soft(s, origin) => {
                let ccr: CreationChallengeResponse =
                    serde_json::from_value(json!({ "publicKey": options }))
                        .map_err(|e| e.to_string())?;
                let r = s
                    .do_registration(Url::parse(origin.as_str()).unwrap(), ccr)
                    .map_err(|e| format!("{e:?}"))?;
                Ok(serde_json::to_value(r).unwrap())
            }
            Device::Crafted(c) => Ok(c.register(options)),
        }
    }

    pub fn assert(&mut self, options: &Value) -> Value {
        match self {
            Device::Soft(s, origin) => {
                let rcr: RequestChallengeResponse =
                    serde_json::from_value(json!({ "publicKey": options })).unwrap();
                let r = s
                    .do_authentication(Url::parse(origin.as_str()).unwrap(), rcr)
                    .expect("soft passkey assertion");
                serde_json::to_value(r).unwrap()
            }
            Device::Crafted(c) => c.assert(options, &Tweak::default()),
        }
    }

    pub fn crafted(&mut self) -> &mut Crafted {
        match self {
            Device::Crafted(c) => c,
            Device::Soft(..) => panic!("not a crafted device"),
        }
    }
}

/// An approver with one or more passkeys and, once signed in, a session cookie.
pub struct Person {
    pub username: String,
    pub devices: Vec<Device>,
    pub cookie: Option<String>,
}

impl TestApp {
    /// A one-time enrolment link's token for `username` in `groups`.
    pub async fn invite(&self, username: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let inv = self
            .operator()
            .invite(
                username,
                Some(&format!("{username} (test)")),
                &groups,
                None,
                3600,
            )
            .await
            .unwrap();
        inv.url.rsplit('/').next().unwrap().to_string()
    }

    /// POST with the approver conventions: JSON, our Origin, the person's cookie.
    pub async fn approver_post(
        &self,
        path: &str,
        cookie: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url(path))
            .header("Origin", &self.origin)
            .json(body);
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send().await.unwrap()
    }

    pub async fn approver_get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send().await.unwrap()
    }

    /// A page's HTML, as this cookie's holder sees it.
    pub async fn approver_page(&self, path: &str, cookie: Option<&str>) -> String {
        self.approver_get(path, cookie).await.text().await.unwrap()
    }

    /// Enrols `device` through an invitation; returns the response.
    pub async fn enrol_device(
        &self,
        token: &str,
        device: &mut Device,
        label: &str,
    ) -> reqwest::Response {
        let res = self
            .approver_post(&format!("/v1/enroll/{token}/options"), None, &json!({}))
            .await;
        assert_eq!(res.status(), 200, "enrol options");
        let opts: Value = res.json().await.unwrap();
        let credential = device.register(&opts["publicKey"]).expect("registration");
        self.approver_post(
            &format!("/v1/enroll/{token}/finish"),
            None,
            &json!({ "ceremony": opts["ceremony"], "credential": credential, "label": label }),
        )
        .await
    }

    /// A person enrolled (with a soft passkey unless given a device) and signed in.
    pub async fn person(&self, username: &str, groups: &[&str], device: Option<Device>) -> Person {
        let token = self.invite(username, groups).await;
        let mut device = device.unwrap_or_else(|| Device::soft_at(&self.origin));
        let res = self.enrol_device(&token, &mut device, "test key").await;
        assert_eq!(res.status(), 201, "enrol: {}", res.text().await.unwrap());
        let mut p = Person {
            username: username.into(),
            devices: vec![device],
            cookie: None,
        };
        self.sign_in(&mut p).await;
        p
    }

    pub async fn sign_in(&self, p: &mut Person) {
        let res = self
            .approver_post(
                "/v1/session/options",
                None,
                &json!({ "username": p.username }),
            )
            .await;
        assert_eq!(res.status(), 200);
        let opts: Value = res.json().await.unwrap();
        let credential = p.devices[0].assert(&opts["publicKey"]);
        let res = self
            .approver_post(
                "/v1/session/finish",
                None,
                &json!({ "ceremony": opts["ceremony"], "credential": credential }),
            )
            .await;
        assert_eq!(res.status(), 200, "sign-in");
        let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
        p.cookie = Some(set.split(';').next().unwrap().to_string());
    }

    /// Decision options for a person; returns (status, body).
    pub async fn decision_options(&self, p: &Person, id: &str, decision: &str) -> (u16, Value) {
        let res = self
            .approver_post(
                &format!("/v1/approvals/{id}/decision/options"),
                p.cookie.as_deref(),
                &json!({ "decision": decision }),
            )
            .await;
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn decision_finish(
        &self,
        p: &Person,
        id: &str,
        ceremony: &Value,
        credential: &Value,
    ) -> reqwest::Response {
        self.approver_post(
            &format!("/v1/approvals/{id}/decision/finish"),
            p.cookie.as_deref(),
            &json!({ "ceremony": ceremony, "credential": credential }),
        )
        .await
    }

    /// Options, a fresh assertion from the person's first device, and finish.
    pub async fn decide(&self, p: &mut Person, id: &str, decision: &str) -> reqwest::Response {
        let (status, opts) = self.decision_options(p, id, decision).await;
        assert_eq!(status, 200, "decision options: {opts}");
        let credential = p.devices[0].assert(&opts["publicKey"]);
        self.decision_finish(p, id, &opts["ceremony"], &credential)
            .await
    }
}

pub fn challenge_of(opts: &Value) -> Vec<u8> {
    unb64(opts["publicKey"]["challenge"].as_str().unwrap())
}

//! Approval receipts: the compact JWS the server signs once a request is approved, and the
//! offline verifier a downstream service runs before it executes the transaction.
//!
//! Verification follows RFC 8725: one algorithm, one header shape, keys only from the caller's
//! JWKS and never from the token, and raw low-S signatures so that every receipt has exactly
//! one valid spelling. The evidence inside lets anyone check each approver's passkey signature
//! over this exact transaction without trusting the server that issued the receipt.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::{EncodedPoint, FieldBytes};
use serde::{Deserialize, Serialize};

use crate::assertion::{verify_assertion, Es256Key, Expected};
use crate::challenge::{decision_challenge, Decision};
use crate::es256::{self, KeyPair};
use crate::jcs;
use crate::tx_hash::TxHash;

pub const TYP: &str = "countersign-receipt+jwt";
/// Seconds of clock difference tolerated between the issuer and the verifier.
pub const DEFAULT_LEEWAY: i64 = 30;

const ALG: &str = "ES256";
/// r || s, 32 bytes each (RFC 7518 §3.4).
const RAW_SIGNATURE_LEN: usize = 64;
/// JWK members that only private or symmetric keys have (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/// Header member names come from the token; a hostile one must not flood the logs.
const MAX_REPORTED_NAME: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The server's public origin; also the WebAuthn origin the evidence was made on.
    pub iss: String,
    /// The service allowed to redeem the receipt.
    pub aud: String,
    /// The approval id (hyphenated UUID), bound into every approver's challenge.
    pub sub: String,
    /// The receipt id; the server redeems each one once.
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub act: String,
    /// base64url (no padding) SHA-256 of the JCS form of the transaction.
    pub txh: String,
    pub ini: Initiated,
    pub pol: PolicyRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<serde_json::Value>,
    pub apv: Vec<Approver>,
}

/// Who asked for the transaction: a person's username, or the party object the creating service
/// declared (an agent or a service, perhaps acting for a person).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Initiated {
    Person(String),
    Party(Party),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// `person`, `agent` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub id: String,
    /// base64url SHA-256 of the policy document that decided the quorum.
    pub rev: String,
    pub rule: String,
    /// The request's stages, in order, every one of which was met (absent from receipts made
    /// before stages: one stage, `default`).
    #[serde(default)]
    pub stages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    pub sub: String,
    pub name: String,
    /// The stage this approval counted in.
    #[serde(default)]
    pub stage: String,
    pub at: i64,
    pub cred: String,
    pub uv: bool,
    pub ev: Evidence,
}

/// The WebAuthn assertion exactly as the authenticator produced it; all base64url, no padding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The 32-byte nonce the challenge was derived with.
    pub n: String,
    pub ad: String,
    pub cd: String,
    /// ASN.1 DER, as WebAuthn signs; unlike the receipt's own signature.
    pub sig: String,
    pub jwk: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("malformed receipt: {0}")]
    Malformed(&'static str),
    #[error("the receipt is not signed with ES256")]
    UnsupportedAlgorithm,
    #[error("the receipt's typ is not \"{TYP}\"")]
    WrongType,
    #[error("the receipt header carries {0:?}, which receipts never use")]
    ForbiddenHeader(String),
    #[error("the receipt names a signing key this verifier does not hold")]
    UnknownKey,
    #[error("the receipt's signature does not verify")]
    BadSignature,
    #[error("the receipt has expired")]
    Expired,
    #[error("the receipt is not valid yet")]
    NotYetValid,
    #[error("the receipt was issued by another server")]
    WrongIssuer,
    #[error("the receipt is for another audience")]
    WrongAudience,
    #[error("the receipt approves another transaction")]
    TransactionMismatch,
    #[error("invalid receipt claims: {0}")]
    InvalidClaims(String),
    #[error("the evidence of approver {approver:?} does not verify: {reason}")]
    Evidence { approver: String, reason: String },
    #[error("invalid JWKS: {0}")]
    InvalidJwks(String),
}

impl ReceiptError {
    /// The stable error code for API responses and CLI output. Only refusals a caller can act
    /// on get their own; telling forgeries apart would only help whoever makes them.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptError::Expired => "receipt_expired",
            ReceiptError::WrongAudience => "wrong_audience",
            ReceiptError::TransactionMismatch => "transaction_mismatch",
            _ => "invalid_receipt",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    /// base64url, as `TxHash` displays it.
    pub tx_hash: Option<&'a str>,
    pub now: i64,
    pub leeway: i64,
}

/// Field order fixes the serialised header to the one shape the format allows.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs claims into a compact JWS with a low-S raw signature. (The server calls this; it is
/// here so the format lives in one file.)
pub fn sign(claims: &Claims, key: &KeyPair, kid: &str) -> Result<String, ReceiptError> {
    // A receipt every verifier refuses is a bug better caught where it is made.
    check_consistency(claims)?;
    let header = serde_json::to_vec(&Header {
        alg: ALG,
        typ: TYP,
        kid,
    })
    .map_err(|_| ReceiptError::Malformed("the header could not be serialised"))?;
    let payload =
        serde_json::to_vec(claims).map_err(|e| ReceiptError::InvalidClaims(e.to_string()))?;
    let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 90);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes()).ok_or(ReceiptError::Malformed(
        "the signature could not be computed",
    ))?;
    // S falls as it may, and verifiers refuse the high form (see `raw_signature`).
    let signature = signature.normalize_s().unwrap_or(signature);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}

/// One public key as the JWKS serves it.
pub fn jwk_for(key: &VerifyingKey, kid: &str) -> serde_json::Value {
    let point = key.to_encoded_point(false);
    // Both coordinates exist: a VerifyingKey is never the identity, which is the only point
    // an uncompressed encoding leaves without them.
    let coordinate = |c: Option<&FieldBytes>| b64(&c.map(|f| f.to_vec()).unwrap_or_default());
    serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "x": coordinate(point.x()),
        "y": coordinate(point.y()),
        "kid": kid,
        "alg": ALG,
        "use": "sig",
    })
}

#[derive(Debug, Clone)]
pub struct Verifier {
    keys: BTreeMap<String, VerifyingKey>,
}

impl Verifier {
    /// From a JWKS document: keeps EC/P-256 keys with a kid (alg ES256 or absent; use sig or
    /// absent); refuses the whole document if any key carries a private member ("d") or two
    /// keys share a kid; ignores keys of other types.
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<Verifier, ReceiptError> {
        let invalid = |why: String| ReceiptError::InvalidJwks(why);
        let entries = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| invalid("there is no \"keys\" array".into()))?;
        let mut kids = HashSet::new();
        let mut keys = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let members = entry
                .as_object()
                .ok_or_else(|| invalid(format!("key {i} is not an object")))?;
            // Private material in a public document means the publisher leaked it; nothing
            // signed under such a set deserves trust, whatever the key type.
            if let Some(name) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
                return Err(invalid(format!(
                    "key {i} carries the private member {name:?}"
                )));
            }
            let text = |name: &str| members.get(name).and_then(serde_json::Value::as_str);
            let kid = text("kid");
            // Across all key types: a kid that names two keys leaves the choice to whoever
            // wrote the token.
            if let Some(kid) = kid {
                if !kids.insert(kid) {
                    return Err(invalid(format!("two keys share the kid {kid:?}")));
                }
            }
            let ours = text("kty") == Some("EC") && text("crv") == Some("P-256");
            let for_es256 = members.get("alg").is_none_or(|alg| alg == ALG);
            let for_signing = members.get("use").is_none_or(|u| u == "sig");
            let Some(kid) = kid.filter(|_| ours && for_es256 && for_signing) else {
                continue;
            };
            let key = Es256Key::from_jwk(entry)
                .ok()
                .and_then(|key| verifying_key(&key))
                .ok_or_else(|| invalid(format!("key {kid:?} is not a valid P-256 public key")))?;
            keys.insert(kid.to_owned(), key);
        }
        Ok(Verifier { keys })
    }

    /// A later key under the same kid replaces the earlier one.
    pub fn from_keys(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Verifier {
        Verifier {
            keys: keys.into_iter().collect(),
        }
    }

    /// Sorted.
    pub fn kids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Full verification. Never makes a network request and never uses kid except as a map
    /// lookup.
    pub fn verify(&self, token: &str, expect: &Expect) -> Result<Claims, ReceiptError> {
        let parts = Parts::split(token)?;
        let key = self.header_key(&parts.header)?;
        let signature = raw_signature(&parts.signature)?;
        if !es256::verify(key, parts.signing_input.as_bytes(), &signature) {
            return Err(ReceiptError::BadSignature);
        }
        let claims = parse_claims(&parts.payload)?;
        check_claims(&claims, expect)?;
        Ok(claims)
    }

    fn header_key(&self, header: &[u8]) -> Result<&VerifyingKey, ReceiptError> {
        // serde_json would keep the last of two "alg" members where other libraries keep the
        // first; the strict parser refuses the header instead.
        let header = jcs::parse(header)
            .map_err(|_| ReceiptError::Malformed("the header is not strict JSON"))?;
        let jcs::Value::Object(members) = header else {
            return Err(ReceiptError::Malformed("the header is not a JSON object"));
        };
        // Everything beyond these three (jku, x5u, jwk, x5c, crit, b64, zip…) would let the
        // token choose its own key or change how it is read.
        if let Some((name, _)) = members
            .iter()
            .find(|(name, _)| !matches!(name.as_str(), "alg" | "typ" | "kid"))
        {
            let name = name.chars().take(MAX_REPORTED_NAME).collect();
            return Err(ReceiptError::ForbiddenHeader(name));
        }
        let member = |name: &str| {
            members
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.as_str())
        };
        if member("alg") != Some(ALG) {
            return Err(ReceiptError::UnsupportedAlgorithm);
        }
        // Keeps other JWTs signed by the same keys, should there ever be any, from passing.
        if member("typ") != Some(TYP) {
            return Err(ReceiptError::WrongType);
        }
        member("kid")
            .and_then(|kid| self.keys.get(kid))
            .ok_or(ReceiptError::UnknownKey)
    }
}

/// Every approval is in one of the receipt's stages, and every stage holds an approval (its
/// quorum is the server's policy; that each stage was met by someone the receipt shows).
/// Receipts made before stages list none.
fn check_stages(claims: &Claims) -> Result<(), ReceiptError> {
    if claims.pol.stages.is_empty() {
        return Ok(());
    }
    if let Some(a) = claims
        .apv
        .iter()
        .find(|a| !claims.pol.stages.contains(&a.stage))
    {
        return Err(ReceiptError::InvalidClaims(format!(
            "approver {} is in stage {:?}, which pol.stages does not list",
            a.sub, a.stage
        )));
    }
    if let Some(empty) = claims
        .pol
        .stages
        .iter()
        .find(|s| !claims.apv.iter().any(|a| &a.stage == *s))
    {
        return Err(ReceiptError::InvalidClaims(format!(
            "stage {empty:?} has no approval"
        )));
    }
    Ok(())
}

/// Re-verifies every approver's evidence against the receipt itself; Ok(number of approvers
/// checked). Also refuses an empty apv and two entries with the same approver sub.
pub fn verify_evidence(claims: &Claims) -> Result<usize, ReceiptError> {
    if claims.apv.is_empty() {
        return Err(ReceiptError::InvalidClaims("apv lists no approvers".into()));
    }
    let approval_id = parse_uuid(&claims.sub)
        .ok_or_else(|| ReceiptError::InvalidClaims("sub is not a hyphenated UUID".into()))?;
    let tx_hash =
        TxHash::parse(&claims.txh).map_err(|e| ReceiptError::InvalidClaims(format!("txh: {e}")))?;
    let rp_id = rp_id_of(&claims.iss)
        .ok_or_else(|| ReceiptError::InvalidClaims("iss is not an origin".into()))?;
    check_stages(claims)?;
    let mut subs = HashSet::new();
    let mut creds = HashSet::new();
    let mut keys = HashSet::new();
    for approver in &claims.apv {
        let fail = |reason: &str| ReceiptError::Evidence {
            approver: approver.sub.clone(),
            reason: reason.to_owned(),
        };
        // A quorum counts people and passkeys; one of either listed twice would count double.
        if !subs.insert(approver.sub.as_str()) {
            return Err(fail("the approver is listed more than once"));
        }
        if !creds.insert(approver.cred.as_str()) {
            return Err(fail("the credential is listed for another approver too"));
        }
        // The server requires user verification for every decision, so a receipt saying
        // otherwise is not one it issued.
        if !approver.uv {
            return Err(fail("uv is false, but approvals require user verification"));
        }
        let ev = &approver.ev;
        let nonce: [u8; 32] = unb64(&ev.n)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| fail("n is not 32 base64url bytes"))?;
        let ad = unb64(&ev.ad).ok_or_else(|| fail("ad is not base64url"))?;
        let cd = unb64(&ev.cd).ok_or_else(|| fail("cd is not base64url"))?;
        let sig = unb64(&ev.sig).ok_or_else(|| fail("sig is not base64url"))?;
        let key = Es256Key::from_jwk(&ev.jwk).map_err(|e| fail(&e.to_string()))?;
        if !keys.insert((key.x(), key.y())) {
            return Err(fail("the passkey is listed for another approver too"));
        }
        let challenge =
            decision_challenge(&approval_id, Decision::Approve, tx_hash.as_bytes(), &nonce);
        let expected = Expected {
            challenge: &challenge,
            origin: &claims.iss,
            rp_id: &rp_id,
            require_user_verification: true,
        };
        verify_assertion(&key, &ad, &cd, &sig, &expected).map_err(|e| fail(&e.to_string()))?;
    }
    Ok(claims.apv.len())
}

/// Decodes the claims WITHOUT verifying (for display/debugging, clearly named).
pub fn decode_unverified(token: &str) -> Result<Claims, ReceiptError> {
    parse_claims(&Parts::split(token)?.payload)
}

struct Parts<'a> {
    /// `header_b64 "." payload_b64`, exactly the bytes the signature covers.
    signing_input: &'a str,
    header: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl Parts<'_> {
    fn split(token: &str) -> Result<Parts<'_>, ReceiptError> {
        const SHAPE: ReceiptError =
            ReceiptError::Malformed("a receipt is three dot-separated segments");
        let (signing_input, signature) = token.rsplit_once('.').ok_or(SHAPE)?;
        let (header, payload) = signing_input.split_once('.').ok_or(SHAPE)?;
        if payload.contains('.') {
            return Err(SHAPE);
        }
        let decode = |segment: &str| {
            if segment.is_empty() {
                return Err(ReceiptError::Malformed("a segment is empty"));
            }
            unb64(segment).ok_or(ReceiptError::Malformed(
                "a segment is not unpadded base64url",
            ))
        };
        Ok(Parts {
            signing_input,
            header: decode(header)?,
            payload: decode(payload)?,
            signature: decode(signature)?,
        })
    }
}

fn raw_signature(bytes: &[u8]) -> Result<Signature, ReceiptError> {
    // Other lengths, DER among them, are refused rather than converted: a receipt has one
    // encoding, so its bytes can be compared and logged as they are.
    if bytes.len() != RAW_SIGNATURE_LEN {
        return Err(ReceiptError::BadSignature);
    }
    // Refuses r or s that are zero or not below the group order.
    let signature = Signature::from_slice(bytes).map_err(|_| ReceiptError::BadSignature)?;
    // (r, n - s) verifies as well; only the low form is the receipt the server issued.
    if signature.normalize_s().is_some() {
        return Err(ReceiptError::BadSignature);
    }
    Ok(signature)
}

fn parse_claims(payload: &[u8]) -> Result<Claims, ReceiptError> {
    // serde would also read a struct from a JSON array; a claims set is an object (RFC 7519).
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ReceiptError::InvalidClaims(
            "the claims are not a JSON object".into(),
        ));
    }
    serde_json::from_slice(payload).map_err(|e| ReceiptError::InvalidClaims(e.to_string()))
}

fn check_claims(claims: &Claims, expect: &Expect) -> Result<(), ReceiptError> {
    if expect.issuer.is_some_and(|iss| iss != claims.iss) {
        return Err(ReceiptError::WrongIssuer);
    }
    if expect.audience.is_some_and(|aud| aud != claims.aud) {
        return Err(ReceiptError::WrongAudience);
    }
    // RFC 7519: exp is the first second at which the receipt is no longer accepted.
    if expect.now >= claims.exp.saturating_add(expect.leeway) {
        return Err(ReceiptError::Expired);
    }
    let latest = expect.now.saturating_add(expect.leeway);
    if claims.nbf > latest || claims.iat > latest {
        return Err(ReceiptError::NotYetValid);
    }
    check_consistency(claims)?;
    // TxHash::parse accepts one spelling per hash, so equal hashes are equal strings.
    if expect.tx_hash.is_some_and(|txh| txh != claims.txh) {
        return Err(ReceiptError::TransactionMismatch);
    }
    Ok(())
}

/// What holds for every receipt regardless of who checks it or when.
fn check_consistency(claims: &Claims) -> Result<(), ReceiptError> {
    if claims.exp <= claims.nbf {
        return Err(ReceiptError::InvalidClaims("exp is not after nbf".into()));
    }
    TxHash::parse(&claims.txh).map_err(|e| ReceiptError::InvalidClaims(format!("txh: {e}")))?;
    Ok(())
}

fn verifying_key(key: &Es256Key) -> Option<VerifyingKey> {
    let point = EncodedPoint::from_affine_coordinates(&key.x().into(), &key.y().into(), false);
    VerifyingKey::from_encoded_point(&point).ok()
}

/// The RP ID the server derives from its origin: the host, lowercased, without scheme or port.
/// Anything else wrong with `iss` fails the origin comparison in `verify_assertion`.
fn rp_id_of(origin: &str) -> Option<String> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The 16 bytes of a hyphenated UUID (8-4-4-4-12 hex digits, either case), as the server's
/// uuid crate reads the ids it generated; the verify feature carries no uuid dependency.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.split('-').collect();
    if !groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) {
        return None;
    }
    let digits = groups.concat();
    // Checked here because from_str_radix would also take a sign.
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (byte, pair) in bytes.iter_mut().zip(digits.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict: no padding, URL alphabet only, no stray trailing bits, so one spelling per value.
fn unb64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertion::AssertionError;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};

    const ISS: &str = "https://approve.example.com";
    const RP_ID: &str = "approve.example.com";
    const AUD: &str = "payments-service";
    const ID: &str = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
    const TX: &str = r#"{"amount":"1250.00","currency":"EUR","payee":"ACME"}"#;
    /// SHA-256 of TX (already in JCS form), computed independently with Python's hashlib.
    const TXH: &str = "3xNJAOgEwFcMZrh1JacL79eUNWU8iOQWBLJ9B3PMyK4";
    /// Same for TX with "1250.01".
    const OTHER_TXH: &str = "gRFr4zX3nD7QkpNYESuU_tV89scCH0W2xR5Tx67-be0";
    const NOW: i64 = 1_795_000_000;
    const KID: &str = "k1";
    /// The order of the P-256 group.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    const UP_UV: u8 = 0x05;

    fn new_key() -> SigningKey {
        SigningKey::random(&mut rand::rngs::OsRng)
    }

    /// What the approver's authenticator is made to sign; `Default` is an honest approval.
    struct Ceremony {
        decision: Decision,
        flags: u8,
        origin: &'static str,
        signed_nonce: [u8; 32],
        stated_nonce: Option<[u8; 32]>,
    }

    impl Default for Ceremony {
        fn default() -> Ceremony {
            Ceremony {
                decision: Decision::Approve,
                flags: UP_UV,
                origin: ISS,
                signed_nonce: rand::random(),
                stated_nonce: None,
            }
        }
    }

    fn evidence(c: Ceremony) -> Evidence {
        let authenticator = new_key();
        let id = parse_uuid(ID).unwrap();
        let txh = TxHash::parse(TXH).unwrap();
        let challenge = decision_challenge(&id, c.decision, txh.as_bytes(), &c.signed_nonce);
        let mut ad = Sha256::digest(RP_ID).to_vec();
        ad.push(c.flags);
        ad.extend_from_slice(&7u32.to_be_bytes());
        let cd = json!({"type": "webauthn.get", "challenge": b64(&challenge), "origin": c.origin});
        let cd = cd.to_string();
        let sig: Signature = authenticator.sign(&[&ad[..], &Sha256::digest(&cd)].concat());
        let point = authenticator.verifying_key().to_encoded_point(false);
        let jwk = Es256Key::from_xy(point.x().unwrap(), point.y().unwrap()).unwrap();
        Evidence {
            n: b64(&c.stated_nonce.unwrap_or(c.signed_nonce)),
            ad: b64(&ad),
            cd: b64(cd.as_bytes()),
            sig: b64(sig.to_der().as_bytes()),
            jwk: jwk.to_jwk(),
        }
    }

    fn approver(sub: &str, ev: Evidence) -> Approver {
        Approver {
            sub: sub.into(),
            name: format!("{sub} (test)"),
            stage: "default".into(),
            at: NOW,
            cred: b64(sub.as_bytes()),
            uv: true,
            ev,
        }
    }

    fn claims() -> Claims {
        Claims {
            iss: ISS.into(),
            aud: AUD.into(),
            sub: ID.into(),
            jti: "0d9c6a57-7f3e-4b8a-9c1d-2e3f4a5b6c7d".into(),
            iat: NOW,
            nbf: NOW,
            exp: NOW + 300,
            act: "payment.transfer".into(),
            txh: TXH.into(),
            ini: Initiated::Person("alice".into()),
            pol: PolicyRef {
                id: "payment.transfer".into(),
                rev: b64(&Sha256::digest("policy")),
                rule: "default".into(),
                stages: vec!["default".into()],
            },
            risk: Some(json!({"score": 35, "reasons": ["new payee"]})),
            apv: vec![approver("u-bob", evidence(Ceremony::default()))],
        }
    }

    fn expect() -> Expect<'static> {
        Expect {
            issuer: Some(ISS),
            audience: Some(AUD),
            tx_hash: Some(TXH),
            now: NOW + 10,
            leeway: DEFAULT_LEEWAY,
        }
    }

    fn setup() -> (SigningKey, Verifier) {
        let key = new_key();
        let verifier = Verifier::from_keys([(KID.to_string(), *key.verifying_key())]);
        (key, verifier)
    }

    /// Correctly signed whatever the header and payload say, so that only the property under
    /// test is wrong.
    fn raw_token(key: &SigningKey, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig: Signature = key.sign(input.as_bytes());
        let sig = sig.normalize_s().unwrap_or(sig);
        format!("{input}.{}", b64(&sig.to_bytes()))
    }

    fn with_header(key: &SigningKey, header: Value) -> String {
        raw_token(
            key,
            &header.to_string(),
            &serde_json::to_string(&claims()).unwrap(),
        )
    }

    fn with_payload(key: &SigningKey, payload: Value) -> String {
        let header = r#"{"alg":"ES256","typ":"countersign-receipt+jwt","kid":"k1"}"#;
        raw_token(key, header, &payload.to_string())
    }

    fn with_signature(token: &str, sig: &[u8]) -> String {
        format!("{}.{}", token.rsplit_once('.').unwrap().0, b64(sig))
    }

    fn signature_of(token: &str) -> Signature {
        Signature::from_slice(&unb64(token.rsplit_once('.').unwrap().1).unwrap()).unwrap()
    }

    fn evidence_refusal(claims: &Claims) -> String {
        match verify_evidence(claims) {
            Err(ReceiptError::Evidence { approver, reason }) => {
                assert_eq!(approver, claims.apv.last().unwrap().sub);
                reason
            }
            other => panic!("expected an evidence refusal, got {other:?}"),
        }
    }

    fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let key = if key.len() > 64 {
            Sha256::digest(key).to_vec()
        } else {
            key.to_vec()
        };
        let pad = |byte: u8| {
            let mut block = [byte; 64];
            block.iter_mut().zip(&key).for_each(|(b, k)| *b ^= k);
            block
        };
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(msg)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    #[test]
    fn test_constants() {
        assert_eq!(TxHash::of_json(TX.as_bytes()).unwrap().0.to_string(), TXH);
        let other = TX.replace("1250.00", "1250.01");
        assert_eq!(
            TxHash::of_json(other.as_bytes()).unwrap().0.to_string(),
            OTHER_TXH
        );
        // s = n - 1 is the largest scalar from_slice takes.
        let mut n_minus_1 = N;
        n_minus_1[31] -= 1;
        assert!(Signature::from_scalars([1u8; 32], n_minus_1).is_ok());
        assert!(Signature::from_scalars([1u8; 32], N).is_err());
    }

    #[test]
    fn round_trip() {
        let (key, verifier) = setup();
        let mut c = claims();
        c.apv
            .push(approver("u-erin", evidence(Ceremony::default())));
        let token = sign(&c, &key.clone().into(), KID).unwrap();
        let header = unb64(token.split('.').next().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            r#"{"alg":"ES256","typ":"countersign-receipt+jwt","kid":"k1"}"#
        );
        let verified = verifier.verify(&token, &expect()).unwrap();
        assert_eq!(verified, c);
        assert_eq!(verify_evidence(&verified), Ok(2));
        assert_eq!(decode_unverified(&token).unwrap(), c);
        let lax = Expect {
            issuer: None,
            audience: None,
            tx_hash: None,
            ..expect()
        };
        assert_eq!(verifier.verify(&token, &lax).unwrap(), c);
        assert_eq!(verifier.kids(), vec![KID.to_string()]);
    }

    #[test]
    fn risk_is_omitted_when_absent() {
        let (key, verifier) = setup();
        let c = Claims {
            risk: None,
            ..claims()
        };
        let token = sign(&c, &key.clone().into(), KID).unwrap();
        let payload = unb64(token.split('.').nth(1).unwrap()).unwrap();
        let payload: Value = serde_json::from_slice(&payload).unwrap();
        assert!(payload.get("risk").is_none());
        assert_eq!(verifier.verify(&token, &expect()).unwrap(), c);
    }

    #[test]
    fn signatures_are_always_low_s() {
        let key = new_key();
        let mut c = claims();
        // Each signature is high-S half the time, so normalisation is exercised.
        for i in 0..32 {
            c.jti = format!("receipt-{i}");
            let sig = signature_of(&sign(&c, &key.clone().into(), KID).unwrap());
            assert!(sig.normalize_s().is_none(), "receipt {i}");
        }
    }

    #[test]
    fn sign_refuses_receipts_no_verifier_accepts() {
        let key = new_key();
        let backwards = Claims {
            exp: NOW,
            ..claims()
        };
        assert!(matches!(
            sign(&backwards, &key.clone().into(), KID),
            Err(ReceiptError::InvalidClaims(_))
        ));
        let bad_txh = Claims {
            txh: "not a hash".into(),
            ..claims()
        };
        assert!(matches!(
            sign(&bad_txh, &key.clone().into(), KID),
            Err(ReceiptError::InvalidClaims(_))
        ));
    }

    #[test]
    fn malformed_tokens() {
        let (key, verifier) = setup();
        let token = sign(&claims(), &key.clone().into(), KID).unwrap();
        let [h, p, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
        for bad in [
            String::new(),
            "..".into(),
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}..{s}"),
            format!(".{p}.{s}"),
            format!("{h}.{p}."),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}.{s}x"),
            format!(" {token}"),
            format!("{token}\n"),
            format!("{h}.{p}.+{}", &s[1..]),
            format!("{h}.{p}./{}", &s[1..]),
            format!("{}.{p}.{s}", b64(b"not json")),
            format!("{}.{p}.{s}", b64(b"[\"ES256\"]")),
            format!("{}.{p}.{s}", b64(br#"{"alg":"ES256","alg":"ES256"}"#)),
        ] {
            assert!(
                matches!(
                    verifier.verify(&bad, &expect()),
                    Err(ReceiptError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            decode_unverified("a.b"),
            Err(ReceiptError::Malformed(_))
        ));
    }

    #[test]
    fn duplicate_header_members_are_refused() {
        let (key, verifier) = setup();
        // serde_json alone would read this as ES256.
        let header = r#"{"alg":"none","typ":"countersign-receipt+jwt","kid":"k1","alg":"ES256"}"#;
        let token = raw_token(&key, header, &serde_json::to_string(&claims()).unwrap());
        assert!(matches!(
            verifier.verify(&token, &expect()),
            Err(ReceiptError::Malformed(_))
        ));
    }

    #[test]
    fn alg_none() {
        let (key, verifier) = setup();
        let token = with_header(&key, json!({"alg": "none", "typ": TYP, "kid": KID}));
        // The unsecured form has an empty signature, which is refused before the header.
        assert!(matches!(
            verifier.verify(&with_signature(&token, b""), &expect()),
            Err(ReceiptError::Malformed(_))
        ));
        assert_eq!(
            verifier.verify(&token, &expect()),
            Err(ReceiptError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn hs256_keyed_with_the_public_key() {
        let (key, verifier) = setup();
        let token = with_header(&key, json!({"alg": "HS256", "typ": TYP, "kid": KID}));
        let (input, _) = token.rsplit_once('.').unwrap();
        let secret = key.verifying_key().to_encoded_point(false);
        let forged = with_signature(&token, &hmac_sha256(secret.as_bytes(), input.as_bytes()));
        assert_eq!(
            verifier.verify(&forged, &expect()),
            Err(ReceiptError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn other_algorithms() {
        let (key, verifier) = setup();
        for alg in [
            json!("ES384"),
            json!("ES512"),
            json!("RS256"),
            json!("PS256"),
            json!("EdDSA"),
            json!("ES256K"),
            json!("es256"),
            json!("ES256 "),
            json!(""),
            json!(null),
            json!(["ES256"]),
        ] {
            let token = with_header(&key, json!({"alg": alg, "typ": TYP, "kid": KID}));
            assert_eq!(
                verifier.verify(&token, &expect()),
                Err(ReceiptError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
        let token = with_header(&key, json!({"typ": TYP, "kid": KID}));
        assert_eq!(
            verifier.verify(&token, &expect()),
            Err(ReceiptError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn forbidden_header_members() {
        let (key, verifier) = setup();
        let jwk = jwk_for(key.verifying_key(), KID);
        for (name, value) in [
            ("jku", json!("http://127.0.0.1:9/jwks.json")),
            ("x5u", json!("http://evil/cert.pem")),
            ("jwk", jwk),
            ("x5c", json!(["MIIB"])),
            ("crit", json!(["b64"])),
            ("b64", json!(false)),
            ("zip", json!("DEF")),
            ("cty", json!("JWT")),
            ("x5t#S256", json!("abc")),
            ("nonce", json!("1")),
        ] {
            let mut header = json!({"alg": "ES256", "typ": TYP, "kid": KID});
            header[name] = value;
            assert_eq!(
                verifier.verify(&with_header(&key, header), &expect()),
                Err(ReceiptError::ForbiddenHeader(name.into()))
            );
        }
        let mut header = json!({"alg": "ES256", "typ": TYP, "kid": KID});
        header["x".repeat(1000)] = json!(1);
        match verifier.verify(&with_header(&key, header), &expect()) {
            Err(ReceiptError::ForbiddenHeader(name)) => assert_eq!(name.len(), MAX_REPORTED_NAME),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_typ() {
        let (key, verifier) = setup();
        for typ in [json!("JWT"), json!("countersign-receipt+JWT"), json!(null)] {
            let token = with_header(&key, json!({"alg": "ES256", "typ": typ, "kid": KID}));
            assert_eq!(
                verifier.verify(&token, &expect()),
                Err(ReceiptError::WrongType)
            );
        }
        let token = with_header(&key, json!({"alg": "ES256", "kid": KID}));
        assert_eq!(
            verifier.verify(&token, &expect()),
            Err(ReceiptError::WrongType)
        );
    }

    #[test]
    fn unknown_kid() {
        let (key, verifier) = setup();
        for kid in [
            json!("../../etc/passwd"),
            json!("http://evil/"),
            json!("k1 "),
            json!("K1"),
            json!(""),
            json!(1),
            json!(null),
        ] {
            let token = with_header(&key, json!({"alg": "ES256", "typ": TYP, "kid": kid}));
            assert_eq!(
                verifier.verify(&token, &expect()),
                Err(ReceiptError::UnknownKey),
                "{kid}"
            );
        }
        let token = with_header(&key, json!({"alg": "ES256", "typ": TYP}));
        assert_eq!(
            verifier.verify(&token, &expect()),
            Err(ReceiptError::UnknownKey)
        );
    }

    #[test]
    fn signature_encodings() {
        let (key, verifier) = setup();
        let token = sign(&claims(), &key.clone().into(), KID).unwrap();
        let sig = signature_of(&token);
        let raw = sig.to_bytes().to_vec();
        let (r, s) = sig.split_scalars();
        let high_s = Signature::from_scalars(r, -s).unwrap();
        assert!(high_s.normalize_s().is_some());
        let r_bytes = raw[..32].to_vec();
        let s_bytes = raw[32..].to_vec();
        for (what, bad) in [
            ("r = 0", [&[0; 32][..], &s_bytes].concat()),
            ("s = 0", [&r_bytes[..], &[0; 32]].concat()),
            ("r = n", [&N[..], &s_bytes].concat()),
            ("s = n", [&r_bytes[..], &N].concat()),
            ("all ones", vec![0xff; 64]),
            ("high S", high_s.to_bytes().to_vec()),
            ("DER", sig.to_der().as_bytes().to_vec()),
            ("63 bytes", raw[..63].to_vec()),
            ("65 bytes", [&raw[..], &[0]].concat()),
            ("65 bytes, leading zero", [&[0], &raw[..]].concat()),
            ("another key", {
                let other: Signature = new_key().sign(token.rsplit_once('.').unwrap().0.as_bytes());
                other.normalize_s().unwrap_or(other).to_bytes().to_vec()
            }),
        ] {
            assert_eq!(
                verifier.verify(&with_signature(&token, &bad), &expect()),
                Err(ReceiptError::BadSignature),
                "{what}"
            );
        }
        assert!(verifier
            .verify(&with_signature(&token, &raw), &expect())
            .is_ok());
    }

    #[test]
    fn tampered_payload() {
        let (key, verifier) = setup();
        let token = sign(&claims(), &key.clone().into(), KID).unwrap();
        let mut c = claims();
        c.aud = "admin-console".into();
        let (h, rest) = token.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let tampered = format!("{h}.{}.{s}", b64(&serde_json::to_vec(&c).unwrap()));
        assert_eq!(
            verifier.verify(&tampered, &expect()),
            Err(ReceiptError::BadSignature)
        );
        // The same kid held by another key, as after a botched rotation.
        let impostor = Verifier::from_keys([(KID.to_string(), *new_key().verifying_key())]);
        assert_eq!(
            impostor.verify(&token, &expect()),
            Err(ReceiptError::BadSignature)
        );
    }

    #[test]
    fn issuer_and_audience() {
        let (key, verifier) = setup();
        let token = sign(&claims(), &key.clone().into(), KID).unwrap();
        for (iss, aud, err) in [
            ("https://evil.example", AUD, ReceiptError::WrongIssuer),
            (
                "https://approve.example.com/",
                AUD,
                ReceiptError::WrongIssuer,
            ),
            (ISS, "admin-console", ReceiptError::WrongAudience),
            (ISS, "payments-service ", ReceiptError::WrongAudience),
        ] {
            let e = Expect {
                issuer: Some(iss),
                audience: Some(aud),
                ..expect()
            };
            assert_eq!(verifier.verify(&token, &e), Err(err));
        }
    }

    #[test]
    fn expiry_with_leeway() {
        let (key, verifier) = setup();
        let token = sign(&claims(), &key.clone().into(), KID).unwrap();
        let at = |now: i64, leeway: i64| {
            verifier
                .verify(
                    &token,
                    &Expect {
                        now,
                        leeway,
                        ..expect()
                    },
                )
                .map(|_| ())
        };
        let exp = NOW + 300;
        assert_eq!(at(exp - 1, 0), Ok(()));
        assert_eq!(at(exp, 0), Err(ReceiptError::Expired));
        assert_eq!(at(exp + 29, DEFAULT_LEEWAY), Ok(()));
        assert_eq!(at(exp + 30, DEFAULT_LEEWAY), Err(ReceiptError::Expired));
        // Saturating, not overflowing.
        assert_eq!(at(i64::MAX, i64::MAX), Err(ReceiptError::Expired));
    }

    #[test]
    fn not_yet_valid() {
        let (key, verifier) = setup();
        let at = |c: &Claims, now: i64| {
            let token = sign(c, &key.clone().into(), KID).unwrap();
            verifier
                .verify(&token, &Expect { now, ..expect() })
                .map(|_| ())
        };
        let later = Claims {
            nbf: NOW + 100,
            ..claims()
        };
        assert_eq!(at(&later, NOW + 70), Ok(()));
        assert_eq!(at(&later, NOW + 69), Err(ReceiptError::NotYetValid));
        let issued_later = Claims {
            iat: NOW + 100,
            ..claims()
        };
        assert_eq!(at(&issued_later, NOW + 70), Ok(()));
        assert_eq!(at(&issued_later, NOW + 69), Err(ReceiptError::NotYetValid));
    }

    #[test]
    fn exp_must_follow_nbf() {
        let (key, verifier) = setup();
        for exp in [NOW, NOW - 1] {
            let mut payload = serde_json::to_value(claims()).unwrap();
            payload["exp"] = json!(exp);
            let e = Expect {
                now: NOW - 1,
                ..expect()
            };
            assert!(matches!(
                verifier.verify(&with_payload(&key, payload), &e),
                Err(ReceiptError::InvalidClaims(_))
            ));
        }
    }

    #[test]
    fn claims_must_match_the_format() {
        let (key, verifier) = setup();
        let refusal =
            |payload: Value| match verifier.verify(&with_payload(&key, payload), &expect()) {
                Err(ReceiptError::InvalidClaims(why)) => why,
                other => panic!("{other:?}"),
            };
        let mut missing = serde_json::to_value(claims()).unwrap();
        missing.as_object_mut().unwrap().remove("txh");
        assert!(refusal(missing).contains("`txh`"));
        let mut extra = serde_json::to_value(claims()).unwrap();
        extra["admin"] = json!(true);
        assert!(refusal(extra).contains("`admin`"));
        let mut nested = serde_json::to_value(claims()).unwrap();
        nested["apv"][0]["ev"]["extra"] = json!("x");
        assert!(refusal(nested).contains("`extra`"));
        let mut float = serde_json::to_value(claims()).unwrap();
        float["exp"] = json!(1.795e9);
        refusal(float);
        let mut bad_txh = serde_json::to_value(claims()).unwrap();
        bad_txh["txh"] = json!(format!("{TXH}="));
        assert!(refusal(bad_txh).contains("txh"));
        let as_array = Value::Array(
            serde_json::to_value(claims())
                .unwrap()
                .as_object()
                .unwrap()
                .values()
                .cloned()
                .collect(),
        );
        refusal(as_array);
        // serde's derive refuses a repeated claim rather than keeping one of the two.
        let header = r#"{"alg":"ES256","typ":"countersign-receipt+jwt","kid":"k1"}"#;
        let json = serde_json::to_string(&claims()).unwrap();
        let twice = json.replacen('{', r#"{"aud":"admin-console","#, 1);
        assert!(matches!(
            verifier.verify(&raw_token(&key, header, &twice), &expect()),
            Err(ReceiptError::InvalidClaims(why)) if why.contains("duplicate field `aud`")
        ));
    }

    #[test]
    fn transaction_mismatch() {
        let (key, verifier) = setup();
        let token = sign(&claims(), &key.clone().into(), KID).unwrap();
        for other in [OTHER_TXH, "", &TXH.to_lowercase()] {
            let e = Expect {
                tx_hash: Some(other),
                ..expect()
            };
            assert_eq!(
                verifier.verify(&token, &e),
                Err(ReceiptError::TransactionMismatch)
            );
        }
    }

    #[test]
    fn error_codes() {
        assert_eq!(ReceiptError::Expired.code(), "receipt_expired");
        assert_eq!(ReceiptError::WrongAudience.code(), "wrong_audience");
        assert_eq!(
            ReceiptError::TransactionMismatch.code(),
            "transaction_mismatch"
        );
        for other in [
            ReceiptError::Malformed("x"),
            ReceiptError::UnsupportedAlgorithm,
            ReceiptError::WrongType,
            ReceiptError::ForbiddenHeader("jku".into()),
            ReceiptError::UnknownKey,
            ReceiptError::BadSignature,
            ReceiptError::NotYetValid,
            ReceiptError::WrongIssuer,
            ReceiptError::InvalidClaims("x".into()),
            ReceiptError::Evidence {
                approver: "a".into(),
                reason: "b".into(),
            },
            ReceiptError::InvalidJwks("x".into()),
        ] {
            assert_eq!(other.code(), "invalid_receipt", "{other}");
        }
    }

    #[test]
    fn jwks_round_trip() {
        let (key, _) = setup();
        let other = new_key();
        let mut bare = jwk_for(other.verifying_key(), "k2");
        for member in ["alg", "use"] {
            bare.as_object_mut().unwrap().remove(member);
        }
        let skipped = |name: &str, value: Value| {
            let mut k = jwk_for(new_key().verifying_key(), name);
            k[name] = value;
            k
        };
        let jwks = json!({"keys": [
            jwk_for(key.verifying_key(), KID),
            bare,
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "AA"},
            skipped("alg", json!("ES384")),
            skipped("use", json!("enc")),
            {"kty": "EC", "crv": "P-256", "x": bare_xy(&other).0, "y": bare_xy(&other).1},
        ]});
        let verifier = Verifier::from_jwks(&jwks).unwrap();
        assert_eq!(verifier.kids(), vec![KID.to_string(), "k2".to_string()]);
        let token = sign(&claims(), &key.clone().into(), KID).unwrap();
        assert!(verifier.verify(&token, &expect()).is_ok());
        let token = sign(&claims(), &other.clone().into(), "k2").unwrap();
        assert!(verifier.verify(&token, &expect()).is_ok());
        let jwk = jwk_for(key.verifying_key(), KID);
        assert_eq!(
            jwk.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["alg", "crv", "kid", "kty", "use", "x", "y"]
        );
        assert!(Verifier::from_jwks(&json!({"keys": []}))
            .unwrap()
            .kids()
            .is_empty());
    }

    fn bare_xy(key: &SigningKey) -> (String, String) {
        let jwk = jwk_for(key.verifying_key(), "");
        (
            jwk["x"].as_str().unwrap().into(),
            jwk["y"].as_str().unwrap().into(),
        )
    }

    #[test]
    fn jwks_refusals() {
        let key = new_key();
        let good = jwk_for(key.verifying_key(), KID);
        let mut private = jwk_for(new_key().verifying_key(), "k2");
        private["d"] = json!(b64(&new_key().to_bytes()));
        let mut off_curve = good.clone();
        off_curve["y"] = json!(b64(&[1; 32]));
        for jwks in [
            json!({"keys": [good, private]}),
            json!({"keys": [good, {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB", "d": "AQ"}]}),
            json!({"keys": [good, {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}),
            json!({"keys": [good, good]}),
            json!({"keys": [good, jwk_for(new_key().verifying_key(), KID)]}),
            json!({"keys": [good, {"kty": "RSA", "kid": KID, "n": "AQAB", "e": "AQAB"}]}),
            json!({"keys": [off_curve]}),
            json!({"keys": [good, "not a key"]}),
            json!({"keys": {}}),
            json!([good]),
            json!({}),
        ] {
            assert!(
                matches!(
                    Verifier::from_jwks(&jwks),
                    Err(ReceiptError::InvalidJwks(_))
                ),
                "{jwks}"
            );
        }
    }

    #[test]
    fn evidence_verifies() {
        let c = claims();
        assert_eq!(verify_evidence(&c), Ok(1));
        // Any case of the UUID names the same approval.
        let upper = Claims {
            sub: ID.to_uppercase(),
            ..c.clone()
        };
        assert_eq!(verify_evidence(&upper), Ok(1));
        // The RP ID ignores the port and the case of the host.
        let with_port = Claims {
            iss: "https://APPROVE.example.com:443".into(),
            ..c
        };
        assert_eq!(verify_evidence(&with_port), Ok(1));
    }

    #[test]
    fn evidence_tampered() {
        let tamper = |edit: &dyn Fn(&mut Evidence)| {
            let mut c = claims();
            edit(&mut c.apv[0].ev);
            evidence_refusal(&c)
        };
        let bad_signature = AssertionError::BadSignature.to_string();
        let flip_last = |b64_text: &mut String| {
            let mut bytes = unb64(b64_text).unwrap();
            *bytes.last_mut().unwrap() ^= 1;
            *b64_text = b64(&bytes);
        };
        assert_eq!(tamper(&|ev| flip_last(&mut ev.ad)), bad_signature);
        assert_eq!(tamper(&|ev| flip_last(&mut ev.sig)), bad_signature);
        assert_eq!(
            tamper(&|ev| {
                let mut ad = unb64(&ev.ad).unwrap();
                ad[0] ^= 1;
                ev.ad = b64(&ad);
            }),
            AssertionError::RpIdMismatch.to_string()
        );
        assert_eq!(
            tamper(&|ev| {
                let mut cd: Value = serde_json::from_slice(&unb64(&ev.cd).unwrap()).unwrap();
                cd["crossOrigin"] = json!(false);
                ev.cd = b64(cd.to_string().as_bytes());
            }),
            bad_signature
        );
        assert_eq!(
            tamper(&|ev| ev.jwk = jwk_for(new_key().verifying_key(), "x")),
            bad_signature
        );
    }

    #[test]
    fn evidence_for_something_else() {
        let refusal = |ceremony: Ceremony| {
            let mut c = claims();
            c.apv[0].ev = evidence(ceremony);
            evidence_refusal(&c)
        };
        let challenge = AssertionError::ChallengeMismatch.to_string();
        assert_eq!(
            refusal(Ceremony {
                stated_nonce: Some([9; 32]),
                ..Ceremony::default()
            }),
            challenge
        );
        assert_eq!(
            refusal(Ceremony {
                decision: Decision::Reject,
                ..Ceremony::default()
            }),
            challenge
        );
        assert_eq!(
            refusal(Ceremony {
                flags: 0x01,
                ..Ceremony::default()
            }),
            AssertionError::UserNotVerified.to_string()
        );
        assert_eq!(
            refusal(Ceremony {
                origin: "https://evil.example",
                ..Ceremony::default()
            }),
            AssertionError::OriginMismatch.to_string()
        );
        // Evidence made for another approval or transaction does not move to this one.
        let c = Claims {
            sub: "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e60".into(),
            ..claims()
        };
        assert_eq!(evidence_refusal(&c), challenge);
        let c = Claims {
            txh: OTHER_TXH.into(),
            ..claims()
        };
        assert_eq!(evidence_refusal(&c), challenge);
        let c = Claims {
            iss: "https://other.example.com".into(),
            ..claims()
        };
        assert_eq!(
            evidence_refusal(&c),
            AssertionError::OriginMismatch.to_string()
        );
    }

    #[test]
    fn evidence_refusals_of_the_list() {
        let mut c = claims();
        c.apv.clear();
        assert!(matches!(
            verify_evidence(&c),
            Err(ReceiptError::InvalidClaims(_))
        ));

        let mut c = claims();
        let mut again = approver("u-bob", evidence(Ceremony::default()));
        again.cred = "other".into();
        c.apv.push(again);
        assert!(evidence_refusal(&c).contains("more than once"));

        let mut c = claims();
        let mut same_cred = approver("u-erin", evidence(Ceremony::default()));
        same_cred.cred.clone_from(&c.apv[0].cred);
        c.apv.push(same_cred);
        assert!(evidence_refusal(&c).contains("credential"));

        let mut c = claims();
        let mut same_key = c.apv[0].clone();
        same_key.sub = "u-erin".into();
        same_key.cred = "other".into();
        c.apv.push(same_key);
        assert!(evidence_refusal(&c).contains("passkey"));

        let mut c = claims();
        c.apv[0].uv = false;
        assert!(evidence_refusal(&c).contains("uv"));

        let mut c = claims();
        c.apv[0].ev.n = b64(&[1; 31]);
        assert!(evidence_refusal(&c).contains("n is not"));

        let mut c = claims();
        c.apv[0].ev.jwk["d"] = json!(b64(&[1; 32]));
        assert_eq!(evidence_refusal(&c), AssertionError::BadKey.to_string());

        for (sub, txh, iss) in [
            ("3f1c2d4e5a6b4c7d8e9f0a1b2c3d4e5f", TXH, ISS),
            (ID, "short", ISS),
            (ID, TXH, "approve.example.com"),
            (ID, TXH, "https://"),
        ] {
            let c = Claims {
                sub: sub.into(),
                txh: txh.into(),
                iss: iss.into(),
                ..claims()
            };
            assert!(
                matches!(verify_evidence(&c), Err(ReceiptError::InvalidClaims(_))),
                "{sub} {txh} {iss}"
            );
        }
    }

    #[test]
    fn evidence_refuses_approvals_outside_the_stages() {
        let mut c = claims();
        c.apv[0].stage = "security".into();
        assert!(matches!(
            verify_evidence(&c),
            Err(ReceiptError::InvalidClaims(m)) if m.contains("pol.stages does not list")
        ));
        let mut c = claims();
        c.pol.stages.push("security".into());
        assert!(matches!(
            verify_evidence(&c),
            Err(ReceiptError::InvalidClaims(m)) if m.contains("\"security\" has no approval")
        ));
        let mut c = claims();
        c.pol.stages.clear();
        c.apv[0].stage = String::new();
        assert_eq!(verify_evidence(&c), Ok(1), "a receipt made before stages");
    }

    #[test]
    fn rp_id_of_origins() {
        for (origin, rp_id) in [
            ("https://approve.example.com", Some("approve.example.com")),
            (
                "https://Approve.Example.com:8443/",
                Some("approve.example.com"),
            ),
            ("http://localhost:8080", Some("localhost")),
            ("http://[::1]:8080", Some("[::1]")),
            ("https://", None),
            ("approve.example.com", None),
        ] {
            assert_eq!(rp_id_of(origin).as_deref(), rp_id, "{origin}");
        }
    }

    #[test]
    fn uuid_parsing() {
        assert_eq!(
            parse_uuid("00010203-0405-0607-0809-0a0b0c0d0e0F"),
            Some(std::array::from_fn(|i| i as u8))
        );
        for bad in [
            "",
            "3f1c2d4e5a6b4c7d8e9f0a1b2c3d4e5f",
            "{3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f}",
            "urn:uuid:3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5",
            "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f0",
            "3f1c2d4e-5a6b4-c7d-8e9f-0a1b2c3d4e5f",
            "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5g",
            "+f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4é",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    fn hyphenated(bytes: &[u8; 16]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    /// One receipt for the property test; signing per case would dominate its run time.
    fn shared() -> &'static (String, Verifier) {
        static SHARED: std::sync::OnceLock<(String, Verifier)> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let (key, verifier) = setup();
            (sign(&claims(), &key.clone().into(), KID).unwrap(), verifier)
        })
    }

    proptest! {
        #[test]
        fn uuid_round_trip(bytes in any::<[u8; 16]>()) {
            let text = hyphenated(&bytes);
            prop_assert_eq!(parse_uuid(&text), Some(bytes));
            prop_assert_eq!(parse_uuid(&text.to_uppercase()), Some(bytes));
        }

        #[test]
        fn any_changed_character_is_refused(
            at in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_.=+/-]",
        ) {
            let (token, verifier) = shared();
            let at = at.index(token.len());
            prop_assume!(token.get(at..=at) != Some(replacement.as_str()));
            let changed = format!("{}{replacement}{}", &token[..at], &token[at + 1..]);
            prop_assert!(verifier.verify(&changed, &expect()).is_err());
        }
    }
}

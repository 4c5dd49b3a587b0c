//! WebAuthn assertion verification (Level 3 §7.2) for ES256 credentials.
//!
//! The server checks assertions itself instead of through its WebAuthn
//! library because the challenge has to be derived from the transaction (see
//! `challenge`), and receipts carry the assertion so that anyone with only the
//! `verify` feature can check it again offline.
//!
//! This starts once the credential is known and allowed: allowCredentials,
//! ownership and the signature-counter policy stay with the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::EncodedPoint;
use sha2::{Digest, Sha256};

const FLAG_UP: u8 = 1 << 0;
const FLAG_UV: u8 = 1 << 2;
const FLAG_BE: u8 = 1 << 3;
const FLAG_BS: u8 = 1 << 4;
const FLAG_AT: u8 = 1 << 6;
const FLAG_ED: u8 = 1 << 7;

/// rpIdHash (32) + flags (1) + signCount (4).
const AUTH_DATA_MIN_LEN: usize = 37;

/// A P-256 public key (COSE alg -7), from the credential's raw coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Es256Key {
    key: VerifyingKey,
    // Kept beside the key so reading them back has no failure path.
    x: [u8; 32],
    y: [u8; 32],
}

impl Es256Key {
    pub fn from_xy(x: &[u8], y: &[u8]) -> Result<Es256Key, AssertionError> {
        let x: [u8; 32] = x.try_into().map_err(|_| AssertionError::BadKey)?;
        let y: [u8; 32] = y.try_into().map_err(|_| AssertionError::BadKey)?;
        let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        // Refuses coordinates outside the field and points off the curve, which
        // would otherwise open invalid-curve attacks on verification.
        let key = VerifyingKey::from_encoded_point(&point).map_err(|_| AssertionError::BadKey)?;
        Ok(Es256Key { key, x, y })
    }

    pub fn x(&self) -> [u8; 32] {
        self.x
    }

    pub fn y(&self) -> [u8; 32] {
        self.y
    }

    /// RFC 7517 JWK: {"kty":"EC","crv":"P-256","x":b64url,"y":b64url}
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(self.x),
            "y": URL_SAFE_NO_PAD.encode(self.y),
        })
    }

    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Es256Key, AssertionError> {
        let members = jwk.as_object().ok_or(AssertionError::BadKey)?;
        let text = |name: &str| members.get(name).and_then(serde_json::Value::as_str);
        if text("kty") != Some("EC") || text("crv") != Some("P-256") {
            return Err(AssertionError::BadKey);
        }
        // A private key has no business here; accepting one would hide a leak.
        if members.contains_key("d") {
            return Err(AssertionError::BadKey);
        }
        // A key declared for another algorithm must not be used for ES256.
        if members.get("alg").is_some_and(|alg| *alg != "ES256") {
            return Err(AssertionError::BadKey);
        }
        let coordinate = |name: &str| {
            text(name)
                .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
                .ok_or(AssertionError::BadKey)
        };
        Es256Key::from_xy(&coordinate("x")?, &coordinate("y")?)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Raw bytes the clientDataJSON.challenge must decode (base64url, no padding) to.
    pub challenge: &'a [u8],
    /// The server's public origin, e.g. "https://approve.example.com".
    pub origin: &'a str,
    pub rp_id: &'a str,
    pub require_user_verification: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub counter: u32,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("malformed assertion: {0}")]
    Malformed(&'static str),
    #[error("clientDataJSON.type is not \"webauthn.get\"")]
    WrongType,
    #[error("the assertion answers another challenge")]
    ChallengeMismatch,
    #[error("the assertion was made on another origin")]
    OriginMismatch,
    #[error("the assertion was made inside a cross-origin frame")]
    CrossOrigin,
    #[error("the assertion is scoped to another relying party ID")]
    RpIdMismatch,
    #[error("the authenticator did not test user presence")]
    UserNotPresent,
    #[error("the authenticator did not verify the user")]
    UserNotVerified,
    #[error("the assertion's signature does not verify")]
    BadSignature,
    #[error("not a valid P-256 public key")]
    BadKey,
}

/// Parsed clientDataJSON members the server logs/stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    pub type_: String,
    pub challenge: String,
    pub origin: String,
    pub cross_origin: Option<bool>,
}

pub fn parse_client_data(client_data_json: &[u8]) -> Result<ClientData, AssertionError> {
    let raw = RawClientData::parse(client_data_json)?;
    Ok(ClientData {
        type_: raw.type_,
        challenge: raw.challenge,
        origin: raw.origin,
        cross_origin: raw.cross_origin,
    })
}

/// clientDataJSON with the members verification needs but callers do not store.
#[derive(serde::Deserialize)]
struct RawClientData {
    #[serde(rename = "type")]
    type_: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin")]
    cross_origin: Option<bool>,
    #[serde(rename = "topOrigin")]
    top_origin: Option<String>,
}

impl RawClientData {
    fn parse(client_data_json: &[u8]) -> Result<RawClientData, AssertionError> {
        // Unknown members are allowed (browsers add some); a repeated member is
        // refused by serde, so no two readers can see different values.
        serde_json::from_slice(client_data_json).map_err(|_| {
            AssertionError::Malformed("clientDataJSON is not the expected JSON object")
        })
    }
}

/// `authenticator_data`, `client_data_json` and `signature` exactly as the
/// authenticator produced them (signature: ASN.1 DER ECDSA, as ES256 uses).
pub fn verify_assertion(
    key: &Es256Key,
    authenticator_data: &[u8],
    client_data_json: &[u8],
    signature: &[u8],
    expected: &Expected,
) -> Result<Verified, AssertionError> {
    let client = RawClientData::parse(client_data_json)?;
    // Keeps a registration response from passing as an assertion.
    if client.type_ != "webauthn.get" {
        return Err(AssertionError::WrongType);
    }
    let challenge = URL_SAFE_NO_PAD
        .decode(&client.challenge)
        .map_err(|_| AssertionError::ChallengeMismatch)?;
    if challenge != expected.challenge {
        return Err(AssertionError::ChallengeMismatch);
    }
    if !same_origin(&client.origin, expected.origin) {
        return Err(AssertionError::OriginMismatch);
    }
    // The approval page is never framed by another site, so an assertion made
    // in a cross-origin frame was gathered by someone else's page.
    if client.cross_origin == Some(true) || client.top_origin.is_some() {
        return Err(AssertionError::CrossOrigin);
    }

    let auth = AuthData::parse(authenticator_data)?;
    if auth.rp_id_hash[..] != Sha256::digest(expected.rp_id.as_bytes())[..] {
        return Err(AssertionError::RpIdMismatch);
    }
    if auth.flags & FLAG_UP == 0 {
        return Err(AssertionError::UserNotPresent);
    }
    let user_verified = auth.flags & FLAG_UV != 0;
    if expected.require_user_verification && !user_verified {
        return Err(AssertionError::UserNotVerified);
    }
    let backup_eligible = auth.flags & FLAG_BE != 0;
    let backup_state = auth.flags & FLAG_BS != 0;
    if backup_state && !backup_eligible {
        return Err(AssertionError::Malformed(
            "backup state without eligibility",
        ));
    }
    if auth.flags & FLAG_AT != 0 {
        return Err(AssertionError::Malformed(
            "attested credential data in an assertion",
        ));
    }
    // Extensions are not requested, so their content is not read; the layout
    // is still checked so nothing unsigned-for can ride along unnoticed.
    match (auth.flags & FLAG_ED != 0, auth.extensions.is_empty()) {
        (false, false) => {
            return Err(AssertionError::Malformed(
                "trailing bytes after authenticator data",
            ))
        }
        (true, true) => {
            return Err(AssertionError::Malformed(
                "extension flag set without extensions",
            ))
        }
        _ => {}
    }

    let signature = Signature::from_der(signature).map_err(|_| AssertionError::BadSignature)?;
    // WebAuthn does not demand low-S and authenticators emit both forms.
    // p256 0.13 accepts high-S as it is; normalising keeps that true should a
    // later release enforce low-S. The cost is malleability: one assertion has
    // two valid signature byte strings, so never recognise a replay by them.
    let signature = signature.normalize_s().unwrap_or(signature);
    let signed = [authenticator_data, &Sha256::digest(client_data_json)].concat();
    if !crate::es256::verify(&key.key, &signed, &signature) {
        return Err(AssertionError::BadSignature);
    }

    Ok(Verified {
        counter: auth.counter,
        user_verified,
        backup_eligible,
        backup_state,
    })
}

struct AuthData<'a> {
    rp_id_hash: &'a [u8; 32],
    flags: u8,
    counter: u32,
    extensions: &'a [u8],
}

impl<'a> AuthData<'a> {
    fn parse(bytes: &'a [u8]) -> Result<AuthData<'a>, AssertionError> {
        const SHORT: AssertionError =
            AssertionError::Malformed("authenticator data is shorter than 37 bytes");
        if bytes.len() < AUTH_DATA_MIN_LEN {
            return Err(SHORT);
        }
        let (rp_id_hash, rest) = bytes.split_first_chunk::<32>().ok_or(SHORT)?;
        let (&flags, rest) = rest.split_first().ok_or(SHORT)?;
        let (counter, extensions) = rest.split_first_chunk::<4>().ok_or(SHORT)?;
        Ok(AuthData {
            rp_id_hash,
            flags,
            counter: u32::from_be_bytes(*counter),
            extensions,
        })
    }
}

/// Compares origins as (scheme, host, port) after normalising default ports
/// (http 80, https 443) and host case. Only the serialisation of an http(s)
/// origin is accepted: anything with a path, userinfo, query or fragment, or
/// any other scheme, is unequal to everything, so a misconfigured expected
/// origin fails every assertion instead of being quietly reduced.
pub fn same_origin(a: &str, b: &str) -> bool {
    match (Origin::parse(a), Origin::parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[derive(PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(s: &str) -> Option<Origin> {
        let (scheme, authority) = s.split_once("://")?;
        // An empty path ("https://a.example/") names the same origin; some clients serialise
        // the origin as a URL and add it. Any other path is refused.
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let (https, default_port) = if scheme.eq_ignore_ascii_case("https") {
            (true, 443)
        } else if scheme.eq_ignore_ascii_case("http") {
            (false, 80)
        } else {
            return None;
        };
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => default_port,
            Some(digits) => parse_port(digits)?,
        };
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// Characters that could start a path, query, fragment or userinfo make it
/// `None`. An IPv6 literal comes back without its brackets: it always holds a
/// ':', which no other host can, so the two kinds of host cannot collide.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']')?;
        let ipv6_char = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
        if !host.contains(':') || !host.chars().all(ipv6_char) {
            return None;
        }
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        return Some((host, port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || !host.chars().all(host_char) {
        return None;
    }
    Some((host, port))
}

fn parse_port(digits: &str) -> Option<u16> {
    // u16's parser would also take a leading '+'.
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use serde_json::{json, Value};

    const ORIGIN: &str = "https://approve.example.com";
    const RP_ID: &str = "approve.example.com";
    const CHALLENGE: [u8; 32] = [0x5a; 32];
    const ALL_FLAGS: u8 = FLAG_UP | FLAG_UV | FLAG_BE | FLAG_BS;

    fn expected(require_user_verification: bool) -> Expected<'static> {
        Expected {
            challenge: &CHALLENGE,
            origin: ORIGIN,
            rp_id: RP_ID,
            require_user_verification,
        }
    }

    fn signer() -> SigningKey {
        SigningKey::random(&mut rand::rngs::OsRng)
    }

    fn key_of(signer: &SigningKey) -> Es256Key {
        let point = signer.verifying_key().to_encoded_point(false);
        Es256Key::from_xy(point.x().unwrap(), point.y().unwrap()).unwrap()
    }

    fn auth_data(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
        let mut out = Sha256::digest(rp_id.as_bytes()).to_vec();
        out.push(flags);
        out.extend_from_slice(&counter.to_be_bytes());
        out
    }

    fn client(origin: &str) -> Value {
        json!({
            "type": "webauthn.get",
            "challenge": URL_SAFE_NO_PAD.encode(CHALLENGE),
            "origin": origin,
            "crossOrigin": false,
        })
    }

    fn sign(signer: &SigningKey, auth: &[u8], client_json: &[u8]) -> Signature {
        let mut msg = auth.to_vec();
        msg.extend_from_slice(&Sha256::digest(client_json));
        signer.sign(&msg)
    }

    struct Assertion {
        key: Es256Key,
        auth: Vec<u8>,
        client: Vec<u8>,
        sig: Vec<u8>,
    }

    impl Assertion {
        fn new(auth: Vec<u8>, client: &Value) -> Assertion {
            let signer = signer();
            let client = serde_json::to_vec(client).unwrap();
            let sig = sign(&signer, &auth, &client).to_der().as_bytes().to_vec();
            Assertion {
                key: key_of(&signer),
                auth,
                client,
                sig,
            }
        }

        fn with_client(client: &Value) -> Assertion {
            Assertion::new(auth_data(RP_ID, ALL_FLAGS, 7), client)
        }

        fn with_flags(flags: u8) -> Assertion {
            Assertion::new(auth_data(RP_ID, flags, 7), &client(ORIGIN))
        }

        fn verify(&self, expected: &Expected) -> Result<Verified, AssertionError> {
            verify_assertion(&self.key, &self.auth, &self.client, &self.sig, expected)
        }
    }

    #[test]
    fn valid_assertion_verifies() {
        let a = Assertion::new(auth_data(RP_ID, ALL_FLAGS, 0x0102_0304), &client(ORIGIN));
        assert_eq!(
            a.verify(&expected(true)),
            Ok(Verified {
                counter: 0x0102_0304,
                user_verified: true,
                backup_eligible: true,
                backup_state: true,
            })
        );

        let a = Assertion::with_flags(FLAG_UP);
        assert_eq!(
            a.verify(&expected(false)),
            Ok(Verified {
                counter: 7,
                user_verified: false,
                backup_eligible: false,
                backup_state: false,
            })
        );
    }

    #[test]
    fn localhost_over_http_verifies() {
        let origin = "http://localhost:8080";
        let a = Assertion::new(auth_data("localhost", FLAG_UP, 1), &client(origin));
        let expected = Expected {
            challenge: &CHALLENGE,
            origin,
            rp_id: "localhost",
            require_user_verification: false,
        };
        assert!(a.verify(&expected).is_ok());
    }

    #[test]
    fn wrong_type_is_refused() {
        let mut c = client(ORIGIN);
        c["type"] = json!("webauthn.create");
        assert_eq!(
            Assertion::with_client(&c).verify(&expected(true)),
            Err(AssertionError::WrongType)
        );
    }

    #[test]
    fn other_challenge_is_refused() {
        let mut other = CHALLENGE;
        other[31] ^= 1;
        let padded = format!("{}=", URL_SAFE_NO_PAD.encode([1u8; 32]));
        for challenge in [URL_SAFE_NO_PAD.encode(other), padded, "not base64!".into()] {
            let mut c = client(ORIGIN);
            c["challenge"] = json!(challenge);
            assert_eq!(
                Assertion::with_client(&c).verify(&expected(true)),
                Err(AssertionError::ChallengeMismatch),
                "{challenge}"
            );
        }
    }

    #[test]
    fn other_origins_are_refused() {
        for origin in [
            "http://approve.example.com",
            "https://approve.example.com:8443",
            "https://approve.example.com.evil.test",
            "https://approve.example.com/login",
        ] {
            assert_eq!(
                Assertion::with_client(&client(origin)).verify(&expected(true)),
                Err(AssertionError::OriginMismatch),
                "{origin}"
            );
        }
    }

    #[test]
    fn equivalent_origins_are_accepted() {
        for origin in [
            "https://APPROVE.Example.com",
            "https://approve.example.com:443",
        ] {
            assert!(
                Assertion::with_client(&client(origin))
                    .verify(&expected(true))
                    .is_ok(),
                "{origin}"
            );
        }
    }

    #[test]
    fn cross_origin_is_refused() {
        let mut c = client(ORIGIN);
        c["crossOrigin"] = json!(true);
        assert_eq!(
            Assertion::with_client(&c).verify(&expected(true)),
            Err(AssertionError::CrossOrigin)
        );

        let mut c = client(ORIGIN);
        c["topOrigin"] = json!("https://evil.test");
        assert_eq!(
            Assertion::with_client(&c).verify(&expected(true)),
            Err(AssertionError::CrossOrigin)
        );
    }

    #[test]
    fn absent_cross_origin_and_unknown_members_are_fine() {
        let mut c = client(ORIGIN);
        if let Some(members) = c.as_object_mut() {
            members.remove("crossOrigin");
            members.insert("other_keys_can_be_added_here".into(), json!("x"));
        }
        assert!(Assertion::with_client(&c).verify(&expected(true)).is_ok());
    }

    #[test]
    fn other_rp_id_is_refused() {
        let a = Assertion::new(auth_data("example.com", ALL_FLAGS, 7), &client(ORIGIN));
        assert_eq!(a.verify(&expected(true)), Err(AssertionError::RpIdMismatch));
    }

    #[test]
    fn user_presence_is_required() {
        let a = Assertion::with_flags(FLAG_UV);
        assert_eq!(
            a.verify(&expected(false)),
            Err(AssertionError::UserNotPresent)
        );
    }

    #[test]
    fn user_verification_is_required_only_when_asked() {
        let a = Assertion::with_flags(FLAG_UP);
        assert_eq!(
            a.verify(&expected(true)),
            Err(AssertionError::UserNotVerified)
        );
        assert!(a.verify(&expected(false)).is_ok());
    }

    #[test]
    fn backup_state_without_eligibility_is_refused() {
        let a = Assertion::with_flags(FLAG_UP | FLAG_UV | FLAG_BS);
        assert_eq!(
            a.verify(&expected(true)),
            Err(AssertionError::Malformed(
                "backup state without eligibility"
            ))
        );
    }

    #[test]
    fn authenticator_data_layout_is_checked() {
        let short = Assertion::new(
            auth_data(RP_ID, ALL_FLAGS, 7)[..36].to_vec(),
            &client(ORIGIN),
        );
        assert!(matches!(
            short.verify(&expected(true)),
            Err(AssertionError::Malformed(_))
        ));

        let attested = Assertion::with_flags(ALL_FLAGS | FLAG_AT);
        assert!(matches!(
            attested.verify(&expected(true)),
            Err(AssertionError::Malformed(_))
        ));

        let mut trailing = auth_data(RP_ID, ALL_FLAGS, 7);
        trailing.push(0xa0);
        let trailing = Assertion::new(trailing, &client(ORIGIN));
        assert!(matches!(
            trailing.verify(&expected(true)),
            Err(AssertionError::Malformed(_))
        ));

        let empty_extensions = Assertion::with_flags(ALL_FLAGS | FLAG_ED);
        assert!(matches!(
            empty_extensions.verify(&expected(true)),
            Err(AssertionError::Malformed(_))
        ));

        // An empty CBOR map: extensions present, signed, and not read.
        let mut extended = auth_data(RP_ID, ALL_FLAGS | FLAG_ED, 7);
        extended.push(0xa0);
        assert!(Assertion::new(extended, &client(ORIGIN))
            .verify(&expected(true))
            .is_ok());
    }

    #[test]
    fn malformed_client_data_is_refused() {
        let mut a = Assertion::with_flags(ALL_FLAGS);
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{\"type\":\"webauthn.get\",\"origin\":\"https://approve.example.com\"}",
            b"{\"type\":\"webauthn.get\",\"type\":\"webauthn.get\",\"challenge\":\"\",\"origin\":\"\"}",
        ] {
            a.client = bad.to_vec();
            assert!(matches!(
                a.verify(&expected(true)),
                Err(AssertionError::Malformed(_))
            ));
        }
    }

    #[test]
    fn bad_signature_encodings_are_refused() {
        let mut a = Assertion::with_flags(ALL_FLAGS);
        let der = a.sig.clone();
        let raw = Signature::from_der(&der).unwrap().to_bytes().to_vec();
        for bad in [
            vec![],
            b"garbage".to_vec(),
            der[..der.len() - 1].to_vec(),
            [der.clone(), vec![0]].concat(),
            raw,
        ] {
            a.sig = bad;
            assert_eq!(a.verify(&expected(true)), Err(AssertionError::BadSignature));
        }
    }

    #[test]
    fn signature_by_another_key_is_refused() {
        let mut a = Assertion::with_flags(ALL_FLAGS);
        a.key = key_of(&signer());
        assert_eq!(a.verify(&expected(true)), Err(AssertionError::BadSignature));
    }

    #[test]
    fn tampered_authenticator_data_is_refused() {
        let mut a = Assertion::with_flags(ALL_FLAGS);
        a.auth[36] ^= 1;
        assert_eq!(a.verify(&expected(true)), Err(AssertionError::BadSignature));
    }

    #[test]
    fn tampered_client_data_is_refused() {
        let mut a = Assertion::with_flags(ALL_FLAGS);
        let mut c = client(ORIGIN);
        c["tokenBinding"] = json!({"status": "supported"});
        a.client = serde_json::to_vec(&c).unwrap();
        assert_eq!(a.verify(&expected(true)), Err(AssertionError::BadSignature));
    }

    #[test]
    fn high_s_signature_verifies() {
        let mut a = Assertion::with_flags(ALL_FLAGS);
        let sig = Signature::from_der(&a.sig).unwrap();
        let high = match sig.normalize_s() {
            // Already high: use it as it is.
            Some(_) => sig,
            None => {
                let (r, s) = sig.split_scalars();
                Signature::from_scalars(r, -*s).unwrap()
            }
        };
        assert!(
            high.normalize_s().is_some(),
            "test signature must be high-S"
        );
        a.sig = high.to_der().as_bytes().to_vec();
        assert!(a.verify(&expected(true)).is_ok());
    }

    #[test]
    fn parse_client_data_returns_members() {
        let a = Assertion::with_flags(ALL_FLAGS);
        assert_eq!(
            parse_client_data(&a.client),
            Ok(ClientData {
                type_: "webauthn.get".into(),
                challenge: URL_SAFE_NO_PAD.encode(CHALLENGE),
                origin: ORIGIN.into(),
                cross_origin: Some(false),
            })
        );
    }

    #[test]
    fn jwk_round_trip() {
        let key = key_of(&signer());
        let jwk = key.to_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk.as_object().map(|m| m.len()), Some(4));
        assert_eq!(Es256Key::from_jwk(&jwk), Ok(key.clone()));

        let mut with_alg = jwk.clone();
        with_alg["alg"] = json!("ES256");
        assert_eq!(Es256Key::from_jwk(&with_alg), Ok(key));
    }

    #[test]
    fn bad_jwks_are_refused() {
        let signer = signer();
        let jwk = key_of(&signer).to_jwk();
        let with = |member: &str, value: Value| {
            let mut jwk = jwk.clone();
            jwk[member] = value;
            jwk
        };
        let without = |member: &str| {
            let mut jwk = jwk.clone();
            if let Some(m) = jwk.as_object_mut() {
                m.remove(member);
            }
            jwk
        };
        let private = URL_SAFE_NO_PAD.encode(signer.to_bytes());
        for bad in [
            with("d", json!(private)),
            with("kty", json!("RSA")),
            with("crv", json!("P-384")),
            with("alg", json!("ES384")),
            with("x", json!(URL_SAFE_NO_PAD.encode([1u8; 31]))),
            with("y", json!(URL_SAFE_NO_PAD.encode([1u8; 33]))),
            with(
                "x",
                json!(format!("{}=", URL_SAFE_NO_PAD.encode([1u8; 32]))),
            ),
            with("x", json!(7)),
            without("y"),
            json!("not an object"),
        ] {
            assert_eq!(
                Es256Key::from_jwk(&bad),
                Err(AssertionError::BadKey),
                "{bad}"
            );
        }
    }

    #[test]
    fn points_off_the_curve_are_refused() {
        let key = key_of(&signer());
        let mut y = key.y();
        y[31] ^= 1;
        assert_eq!(Es256Key::from_xy(&key.x(), &y), Err(AssertionError::BadKey));
        assert_eq!(
            Es256Key::from_xy(&[0; 32], &[0; 32]),
            Err(AssertionError::BadKey)
        );
        // Coordinates at or above the field prime.
        assert_eq!(
            Es256Key::from_xy(&[0xff; 32], &[0xff; 32]),
            Err(AssertionError::BadKey)
        );
        assert_eq!(
            Es256Key::from_xy(&key.x()[..31], &key.y()),
            Err(AssertionError::BadKey)
        );
        assert_eq!(Es256Key::from_xy(&key.x(), &key.y()), Ok(key));
    }

    #[test]
    fn origin_comparison() {
        let equal = [
            ("https://a.example", "https://a.example"),
            ("https://a.example:443", "https://a.example"),
            ("http://a.example:80", "http://a.example"),
            ("HTTPS://A.Example", "https://a.example"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://[::1]:443", "https://[::1]"),
            ("https://[FE80::1]", "https://[fe80::1]"),
            ("https://a.example:0443", "https://a.example"),
            ("https://a.example/", "https://a.example"),
            ("http://localhost:8080/", "http://localhost:8080"),
        ];
        for (a, b) in equal {
            assert!(same_origin(a, b), "{a} == {b}");
            assert!(same_origin(b, a), "{b} == {a}");
        }
        let unequal = [
            ("http://a.example", "https://a.example"),
            ("https://a.example:8443", "https://a.example"),
            ("http://a.example:443", "https://a.example"),
            ("https://a.example.evil.com", "https://a.example"),
            ("https://evil.com.a.example", "https://a.example"),
            ("https://a.example//", "https://a.example"),
            ("https://a.example/path", "https://a.example/path"),
            ("https://user@a.example", "https://user@a.example"),
            ("https://a.example?q", "https://a.example?q"),
            ("https://a.example#f", "https://a.example#f"),
            ("https://a.example:", "https://a.example:"),
            ("https://a.example:+443", "https://a.example"),
            ("https://a.example:99999", "https://a.example:99999"),
            ("https://", "https://"),
            ("https://[]", "https://[]"),
            ("https://[::1]x", "https://[::1]x"),
            ("https://[1.2.3.4]", "https://1.2.3.4"),
            ("https://[::1]", "https://[::2]"),
            ("ftp://a.example", "ftp://a.example"),
            ("null", "null"),
            ("a.example", "a.example"),
            ("", ""),
        ];
        for (a, b) in unequal {
            assert!(!same_origin(a, b), "{a} != {b}");
        }
    }
}

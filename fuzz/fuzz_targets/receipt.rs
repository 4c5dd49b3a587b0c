//! The receipt verifier on any token, with a published key and with a JWKS built from the
//! input itself: no panic, and nothing verifies without a valid signature by a listed key.
#![no_main]

use countersign::receipt::{Expect, Verifier};
use libfuzzer_sys::fuzz_target;

/// A P-256 public key (RFC 7517's example): the fuzzer cannot sign with it.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"k1",
  "x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let jwks: serde_json::Value = serde_json::from_str(JWKS).expect("the JWKS parses");
    let verifier = Verifier::from_jwks(&jwks).expect("a valid JWKS");
    let expect = Expect {
        issuer: None,
        audience: None,
        tx_hash: None,
        now: 1_800_000_000,
        leeway: 60,
    };
    assert!(
        verifier.verify(token, &expect).is_err(),
        "no token the fuzzer makes carries a valid signature"
    );
    // The input as a JWKS document: refused or accepted, never a panic.
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(v) = Verifier::from_jwks(&doc) {
            let _ = v.verify("a.b.c", &expect);
        }
    }
});

//! Public key decoding: raw coordinates (as a passkey's COSE key gives them) and JWKs (as
//! receipts carry approvers' keys). A key that decodes encodes back to itself.
#![no_main]

use countersign::assertion::Es256Key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let (x, y) = data.split_at(data.len() / 2);
        if let Ok(key) = Es256Key::from_xy(x, y) {
            assert_eq!((key.x().as_slice(), key.y().as_slice()), (x, y));
            let again = Es256Key::from_jwk(&key.to_jwk()).expect("its own JWK decodes");
            assert_eq!((again.x(), again.y()), (key.x(), key.y()));
        }
    }
    if let Ok(jwk) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(key) = Es256Key::from_jwk(&jwk) {
            let again = Es256Key::from_jwk(&key.to_jwk()).expect("its own JWK decodes");
            assert_eq!((again.x(), again.y()), (key.x(), key.y()));
        }
    }
});

//! WebAuthn assertion parsing and verification: clientDataJSON, authenticator data and the DER
//! signature as an attacker sends them, against a fixed key and challenge. No panic, and
//! nothing verifies without a signature by the key.
#![no_main]

use countersign::assertion::{parse_client_data, verify_assertion, Es256Key, Expected};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Three parts, each prefixed by its length (two bytes, big endian).
    let mut parts = Vec::new();
    let mut rest = data;
    for _ in 0..3 {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (part, tail) = tail.split_at(len);
        parts.push(part);
        rest = tail;
    }
    let [auth_data, client_data, signature] = parts[..] else {
        return;
    };
    let _ = parse_client_data(client_data);
    let x = [
        0x30, 0xa0, 0x42, 0x4c, 0xd2, 0x1c, 0x29, 0x44, 0x83, 0x8a, 0x2d, 0x75, 0xc9, 0x2b, 0x37,
        0xe7, 0x6e, 0xa2, 0x0d, 0x9f, 0x00, 0x89, 0x3a, 0x3b, 0x4e, 0xee, 0x8a, 0x3c, 0x0a, 0xaf,
        0xec, 0x3e,
    ];
    let y = [
        0xe0, 0x4b, 0x65, 0xe9, 0x24, 0x56, 0xd9, 0x88, 0x8b, 0x52, 0xb3, 0x79, 0xbd, 0xfb, 0xd5,
        0x1e, 0xe8, 0x69, 0xef, 0x1f, 0x0f, 0xc6, 0x5b, 0x66, 0x59, 0x69, 0x5b, 0x6c, 0xce, 0x08,
        0x17, 0x23,
    ];
    // RFC 7517's example key.
    let key = Es256Key::from_xy(&x, &y).expect("the fixed key is on the curve");
    let expected = Expected {
        challenge: b"0123456789abcdef0123456789abcdef",
        origin: "https://approve.example.com",
        rp_id: "approve.example.com",
        require_user_verification: true,
    };
    assert!(
        verify_assertion(&key, auth_data, client_data, signature, &expected).is_err(),
        "no assertion the fuzzer makes carries a valid signature"
    );
});

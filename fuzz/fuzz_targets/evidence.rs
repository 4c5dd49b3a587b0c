//! Evidence re-verification over any claims: each approver's passkey assertion checked against
//! its own key and the challenge derived from the receipt. No panic on any input.
#![no_main]

use countersign::receipt::{verify_evidence, Claims};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(claims) = serde_json::from_slice::<Claims>(data) {
        let _ = verify_evidence(&claims);
    }
});

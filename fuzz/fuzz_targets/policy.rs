//! The policy file parser (TOML, then every rule the server enforces on it): refused or
//! accepted, never a panic; an accepted policy evaluates any transaction without one.
#![no_main]

use countersign::domain::InitiatorType;
use countersign::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let tx = countersign::jcs::parse(br#"{"amount":"1250.00","currency":"EUR","to":"x"}"#)
        .expect("a transaction");
    for action in &policy.actions {
        let _ = action.evaluate(&tx, Some(50), InitiatorType::Agent);
        let _ = action.other_fields(&tx);
    }
});

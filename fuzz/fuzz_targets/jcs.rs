//! The strict JSON parser and RFC 8785 canonicaliser, differentially: canonical output parses
//! and canonicalises to itself, and where serde_json accepts the input
//! too, both give the same canonical text (countersign may refuse more: duplicate keys,
//! fractions, unsafe integers, lone surrogates, depth, serde_json's private keys).
#![no_main]

use countersign::jcs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = jcs::parse(data) else { return };
    let canonical = jcs::canonicalize(&value);
    // Members keep their input order in a value; the canonical text sorts them, so values are
    // compared through it.
    let again = jcs::parse(canonical.as_bytes()).expect("canonical output parses");
    assert_eq!(
        jcs::canonicalize(&again),
        canonical,
        "canonical output is canonical"
    );
    // countersign refuses keys in serde_json's private namespace (`$serde_json::private::…`),
    // which serde_json reads as the value they carry: the `serde-private-token` seed is one.
    let theirs: serde_json::Value =
        serde_json::from_slice(data).expect("serde_json accepts what countersign accepts");
    let mut via_serde = String::new();
    jcs::write_canonical_serde(&theirs, 0, &mut via_serde)
        .expect("serde_json's value canonicalises");
    assert_eq!(via_serde, canonical, "both parsers agree on the value");
});

//! The transaction hash over any bytes (a transaction as a client sends it), and the parser
//! of hashes as receipts and redemptions carry them.
#![no_main]

use countersign::tx_hash::TxHash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((hash, value)) = TxHash::of_json(data) {
        // The hash is of the canonical form: hashing that again gives the same.
        let canonical = countersign::jcs::canonicalize(&value);
        let (again, _) = TxHash::of_json(canonical.as_bytes()).expect("canonical form parses");
        assert_eq!(again, hash);
        assert_eq!(
            TxHash::parse(&hash.to_string()).expect("its own text parses"),
            hash
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(hash) = TxHash::parse(text) {
            assert_eq!(hash.to_string(), text, "one spelling per hash");
        }
    }
});

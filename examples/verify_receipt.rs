//! Downstream verification in Rust, with `countersign = { default-features = false,
//! features = ["verify"] }`: check a receipt offline before executing the transaction, then
//! redeem it (POST /v1/receipts/redeem) so it can never be used twice.
use countersign::receipt::{verify_evidence, Claims, Expect, Verifier, DEFAULT_LEEWAY};
use countersign::tx_hash::TxHash;

pub fn verify_receipt(
    jwks: &str,
    receipt: &str,
    transaction: &[u8],
    audience: &str,
    now: i64,
) -> Result<Claims, String> {
    let verifier = Verifier::from_jwks(&serde_json::from_str(jwks).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    // The hash of what we are about to execute, not of what the receipt says.
    let (tx_hash, _) = TxHash::of_json(transaction).map_err(|e| e.to_string())?;
    let tx_hash = tx_hash.to_string();
    let expect = Expect {
        issuer: None,
        audience: Some(audience),
        tx_hash: Some(&tx_hash),
        now,
        leeway: DEFAULT_LEEWAY,
    };
    let claims = verifier
        .verify(receipt, &expect)
        .map_err(|e| e.to_string())?;
    // Optional: re-check every approver's passkey signature over this exact transaction.
    verify_evidence(&claims).map_err(|e| e.to_string())?;
    Ok(claims)
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, jwks, receipt, tx, aud] = args.as_slice() else {
        eprintln!("usage: verify_receipt JWKS_FILE RECEIPT_FILE TX_FILE AUDIENCE");
        std::process::exit(2);
    };
    let read = |p: &str| {
        std::fs::read_to_string(p).unwrap_or_else(|e| {
            eprintln!("{p}: {e}");
            std::process::exit(2)
        })
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match verify_receipt(
        &read(jwks),
        read(receipt).trim(),
        read(tx).as_bytes(),
        aud,
        now,
    ) {
        Ok(c) => println!(
            "valid: {} {} approved by {} approver(s)",
            c.act,
            c.sub,
            c.apv.len()
        ),
        Err(e) => {
            eprintln!("invalid: {e}");
            std::process::exit(1);
        }
    }
}

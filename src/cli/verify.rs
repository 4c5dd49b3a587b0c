//! `countersign verify`: a receipt checked offline against a JWKS, a transaction and an
//! audience, with the same library a downstream service uses.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::json;

use super::{emit, VerifyArgs};
use crate::clock::Clock;

/// Offline verification: nothing is contacted except an http:// JWKS URL when given one.
pub(super) async fn verify(args: VerifyArgs, clock: &dyn Clock) -> anyhow::Result<ExitCode> {
    use crate::receipt::{verify_evidence, Expect, Verifier, DEFAULT_LEEWAY};
    let jwks_text = if args.jwks.starts_with("http://") || args.jwks.starts_with("https://") {
        fetch_jwks(&args.jwks).await?
    } else {
        std::fs::read_to_string(&args.jwks).with_context(|| format!("reading {}", args.jwks))?
    };
    let jwks: serde_json::Value =
        serde_json::from_str(&jwks_text).context("the JWKS is not JSON")?;
    let receipt = std::fs::read_to_string(&args.receipt)
        .with_context(|| format!("reading {}", args.receipt.display()))?;
    let tx = std::fs::read(&args.tx).with_context(|| format!("reading {}", args.tx.display()))?;
    let result = (|| {
        let (tx_hash, _) =
            crate::tx_hash::TxHash::of_json(&tx).map_err(|e| format!("the transaction: {e}"))?;
        let verifier = Verifier::from_jwks(&jwks).map_err(|e| e.to_string())?;
        let tx_hash = tx_hash.to_string();
        let expect = Expect {
            issuer: args.iss.as_deref(),
            audience: Some(&args.aud),
            tx_hash: Some(&tx_hash),
            now: args.now.unwrap_or_else(|| clock.now()),
            leeway: DEFAULT_LEEWAY,
        };
        let claims = verifier
            .verify(receipt.trim(), &expect)
            .map_err(|e| format!("{}: {e}", e.code()))?;
        let checked = if args.evidence {
            Some(verify_evidence(&claims).map_err(|e| format!("{}: {e}", e.code()))?)
        } else {
            None
        };
        Ok::<_, String>((claims, checked))
    })();
    match result {
        Ok((claims, checked)) => {
            emit(
                &args.out,
                json!({ "ok": true, "approval_id": claims.sub, "action": claims.act, "initiator": claims.ini, "stages": claims.pol.stages, "approvers": claims.apv.len(), "evidence_checked": checked }),
                || {
                    format!(
                        "valid: {} approval {} by {} approver(s){}",
                        claims.act,
                        claims.sub,
                        claims.apv.len(),
                        if checked.is_some() {
                            ", evidence re-verified"
                        } else {
                            ""
                        }
                    )
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            emit(&args.out, json!({ "ok": false, "error": reason }), || {
                format!("INVALID: {reason}")
            });
            Ok(ExitCode::from(1))
        }
    }
}

async fn fetch_jwks(url: &str) -> anyhow::Result<String> {
    // No TLS stack is built in (it would dominate build time); fetch https JWKS with curl and
    // pass the file.
    if !url.starts_with("http://") {
        bail!("only http:// JWKS URLs are fetched; save an https JWKS to a file (curl -o jwks.json URL) and pass the file");
    }
    let res = reqwest::get(url)
        .await
        .with_context(|| format!("fetching {url}"))?;
    if !res.status().is_success() {
        bail!("fetching {url}: HTTP {}", res.status());
    }
    Ok(res.text().await?)
}

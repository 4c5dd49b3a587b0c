//! `countersign audit verify | export`: the hash chain checked end to end, or exported as JSON
//! lines.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{emit, AuditCommand};
use crate::audit::ChainVerifier;
use crate::store::Store;

const AUDIT_BATCH: i64 = 1000;

pub(super) async fn run(store: &dyn Store, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { out } => {
            // Read the head first: appends after it only lengthen the chain beyond it.
            let (head_seq, head_hash) = store.audit_head().await?;
            let mut verifier = ChainVerifier::default();
            let mut after = 0;
            let result = loop {
                let page = store.audit_page(after, AUDIT_BATCH).await?;
                let Some(last) = page.last() else {
                    break verifier.finish(head_seq, &head_hash);
                };
                after = last.seq;
                if let Err(e) = page
                    .iter()
                    .filter(|e| e.seq <= head_seq)
                    .try_for_each(|e| verifier.push(e))
                {
                    break Err(e);
                }
                if after >= head_seq {
                    break verifier.finish(head_seq, &head_hash);
                }
            };
            match result {
                Ok(n) => {
                    emit(&out, json!({ "ok": true, "entries": n }), || {
                        format!("audit chain intact: {n} entries")
                    });
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    emit(&out, json!({ "ok": false, "error": e.to_string() }), || {
                        format!("audit chain BROKEN: {e}")
                    });
                    Ok(ExitCode::from(2))
                }
            }
        }
        AuditCommand::Export { after } => {
            let mut after = after;
            loop {
                let page = store.audit_page(after, AUDIT_BATCH).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for e in &page {
                    println!(
                        "{}",
                        serde_json::to_string(e).context("serialising an audit event")?
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! `countersign keys list | rotate | retire KID`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{emit, KeysCommand};
use crate::clock::rfc3339;
use crate::config::Config;
use crate::master_key::MasterKey;
use crate::service::provision::Provisioner;

pub(super) async fn run(
    ops: &Provisioner<'_>,
    config: &Config,
    cmd: KeysCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::List { out } => {
            let keys = ops.keys().await?;
            let signing = keys
                .iter()
                .rev()
                .find(|k| k.retired_at.is_none())
                .map(|k| k.kid.clone());
            let state = |k: &crate::store::SigningKeyRow| {
                if k.retired_at.is_some() {
                    "retired"
                } else if Some(&k.kid) == signing.as_ref() {
                    "signing"
                } else {
                    "published"
                }
            };
            let rows: Vec<_> = keys
                .iter()
                .map(|k| json!({ "kid": k.kid, "state": state(k), "created_at": rfc3339(k.created_at), "retired_at": k.retired_at.map(rfc3339) }))
                .collect();
            emit(&out, json!(rows), || {
                keys.iter()
                    .map(|k| format!("{}\t{}\t{}", k.kid, state(k), rfc3339(k.created_at)))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        KeysCommand::Rotate { out } => {
            let master = MasterKey::load(&config.master_key_file)?;
            let kid = ops
                .rotate(&crate::signing::Sealer::new(&master), false)
                .await?
                .context("the new key was not added")?;
            emit(&out, json!({ "kid": kid, "state": "signing" }), || {
                format!("new signing key {kid}")
            });
        }
        KeysCommand::Retire { kid, out } => {
            ops.retire(&kid).await?;
            emit(&out, json!({ "kid": kid, "state": "retired" }), || {
                format!("retired {kid}")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

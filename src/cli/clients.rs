//! `countersign clients create | list | revoke | webhook`.

use std::process::ExitCode;

use serde_json::json;

use super::{emit, ClientsCommand};
use crate::clock::rfc3339;
use crate::config::Config;
use crate::domain::Rights;
use crate::master_key::MasterKey;
use crate::service::provision::Provisioner;

pub(super) async fn run(
    ops: &Provisioner<'_>,
    config: &Config,
    cmd: ClientsCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        ClientsCommand::Create {
            name,
            create,
            redeem,
            audit,
            out,
        } => {
            let rights = Rights {
                create,
                redeem,
                audit,
            };
            let (client, key) = ops.create_client(&name, rights).await?;
            emit(
                &out,
                json!({ "name": client.name, "api_key": key, "rights": client.rights }),
                || format!("created client {name}; its API key (shown only now):\n{key}"),
            );
        }
        ClientsCommand::List { out } => {
            let list = ops.clients().await?;
            let rows: Vec<_> = list
                .iter()
                .map(|c| json!({ "name": c.name, "rights": c.rights, "created_at": rfc3339(c.created_at), "revoked_at": c.revoked_at.map(rfc3339) }))
                .collect();
            emit(&out, json!(rows), || {
                list.iter()
                    .map(|c| {
                        let state = if c.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        format!(
                            "{}\t{state}\tcreate={:?} redeem={:?} audit={}",
                            c.name, c.rights.create, c.rights.redeem, c.rights.audit
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ClientsCommand::Revoke { name, out } => {
            ops.revoke_client(&name).await?;
            emit(&out, json!({ "name": name, "revoked": true }), || {
                format!("revoked client {name}")
            });
        }
        ClientsCommand::Webhook {
            name,
            remove: true,
            out,
            ..
        } => {
            let removed = ops.remove_webhook(&name).await?;
            emit(&out, json!({ "name": name, "removed": removed }), || {
                if removed {
                    format!("removed the webhook of {name}")
                } else {
                    format!("{name} had no webhook")
                }
            });
        }
        ClientsCommand::Webhook {
            name,
            url,
            events,
            out,
            ..
        } => {
            let url = url.unwrap_or_default();
            let master = MasterKey::load(&config.master_key_file)?;
            let set = ops
                .set_webhook(
                    &crate::signing::Sealer::new(&master),
                    &name,
                    &url,
                    &events,
                    config.webhook_allow_private,
                )
                .await?;
            emit(
                &out,
                json!({ "name": name, "url": set.url, "secret": set.secret, "events": set.events }),
                || {
                    format!(
                        "webhook of {name}: {} ({})\nits signing secret (shown only now):\n{}",
                        set.url,
                        set.events.join(", "),
                        set.secret
                    )
                },
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

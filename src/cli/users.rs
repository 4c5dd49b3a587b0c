//! `countersign users invite | list | disable | groups | credentials | revoke-credential`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{emit, UsersCommand};
use crate::clock::rfc3339;
use crate::service::provision::Provisioner;

pub(super) async fn run(ops: &Provisioner<'_>, cmd: UsersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UsersCommand::Invite {
            username,
            name,
            groups,
            ttl,
            email,
            out,
        } => {
            let ttl = humantime::parse_duration(&ttl).with_context(|| format!("--ttl {ttl:?}"))?;
            let invite = ops
                .invite(
                    &username,
                    name.as_deref(),
                    &groups,
                    email.as_deref(),
                    crate::clock::secs(ttl),
                )
                .await?;
            let user = &invite.user.username;
            emit(
                &out,
                json!({ "user": user, "enroll_url": invite.url, "expires_at": rfc3339(invite.expires_at) }),
                || {
                    format!(
                        "enrolment link for {user} (one use, until {}):\n{}",
                        rfc3339(invite.expires_at),
                        invite.url
                    )
                },
            );
        }
        UsersCommand::List { out } => {
            let list = ops.users().await?;
            let rows: Vec<_> = list
                .iter()
                .map(|u| json!({ "user": u.username, "name": u.display_name, "groups": u.groups, "email": u.email, "disabled": u.disabled_at.is_some() }))
                .collect();
            emit(&out, json!(rows), || {
                list.iter()
                    .map(|u| {
                        let state = if u.disabled_at.is_some() {
                            "disabled"
                        } else {
                            "active"
                        };
                        format!(
                            "{}\t{}\t{}\t{state}",
                            u.username,
                            u.display_name,
                            u.groups.join(",")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UsersCommand::Disable { username, out } => {
            ops.disable(&username).await?;
            emit(&out, json!({ "user": username, "disabled": true }), || {
                format!("disabled {username}")
            });
        }
        UsersCommand::Groups {
            username,
            groups,
            out,
        } => {
            ops.set_groups(&username, &groups).await?;
            emit(&out, json!({ "user": username, "groups": groups }), || {
                format!("{username}: {}", groups.join(","))
            });
        }
        UsersCommand::Credentials { username, out } => {
            let creds = ops.credentials(&username).await?;
            let state = |c: &crate::domain::Credential| {
                if c.revoked_at.is_some() {
                    "revoked"
                } else if c.flagged_at.is_some() {
                    "flagged"
                } else {
                    "active"
                }
            };
            let rows: Vec<_> = creds
                .iter()
                .map(|c| json!({ "credential_id": c.id, "label": c.label, "state": state(c), "created_at": rfc3339(c.created_at), "last_used_at": c.last_used_at.map(rfc3339) }))
                .collect();
            emit(&out, json!(rows), || {
                creds
                    .iter()
                    .map(|c| format!("{}\t{}\t{}", c.id, c.label, state(c)))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        UsersCommand::RevokeCredential {
            username,
            credential_id,
            out,
        } => {
            ops.revoke_credential(&username, &credential_id).await?;
            emit(
                &out,
                json!({ "user": username, "credential_id": credential_id, "revoked": true }),
                || format!("revoked {credential_id}"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

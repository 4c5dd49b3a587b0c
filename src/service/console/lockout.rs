//! Whether a console change would lock countersign out: leave some action's stage with fewer
//! people able to approve in it than its quorum (the console's own action needing someone
//! besides the proposer).

use super::super::{Error, Result, Services};
use crate::domain::text::plural;
use crate::domain::{lockout, Able, AdminChange, Refusal};

/// `lockout` (409) if `change`, proposed by `proposer`, would leave a stage short.
pub(super) async fn check(svc: &Services, change: &AdminChange, proposer: &str) -> Result<()> {
    let groups: Vec<String> = svc.policy.groups().into_iter().collect();
    let users = svc.store.able_approvers(&groups).await?;
    let mut people = Vec::with_capacity(users.len());
    for user in users {
        // Only the passkeys a change revokes need naming; anyone else is counted as able
        // (`able_approvers` gives only people with a usable passkey).
        let passkeys = match change {
            AdminChange::CredentialsRevoke { username, .. } if *username == user.username => svc
                .store
                .credentials_of(user.id)
                .await?
                .into_iter()
                .filter(|c| c.usable())
                .map(|c| c.id.to_string())
                .collect(),
            _ => vec![String::new()],
        };
        people.push(Able {
            username: user.username,
            groups: user.groups,
            passkeys,
        });
    }
    let actions = svc
        .policy
        .actions
        .iter()
        .map(|a| (a.id.as_str(), a.stages.as_slice()));
    match lockout(actions, &people, change, proposer) {
        None => Ok(()),
        Some(short) => {
            tracing::warn!(target: "countersign::security", op = change.op(), action = %short.action, stage = %short.stage, "refused: lockout");
            Err(Error::from(Refusal::Lockout)
                .detail(format!(
                    "after this change, stage {:?} of {} would have {} to give its {}",
                    short.stage,
                    short.action,
                    plural(short.able, "person", "people"),
                    plural(short.quorum, "approval", "approvals"),
                ))
                .with("action", short.action))
        }
    }
}

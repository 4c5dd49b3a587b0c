//! Carrying out an approved console change, once: the operation that makes it records it in
//! its own transaction (`Console`), so of any number of attempts (the decision that approved
//! it, a reader, the sweeper after a crash, on any replica) one makes it and the others roll
//! back. A change that cannot be made (a lockout now, a client gone) is recorded as failed,
//! once, the same way.

use serde_json::json;

use super::super::provision::{Console, Provisioner};
use super::super::{Result, Services};
use super::lockout;
use crate::domain::{
    Actor, AdminChange, ApprovalId, CarriedOut, EventKind, NewEvent, Rights, Status, ADMIN_ACTION,
};
use crate::store::{ChangeRecord, ClientChange, StoreError};

/// How long an invitation made by the console stays valid.
const INVITE_TTL: i64 = 72 * 3600;

/// Carries out the approved change `id` unless that was done; what became of it (`None` when
/// it is not an approved change).
#[tracing::instrument(skip(svc))]
pub async fn carry_out(svc: &Services, id: ApprovalId) -> Result<Option<ChangeRecord>> {
    if let Some(done) = svc.store.change_record(id).await? {
        return Ok(Some(done));
    }
    let request = match svc.store.request(id).await? {
        Some(r) if r.action == ADMIN_ACTION && r.status == Status::Approved => r,
        _ => return Ok(None),
    };
    let proposer = request.initiator.id().to_owned();
    let parsed = request
        .transaction()
        .map_err(|e| e.to_string())
        .and_then(|v| AdminChange::parse(&v.to_serde()).map_err(|e| e.to_string()));
    let outcome = match parsed {
        Err(why) => Err(NotMade::from(format!("not a change: {why}"))),
        Ok(change) => match lockout::check(svc, &change, &proposer).await {
            Err(e) if e.refusal() == crate::domain::Refusal::Lockout => {
                Err(NotMade::from(e.to_string()))
            }
            Err(e) => return Err(e),
            Ok(()) => make(svc, id, &proposer, &change).await,
        },
    };
    if let Err(why) = outcome {
        // Lost to another attempt, which made it: nothing failed.
        if let Some(done) = svc.store.change_record(id).await? {
            return Ok(Some(done));
        }
        if let Some(store) = why.store {
            // Not the change's fault: tried again by the next attempt.
            return Err(store.into());
        }
        fail(svc, id, &proposer, why.text).await?;
    }
    Ok(svc.store.change_record(id).await?)
}

/// Carries out approved changes that were not (the server stopped between the approval and
/// the change); how many it found. One that fails now is tried again by the next sweep, and
/// does not hold up the others.
pub async fn carry_out_pending(svc: &Services, limit: i64) -> Result<usize> {
    let ids = svc.store.uncarried_changes(limit).await?;
    for id in &ids {
        if let Err(e) = carry_out(svc, *id).await {
            tracing::warn!(error = %e, approval_id = %id, "carrying out a console change");
        }
    }
    Ok(ids.len())
}

/// Why a change was not made: a store that failed (try again), or the change's own reason.
struct NotMade {
    store: Option<StoreError>,
    text: String,
}

impl From<String> for NotMade {
    fn from(text: String) -> NotMade {
        NotMade { store: None, text }
    }
}

impl From<StoreError> for NotMade {
    fn from(e: StoreError) -> NotMade {
        match e {
            StoreError::Conflict(why) => NotMade::from(why.to_owned()),
            store => NotMade {
                text: store.to_string(),
                store: Some(store),
            },
        }
    }
}

impl From<anyhow::Error> for NotMade {
    fn from(e: anyhow::Error) -> NotMade {
        match e.downcast::<StoreError>() {
            Ok(store) => NotMade::from(store),
            Err(e) => NotMade::from(e.to_string()),
        }
    }
}

/// Makes the change through the operations the CLI uses, each recording it.
async fn make(
    svc: &Services,
    id: ApprovalId,
    proposer: &str,
    change: &AdminChange,
) -> Result<(), NotMade> {
    let ops = Provisioner {
        store: svc.store.as_ref(),
        clock: svc.clock.as_ref(),
        origin: &svc.origin,
        actor: Actor::User(proposer.to_owned()),
        console: Some(Console {
            change: id,
            sealer: &svc.sealer,
        }),
    };
    match change {
        AdminChange::UsersInvite {
            username,
            name,
            groups,
            email,
        } => {
            ops.invite(
                username,
                name.as_deref(),
                groups,
                email.as_deref(),
                INVITE_TTL,
            )
            .await?;
        }
        AdminChange::UsersGroups { username, groups } => ops.set_groups(username, groups).await?,
        AdminChange::UsersDisable { username } => ops.disable(username).await?,
        AdminChange::CredentialsRevoke {
            username,
            credential_id,
        } => ops.revoke_credential(username, credential_id).await?,
        AdminChange::ClientsCreate {
            name,
            create,
            redeem,
            audit,
        } => {
            let rights = Rights {
                create: create.clone(),
                redeem: redeem.clone(),
                audit: *audit,
            };
            ops.create_client(name, rights).await?;
        }
        AdminChange::ClientsRevoke { name } => ops.revoke_client(name).await?,
        AdminChange::ClientsWebhook { name, url, events } => {
            ops.set_webhook(&svc.sealer, name, url, events, svc.allow_private)
                .await?;
        }
        AdminChange::KeysRotate {} => {
            ops.rotate(&svc.sealer, false).await?;
        }
        AdminChange::KeysRetire { kid } => ops.retire(kid).await?,
        AdminChange::ApprovalsRevoke { approval_id } => {
            revoke(svc, &ops, approval_id).await?;
        }
    }
    Ok(())
}

/// Revokes an approved request of any client, as its creating service could.
async fn revoke(svc: &Services, ops: &Provisioner<'_>, approval_id: &str) -> Result<(), NotMade> {
    let target = ApprovalId::parse(approval_id).map_err(|e| e.to_string())?;
    let event = ops.carrying(
        NewEvent::new(EventKind::RequestRevoked, ops.actor.clone(), json!({})).about(target),
        json!({ "approval_id": target }),
        None,
    )?;
    let now = svc.clock.now();
    match svc.store.revoke_request(target, None, event, now).await? {
        ClientChange::Made(_) => Ok(()),
        ClientChange::Refused(r) => Err(format!(
            "request {target} is {} (only an approved request whose receipt was not redeemed can be revoked)",
            r.status_at(now).as_str()
        )
        .into()),
        ClientChange::NotFound | ClientChange::ClientRevoked => {
            Err(format!("no request {target}").into())
        }
    }
}

/// Records that the change could not be made, and why (unless another attempt recorded it
/// first).
async fn fail(svc: &Services, id: ApprovalId, proposer: &str, why: String) -> Result<()> {
    tracing::warn!(target: "countersign::security", approval_id = %id, why, "a console change could not be carried out");
    let event = NewEvent::new(
        EventKind::AdminChangeFailed,
        Actor::User(proposer.to_owned()),
        json!({ "why": why }),
    )
    .carrying(CarriedOut {
        change: id,
        outcome: None,
        failure: Some(why),
        sealed_secret: None,
    });
    match svc.store.record(event, svc.clock.now()).await {
        Err(StoreError::Conflict(_)) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

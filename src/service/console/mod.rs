//! The admin console: changes to countersign itself. Each is proposed as a request of the
//! built-in action `countersign.admin` whose transaction is the exact change, decided by other
//! admins with their passkeys like any request, and carried out once by the server when
//! approved (`carry_out`). A change that would leave an action without enough people to
//! approve it is refused, when proposed and again when carried out (`lockout`).

mod carry_out;
mod lockout;
pub mod read;

use serde_json::json;

use super::decide::who_may_decide;
use super::provision::Console;
use super::{read_request, refuse, Error, Result, Services};
use crate::clock::secs;
use crate::domain::text::plural;
use crate::domain::{
    Actor, AdminChange, ApprovalId, Client, EventKind, Initiator, NewEvent, NewKey, Refusal,
    Request, Rights, Status, User, ADMIN_ACTION, RESERVED_CLIENT,
};
use crate::store::{ChangeRecord, Created, StoreError};
use crate::tx_hash::TxHash;

pub use carry_out::{carry_out, carry_out_pending};

/// Whether `user` may use the console.
pub fn is_admin(svc: &Services, user: &User) -> bool {
    user.groups.iter().any(|g| g == &svc.admin_group)
}

/// `forbidden` for anyone outside the admin group.
pub fn admin_only(svc: &Services, user: &User) -> Result<()> {
    match is_admin(svc, user) {
        true => Ok(()),
        false => {
            tracing::warn!(target: "countersign::security", user = %user.username, "refused: the console is for admins");
            Err(Error::from(Refusal::Forbidden).detail(format!(
                "the console is for members of {:?}",
                svc.admin_group
            )))
        }
    }
}

/// A change and where it stands: the request that carries it and, once carried out, what
/// became of it.
#[derive(Debug, Clone)]
pub struct ChangeView {
    pub request: Request,
    pub change: serde_json::Value,
    pub record: Option<ChangeRecord>,
    /// The secret it produced, for its proposer, the first time they read it.
    pub secret: Option<(&'static str, String)>,
}

/// `POST /v1/admin/changes`: the change as a new pending request of `countersign.admin`,
/// proposed by `user` (who may never approve it).
#[tracing::instrument(skip_all, fields(user = %user.username, op, approval_id))]
pub async fn propose(svc: &Services, user: &User, body: &serde_json::Value) -> Result<Request> {
    admin_only(svc, user)?;
    let change = AdminChange::parse(body)
        .map_err(|e| Error::from(Refusal::InvalidRequest).detail(e.to_string()))?;
    tracing::Span::current().record("op", change.op());
    if let AdminChange::UsersInvite {
        email: Some(email), ..
    } = &change
    {
        if !super::outbox::mail::is_address(email) {
            return Err(Error::from(Refusal::InvalidRequest).detail("email: not a mail address"));
        }
    }
    let action = svc
        .policy
        .action(ADMIN_ACTION)
        .ok_or_else(|| Error::from(Refusal::Internal).detail("the console's action is missing"))?;
    let text = change.transaction().to_string();
    let (tx_hash, tx) = TxHash::of_json(text.as_bytes())
        .map_err(|e| Error::from(Refusal::InvalidRequest).detail(e.to_string()))?;
    let initiator = Initiator::from_json(&json!(user.username))
        .map_err(|e| Error::from(Refusal::Internal).detail(e))?;
    let required = action
        .evaluate(&tx, None, initiator.kind())
        .map_err(|e| Error::from(Refusal::InvalidRequest).detail(e.to_string()))?;
    let client = console_client(svc).await?;
    let now = svc.clock.now();
    let request = Request {
        id: ApprovalId::generate(),
        client_id: client.id,
        action: action.id.clone(),
        transaction_jcs: crate::jcs::canonicalize(&tx),
        tx_hash,
        initiator,
        audience: RESERVED_CLIENT.to_owned(),
        risk: None,
        policy_rev: svc.policy.revision.clone(),
        required,
        status: Status::Pending,
        created_at: now,
        expires_at: now.saturating_add(secs(action.request_ttl)),
        decided_at: None,
        self_approval: false,
        receipt_ttl: secs(action.receipt_ttl),
    };
    tracing::Span::current().record("approval_id", tracing::field::display(request.id));
    let able = who_may_decide(svc, &request).await?;
    let stages: Vec<Vec<String>> = able
        .iter()
        .map(|u| request.required.stages_for(&u.groups))
        .collect();
    if let Some(unmet) = request.required.unmet(&stages) {
        return Err(Error::from(Refusal::Unsatisfiable).detail(format!(
            "console changes need {} besides yours, and {} can give {}: invite another admin \
             on the host, once (countersign users invite NAME --name 'Full Name' --groups {}), \
             and let them enrol a passkey",
            plural(unmet.quorum, "admin's approval", "admins' approvals"),
            plural(unmet.able, "admin with a passkey", "admins with a passkey"),
            if unmet.quorum == 1 { "it" } else { "them" },
            svc.admin_group,
        )));
    }
    lockout::check(svc, &change, &user.username).await?;
    let event = NewEvent::new(
        EventKind::RequestCreated,
        Actor::User(user.username.clone()),
        json!({
            "action": request.action,
            "op": change.op(),
            "tx_hash": request.tx_hash,
            "initiator": request.initiator.to_json(),
            "audience": request.audience,
            "policy_rev": request.policy_rev,
            "required": {
                "approvals": request.required.approvals(),
                "groups": request.required.groups(),
                "stages": request.required.stages,
            },
        }),
    )
    .about(request.id);
    match svc
        .store
        .create_request(&request, None, event, svc.reach.announces())
        .await?
    {
        Created::New => {
            svc.live.created(&request);
            Ok(request)
        }
        other => {
            tracing::error!(?other, "the console's client could not create a request");
            refuse(Refusal::Internal)
        }
    }
}

/// `GET /v1/admin/changes/{id}`: the change, where it stands, and what it produced; its secret
/// to its proposer, once.
#[tracing::instrument(skip(svc, user), fields(user = %user.username))]
pub async fn read(svc: &Services, user: &User, id: ApprovalId) -> Result<ChangeView> {
    admin_only(svc, user)?;
    let request = match svc.store.request(id).await? {
        Some(r) if r.action == ADMIN_ACTION => r,
        _ => return refuse(Refusal::NotFound),
    };
    let request = read_request::settle(svc, request, svc.clock.now()).await?;
    let change = request
        .transaction()
        .map_err(|e| StoreError::Corrupt(format!("console change {id}: {e}")))?
        .to_serde();
    let mut record = svc.store.change_record(id).await?;
    if request.status == Status::Approved && record.is_none() {
        // Carried out on approval; a server that stopped in between left it to whoever asks
        // first (or to the sweeper).
        record = carry_out(svc, id).await?;
    }
    let secret = match &record {
        Some(r) if r.has_secret && request.initiator.is(&user.username) => {
            secret(svc, id, &change).await?
        }
        _ => None,
    };
    // Read again: the record says the secret is taken now.
    if secret.is_some() {
        record = svc.store.change_record(id).await?;
    }
    Ok(ChangeView {
        request,
        change,
        record,
        secret,
    })
}

/// The secret a change produced, named as the API names it, taken from the store (the first
/// reader gets it).
async fn secret(
    svc: &Services,
    id: ApprovalId,
    change: &serde_json::Value,
) -> Result<Option<(&'static str, String)>> {
    let name = match change.get("op").and_then(|o| o.as_str()) {
        Some("users.invite") => "enroll_url",
        Some("clients.create") => "api_key",
        Some("clients.webhook") => "secret",
        _ => return Ok(None),
    };
    let Some(sealed) = svc.store.take_change_secret(id, svc.clock.now()).await? else {
        return Ok(None);
    };
    let opened = svc
        .sealer
        .open(&Console::seal_label(id), &sealed)
        .map_err(|e| StoreError::Corrupt(format!("the secret of change {id}: {e}")))?;
    let text = String::from_utf8(opened)
        .map_err(|e| StoreError::Corrupt(format!("the secret of change {id}: {e}")))?;
    tracing::info!(target: "countersign::security", approval_id = %id, "a console change's secret was shown to its proposer");
    Ok(Some((name, text)))
}

/// The client console changes are requests of: made on the first change, with no rights and
/// a key nobody holds.
async fn console_client(svc: &Services) -> Result<Client> {
    let find = || async {
        Ok::<_, Error>(
            svc.store
                .clients()
                .await?
                .into_iter()
                .find(|c| c.name == RESERVED_CLIENT),
        )
    };
    if let Some(client) = find().await? {
        return Ok(client);
    }
    let rights = Rights {
        create: Vec::new(),
        redeem: Vec::new(),
        audit: false,
    };
    let event = NewEvent::new(
        EventKind::ClientCreated,
        Actor::System,
        json!({ "client": RESERVED_CLIENT, "rights": rights }),
    );
    let key = NewKey::generate();
    match svc
        .store
        .create_client(RESERVED_CLIENT, &key.hash, &rights, event, svc.clock.now())
        .await
    {
        Ok(client) => Ok(client),
        // Made meanwhile by another change (or replica).
        Err(StoreError::Conflict(_)) => find().await?.ok_or_else(|| Refusal::Internal.into()),
        Err(e) => Err(e.into()),
    }
}

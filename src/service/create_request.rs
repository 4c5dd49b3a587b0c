//! A backend service asks for an approval of one exact transaction.

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::decide::who_may_decide;
use super::{Error, Result, Services};
use crate::clock::secs;
use crate::domain::text::plural;
use crate::domain::{
    Actor, ApprovalId, Client, EventKind, Initiator, NewEvent, Refusal, Request, Risk, Status, User,
};
use crate::jcs;
use crate::policy::Redaction;
use crate::store::{Created, Idempotency};
use crate::tx_hash::TxHash;

/// `POST /v1/approvals`, as sent. Unknown fields are refused, so a client can never set status,
/// quorum or approvers.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "action": "payment.transfer",
    "transaction": {
        "amount": "1250.00",
        "currency": "EUR",
        "payee": { "name": "ACME GmbH", "iban": "DE89370400440532013000" }
    },
    "initiator": "alice",
    "audience": "payments-service"
}))]
pub struct NewRequest {
    /// An action of the policy.
    pub action: String,
    /// The exact transaction to approve: a JSON object, hashed in its RFC 8785 form.
    #[schema(value_type = Object)]
    pub transaction: Box<RawValue>,
    /// A username, or `{"type": "person" | "agent" | "service", "id", "on_behalf_of"}`.
    #[schema(value_type = crate::domain::Initiator)]
    pub initiator: serde_json::Value,
    pub audience: Option<String>,
    pub risk: Option<Risk>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The request was made; the response to send (as `render` gave it).
    New(String),
    /// An `Idempotency-Key` repeat: the first response, byte for byte.
    Replayed(String),
}

/// Checks the request against the policy, and that the people who could decide it can ever
/// meet every stage, and stores it with its secrets redacted. `render` gives the 201 response
/// for the new request (with those people and the redactions' salts), which is kept with an
/// idempotency key so that a repeat gets it unchanged.
#[tracing::instrument(skip_all, fields(client = %client.name, action = %input.action, approval_id))]
pub async fn create_request(
    svc: &Services,
    client: &Client,
    input: NewRequest,
    idempotency_key: Option<String>,
    render: impl Fn(&Request, &[User], &[Redaction]) -> Result<String>,
) -> Result<Answer> {
    let action = svc.policy.action(&input.action).ok_or_else(|| {
        Error::from(Refusal::UnknownAction)
            .detail(format!("no action {:?} in the policy", input.action))
    })?;
    if action.id == crate::domain::ADMIN_ACTION {
        return Err(Error::from(Refusal::Forbidden)
            .detail("console changes are proposed by admins: POST /v1/admin/changes"));
    }
    if !client.rights.may_create(&action.id) {
        return Err(Error::from(Refusal::Forbidden)
            .detail(format!("this client may not request {:?}", action.id)));
    }
    let (tx_hash, tx) = TxHash::of_json(input.transaction.get().as_bytes())
        .map_err(|e| Error::from(Refusal::InvalidTransaction).detail(e.to_string()))?;
    let initiator = Initiator::from_json(&input.initiator)
        .map_err(|e| Error::from(Refusal::InvalidRequest).detail(e))?;
    if let Some(risk) = &input.risk {
        risk.check()
            .map_err(|e| Error::from(Refusal::InvalidRequest).detail(e))?;
    }
    let audience = match (&input.audience, action.audiences.as_slice()) {
        (Some(a), allowed) if allowed.contains(a) => a.clone(),
        (Some(a), _) => {
            return Err(Error::from(Refusal::Forbidden)
                .detail(format!("audience {a:?} is not allowed for {:?}", action.id)))
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(Error::from(Refusal::InvalidRequest)
                .detail("audience is required: the action's policy names several"))
        }
    };
    let required = action
        .evaluate(&tx, input.risk.as_ref().map(|r| r.score), initiator.kind())
        .map_err(|e| Error::from(Refusal::InvalidTransaction).detail(e.to_string()))?;

    // Secrets leave here: only their commitments are kept, and the salts go back to the client.
    let (transaction_jcs, redactions) = match action.redact(&tx, super::random32) {
        Some((stored, redactions)) => (jcs::canonicalize(&stored), redactions),
        None => (jcs::canonicalize(&tx), Vec::new()),
    };
    let now = svc.clock.now();
    let request = Request {
        id: ApprovalId::generate(),
        client_id: client.id,
        action: action.id.clone(),
        transaction_jcs,
        tx_hash,
        initiator,
        audience,
        risk: input.risk,
        policy_rev: svc.policy.revision.clone(),
        required,
        status: Status::Pending,
        created_at: now,
        expires_at: now.saturating_add(secs(action.request_ttl)),
        decided_at: None,
        self_approval: action.self_approval,
        receipt_ttl: secs(action.receipt_ttl),
    };
    tracing::Span::current().record("approval_id", tracing::field::display(request.id));
    let able = who_may_decide(svc, &request).await?;
    let stages: Vec<Vec<String>> = able
        .iter()
        .map(|u| request.required.stages_for(&u.groups))
        .collect();
    if let Some(unmet) = request.required.unmet(&stages) {
        // A repeat of a request made when it could still be met gets its first answer.
        if let Some(key) = &idempotency_key {
            if let Some((hash, first)) = svc.store.prior_response(client.id, key).await? {
                return match hash == fingerprint(&request, input.audience.as_deref()) {
                    true => Ok(Answer::Replayed(first)),
                    false => Err(Refusal::IdempotencyConflict.into()),
                };
            }
        }
        return Err(Error::from(Refusal::Unsatisfiable)
            .detail(format!(
                "stage {:?} needs {} and only {} can give {} (enabled, in its groups, with a passkey, not the requester, one stage each)",
                unmet.stage,
                plural(unmet.quorum, "approval", "approvals"),
                plural(unmet.able, "person", "people"),
                if unmet.quorum == 1 { "it" } else { "them" },
            ))
            .with("stage", unmet.stage));
    }
    let response = render(&request, &able, &redactions)?;
    let idempotency = idempotency_key.map(|key| Idempotency {
        key,
        request_hash: fingerprint(&request, input.audience.as_deref()),
        response: response.clone(),
    });
    let event = NewEvent::new(
        EventKind::RequestCreated,
        Actor::Client(client.name.clone()),
        json!({
            "action": request.action,
            "tx_hash": request.tx_hash,
            "initiator": request.initiator.to_json(),
            "audience": request.audience,
            "risk": request.risk,
            "policy_rev": request.policy_rev,
            "required": {
                "approvals": request.required.approvals(),
                "groups": request.required.groups(),
                "rule": request.required.rule_label(),
                "stages": request.required.stages,
            },
        }),
    )
    .about(request.id);
    match svc
        .store
        .create_request(&request, idempotency.as_ref(), event, svc.reach.announces())
        .await?
    {
        Created::New => {
            // The open event streams hear of it from here (no write, no notice to other
            // replicas: they look for new requests themselves while a stream is open).
            svc.live.created(&request);
            Ok(Answer::New(response))
        }
        Created::Replayed(first) => Ok(Answer::Replayed(first)),
        Created::KeyConflict => Err(Refusal::IdempotencyConflict.into()),
        Created::ClientRevoked => Err(Refusal::Unauthorized.into()),
    }
}

/// What makes two create requests "the same" for `Idempotency-Key`: every field the client
/// sent, with the transaction by its hash so that formatting does not matter.
fn fingerprint(r: &Request, audience_sent: Option<&str>) -> [u8; 32] {
    let canonical = json!({
        "action": r.action,
        "transaction": r.tx_hash,
        "initiator": r.initiator.to_json(),
        "audience": audience_sent,
        "risk": r.risk,
    });
    Sha256::digest(canonical.to_string().as_bytes()).into()
}

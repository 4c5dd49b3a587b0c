//! Rows as both databases return them (text, integers, bytes), and the one place they become
//! domain types. Each implementation fills these from its own driver: PostgreSQL through
//! `sqlx::FromRow` (or [`by_name`], where one statement joins tables), SQLite through
//! [`by_name`].

use super::{ReceiptRow, SigningKeyRow, StoreError, StoreResult};
use crate::audit::AuditEvent;
use crate::clock::rfc3339;
use crate::domain::{
    ApprovalId, Client, ClientId, Credential, CredentialId, Decision, DecisionRecord, Initiator,
    ReceiptId, Request, Requirement, Stage, Status, User, UserId, Vote, DEFAULT_STAGE,
};
use crate::tx_hash::TxHash;

mod by_name;
mod ceremony;
mod outbox;
pub(super) use by_name::{aliased, from_row, positions, Columns, Positions};
pub(super) use ceremony::{CeremonyRow, CEREMONY_COLS};
pub(super) use outbox::{
    delivery_after, DeliveryRow, WebhookRow, DELIVERY_COLS, PURGE_GRACE, WEBHOOK_COLS,
};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(super) fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub(super) fn bytes32(what: &str, bytes: Vec<u8>) -> StoreResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

pub(super) fn id<T>(
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, crate::domain::InvalidId>,
    text: &str,
) -> StoreResult<T> {
    parse(text).map_err(|e| corrupt(what, e))
}

/// Passkey ids as a query returns them (a column of ids, one a row, or an array).
pub(super) fn credential_ids(ids: &[String]) -> StoreResult<Vec<CredentialId>> {
    ids.iter()
        .map(|s| id("credential id", CredentialId::parse, s))
        .collect()
}

fn decision(text: &str) -> StoreResult<Decision> {
    text.parse().map_err(|e| corrupt("decision", e))
}

/// A column list with each column qualified by a table alias (`a.id, a.client_id, …`).
pub(super) fn qualified(cols: &str, alias: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns of `approvals`, in this order, for both databases. (`behalf_key` is written for
/// the inbox's filter; the initiator is read back from `initiator_party`.)
pub(super) const REQUEST_COLS: &str = "id, client_id, action, transaction_jcs, tx_hash, initiator, initiator_key, \
     audience, risk, policy_rev, required_approvals, required_groups, rules, status, created_at, expires_at, \
     decided_at, self_approval, receipt_ttl, initiator_party, behalf_key, stages";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct RequestRow {
    pub id: String,
    pub client_id: String,
    pub action: String,
    pub transaction_jcs: String,
    pub tx_hash: String,
    pub initiator: String,
    pub initiator_key: String,
    pub audience: String,
    pub risk: Option<String>,
    pub policy_rev: String,
    pub required_approvals: i64,
    pub required_groups: String,
    pub rules: String,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub self_approval: i64,
    pub receipt_ttl: i64,
    pub initiator_party: Option<String>,
    pub stages: Option<String>,
}

impl RequestRow {
    pub fn into_domain(self) -> StoreResult<Request> {
        Ok(Request {
            id: id("request id", ApprovalId::parse, &self.id)?,
            client_id: id("client id", ClientId::parse, &self.client_id)?,
            action: self.action,
            transaction_jcs: self.transaction_jcs,
            tx_hash: TxHash::parse(&self.tx_hash).map_err(|e| corrupt("tx_hash", e))?,
            initiator: Initiator::from_stored(
                self.initiator,
                self.initiator_key,
                self.initiator_party.as_deref(),
            )
            .map_err(|e| corrupt("initiator", e))?,
            audience: self.audience,
            risk: self.risk.as_deref().map(|r| json("risk", r)).transpose()?,
            policy_rev: self.policy_rev,
            required: Requirement {
                stages: match self.stages.as_deref() {
                    Some(stages) => json("stages", stages)?,
                    // Made before stages: one, of the groups and quorum it was made with.
                    None => vec![Stage {
                        name: DEFAULT_STAGE.to_owned(),
                        groups: json("required_groups", &self.required_groups)?,
                        quorum: u32::try_from(self.required_approvals)
                            .map_err(|e| corrupt("required_approvals", e))?,
                    }],
                },
                rules: json("rules", &self.rules)?,
            },
            status: Status::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {:?}", self.status)))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            decided_at: self.decided_at,
            self_approval: self.self_approval != 0,
            receipt_ttl: self.receipt_ttl,
        })
    }
}

/// What goes into the `approvals` columns (in [`REQUEST_COLS`] order) besides plain fields.
pub(super) struct RequestCols {
    pub risk: Option<String>,
    /// The sum of the stages' quorums and the union of their groups.
    pub approvals: i64,
    pub groups: String,
    pub rules: String,
    /// NULL for the one stage `default`, which the sum and the union say all about.
    pub stages: Option<String>,
}

impl RequestCols {
    pub fn of(r: &Request) -> StoreResult<RequestCols> {
        Ok(RequestCols {
            risk: r.risk.as_ref().map(to_json).transpose()?,
            approvals: i64::from(r.required.approvals()),
            groups: to_json(&r.required.groups())?,
            rules: to_json(&r.required.rules)?,
            stages: match r.required.stages.as_slice() {
                [only] if only.name == DEFAULT_STAGE => None,
                stages => Some(to_json(&stages)?),
            },
        })
    }
}

pub(super) fn to_json(v: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| corrupt("encoding", e))
}

/// Decision columns, for both databases.
pub(super) const DECISION_COLS: &str =
    "approval_id, user_id, decision, username, display_name, credential_id, at, nonce, \
     authenticator_data, client_data_json, signature, public_jwk, user_verified, stage";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct DecisionRow {
    pub approval_id: String,
    pub user_id: String,
    pub decision: String,
    pub username: String,
    pub display_name: String,
    pub credential_id: String,
    pub at: i64,
    pub nonce: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub signature: Vec<u8>,
    pub public_jwk: String,
    pub user_verified: i64,
    pub stage: String,
}

impl DecisionRow {
    pub fn into_domain(self) -> StoreResult<DecisionRecord> {
        Ok(DecisionRecord {
            approval_id: id("approval id", ApprovalId::parse, &self.approval_id)?,
            vote: Vote {
                user_id: id("user id", UserId::parse, &self.user_id)?,
                username: self.username,
                display_name: self.display_name,
                decision: decision(&self.decision)?,
                at: self.at,
                stage: self.stage,
            },
            credential_id: id("credential id", CredentialId::parse, &self.credential_id)?,
            nonce: bytes32("nonce", self.nonce)?,
            authenticator_data: self.authenticator_data,
            client_data_json: self.client_data_json,
            signature: self.signature,
            public_jwk: json("public_jwk", &self.public_jwk)?,
            user_verified: self.user_verified != 0,
        })
    }
}

/// A vote as a list query returns it beside its request (NULLs where the request has none).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct VoteRow {
    pub vote_user: Option<String>,
    pub vote_username: Option<String>,
    pub vote_name: Option<String>,
    pub vote_decision: Option<String>,
    pub vote_at: Option<i64>,
    pub vote_stage: Option<String>,
}

/// The vote columns of a list query, from a `decisions` row aliased `d`.
pub(super) const VOTE_COLS: &str = "d.user_id AS vote_user, d.username AS vote_username, \
     d.display_name AS vote_name, d.decision AS vote_decision, d.at AS vote_at, \
     d.stage AS vote_stage";

impl VoteRow {
    pub fn into_domain(self) -> StoreResult<Option<Vote>> {
        let (Some(user), Some(username), Some(name), Some(d), Some(at), Some(stage)) = (
            self.vote_user,
            self.vote_username,
            self.vote_name,
            self.vote_decision,
            self.vote_at,
            self.vote_stage,
        ) else {
            return Ok(None);
        };
        Ok(Some(Vote {
            user_id: id("user id", UserId::parse, &user)?,
            username,
            display_name: name,
            decision: decision(&d)?,
            at,
            stage,
        }))
    }
}

/// Joins list rows (a request repeated once per vote) into requests with their votes, keeping
/// the order the query gave.
pub(super) fn group_votes(rows: Vec<(RequestRow, VoteRow)>) -> StoreResult<Vec<super::Listed>> {
    let mut out: Vec<super::Listed> = Vec::new();
    let mut last_id = String::new();
    for (request, vote) in rows {
        let vote = vote.into_domain()?;
        match out.last_mut() {
            Some(last) if last_id == request.id => last.votes.extend(vote),
            _ => {
                last_id.clone_from(&request.id);
                out.push(super::Listed {
                    request: request.into_domain()?,
                    votes: vote.into_iter().collect(),
                });
            }
        }
    }
    Ok(out)
}

pub(super) const USER_COLS: &str =
    "id, username, display_name, groups, created_at, disabled_at, email";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct UserRow {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub groups: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub email: Option<String>,
}

impl UserRow {
    pub fn into_domain(self) -> StoreResult<User> {
        Ok(User {
            id: id("user id", UserId::parse, &self.id)?,
            username: self.username,
            display_name: self.display_name,
            groups: json("groups", &self.groups)?,
            created_at: self.created_at,
            disabled_at: self.disabled_at,
            email: self.email,
        })
    }
}

pub(super) const CREDENTIAL_COLS: &str =
    "id, user_id, label, public_x, public_y, counter, created_at, last_used_at, revoked_at, flagged_at";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct CredentialRow {
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub public_x: Vec<u8>,
    pub public_y: Vec<u8>,
    pub counter: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub flagged_at: Option<i64>,
}

impl CredentialRow {
    pub fn into_domain(self) -> StoreResult<Credential> {
        Ok(Credential {
            id: id("credential id", CredentialId::parse, &self.id)?,
            user_id: id("user id", UserId::parse, &self.user_id)?,
            label: self.label,
            public_x: self.public_x,
            public_y: self.public_y,
            counter: self.counter,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
            flagged_at: self.flagged_at,
        })
    }
}

pub(super) const CLIENT_COLS: &str = "id, name, rights, created_at, revoked_at";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ClientRow {
    pub id: String,
    pub name: String,
    pub rights: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl ClientRow {
    pub fn into_domain(self) -> StoreResult<Client> {
        Ok(Client {
            id: id("client id", ClientId::parse, &self.id)?,
            name: self.name,
            rights: json("rights", &self.rights)?,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

pub(super) const RECEIPT_COLS: &str =
    "jti, approval_id, kid, audience, issued_at, expires_at, redeemed_at, redeemed_by, revoked_at";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ReceiptDbRow {
    pub jti: String,
    pub approval_id: String,
    pub kid: String,
    pub audience: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub redeemed_at: Option<i64>,
    pub redeemed_by: Option<String>,
    pub revoked_at: Option<i64>,
}

impl ReceiptDbRow {
    pub fn into_domain(self) -> StoreResult<ReceiptRow> {
        Ok(ReceiptRow {
            jti: id("jti", ReceiptId::parse, &self.jti)?,
            approval_id: id("approval id", ApprovalId::parse, &self.approval_id)?,
            kid: self.kid,
            audience: self.audience,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            redeemed_at: self.redeemed_at,
            redeemed_by: self.redeemed_by,
            revoked_at: self.revoked_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct KeyRow {
    pub kid: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl KeyRow {
    pub fn into_domain(self) -> StoreResult<SigningKeyRow> {
        Ok(SigningKeyRow {
            kid: self.kid,
            public_jwk: json("public_jwk", &self.public_jwk)?,
            created_at: self.created_at,
            retired_at: self.retired_at,
        })
    }
}

pub(super) const EVENT_COLS: &str = "seq, at, kind, actor, approval_id, data, prev_hash, hash";

#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub approval_id: Option<String>,
    pub data: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl EventRow {
    pub fn into_domain(self) -> StoreResult<AuditEvent> {
        Ok(AuditEvent {
            seq: self.seq,
            at: rfc3339(self.at),
            kind: self.kind,
            actor: self.actor,
            approval_id: self.approval_id,
            data: json("audit data", &self.data)?,
            prev_hash: bytes32("prev_hash", self.prev_hash)?,
            hash: bytes32("hash", self.hash)?,
        })
    }
}

pub(super) fn head(seq: i64, hash: Vec<u8>) -> StoreResult<(i64, [u8; 32])> {
    Ok((seq, bytes32("audit head hash", hash)?))
}

/// An audit event in the form it is exported in, before it has its place in the chain.
#[derive(Debug)]
pub(super) struct Pending {
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub approval_id: Option<String>,
    pub data: serde_json::Value,
}

impl Pending {
    /// The event at `now`, logged as it is recorded (a security event as such).
    pub fn of(ev: &crate::domain::NewEvent, now: i64) -> Pending {
        let pending = Pending::unlogged(ev, now);
        pending.log(ev.kind.is_security());
        pending
    }

    /// The event at `now`, to be logged ([`Pending::log`]) only once it is recorded.
    pub fn unlogged(ev: &crate::domain::NewEvent, now: i64) -> Pending {
        Pending {
            at: now,
            kind: ev.kind.as_str().to_owned(),
            actor: ev.actor.to_string(),
            approval_id: ev.approval_id.map(|a| a.to_string()),
            data: ev.data.clone(),
        }
    }

    pub fn log(&self, security: bool) {
        let (kind, actor, approval_id) = (&self.kind, &self.actor, &self.approval_id);
        if security {
            tracing::warn!(target: "countersign::security", %kind, %actor, approval_id, data = %self.data, "audit event");
        } else {
            tracing::info!(target: "countersign::audit", %kind, %actor, approval_id, "audit event");
        }
    }
}

/// An audit event ready to insert: its place in the chain and its hash.
pub(super) struct ChainedEvent {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub approval_id: Option<String>,
    pub data: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Chains `events`, in order, after the head `(last_seq, prev)`.
pub(super) fn chain(
    events: Vec<Pending>,
    last_seq: i64,
    mut prev: [u8; 32],
) -> StoreResult<Vec<ChainedEvent>> {
    let mut out = Vec::with_capacity(events.len());
    for (seq, ev) in (last_seq + 1..).zip(events) {
        let hash = crate::audit::entry_hash(
            &prev,
            seq,
            &rfc3339(ev.at),
            &ev.kind,
            &ev.actor,
            ev.approval_id.as_deref(),
            &ev.data,
        )?;
        out.push(ChainedEvent {
            seq,
            at: ev.at,
            kind: ev.kind,
            actor: ev.actor,
            approval_id: ev.approval_id,
            data: ev.data.to_string(),
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    Ok(out)
}

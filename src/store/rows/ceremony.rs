//! Ceremony rows: what finishing a ceremony needs, in typed columns per kind.

use super::{bytes32, decision, id};
use crate::domain::{ApprovalId, Ceremony, CeremonyId, CeremonyState, CredentialId, UserId};
use crate::store::{StoreError, StoreResult};

pub(in crate::store) const CEREMONY_COLS: &str =
    "id, kind, user_id, approval_id, decision, secret, allow, invitation, registration, created_at, expires_at, \
     stage";

#[derive(Debug, Default, sqlx::FromRow)]
pub(in crate::store) struct CeremonyRow {
    pub id: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub approval_id: Option<String>,
    pub decision: Option<String>,
    /// Sign-in: the challenge; decision: the nonce.
    pub secret: Option<Vec<u8>>,
    /// Credential ids offered, space-separated (base64url has no spaces); NULL for none named.
    pub allow: Option<String>,
    pub invitation: Option<Vec<u8>>,
    pub registration: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Decision: the stage asked for, if one was.
    pub stage: Option<String>,
}

fn allow_list(text: &str) -> StoreResult<Vec<CredentialId>> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| id("allowed credential", CredentialId::parse, s))
        .collect()
}

impl CeremonyRow {
    pub fn of(c: &Ceremony) -> CeremonyRow {
        let join = |ids: &[CredentialId]| {
            ids.iter()
                .map(CredentialId::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut row = CeremonyRow {
            id: c.id.to_string(),
            kind: c.state.kind().as_str().to_owned(),
            user_id: c.state.user().map(|u| u.to_string()),
            approval_id: c.state.approval().map(|a| a.to_string()),
            created_at: c.created_at,
            expires_at: c.expires_at,
            ..CeremonyRow::default()
        };
        match &c.state {
            CeremonyState::Enrol {
                invitation,
                registration,
                ..
            } => {
                row.invitation = Some(invitation.to_vec());
                row.registration = Some(registration.clone());
            }
            CeremonyState::SignIn { challenge, allow } => {
                row.secret = Some(challenge.to_vec());
                row.allow = allow.as_deref().map(join);
            }
            CeremonyState::Decision {
                decision,
                nonce,
                allow,
                stage,
                ..
            } => {
                row.decision = Some(decision.as_str().to_owned());
                row.secret = Some(nonce.to_vec());
                row.allow = Some(join(allow));
                row.stage.clone_from(stage);
            }
        }
        row
    }

    /// What a ceremony read or deleted by id is to a caller expecting `expect`.
    pub fn classify(
        row: Option<CeremonyRow>,
        expect: crate::store::Expect,
    ) -> StoreResult<crate::domain::Taken> {
        use crate::domain::Taken;
        let Some(row) = row else {
            return Ok(Taken::Gone);
        };
        let c = row.into_domain()?;
        Ok(if expect.matches(&c.state) {
            Taken::Ceremony(c)
        } else {
            Taken::Mismatch
        })
    }

    pub fn into_domain(self) -> StoreResult<Ceremony> {
        let missing = |what: &str| StoreError::Corrupt(format!("ceremony without {what}"));
        let user = || -> StoreResult<UserId> {
            let text = self.user_id.as_deref().ok_or_else(|| missing("user"))?;
            id("user id", UserId::parse, text)
        };
        let secret = || {
            bytes32(
                "ceremony secret",
                self.secret.clone().ok_or_else(|| missing("secret"))?,
            )
        };
        let state = match self.kind.as_str() {
            "enroll" => CeremonyState::Enrol {
                user: user()?,
                invitation: bytes32(
                    "invitation",
                    self.invitation
                        .clone()
                        .ok_or_else(|| missing("invitation"))?,
                )?,
                registration: self
                    .registration
                    .clone()
                    .ok_or_else(|| missing("registration"))?,
            },
            "signin" => CeremonyState::SignIn {
                challenge: secret()?,
                allow: self.allow.as_deref().map(allow_list).transpose()?,
            },
            "decision" => CeremonyState::Decision {
                user: user()?,
                approval: id(
                    "approval id",
                    ApprovalId::parse,
                    self.approval_id
                        .as_deref()
                        .ok_or_else(|| missing("request"))?,
                )?,
                decision: decision(
                    self.decision
                        .as_deref()
                        .ok_or_else(|| missing("decision"))?,
                )?,
                nonce: secret()?,
                allow: allow_list(self.allow.as_deref().unwrap_or_default())?,
                stage: self.stage.clone(),
            },
            other => return Err(StoreError::Corrupt(format!("ceremony kind {other:?}"))),
        };
        Ok(Ceremony {
            id: id("ceremony id", CeremonyId::parse, &self.id)?,
            state,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

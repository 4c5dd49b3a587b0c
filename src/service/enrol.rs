//! An invited person registers a passkey through their one-time link.

use serde_json::{json, Value};

use super::{refuse, Error, Result, Services};
use crate::clock::UnixTime;
use crate::domain::client::key_hash;
use crate::domain::text::plain;
use crate::domain::{
    Actor, Ceremony, CeremonyId, CeremonyKind, CeremonyState, CredentialId, EventKind,
    InvitationState, NewEvent, Refusal, Taken, User, CEREMONY_SECS,
};
use crate::passkeys::RegistrationError;
use crate::store::{EnrolOutcome, Expect};

const MAX_LABEL: usize = 64;

/// The invitation's user and the token's hash, if the link can still be used at `now`.
pub async fn invitation(svc: &Services, token: &str, now: UnixTime) -> Result<(User, [u8; 32])> {
    let hash = key_hash(token);
    match svc.store.invitation(&hash, now).await? {
        None => refuse(Refusal::NotFound),
        Some((_, InvitationState::Used)) => refuse(Refusal::InvitationUsed),
        Some((_, InvitationState::Expired)) => refuse(Refusal::InvitationExpired),
        Some((user, InvitationState::Usable)) => Ok((user, hash)),
    }
}

/// `POST /v1/enroll/{token}/options`: creation options (UV required, ES256) and the ceremony.
#[tracing::instrument(skip_all)]
pub async fn options(
    svc: &Services,
    user: &User,
    token_hash: [u8; 32],
) -> Result<(CeremonyId, Value)> {
    let now = svc.clock.now();
    let existing = svc.store.credentials_of(user.id).await?;
    let (public_key, registration) = svc.rp.start_registration(user, &existing).map_err(|e| {
        tracing::error!(error = %e, "starting a registration");
        Error::from(Refusal::Internal)
    })?;
    let ceremony = Ceremony {
        id: CeremonyId::generate(),
        state: CeremonyState::Enrol {
            user: user.id,
            invitation: token_hash,
            registration: registration.to_string(),
        },
        created_at: now,
        expires_at: now + CEREMONY_SECS,
    };
    svc.store.start_ceremony(&ceremony, None).await?;
    Ok((ceremony.id, public_key))
}

/// `POST /v1/enroll/{token}/finish`: verifies the registration, then spends the invitation
/// and stores the passkey in one transaction.
#[tracing::instrument(skip_all)]
pub async fn finish(
    svc: &Services,
    token: &str,
    ceremony: &str,
    credential: &Value,
    label: Option<&str>,
) -> Result<(User, CredentialId)> {
    let now = svc.clock.now();
    let label = label.unwrap_or("Passkey").trim();
    plain(label, MAX_LABEL)
        .map_err(|e| Error::from(Refusal::InvalidRequest).detail(format!("label {e}")))?;
    let (user, hash) = invitation(svc, token, now).await?;
    let ceremony_id =
        CeremonyId::parse(ceremony).map_err(|_| Error::from(Refusal::CeremonyConsumed))?;
    let expect = Expect {
        kind: CeremonyKind::Enrol,
        user: Some(user.id),
        approval: None,
    };
    let ceremony = match svc.store.take_ceremony(ceremony_id, expect).await? {
        Taken::Ceremony(c) => c,
        Taken::Mismatch => return refuse(Refusal::CeremonyMismatch),
        Taken::Gone => return refuse(Refusal::CeremonyConsumed),
    };
    let CeremonyState::Enrol {
        invitation,
        registration,
        ..
    } = &ceremony.state
    else {
        return refuse(Refusal::CeremonyMismatch);
    };
    if *invitation != hash {
        return refuse(Refusal::CeremonyMismatch);
    }
    if ceremony.expires_at <= now {
        return refuse(Refusal::CeremonyExpired);
    }
    let registration: Value =
        serde_json::from_str(registration).map_err(|_| Error::from(Refusal::Internal))?;
    let cred = svc
        .rp
        .finish_registration(credential, &registration, label)
        .map_err(|e| {
            tracing::warn!(target: "countersign::security", error = %e, user = %user.username, "enrolment refused");
            match e {
                RegistrationError::NotEs256 => Error::from(Refusal::UnsupportedAlgorithm),
                RegistrationError::Invalid(_) => Error::from(Refusal::RegistrationInvalid),
            }
        })?;
    let event = NewEvent::new(
        EventKind::CredentialEnrolled,
        Actor::User(user.username.clone()),
        json!({ "user": user.username, "credential_id": cred.id, "label": cred.label }),
    );
    match svc.store.enrol(&hash, &user, &cred, event, now).await? {
        EnrolOutcome::Enrolled => Ok((user, cred.id)),
        EnrolOutcome::InvitationUsed => refuse(Refusal::InvitationUsed),
        EnrolOutcome::InvitationExpired => refuse(Refusal::InvitationExpired),
        EnrolOutcome::CredentialExists => refuse(Refusal::CredentialExists),
    }
}

//! The use cases, one a file, called alike by the JSON API, the pages and the CLI. Every rule
//! lives here once: eligibility, separation of duties, quorum, status transitions, what is
//! audited and how receipts are issued. Each use case reads the clock once and carries that
//! `now` through, so its checks and its records agree on the time.

pub mod audit_log;
pub mod authenticate;
pub mod background;
pub mod cancel_request;
pub mod console;
pub mod create_request;
pub mod decide;
pub mod enrol;
pub mod inbox;
pub mod live;
pub mod outbox;
pub mod provision;
pub mod read_request;
pub mod redeem;
pub mod revoke_request;
pub mod sign_in;
pub mod views;
pub mod waits;

use std::borrow::Cow;
use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::Refusal;
use crate::issuer::Issuer;
use crate::passkeys::RelyingParty;
use crate::policy::Policy;
use crate::store::{Store, StoreError};

/// What every use case works with.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
    pub rp: RelyingParty,
    pub issuer: Arc<Issuer>,
    /// The server's public origin: links to pages, `iss` of receipts.
    pub origin: String,
    /// Who uses the admin console and decides its changes.
    pub admin_group: String,
    /// Seals what the console's changes produce, for their proposer to read once.
    sealer: crate::signing::Sealer,
    /// Whether webhooks may go to private addresses (the console sets endpoints).
    allow_private: bool,
    /// What `/metrics` reports; the use cases count what only they see (deliveries).
    pub metrics: Arc<crate::metrics::Metrics>,
    pub(crate) decoys: sign_in::Decoys,
    /// What the server sends out with: webhooks, mail, chat.
    pub reach: outbox::Reach,
    /// Long-polls, by the request they wait on.
    waits: waits::Waits,
    /// The live pages' event streams, and the one hub that feeds them.
    pub live: live::Live,
    /// The receipt verifier, with the keys it was made from (`redeem`).
    verifier: std::sync::Mutex<
        Option<(
            Vec<crate::store::SigningKeyRow>,
            Arc<crate::receipt::Verifier>,
        )>,
    >,
}

impl Services {
    /// The use cases on `store`, as `config` and the master key set them up.
    pub fn build(
        config: &crate::config::Config,
        master_key: &crate::master_key::MasterKey,
        store: Arc<dyn Store>,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Services> {
        use crate::signing::Sealer;
        let origin = config.public_origin.clone();
        Ok(Services {
            metrics: Arc::new(crate::metrics::Metrics::new(store.commit_latency())),
            waits: waits::Waits::new(store.clone()),
            live: live::Live::new(store.clone(), clock.clone()),
            store,
            policy,
            clock,
            rp: RelyingParty::new(&origin)?,
            issuer: Arc::new(Issuer::new(Sealer::new(master_key), origin.clone())),
            origin,
            admin_group: config.admin_group.clone(),
            sealer: Sealer::new(master_key),
            allow_private: config.webhook_allow_private,
            decoys: sign_in::Decoys::new(derived(master_key, b"countersign/decoy-credential/v2\0")),
            reach: outbox::Reach::new(config, Sealer::new(master_key))?,
            verifier: std::sync::Mutex::new(None),
        })
    }
}

/// Keys derived from the master key for other purposes than sealing, so the master key is
/// never used directly.
fn derived(master: &crate::master_key::MasterKey, purpose: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(purpose);
    h.update(master.0);
    h.finalize().into()
}

/// Why a use case did not do what was asked: a refusal from the one list, with what the caller
/// may be told about it, or a store failure (logged where it is answered, never shown).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{refusal}: {detail}")]
    Refused {
        refusal: Refusal,
        detail: Cow<'static, str>,
        /// One extra member of the problem response (`approval_status`, `redeemed_at`).
        extra: Option<(&'static str, String)>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// The refusal a caller sees: a store that cannot be reached is `store_unavailable`, any
    /// other store failure `internal`.
    pub fn refusal(&self) -> Refusal {
        match self {
            Error::Refused { refusal, .. } => *refusal,
            Error::Store(StoreError::Unavailable(_)) => Refusal::StoreUnavailable,
            Error::Store(_) => Refusal::Internal,
        }
    }

    /// The same refusal, saying more than its standard message.
    pub fn detail(self, detail: impl Into<Cow<'static, str>>) -> Error {
        match self {
            Error::Refused { refusal, extra, .. } => Error::Refused {
                refusal,
                detail: detail.into(),
                extra,
            },
            other => other,
        }
    }

    pub fn with(self, key: &'static str, value: impl Into<String>) -> Error {
        match self {
            Error::Refused {
                refusal, detail, ..
            } => Error::Refused {
                refusal,
                detail,
                extra: Some((key, value.into())),
            },
            other => other,
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        Error::Refused {
            refusal,
            detail: Cow::Borrowed(refusal.message()),
            extra: None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `not_pending`, saying where the request stands.
pub fn not_pending(status: crate::domain::Status) -> Error {
    Error::from(Refusal::NotPending)
        .detail(format!("the request is {}", status.as_str()))
        .with("approval_status", status.as_str())
}

/// Shorthand: `refuse(Refusal::NotFound)`.
pub fn refuse<T>(refusal: Refusal) -> Result<T> {
    Err(refusal.into())
}

/// 32 random bytes (challenges, nonces, session ids).
pub fn random32() -> [u8; 32] {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

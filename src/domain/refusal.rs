//! Every way countersign says no, in one list: each with its HTTP status and the stable `code`
//! clients switch on (API.md). Nothing else produces a code: `ApiError`, the pages and
//! `static/app.js` follow this list, and a test holds the README's table of codes to it.

/// One refusal; see [`Refusal::code`] and [`Refusal::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    // Any call.
    InvalidRequest,
    UnsupportedMediaType,
    PayloadTooLarge,
    RequestTimeout,
    RateLimited,
    NotFound,
    StoreUnavailable,
    Internal,
    // Service API.
    Unauthorized,
    Forbidden,
    UnknownAction,
    InvalidTransaction,
    IdempotencyConflict,
    Unsatisfiable,
    NotPending,
    NotRevocable,
    // The admin console.
    Lockout,
    // Approvers: sessions and enrolment.
    BadOrigin,
    AuthenticationFailed,
    InvitationUsed,
    InvitationExpired,
    RegistrationInvalid,
    UnsupportedAlgorithm,
    CredentialExists,
    // Approvers: deciding.
    NotEligible,
    SelfApprovalForbidden,
    AlreadyDecided,
    CeremonyMismatch,
    CeremonyConsumed,
    CeremonyExpired,
    AssertionInvalid,
    UserVerificationRequired,
    PossibleClone,
    CredentialNotAllowed,
    // Receipts.
    InvalidReceipt,
    ReceiptExpired,
    WrongAudience,
    TransactionMismatch,
    AlreadyRedeemed,
    ReceiptRevoked,
}

impl Refusal {
    pub const ALL: [Refusal; 40] = [
        Refusal::InvalidRequest,
        Refusal::UnsupportedMediaType,
        Refusal::PayloadTooLarge,
        Refusal::RequestTimeout,
        Refusal::RateLimited,
        Refusal::NotFound,
        Refusal::StoreUnavailable,
        Refusal::Internal,
        Refusal::Unauthorized,
        Refusal::Forbidden,
        Refusal::UnknownAction,
        Refusal::InvalidTransaction,
        Refusal::IdempotencyConflict,
        Refusal::Unsatisfiable,
        Refusal::NotPending,
        Refusal::NotRevocable,
        Refusal::Lockout,
        Refusal::BadOrigin,
        Refusal::AuthenticationFailed,
        Refusal::InvitationUsed,
        Refusal::InvitationExpired,
        Refusal::RegistrationInvalid,
        Refusal::UnsupportedAlgorithm,
        Refusal::CredentialExists,
        Refusal::NotEligible,
        Refusal::SelfApprovalForbidden,
        Refusal::AlreadyDecided,
        Refusal::CeremonyMismatch,
        Refusal::CeremonyConsumed,
        Refusal::CeremonyExpired,
        Refusal::AssertionInvalid,
        Refusal::UserVerificationRequired,
        Refusal::PossibleClone,
        Refusal::CredentialNotAllowed,
        Refusal::InvalidReceipt,
        Refusal::ReceiptExpired,
        Refusal::WrongAudience,
        Refusal::TransactionMismatch,
        Refusal::AlreadyRedeemed,
        Refusal::ReceiptRevoked,
    ];

    /// The stable `code` of the problem response.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InvalidRequest => "invalid_request",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::PayloadTooLarge => "payload_too_large",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::RateLimited => "rate_limited",
            Refusal::NotFound => "not_found",
            Refusal::StoreUnavailable => "store_unavailable",
            Refusal::Internal => "internal",
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::UnknownAction => "unknown_action",
            Refusal::InvalidTransaction => "invalid_transaction",
            Refusal::IdempotencyConflict => "idempotency_conflict",
            Refusal::Unsatisfiable => "unsatisfiable",
            Refusal::NotPending => "not_pending",
            Refusal::NotRevocable => "not_revocable",
            Refusal::Lockout => "lockout",
            Refusal::BadOrigin => "bad_origin",
            Refusal::AuthenticationFailed => "authentication_failed",
            Refusal::InvitationUsed => "invitation_used",
            Refusal::InvitationExpired => "invitation_expired",
            Refusal::RegistrationInvalid => "registration_invalid",
            Refusal::UnsupportedAlgorithm => "unsupported_algorithm",
            Refusal::CredentialExists => "credential_exists",
            Refusal::NotEligible => "not_eligible",
            Refusal::SelfApprovalForbidden => "self_approval_forbidden",
            Refusal::AlreadyDecided => "already_decided",
            Refusal::CeremonyMismatch => "ceremony_mismatch",
            Refusal::CeremonyConsumed => "ceremony_consumed",
            Refusal::CeremonyExpired => "ceremony_expired",
            Refusal::AssertionInvalid => "assertion_invalid",
            Refusal::UserVerificationRequired => "user_verification_required",
            Refusal::PossibleClone => "possible_clone",
            Refusal::CredentialNotAllowed => "credential_not_allowed",
            Refusal::InvalidReceipt => "invalid_receipt",
            Refusal::ReceiptExpired => "receipt_expired",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::TransactionMismatch => "transaction_mismatch",
            Refusal::AlreadyRedeemed => "already_redeemed",
            Refusal::ReceiptRevoked => "receipt_revoked",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::InvalidRequest
            | Refusal::InvalidTransaction
            | Refusal::RegistrationInvalid
            | Refusal::UnsupportedAlgorithm
            | Refusal::CeremonyMismatch => 400,
            Refusal::Unauthorized
            | Refusal::AuthenticationFailed
            | Refusal::CeremonyExpired
            | Refusal::AssertionInvalid
            | Refusal::UserVerificationRequired
            | Refusal::PossibleClone
            | Refusal::InvalidReceipt
            | Refusal::ReceiptExpired => 401,
            Refusal::Forbidden
            | Refusal::BadOrigin
            | Refusal::NotEligible
            | Refusal::SelfApprovalForbidden
            | Refusal::CredentialNotAllowed
            | Refusal::WrongAudience => 403,
            Refusal::NotFound | Refusal::UnknownAction => 404,
            Refusal::RequestTimeout => 408,
            Refusal::IdempotencyConflict
            | Refusal::NotPending
            | Refusal::NotRevocable
            | Refusal::Lockout
            | Refusal::CredentialExists
            | Refusal::AlreadyDecided
            | Refusal::CeremonyConsumed
            | Refusal::AlreadyRedeemed
            | Refusal::ReceiptRevoked => 409,
            Refusal::InvitationUsed | Refusal::InvitationExpired => 410,
            Refusal::PayloadTooLarge => 413,
            Refusal::UnsupportedMediaType => 415,
            Refusal::TransactionMismatch | Refusal::Unsatisfiable => 422,
            Refusal::RateLimited => 429,
            Refusal::Internal => 500,
            Refusal::StoreUnavailable => 503,
        }
    }

    /// What it means, for a problem response's `detail` when the refusal has nothing to add.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::InvalidRequest => "the request is not valid",
            Refusal::UnsupportedMediaType => "send Content-Type: application/json",
            Refusal::PayloadTooLarge => "request bodies are limited to 64 KiB",
            Refusal::RequestTimeout => "the request body did not arrive in time",
            Refusal::RateLimited => "too many requests; slow down",
            Refusal::NotFound => "no such resource",
            Refusal::StoreUnavailable => "the store is unavailable; retry later",
            Refusal::Internal => "internal error",
            Refusal::Unauthorized => "a valid API key is required",
            Refusal::Forbidden => "not allowed for this caller",
            Refusal::UnknownAction => "no such action in the policy",
            Refusal::InvalidTransaction => "the transaction is not valid",
            Refusal::IdempotencyConflict => {
                "this Idempotency-Key was used with a different request"
            }
            Refusal::Unsatisfiable => {
                "nobody who could approve this request can meet one of its stages"
            }
            Refusal::NotPending => "the request is no longer pending",
            Refusal::NotRevocable => {
                "only an approved request whose receipt was not redeemed can be revoked"
            }
            Refusal::Lockout => {
                "this change would leave an action without enough people to approve it"
            }
            Refusal::BadOrigin => "the Origin header is not this server's origin",
            Refusal::AuthenticationFailed => "sign-in failed",
            Refusal::InvitationUsed => "this enrolment link was used already",
            Refusal::InvitationExpired => "this enrolment link has expired; ask for a new one",
            Refusal::RegistrationInvalid => "the passkey registration did not verify",
            Refusal::UnsupportedAlgorithm => "only ES256 (P-256) passkeys are accepted",
            Refusal::CredentialExists => "this passkey is enrolled already",
            Refusal::NotEligible => "you are not in a group that may decide this request",
            Refusal::SelfApprovalForbidden => {
                "you initiated this request, so someone else must decide it"
            }
            Refusal::AlreadyDecided => "you have already decided this request",
            Refusal::CeremonyMismatch => "the ceremony belongs to another request or decision",
            Refusal::CeremonyConsumed => "the ceremony was used already; start again",
            Refusal::CeremonyExpired => "the ceremony expired; start again",
            Refusal::AssertionInvalid => "the passkey assertion did not verify",
            Refusal::UserVerificationRequired => {
                "the passkey did not verify who you are (PIN or biometric)"
            }
            Refusal::PossibleClone => {
                "this passkey's signature counter went backwards; it has been blocked"
            }
            Refusal::CredentialNotAllowed => "this passkey may not be used for this decision",
            Refusal::InvalidReceipt => "the receipt is not valid",
            Refusal::ReceiptExpired => "the receipt has expired",
            Refusal::WrongAudience => "this client is not the receipt's audience",
            Refusal::TransactionMismatch => {
                "the transaction does not match the one that was approved"
            }
            Refusal::AlreadyRedeemed => "this receipt was redeemed already",
            Refusal::ReceiptRevoked => "the approval was revoked; do not carry it out",
        }
    }

    /// The refusal whose `code` this is.
    pub fn from_code(code: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// As its `code` (how an operation's annotation lists what it may refuse).
impl serde::Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case_with_error_statuses() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Refusal::ALL {
            assert!(seen.insert(r.code()), "{r} twice");
            assert!(r
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!((400..600).contains(&r.status()), "{r}");
            assert_eq!(Refusal::from_code(r.code()), Some(r));
            assert!(!r.message().is_empty());
        }
    }
}

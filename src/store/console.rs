//! The part of the store the admin console needs besides the operations it carries out: what
//! became of each change, its secret (read once), and the changes approved but not yet carried
//! out. A change is recorded by the operation that makes it (an event carrying
//! [`crate::domain::CarriedOut`]), in that operation's transaction.

use async_trait::async_trait;

use super::StoreResult;
use crate::clock::UnixTime;
use crate::domain::ApprovalId;

/// What a second attempt to carry out a change gets: the change was made (or found
/// impossible) already, and this attempt is rolled back.
pub const CARRIED_OUT_ALREADY: &str = "the change was carried out already";

/// A console change as carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    pub approval_id: ApprovalId,
    pub carried_out_at: UnixTime,
    pub outcome: Option<serde_json::Value>,
    pub failure: Option<String>,
    /// Whether it produced a secret, and whether that was read.
    pub has_secret: bool,
    pub secret_taken_at: Option<UnixTime>,
}

#[async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    /// What became of the change, once carried out or found impossible.
    async fn change_record(&self, id: ApprovalId) -> StoreResult<Option<ChangeRecord>>;

    /// The sealed secret the change produced, the first time it is asked for (one conditional
    /// statement: of concurrent readers one gets it).
    async fn take_change_secret(
        &self,
        id: ApprovalId,
        now: UnixTime,
    ) -> StoreResult<Option<Vec<u8>>>;

    /// Approved changes not carried out yet (a server stopped in between), oldest first.
    async fn uncarried_changes(&self, limit: i64) -> StoreResult<Vec<ApprovalId>>;
}

/// Records the change, spends its receipt. `?1` the request, `?2` the time, `?3` the outcome,
/// `?4` the failure, `?5` the sealed secret; the same text on both databases.
pub(super) const INSERT_CARRIED: &str =
    "INSERT INTO admin_changes (approval_id, carried_out_at, outcome, failure, sealed_secret) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (approval_id) DO NOTHING";
pub(super) const SPEND_RECEIPT: &str =
    "UPDATE receipts SET redeemed_at = $2, redeemed_by = 'countersign' \
     WHERE approval_id = $1 AND redeemed_at IS NULL";
pub(super) const RECORD_COLS: &str = "approval_id, carried_out_at, outcome, failure, \
     sealed_secret IS NOT NULL AS has_secret, secret_taken_at";
/// Takes the secret, once; the same transaction then erases it (`ERASE_SECRET`): RETURNING
/// gives a row as updated, so one statement cannot both return and erase it.
pub(super) const TAKE_SECRET: &str = "UPDATE admin_changes SET secret_taken_at = $2 \
     WHERE approval_id = $1 AND secret_taken_at IS NULL AND sealed_secret IS NOT NULL \
     RETURNING sealed_secret";
pub(super) const ERASE_SECRET: &str =
    "UPDATE admin_changes SET sealed_secret = NULL WHERE approval_id = $1";
pub(super) const UNCARRIED: &str = "SELECT a.id FROM approvals a \
     WHERE a.action = 'countersign.admin' AND a.status = 'approved' \
       AND NOT EXISTS (SELECT 1 FROM admin_changes c WHERE c.approval_id = a.id) \
     ORDER BY a.decided_at LIMIT $1";

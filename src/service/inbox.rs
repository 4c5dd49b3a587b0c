//! What an approver sees in lists: the requests they may decide (the inbox) and those they
//! decided (their history). Each page is one query; eligibility is applied by the query before
//! the page is cut.

use super::read_request::settle;
use super::{refuse, Result, Services};
use crate::domain::text::identity_key;
use crate::domain::{initiator::MAX_NAME_CHARS, ApprovalId, Refusal, Request, User, Vote};
use crate::store::{Cursor, InboxOf, Listed, Page};

/// The longest page a caller may ask for, and the one they get by default.
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 100;

/// One page of a list, and where the next one starts.
#[derive(Debug)]
pub struct Listing {
    pub items: Vec<Listed>,
    pub next: Option<Cursor>,
}

/// A page of `items` asked for with `limit`: a full page continues after its last item.
pub(super) fn listing(
    items: Vec<Listed>,
    limit: u32,
    cursor: impl Fn(&Listed) -> Cursor,
) -> Listing {
    let full = items.len() >= usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if full { items.last().map(cursor) } else { None };
    Listing { items, next }
}

/// Pending, unexpired requests this person may decide and has not, newest first.
#[tracing::instrument(skip(svc, user), fields(user = %user.username))]
pub async fn inbox(svc: &Services, user: &User, page: Page) -> Result<Listing> {
    let now = svc.clock.now();
    // A username that does not fold (never one the CLI made) can be nobody's initiator.
    let identity = identity_key(&user.username, MAX_NAME_CHARS).unwrap_or_default();
    let of = InboxOf {
        user: user.id,
        identity: &identity,
        groups: &user.groups,
    };
    let items = svc.store.inbox(&of, now, page).await?;
    Ok(listing(items, page.limit, |l| Cursor {
        at: l.request.created_at,
        id: l.request.id,
    }))
}

/// Requests this person decided, most recent decision first. A request still pending whose
/// time is up is shown as expired (see `Request::status_at`) without a write.
#[tracing::instrument(skip(svc, user), fields(user = %user.username))]
pub async fn history(svc: &Services, user: &User, page: Page) -> Result<Listing> {
    let now = svc.clock.now();
    let mut items = svc.store.history(user.id, page).await?;
    for l in &mut items {
        l.request.status = l.request.status_at(now);
    }
    Ok(listing(items, page.limit, |l| Cursor {
        at: l
            .votes
            .iter()
            .find(|v| v.user_id == user.id)
            .map_or(l.request.created_at, |v| v.at),
        id: l.request.id,
    }))
}

/// One request as an approver sees it, with every decision on it: shown to whoever may decide
/// it, to whoever did (their history) and to admins, to nobody else (`not_eligible`).
#[tracing::instrument(skip(svc, user), fields(user = %user.username))]
pub async fn request_for(
    svc: &Services,
    user: &User,
    id: ApprovalId,
) -> Result<Option<(Request, Vec<Vote>)>> {
    let now = svc.clock.now();
    let Some(snap) = svc.store.snapshot(id).await? else {
        return Ok(None);
    };
    let decided = snap.votes.iter().any(|v| v.user_id == user.id);
    // Admins see every request (the console lists them all); deciding stays with its groups.
    if !user.in_any(&snap.request.required.groups())
        && !decided
        && !super::console::is_admin(svc, user)
    {
        return refuse(Refusal::NotEligible);
    }
    Ok(Some((settle(svc, snap.request, now).await?, snap.votes)))
}

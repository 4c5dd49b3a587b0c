//! What the console shows: people with their passkeys, clients with their endpoints and
//! delivery logs, signing keys, every request, and the audit log. Admins only.

use super::super::inbox::{listing, Listing};
use super::super::{Error, Result, Services};
use super::admin_only;
use crate::audit::{AuditEvent, ChainVerifier};
use crate::domain::{Client, Credential, Delivery, Refusal, User, Webhook};
use crate::store::{Cursor, Page, RequestFilter, SigningKeyRow};

/// Deliveries a client's row shows.
const DELIVERIES_SHOWN: i64 = 10;
/// Audit events read for one page of a filtered view at most: a filter that matches little
/// gives a short page with a link onwards rather than a scan of the whole log.
const AUDIT_SCAN: i64 = 5000;

pub async fn people(svc: &Services, user: &User) -> Result<Vec<(User, Vec<Credential>)>> {
    admin_only(svc, user)?;
    let mut out = Vec::new();
    for person in svc.store.users().await? {
        let passkeys = svc.store.credentials_of(person.id).await?;
        out.push((person, passkeys));
    }
    Ok(out)
}

/// A client with its endpoint and latest deliveries.
pub struct ClientRow {
    pub client: Client,
    pub webhook: Option<Webhook>,
    pub deliveries: Vec<Delivery>,
}

pub async fn clients(svc: &Services, user: &User) -> Result<Vec<ClientRow>> {
    admin_only(svc, user)?;
    let mut out = Vec::new();
    for client in svc.store.clients().await? {
        let webhook = svc.store.webhook(client.id).await?;
        let deliveries = match &webhook {
            Some(_) => {
                svc.store
                    .deliveries(client.id, None, DELIVERIES_SHOWN)
                    .await?
            }
            None => Vec::new(),
        };
        out.push(ClientRow {
            client,
            webhook,
            deliveries,
        });
    }
    Ok(out)
}

pub async fn keys(svc: &Services, user: &User) -> Result<Vec<SigningKeyRow>> {
    admin_only(svc, user)?;
    Ok(svc.store.signing_keys().await?)
}

/// Every request `filter` admits, newest first, a page at a time.
pub async fn requests(
    svc: &Services,
    user: &User,
    filter: &RequestFilter,
    page: Page,
) -> Result<Listing> {
    admin_only(svc, user)?;
    let now = svc.clock.now();
    let mut items = svc.store.all_requests(filter, page).await?;
    for l in &mut items {
        l.request.status = l.request.status_at(now);
    }
    Ok(listing(items, page.limit, |l| Cursor {
        at: l.request.created_at,
        id: l.request.id,
    }))
}

/// Which audit events to show: each filter applies when set.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub kind: Option<String>,
    pub actor: Option<String>,
    pub approval_id: Option<String>,
    /// RFC 3339 bounds on the event's time, compared as text (they are all UTC, `Z`).
    pub since: Option<String>,
    pub until: Option<String>,
}

impl AuditFilter {
    pub fn admits(&self, e: &AuditEvent) -> bool {
        self.kind.as_ref().is_none_or(|k| &e.kind == k)
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self
                .approval_id
                .as_ref()
                .is_none_or(|id| e.approval_id.as_ref() == Some(id))
            && self
                .since
                .as_ref()
                .is_none_or(|s| e.at.as_str() >= s.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|u| e.at.as_str() < u.as_str())
    }
}

/// Events after `after` that `filter` admits, oldest first, at most `limit`, and where the
/// next page starts (none at the head of the log).
pub async fn audit(
    svc: &Services,
    user: &User,
    filter: &AuditFilter,
    after: i64,
    limit: usize,
) -> Result<(Vec<AuditEvent>, Option<i64>)> {
    admin_only(svc, user)?;
    if after < 0 {
        return Err(Error::from(Refusal::InvalidRequest).detail("after is a sequence number"));
    }
    let mut out = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    loop {
        let page = svc.store.audit_page(cursor, 1000).await?;
        let Some(last) = page.last() else {
            return Ok((out, None));
        };
        let last = last.seq;
        scanned += i64::try_from(page.len()).unwrap_or(i64::MAX);
        for e in page {
            cursor = e.seq;
            if filter.admits(&e) {
                out.push(e);
                if out.len() >= limit {
                    return Ok((out, Some(cursor)));
                }
            }
        }
        if scanned >= AUDIT_SCAN {
            return Ok((out, Some(last)));
        }
    }
}

/// Where the console's audit page starts when not told: the last stretch of the log that one
/// page scans, so that it opens on recent events.
pub async fn recent_start(svc: &Services, user: &User) -> Result<i64> {
    admin_only(svc, user)?;
    let (head, _) = svc.store.audit_head().await?;
    Ok((head - AUDIT_SCAN).max(0))
}

/// Whether the whole chain verifies up to its head: the number of events, or what is wrong.
pub async fn verify_chain(svc: &Services, user: &User) -> Result<Result<i64, String>> {
    admin_only(svc, user)?;
    let mut verifier = ChainVerifier::default();
    let mut after = 0;
    loop {
        let page = svc.store.audit_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if let Err(e) = verifier.push(e) {
                return Ok(Err(e.to_string()));
            }
        }
    }
    let (seq, hash) = svc.store.audit_head().await?;
    Ok(verifier.finish(seq, &hash).map_err(|e| e.to_string()))
}

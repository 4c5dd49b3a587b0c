//! A client with the audit right reads the hash-chained audit log, a page at a time.

use super::{refuse, Error, Result, Services};
use crate::audit::AuditEvent;
use crate::domain::{Client, Refusal};

pub const MAX_LIMIT: i64 = 1000;

/// Events after `after`, oldest first, at most `limit`, and the `seq` the next page starts
/// after (none when this is the last).
#[tracing::instrument(skip(svc, client), fields(client = %client.name))]
pub async fn export(
    svc: &Services,
    client: &Client,
    after: i64,
    limit: i64,
) -> Result<(Vec<AuditEvent>, Option<i64>)> {
    if !client.rights.audit {
        return Err(
            Error::from(Refusal::Forbidden).detail("this client may not read the audit log")
        );
    }
    if !(1..=MAX_LIMIT).contains(&limit) || after < 0 {
        return Err(Error::from(Refusal::InvalidRequest).detail(format!(
            "limit is 1 to {MAX_LIMIT}; after is a sequence number"
        )));
    }
    // The key may have been answered from memory: read the revocation now, before any event.
    if !svc.store.client_active(client.id).await? {
        return refuse(Refusal::Unauthorized);
    }
    // One extra row tells whether there is a next page.
    let mut events = svc.store.audit_page(after, limit + 1).await?;
    let more = i64::try_from(events.len()).unwrap_or(i64::MAX) > limit;
    events.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok((events, next))
}

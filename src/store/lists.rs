//! How lists of requests are asked for: a page after a cursor, whose inbox, which requests.

use crate::clock::UnixTime;
use crate::domain::{ApprovalId, UserId};

/// Where a list continues: after the entry with this time and request id (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: UnixTime,
    pub id: ApprovalId,
}

impl Cursor {
    /// `AT.ID`, as it travels in a `before` query parameter.
    pub fn parse(s: &str) -> Option<Cursor> {
        let (at, id) = s.split_once('.')?;
        Some(Cursor {
            at: at.parse().ok()?,
            id: ApprovalId::parse(id).ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at, self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub before: Option<Cursor>,
    pub limit: u32,
}

impl Page {
    /// The cursor as a query binds it: NULLs for the first page.
    pub(crate) fn bounds(&self) -> (Option<i64>, Option<String>) {
        match self.before {
            Some(c) => (Some(c.at), Some(c.id.to_string())),
            None => (None, None),
        }
    }
}

/// Which requests the console lists: each filter applies when set (times are creation times,
/// `until` exclusive).
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub status: Option<String>,
    pub action: Option<String>,
    pub initiator: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
}

/// Whose inbox: what decides whether a pending request belongs in it (an eligible group, not
/// their own request unless the policy allowed that, not decided by them yet) is applied by
/// the query itself, before the page is cut, so no volume of other work can push a request
/// out of the inbox of the people who must decide it.
#[derive(Debug, Clone)]
pub struct InboxOf<'a> {
    pub user: UserId,
    /// The person's username in the identity form initiators are compared in.
    pub identity: &'a str,
    pub groups: &'a [String],
}

//! View models the templates render: the shell around every page, times, formatted fields,
//! statuses, risk, and the rows of the inbox and the history. Every piece of text a person
//! reads goes through `domain::text::reveal`, so nothing unseen reaches the screen unmarked.

use crate::clock::{rfc3339, UnixTime};
use crate::domain::decision::approvals;
use crate::domain::text::reveal;
use crate::domain::{Decision, Request, Status, User, Vote};
use crate::jcs::Value;
use crate::policy::{DisplayValue, Format, Policy};
use crate::service::inbox::Listing;

/// How many display fields a list row shows; the request page shows all of them.
const KEY_FIELDS: usize = 3;

pub struct Shell {
    pub user: Option<Who>,
    pub nav: &'static str,
    pub title: String,
    /// Whether the person may use the admin console (its link is shown).
    pub admin: bool,
}

pub struct Who {
    pub name: String,
    pub username: String,
}

impl Shell {
    pub fn new(user: Option<&User>, nav: &'static str, title: &str) -> Shell {
        Shell {
            user: user.map(|u| Who {
                name: reveal(&u.display_name).0,
                username: u.username.clone(),
            }),
            nav,
            title: title.to_owned(),
            admin: false,
        }
    }

    pub fn with_admin(mut self, admin: bool) -> Shell {
        self.admin = admin;
        self
    }
}

/// A moment, rendered as UTC by the server; the script adds the viewer's local time.
pub struct When {
    pub iso: String,
    pub utc: String,
}

impl When {
    pub fn at(t: UnixTime) -> When {
        let iso = rfc3339(t);
        let utc = match (iso.get(..10), iso.get(11..16)) {
            (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
            _ => iso.clone(),
        };
        When { iso, utc }
    }
}

/// One displayed field of the policy, formatted.
pub struct Field {
    pub label: String,
    /// `text`, `money`, `iban`, `datetime` or `json`: picks the layout.
    pub kind: &'static str,
    pub value: String,
    pub currency: String,
    /// The amount exactly as the service sent it, when grouping changed how it looks.
    pub exact: String,
    pub present: bool,
    /// The value held characters that are invisible or reorder text; they are shown as
    /// code points and the field is flagged.
    pub hidden_chars: bool,
}

impl Field {
    fn from(v: DisplayValue) -> Field {
        let kind = match v.format {
            Format::Text => "text",
            Format::Money => "money",
            Format::Iban => "iban",
            Format::Datetime => "datetime",
            Format::Json => "json",
        };
        let (value, hidden_value) = reveal(&v.formatted);
        let (currency, hidden_currency) = reveal(v.currency.as_deref().unwrap_or_default());
        let exact = if v.format == Format::Money && v.present && v.raw != v.formatted {
            v.raw
        } else {
            String::new()
        };
        Field {
            label: v.label,
            kind,
            value,
            currency,
            exact,
            present: v.present,
            hidden_chars: hidden_value || hidden_currency,
        }
    }
}

/// A leaf of the transaction no display field shows, unseen characters made visible.
pub struct OtherView {
    pub pointer: String,
    pub value: String,
    pub hidden_chars: bool,
}

/// Every leaf of a request's transaction (`tx`, parsed) that its display fields do not show.
pub fn others(policy: &Policy, r: &Request, tx: &Value) -> Vec<OtherView> {
    policy
        .other_fields(&r.action, tx)
        .into_iter()
        .map(|o| {
            let (pointer, hidden_pointer) = reveal(&o.pointer);
            let (value, hidden_value) = reveal(&o.value);
            OtherView {
                pointer,
                value,
                hidden_chars: hidden_pointer || hidden_value,
            }
        })
        .collect()
}

/// The policy's display fields of a request, formatted.
pub fn fields(policy: &Policy, r: &Request) -> Vec<Field> {
    match r.transaction() {
        Ok(tx) => fields_of(policy, r, &tx),
        Err(_) => Vec::new(),
    }
}

/// [`fields`] of a transaction already parsed.
pub fn fields_of(policy: &Policy, r: &Request, tx: &Value) -> Vec<Field> {
    let Some(action) = policy.action(&r.action) else {
        return Vec::new();
    };
    action
        .display_values(tx)
        .into_iter()
        .map(Field::from)
        .collect()
}

pub fn title(policy: &Policy, r: &Request) -> String {
    policy
        .action(&r.action)
        .map_or_else(|| r.action.clone(), |p| p.title.clone())
}

/// "3 min", "1 h 5 min", "2 d 4 h": precise enough to act on, short enough for a list.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        _ => match (s / 86_400, (s % 86_400) / 3600) {
            (d, 0) => format!("{d} d"),
            (d, h) => format!("{d} d {h} h"),
        },
    }
}

fn ago(secs: i64) -> String {
    if secs < 60 {
        "just now".to_owned()
    } else {
        format!("{} ago", span(secs))
    }
}

pub struct StatusView {
    /// The CSS modifier and the machine word: pending, approved, rejected, expired, cancelled,
    /// revoked.
    pub key: &'static str,
    pub label: &'static str,
}

pub fn status_view(s: Status) -> StatusView {
    let label = match s {
        Status::Pending => "Waiting for decision",
        Status::Approved => "Approved",
        Status::Rejected => "Rejected",
        Status::Expired => "Expired",
        Status::Cancelled => "Cancelled",
        Status::Revoked => "Revoked",
    };
    StatusView {
        key: s.as_str(),
        label,
    }
}

/// A row of the inbox or the history.
pub struct Row {
    pub id: String,
    pub title: String,
    pub status: StatusView,
    pub fields: Vec<Field>,
    pub initiator: String,
    pub age: String,
    pub seconds_left: i64,
    pub time_left: String,
    pub progress: String,
    pub risk: Option<RiskView>,
    /// History only: what this user decided, and when.
    pub mine: Option<Mine>,
}

/// What this user decided on a request.
pub struct Mine {
    /// approved or rejected
    pub word: &'static str,
    pub at: When,
}

pub fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    }
}

impl Mine {
    pub fn of(votes: &[Vote], user: &User) -> Option<Mine> {
        votes.iter().find(|v| v.user_id == user.id).map(|v| Mine {
            word: decision_word(v.decision),
            at: When::at(v.at),
        })
    }
}

pub fn row(policy: &Policy, r: &Request, votes: &[Vote], now: UnixTime) -> Row {
    let approved = approvals(votes.iter().map(|v| v.decision));
    let seconds_left = (r.expires_at - now).max(0);
    Row {
        id: r.id.to_string(),
        title: title(policy, r),
        status: status_view(r.status_at(now)),
        fields: fields(policy, r).into_iter().take(KEY_FIELDS).collect(),
        initiator: reveal(&r.initiator.label()).0,
        age: ago(now - r.created_at),
        seconds_left,
        time_left: span(seconds_left),
        progress: format!("{approved} of {} approvals", r.required.approvals()),
        risk: risk(r),
        mine: None,
    }
}

/// The rows of a page of the inbox or the history (with what `mine`, if given, decided), and
/// the cursor of the page after it.
pub fn rows(
    policy: &Policy,
    listing: &Listing,
    now: UnixTime,
    mine: Option<&User>,
) -> (Vec<Row>, Option<String>) {
    let rows = listing
        .items
        .iter()
        .map(|l| Row {
            mine: mine.and_then(|user| Mine::of(&l.votes, user)),
            ..row(policy, &l.request, &l.votes, now)
        })
        .collect();
    (rows, listing.next.map(|c| c.to_string()))
}

pub struct RiskView {
    pub score: u32,
    /// low, medium or high: the badge colour and word.
    pub level: &'static str,
    pub label: &'static str,
    pub reasons: Vec<String>,
}

pub fn risk(r: &Request) -> Option<RiskView> {
    let risk = r.risk.as_ref()?;
    let (level, label) = match risk.score {
        0..=39 => ("low", "Low risk"),
        40..=69 => ("medium", "Elevated risk"),
        _ => ("high", "High risk"),
    };
    Some(RiskView {
        score: risk.score,
        level,
        label,
        reasons: risk.reasons.iter().map(|s| reveal(s).0).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(-5), "0 s");
        assert_eq!(span(59), "59 s");
        assert_eq!(span(1800), "30 min");
        assert_eq!(span(3600), "1 h");
        assert_eq!(span(3900), "1 h 5 min");
        assert_eq!(span(2 * 86_400 + 4 * 3600 + 59), "2 d 4 h");
        assert_eq!(ago(10), "just now");
        assert_eq!(ago(600), "10 min ago");
    }

    #[test]
    fn utc_text() {
        let w = When::at(1_795_000_000);
        assert_eq!(w.iso, "2026-11-18T11:06:40Z");
        assert_eq!(w.utc, "2026-11-18 11:06 UTC");
    }
}

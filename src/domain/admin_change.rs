//! Changes to countersign itself, as the admin console proposes them: each is the transaction of
//! a `countersign.admin` request, decided by other admins and carried out once approved. The
//! JSON an admin sends is parsed here into one typed change, and written back in one canonical
//! form, which is what the request's transaction hash binds and the approval page shows.

use serde::{Deserialize, Serialize};

use super::client::valid_name;
use super::delivery::{is_webhook_event, WEBHOOK_EVENTS};
use super::ids::{ApprovalId, CredentialId};
use super::people::username;
use super::requirement::Stage;

/// The built-in action every console change is a request of.
pub const ADMIN_ACTION: &str = "countersign.admin";
/// The client console changes are requests of, and the audience of their receipts: the server
/// itself, which carries them out. No API client may take the name.
pub const RESERVED_CLIENT: &str = "countersign";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(tag = "op", deny_unknown_fields)]
pub enum AdminChange {
    #[serde(rename = "users.invite")]
    UsersInvite {
        username: String,
        #[serde(default)]
        name: Option<String>,
        groups: Vec<String>,
        #[serde(default)]
        email: Option<String>,
    },
    #[serde(rename = "users.groups")]
    UsersGroups {
        username: String,
        groups: Vec<String>,
    },
    #[serde(rename = "users.disable")]
    UsersDisable { username: String },
    #[serde(rename = "credentials.revoke")]
    CredentialsRevoke {
        username: String,
        credential_id: String,
    },
    #[serde(rename = "clients.create")]
    ClientsCreate {
        name: String,
        /// Action-id globs it may request approvals for.
        #[serde(default)]
        create: Vec<String>,
        /// Audiences (globs) whose receipts it may redeem.
        #[serde(default)]
        redeem: Vec<String>,
        #[serde(default)]
        audit: bool,
    },
    #[serde(rename = "clients.revoke")]
    ClientsRevoke { name: String },
    #[serde(rename = "clients.webhook")]
    ClientsWebhook {
        name: String,
        url: String,
        #[serde(default)]
        events: Vec<String>,
    },
    #[serde(rename = "keys.rotate")]
    KeysRotate {},
    #[serde(rename = "keys.retire")]
    KeysRetire { kid: String },
    #[serde(rename = "approvals.revoke")]
    ApprovalsRevoke { approval_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChange {
    #[error("{0}")]
    Shape(String),
    #[error("{field}: {why}")]
    Field { field: &'static str, why: String },
}

fn field(field: &'static str, why: impl Into<String>) -> InvalidChange {
    InvalidChange::Field {
        field,
        why: why.into(),
    }
}

/// Group and client names, as the CLI takes them.
fn name(field_name: &'static str, text: &str) -> Result<String, InvalidChange> {
    match valid_name(text) {
        true => Ok(text.to_owned()),
        false => Err(field(
            field_name,
            "1 to 64 ASCII letters, digits, '-', '_' or '.'",
        )),
    }
}

fn groups(list: &[String]) -> Result<Vec<String>, InvalidChange> {
    let mut out = Vec::with_capacity(list.len());
    for g in list {
        let g = name("groups", g)?;
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out.sort();
    Ok(out)
}

/// Action and audience globs: names with `*` for any run of characters.
fn globs(field_name: &'static str, list: &[String]) -> Result<Vec<String>, InvalidChange> {
    let mut out = Vec::with_capacity(list.len());
    for g in list {
        if !valid_name(&g.replace('*', "x")) {
            return Err(field(
                field_name,
                "globs of 1 to 64 ASCII letters, digits, '-', '_', '.' or '*'",
            ));
        }
        if !out.contains(g) {
            out.push(g.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn person(text: &str) -> Result<String, InvalidChange> {
    username(text).map_err(|e| field("username", e.to_string()))
}

impl AdminChange {
    /// A change as an admin sent it: one of the known ops, no unknown members, every field in
    /// the form the CLI would accept; names folded and lists sorted, so the same change has one
    /// spelling (and one transaction hash).
    pub fn parse(value: &serde_json::Value) -> Result<AdminChange, InvalidChange> {
        let change: AdminChange = serde_json::from_value(value.clone())
            .map_err(|e| InvalidChange::Shape(e.to_string()))?;
        change.normalised()
    }

    fn normalised(self) -> Result<AdminChange, InvalidChange> {
        use AdminChange::*;
        Ok(match self {
            UsersInvite {
                username,
                name: display,
                groups: list,
                email,
            } => {
                let display = display
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty());
                if display.as_ref().is_some_and(|d| d.chars().count() > 128) {
                    return Err(field("name", "at most 128 characters"));
                }
                let email = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
                if email
                    .as_ref()
                    .is_some_and(|e| e.len() > 254 || e.split('@').count() != 2)
                {
                    return Err(field("email", "not a mail address"));
                }
                UsersInvite {
                    username: person(&username)?,
                    name: display,
                    groups: groups(&list)?,
                    email,
                }
            }
            UsersGroups {
                username,
                groups: list,
            } => UsersGroups {
                username: person(&username)?,
                groups: groups(&list)?,
            },
            UsersDisable { username } => UsersDisable {
                username: person(&username)?,
            },
            CredentialsRevoke {
                username,
                credential_id,
            } => CredentialsRevoke {
                username: person(&username)?,
                credential_id: CredentialId::parse(&credential_id)
                    .map_err(|e| field("credential_id", e.to_string()))?
                    .to_string(),
            },
            ClientsCreate {
                name: n,
                create,
                redeem,
                audit,
            } => {
                if create.is_empty() && redeem.is_empty() && !audit {
                    return Err(field("create", "a client needs at least one right"));
                }
                let n = name("name", &n)?;
                if n == RESERVED_CLIENT {
                    return Err(field("name", "is the server's own"));
                }
                ClientsCreate {
                    name: n,
                    create: globs("create", &create)?,
                    redeem: globs("redeem", &redeem)?,
                    audit,
                }
            }
            ClientsRevoke { name: n } => ClientsRevoke {
                name: name("name", &n)?,
            },
            ClientsWebhook {
                name: n,
                url,
                events,
            } => {
                let mut events: Vec<String> = match events.is_empty() {
                    true => WEBHOOK_EVENTS
                        .iter()
                        .map(|(e, _)| (*e).to_owned())
                        .collect(),
                    false => events,
                };
                if let Some(e) = events.iter().find(|e| !is_webhook_event(e)) {
                    return Err(field("events", format!("unknown event {e:?}")));
                }
                events.sort();
                events.dedup();
                if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048
                {
                    return Err(field("url", "an http(s) URL of at most 2048 bytes"));
                }
                ClientsWebhook {
                    name: name("name", &n)?,
                    url,
                    events,
                }
            }
            KeysRotate {} => KeysRotate {},
            KeysRetire { kid } => {
                if kid.is_empty() || kid.len() > 128 || !kid.is_ascii() {
                    return Err(field("kid", "a key id as the JWKS lists it"));
                }
                KeysRetire { kid }
            }
            ApprovalsRevoke { approval_id } => ApprovalsRevoke {
                approval_id: ApprovalId::parse(&approval_id)
                    .map_err(|e| field("approval_id", e.to_string()))?
                    .to_string(),
            },
        })
    }

    pub fn op(&self) -> &'static str {
        use AdminChange::*;
        match self {
            UsersInvite { .. } => "users.invite",
            UsersGroups { .. } => "users.groups",
            UsersDisable { .. } => "users.disable",
            CredentialsRevoke { .. } => "credentials.revoke",
            ClientsCreate { .. } => "clients.create",
            ClientsRevoke { .. } => "clients.revoke",
            ClientsWebhook { .. } => "clients.webhook",
            KeysRotate {} => "keys.rotate",
            KeysRetire { .. } => "keys.retire",
            ApprovalsRevoke { .. } => "approvals.revoke",
        }
    }

    /// The transaction of the request that carries it: the change in its one spelling.
    pub fn transaction(&self) -> serde_json::Value {
        // Serialising a enum of strings, bools and lists cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// What the change does to who could decide, for the lockout check.
    pub fn apply(&self, people: &mut Vec<Able>) {
        match self {
            AdminChange::UsersGroups { username, groups } => {
                for p in people.iter_mut().filter(|p| &p.username == username) {
                    p.groups = groups.clone();
                }
            }
            AdminChange::UsersDisable { username } => people.retain(|p| &p.username != username),
            AdminChange::CredentialsRevoke {
                username,
                credential_id,
            } => {
                for p in people.iter_mut().filter(|p| &p.username == username) {
                    p.passkeys.retain(|c| c != credential_id);
                }
                people.retain(|p| !p.passkeys.is_empty());
            }
            // An invitation adds nobody until its passkey is enrolled; the rest touch no person.
            _ => {}
        }
    }
}

/// A person as the lockout check counts them: enabled, with these usable passkeys (never
/// empty: people without one cannot decide and are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Able {
    pub username: String,
    pub groups: Vec<String>,
    pub passkeys: Vec<String>,
}

/// An action's stage that could no longer be met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub action: String,
    pub stage: String,
    pub quorum: u32,
    /// People who could still decide in it (for the admin action, besides the proposer).
    pub able: u32,
}

/// The first stage of any action that `change` would leave with fewer people able to decide
/// in it than its quorum, and fewer than `people` (as they are now) hold: a stage short
/// already is not made a reason to refuse changes that do not touch it. The admin action also
/// needs someone besides `proposer`, who never approves their own change.
pub fn lockout<'a>(
    actions: impl IntoIterator<Item = (&'a str, &'a [Stage])>,
    people: &[Able],
    change: &AdminChange,
    proposer: &str,
) -> Option<Shortfall> {
    let mut after = people.to_vec();
    change.apply(&mut after);
    let able = |who: &[Able], action: &str, stage: &Stage| {
        let n = who
            .iter()
            .filter(|p| stage.admits(&p.groups))
            .filter(|p| action != ADMIN_ACTION || p.username != proposer)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    actions.into_iter().find_map(|(action, stages)| {
        stages.iter().find_map(|stage| {
            let left = able(&after, action, stage);
            (left < stage.quorum && left < able(people, action, stage)).then(|| Shortfall {
                action: action.to_owned(),
                stage: stage.name.clone(),
                quorum: stage.quorum,
                able: left,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<AdminChange, InvalidChange> {
        AdminChange::parse(&v)
    }

    #[test]
    fn every_op_parses_into_one_spelling() {
        let invite = parse(
            json!({"op": "users.invite", "username": "Bob", "name": " Bob ",
            "groups": ["finance", "admins", "finance"], "email": "bob@example.com"}),
        )
        .unwrap();
        assert_eq!(
            invite.transaction(),
            json!({"op": "users.invite", "username": "bob", "name": "Bob",
                "groups": ["admins", "finance"], "email": "bob@example.com"})
        );
        let cases = [
            json!({"op": "users.groups", "username": "bob", "groups": []}),
            json!({"op": "users.disable", "username": "bob"}),
            json!({"op": "clients.create", "name": "payments", "create": ["payment.*"]}),
            json!({"op": "clients.revoke", "name": "payments"}),
            json!({"op": "clients.webhook", "name": "payments", "url": "https://h.example/x"}),
            json!({"op": "keys.rotate"}),
            json!({"op": "keys.retire", "kid": "abc"}),
            json!({"op": "approvals.revoke", "approval_id": "0190b1a2-0000-7000-8000-000000000001"}),
        ];
        for case in cases {
            let change = parse(case.clone()).unwrap();
            assert_eq!(change.op(), case["op"]);
            assert_eq!(parse(change.transaction()).unwrap(), change, "{case}");
        }
        let hook =
            parse(json!({"op": "clients.webhook", "name": "p", "url": "https://h/x"})).unwrap();
        let AdminChange::ClientsWebhook { events, .. } = hook else {
            panic!("{hook:?}")
        };
        assert_eq!(events.len(), WEBHOOK_EVENTS.len());
    }

    #[test]
    fn malformed_changes_are_refused() {
        let bad = [
            json!({"op": "users.delete", "username": "bob"}),
            json!({"username": "bob"}),
            json!({"op": "users.disable", "username": "bob", "extra": 1}),
            json!({"op": "users.disable", "username": "b\u{200b}ob"}),
            json!({"op": "users.disable"}),
            json!({"op": "users.groups", "username": "bob", "groups": ["fin ance"]}),
            json!({"op": "users.invite", "username": "bob", "groups": [], "email": "nobody"}),
            json!({"op": "credentials.revoke", "username": "bob", "credential_id": "not b64!"}),
            json!({"op": "clients.create", "name": "payments"}),
            json!({"op": "clients.create", "name": "countersign", "audit": true}),
            json!({"op": "clients.create", "name": "p", "redeem": ["a b"]}),
            json!({"op": "clients.webhook", "name": "p", "url": "ftp://h/x"}),
            json!({"op": "clients.webhook", "name": "p", "url": "https://h/x", "events": ["x"]}),
            json!({"op": "keys.retire", "kid": ""}),
            json!({"op": "approvals.revoke", "approval_id": "42"}),
            json!(["users.disable"]),
        ];
        for case in bad {
            assert!(parse(case.clone()).is_err(), "{case}");
        }
    }

    fn able(username: &str, groups: &[&str], passkeys: &[&str]) -> Able {
        Able {
            username: username.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            passkeys: passkeys.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn stage(groups: &[&str], quorum: u32) -> Stage {
        Stage {
            name: "default".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            quorum,
        }
    }

    #[test]
    fn a_change_that_leaves_a_stage_short_is_a_lockout() {
        let payments = [stage(&["finance"], 2)];
        let admin = [stage(&["admins"], 1)];
        let actions = || [("payment", &payments[..]), (ADMIN_ACTION, &admin[..])];
        let people = vec![
            able("ann", &["admins"], &["a1"]),
            able("bea", &["admins", "finance"], &["b1", "b2"]),
            able("cid", &["finance"], &["c1"]),
        ];
        let groups = |username: &str, groups: &[&str]| AdminChange::UsersGroups {
            username: username.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        assert_eq!(
            lockout(actions(), &people, &groups("cid", &["finance", "x"]), "ann"),
            None
        );
        // The proposer never counts for the admin action: bea is the one other admin.
        assert_eq!(
            lockout(actions(), &people, &groups("bea", &["finance"]), "ann"),
            Some(Shortfall {
                action: ADMIN_ACTION.into(),
                stage: "default".into(),
                quorum: 1,
                able: 0
            })
        );
        // Someone else may take bea out of the admins: ann is left to approve.
        assert_eq!(
            lockout(actions(), &people, &groups("bea", &["finance"]), "cid"),
            None
        );
        let disable = AdminChange::UsersDisable {
            username: "cid".into(),
        };
        assert_eq!(
            lockout(actions(), &people, &disable, "ann").unwrap().action,
            "payment"
        );
        // One of two passkeys revoked leaves the person able; the last one does not.
        let revoke = |c: &str| AdminChange::CredentialsRevoke {
            username: "bea".into(),
            credential_id: c.into(),
        };
        assert_eq!(lockout(actions(), &people, &revoke("b1"), "ann"), None);
        let mut one_left = people.clone();
        revoke("b1").apply(&mut one_left);
        assert!(lockout(actions(), &one_left, &revoke("b2"), "ann").is_some());
        // A stage short already does not block what leaves it as it is.
        let short = vec![people[0].clone(), people[1].clone()];
        assert_eq!(
            lockout(actions(), &short, &AdminChange::KeysRotate {}, "ann"),
            None
        );
        assert_eq!(
            lockout(actions(), &short, &groups("ann", &["admins", "x"]), "bea"),
            None
        );
        // ... but refuses what makes it shorter still.
        assert!(lockout(actions(), &short, &groups("bea", &["admins"]), "ann").is_some());
        // Inviting adds nobody yet; clients and keys touch nobody.
        let mut after = people.clone();
        AdminChange::KeysRotate {}.apply(&mut after);
        assert_eq!(after, people);
    }
}

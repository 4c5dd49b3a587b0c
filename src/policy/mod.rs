//! The policy file: which actions exist, who may decide them, what approvers
//! see, and which escalations apply to a given transaction.

mod decimal;
mod display;
mod raw;
mod redact;
mod rules;
mod stages;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

pub use crate::domain::{Requirement, Stage};
use crate::domain::{ADMIN_ACTION, DEFAULT_STAGE};
use crate::jcs::Value;
pub use decimal::{Decimal, InvalidDecimal};
pub use display::{money, other_fields, DisplayField, DisplayValue, Format, OtherField, REDACTED};
use raw::{check_names, invalid, is_identifier, toml_error, ttl, RawAction, RawPolicy};
pub use redact::{commitment, Redaction};
pub use rules::{Condition, Rule};

const BUILTIN: &str = include_str!("../../policy.example.toml");

const REQUEST_TTL_MIN: Duration = Duration::from_secs(60);
const REQUEST_TTL_MAX: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const RECEIPT_TTL_MIN: Duration = Duration::from_secs(30);
const RECEIPT_TTL_MAX: Duration = Duration::from_secs(60 * 60);
const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(30 * 60);
const DEFAULT_RECEIPT_TTL: Duration = Duration::from_secs(5 * 60);
const DEFAULT_ADMIN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The audience of a console change's receipt: the server itself, which carries it out.
pub const ADMIN_AUDIENCE: &str = crate::domain::admin_change::RESERVED_CLIENT;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub revision: String,
    pub actions: Vec<ActionPolicy>,
    /// The `[admin]` table: how console changes are decided.
    pub admin: AdminPolicy,
}

/// How many admins decide a console change, besides the one who proposed it, and how long it
/// may wait for them.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminPolicy {
    pub quorum: u32,
    pub request_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionPolicy {
    pub id: String,
    pub title: String,
    pub audiences: Vec<String>,
    /// Every one must be met; one named `default` when the file gives approvers and quorum.
    pub stages: Vec<Stage>,
    pub self_approval: bool,
    pub request_ttl: Duration,
    pub receipt_ttl: Duration,
    pub display: Vec<DisplayField>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// TOML syntax, type, missing or unknown key; `message` is toml's own,
    /// which names the key and shows its line.
    #[error("{context}: {message}")]
    Toml { context: String, message: String },
    #[error("policy file: at least one [[action]] is required")]
    NoActions,
    #[error("action {action:?}: {key} {problem}")]
    Invalid {
        action: String,
        key: String,
        problem: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRefusal {
    #[error("missing required field {pointer:?} (label {label:?})")]
    MissingField { pointer: String, label: String },
    #[error("field {pointer:?} is not a decimal string")]
    NotDecimal { pointer: String },
    #[error("field {pointer:?} needs a currency string at {currency_pointer:?}")]
    MissingCurrency {
        pointer: String,
        currency_pointer: String,
    },
    #[error("field {pointer:?} is not an RFC 3339 date-time string")]
    NotDatetime { pointer: String },
    #[error("field {pointer:?} is not an IBAN (letters, digits and spaces)")]
    NotIban { pointer: String },
    #[error("field {pointer:?} is not a string, number or boolean")]
    NotText { pointer: String },
    #[error("rule {rule:?} needs field {pointer:?}, which is missing")]
    RuleFieldMissing { rule: String, pointer: String },
    #[error(
        "rule {rule:?} needs field {pointer:?} to be a decimal string or a non-negative integer"
    )]
    RuleFieldNotDecimal { rule: String, pointer: String },
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|err| toml_error(text, &err))?;
        if raw.action.is_empty() {
            return Err(PolicyError::NoActions);
        }
        let mut ids = BTreeSet::new();
        let mut actions = Vec::with_capacity(raw.action.len());
        for raw_action in raw.action {
            if raw_action.id == ADMIN_ACTION {
                return Err(invalid(
                    ADMIN_ACTION,
                    "id",
                    "is built in: its quorum and request_ttl go in the [admin] table",
                ));
            }
            let action = ActionPolicy::from_raw(raw_action)?;
            if !ids.insert(action.id.clone()) {
                return Err(invalid(&action.id, "id", "is used by more than one action"));
            }
            actions.push(action);
        }
        let admin = raw.admin.unwrap_or_default();
        let quorum = admin.quorum.unwrap_or(1);
        if quorum == 0 {
            return Err(invalid(
                ADMIN_ACTION,
                "[admin] quorum",
                "must be at least 1",
            ));
        }
        let request_ttl = ttl(
            ADMIN_ACTION,
            "[admin] request_ttl",
            admin.request_ttl.as_deref(),
            DEFAULT_ADMIN_TTL,
            (REQUEST_TTL_MIN, REQUEST_TTL_MAX, "1m and 7d"),
        )?;
        Ok(Policy {
            revision: URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes())),
            actions,
            admin: AdminPolicy {
                quorum,
                request_ttl,
            },
        })
    }

    /// The built-in action of console changes, decided by members of `group` (the
    /// configuration's `admin_group`), never by their proposer. Its one display field is the
    /// op; every other field of the change is shown as an "other field".
    pub fn admin_action(&self, group: &str) -> ActionPolicy {
        ActionPolicy {
            id: ADMIN_ACTION.to_owned(),
            title: "Change to countersign".to_owned(),
            audiences: vec![ADMIN_AUDIENCE.to_owned()],
            stages: vec![Stage {
                name: DEFAULT_STAGE.to_owned(),
                groups: vec![group.to_owned()],
                quorum: self.admin.quorum,
            }],
            self_approval: false,
            request_ttl: self.admin.request_ttl,
            receipt_ttl: DEFAULT_RECEIPT_TTL,
            display: vec![DisplayField {
                label: "Change".to_owned(),
                pointer: "/op".to_owned(),
                format: Format::Text,
                currency_pointer: None,
                optional: false,
                redact: false,
            }],
            rules: Vec::new(),
        }
    }

    /// This policy with its built-in console action, decided by `group`.
    pub fn with_admin(mut self, group: &str) -> Policy {
        let admin = self.admin_action(group);
        self.actions.retain(|a| a.id != ADMIN_ACTION);
        self.actions.push(admin);
        self
    }

    /// The example policy shipped in the binary. Returns a Result rather than
    /// panicking; a unit test proves it parses.
    pub fn builtin() -> Result<Policy, PolicyError> {
        Policy::parse(BUILTIN)
    }

    pub fn action(&self, id: &str) -> Option<&ActionPolicy> {
        self.actions.iter().find(|action| action.id == id)
    }

    /// What an approver must see besides the display fields of `action`: every other leaf of
    /// `tx`, or every leaf if the action is no longer in the policy.
    pub fn other_fields(&self, action: &str, tx: &Value) -> Vec<OtherField> {
        match self.action(action) {
            Some(a) => a.other_fields(tx),
            None => other_fields(tx, &[]),
        }
    }

    pub fn groups(&self) -> BTreeSet<String> {
        let mut groups = BTreeSet::new();
        for action in &self.actions {
            groups.extend(action.stages.iter().flat_map(|s| s.groups.iter().cloned()));
            for rule in &action.rules {
                groups.extend(rule.approvers.iter().flatten().cloned());
                groups.extend(rule.add_stage.iter().flat_map(|s| s.groups.iter().cloned()));
            }
        }
        groups
    }
}

impl ActionPolicy {
    /// Values for the approval page, in display order. Meant for transactions
    /// that passed `evaluate`; a value that would have been refused is shown
    /// as its raw text rather than hidden.
    pub fn display_values(&self, tx: &Value) -> Vec<DisplayValue> {
        self.display.iter().map(|field| field.value(tx)).collect()
    }

    /// The leaves of `tx` that its display fields (values and currencies) do not show.
    pub fn other_fields(&self, tx: &Value) -> Vec<OtherField> {
        let shown: Vec<&str> = self
            .display
            .iter()
            .flat_map(|f| std::iter::once(f.pointer.as_str()).chain(f.currency_pointer.as_deref()))
            .collect();
        other_fields(tx, &shown)
    }

    fn from_raw(raw: RawAction) -> Result<ActionPolicy, PolicyError> {
        let id = raw.id;
        if !is_identifier(&id) {
            return Err(invalid(&id, "id", "must match ^[a-z0-9][a-z0-9._-]*$"));
        }
        if raw.title.trim().is_empty() {
            return Err(invalid(&id, "title", "must not be empty"));
        }
        check_names(&id, "audiences", &raw.audiences)?;
        let stages = stages::action_stages(&id, raw.approvers, raw.quorum, raw.stage)?;
        let request_ttl = ttl(
            &id,
            "request_ttl",
            raw.request_ttl.as_deref(),
            DEFAULT_REQUEST_TTL,
            (REQUEST_TTL_MIN, REQUEST_TTL_MAX, "1m and 7d"),
        )?;
        let receipt_ttl = ttl(
            &id,
            "receipt_ttl",
            raw.receipt_ttl.as_deref(),
            DEFAULT_RECEIPT_TTL,
            (RECEIPT_TTL_MIN, RECEIPT_TTL_MAX, "30s and 60m"),
        )?;
        let display = raw
            .display
            .into_iter()
            .enumerate()
            .map(|(index, field)| DisplayField::from_raw(&id, index, field))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rule.len());
        for (index, raw_rule) in raw.rule.into_iter().enumerate() {
            let rule = Rule::from_raw(&id, index, raw_rule, &stages)?;
            if rules.iter().any(|earlier| earlier.name == rule.name) {
                return Err(invalid(
                    &id,
                    format!("rule {:?}: name", rule.name),
                    "is used by more than one rule of this action",
                ));
            }
            if let Some(added) = &rule.add_stage {
                let taken = stages.iter().any(|s| s.name == added.name)
                    || rules
                        .iter()
                        .filter_map(|r| r.add_stage.as_ref())
                        .any(|s| s.name == added.name);
                if taken {
                    return Err(invalid(
                        &id,
                        format!("rule {:?}: add_stage.name", rule.name),
                        format!("{:?} names a stage this action has already", added.name),
                    ));
                }
            }
            rules.push(rule);
        }
        // A rule on a secret would tell whoever reads the requirement something about it.
        for rule in &rules {
            let subject = match &rule.when {
                Condition::AtLeast { pointer, .. } | Condition::Equals { pointer, .. } => pointer,
                _ => continue,
            };
            let related = |a: &str, b: &str| {
                a.strip_prefix(b)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            };
            if let Some(secret) = display.iter().find(|f| {
                f.redact && (related(subject, &f.pointer) || related(&f.pointer, subject))
            }) {
                return Err(invalid(
                    &id,
                    format!("rule {:?}: when.pointer", rule.name),
                    format!(
                        "{subject:?} is (or holds) the redacted field {:?}; a rule cannot look at a secret",
                        secret.pointer
                    ),
                ));
            }
        }
        Ok(ActionPolicy {
            id,
            title: raw.title,
            audiences: raw.audiences,
            stages,
            self_approval: raw.self_approval,
            request_ttl,
            receipt_ttl,
            display,
            rules,
        })
    }
}

#[cfg(test)]
mod tests;

//! The policy file: which actions exist, who may decide them, what approvers
//! see, and which escalations apply to a given transaction.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::domain::Requirement;
use crate::jcs::Value;

const BUILTIN: &str = include_str!("../policy.example.toml");

const REQUEST_TTL_MIN: Duration = Duration::from_secs(60);
const REQUEST_TTL_MAX: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const RECEIPT_TTL_MIN: Duration = Duration::from_secs(30);
const RECEIPT_TTL_MAX: Duration = Duration::from_secs(60 * 60);
const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(30 * 60);
const DEFAULT_RECEIPT_TTL: Duration = Duration::from_secs(5 * 60);
const MAX_RISK: u32 = 100;
const ABSENT: &str = "—";

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub revision: String,
    pub actions: Vec<ActionPolicy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionPolicy {
    pub id: String,
    pub title: String,
    pub audiences: Vec<String>,
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub self_approval: bool,
    pub request_ttl: Duration,
    pub receipt_ttl: Duration,
    pub display: Vec<DisplayField>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayField {
    pub label: String,
    pub pointer: String,
    pub format: Format,
    pub currency_pointer: Option<String>,
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Money,
    Iban,
    Datetime,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub when: Condition,
    pub approvers: Option<Vec<String>>,
    pub quorum: Option<u32>,
    pub add_quorum: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    AtLeast { pointer: String, at_least: Decimal },
    Equals { pointer: String, equals: String },
    RiskAtLeast { risk_at_least: u32 },
}

/// A non-negative decimal compared exactly. Amounts are money: a float would
/// let "10000.00" and a value a hair below it compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    // Kept normalised (no leading zeros, no trailing fraction zeros) so that
    // equal values are equal structurally and Ord can compare digit strings.
    int: String,
    frac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a decimal string (expected digits with an optional fraction, e.g. \"1250.00\")")]
pub struct InvalidDecimal;

impl Decimal {
    /// `None` for negative numbers: amounts are never negative.
    pub fn from_i64(n: i64) -> Option<Decimal> {
        u64::try_from(n).ok().map(Decimal::from_u64)
    }

    pub fn from_u64(n: u64) -> Decimal {
        Decimal {
            int: n.to_string(),
            frac: String::new(),
        }
    }
}

impl FromStr for Decimal {
    type Err = InvalidDecimal;

    fn from_str(s: &str) -> Result<Decimal, InvalidDecimal> {
        let (int, frac) = match s.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (s, None),
        };
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || (int.len() > 1 && int.starts_with('0')) {
            return Err(InvalidDecimal);
        }
        if let Some(frac) = frac {
            if !all_digits(frac) {
                return Err(InvalidDecimal);
            }
        }
        Ok(Decimal {
            int: int.to_owned(),
            frac: frac.unwrap_or("").trim_end_matches('0').to_owned(),
        })
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        // Without leading zeros a longer integer part is a larger number; the
        // normalised fractions then compare digit by digit as strings do.
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.frac.is_empty() {
            f.write_str(&self.int)
        } else {
            write!(f, "{}.{}", self.int, self.frac)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisplayValue {
    pub label: String,
    pub format: Format,
    pub raw: String,
    pub formatted: String,
    pub currency: Option<String>,
    pub present: bool,
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
            let action = ActionPolicy::from_raw(raw_action)?;
            if !ids.insert(action.id.clone()) {
                return Err(invalid(&action.id, "id", "is used by more than one action"));
            }
            actions.push(action);
        }
        Ok(Policy {
            revision: URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes())),
            actions,
        })
    }

    /// The example policy shipped in the binary. Returns a Result rather than
    /// panicking; a unit test proves it parses.
    pub fn builtin() -> Result<Policy, PolicyError> {
        Policy::parse(BUILTIN)
    }

    pub fn action(&self, id: &str) -> Option<&ActionPolicy> {
        self.actions.iter().find(|action| action.id == id)
    }

    pub fn groups(&self) -> BTreeSet<String> {
        let mut groups = BTreeSet::new();
        for action in &self.actions {
            groups.extend(action.approvers.iter().cloned());
            for rule in &action.rules {
                groups.extend(rule.approvers.iter().flatten().cloned());
            }
        }
        groups
    }
}

impl ActionPolicy {
    /// Validates the transaction against the action (required display fields
    /// present, money fields decimal strings, currency present when money has
    /// currency_pointer, rule pointers resolvable) and computes what is
    /// required. risk_score is the request's optional risk score (0..=100).
    pub fn evaluate(&self, tx: &Value, risk_score: Option<u32>) -> Result<Requirement, TxRefusal> {
        for field in &self.display {
            field.check(tx)?;
        }
        let mut requirement = Requirement {
            approvals: self.quorum,
            groups: self.approvers.clone(),
            rules: Vec::new(),
        };
        for rule in &self.rules {
            if !rule.matches(tx, risk_score)? {
                continue;
            }
            if let Some(approvers) = &rule.approvers {
                requirement.groups.clone_from(approvers);
            }
            if let Some(quorum) = rule.quorum {
                requirement.approvals = requirement.approvals.max(quorum);
            }
            if let Some(add) = rule.add_quorum {
                requirement.approvals = requirement.approvals.saturating_add(add);
            }
            requirement.rules.push(rule.name.clone());
        }
        Ok(requirement)
    }

    /// Values for the approval page, in display order. Meant for transactions
    /// that passed `evaluate`; a value that would have been refused is shown
    /// as its raw text rather than hidden.
    pub fn display_values(&self, tx: &Value) -> Vec<DisplayValue> {
        self.display.iter().map(|field| field.value(tx)).collect()
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
        check_names(&id, "approvers", &raw.approvers)?;
        if raw.quorum < 1 {
            return Err(invalid(&id, "quorum", "must be at least 1"));
        }
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
            let rule = Rule::from_raw(&id, index, raw_rule)?;
            if rules.iter().any(|earlier| earlier.name == rule.name) {
                return Err(invalid(
                    &id,
                    format!("rule {:?}: name", rule.name),
                    "is used by more than one rule of this action",
                ));
            }
            rules.push(rule);
        }
        Ok(ActionPolicy {
            id,
            title: raw.title,
            audiences: raw.audiences,
            approvers: raw.approvers,
            quorum: raw.quorum,
            self_approval: raw.self_approval,
            request_ttl,
            receipt_ttl,
            display,
            rules,
        })
    }
}

impl DisplayField {
    fn from_raw(action: &str, index: usize, raw: RawDisplay) -> Result<DisplayField, PolicyError> {
        if raw.label.trim().is_empty() {
            return Err(invalid(
                action,
                format!("display #{}: label", index + 1),
                "must not be empty",
            ));
        }
        let context = format!("display {:?}", raw.label);
        check_pointer(action, &format!("{context}: pointer"), &raw.pointer)?;
        if let Some(currency) = &raw.currency_pointer {
            if raw.format != Format::Money {
                return Err(invalid(
                    action,
                    format!("{context}: currency_pointer"),
                    "is only allowed with format = \"money\"",
                ));
            }
            check_pointer(action, &format!("{context}: currency_pointer"), currency)?;
        }
        Ok(DisplayField {
            label: raw.label,
            pointer: raw.pointer,
            format: raw.format,
            currency_pointer: raw.currency_pointer,
            optional: raw.optional,
        })
    }

    fn check(&self, tx: &Value) -> Result<(), TxRefusal> {
        let Some(value) = present(tx, &self.pointer) else {
            if self.optional {
                return Ok(());
            }
            return Err(TxRefusal::MissingField {
                pointer: self.pointer.clone(),
                label: self.label.clone(),
            });
        };
        let pointer = || self.pointer.clone();
        match self.format {
            Format::Text => match value {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
                _ => Err(TxRefusal::NotText { pointer: pointer() }),
            },
            Format::Money => {
                // A JSON number is refused too: the service must state the
                // amount exactly as it will be executed, fraction digits included.
                let is_decimal = value.as_str().is_some_and(|s| s.parse::<Decimal>().is_ok());
                if !is_decimal {
                    return Err(TxRefusal::NotDecimal { pointer: pointer() });
                }
                match &self.currency_pointer {
                    Some(currency) if currency_at(tx, currency).is_none() => {
                        Err(TxRefusal::MissingCurrency {
                            pointer: pointer(),
                            currency_pointer: currency.clone(),
                        })
                    }
                    _ => Ok(()),
                }
            }
            Format::Iban => match value.as_str() {
                Some(s) if is_iban_text(s) => Ok(()),
                _ => Err(TxRefusal::NotIban { pointer: pointer() }),
            },
            Format::Datetime => match value.as_str() {
                Some(s) if is_rfc3339(s) => Ok(()),
                _ => Err(TxRefusal::NotDatetime { pointer: pointer() }),
            },
            Format::Json => Ok(()),
        }
    }

    fn value(&self, tx: &Value) -> DisplayValue {
        let mut shown = DisplayValue {
            label: self.label.clone(),
            format: self.format,
            raw: String::new(),
            formatted: ABSENT.to_owned(),
            currency: None,
            present: false,
        };
        let Some(value) = present(tx, &self.pointer) else {
            return shown;
        };
        shown.present = true;
        shown.raw = match value {
            Value::String(s) => s.clone(),
            other => compact_json(other),
        };
        shown.formatted = match (self.format, value) {
            (Format::Money, Value::String(s)) if s.parse::<Decimal>().is_ok() => money(s),
            (Format::Iban, Value::String(s)) => iban(s),
            (Format::Json, other) => compact_json(other),
            _ => shown.raw.clone(),
        };
        if self.format == Format::Money {
            shown.currency = self
                .currency_pointer
                .as_deref()
                .and_then(|p| currency_at(tx, p))
                .map(str::to_owned);
        }
        shown
    }
}

impl Rule {
    fn from_raw(action: &str, index: usize, raw: RawRule) -> Result<Rule, PolicyError> {
        if !is_identifier(&raw.name) || raw.name == "default" {
            let problem = if raw.name == "default" {
                "is reserved for the requirement when no rule matched".to_owned()
            } else {
                format!(
                    "{:?} must match ^[a-z0-9][a-z0-9._-]*$ (matched names are joined with '+')",
                    raw.name
                )
            };
            return Err(invalid(
                action,
                format!("rule #{}: name", index + 1),
                problem,
            ));
        }
        let context = format!("rule {:?}", raw.name);
        let when = Condition::from_raw(action, &context, raw.when)?;
        if raw.approvers.is_none() && raw.quorum.is_none() && raw.add_quorum.is_none() {
            return Err(invalid(
                action,
                context,
                "needs at least one of approvers, quorum or add_quorum",
            ));
        }
        if let Some(approvers) = &raw.approvers {
            check_names(action, &format!("{context}: approvers"), approvers)?;
        }
        for (key, value) in [("quorum", raw.quorum), ("add_quorum", raw.add_quorum)] {
            if value == Some(0) {
                return Err(invalid(
                    action,
                    format!("{context}: {key}"),
                    "must be at least 1",
                ));
            }
        }
        Ok(Rule {
            name: raw.name,
            when,
            approvers: raw.approvers,
            quorum: raw.quorum,
            add_quorum: raw.add_quorum,
        })
    }

    fn matches(&self, tx: &Value, risk_score: Option<u32>) -> Result<bool, TxRefusal> {
        match &self.when {
            Condition::AtLeast { pointer, at_least } => {
                // Fail closed: leaving the amount out must not dodge the escalation.
                let value = present(tx, pointer).ok_or_else(|| TxRefusal::RuleFieldMissing {
                    rule: self.name.clone(),
                    pointer: pointer.clone(),
                })?;
                let amount = match value {
                    Value::String(s) => s.parse::<Decimal>().ok(),
                    Value::Number(n) => Decimal::from_i64(*n),
                    _ => None,
                }
                .ok_or_else(|| TxRefusal::RuleFieldNotDecimal {
                    rule: self.name.clone(),
                    pointer: pointer.clone(),
                })?;
                Ok(amount >= *at_least)
            }
            Condition::Equals { pointer, equals } => {
                Ok(tx.pointer(pointer).and_then(Value::as_str) == Some(equals.as_str()))
            }
            Condition::RiskAtLeast { risk_at_least } => {
                Ok(risk_score.is_some_and(|risk| risk >= *risk_at_least))
            }
        }
    }
}

impl Condition {
    fn from_raw(action: &str, context: &str, raw: RawCondition) -> Result<Condition, PolicyError> {
        let key = |name: &str| format!("{context}: when.{name}");
        let condition = match raw {
            RawCondition {
                pointer: Some(pointer),
                at_least: Some(at_least),
                equals: None,
                risk_at_least: None,
            } => {
                check_pointer(action, &key("pointer"), &pointer)?;
                let at_least = at_least.parse::<Decimal>().map_err(|err| {
                    invalid(action, key("at_least"), format!("{at_least:?} is {err}"))
                })?;
                Condition::AtLeast { pointer, at_least }
            }
            RawCondition {
                pointer: Some(pointer),
                at_least: None,
                equals: Some(equals),
                risk_at_least: None,
            } => {
                check_pointer(action, &key("pointer"), &pointer)?;
                Condition::Equals { pointer, equals }
            }
            RawCondition {
                pointer: None,
                at_least: None,
                equals: None,
                risk_at_least: Some(risk_at_least),
            } => {
                if risk_at_least > MAX_RISK {
                    return Err(invalid(
                        action,
                        key("risk_at_least"),
                        format!("must be at most {MAX_RISK} (risk scores are 0..=100)"),
                    ));
                }
                Condition::RiskAtLeast { risk_at_least }
            }
            _ => {
                return Err(invalid(
                    action,
                    format!("{context}: when"),
                    "must be exactly one of { pointer, at_least }, { pointer, equals } or { risk_at_least }",
                ))
            }
        };
        Ok(condition)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    action: Vec<RawAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    id: String,
    title: String,
    audiences: Vec<String>,
    approvers: Vec<String>,
    quorum: u32,
    #[serde(default)]
    self_approval: bool,
    request_ttl: Option<String>,
    receipt_ttl: Option<String>,
    #[serde(default)]
    display: Vec<RawDisplay>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisplay {
    label: String,
    pointer: String,
    #[serde(default)]
    format: Format,
    currency_pointer: Option<String>,
    #[serde(default)]
    optional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    when: RawCondition,
    approvers: Option<Vec<String>>,
    quorum: Option<u32>,
    add_quorum: Option<u32>,
}

// One struct with every key optional rather than a serde untagged enum: an
// untagged enum's error says only "did not match any variant", which names
// neither the action nor the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    pointer: Option<String>,
    at_least: Option<String>,
    equals: Option<String>,
    risk_at_least: Option<u32>,
}

fn invalid(action: &str, key: impl Into<String>, problem: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        action: action.to_owned(),
        key: key.into(),
        problem: problem.into(),
    }
}

/// toml's message names the key and its line but not the action; find the
/// action from the `[[action]]` header that precedes the error's position.
fn toml_error(text: &str, err: &toml::de::Error) -> PolicyError {
    let context = err
        .span()
        .and_then(|span| action_context(text, span.start))
        .unwrap_or_else(|| "policy file".to_owned());
    PolicyError::Toml {
        context,
        message: err.to_string().trim_end().to_owned(),
    }
}

fn action_context(text: &str, offset: usize) -> Option<String> {
    let mut headers = 0usize;
    let mut line_start = 0usize;
    for line in text.split_inclusive('\n') {
        if line_start > offset {
            break;
        }
        if is_action_header(line) {
            headers += 1;
        }
        line_start += line.len();
    }
    let index = headers.checked_sub(1)?;
    // Only a type or key error leaves the file syntactically valid; then the
    // id can still be read even though the full parse failed.
    let id = toml::from_str::<toml::Table>(text).ok().and_then(|table| {
        table
            .get("action")?
            .as_array()?
            .get(index)?
            .get("id")?
            .as_str()
            .map(str::to_owned)
    });
    Some(match id {
        Some(id) => format!("action {id:?}"),
        None => format!("action #{}", index + 1),
    })
}

fn is_action_header(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("[[")
        .and_then(|rest| rest.split_once("]]"))
        .is_some_and(|(name, _)| name.trim() == "action")
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

fn check_names(action: &str, key: &str, names: &[String]) -> Result<(), PolicyError> {
    if names.is_empty() {
        return Err(invalid(action, key, "must not be empty"));
    }
    if names.iter().any(|name| name.trim().is_empty()) {
        return Err(invalid(action, key, "must not contain an empty name"));
    }
    Ok(())
}

fn check_pointer(action: &str, key: &str, pointer: &str) -> Result<(), PolicyError> {
    if is_json_pointer(pointer) {
        Ok(())
    } else {
        Err(invalid(
            action,
            key,
            format!(
                "{pointer:?} is not an RFC 6901 JSON pointer (empty or starting with '/', '~' only as ~0 or ~1)"
            ),
        ))
    }
}

fn is_json_pointer(pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    if !pointer.starts_with('/') {
        return false;
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

fn ttl(
    action: &str,
    key: &str,
    text: Option<&str>,
    default: Duration,
    (min, max, range): (Duration, Duration, &str),
) -> Result<Duration, PolicyError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let duration = humantime::parse_duration(text)
        .map_err(|err| invalid(action, key, format!("{text:?} is not a duration: {err}")))?;
    if duration < min || duration > max {
        return Err(invalid(
            action,
            key,
            format!("must be between {range} (got {text:?})"),
        ));
    }
    Ok(duration)
}

/// A JSON null counts as absent: an approver shown "null" has been shown nothing.
fn present<'a>(tx: &'a Value, pointer: &str) -> Option<&'a Value> {
    tx.pointer(pointer)
        .filter(|value| !matches!(value, Value::Null))
}

fn currency_at<'a>(tx: &'a Value, pointer: &str) -> Option<&'a str> {
    tx.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|currency| !currency.trim().is_empty())
}

// Only ASCII letters and digits: a look-alike character in an account number
// shown to an approver is exactly the attack this server exists to stop.
fn is_iban_text(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
}

/// A decimal string with its integer digits grouped in thousands: `1234567.5` → `1,234,567.5`.
pub(crate) fn money(decimal: &str) -> String {
    let (int, frac) = match decimal.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (decimal, None),
    };
    let digits = int.len();
    let mut out = String::with_capacity(decimal.len() + digits / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (digits - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

fn iban(s: &str) -> String {
    let chars: Vec<char> = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    chars
        .chunks(4)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// JSON text of a value for display: its RFC 8785 form, the same text the hash covers.
fn compact_json(value: &Value) -> String {
    crate::jcs::canonicalize(value)
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with real
/// calendar limits so the browser is never handed a date it would mangle.
fn is_rfc3339(s: &str) -> bool {
    let number = |from: usize, to: usize| -> Option<u32> {
        let part = s.get(from..to)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let byte_is =
        |at: usize, allowed: &[u8]| s.as_bytes().get(at).is_some_and(|b| allowed.contains(b));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0, 4),
        number(5, 7),
        number(8, 10),
        number(11, 13),
        number(14, 16),
        number(17, 19),
    ) else {
        return false;
    };
    let separators = byte_is(4, b"-")
        && byte_is(7, b"-")
        && byte_is(10, b"Tt")
        && byte_is(13, b":")
        && byte_is(16, b":");
    let in_range = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    let Some(mut rest) = s.get(19..) else {
        return false;
    };
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = fraction.get(digits..).unwrap_or("");
    }
    let offset_ok = match rest {
        "Z" | "z" => true,
        _ => {
            let b = rest.as_bytes();
            let sign = b.first().is_some_and(|c| *c == b'+' || *c == b'-');
            let digits = |t: Option<&str>| {
                t.filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<u32>().ok())
            };
            sign && rest.len() == 6
                && b.get(3) == Some(&b':')
                && digits(rest.get(1..3)).is_some_and(|h| h <= 23)
                && digits(rest.get(4..6)).is_some_and(|m| m <= 59)
        }
    };
    separators && in_range && offset_ok
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jcs;

    fn tx(json: &[u8]) -> Value {
        match jcs::parse_object(json) {
            Ok(value) => value,
            Err(_) => panic!(
                "test transaction is not valid JSON: {}",
                String::from_utf8_lossy(json)
            ),
        }
    }

    fn builtin() -> Policy {
        match Policy::builtin() {
            Ok(policy) => policy,
            Err(err) => panic!("builtin policy does not parse: {err}"),
        }
    }

    fn action<'a>(policy: &'a Policy, id: &str) -> &'a ActionPolicy {
        match policy.action(id) {
            Some(action) => action,
            None => panic!("no action {id}"),
        }
    }

    fn dec(s: &str) -> Decimal {
        match s.parse() {
            Ok(d) => d,
            Err(_) => panic!("not a decimal: {s}"),
        }
    }

    fn payment(amount: &str) -> Value {
        tx(format!(
            r#"{{"amount":"{amount}","currency":"EUR","payee":{{"name":"ACME GmbH","iban":"de89370400440532013000"}}}}"#
        )
        .as_bytes())
    }

    fn evaluate(action: &ActionPolicy, tx: &Value, risk: Option<u32>) -> Requirement {
        match action.evaluate(tx, risk) {
            Ok(requirement) => requirement,
            Err(err) => panic!("refused: {err}"),
        }
    }

    fn refusal(action: &ActionPolicy, tx: &Value) -> TxRefusal {
        match action.evaluate(tx, None) {
            Ok(requirement) => panic!("accepted: {requirement:?}"),
            Err(err) => err,
        }
    }

    const MINIMAL: &str = r#"
[[action]]
id = "test.action"
title = "Test"
audiences = ["svc"]
approvers = ["team"]
quorum = 1
request_ttl = "30m"
receipt_ttl = "5m"

[[action.display]]
label = "Amount"
pointer = "/amount"
format = "money"
currency_pointer = "/currency"

[[action.rule]]
name = "big"
when = { pointer = "/amount", at_least = "100" }
quorum = 2
"#;

    fn parse_error(text: &str) -> String {
        match Policy::parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(err) => err.to_string(),
        }
    }

    /// Replaces `from` in MINIMAL (which must occur) and expects an error
    /// naming the action and every one of `needles`.
    fn assert_invalid(from: &str, to: &str, needles: &[&str]) {
        assert!(MINIMAL.contains(from), "{from:?} not in MINIMAL");
        let message = parse_error(&MINIMAL.replacen(from, to, 1));
        assert!(
            message.contains("action \"test.action\"") || to.contains("id ="),
            "{message}"
        );
        for needle in needles {
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
    }

    #[test]
    fn builtin_parses_with_the_documented_actions() {
        let policy = builtin();
        let ids: Vec<&str> = policy.actions.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            ids,
            ["payment.transfer", "admin.role_change", "secret.export"]
        );

        let pay = action(&policy, "payment.transfer");
        assert_eq!(pay.audiences, ["payments-service"]);
        assert_eq!(pay.approvers, ["finance"]);
        assert_eq!(pay.quorum, 1);
        assert!(!pay.self_approval);
        assert_eq!(pay.request_ttl, Duration::from_secs(30 * 60));
        assert_eq!(pay.receipt_ttl, Duration::from_secs(5 * 60));
        let labels: Vec<&str> = pay.display.iter().map(|d| d.label.as_str()).collect();
        assert_eq!(labels, ["Amount", "Payee", "IBAN", "Reference"]);
        assert_eq!(pay.display[0].format, Format::Money);
        assert_eq!(
            pay.display[0].currency_pointer.as_deref(),
            Some("/currency")
        );
        assert_eq!(pay.display[2].format, Format::Iban);
        assert!(pay.display[3].optional);
        assert_eq!(
            pay.rules[0].when,
            Condition::AtLeast {
                pointer: "/amount".into(),
                at_least: dec("10000.00")
            }
        );
        assert_eq!(
            pay.rules[1].when,
            Condition::RiskAtLeast { risk_at_least: 70 }
        );

        let admin = action(&policy, "admin.role_change");
        assert_eq!(admin.audiences, ["admin-console"]);
        assert_eq!(
            admin.rules[0].when,
            Condition::Equals {
                pointer: "/role".into(),
                equals: "owner".into()
            }
        );

        let secret = action(&policy, "secret.export");
        assert_eq!(secret.quorum, 2);
        assert_eq!(secret.receipt_ttl, Duration::from_secs(120));
        assert_eq!(secret.display[2].format, Format::Datetime);
        assert!(secret.display[2].optional);

        let groups: Vec<String> = policy.groups().into_iter().collect();
        assert_eq!(groups, ["admins", "finance", "finance-senior", "security"]);
        assert!(policy.action("nope").is_none());
    }

    #[test]
    fn revision_is_base64url_sha256_of_the_bytes() {
        let policy = builtin();
        assert_eq!(
            policy.revision,
            URL_SAFE_NO_PAD.encode(Sha256::digest(BUILTIN.as_bytes()))
        );
        assert_eq!(policy.revision.len(), 43);
        assert!(!policy.revision.contains(['=', '+', '/']));
        let edited = match Policy::parse(&format!("{BUILTIN}\n# edited\n")) {
            Ok(p) => p,
            Err(err) => panic!("{err}"),
        };
        assert_ne!(edited.revision, policy.revision);
    }

    #[test]
    fn minimal_policy_parses_with_defaults() {
        let text = MINIMAL
            .replace("request_ttl = \"30m\"\n", "")
            .replace("receipt_ttl = \"5m\"\n", "");
        let policy = match Policy::parse(&text) {
            Ok(p) => p,
            Err(err) => panic!("{err}"),
        };
        let a = action(&policy, "test.action");
        assert_eq!(a.request_ttl, DEFAULT_REQUEST_TTL);
        assert_eq!(a.receipt_ttl, DEFAULT_RECEIPT_TTL);
        assert!(!a.self_approval);
    }

    #[test]
    fn unknown_keys_are_refused_naming_key_and_line() {
        let message = parse_error(&MINIMAL.replace("quorum = 1\n", "quorum = 1\nquorom = 2\n"));
        assert!(message.contains("action \"test.action\""), "{message}");
        assert!(message.contains("unknown field `quorom`"), "{message}");
        assert!(message.contains("line 8"), "{message}");

        let message =
            parse_error(&MINIMAL.replace("format = \"money\"", "format = \"money\"\nlabell = 1"));
        assert!(message.contains("action \"test.action\""), "{message}");
        assert!(message.contains("unknown field `labell`"), "{message}");

        let message = parse_error(
            &MINIMAL.replace("at_least = \"100\"", "at_least = \"100\", at_most = \"5\""),
        );
        assert!(message.contains("unknown field `at_most`"), "{message}");

        let message = parse_error(&format!("version = 2\n{MINIMAL}"));
        assert!(message.starts_with("policy file:"), "{message}");
        assert!(message.contains("unknown field `version`"), "{message}");

        let message = parse_error(&MINIMAL.replace("[[action.rule]]", "[[action.rules]]"));
        assert!(message.contains("unknown field `rules`"), "{message}");
    }

    #[test]
    fn toml_type_and_missing_key_errors_name_the_action() {
        let message = parse_error(&MINIMAL.replace("quorum = 1", "quorum = -1"));
        assert!(message.contains("action \"test.action\""), "{message}");
        assert!(message.contains("quorum"), "{message}");

        let message = parse_error(&MINIMAL.replace("title = \"Test\"\n", ""));
        assert!(message.contains("action \"test.action\""), "{message}");
        assert!(message.contains("missing field `title`"), "{message}");

        let message = parse_error(&MINIMAL.replace("format = \"money\"", "format = \"cash\""));
        assert!(message.contains("unknown variant `cash`"), "{message}");

        // A syntax error leaves no id to read: the action is named by position.
        let message = parse_error(&format!("{MINIMAL}\n[[action]]\nid = \"broken"));
        assert!(message.contains("action #2"), "{message}");
    }

    #[test]
    fn no_actions_is_refused() {
        assert_eq!(
            parse_error("# nothing\n"),
            "policy file: at least one [[action]] is required"
        );
    }

    #[test]
    fn action_level_validation_errors() {
        assert_invalid("quorum = 1", "quorum = 0", &["quorum must be at least 1"]);
        assert_invalid(
            "title = \"Test\"",
            "title = \" \"",
            &["title must not be empty"],
        );
        assert_invalid(
            "audiences = [\"svc\"]",
            "audiences = []",
            &["audiences must not be empty"],
        );
        assert_invalid(
            "audiences = [\"svc\"]",
            "audiences = [\"svc\", \"\"]",
            &["audiences must not contain an empty name"],
        );
        assert_invalid(
            "approvers = [\"team\"]",
            "approvers = []",
            &["approvers must not be empty"],
        );
        assert_invalid(
            "approvers = [\"team\"]",
            "approvers = [\"\"]",
            &["approvers must not contain an empty name"],
        );
        assert_invalid(
            "request_ttl = \"30m\"",
            "request_ttl = \"59s\"",
            &["request_ttl must be between 1m and 7d"],
        );
        assert_invalid(
            "request_ttl = \"30m\"",
            "request_ttl = \"8d\"",
            &["request_ttl must be between 1m and 7d"],
        );
        assert_invalid(
            "request_ttl = \"30m\"",
            "request_ttl = \"soon\"",
            &["request_ttl \"soon\" is not a duration"],
        );
        assert_invalid(
            "receipt_ttl = \"5m\"",
            "receipt_ttl = \"29s\"",
            &["receipt_ttl must be between 30s and 60m"],
        );
        assert_invalid(
            "receipt_ttl = \"5m\"",
            "receipt_ttl = \"2h\"",
            &["receipt_ttl must be between 30s and 60m"],
        );

        for bounds in ["request_ttl = \"1m\"", "request_ttl = \"7d\""] {
            assert!(Policy::parse(&MINIMAL.replace("request_ttl = \"30m\"", bounds)).is_ok());
        }
        for bounds in ["receipt_ttl = \"30s\"", "receipt_ttl = \"60m\""] {
            assert!(Policy::parse(&MINIMAL.replace("receipt_ttl = \"5m\"", bounds)).is_ok());
        }
    }

    #[test]
    fn action_ids_are_checked_and_unique() {
        for bad in ["Payment", "", ".x", "a b", "x/y"] {
            let message =
                parse_error(&MINIMAL.replace("id = \"test.action\"", &format!("id = {bad:?}")));
            assert!(
                message.contains(&format!("action {bad:?}: id must match")),
                "{message}"
            );
        }
        let message = parse_error(&format!("{MINIMAL}{MINIMAL}"));
        assert_eq!(
            message,
            "action \"test.action\": id is used by more than one action"
        );
    }

    #[test]
    fn display_validation_errors() {
        assert_invalid(
            "pointer = \"/amount\"\nformat",
            "pointer = \"amount\"\nformat",
            &["display \"Amount\": pointer \"amount\" is not an RFC 6901 JSON pointer"],
        );
        assert_invalid(
            "pointer = \"/amount\"\nformat",
            "pointer = \"/am~2ount\"\nformat",
            &["display \"Amount\": pointer"],
        );
        assert_invalid(
            "currency_pointer = \"/currency\"",
            "currency_pointer = \"currency\"",
            &["display \"Amount\": currency_pointer \"currency\" is not an RFC 6901"],
        );
        assert_invalid(
            "format = \"money\"",
            "format = \"text\"",
            &["display \"Amount\": currency_pointer is only allowed with format = \"money\""],
        );
        assert_invalid(
            "label = \"Amount\"",
            "label = \"\"",
            &["display #1: label must not be empty"],
        );
    }

    #[test]
    fn rule_validation_errors() {
        assert_invalid(
            "name = \"big\"",
            "name = \"default\"",
            &["rule #1: name", "reserved"],
        );
        assert_invalid(
            "name = \"big\"",
            "name = \"a+b\"",
            &["rule #1: name \"a+b\" must match"],
        );
        assert_invalid(
            "quorum = 2",
            "quorum = 0",
            &["rule \"big\": quorum must be at least 1"],
        );
        assert_invalid(
            "quorum = 2",
            "add_quorum = 0",
            &["rule \"big\": add_quorum must be at least 1"],
        );
        assert_invalid(
            "quorum = 2",
            "approvers = []",
            &["rule \"big\": approvers must not be empty"],
        );
        assert_invalid(
            "quorum = 2",
            "approvers = [\"\"]",
            &["rule \"big\": approvers must not contain"],
        );
        assert_invalid(
            "quorum = 2\n",
            "\n",
            &["rule \"big\" needs at least one of approvers, quorum or add_quorum"],
        );
        assert_invalid(
            "at_least = \"100\"",
            "at_least = \"1e5\"",
            &["rule \"big\": when.at_least \"1e5\" is not a decimal string"],
        );
        assert_invalid(
            "when = { pointer = \"/amount\", at_least = \"100\" }",
            "when = { pointer = \"amount\", at_least = \"100\" }",
            &["rule \"big\": when.pointer \"amount\" is not an RFC 6901"],
        );
        let shape = "rule \"big\": when must be exactly one of";
        for when in [
            "when = { pointer = \"/amount\" }",
            "when = { at_least = \"1\" }",
            "when = { pointer = \"/a\", at_least = \"1\", equals = \"x\" }",
            "when = { pointer = \"/a\", risk_at_least = 5 }",
            "when = { risk_at_least = 5, equals = \"x\" }",
            "when = {}",
        ] {
            assert_invalid(
                "when = { pointer = \"/amount\", at_least = \"100\" }",
                when,
                &[shape],
            );
        }
        assert_invalid(
            "when = { pointer = \"/amount\", at_least = \"100\" }",
            "when = { risk_at_least = 101 }",
            &["rule \"big\": when.risk_at_least must be at most 100"],
        );
        let twice = MINIMAL.replace(
            "[[action.rule]]",
            "[[action.rule]]\nname = \"big\"\nwhen = { risk_at_least = 1 }\nadd_quorum = 1\n\n[[action.rule]]",
        );
        assert_eq!(
            parse_error(&twice),
            "action \"test.action\": rule \"big\": name is used by more than one rule of this action"
        );
    }

    #[test]
    fn json_pointer_syntax() {
        for ok in ["", "/", "/a", "/a/0", "/a~0b/c~1d", "/~01"] {
            assert!(is_json_pointer(ok), "{ok}");
        }
        for bad in ["a", "/a~", "/a~2", "~0", "/~x"] {
            assert!(!is_json_pointer(bad), "{bad}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert!(dec("9999.99") < dec("10000.00"));
        assert_eq!(dec("10000.00"), dec("10000.0"));
        assert_eq!(dec("10000.00"), dec("10000"));
        assert_eq!(dec("10000.00").cmp(&dec("10000.0")), Ordering::Equal);
        assert!(dec("10000.0") < dec("10000.01"));
        assert!(dec("0.5") < dec("0.50001"));
        assert!(dec("0.09") < dec("0.1"));
        assert!(dec("0") < dec("0.0000000000000000000000001"));
        assert!(dec("12") > dec("9.999999"));
        // Beyond f64 and i128 precision alike.
        let big = "123456789012345678901234567890123456789012345678901234567890";
        assert!(dec(&format!("{big}.000000000000000000000000000001")) > dec(big));
        assert!(dec(&format!("{big}.1")) < dec(&format!("1{big}")));
        assert_eq!(dec(&format!("{big}.10")), dec(&format!("{big}.1")));
        assert!(dec("9007199254740993") > dec("9007199254740992"));

        for bad in [
            "", ".", "-5.00", "+5", "1e5", "1,000.00", "01", "00.5", ".5", "5.", "1.2.3", " 1",
            "1 ", "０",
        ] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?}");
        }
        for good in ["0", "0.5", "12", "10000.00", "0.000"] {
            assert!(good.parse::<Decimal>().is_ok(), "{good:?}");
        }
        assert_eq!(Decimal::from_i64(10000), Some(dec("10000.00")));
        assert_eq!(Decimal::from_i64(-1), None);
        assert_eq!(Decimal::from_u64(0), dec("0.00"));
        assert_eq!(dec("10000.500").to_string(), "10000.5");
    }

    #[test]
    fn threshold_escalates_at_and_above() {
        let policy = builtin();
        let pay = action(&policy, "payment.transfer");
        let below = evaluate(pay, &payment("9999.99"), None);
        assert_eq!(
            below,
            Requirement {
                approvals: 1,
                groups: vec!["finance".into()],
                rules: vec![],
            }
        );
        for amount in [
            "10000.00",
            "10000",
            "10000.0",
            "10000.01",
            "123456789012345678901234567890.5",
        ] {
            let at = evaluate(pay, &payment(amount), None);
            assert_eq!(
                at,
                Requirement {
                    approvals: 2,
                    groups: vec!["finance-senior".into()],
                    rules: vec!["large-payment".into()],
                },
                "{amount}"
            );
        }
    }

    #[test]
    fn risk_escalates_at_seventy() {
        let policy = builtin();
        let pay = action(&policy, "payment.transfer");
        let small = payment("50.00");
        assert_eq!(evaluate(pay, &small, Some(69)).approvals, 1);
        assert_eq!(evaluate(pay, &small, None).rule_label(), "default");
        let risky = evaluate(pay, &small, Some(70));
        assert_eq!(risky.approvals, 2);
        assert_eq!(risky.groups, ["finance"]);
        assert_eq!(risky.rule_label(), "risky");

        let both = evaluate(pay, &payment("25000.00"), Some(100));
        assert_eq!(both.approvals, 3);
        assert_eq!(both.groups, ["finance-senior"]);
        assert_eq!(both.rule_label(), "large-payment+risky");
        assert_eq!(both.rules, ["large-payment", "risky"]);
    }

    #[test]
    fn quorum_rule_raises_but_never_lowers() {
        let text = MINIMAL.replace("quorum = 1", "quorum = 3");
        let policy = match Policy::parse(&text) {
            Ok(p) => p,
            Err(err) => panic!("{err}"),
        };
        let a = action(&policy, "test.action");
        let req = evaluate(a, &tx(br#"{"amount":"500","currency":"EUR"}"#), None);
        assert_eq!(req.approvals, 3);
        assert_eq!(req.rule_label(), "big");
    }

    #[test]
    fn equals_rule() {
        let policy = builtin();
        let admin = action(&policy, "admin.role_change");
        let owner = evaluate(admin, &tx(br#"{"user":"ann","role":"owner"}"#), None);
        assert_eq!(
            (owner.approvals, owner.rule_label()),
            (2, "owner-role".into())
        );
        let viewer = evaluate(admin, &tx(br#"{"user":"ann","role":"Owner"}"#), None);
        assert_eq!(
            (viewer.approvals, viewer.rule_label()),
            (1, "default".into())
        );
    }

    #[test]
    fn at_least_fails_closed() {
        // The rule pointer is not a displayed field here, so only the rule guards it.
        let text = MINIMAL.replace(
            "pointer = \"/amount\", at_least",
            "pointer = \"/limit\", at_least",
        );
        let policy = match Policy::parse(&text) {
            Ok(p) => p,
            Err(err) => panic!("{err}"),
        };
        let a = action(&policy, "test.action");
        assert_eq!(
            refusal(a, &tx(br#"{"amount":"5","currency":"EUR"}"#)),
            TxRefusal::RuleFieldMissing {
                rule: "big".into(),
                pointer: "/limit".into()
            }
        );
        for limit in [r#""1e5""#, r#""-5.00""#, "-5", "true", r#"{"v":1}"#, "null"] {
            let tx = tx(format!(r#"{{"amount":"5","currency":"EUR","limit":{limit}}}"#).as_bytes());
            assert!(
                matches!(
                    refusal(a, &tx),
                    TxRefusal::RuleFieldNotDecimal { .. } | TxRefusal::RuleFieldMissing { .. }
                ),
                "{limit}"
            );
        }
        // A JSON integer is an exact amount, so rules accept it.
        let req = evaluate(
            a,
            &tx(br#"{"amount":"5","currency":"EUR","limit":100}"#),
            None,
        );
        assert_eq!(req.approvals, 2);
        let req = evaluate(
            a,
            &tx(br#"{"amount":"5","currency":"EUR","limit":99}"#),
            None,
        );
        assert_eq!(req.approvals, 1);
    }

    #[test]
    fn invalid_transactions_are_refused() {
        let policy = builtin();
        let pay = action(&policy, "payment.transfer");
        let missing = refusal(
            pay,
            &tx(br#"{"currency":"EUR","payee":{"name":"A","iban":"DE89"}}"#),
        );
        assert_eq!(
            missing.to_string(),
            r#"missing required field "/amount" (label "Amount")"#
        );
        let null_amount = refusal(
            pay,
            &tx(br#"{"amount":null,"currency":"EUR","payee":{"name":"A","iban":"DE89"}}"#),
        );
        assert!(matches!(null_amount, TxRefusal::MissingField { .. }));

        for amount in [
            r#""-5.00""#,
            r#""1e5""#,
            r#""1,000.00""#,
            r#""""#,
            "1000",
            "true",
        ] {
            let t = tx(format!(
                r#"{{"amount":{amount},"currency":"EUR","payee":{{"name":"A","iban":"DE89"}}}}"#
            )
            .as_bytes());
            let err = refusal(pay, &t);
            assert_eq!(
                err.to_string(),
                r#"field "/amount" is not a decimal string"#,
                "{amount}"
            );
        }

        let no_currency = refusal(
            pay,
            &tx(br#"{"amount":"5.00","payee":{"name":"A","iban":"DE89"}}"#),
        );
        assert_eq!(
            no_currency,
            TxRefusal::MissingCurrency {
                pointer: "/amount".into(),
                currency_pointer: "/currency".into()
            }
        );
        let no_payee = refusal(
            pay,
            &tx(br#"{"amount":"5.00","currency":"EUR","payee":{"iban":"DE89"}}"#),
        );
        assert_eq!(
            no_payee.to_string(),
            r#"missing required field "/payee/name" (label "Payee")"#
        );
        let object_payee = refusal(
            pay,
            &tx(br#"{"amount":"5.00","currency":"EUR","payee":{"name":{"x":1},"iban":"DE89"}}"#),
        );
        assert!(matches!(object_payee, TxRefusal::NotText { .. }));
        let bad_iban = refusal(
            pay,
            &tx(br#"{"amount":"5.00","currency":"EUR","payee":{"name":"A","iban":"DE89-3704"}}"#),
        );
        assert!(matches!(bad_iban, TxRefusal::NotIban { .. }));
        let lookalike = refusal(pay, &tx("{\"amount\":\"5.00\",\"currency\":\"EUR\",\"payee\":{\"name\":\"A\",\"iban\":\"DE89 37О4\"}}".as_bytes()));
        assert!(matches!(lookalike, TxRefusal::NotIban { .. }));
        // Optional fields may be absent.
        assert!(pay.evaluate(&payment("5.00"), None).is_ok());

        let secret = action(&policy, "secret.export");
        let ok = tx(
            br#"{"secret":"db/root","destination":"vault-b","until":"2025-03-01T12:00:00+01:00"}"#,
        );
        assert!(secret.evaluate(&ok, None).is_ok());
        let bad = tx(br#"{"secret":"db/root","destination":"vault-b","until":"next tuesday"}"#);
        assert_eq!(
            refusal(secret, &bad).to_string(),
            r#"field "/until" is not an RFC 3339 date-time string"#
        );
    }

    #[test]
    fn rfc3339_datetimes() {
        for ok in [
            "2025-03-01T12:00:00Z",
            "2025-03-01t12:00:00z",
            "2025-03-01T12:00:00.123456+01:00",
            "2024-02-29T23:59:60-12:30",
            "2000-02-29T00:00:00Z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2025-03-01",
            "2025-03-01T12:00:00",
            "2025-03-01 12:00:00Z",
            "2025-13-01T12:00:00Z",
            "2025-02-29T12:00:00Z",
            "1900-02-29T12:00:00Z",
            "2025-04-31T12:00:00Z",
            "2025-03-01T24:00:00Z",
            "2025-03-01T12:00:00.Z",
            "2025-03-01T12:00:00+0100",
            "2025-03-01T12:00:00+24:00",
            "+025-03-01T12:00:00Z",
            "2025-03-01T12:00:00Zjunk",
            "2025-03-01T12:00:0éZ",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn display_values_are_formatted() {
        let policy = builtin();
        let pay = action(&policy, "payment.transfer");
        let t = tx(br#"{"amount":"1234567.5","currency":"EUR","payee":{"name":"ACME \"Widgets\"","iban":"de89 3704 0044 0532 0130 00"}}"#);
        let values = pay.display_values(&t);
        assert_eq!(
            values[0],
            DisplayValue {
                label: "Amount".into(),
                format: Format::Money,
                raw: "1234567.5".into(),
                formatted: "1,234,567.5".into(),
                currency: Some("EUR".into()),
                present: true,
            }
        );
        assert_eq!(values[1].formatted, "ACME \"Widgets\"");
        assert_eq!(values[2].formatted, "DE89 3704 0044 0532 0130 00");
        assert_eq!(values[2].raw, "de89 3704 0044 0532 0130 00");
        assert_eq!(
            values[3],
            DisplayValue {
                label: "Reference".into(),
                format: Format::Text,
                raw: String::new(),
                formatted: "—".into(),
                currency: None,
                present: false,
            }
        );

        for (raw, formatted) in [
            ("0.99", "0.99"),
            ("0", "0"),
            ("999", "999"),
            ("1000", "1,000"),
            ("1250.00", "1,250.00"),
            ("100000.000", "100,000.000"),
            ("1000000", "1,000,000"),
        ] {
            assert_eq!(money(raw), formatted);
        }
        assert_eq!(
            iban("DE89370400440532013000"),
            "DE89 3704 0044 0532 0130 00"
        );
        assert_eq!(
            iban("gb29nwbk60161331926819"),
            "GB29 NWBK 6016 1331 9268 19"
        );
    }

    #[test]
    fn text_and_json_display() {
        let text = r#"
[[action]]
id = "t"
title = "T"
audiences = ["a"]
approvers = ["g"]
quorum = 1

[[action.display]]
label = "Count"
pointer = "/n"

[[action.display]]
label = "Flag"
pointer = "/b"

[[action.display]]
label = "Items"
pointer = "/items"
format = "json"

[[action.display]]
label = "When"
pointer = "/when"
format = "datetime"
"#;
        let policy = match Policy::parse(text) {
            Ok(p) => p,
            Err(err) => panic!("{err}"),
        };
        let a = action(&policy, "t");
        let t = tx(br#"{"n":-42,"b":true,"items":[1,"two\n\"",{"k":null},[]],"when":"2025-03-01T12:00:00Z"}"#);
        assert!(a.evaluate(&t, None).is_ok());
        let values = a.display_values(&t);
        let formatted: Vec<&str> = values.iter().map(|v| v.formatted.as_str()).collect();
        assert_eq!(
            formatted,
            [
                "-42",
                "true",
                r#"[1,"two\n\"",{"k":null},[]]"#,
                "2025-03-01T12:00:00Z"
            ]
        );
        assert!(values.iter().all(|v| v.present && v.currency.is_none()));
        assert_eq!(
            compact_json(&tx(b"{\"c\":\"\\u0001\"}")),
            "{\"c\":\"\\u0001\"}"
        );
    }
}

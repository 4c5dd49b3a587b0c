//! The policy file as TOML gives it, before validation, and the checks and error wording that
//! turn it into a [`super::Policy`].

use std::time::Duration;

use serde::Deserialize;

use super::display::Format;
use super::PolicyError;

pub(super) const MAX_RISK: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub action: Vec<RawAction>,
    /// The built-in action of console changes (`countersign.admin`).
    pub admin: Option<RawAdmin>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub quorum: Option<u32>,
    pub request_ttl: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    pub id: String,
    pub title: String,
    pub audiences: Vec<String>,
    /// One stage (`default`) ...
    pub approvers: Option<Vec<String>>,
    pub quorum: Option<u32>,
    /// ... or `[[action.stage]]` entries, never both.
    #[serde(default)]
    pub stage: Vec<RawStage>,
    #[serde(default)]
    pub self_approval: bool,
    pub request_ttl: Option<String>,
    pub receipt_ttl: Option<String>,
    #[serde(default)]
    pub display: Vec<RawDisplay>,
    #[serde(default)]
    pub rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisplay {
    pub label: String,
    pub pointer: String,
    #[serde(default)]
    pub format: Format,
    pub currency_pointer: Option<String>,
    #[serde(default)]
    pub optional: bool,
    /// A secret: stored, shown and returned only as a salted hash commitment.
    #[serde(default)]
    pub redact: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub name: String,
    pub approvers: Vec<String>,
    pub quorum: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub name: String,
    pub when: RawCondition,
    /// The stage `approvers`, `quorum` and `add_quorum` change (needed with several).
    pub stage: Option<String>,
    pub approvers: Option<Vec<String>>,
    pub quorum: Option<u32>,
    pub add_quorum: Option<u32>,
    pub add_stage: Option<RawStage>,
}

// One struct with every key optional rather than a serde untagged enum: an
// untagged enum's error says only "did not match any variant", which names
// neither the action nor the key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition {
    pub pointer: Option<String>,
    pub at_least: Option<String>,
    pub equals: Option<String>,
    pub risk_at_least: Option<u32>,
    pub initiator_type: Option<String>,
}

pub(super) fn invalid(
    action: &str,
    key: impl Into<String>,
    problem: impl Into<String>,
) -> PolicyError {
    PolicyError::Invalid {
        action: action.to_owned(),
        key: key.into(),
        problem: problem.into(),
    }
}

/// toml's message names the key and its line but not the action; find the
/// action from the `[[action]]` header that precedes the error's position.
pub(super) fn toml_error(text: &str, err: &toml::de::Error) -> PolicyError {
    let context = err
        .span()
        .and_then(|span| action_context(text, span.start))
        .unwrap_or_else(|| "policy file".to_owned());
    PolicyError::Toml {
        context,
        message: err.to_string().trim_end().to_owned(),
    }
}

pub(super) fn action_context(text: &str, offset: usize) -> Option<String> {
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

pub(super) fn is_action_header(line: &str) -> bool {
    line.trim_start()
        .strip_prefix("[[")
        .and_then(|rest| rest.split_once("]]"))
        .is_some_and(|(name, _)| name.trim() == "action")
}

pub(super) fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

pub(super) fn check_names(action: &str, key: &str, names: &[String]) -> Result<(), PolicyError> {
    if names.is_empty() {
        return Err(invalid(action, key, "must not be empty"));
    }
    if names.iter().any(|name| name.trim().is_empty()) {
        return Err(invalid(action, key, "must not contain an empty name"));
    }
    Ok(())
}

pub(super) fn check_pointer(action: &str, key: &str, pointer: &str) -> Result<(), PolicyError> {
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

pub(super) fn is_json_pointer(pointer: &str) -> bool {
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

pub(super) fn ttl(
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

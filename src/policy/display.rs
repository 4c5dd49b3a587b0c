//! What the approval page shows of a transaction: the policy's display fields, checked when a
//! request is made and formatted for people (money grouped, IBANs in fours).

use serde::{Deserialize, Serialize};

use super::raw::{check_pointer, invalid, RawDisplay};
use super::{Decimal, PolicyError, TxRefusal};
use crate::jcs::Value;

const ABSENT: &str = "—";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayField {
    pub label: String,
    pub pointer: String,
    pub format: Format,
    pub currency_pointer: Option<String>,
    pub optional: bool,
    /// Never stored, shown or returned in clear (see `policy::redact`).
    pub redact: bool,
}

/// What pages and the API show for a redacted field.
pub const REDACTED: &str = "hidden — bound by hash";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Money,
    Iban,
    Datetime,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct DisplayValue {
    pub label: String,
    pub format: Format,
    pub raw: String,
    pub formatted: String,
    pub currency: Option<String>,
    pub present: bool,
}

impl DisplayField {
    pub(super) fn from_raw(
        action: &str,
        index: usize,
        raw: RawDisplay,
    ) -> Result<DisplayField, PolicyError> {
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
            redact: raw.redact,
        })
    }

    pub(super) fn check(&self, tx: &Value) -> Result<(), TxRefusal> {
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

    pub(super) fn value(&self, tx: &Value) -> DisplayValue {
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
        if self.redact {
            // The stored transaction holds the commitment in its place; that is all there is.
            shown.raw = compact_json(value);
            REDACTED.clone_into(&mut shown.formatted);
            return shown;
        }
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

/// A JSON null counts as absent: an approver shown "null" has been shown nothing.
pub(super) fn present<'a>(tx: &'a Value, pointer: &str) -> Option<&'a Value> {
    tx.pointer(pointer)
        .filter(|value| !matches!(value, Value::Null))
}

pub(super) fn currency_at<'a>(tx: &'a Value, pointer: &str) -> Option<&'a str> {
    tx.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|currency| !currency.trim().is_empty())
}

// Only ASCII letters and digits: a look-alike character in an account number
// shown to an approver is exactly the attack this server exists to stop.
pub(super) fn is_iban_text(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
}

/// A decimal string with its integer digits grouped in thousands: `1234567.5` → `1,234,567.5`.
pub fn money(decimal: &str) -> String {
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

pub(super) fn iban(s: &str) -> String {
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
pub(super) fn compact_json(value: &Value) -> String {
    crate::jcs::canonicalize(value)
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with real
/// calendar limits so the browser is never handed a date it would mangle.
pub(super) fn is_rfc3339(s: &str) -> bool {
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

pub(super) fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A leaf of a transaction that no display field shows: its JSON pointer (RFC 6901) and its
/// value, a string as itself and anything else as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct OtherField {
    pub pointer: String,
    pub value: String,
}

/// Every leaf of `tx` (a scalar, an empty object or an empty array) that is not at or under
/// one of the `shown` pointers, in document order: nothing the passkey signs goes unseen, so a
/// field the policy forgot (a second payee, a note) cannot ride along.
pub fn other_fields(tx: &Value, shown: &[&str]) -> Vec<OtherField> {
    let mut out = Vec::new();
    leaves(tx, &mut String::new(), shown, &mut out);
    out
}

fn leaves(v: &Value, at: &mut String, shown: &[&str], out: &mut Vec<OtherField>) {
    let covered = shown.iter().any(|s| {
        at.strip_prefix(s)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if covered {
        return;
    }
    let len = at.len();
    match v {
        Value::Object(members) if !members.is_empty() => {
            for (key, member) in members {
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                leaves(member, at, shown, out);
                at.truncate(len);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                leaves(item, at, shown, out);
                at.truncate(len);
            }
        }
        leaf => out.push(OtherField {
            pointer: at.clone(),
            value: match leaf {
                Value::String(s) => s.clone(),
                other => crate::jcs::canonicalize(other),
            },
        }),
    }
}

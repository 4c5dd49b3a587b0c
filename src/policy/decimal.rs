//! Exact decimals for money: amounts compared digit by digit, never as floats.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

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

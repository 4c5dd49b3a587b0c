//! Strict JSON parsing and RFC 8785 (JCS) canonicalisation.
//!
//! A transaction is approved by its hash, so two parties must never read one
//! input two ways. Anything that a lenient parser would have to guess at
//! (duplicate keys, lone surrogates, numbers that lose precision as IEEE-754
//! doubles) is refused instead of normalised.

use std::collections::HashSet;
use std::fmt::Write as _;

/// Nesting depth of arrays and objects; the top-level object is depth 1.
pub const MAX_DEPTH: usize = 32;
pub const MAX_BYTES: usize = 64 * 1024;
/// 2^53 - 1: beyond it, other JCS implementations (which use doubles) would
/// round the number and compute a different hash.
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(i64),
    String(String),
    Array(Vec<Value>),
    /// Members in input order; the parser guarantees the keys are unique.
    Object(Vec<(String, Value)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    #[error("the input is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    #[error("lone surrogate in a string")]
    LoneSurrogate,
    #[error(
        "number {0} is not an integer in the IEEE-754 safe range (send amounts as decimal strings)"
    )]
    UnsafeNumber(String),
    #[error("invalid JSON at byte {0}")]
    Syntax(usize),
    #[error("the transaction must be a JSON object")]
    NotAnObject,
    #[error(
        "key {0:?} is in serde_json's private namespace: a Rust service reading it with serde_json would see another value than the one hashed"
    )]
    ReservedKey(String),
}

/// serde_json, with its `raw_value` feature (which countersign uses) or `arbitrary_precision`,
/// reads an object whose first key starts with this as the value the key carries, not as an
/// object: an executor written in Rust would then act on something other than what was hashed
/// and shown. countersign refuses such keys at any depth, however they are escaped.
const SERDE_PRIVATE: &str = "$serde_json::private::";

/// Parses one JSON value of any kind, surrounded by optional whitespace.
pub fn parse(input: &[u8]) -> Result<Value, CanonError> {
    if input.len() > MAX_BYTES {
        return Err(CanonError::TooLarge);
    }
    // Validating once up front lets the string scanner copy unescaped runs
    // as &str slices without re-checking them.
    let text = std::str::from_utf8(input).map_err(|e| CanonError::Syntax(e.valid_up_to()))?;
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(CanonError::Syntax(p.pos));
    }
    Ok(value)
}

/// Like [`parse`], but the top level must be an object.
pub fn parse_object(input: &[u8]) -> Result<Value, CanonError> {
    match parse(input)? {
        v @ Value::Object(_) => Ok(v),
        _ => Err(CanonError::NotAnObject),
    }
}

/// Serialises `v` as RFC 8785 canonical JSON.
pub fn canonicalize(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

impl Value {
    /// Looks up an RFC 6901 JSON Pointer; `None` for a malformed pointer too.
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |node, raw| {
            let token = unescape_pointer_token(raw)?;
            match node {
                Value::Object(members) => members.iter().find(|(k, _)| *k == token).map(|(_, v)| v),
                Value::Array(items) => items.get(array_index(&token)?),
                _ => None,
            }
        })
    }

    /// Like [`Value::pointer`], for changing what it points at.
    pub fn pointer_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |node, raw| {
            let token = unescape_pointer_token(raw)?;
            match node {
                Value::Object(members) => members
                    .iter_mut()
                    .find(|(k, _)| *k == token)
                    .map(|(_, v)| v),
                Value::Array(items) => items.get_mut(array_index(&token)?),
                _ => None,
            }
        })
    }

    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::from(*n),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_serde).collect())
            }
            Value::Object(members) => serde_json::Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_serde()))
                    .collect(),
            ),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

fn unescape_pointer_token(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next()? {
                '0' => out.push('~'),
                '1' => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    if canonical && token.bytes().all(|b| b.is_ascii_digit()) {
        token.parse().ok()
    } else {
        None
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn syntax(&self) -> CanonError {
        CanonError::Syntax(self.pos)
    }

    fn expect(&mut self, b: u8) -> Result<(), CanonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// `depth` is how many containers enclose this value; it is checked
    /// before descending so hostile nesting cannot exhaust the stack.
    fn value(&mut self, depth: usize) -> Result<Value, CanonError> {
        match self.peek() {
            Some(b'{' | b'[') if depth >= MAX_DEPTH => Err(CanonError::TooDeep),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            _ => Err(self.syntax()),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, CanonError> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        if rest.starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.syntax())
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, CanonError> {
        self.expect(b'{')?;
        self.skip_ws();
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.syntax());
            }
            let key = self.string()?;
            if key.starts_with(SERDE_PRIVATE) {
                return Err(CanonError::ReservedKey(key));
            }
            if !seen.insert(key.clone()) {
                return Err(CanonError::DuplicateKey(key));
            }
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_ws();
            match self.next() {
                Some(b',') => self.skip_ws(),
                Some(b'}') => return Ok(Value::Object(members)),
                _ => return Err(CanonError::Syntax(self.pos.saturating_sub(1))),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, CanonError> {
        self.expect(b'[')?;
        self.skip_ws();
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.next() {
                Some(b',') => self.skip_ws(),
                Some(b']') => return Ok(Value::Array(items)),
                _ => return Err(CanonError::Syntax(self.pos.saturating_sub(1))),
            }
        }
    }

    fn number(&mut self) -> Result<Value, CanonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(CanonError::Syntax(int_start)),
        }
        let int_end = self.pos;
        // Fractions and exponents are parsed only to tell a well-formed but
        // refused number from a syntax error; their value is never used.
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
            integral = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
            integral = false;
        }
        let literal = self.text.get(start..self.pos).unwrap_or_default();
        let unsafe_number = || CanonError::UnsafeNumber(literal.to_owned());
        if !integral {
            return Err(unsafe_number());
        }
        let magnitude = self
            .text
            .get(int_start..int_end)
            .and_then(|d| d.parse::<i64>().ok())
            .filter(|m| *m <= MAX_SAFE_INTEGER)
            .ok_or_else(unsafe_number)?;
        Ok(Value::Number(if negative { -magnitude } else { magnitude }))
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    /// One or more digits.
    fn digits(&mut self) -> Result<(), CanonError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.syntax());
        }
        self.skip_digits();
        Ok(())
    }

    fn string(&mut self) -> Result<String, CanonError> {
        self.expect(b'"')?;
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            match self.peek() {
                Some(b'"' | b'\\') => {
                    // Both delimiters are ASCII, so the run ends on a char boundary.
                    out.push_str(self.text.get(run_start..self.pos).unwrap_or_default());
                    if self.next() == Some(b'"') {
                        return Ok(out);
                    }
                    out.push(self.escape()?);
                    run_start = self.pos;
                }
                Some(0x20..) => self.pos += 1,
                _ => return Err(self.syntax()),
            }
        }
    }

    /// The escape after a backslash.
    fn escape(&mut self) -> Result<char, CanonError> {
        let c = match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(),
            _ => return Err(CanonError::Syntax(self.pos.saturating_sub(1))),
        };
        Ok(c)
    }

    fn unicode_escape(&mut self) -> Result<char, CanonError> {
        let unit = self.hex4()?;
        match unit {
            0xD800..=0xDBFF => {
                let is_pair = self
                    .text
                    .get(self.pos..)
                    .is_some_and(|r| r.starts_with("\\u"));
                if !is_pair {
                    return Err(CanonError::LoneSurrogate);
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(CanonError::LoneSurrogate);
                }
                let code = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                char::from_u32(code).ok_or(CanonError::LoneSurrogate)
            }
            0xDC00..=0xDFFF => Err(CanonError::LoneSurrogate),
            _ => char::from_u32(u32::from(unit)).ok_or(CanonError::LoneSurrogate),
        }
    }

    fn hex4(&mut self) -> Result<u16, CanonError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.syntax())?;
        let unit = u16::from_str_radix(digits, 16).map_err(|_| self.syntax())?;
        self.pos += 4;
        Ok(unit)
    }
}

fn write_canonical(v: &Value, out: &mut String) {
    let nested = |v: &Value, out: &mut String| -> Result<(), std::convert::Infallible> {
        write_canonical(v, out);
        Ok(())
    };
    let written = match v {
        Value::Array(items) => write_array(items, out, nested),
        Value::Object(members) => write_object(members.iter().map(|(k, v)| (k, v)), out, nested),
        Value::Null => {
            out.push_str("null");
            Ok(())
        }
        Value::Bool(b) => {
            out.push_str(if *b { "true" } else { "false" });
            Ok(())
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
            Ok(())
        }
        Value::String(s) => {
            write_string(s, out);
            Ok(())
        }
    };
    let Ok(()) = written;
}

/// Writes a `serde_json::Value` of our own making (audit data) as RFC 8785 canonical JSON
/// without a serialise-and-parse round trip, refusing what [`parse`] would refuse: numbers that
/// are not integers in the safe range, and nesting deeper than [`MAX_DEPTH`].
pub fn write_canonical_serde(
    v: &serde_json::Value,
    depth: usize,
    out: &mut String,
) -> Result<(), CanonError> {
    use serde_json::Value as J;
    let nested = |depth: usize| {
        if depth >= MAX_DEPTH {
            Err(CanonError::TooDeep)
        } else {
            Ok(depth + 1)
        }
    };
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // serde_json reads `-0` as the float -0.0, which `parse` reads as the integer 0 (RFC
        // 8785 writes both as `0`); found by the `jcs` fuzz target.
        J::Number(n) => match n
            .as_i64()
            .or_else(|| (n.as_f64() == Some(0.0)).then_some(0))
            .filter(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER as u64)
        {
            Some(i) => {
                let _ = write!(out, "{i}");
            }
            None => return Err(CanonError::UnsafeNumber(n.to_string())),
        },
        J::String(s) => write_string(s, out),
        J::Array(items) => {
            let depth = nested(depth)?;
            write_array(items, out, |item, out| {
                write_canonical_serde(item, depth, out)
            })?;
        }
        J::Object(members) => {
            let depth = nested(depth)?;
            write_object(members, out, |value, out| {
                write_canonical_serde(value, depth, out)
            })?;
        }
    }
    Ok(())
}

fn write_array<'v, V: 'v, E>(
    items: impl IntoIterator<Item = &'v V>,
    out: &mut String,
    mut item: impl FnMut(&'v V, &mut String) -> Result<(), E>,
) -> Result<(), E> {
    out.push('[');
    for (i, v) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(v, out)?;
    }
    out.push(']');
    Ok(())
}

fn write_object<'v, V: 'v, E>(
    members: impl IntoIterator<Item = (&'v String, &'v V)>,
    out: &mut String,
    mut value: impl FnMut(&'v V, &mut String) -> Result<(), E>,
) -> Result<(), E> {
    let mut sorted: Vec<(&String, &V)> = members.into_iter().collect();
    // RFC 8785 §3.2.3 orders by UTF-16 code units, which differs from
    // UTF-8 byte order for characters above U+FFFF.
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (key, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        value(v, out)?;
    }
    out.push('}');
    Ok(())
}

pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by the `jcs` fuzz target: serde_json reads `-0` as a float, `parse` as 0.
    #[test]
    fn minus_zero_is_zero_both_ways() {
        let input = br#"{"a":[1,-0]}"#;
        let ours = canonicalize(&parse(input).unwrap());
        let theirs: serde_json::Value = serde_json::from_slice(input).unwrap();
        let mut via_serde = String::new();
        write_canonical_serde(&theirs, 0, &mut via_serde).unwrap();
        assert_eq!(
            (ours.as_str(), via_serde.as_str()),
            (r#"{"a":[1,0]}"#, r#"{"a":[1,0]}"#)
        );
    }

    #[test]
    fn serde_values_that_parse_would_refuse_are_refused() {
        let mut out = String::new();
        for bad in [
            serde_json::json!({ "a": 1.5 }),
            serde_json::json!([MAX_SAFE_INTEGER + 1]),
            serde_json::json!(u64::MAX),
        ] {
            assert!(matches!(
                write_canonical_serde(&bad, 0, &mut out),
                Err(CanonError::UnsafeNumber(_))
            ));
        }
        // As deep as `parse` takes, then one level deeper.
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_DEPTH {
            deep = serde_json::json!([deep]);
        }
        assert!(write_canonical_serde(&deep, 0, &mut out).is_ok());
        assert!(parse(deep.to_string().as_bytes()).is_ok());
        let deeper = serde_json::json!([deep]);
        assert_eq!(
            write_canonical_serde(&deeper, 0, &mut out),
            Err(CanonError::TooDeep)
        );
        assert_eq!(
            parse(deeper.to_string().as_bytes()),
            Err(CanonError::TooDeep)
        );
    }

    fn canon(input: &str) -> String {
        canonicalize(&parse(input.as_bytes()).expect("valid input"))
    }

    fn err(input: &str) -> CanonError {
        parse(input.as_bytes()).expect_err("input must be refused")
    }

    #[test]
    fn rfc8785_sorting_example() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let v = parse(input.as_bytes()).unwrap();
        let Value::Object(members) = parse(canonicalize(&v).as_bytes()).unwrap() else {
            panic!("not an object");
        };
        let order: Vec<&str> = members.iter().map(|(_, v)| v.as_str().unwrap()).collect();
        assert_eq!(
            order,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh",
            ]
        );
        assert_eq!(
            canonicalize(&v),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\
             \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn rfc8785_string_example() {
        let without_floats = r#"{
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(without_floats),
            r#"{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        let original = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50,
                        2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        assert_eq!(
            err(original),
            CanonError::UnsafeNumber("333333333.33333329".into())
        );
    }

    #[test]
    fn escapes_only_what_json_stringify_escapes() {
        let v = Value::String("\u{0}\u{1f}\u{7f}/é\u{8}\u{c}\t".into());
        assert_eq!(canonicalize(&v), "\"\\u0000\\u001f\u{7f}/é\\b\\f\\t\"");
    }

    #[test]
    fn refuses_duplicate_keys_after_unescaping() {
        assert_eq!(
            err(r#"{"a":1,"a":2}"#),
            CanonError::DuplicateKey("a".into())
        );
        assert_eq!(
            err(r#"{"a":1,"\u0061":2}"#),
            CanonError::DuplicateKey("a".into())
        );
        assert_eq!(
            err(r#"{"x":{"b":1,"b":1}}"#),
            CanonError::DuplicateKey("b".into())
        );
        assert!(parse(br#"{"a":{"a":1}}"#).is_ok());
    }

    #[test]
    fn refuses_serde_json_private_keys_at_any_depth_however_escaped() {
        let key = "$serde_json::private::RawValue";
        for input in [
            format!(r#"{{"{key}":"{{}}","amount":"1000000.00"}}"#),
            format!(r#"{{"payee":{{"{key}":"1"}}}}"#),
            format!(r#"[{{"{key}":1}}]"#),
            r#"{"\u0024serde_json::private::Number":"1"}"#.to_owned(),
        ] {
            assert!(
                matches!(err(&input), CanonError::ReservedKey(k) if k.starts_with("$serde_json::private::")),
                "{input}"
            );
        }
        assert!(parse(br#"{"$serde_json":1,"serde_json::private::":2}"#).is_ok());
    }

    /// Why the rule above exists: serde_json, as this build has it, reads such an object as
    /// something else than the object countersign hashes.
    #[test]
    fn serde_json_reads_its_private_key_as_another_value() {
        let hostile = r#"{"amount":"1.00","payee":{"$serde_json::private::RawValue":"\"ACME\""}}"#;
        let theirs: serde_json::Value = serde_json::from_str(hostile).unwrap();
        assert_eq!(
            theirs,
            serde_json::json!({"amount": "1.00", "payee": "ACME"})
        );
    }

    #[test]
    fn refuses_lone_surrogates() {
        for input in [
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ude00""#,
            r#""\ude00\ud83d""#,
            r#""\ud83d\ud83d""#,
            r#""\ud83d\n""#,
            r#""\ud83d\u0041""#,
        ] {
            assert_eq!(err(input), CanonError::LoneSurrogate, "{input}");
        }
        assert_eq!(canon(r#""\ud83d\ude00""#), "\"\u{1f600}\"");
    }

    #[test]
    fn refuses_unsafe_numbers() {
        for input in [
            "1.0",
            "1e2",
            "1E+2",
            "1e-2",
            "-0.0",
            "0.5",
            "9007199254740992",
            "-9007199254740992",
        ] {
            assert_eq!(
                err(input),
                CanonError::UnsafeNumber(input.into()),
                "{input}"
            );
        }
        let huge = "123456789012345678901234567890";
        assert_eq!(err(huge), CanonError::UnsafeNumber(huge.into()));
        assert_eq!(
            err(r#"{"amount":1250.00}"#),
            CanonError::UnsafeNumber("1250.00".into())
        );
    }

    #[test]
    fn safe_integer_boundary() {
        assert_eq!(canon("9007199254740991"), "9007199254740991");
        assert_eq!(canon("-9007199254740991"), "-9007199254740991");
        assert_eq!(
            parse(b"9007199254740991"),
            Ok(Value::Number(MAX_SAFE_INTEGER))
        );
        assert!(matches!(
            err("9007199254740992"),
            CanonError::UnsafeNumber(_)
        ));
        assert!(matches!(
            err("-9007199254740992"),
            CanonError::UnsafeNumber(_)
        ));
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(canon("-0"), "0");
        assert_eq!(canon("[-0,0]"), "[0,0]");
    }

    #[test]
    fn refuses_malformed_json() {
        for (input, at) in [
            ("", 0),
            ("   ", 3),
            ("{} x", 3),
            ("{}{}", 2),
            ("01", 1),
            ("-01", 2),
            ("+1", 0),
            (".5", 0),
            ("1.", 2),
            ("1e", 2),
            ("-", 1),
            ("[1,]", 3),
            (r#"{"a":1,}"#, 7),
            ("{'a':1}", 1),
            ("{a:1}", 1),
            (r#"{"a" 1}"#, 5),
            ("[1 2]", 3),
            ("tru", 0),
            ("nul", 0),
            ("NaN", 0),
            ("\"abc", 4),
            ("\"a\u{1}b\"", 2),
            ("\"a\tb\"", 2),
            ("\"a\nb\"", 2),
            (r#""\x""#, 2),
            (r#""\u12g4""#, 3),
            (r#""\u12""#, 3),
            ("[1]/**/", 3),
            ("\u{feff}{}", 0),
        ] {
            assert_eq!(err(input), CanonError::Syntax(at), "{input:?}");
        }
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert_eq!(parse(b"\"a\xff\""), Err(CanonError::Syntax(2)));
        assert_eq!(parse(b"\"\xed\xa0\x80\""), Err(CanonError::Syntax(1)));
    }

    #[test]
    fn refuses_non_objects_at_top_level() {
        for input in ["[]", "\"x\"", "1", "null", "true"] {
            assert_eq!(parse_object(input.as_bytes()), Err(CanonError::NotAnObject));
        }
        assert!(parse_object(b" {} ").is_ok());
        assert_eq!(parse_object(b"{"), Err(CanonError::Syntax(1)));
    }

    #[test]
    fn size_limit() {
        let at_limit = format!("{{}}{}", " ".repeat(MAX_BYTES - 2));
        assert!(parse(at_limit.as_bytes()).is_ok());
        let over = format!("{at_limit} ");
        assert_eq!(parse(over.as_bytes()), Err(CanonError::TooLarge));
    }

    fn nested_arrays(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_limit() {
        assert!(parse(nested_arrays(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse(nested_arrays(MAX_DEPTH + 1).as_bytes()),
            Err(CanonError::TooDeep)
        );
        let in_object = |n: usize| format!("{{\"a\":{}}}", nested_arrays(n));
        assert!(parse_object(in_object(MAX_DEPTH - 1).as_bytes()).is_ok());
        assert_eq!(
            parse_object(in_object(MAX_DEPTH).as_bytes()),
            Err(CanonError::TooDeep)
        );
        assert_eq!(
            parse_object(in_object(33).as_bytes()),
            Err(CanonError::TooDeep)
        );
    }

    #[test]
    fn hostile_nesting_does_not_overflow() {
        assert_eq!(
            parse("[".repeat(100_000).as_bytes()),
            Err(CanonError::TooLarge)
        );
        assert_eq!(
            parse("[".repeat(MAX_BYTES).as_bytes()),
            Err(CanonError::TooDeep)
        );
        assert_eq!(
            parse(r#"{"a":"#.repeat(10_000).as_bytes()),
            Err(CanonError::TooDeep)
        );
    }

    #[test]
    fn whitespace_and_key_order_do_not_matter() {
        let a = canon(r#"{"payee":"ACME","amount":"1250.00","meta":{"z":[1,2],"a":null}}"#);
        let b = canon(
            " {\n\t\"meta\" : { \"a\" : null , \"z\" : [ 1 , 2 ] } ,\r\n \"amount\":\"1250.00\", \
             \"payee\":\"ACME\"}\n",
        );
        assert_eq!(a, b);
        assert_eq!(
            a,
            r#"{"amount":"1250.00","meta":{"a":null,"z":[1,2]},"payee":"ACME"}"#
        );
    }

    #[test]
    fn pointer_lookup() {
        let v = parse(br#"{"a/b":1,"m~n":2,"list":[10,{"x":"y"}],"":3,"0":4}"#).unwrap();
        assert_eq!(v.pointer(""), Some(&v));
        assert_eq!(v.pointer("/a~1b"), Some(&Value::Number(1)));
        assert_eq!(v.pointer("/m~0n"), Some(&Value::Number(2)));
        assert_eq!(v.pointer("/list/0"), Some(&Value::Number(10)));
        assert_eq!(v.pointer("/list/1/x").and_then(Value::as_str), Some("y"));
        assert_eq!(v.pointer("/"), Some(&Value::Number(3)));
        assert_eq!(v.pointer("/0"), Some(&Value::Number(4)));
        for missing in [
            "a", "/nope", "/list/2", "/list/01", "/list/-", "/list/+1", "/list/", "/a~2b", "/m~",
            "/0/x",
        ] {
            assert_eq!(v.pointer(missing), None, "{missing}");
        }
    }

    #[test]
    fn to_serde_and_as_str() {
        let v = parse(br#"{"s":"x","n":-5,"l":[true,null]}"#).unwrap();
        assert_eq!(
            v.to_serde(),
            serde_json::json!({"s":"x","n":-5,"l":[true,null]})
        );
        assert_eq!(v.pointer("/s").and_then(Value::as_str), Some("x"));
        assert_eq!(v.pointer("/n").and_then(Value::as_str), None);
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..6).prop_map(|cs| cs.into_iter().collect())
    }

    fn arb_members(
        inner: impl Strategy<Value = Value>,
    ) -> impl Strategy<Value = Vec<(String, Value)>> {
        prop::collection::btree_map(arb_string(), inner, 0..5).prop_map(|m| m.into_iter().collect())
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).prop_map(Value::Number),
            arb_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                arb_members(inner).prop_map(Value::Object),
            ]
        })
    }

    fn arb_object() -> impl Strategy<Value = Value> {
        arb_members(arb_value()).prop_map(Value::Object)
    }

    /// Deterministic noise so a failing case shrinks and replays.
    struct Noise(u64);

    impl Noise {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn ws(&mut self, out: &mut String) {
            for _ in 0..self.below(3) {
                out.push([' ', '\t', '\n', '\r'][self.below(4)]);
            }
        }
    }

    /// Any valid serialisation: shuffled members, random whitespace, and
    /// characters randomly written as \u escapes.
    fn noisy(v: &Value, rng: &mut Noise, out: &mut String) {
        rng.ws(out);
        match v {
            Value::String(s) => noisy_string(s, rng, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    noisy(item, rng, out);
                }
                rng.ws(out);
                out.push(']');
            }
            Value::Object(members) => {
                let mut shuffled: Vec<_> = members.iter().collect();
                for i in (1..shuffled.len()).rev() {
                    shuffled.swap(i, rng.below(i + 1));
                }
                out.push('{');
                for (i, (k, v)) in shuffled.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    rng.ws(out);
                    noisy_string(k, rng, out);
                    rng.ws(out);
                    out.push(':');
                    noisy(v, rng, out);
                }
                rng.ws(out);
                out.push('}');
            }
            other => out.push_str(&canonicalize(other)),
        }
        rng.ws(out);
    }

    fn noisy_string(s: &str, rng: &mut Noise, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            if c < ' ' || c == '"' || c == '\\' || rng.below(4) == 0 {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            } else {
                out.push(c);
            }
        }
        out.push('"');
    }

    fn sorted(v: &Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            Value::Object(members) => {
                let mut members: Vec<_> = members
                    .iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect();
                members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
                Value::Object(members)
            }
            other => other.clone(),
        }
    }

    fn leaves_mut<'a>(v: &'a mut Value, out: &mut Vec<&'a mut Value>) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| leaves_mut(i, out)),
            Value::Object(members) => members.iter_mut().for_each(|(_, v)| leaves_mut(v, out)),
            leaf => out.push(leaf),
        }
    }

    fn count_objects(v: &Value) -> usize {
        match v {
            Value::Array(items) => items.iter().map(count_objects).sum(),
            Value::Object(members) => {
                1 + members.iter().map(|(_, v)| count_objects(v)).sum::<usize>()
            }
            _ => 0,
        }
    }

    /// Adds a fresh key to the `n`th object in pre-order; true once done.
    fn add_key_to_nth_object(v: &mut Value, n: &mut usize) -> bool {
        match v {
            Value::Array(items) => items.iter_mut().any(|i| add_key_to_nth_object(i, n)),
            Value::Object(members) if *n == 0 => {
                // Longer than every existing key, so it cannot collide.
                let longest = members
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .max_by_key(|k| k.len());
                members.push((format!("{}x", longest.unwrap_or_default()), Value::Null));
                true
            }
            Value::Object(members) => {
                *n -= 1;
                members.iter_mut().any(|(_, v)| add_key_to_nth_object(v, n))
            }
            _ => false,
        }
    }

    fn changed(leaf: &Value) -> Value {
        match leaf {
            Value::Null => Value::Bool(false),
            Value::Bool(b) => Value::Bool(!b),
            Value::Number(n) if *n == MAX_SAFE_INTEGER => Value::Number(n - 1),
            Value::Number(n) => Value::Number(n + 1),
            Value::String(s) => Value::String(format!("{s}x")),
            container => container.clone(),
        }
    }

    proptest! {
        #[test]
        fn serde_values_canonicalise_as_their_parsed_text(v in arb_value()) {
            let serde = v.to_serde();
            let mut direct = String::new();
            write_canonical_serde(&serde, 0, &mut direct)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed = parse(serde.to_string().as_bytes())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(direct, canonicalize(&parsed));
        }

        #[test]
        fn any_serialisation_has_one_canonical_form(v in arb_object(), seed in 1u64..) {
            let expected = canonicalize(&v);
            let mut text = String::new();
            noisy(&v, &mut Noise(seed), &mut text);
            let parsed = parse_object(text.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(canonicalize(&parsed), expected.clone());
            let reparsed = parse_object(expected.as_bytes())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(canonicalize(&reparsed), expected);
            prop_assert_eq!(reparsed, sorted(&v));
        }

        #[test]
        fn changing_a_leaf_changes_the_output(v in arb_object(), pick in any::<usize>()) {
            let before = canonicalize(&v);
            let mut mutated = v.clone();
            let mut leaves = Vec::new();
            leaves_mut(&mut mutated, &mut leaves);
            prop_assume!(!leaves.is_empty());
            let leaf = leaves.swap_remove(pick % leaves.len());
            *leaf = changed(leaf);
            prop_assert_ne!(canonicalize(&mutated), before);
        }

        #[test]
        fn adding_a_key_changes_the_output(v in arb_object(), pick in any::<usize>()) {
            let before = canonicalize(&v);
            let mut mutated = v.clone();
            let mut n = pick % count_objects(&v);
            prop_assert!(add_key_to_nth_object(&mut mutated, &mut n));
            prop_assert_ne!(canonicalize(&mutated), before);
        }
    }
}

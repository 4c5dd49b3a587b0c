//! Text that people read or that names a person. Two dangers: characters that change how text
//! looks without being seen (a payee "ACME Gmb\u{E0041}H" renders as "ACME GmbH"), and two
//! spellings of one identity ("Dave", " dave", "ｄａｖｅ") getting around separation of duties.
//!
//! Which characters count as unseen comes from Unicode's own tables (ICU data), not from a
//! hand-picked list: every Default_Ignorable_Code_Point, every control, format, line and
//! paragraph separator, private-use and unassigned code point, every space other than U+0020,
//! and the few visible-as-blank symbols Unicode classifies as ordinary (U+2800, U+FFFC).

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Whether `c` is invisible, blank or reorders text, so that a reader cannot see it is there.
pub fn is_unseen(c: char) -> bool {
    if c == ' ' {
        return false;
    }
    if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c) {
        return true;
    }
    matches!(
        CodePointMapData::<GeneralCategory>::new().get(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
    ) || matches!(c, '\u{2800}' | '\u{FFFC}')
}

/// `s` with every unseen character shown as `⟨U+202E⟩`, and whether there was one.
pub fn reveal(s: &str) -> (String, bool) {
    reveal_except(s, None)
}

/// Like [`reveal`], keeping `keep` as it is (the line breaks of pretty-printed JSON, whose
/// strings have their own line breaks escaped).
pub fn reveal_except(s: &str, keep: Option<char>) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut found = false;
    for c in s.chars() {
        if is_unseen(c) && Some(c) != keep {
            found = true;
            out.push_str(&format!("⟨U+{:04X}⟩", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    (out, found)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must be 1 to {max} characters")]
    Length { max: usize },
    #[error("holds an invisible, control or direction-changing character (U+{0:04X})")]
    Unseen(u32),
    #[error("may hold only letters, digits and - _ . @ (not {0:?})")]
    Charset(char),
}

/// "1 approval", "2 approvals".
pub fn plural(n: impl Into<i64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Plain text a person will read (a reason, a label): 1 to `max` characters, nothing unseen.
pub fn plain(s: &str, max: usize) -> Result<(), TextError> {
    if s.is_empty() || s.chars().count() > max {
        return Err(TextError::Length { max });
    }
    match s.chars().find(|&c| is_unseen(c)) {
        Some(c) => Err(TextError::Unseen(u32::from(c))),
        None => Ok(()),
    }
}

/// The one form in which identities are compared: NFKC (so full-width letters and the
/// compatibility spaces fold), surrounding spaces removed, inner runs of spaces made one,
/// lower case. Text with any other unseen character is refused rather than folded: a name that
/// hides something is not a name to compare.
pub fn identity_key(s: &str, max: usize) -> Result<String, TextError> {
    let folded = ComposingNormalizerBorrowed::new_nfkc().normalize(s);
    if let Some(c) = folded.chars().find(|&c| is_unseen(c)) {
        return Err(TextError::Unseen(u32::from(c)));
    }
    let words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
    let key = words.join(" ").to_lowercase();
    if key.is_empty() || key.chars().count() > max {
        return Err(TextError::Length { max });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_unseen_comes_from_the_unicode_tables() {
        for c in [
            '\u{E0041}', // tag characters
            '\u{E007F}',
            '\u{FE0F}', // variation selectors
            '\u{E0100}',
            '\u{180B}', // Mongolian free variation selector
            '\u{2028}', // line and paragraph separators
            '\u{2029}',
            '\u{2800}', // braille blank
            '\u{FFFC}', // object replacement
            '\u{200B}', // zero width space
            '\u{202E}', // right-to-left override
            '\u{00AD}', // soft hyphen
            '\u{3164}', // Hangul filler
            '\u{00A0}', // no-break space
            '\u{E000}', // private use
            '\u{0378}', // unassigned
            '\n',
            '\u{7F}',
        ] {
            assert!(is_unseen(c), "U+{:04X}", u32::from(c));
        }
        for c in ['a', 'Z', 'ë', 'ß', '€', ' ', '中', '-', '⟨'] {
            assert!(!is_unseen(c), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn unseen_characters_are_shown() {
        assert_eq!(
            reveal("ACME Gmb\u{E0041}\u{E0042}H"),
            ("ACME Gmb⟨U+E0041⟩⟨U+E0042⟩H".to_owned(), true)
        );
        assert_eq!(
            reveal("ACME\u{202E}HbmG"),
            ("ACME⟨U+202E⟩HbmG".to_owned(), true)
        );
        assert_eq!(reveal("Zoë & Co"), ("Zoë & Co".to_owned(), false));
        assert!(reveal("line\nbreak").1);
        assert_eq!(
            reveal_except("{\n  \"a\": \"\u{202E}\"\n}", Some('\n')),
            ("{\n  \"a\": \"⟨U+202E⟩\"\n}".to_owned(), true)
        );
    }

    #[test]
    fn identities_fold_case_width_and_whitespace() {
        for spelling in ["dave", "Dave", " dave", "DAVE ", "ｄａｖｅ", "\u{3000}dave"] {
            assert_eq!(identity_key(spelling, 64).unwrap(), "dave", "{spelling:?}");
        }
        assert_eq!(identity_key("Dave  Smith", 64).unwrap(), "dave smith");
        assert_eq!(
            identity_key("dave\u{200B}", 64),
            Err(TextError::Unseen(0x200B))
        );
        assert_eq!(identity_key("dave\t", 64), Err(TextError::Unseen(0x09)));
        assert_eq!(identity_key("   ", 64), Err(TextError::Length { max: 64 }));
        assert_eq!(identity_key("abc", 2), Err(TextError::Length { max: 2 }));
    }

    #[test]
    fn plain_text() {
        assert!(plain("new payee", 200).is_ok());
        assert_eq!(plain("", 5), Err(TextError::Length { max: 5 }));
        assert_eq!(plain("a\u{2066}b", 5), Err(TextError::Unseen(0x2066)));
    }
}

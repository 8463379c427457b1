//! Operator names: normalised once, compared by their confusable skeleton.
//!
//! A name is NFKC-normalised and lower-cased when it is created. It may hold letters,
//! digits, `.`, `-` and `_` (so no control, invisible or bidirectional character, and
//! no space). Two names are the same person when their Unicode confusable skeletons
//! (UTS #39, through `unicode-security`) match: `alice` and `аlice` with a Cyrillic
//! `а` are one name, and the second is refused.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A normalised operator name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperatorName(String);

impl OperatorName {
    /// Normalises `raw` and refuses what cannot be a name, saying why.
    pub fn new(raw: &str) -> Result<Self, String> {
        if let Some(c) = raw.chars().find(|c| invisible_or_control(*c)) {
            return Err(format!(
                "operator name {:?} holds {}, which is not allowed in a name",
                raw.escape_debug().to_string(),
                describe(c)
            ));
        }
        let name: String = raw.trim().nfkc().collect::<String>().to_lowercase();
        if name.is_empty() {
            return Err("an operator name must not be empty".into());
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(format!(
                "operator name {name:?} is longer than {MAX_NAME_CHARS} characters"
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(format!(
                "operator name {name:?} holds {}; use letters, digits, '.', '-' and '_'",
                describe(c)
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identity two names share when they look alike.
    pub fn skeleton(&self) -> String {
        skeleton(&self.0)
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The confusable skeleton of any text (a job's `owner`, say), after the same
/// normalisation a name gets, with invisible characters dropped so that a zero-width
/// space cannot make two names differ.
pub fn skeleton(text: &str) -> String {
    let visible: String = text.chars().filter(|c| !invisible_or_control(*c)).collect();
    let normal: String = visible.trim().nfkc().collect::<String>().to_lowercase();
    unicode_security::skeleton(&normal)
        .collect::<String>()
        .to_lowercase()
}

/// Control characters, format characters (zero-width, bidirectional marks) and the
/// other default-ignorable code points.
fn invisible_or_control(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

fn describe(c: char) -> String {
    if c.is_control() || invisible_or_control(c) {
        format!("the invisible or control character U+{:04X}", c as u32)
    } else {
        format!("the character {c:?} (U+{:04X})", c as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_look_alikes_share_a_skeleton() {
        assert_eq!(OperatorName::new("  Ada ").unwrap().as_str(), "ada");
        assert_eq!(OperatorName::new("ＡＤＡ").unwrap().as_str(), "ada");
        let latin = OperatorName::new("alice").unwrap();
        let cyrillic = OperatorName::new("\u{0430}lice").unwrap();
        assert_ne!(latin, cyrillic);
        assert_eq!(latin.skeleton(), cyrillic.skeleton());
        assert_eq!(skeleton("Ali\u{200B}ce"), latin.skeleton());
    }

    #[test]
    fn invisible_control_and_spaced_names_are_refused() {
        for bad in [
            "ali\u{200B}ce",
            "bob\u{202E}",
            "eve\u{7}",
            "a b",
            "",
            "x\u{FEFF}",
        ] {
            assert!(OperatorName::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(OperatorName::new(&"a".repeat(65)).is_err());
    }
}

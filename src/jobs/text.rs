//! Text a person reads in a terminal or a review: job ids, descriptions, owners, names.
//!
//! A job file is reviewed on screen, and `plan` prints its text. Characters that change
//! what a screen shows rather than showing themselves are refused in every text field:
//! control characters (which carry ANSI escapes), zero-width characters, and the
//! bidirectional marks that reorder a line (the "Trojan Source" trick). Anything shown
//! that came from elsewhere (a provider's holder name) goes through [`printable`].

/// Zero-width and invisible formatting characters.
const INVISIBLE: &[char] = &[
    '\u{00AD}', // soft hyphen
    '\u{180E}', // Mongolian vowel separator
    '\u{200B}', // zero width space
    '\u{200C}', // zero width non-joiner
    '\u{200D}', // zero width joiner
    '\u{2060}', // word joiner
    '\u{2061}', '\u{2062}', '\u{2063}', '\u{2064}', // invisible operators
    '\u{FEFF}', // zero width no-break space (BOM)
];

/// Bidirectional marks, embeddings, overrides and isolates.
const BIDI: &[char] = &[
    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

/// What kind of hidden character `c` is, if it is one.
fn hidden(c: char) -> Option<&'static str> {
    if c == '\u{1b}' {
        Some("an escape character (ANSI terminal code)")
    } else if c.is_control() {
        Some("a control character")
    } else if BIDI.contains(&c) {
        Some("a bidirectional mark, which reorders what a screen shows")
    } else if INVISIBLE.contains(&c) {
        Some("a zero-width (invisible) character")
    } else {
        None
    }
}

/// Refuses text that holds a hidden character, saying which and where (1-based
/// character position).
pub fn check_text(s: &str) -> Result<(), String> {
    for (i, c) in s.chars().enumerate() {
        if let Some(what) = hidden(c) {
            return Err(format!(
                "holds {what} (U+{:04X}) at character {}: text fields may hold only visible characters and spaces",
                c as u32,
                i + 1
            ));
        }
    }
    Ok(())
}

/// `s` with every hidden character written as `\u{…}`, safe to print.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if hidden(c).is_some() {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_refused_and_escaped_for_printing() {
        assert!(check_text("Ada Obi — payroll, 25th").is_ok());
        for (bad, says) in [
            ("a\u{1b}[31mb", "escape character"),
            ("a\tb", "control character"),
            ("a\u{202E}b", "bidirectional mark"),
            ("a\u{200B}b", "zero-width"),
        ] {
            let e = check_text(bad).unwrap_err();
            assert!(e.contains(says) && e.contains("at character 2"), "{e}");
        }
        assert_eq!(printable("x\u{1b}[2Jy"), "x\\u{001b}[2Jy");
    }
}

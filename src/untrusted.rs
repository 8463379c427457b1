//! Text from outside (a provider's error message, an OAuth `error_description`, a
//! callback's parameters) made safe to put in a log line, a reason or an audit entry:
//! a newline in it could otherwise forge a whole log line of its own.

/// `text` on one line: line breaks, tabs, other control characters (ANSI escapes
/// included) and the Unicode line and paragraph separators are written as escapes
/// (`\n`, `\u{1b}`); everything else, non-ASCII letters included, stays as it is.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}') => {
                out.extend(c.escape_unicode())
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_cannot_start_a_forged_line() {
        let hostile =
            "bad token\n2026-01-01T00:00:00Z  INFO treasury: transfer approved\r\x1b[2K\u{2028}ok";
        let safe = one_line(hostile);
        assert!(!safe.contains(['\n', '\r', '\x1b', '\u{2028}']), "{safe}");
        assert_eq!(
            safe,
            "bad token\\n2026-01-01T00:00:00Z  INFO treasury: transfer approved\\r\\u{1b}[2K\\u{2028}ok"
        );
        assert_eq!(
            one_line("Sosanya Dìckson, ₦10,000"),
            "Sosanya Dìckson, ₦10,000"
        );
        // A backslash is escaped too, so an escape in the input stays distinguishable.
        assert_eq!(one_line("a\\nb"), "a\\\\nb");
    }
}

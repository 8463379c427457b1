//! The TOML parser's messages in plain words, naming the key they are about. A
//! finance reviewer reads "duplicate key `target_amount`", not "duplicate key".

use std::ops::Range;

/// `message` from the TOML parser, about `span` of `text`, said plainly.
pub fn plain(message: &str, text: &str, span: Range<usize>) -> String {
    let message = message.trim().trim_end_matches('.');
    let at = text
        .get(span.clone())
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 80 && !s.contains('\n'));
    let quoted = |s: &str| format!("`{}`", super::text::printable(s.trim_matches('"')));
    let said = match message.lines().next().unwrap_or(message) {
        "duplicate key" => match at {
            Some(k) => format!(
                "duplicate key {}: a key may appear only once in a table",
                quoted(k)
            ),
            None => "duplicate key: a key may appear only once in a table".into(),
        },
        "unquoted string" => match at {
            Some(v) => format!(
                "{} must be in quotes: text and amounts are written \"like this\"",
                quoted(v)
            ),
            None => "a text value must be in quotes".into(),
        },
        "missing value for key" | "key with no value" | "missing value" => {
            "a key needs a value after `=`".into()
        }
        "missing assignment between key-value pairs" | "key-value separator" => {
            "a key and its value are joined by `=`".into()
        }
        "unclosed table" | "unclosed array table" => {
            "a table name in [brackets] is not closed".into()
        }
        "unclosed array" => "a list `[` is not closed with `]`".into(),
        "unclosed inline table" => "an inline table `{` is not closed with `}`".into(),
        "invalid key" => match at {
            Some(k) => format!(
                "{} is not a valid key: keys are letters, digits, `-` and `_`, or quoted",
                quoted(k)
            ),
            None => "not a valid key".into(),
        },
        other => other.to_string(),
    };
    format!("TOML syntax: {said}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_key_is_named() {
        let text = "a = 1\na = 2\n";
        assert_eq!(
            plain("duplicate key", text, 6..7),
            "TOML syntax: duplicate key `a`: a key may appear only once in a table"
        );
    }
}

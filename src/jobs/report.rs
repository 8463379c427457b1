//! `treasury jobs validate --json`: errors and warnings as objects (file, line,
//! column, code, message), for tools that review job files.

use serde::Serialize;

use super::{Diagnostic, Validation};

/// One error or warning as `--json` shows it. `line` and `column` are 0 when the
/// finding is about a whole file (or, with `file` empty, about no file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub code: &'static str,
    pub message: String,
}

/// What `validate --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub files: usize,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub notes: Vec<String>,
}

/// The stable code of a finding, from the rule its message states. Kept in one
/// table so that a new rule gets its code here.
const CODES: &[(&str, &str)] = &[
    ("TOML syntax", "toml_syntax"),
    ("NUL byte", "nul_byte"),
    ("is not UTF-8", "not_utf8"),
    ("the jobs folder", "jobs_folder"),
    ("is not a folder", "jobs_folder"),
    ("unknown key", "unknown_key"),
    ("missing required key", "missing_key"),
    ("(U+", "hidden_character"),
    ("is not a plain decimal", "amount_not_plain"),
    ("is too large", "amount_too_large"),
    ("decimal places", "amount_too_precise"),
    ("must be a positive decimal", "amount_not_positive"),
    ("is not a currency", "currency_not_listed"),
    ("no currency exchange", "currency_pair"),
    ("never fires", "cron_never_fires"),
    ("out of range", "cron_range"),
    ("runs backwards", "cron_range"),
    ("a step is", "cron_range"),
    ("day_match", "day_match"),
    ("`schedule.cron`", "cron_invalid"),
    ("does not follow daylight saving", "fixed_timezone"),
    ("`schedule.timezone`", "timezone_invalid"),
    ("likely duplicate", "likely_duplicate"),
    ("also declared in", "duplicate_job_id"),
    ("lacks the scopes", "missing_scopes"),
    ("not declared in config", "undeclared_grant"),
    ("holds a secret", "secret_in_file"),
    ("plain http://", "public_http"),
    ("is not supported", "store_scheme"),
    ("declared twice", "duplicate_grant"),
    ("trigger", "trigger"),
    ("secret", "trigger_secret"),
];

/// The code of `message` (`invalid` when no rule in [`CODES`] names it).
pub fn code_of(message: &str) -> &'static str {
    CODES
        .iter()
        .find(|(says, _)| message.contains(says))
        .map_or("invalid", |(_, code)| code)
}

fn finding(d: &Diagnostic) -> Finding {
    Finding {
        file: d.path.clone(),
        line: d.line,
        column: d.col,
        code: code_of(&d.message),
        message: d.message.clone(),
    }
}

/// The report of `v`, with the environment's warnings (`extra`, about no one place).
pub fn report(v: &Validation, extra: &[String]) -> Report {
    let mut warnings: Vec<Finding> = v.warnings.iter().map(finding).collect();
    warnings.extend(extra.iter().map(|w| Finding {
        file: String::new(),
        line: 0,
        column: 0,
        code: code_of(w),
        message: w.clone(),
    }));
    Report {
        ok: v.errors.is_empty(),
        files: v.files,
        errors: v.errors.iter().map(finding).collect(),
        warnings,
        notes: v.notes.clone(),
    }
}

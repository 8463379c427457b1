//! Job files into [`Job`]s, at the edge. Every rule broken is reported, each with
//! `file:line:col`, rather than stopping at the first: a reviewer fixes a file in one go.
//!
//! The TOML is read as a spanned tree (`toml::de::DeTable`) and walked by hand, so that
//! unknown keys, missing keys and bad values all point at their place in the file.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::calendar::{BusinessDays, Calendars, Roll};
use super::schedule::{self, CatchUp, CronSchedule, DayMatch};
use super::spec::{
    Approval, HttpTrigger, Job, JobId, JobSpec, Payee, Payout, ScheduleSpec, Side, SweepSpec,
    Trigger,
};
use super::text::{check_text, printable};
use crate::config::GrantSpec;
use crate::money::{Currency, LARGEST_AMOUNT, MoneyError, catalogue, parse_amount};
use crate::runs::{Amount, Limits, RateGuard, RecipientSpec};

/// One broken rule, and where. `line` 0 means the whole file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub path: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path, self.line, self.col, self.message
            )
        }
    }
}

/// Default re-quotes when `[guard]` does not say.
pub const DEFAULT_MAX_REQUOTES: u32 = 3;
/// Most re-quotes a job may allow.
pub const MAX_REQUOTES: i64 = 10;

const TOP_KEYS: &[&str] = &[
    "id",
    "description",
    "grant",
    "owner",
    "source_currency",
    "target_currency",
    "source_amount",
    "target_amount",
    "recipient",
    "guard",
    "limits",
    "approval",
    "schedule",
    "trigger",
    "sweep",
    "payees",
];
const RECIPIENT_KEYS: &[&str] = &["id", "bank_code", "account_number", "account_name"];
const GUARD_KEYS: &[&str] = &[
    "min_rate",
    "max_rate",
    "max_drift_pct",
    "max_fees",
    "max_requotes",
];
const LIMIT_KEYS: &[&str] = &["max_per_run", "daily_cap"];
const APPROVAL_KEYS: &[&str] = &["above", "approvers"];
const SCHEDULE_KEYS: &[&str] = &[
    "cron",
    "timezone",
    "day_match",
    "catch_up",
    "max_lateness",
    "calendar",
    "roll",
];
const TRIGGER_KEYS: &[&str] = &["side", "min_amount", "max_amount", "secret_env"];
const SWEEP_KEYS: &[&str] = &[
    "balance",
    "threshold",
    "keep",
    "min_amount",
    "interval",
    "min_interval",
    "debounce",
];
const PAYEE_KEYS: &[&str] = &[
    "key",
    "source_amount",
    "target_amount",
    "id",
    "bank_code",
    "account_number",
    "account_name",
];

/// Whether `id` has one of the two shapes Busha recipient ids take: a hyphenated UUID
/// (8-4-4-4-12 hex digits) or 24 hex digits. Either case of hex digit.
pub fn is_busha_recipient_id(id: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if id.len() == 24 {
        return hex(id);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g))
}

/// SHA-256 (hex) of a job file's bytes: its version.
pub fn version_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses one job file. `grants` are the aliases declared in `config/`; `None` when the
/// config could not be read (then aliases are not checked here).
pub fn parse_job(
    path: &str,
    bytes: &[u8],
    grants: Option<&[GrantSpec]>,
) -> Result<Job, Vec<Diagnostic>> {
    parse_job_with(path, bytes, grants, Calendars::standard())
}

/// As [`parse_job`], with the calendars a `[schedule]` may name.
pub fn parse_job_with(
    path: &str,
    bytes: &[u8],
    grants: Option<&[GrantSpec]>,
    calendars: &Calendars,
) -> Result<Job, Vec<Diagnostic>> {
    let version = version_of(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(vec![Diagnostic {
            path: path.into(),
            line: 1,
            col: 1,
            message: "the file is not UTF-8".into(),
        }]);
    };
    let mut p = Parser {
        path,
        text,
        errs: Vec::new(),
        warnings: Vec::new(),
        provider: "busha",
        calendars,
    };
    if let Some(at) = text.find('\0') {
        p.at(at..at, "the file holds a NUL byte: a job file is text");
        return Err(p.finish());
    }
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // Recovery after a syntax error produces echoes; one message per line is plenty.
        let mut lines = BTreeSet::new();
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            if lines.insert(line_col(text, span.start).0) {
                let message = super::toml_words::plain(e.message(), text, span.clone());
                p.at(span, message);
            }
        }
        return Err(p.finish());
    }
    let top = Section {
        name: String::new(),
        table: root.get_ref(),
        span: 0..0,
    };
    p.provider = provider_of(&top, grants);
    let parsed = p.job(&top, grants);
    let errs = p.finish();
    let mut warnings = std::mem::take(&mut p.warnings);
    warnings.sort();
    match parsed {
        Some((spec, id_span, grant_span)) if errs.is_empty() => Ok(Job {
            spec,
            path: path.to_string(),
            version,
            source: text.to_string(),
            id_at: line_col(text, id_span.start),
            grant_at: line_col(text, grant_span.start),
            warnings,
        }),
        _ => Err(errs),
    }
}

/// 1-based line and character column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The account a recipient names: a saved recipient's id, or the bank and number.
fn account(r: &RecipientSpec) -> (&str, &str) {
    match r {
        RecipientSpec::Id { id } => ("", id),
        RecipientSpec::Bank {
            bank_code,
            account_number,
            ..
        } => (bank_code, account_number),
    }
}

/// The provider a job moves money on: its grant's, as declared in config (Busha when
/// the config is not known or does not say).
fn provider_of(top: &Section<'_, '_>, grants: Option<&[GrantSpec]>) -> &'static str {
    let alias = match top.get("grant").map(|v| v.get_ref()) {
        Some(DeValue::String(a)) => a.to_string(),
        _ => return "busha",
    };
    let declared = grants
        .and_then(|g| g.iter().find(|g| g.alias == alias))
        .map(|g| g.provider.as_str());
    catalogue::PROVIDERS
        .iter()
        .copied()
        .find(|p| Some(*p) == declared)
        .unwrap_or("busha")
}

struct Parser<'t> {
    path: &'t str,
    text: &'t str,
    errs: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// The job's provider, whose currency catalogue applies.
    provider: &'static str,
    calendars: &'t Calendars,
}

/// A table being read: its dotted name for messages, and where it starts.
struct Section<'a, 'i> {
    name: String,
    table: &'a DeTable<'i>,
    span: Range<usize>,
}

impl<'a, 'i> Section<'a, 'i> {
    fn key(&self, key: &str) -> String {
        if self.name.is_empty() {
            format!("`{key}`")
        } else {
            format!("`{}.{key}`", self.name)
        }
    }
    fn where_(&self) -> String {
        if self.name.is_empty() {
            "the job".to_string()
        } else {
            format!("[{}]", self.name)
        }
    }
    fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.get(key)
    }
    fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some()
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// How a decimal must look.
#[derive(Clone, Copy)]
enum Sign {
    Positive,
    NonNegative,
}

impl<'t> Parser<'t> {
    fn diagnostic(&self, span: Range<usize>, message: String) -> Diagnostic {
        let (line, col) = line_col(self.text, span.start);
        Diagnostic {
            path: self.path.to_string(),
            line,
            col,
            message,
        }
    }

    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.diagnostic(span, message.into());
        self.errs.push(d);
    }

    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = self.diagnostic(span, message.into());
        self.warnings.push(d);
    }

    fn finish(&mut self) -> Vec<Diagnostic> {
        let mut errs = std::mem::take(&mut self.errs);
        errs.sort();
        errs.dedup();
        errs
    }

    fn unknown_keys(&mut self, sec: &Section<'_, '_>, allowed: &[&str]) {
        for (k, _) in sec.table.iter() {
            if !allowed.contains(&&**k.get_ref()) {
                let known = allowed.join(", ");
                self.at(
                    k.span(),
                    format!(
                        "unknown key {} in {} (known keys: {known})",
                        printable(&sec.key(k.get_ref())),
                        sec.where_()
                    ),
                );
            }
        }
    }

    fn missing(&mut self, sec: &Section<'_, '_>, key: &str) {
        self.at(
            sec.span.clone(),
            format!("missing required key {} in {}", sec.key(key), sec.where_()),
        );
    }

    fn string(&mut self, sec: &Section<'_, '_>, key: &str) -> Option<(String, Range<usize>)> {
        let v = sec.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => match check_text(s) {
                Ok(()) => Some((s.to_string(), v.span())),
                Err(e) => {
                    self.at(v.span(), format!("{} {e}", sec.key(key)));
                    None
                }
            },
            other => {
                self.at(
                    v.span(),
                    format!(
                        "{} must be a string, got {}",
                        sec.key(key),
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    fn required_string(
        &mut self,
        sec: &Section<'_, '_>,
        key: &str,
    ) -> Option<(String, Range<usize>)> {
        if !sec.has(key) {
            self.missing(sec, key);
            return None;
        }
        let (s, span) = self.string(sec, key)?;
        if s.trim().is_empty() {
            self.at(span, format!("{} must not be empty", sec.key(key)));
            return None;
        }
        Some((s, span))
    }

    /// A currency code the job's provider moves (the catalogue, [`catalogue`]).
    fn currency(&mut self, sec: &Section<'_, '_>, key: &str) -> Option<Currency> {
        let (s, span) = self.required_string(sec, key)?;
        let checked = Currency::new(&s)
            .map_err(|e| e.to_string())
            .and_then(|c| catalogue::lookup(self.provider, c.as_str()).map(|_| c));
        match checked {
            Ok(c) => Some(c),
            Err(e) => {
                self.at(span, format!("{}: {e}", sec.key(key)));
                None
            }
        }
    }

    /// Decimal places the job's provider allows in `c`.
    fn precision(&self, c: &Currency) -> u32 {
        catalogue::lookup(self.provider, c.as_str()).map_or(c.precision(), |i| i.precision)
    }

    /// A decimal string. `currency` adds the precision check.
    fn decimal(
        &mut self,
        sec: &Section<'_, '_>,
        key: &str,
        sign: Sign,
        currency: Option<&Currency>,
    ) -> Option<Decimal> {
        let v = sec.get(key)?;
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            other => {
                self.at(
                    v.span(),
                    format!(
                        "{} must be a decimal string in quotes, such as \"1500.00\", got {} (amounts are never floats)",
                        sec.key(key),
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        let d = match parse_amount(&text) {
            Ok(d) => d,
            Err(MoneyError::TooLarge(_)) => {
                let largest = match currency.map(|c| self.precision(c)) {
                    Some(p) if p > 0 => format!("{LARGEST_AMOUNT}.{}", "9".repeat(p as usize)),
                    _ => LARGEST_AMOUNT.to_string(),
                };
                self.at(
                    v.span(),
                    format!(
                        "{} {text:?} is too large (the largest is {largest})",
                        sec.key(key)
                    ),
                );
                return None;
            }
            Err(MoneyError::NotPlain(_)) if text.starts_with('-') => {
                self.at(
                    v.span(),
                    format!("{} must be a positive decimal, got {text:?}", sec.key(key)),
                );
                return None;
            }
            Err(e) => {
                self.at(v.span(), format!("{}: {e}", sec.key(key)));
                return None;
            }
        };
        let ok = match sign {
            Sign::Positive => d > Decimal::ZERO,
            Sign::NonNegative => d >= Decimal::ZERO,
        };
        if !ok {
            let what = match sign {
                Sign::Positive => "a positive decimal",
                Sign::NonNegative => "zero or a positive decimal",
            };
            self.at(
                v.span(),
                format!("{} must be {what}, got {text:?}", sec.key(key)),
            );
            return None;
        }
        if let Some(c) = currency {
            let precision = self.precision(c);
            if d.normalize().scale() > precision {
                self.at(
                    v.span(),
                    format!(
                        "{} {text:?} has more than {precision} decimal places, the precision of {c}",
                        sec.key(key),
                    ),
                );
                return None;
            }
        }
        Some(d.normalize())
    }

    fn integer(&mut self, sec: &Section<'_, '_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = sec.get(key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.at(
                    v.span(),
                    format!(
                        "{} must be a whole number from {min} to {max}",
                        sec.key(key)
                    ),
                );
                None
            }
        }
    }

    fn duration(
        &mut self,
        sec: &Section<'_, '_>,
        key: &str,
        default: &str,
    ) -> Option<chrono::Duration> {
        let (s, span) = match sec.get(key) {
            None => (default.to_string(), sec.span.clone()),
            Some(_) => self.string(sec, key)?,
        };
        match schedule::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(span, format!("{}: {e}", sec.key(key)));
                None
            }
        }
    }

    fn table<'a, 'i>(&mut self, parent: &Section<'a, 'i>, key: &str) -> Option<Section<'a, 'i>> {
        let v = parent.get(key)?;
        let name = if parent.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", parent.name)
        };
        match v.get_ref() {
            DeValue::Table(t) => Some(Section {
                name,
                table: t,
                span: v.span(),
            }),
            other => {
                self.at(
                    v.span(),
                    format!(
                        "`{name}` must be a table ([{name}]), got {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// The whole job. Returns the spec and the spans of `id` and `grant`.
    fn job(
        &mut self,
        top: &Section<'_, '_>,
        grants: Option<&[GrantSpec]>,
    ) -> Option<(JobSpec, Range<usize>, Range<usize>)> {
        self.unknown_keys(top, TOP_KEYS);

        let id = self.required_string(top, "id").and_then(|(s, span)| {
            JobId::parse(&s)
                .map_err(|e| self.at(span.clone(), e))
                .ok()
                .map(|id| (id, span))
        });
        let description = self.string(top, "description").map(|(s, _)| s);
        let grant = self.required_string(top, "grant").and_then(|(alias, span)| {
            if let Some(grants) = grants {
                if !grants.iter().any(|g| g.alias == alias) {
                    let declared: Vec<&str> = grants.iter().map(|g| g.alias.as_str()).collect();
                    self.at(
                        span.clone(),
                        format!(
                            "grant alias {alias:?} is not declared in config ([[grants]]; declared: {})",
                            if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                        ),
                    );
                    return None;
                }
            }
            Some((alias, span))
        });
        let owner = self.required_string(top, "owner").map(|(s, _)| s);
        let source = self.currency(top, "source_currency");
        let target = self.currency(top, "target_currency");
        if let (Some(src), Some(tgt)) = (&source, &target) {
            if let Err(e) = catalogue::check_pair(self.provider, src.as_str(), tgt.as_str()) {
                let span = top.get("target_currency").map_or(0..0, |v| v.span());
                self.at(span, e);
            }
        }

        // Exactly one trigger.
        let trigger_keys: Vec<&str> = ["schedule", "trigger", "sweep"]
            .into_iter()
            .filter(|k| top.has(k))
            .collect();
        if trigger_keys.is_empty() {
            self.at(
                top.span.clone(),
                "a job needs exactly one trigger: [schedule], [trigger] or [sweep]",
            );
        }
        for extra in trigger_keys.iter().skip(1) {
            if let Some(v) = top.get(extra) {
                self.at(
                    v.span(),
                    format!(
                        "a job has exactly one trigger: [{}] and [{extra}] are both given",
                        trigger_keys[0]
                    ),
                );
            }
        }
        let guard_sec = self.table(top, "guard");
        if guard_sec.is_none() && !top.has("guard") {
            self.missing(top, "guard");
        }
        let (guard, max_requotes) = match &guard_sec {
            Some(g) => self.guard(g),
            None => (None, None),
        };

        let trigger = match trigger_keys.first().copied() {
            Some("schedule") => self.table(top, "schedule").and_then(|s| self.schedule(&s)),
            Some("trigger") => self
                .table(top, "trigger")
                .and_then(|s| self.http_trigger(&s, source.as_ref(), target.as_ref())),
            Some("sweep") => self
                .table(top, "sweep")
                .and_then(|s| self.sweep(&s, source.as_ref())),
            _ => None,
        };
        // Parse the extra triggers too, so their own mistakes are reported.
        for extra in trigger_keys.iter().skip(1) {
            if let Some(s) = self.table(top, extra) {
                match *extra {
                    "schedule" => drop(self.schedule(&s)),
                    "trigger" => drop(self.http_trigger(&s, source.as_ref(), target.as_ref())),
                    _ => drop(self.sweep(&s, source.as_ref())),
                }
            }
        }
        let kind = trigger_keys.first().copied();

        let payout = self.payout(top, kind, source.as_ref(), target.as_ref());
        let limits = self.limits(top, source.as_ref());
        let approval = self.approval(top, source.as_ref());

        // Approval compares a source amount; a target amount is bounded through min_rate.
        if let (Some(a), Some(p), Some(g)) = (&approval, &payout, &guard) {
            let target_side = match p {
                Payout::Single { amount, .. } => {
                    matches!(amount, Some(Amount::Target { .. }))
                        || matches!(&trigger, Some(Trigger::Http(t)) if t.side == Side::Target)
                }
                Payout::Batch(ps) => ps.iter().any(|p| matches!(p.amount, Amount::Target { .. })),
            };
            if target_side && g.min_rate.is_none() {
                let span = top.get("approval").map_or(0..0, |v| v.span());
                self.at(
                    span,
                    format!(
                        "[approval] `above` = {} is in the source currency, and this job fixes target amounts: set `guard.min_rate` so the source amount is bounded",
                        a.above
                    ),
                );
            }
        }
        if let Some(l) = &limits {
            if let (Some(max), Some(cap)) = (l.max_per_run, l.job_daily_cap) {
                if max > cap {
                    let span = top
                        .get("limits")
                        .and_then(|v| v.get_ref().get("max_per_run").map(|v| v.span()))
                        .unwrap_or(0..0);
                    self.at(
                        span,
                        format!("`limits.max_per_run` {max} is above `limits.daily_cap` {cap}"),
                    );
                }
            }
        }

        let (id, id_span) = id?;
        let (grant, grant_span) = grant?;
        let spec = JobSpec {
            id,
            description,
            grant,
            owner: owner?,
            source_currency: source?,
            target_currency: target?,
            payout: payout?,
            guard: guard?,
            max_requotes: max_requotes?,
            limits: limits?,
            approval,
            trigger: trigger?,
        };
        self.certain_failures(top, &spec);
        Some((spec, id_span, grant_span))
    }

    /// A job whose amounts break a limit at every rate the guard accepts is refused,
    /// at the limit's key, with the arithmetic.
    fn certain_failures(&mut self, top: &Section<'_, '_>, spec: &JobSpec) {
        for f in super::feasible::certain_failures(spec) {
            let span = top
                .get("limits")
                .and_then(|v| v.get_ref().get(f.limit.key()).map(|v| v.span()))
                .unwrap_or(0..0);
            self.at(span, f.message);
        }
    }

    fn guard(&mut self, g: &Section<'_, '_>) -> (Option<RateGuard>, Option<u32>) {
        self.unknown_keys(g, GUARD_KEYS);
        let min_rate = self.decimal(g, "min_rate", Sign::Positive, None);
        let max_rate = self.decimal(g, "max_rate", Sign::Positive, None);
        let max_drift_pct = self.decimal(g, "max_drift_pct", Sign::Positive, None);
        let max_fees = self.decimal(g, "max_fees", Sign::NonNegative, None);
        let requotes = if g.has("max_requotes") {
            self.integer(g, "max_requotes", 0, MAX_REQUOTES)
                .map(|n| n as u32)
        } else {
            Some(DEFAULT_MAX_REQUOTES)
        };
        let mut ok = true;
        if let (Some(min), Some(max)) = (min_rate, max_rate) {
            if min > max {
                let span = g.get("min_rate").map_or(g.span.clone(), |v| v.span());
                self.at(
                    span,
                    format!("`guard.min_rate` {min} is above `guard.max_rate` {max}"),
                );
                ok = false;
            }
        }
        if let Some(d) = max_drift_pct {
            if d > Decimal::ONE_HUNDRED {
                let span = g.get("max_drift_pct").map_or(g.span.clone(), |v| v.span());
                self.at(span, format!("`guard.max_drift_pct` {d} is above 100"));
                ok = false;
            }
        }
        if !g.has("min_rate") && !g.has("max_rate") && !g.has("max_drift_pct") {
            self.at(
                g.span.clone(),
                "[guard] needs a rate bound: `min_rate`, `max_rate` or `max_drift_pct` (no transfer at any rate)",
            );
            ok = false;
        }
        let all_parsed = (g.has("min_rate") == min_rate.is_some())
            && (g.has("max_rate") == max_rate.is_some())
            && (g.has("max_drift_pct") == max_drift_pct.is_some())
            && (g.has("max_fees") == max_fees.is_some());
        let guard = (ok && all_parsed).then_some(RateGuard {
            min_rate,
            max_rate,
            max_drift_pct,
            max_fees,
        });
        (guard, requotes)
    }

    fn schedule(&mut self, s: &Section<'_, '_>) -> Option<Trigger> {
        self.unknown_keys(s, SCHEDULE_KEYS);
        let cron = self.required_string(s, "cron");
        let tz = self.required_string(s, "timezone");
        let mut ok = true;
        let day_match = self.day_match(s, cron.as_ref());
        if let Some((c, span)) = &cron {
            if let Err(e) = schedule::parse_cron(c) {
                self.at(span.clone(), format!("`schedule.cron`: {e}"));
                ok = false;
            }
        }
        if let Some((t, span)) = &tz {
            match schedule::parse_timezone(t) {
                Ok(zone) => {
                    if let Some(w) = schedule::fixed_zone_warning(zone) {
                        self.warn(span.clone(), format!("`schedule.timezone`: {w}"));
                    }
                }
                Err(e) => {
                    self.at(span.clone(), format!("`schedule.timezone`: {e}"));
                    ok = false;
                }
            }
        }
        let catch_up = match self.string(s, "catch_up") {
            None if s.has("catch_up") => None,
            None => Some(CatchUp::Skip),
            Some((c, span)) => CatchUp::parse(&c).or_else(|| {
                self.at(
                    span,
                    format!(
                        "`schedule.catch_up` must be \"skip\", \"latest\" or \"all\", got {c:?}"
                    ),
                );
                None
            }),
        };
        let max_lateness = self.duration(s, "max_lateness", "1h");
        let business = self.business_days(s);
        let (cron, cron_span) = cron?;
        let (tz, _) = tz?;
        if !ok {
            return None;
        }
        let cron = CronSchedule::with_day_match(&cron, &tz, day_match?)
            .map_err(|e| self.at(cron_span.clone(), format!("`schedule.cron`: {e}")))
            .ok()?;
        let business = business?;
        if let Some(b) = &business {
            if let Err(e) = super::rolled::check_rolls(&cron, b) {
                let span = s.get("roll").map_or(cron_span, |v| v.span());
                self.at(span, e);
                return None;
            }
        }
        Some(Trigger::Schedule(ScheduleSpec {
            cron,
            catch_up: catch_up?,
            max_lateness: max_lateness?,
            business,
        }))
    }

    /// `calendar` and `roll`, which go together. `Some(None)`: neither is given.
    fn business_days(&mut self, s: &Section<'_, '_>) -> Option<Option<BusinessDays>> {
        let calendar = self.string(s, "calendar");
        let roll = self.string(s, "roll");
        if (s.has("calendar") && calendar.is_none()) || (s.has("roll") && roll.is_none()) {
            return None;
        }
        let (name, name_span, roll, roll_span) = match (calendar, roll) {
            (None, None) => return Some(None),
            (Some((_, span)), None) => {
                let m = format!("`schedule.calendar` needs a `roll`: {}", Roll::NAMES);
                self.at(span, m);
                return None;
            }
            (None, Some((_, span))) => {
                let m = "`schedule.roll` needs a `calendar` that says which days are business days";
                self.at(span, m);
                return None;
            }
            (Some((n, ns)), Some((r, rs))) => (n, ns, r, rs),
        };
        let Some(roll) = Roll::parse(&roll) else {
            let m = format!("`schedule.roll` must be {}, got {roll:?}", Roll::NAMES);
            self.at(roll_span, m);
            return None;
        };
        let Some(calendar) = self.calendars.get(&name) else {
            let folder = self.calendars.folder.display();
            let known = self.calendars.names();
            let known = if known.is_empty() {
                "there are none".to_string()
            } else {
                format!("there are: {}", known.join(", "))
            };
            let m = format!(
                "`schedule.calendar`: there is no calendar {name:?} (a file {folder}/{name}.toml); {known}"
            );
            self.at(name_span, m);
            return None;
        };
        Some(Some(BusinessDays { calendar, roll }))
    }

    /// `day_match`: required when both day fields of the cron are restricted, since
    /// classic cron and ours read that case differently.
    fn day_match(
        &mut self,
        s: &Section<'_, '_>,
        cron: Option<&(String, Range<usize>)>,
    ) -> Option<DayMatch> {
        let both = cron.is_some_and(|(c, _)| schedule::restricted_days(c) == (true, true));
        let Some((m, span)) = self.string(s, "day_match") else {
            if s.has("day_match") {
                return None;
            }
            if let (true, Some((c, span))) = (both, cron) {
                self.at(
                    span.clone(),
                    format!(
                        "`schedule.cron` {c:?} restricts both the day of the month and the day of the week: classic cron fires when either matches, so say which you mean with `day_match = \"all\"` (both must match, e.g. the first Monday of the month) or `day_match = \"any\"` (either matches)"
                    ),
                );
                return None;
            }
            return Some(DayMatch::All);
        };
        let Some(parsed) = DayMatch::parse(&m) else {
            self.at(
                span,
                format!("`schedule.day_match` must be \"all\" or \"any\", got {m:?}"),
            );
            return None;
        };
        if !both {
            self.warn(
                span,
                "`schedule.day_match` has no effect: the cron does not restrict both the day of the month and the day of the week",
            );
        }
        Some(parsed)
    }

    fn http_trigger(
        &mut self,
        t: &Section<'_, '_>,
        source: Option<&Currency>,
        target: Option<&Currency>,
    ) -> Option<Trigger> {
        self.unknown_keys(t, TRIGGER_KEYS);
        let side = match self.string(t, "side") {
            None if t.has("side") => None,
            None => Some(Side::Source),
            Some((s, span)) => match s.as_str() {
                "source" => Some(Side::Source),
                "target" => Some(Side::Target),
                _ => {
                    self.at(
                        span,
                        format!("`trigger.side` must be \"source\" or \"target\", got {s:?}"),
                    );
                    None
                }
            },
        };
        let currency = match side {
            Some(Side::Target) => target,
            _ => source,
        };
        for k in ["min_amount", "max_amount", "secret_env"] {
            if !t.has(k) {
                self.missing(t, k);
            }
        }
        let min = self.decimal(t, "min_amount", Sign::Positive, currency);
        let max = self.decimal(t, "max_amount", Sign::Positive, currency);
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                let span = t.get("min_amount").map_or(t.span.clone(), |v| v.span());
                self.at(
                    span,
                    format!("`trigger.min_amount` {lo} is above `trigger.max_amount` {hi}"),
                );
                return None;
            }
        }
        let secret_env = self.string(t, "secret_env").and_then(|(s, span)| {
            let ok = !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && !s.as_bytes()[0].is_ascii_digit();
            if ok {
                Some(s)
            } else {
                self.at(
                    span,
                    format!(
                        "`trigger.secret_env` must name an environment variable (A-Z, 0-9, _), got {s:?}; the secret itself never goes in a file"
                    ),
                );
                None
            }
        });
        Some(Trigger::Http(HttpTrigger {
            side: side?,
            min_amount: min?,
            max_amount: max?,
            secret_env: secret_env?,
        }))
    }

    fn sweep(&mut self, s: &Section<'_, '_>, source: Option<&Currency>) -> Option<Trigger> {
        self.unknown_keys(s, SWEEP_KEYS);
        let balance = self.currency(s, "balance");
        if let (Some(b), Some(src)) = (&balance, source) {
            if b != src {
                let span = s.get("balance").map_or(s.span.clone(), |v| v.span());
                self.at(
                    span,
                    format!("`sweep.balance` {b} must be the job's `source_currency` {src}: a sweep sends from the balance it watches"),
                );
                return None;
            }
        }
        for k in ["threshold", "keep"] {
            if !s.has(k) {
                self.missing(s, k);
            }
        }
        let threshold = self.decimal(s, "threshold", Sign::Positive, source);
        let keep = self.decimal(s, "keep", Sign::NonNegative, source);
        if let (Some(t), Some(k)) = (threshold, keep) {
            if k >= t {
                let span = s.get("keep").map_or(s.span.clone(), |v| v.span());
                self.at(
                    span,
                    format!("`sweep.keep` {k} must be below `sweep.threshold` {t}, or a sweep could move nothing"),
                );
                return None;
            }
        }
        let min_amount = if s.has("min_amount") {
            Some(self.decimal(s, "min_amount", Sign::Positive, source)?)
        } else {
            None
        };
        let interval = self.duration(s, "interval", "1m");
        let min_interval = self.duration(s, "min_interval", "10m");
        let debounce = self.duration(s, "debounce", "0s");
        if let Some(i) = interval {
            if i <= chrono::Duration::zero() {
                let span = s.get("interval").map_or(s.span.clone(), |v| v.span());
                self.at(span, "`sweep.interval` must be longer than 0s");
                return None;
            }
        }
        Some(Trigger::Sweep(SweepSpec {
            balance: balance?,
            threshold: threshold?,
            keep: keep?,
            min_amount,
            interval: interval?,
            min_interval: min_interval?,
            debounce: debounce?,
        }))
    }

    /// Exactly one of `source_amount`/`target_amount` in `sec`.
    fn amount(
        &mut self,
        sec: &Section<'_, '_>,
        source: Option<&Currency>,
        target: Option<&Currency>,
        required: &str,
    ) -> Option<Amount> {
        match (sec.get("source_amount"), sec.get("target_amount")) {
            (None, None) => {
                self.at(
                    sec.span.clone(),
                    format!("{required} needs exactly one of `source_amount` or `target_amount`"),
                );
                None
            }
            (Some(_), Some(t)) => {
                self.at(
                    t.span(),
                    format!(
                        "give exactly one of {} or {}, not both",
                        sec.key("source_amount"),
                        sec.key("target_amount")
                    ),
                );
                None
            }
            (Some(_), None) => {
                let src = source?;
                self.decimal(sec, "source_amount", Sign::Positive, Some(src))
                    .map(|amount| Amount::Source { amount })
            }
            (None, Some(_)) => {
                let tgt = target?;
                self.decimal(sec, "target_amount", Sign::Positive, Some(tgt))
                    .map(|amount| Amount::Target { amount })
            }
        }
    }

    fn recipient(&mut self, sec: &Section<'_, '_>) -> Option<RecipientSpec> {
        let bank_keys = ["bank_code", "account_number", "account_name"];
        let has_bank = bank_keys.iter().any(|k| sec.has(k));
        match (sec.get("id"), has_bank) {
            (Some(v), true) => {
                self.at(
                    v.span(),
                    format!(
                        "{} names a recipient by `id` or by `bank_code`, `account_number` and `account_name`, not both",
                        sec.where_()
                    ),
                );
                None
            }
            (Some(_), false) => self.required_string(sec, "id").and_then(|(id, span)| {
                // Busha's spec types the id as a UUID, yet every id in its examples is
                // 24-hex: both are accepted, and the id stays an opaque string.
                if is_busha_recipient_id(&id) {
                    Some(RecipientSpec::Id { id })
                } else {
                    self.at(
                        span,
                        format!(
                            "{} must be a Busha recipient id: a UUID such as 3f2b1c9e-8d4a-4e6b-9a7c-1d2e3f4a5b6c, or 24 hex digits such as 64ae8c26a1b2c3d4e5f60718; got {id:?}",
                            sec.key("id")
                        ),
                    );
                    None
                }
            }),
            (None, false) => {
                self.at(
                    sec.span.clone(),
                    format!(
                        "{} needs a recipient: `id`, or `bank_code`, `account_number` and `account_name`",
                        sec.where_()
                    ),
                );
                None
            }
            (None, true) => {
                let code = self.required_string(sec, "bank_code");
                let number = self.required_string(sec, "account_number");
                let name = self.required_string(sec, "account_name");
                let number = number.and_then(|(n, span)| {
                    if n.len() >= 6 && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()) {
                        Some(n)
                    } else {
                        self.at(
                            span,
                            format!("{} must be 6-20 digits", sec.key("account_number")),
                        );
                        None
                    }
                });
                let code = code.and_then(|(c, span)| {
                    if c.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        Some(c)
                    } else {
                        self.at(
                            span,
                            format!("{} must be letters and digits", sec.key("bank_code")),
                        );
                        None
                    }
                });
                Some(RecipientSpec::Bank {
                    bank_code: code?,
                    account_number: number?,
                    expected_name: name?.0,
                })
            }
        }
    }

    fn payout(
        &mut self,
        top: &Section<'_, '_>,
        kind: Option<&str>,
        source: Option<&Currency>,
        target: Option<&Currency>,
    ) -> Option<Payout> {
        if let Some(v) = top.get("payees") {
            for k in ["source_amount", "target_amount"] {
                if let Some(a) = top.get(k) {
                    self.at(
                        a.span(),
                        format!(
                            "`{k}` is per payee in a batch job: move it into each [[payees]] entry"
                        ),
                    );
                }
            }
            if let Some(r) = top.get("recipient") {
                self.at(
                    r.span(),
                    "[recipient] is per payee in a batch job: give each [[payees]] entry its own",
                );
            }
            if kind.is_some_and(|k| k != "schedule") {
                self.at(v.span(), "[[payees]] is only for scheduled jobs");
            }
            let DeValue::Array(items) = v.get_ref() else {
                self.at(
                    v.span(),
                    format!(
                        "`payees` must be an array of tables ([[payees]]), got {}",
                        type_name(v.get_ref())
                    ),
                );
                return None;
            };
            if items.is_empty() {
                self.at(v.span(), "[[payees]] must list at least one payee");
                return None;
            }
            let mut payees = Vec::new();
            let mut keys: BTreeSet<String> = BTreeSet::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let DeValue::Table(t) = item.get_ref() else {
                    self.at(item.span(), "each `payees` entry must be a table");
                    ok = false;
                    continue;
                };
                let sec = Section {
                    name: format!("payees[{}]", i + 1),
                    table: t,
                    span: item.span(),
                };
                self.unknown_keys(&sec, PAYEE_KEYS);
                let key = self.required_string(&sec, "key").and_then(|(k, span)| {
                    let valid = k.len() <= 64
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !valid {
                        self.at(
                            span,
                            format!("payee key {k:?} must be 1-64 letters, digits, '-' or '_'"),
                        );
                        None
                    } else if !keys.insert(k.clone()) {
                        self.at(
                            span,
                            format!("payee key {k:?} is used twice: keys must be unique in a job"),
                        );
                        None
                    } else {
                        Some(k)
                    }
                });
                let amount =
                    self.amount(&sec, source, target, &format!("[[payees]] entry {}", i + 1));
                let recipient = self.recipient(&sec);
                match (key, amount, recipient) {
                    (Some(key), Some(amount), Some(recipient)) => payees.push(Payee {
                        key,
                        amount,
                        recipient,
                    }),
                    _ => ok = false,
                }
            }
            self.likely_duplicates(&payees, items);
            return ok.then_some(Payout::Batch(payees));
        }

        let amount = match kind {
            Some("schedule") => self
                .amount(top, source, target, "a scheduled job")
                .map(Some),
            Some(k) => {
                let why = if k == "sweep" {
                    "a [sweep] moves `available - keep`, computed when it fires"
                } else {
                    "a [trigger] job takes its amount from the request, within `min_amount`..`max_amount`"
                };
                let mut bad = false;
                for key in ["source_amount", "target_amount"] {
                    if let Some(v) = top.get(key) {
                        self.at(v.span(), format!("`{key}` is not allowed here: {why}"));
                        bad = true;
                    }
                }
                (!bad).then_some(None)
            }
            None => None,
        };
        let recipient = match self.table(top, "recipient") {
            Some(r) => {
                self.unknown_keys(&r, RECIPIENT_KEYS);
                self.recipient(&r)
            }
            None => {
                if !top.has("recipient") {
                    self.at(
                        top.span.clone(),
                        "missing [recipient] (or [[payees]] for a batch job)",
                    );
                }
                None
            }
        };
        Some(Payout::Single {
            amount: amount?,
            recipient: recipient?,
        })
    }

    /// Two payees of one batch paying the same account the same amount: allowed (two
    /// invoices can match), but more likely a pasted line.
    fn likely_duplicates(&mut self, payees: &[Payee], items: &[Spanned<DeValue<'_>>]) {
        for (i, p) in payees.iter().enumerate() {
            let twin = payees[..i]
                .iter()
                .find(|q| account(&q.recipient) == account(&p.recipient) && q.amount == p.amount);
            if let (Some(q), Some(item)) = (twin, items.get(i)) {
                self.warn(
                    item.span(),
                    format!(
                        "payees {:?} and {:?} pay the same account the same amount: a likely duplicate (remove one if it is)",
                        q.key, p.key
                    ),
                );
            }
        }
    }

    fn limits(&mut self, top: &Section<'_, '_>, source: Option<&Currency>) -> Option<Limits> {
        let Some(l) = self.table(top, "limits") else {
            return (!top.has("limits")).then(Limits::default);
        };
        self.unknown_keys(&l, LIMIT_KEYS);
        let max_per_run = self.decimal(&l, "max_per_run", Sign::Positive, source);
        let daily_cap = self.decimal(&l, "daily_cap", Sign::Positive, source);
        if l.has("max_per_run") != max_per_run.is_some()
            || l.has("daily_cap") != daily_cap.is_some()
        {
            return None;
        }
        Some(Limits {
            max_per_run,
            job_daily_cap: daily_cap,
            grant_daily_cap: None,
        })
    }

    fn approval(&mut self, top: &Section<'_, '_>, source: Option<&Currency>) -> Option<Approval> {
        let a = self.table(top, "approval")?;
        self.unknown_keys(&a, APPROVAL_KEYS);
        if !a.has("above") {
            self.missing(&a, "above");
        }
        let above = self.decimal(&a, "above", Sign::Positive, source);
        let approvers = if a.has("approvers") {
            self.integer(&a, "approvers", 1, 2).map(|n| n as u32)
        } else {
            Some(1)
        };
        Some(Approval {
            above: above?,
            approvers: approvers?,
        })
    }
}

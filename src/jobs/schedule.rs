//! Schedules: a cron expression read in a job's IANA time zone, with a DST policy, and
//! the catch-up decision after downtime. Pure functions of time; no IO.
//!
//! The cron expression is evaluated in *local wall-clock time* (the `cron` crate walks
//! naive local times), and each local time is then placed on the UTC time line:
//! - a local time that exists once is that instant;
//! - a local time skipped by a spring-forward gap runs once, at the first valid instant
//!   after the gap (a daily 02:30 job in New York runs at 03:00 EDT that day); several
//!   skipped local times that land on the same instant make one occurrence;
//! - a local time repeated by a fall-back runs once, at its first instance.
//!
//! The occurrence key is the resulting UTC instant in RFC 3339 (`2026-03-08T07:00:00Z`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A validated cron expression in a time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    /// As written in the job file (5 fields).
    expr: String,
    /// One schedule, or two (day-of-month, day-of-week) whose union is `day_match = "any"`.
    schedules: Vec<cron::Schedule>,
    day_match: DayMatch,
    tz: Tz,
}

/// When both day-of-month and day-of-week are restricted, whether a day must match
/// both (ours, and the default) or either (classic Vixie cron).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayMatch {
    #[default]
    All,
    Any,
}

impl DayMatch {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "any" => Some(Self::Any),
            _ => None,
        }
    }
}

/// How a fire time was placed on the UTC time line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DstAdjustment {
    /// The local time exists exactly once.
    None,
    /// The local time fell in a spring-forward gap; it runs at the first instant after.
    MovedPastGap,
    /// The local time occurs twice (fall back); it runs at the first instance only.
    FirstOfRepeated,
}

/// One occurrence of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    /// The nominal UTC fire time: what the occurrence key is made of.
    pub at: DateTime<Utc>,
    /// The local wall-clock time the cron expression named.
    pub nominal_local: NaiveDateTime,
    /// `at` in the job's time zone.
    pub local: DateTime<Tz>,
    pub dst: DstAdjustment,
    /// When it runs: `at`, or the rolled instant when a business-day calendar moved it.
    pub due: DateTime<Utc>,
    /// How a calendar moved it off a non-business day (`None`: it did not move).
    pub roll: Option<Rolled>,
}

/// An occurrence moved by its calendar's roll rule. The occurrence key stays nominal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rolled {
    pub nominal_date: chrono::NaiveDate,
    pub date: chrono::NaiveDate,
    /// When it runs, in the job's zone.
    pub local: DateTime<Tz>,
    /// The holiday (or weekend day) that caused the roll.
    pub because: String,
}

impl Fire {
    /// `2026-03-08T14:00:00Z`: the schedule's occurrence key (a batch payee adds `#key`).
    pub fn occurrence_key(&self) -> String {
        occurrence_key(self.at)
    }
}

/// The occurrence key of a scheduled fire time.
pub fn occurrence_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl CronSchedule {
    /// Parses a 5-field cron expression (`minute hour day-of-month month day-of-week`)
    /// and an IANA zone name.
    /// Both restricted day fields must match (`day_match = "all"`).
    pub fn new(expr: &str, timezone: &str) -> Result<Self, String> {
        Self::with_day_match(expr, timezone, DayMatch::All)
    }

    /// As [`CronSchedule::new`], with the rule for two restricted day fields. Refuses
    /// an expression that never fires (30 February).
    pub fn with_day_match(expr: &str, timezone: &str, day_match: DayMatch) -> Result<Self, String> {
        let schedules = match (day_match, restricted_days(expr)) {
            (DayMatch::Any, (true, true)) => {
                let f: Vec<&str> = expr.split_whitespace().collect();
                vec![
                    parse_cron(&format!("{} {} {} {} *", f[0], f[1], f[2], f[3]))?,
                    parse_cron(&format!("{} {} * {} {}", f[0], f[1], f[3], f[4]))?,
                ]
            }
            _ => vec![parse_cron(expr)?],
        };
        let tz = parse_timezone(timezone)?;
        let from = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        if let Some(from) = from {
            if schedules.iter().all(|s| s.after(&from).next().is_none()) {
                return Err(format!(
                    "cron {:?} never fires: no date matches its day and month fields",
                    expr.trim()
                ));
            }
        }
        Ok(Self {
            expr: expr.trim().to_string(),
            schedules,
            day_match,
            tz,
        })
    }

    pub fn day_match(&self) -> DayMatch {
        self.day_match
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Occurrences strictly after `after`, in order, each instant once.
    pub fn after(&self, after: DateTime<Utc>) -> impl Iterator<Item = Fire> + '_ {
        // Start from the local wall time of `after`. Local times before it can only
        // place at or before `after` (placement is monotonic), so nothing is missed.
        let start = after.with_timezone(&self.tz).naive_local().and_utc();
        let mut last: Option<DateTime<Utc>> = None;
        let mut each: Vec<_> = self
            .schedules
            .iter()
            .map(|s| s.after(&start).peekable())
            .collect();
        // The union of the schedules, in order, each local time once.
        let merged = std::iter::from_fn(move || {
            let next = each.iter_mut().filter_map(|it| it.peek().copied()).min()?;
            for it in each.iter_mut() {
                while it.peek() == Some(&next) {
                    it.next();
                }
            }
            Some(next)
        });
        merged.filter_map(move |naive| {
            let fire = place(self.tz, naive.naive_utc())?;
            // In a repeated hour, local times after `after`'s may place before it (their
            // first instance already passed); and a gap folds several onto one instant.
            if fire.at <= after || last == Some(fire.at) {
                return None;
            }
            last = Some(fire.at);
            Some(fire)
        })
    }

    /// Occurrences in `(after, until]`.
    pub fn between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Fire> {
        self.after(after).take_while(|f| f.at <= until).collect()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.tz.name())
    }
}

/// Places a local wall-clock time on the UTC time line by the DST policy.
pub(crate) fn place(tz: Tz, naive: NaiveDateTime) -> Option<Fire> {
    use chrono::LocalResult;
    let (local, dst) = match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => (t, DstAdjustment::None),
        LocalResult::Ambiguous(first, _) => (first, DstAdjustment::FirstOfRepeated),
        LocalResult::None => {
            // In a gap: the first local minute that exists is the instant the clocks
            // jumped to. Real gaps are at most a day (Samoa, 2011).
            let mut probe = naive;
            let mut found = None;
            for _ in 0..(48 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    found = Some(t);
                    break;
                }
            }
            (found?, DstAdjustment::MovedPastGap)
        }
    };
    let at = local.with_timezone(&Utc);
    Some(Fire {
        at,
        nominal_local: naive,
        local,
        dst,
        due: at,
        roll: None,
    })
}

/// Parses the usual 5-field cron. Numeric days of the week follow Unix cron (0 or 7 =
/// Sunday, 1 = Monday), translated to names for the `cron` crate, which counts from
/// Sunday = 1.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "cron {expr:?} must have 5 fields (minute hour day-of-month month day-of-week), got {}",
            fields.len()
        ));
    }
    check_ranges(expr, &fields)?;
    let dow = translate_day_of_week(fields[4])?;
    let six = format!(
        "0 {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], dow
    );
    cron::Schedule::from_str(&six).map_err(|e| {
        // The crate's message draws a caret on a second line; keep the explanation.
        let text = e.to_string();
        let why = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && *l != "^")
            .unwrap_or("invalid")
            .to_string();
        format!("cron {expr:?} is not valid: {why}")
    })
}

/// Whether the day-of-month and the day-of-week fields are restricted (not `*`).
pub fn restricted_days(expr: &str) -> (bool, bool) {
    let f: Vec<&str> = expr.split_whitespace().collect();
    let restricted = |i: usize| f.get(i).is_some_and(|v| *v != "*" && *v != "?");
    (restricted(2), restricted(4))
}

/// Each field's numbers against its true range, in our words (the `cron` crate says
/// "Minutes must be less than 59" of 60, while 59 is valid).
fn check_ranges(expr: &str, fields: &[&str]) -> Result<(), String> {
    const FIELDS: [(&str, &str, u32, u32); 5] = [
        ("minute", "minutes run", 0, 59),
        ("hour", "hours run", 0, 23),
        ("day-of-month", "days of the month run", 1, 31),
        ("month", "months run", 1, 12),
        ("day-of-week", "days of the week run", 0, 7),
    ];
    for (field, (name, run, lo, hi)) in fields.iter().zip(FIELDS) {
        let bad = |why: String| format!("cron {expr:?}: the {name} field {field:?} {why}");
        for part in field.split(',') {
            let (base, step) = match part.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step {
                match step.parse::<u32>() {
                    Ok(n) if n >= 1 && n <= hi => {}
                    _ => {
                        return Err(bad(format!(
                            "has a step {step:?}: a step is a whole number from 1 to {hi}"
                        )));
                    }
                }
            }
            let ends: Vec<&str> = base.split('-').collect();
            let numbers: Vec<u32> = ends.iter().filter_map(|e| e.parse().ok()).collect();
            for n in &numbers {
                if !(lo..=hi).contains(n) {
                    let extra = if name == "day-of-week" {
                        " (0 and 7 are Sunday)"
                    } else {
                        ""
                    };
                    return Err(bad(format!(
                        "holds {n}, out of range: {run} from {lo} to {hi}{extra}"
                    )));
                }
            }
            if let [a, b] = numbers[..] {
                if ends.len() == 2 && a > b {
                    return Err(bad(format!(
                        "has the range {a}-{b}, which runs backwards: write the smaller number first"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A warning for a zone that is an abbreviation or a fixed offset (`EST`,
/// `Etc/GMT+1`): its clock never follows daylight saving, which a place's does.
pub fn fixed_zone_warning(tz: Tz) -> Option<String> {
    use chrono::Offset;
    let name = tz.name();
    const UTC_NAMES: [&str; 8] = [
        "UTC",
        "UCT",
        "Zulu",
        "Universal",
        "Etc/UTC",
        "Etc/UCT",
        "Etc/Zulu",
        "Etc/Universal",
    ];
    let abbreviation = name.starts_with("Etc/")
        || (!name.contains('/')
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-'));
    if UTC_NAMES.contains(&name) || !abbreviation {
        return None;
    }
    let offset = |m: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, m, 15)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .map(|t| tz.offset_from_utc_datetime(&t).fix().local_minus_utc())
    };
    let (jan, jul) = (offset(1)?, offset(7)?);
    if jan != jul {
        return None;
    }
    let (sign, secs) = if jan < 0 { ('-', -jan) } else { ('+', jan) };
    Some(format!(
        "timezone {name:?} is a fixed offset (UTC{sign}{:02}:{:02}) that does not follow daylight saving: if the payees' clocks change in summer, name their place instead, such as \"America/New_York\" or \"Europe/London\"",
        secs / 3600,
        secs % 3600 / 60
    ))
}

fn translate_day_of_week(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String, in_step: bool| -> Result<(), String> {
        if digits.is_empty() {
            return Ok(());
        }
        if in_step {
            out.push_str(digits);
        } else {
            let n: usize = digits.parse().map_err(|_| format!("bad day {digits:?}"))?;
            let name = NAMES.get(n).ok_or_else(|| {
                format!("day-of-week {n} is out of range (0-7, where 0 and 7 are Sunday)")
            })?;
            out.push_str(name);
        }
        digits.clear();
        Ok(())
    };
    let mut in_step = false;
    for c in field.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut digits, &mut out, in_step)?;
        match c {
            '/' => in_step = true,
            ',' | '-' => in_step = false,
            _ => {}
        }
        out.push(c);
    }
    flush(&mut digits, &mut out, in_step)?;
    Ok(out)
}

/// Parses an IANA zone name such as `Africa/Lagos` or `America/New_York`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim())
        .map_err(|_| format!("timezone {name:?} is not an IANA time zone (e.g. \"Africa/Lagos\")"))
}

/// What a scheduled job does with occurrences it missed (worker down, grant held).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed occurrences are skipped (and audited as skipped).
    Skip,
    /// Only the most recent missed occurrence runs, if within `max_lateness`.
    Latest,
    /// Every missed occurrence within `max_lateness` runs.
    All,
}

impl CatchUp {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(Self::Skip),
            "latest" => Some(Self::Latest),
            "all" => Some(Self::All),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Latest => "latest",
            Self::All => "all",
        }
    }
}

/// Which due occurrences get runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatchUpDecision {
    pub run: Vec<Fire>,
    pub skipped: Vec<Fire>,
}

/// Decides which of `due` (in order, all `<= now`) run. An occurrence no later than
/// `grace` is on time and always runs; a later one is missed, and `policy` decides,
/// never beyond `max_lateness`. Under `latest`, an on-time occurrence supersedes every
/// missed one.
pub fn decide(
    due: Vec<Fire>,
    now: DateTime<Utc>,
    grace: Duration,
    policy: CatchUp,
    max_lateness: Duration,
) -> CatchUpDecision {
    let mut decision = CatchUpDecision::default();
    let (on_time, missed): (Vec<Fire>, Vec<Fire>) =
        due.into_iter().partition(|f| now - f.due <= grace);
    let (eligible, too_late): (Vec<Fire>, Vec<Fire>) = missed
        .into_iter()
        .partition(|f| now - f.due <= max_lateness);
    decision.skipped.extend(too_late);
    match policy {
        CatchUp::Skip => decision.skipped.extend(eligible),
        CatchUp::All => decision.run.extend(eligible),
        CatchUp::Latest => {
            let mut eligible = eligible;
            let latest = if on_time.is_empty() {
                eligible.pop()
            } else {
                None
            };
            decision.skipped.extend(eligible);
            decision.run.extend(latest);
        }
    }
    decision.run.extend(on_time);
    decision.run.sort_by_key(|f| f.due);
    decision.skipped.sort_by_key(|f| f.due);
    decision
}

/// Parses a duration such as `90s`, `15m`, `1h30m`, `2d` (units s, m, h, d).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{s:?} is not a duration (use whole numbers with units s, m, h, d, e.g. \"1h30m\")")
    };
    let mut total = Duration::zero();
    let mut digits = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            _ => return Err(bad()),
        }
        .ok_or_else(bad)?;
        total = total.checked_add(&unit).ok_or_else(bad)?;
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    Ok(total)
}

/// Formats a duration the way job files write it (`1h30m`).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.num_seconds();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn numeric_days_of_week_follow_unix_cron() {
        let monday = CronSchedule::new("0 9 * * 1", "UTC").unwrap();
        let next = monday.after(utc("2026-03-04T00:00:00Z")).next().unwrap();
        assert_eq!(next.occurrence_key(), "2026-03-09T09:00:00Z"); // a Monday
        for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * SUN"] {
            let s = CronSchedule::new(sunday, "UTC").unwrap();
            let next = s.after(utc("2026-03-04T00:00:00Z")).next().unwrap();
            assert_eq!(next.occurrence_key(), "2026-03-08T09:00:00Z", "{sunday}");
        }
        let weekdays = CronSchedule::new("0 9 * * 1-5", "UTC").unwrap();
        let got: Vec<String> = weekdays
            .between(utc("2026-03-06T00:00:00Z"), utc("2026-03-10T00:00:00Z"))
            .iter()
            .map(Fire::occurrence_key)
            .collect();
        assert_eq!(got, ["2026-03-06T09:00:00Z", "2026-03-09T09:00:00Z"]);
        assert!(parse_cron("0 9 * * 8").is_err());
        assert!(parse_cron("0 9 * *").is_err());
        assert!(parse_cron("0 25 * * *").is_err());
    }

    #[test]
    fn day_match_any_fires_on_either_day_and_all_on_both() {
        let from = utc("2026-03-01T00:00:00Z"); // a Sunday
        let keys = |m| {
            CronSchedule::with_day_match("0 9 1-7 * MON", "UTC", m)
                .unwrap()
                .between(from, utc("2026-03-10T00:00:00Z"))
                .iter()
                .map(Fire::occurrence_key)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(DayMatch::All), ["2026-03-02T09:00:00Z"]);
        let any = keys(DayMatch::Any);
        assert_eq!(any.len(), 8, "{any:?}"); // 1..7 March, and Monday 9 March
        assert_eq!(any[7], "2026-03-09T09:00:00Z");
    }

    #[test]
    fn a_schedule_that_never_fires_is_refused_and_ranges_are_true() {
        let e = CronSchedule::new("0 9 30 2 *", "UTC").unwrap_err();
        assert!(e.contains("never fires"), "{e}");
        assert!(CronSchedule::new("0 9 29 2 MON", "UTC").is_ok()); // 29 Feb 2044 etc.
        assert!(parse_cron("59 23 31 12 7").is_ok());
        let e = parse_cron("60 9 * * *").unwrap_err();
        assert!(
            e.ends_with("the minute field \"60\" holds 60, out of range: minutes run from 0 to 59"),
            "{e}"
        );
        let e = parse_cron("0 9 * * 5-1").unwrap_err();
        assert!(e.contains("runs backwards"), "{e}");
        let e = parse_cron("*/0 9 * * *").unwrap_err();
        assert!(e.contains("a step is a whole number from 1 to 59"), "{e}");
    }

    #[test]
    fn abbreviations_and_fixed_offsets_are_warned_about() {
        let w = |n: &str| fixed_zone_warning(parse_timezone(n).unwrap());
        assert!(
            w("EST")
                .unwrap()
                .contains("(UTC-05:00) that does not follow daylight saving")
        );
        assert!(w("Etc/GMT+1").unwrap().contains("UTC-01:00"));
        for fine in [
            "UTC",
            "Etc/UTC",
            "Africa/Lagos",
            "America/New_York",
            "EST5EDT",
            "CET",
        ] {
            assert_eq!(w(fine), None, "{fine}");
        }
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("2d").unwrap(), Duration::days(2));
        assert_eq!(format_duration(Duration::minutes(90)), "1h30m");
        for bad in ["", "5", "h", "1x", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn catch_up_policies_decide_missed_occurrences() {
        let s = CronSchedule::new("0 * * * *", "UTC").unwrap();
        let now = utc("2026-03-02T10:00:30Z");
        let due = || s.between(utc("2026-03-02T05:30:00Z"), now); // 06:00 .. 10:00
        let keys = |v: &[Fire]| v.iter().map(Fire::occurrence_key).collect::<Vec<_>>();
        let grace = Duration::minutes(2);
        let lateness = Duration::minutes(150); // 08:00 and 09:00 are within reach

        let d = decide(due(), now, grace, CatchUp::Skip, lateness);
        assert_eq!(keys(&d.run), ["2026-03-02T10:00:00Z"]);
        assert_eq!(d.skipped.len(), 4);

        let d = decide(due(), now, grace, CatchUp::All, lateness);
        assert_eq!(
            keys(&d.run),
            [
                "2026-03-02T08:00:00Z",
                "2026-03-02T09:00:00Z",
                "2026-03-02T10:00:00Z"
            ]
        );
        // Latest with an on-time occurrence: the on-time one supersedes the missed ones.
        let d = decide(due(), now, grace, CatchUp::Latest, lateness);
        assert_eq!(keys(&d.run), ["2026-03-02T10:00:00Z"]);
        // Latest without one: only the most recent missed occurrence in reach.
        let now = utc("2026-03-02T10:40:00Z");
        let d = decide(due(), now, grace, CatchUp::Latest, lateness);
        assert_eq!(keys(&d.run), ["2026-03-02T10:00:00Z"]);
        let d = decide(due(), now, grace, CatchUp::Latest, Duration::minutes(30));
        assert!(d.run.is_empty());
        assert_eq!(d.skipped.len(), 5);
    }
}

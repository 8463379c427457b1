//! Business-day calendars: `config/calendars/<name>.toml`, a calendar's weekend days and
//! named holidays, and the roll rules that move a schedule's date off a non-business day.
//! The format is documented in `jobs/README.md` ("Business days").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::Deserialize;
use toml::Spanned;

use super::parse::{Diagnostic, line_col};

/// Where the calendars live, relative to the config file's folder.
pub const FOLDER: &str = "calendars";

/// Farthest a roll may move a date, in days (a calendar with longer runs of
/// non-business days cannot be rolled through).
pub const MAX_ROLL_DAYS: i64 = 14;

/// A named holiday.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holiday {
    pub name: String,
    /// Set by the moon and declared late (Eid, Mawlid): the date may still move.
    pub provisional: bool,
}

/// One calendar: its weekend days and its holidays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    pub name: String,
    pub weekend: BTreeSet<u32>,
    pub holidays: BTreeMap<NaiveDate, Holiday>,
}

impl Calendar {
    pub fn is_business_day(&self, d: NaiveDate) -> bool {
        !self.weekend.contains(&d.weekday().num_days_from_monday())
            && !self.holidays.contains_key(&d)
    }

    /// Why `d` is not a business day: the holiday's name, or the weekend day.
    pub fn why_closed(&self, d: NaiveDate) -> Option<String> {
        if let Some(h) = self.holidays.get(&d) {
            let p = if h.provisional { " (provisional)" } else { "" };
            return Some(format!("{}{p}", h.name));
        }
        (!self.is_business_day(d)).then(|| format!("{} (weekend)", weekday_name(d.weekday())))
    }

    /// Whether any holiday falls in `year`.
    pub fn has_year(&self, year: i32) -> bool {
        self.holidays.keys().any(|d| d.year() == year)
    }

    /// The years the calendar lists holidays for.
    pub fn years(&self) -> Option<(i32, i32)> {
        let first = self.holidays.keys().next()?.year();
        let last = self.holidays.keys().next_back()?.year();
        Some((first, last))
    }
}

fn weekday_name(w: Weekday) -> &'static str {
    WEEKDAYS[w.num_days_from_monday() as usize]
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// How a date that is not a business day moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Roll {
    /// It does not: the run fires on the holiday.
    None,
    /// To the next business day.
    Following,
    /// To the previous business day.
    Preceding,
    /// To the next business day, unless that is in the next month: then the previous.
    ModifiedFollowing,
    /// To the previous business day, unless that is in the previous month: then the next.
    ModifiedPreceding,
}

impl Roll {
    pub const NAMES: &'static str =
        "\"following\", \"preceding\", \"modified_following\", \"modified_preceding\" or \"none\"";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "following" => Self::Following,
            "preceding" => Self::Preceding,
            "modified_following" => Self::ModifiedFollowing,
            "modified_preceding" => Self::ModifiedPreceding,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Following => "following",
            Self::Preceding => "preceding",
            Self::ModifiedFollowing => "modified_following",
            Self::ModifiedPreceding => "modified_preceding",
        }
    }
}

/// A schedule's calendar and roll rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessDays {
    pub calendar: Arc<Calendar>,
    pub roll: Roll,
}

impl BusinessDays {
    /// The date `nominal` rolls to (itself when it is a business day or the rule is
    /// `none`); `None` when no business day lies within [`MAX_ROLL_DAYS`].
    pub fn roll(&self, nominal: NaiveDate) -> Option<NaiveDate> {
        let cal = &self.calendar;
        if self.roll == Roll::None || cal.is_business_day(nominal) {
            return Some(nominal);
        }
        let step = |dir: i64| {
            (1..=MAX_ROLL_DAYS)
                .map(|n| nominal + Duration::days(n * dir))
                .find(|d| cal.is_business_day(*d))
        };
        let same_month = |d: &NaiveDate| d.month() == nominal.month();
        match self.roll {
            Roll::None => Some(nominal),
            Roll::Following => step(1),
            Roll::Preceding => step(-1),
            Roll::ModifiedFollowing => step(1).filter(same_month).or_else(|| step(-1)),
            Roll::ModifiedPreceding => step(-1).filter(same_month).or_else(|| step(1)),
        }
    }
}

/// Every calendar in a folder, by name (the file's stem).
#[derive(Clone, Debug, Default)]
pub struct Calendars {
    pub folder: PathBuf,
    by_name: BTreeMap<String, Arc<Calendar>>,
}

impl Calendars {
    pub fn get(&self, name: &str) -> Option<Arc<Calendar>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The calendars beside a config file (`<config folder>/calendars`), with every
    /// error in their files. A missing folder holds no calendars.
    pub fn beside(config: &Path) -> (Calendars, Vec<Diagnostic>) {
        let parent = config.parent().unwrap_or(Path::new("."));
        Self::load(&parent.join(FOLDER))
    }

    /// The calendars of the default config (`config/calendars`), read once.
    pub fn standard() -> &'static Calendars {
        static STANDARD: OnceLock<Calendars> = OnceLock::new();
        STANDARD.get_or_init(|| Self::beside(Path::new(crate::config::DEFAULT_PATH)).0)
    }

    /// Reads every `*.toml` in `folder`.
    pub fn load(folder: &Path) -> (Calendars, Vec<Diagnostic>) {
        let mut cals = Calendars {
            folder: folder.to_path_buf(),
            by_name: BTreeMap::new(),
        };
        let mut errs = Vec::new();
        let Ok(entries) = std::fs::read_dir(folder) else {
            return (cals, errs);
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        for path in files {
            let shown = path.display().to_string();
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse_calendar(&shown, name, &text) {
                    Ok(c) => {
                        cals.by_name.insert(name.to_string(), Arc::new(c));
                    }
                    Err(e) => errs.extend(e),
                },
                Err(e) => errs.push(at(&shown, 0, 0, format!("cannot read: {e}"))),
            }
        }
        (cals, errs)
    }
}

fn at(path: &str, line: usize, col: usize, message: String) -> Diagnostic {
    Diagnostic {
        path: path.to_string(),
        line,
        col,
        message,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    #[serde(default)]
    description: Option<String>,
    weekend: Vec<Spanned<String>>,
    #[serde(default)]
    holidays: Vec<RawHoliday>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: Spanned<String>,
    name: Spanned<String>,
    #[serde(default)]
    provisional: bool,
}

/// Parses one calendar file, reporting every bad weekend day and date at once.
pub fn parse_calendar(path: &str, name: &str, text: &str) -> Result<Calendar, Vec<Diagnostic>> {
    let raw: RawCalendar = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        vec![at(
            path,
            line,
            col,
            format!("calendar: {}", e.message().trim()),
        )]
    })?;
    let _ = raw.description;
    let mut errs = Vec::new();
    let mut here = |span: std::ops::Range<usize>, message: String| {
        let (line, col) = line_col(text, span.start);
        errs.push(at(path, line, col, message));
    };
    let mut weekend = BTreeSet::new();
    for day in &raw.weekend {
        match WEEKDAYS.iter().position(|w| *w == day.get_ref().as_str()) {
            Some(n) => {
                weekend.insert(n as u32);
            }
            None => here(
                day.span(),
                format!(
                    "`weekend` holds {:?}, which is not a day of the week (write \"saturday\", \"sunday\", …)",
                    day.get_ref()
                ),
            ),
        }
    }
    let mut holidays = BTreeMap::new();
    for h in &raw.holidays {
        let text_date = h.date.get_ref();
        let Ok(date) = NaiveDate::parse_from_str(text_date, "%Y-%m-%d") else {
            here(
                h.date.span(),
                format!(
                    "holiday date {text_date:?} is not a date: write it as \"YYYY-MM-DD\", a day that exists"
                ),
            );
            continue;
        };
        let holiday = Holiday {
            name: h.name.get_ref().trim().to_string(),
            provisional: h.provisional,
        };
        if holiday.name.is_empty() {
            here(h.name.span(), "a holiday needs a name".into());
        }
        if let Some(first) = holidays.insert(date, holiday) {
            here(
                h.date.span(),
                format!(
                    "{date} is listed twice (first as {:?}): list each date once",
                    first.name
                ),
            );
        }
    }
    if errs.is_empty() {
        Ok(Calendar {
            name: name.to_string(),
            weekend,
            holidays,
        })
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Arc<Calendar> {
        let text = r#"
weekend = ["saturday", "sunday"]
[[holidays]]
date = "2026-12-25"
name = "Christmas Day"
[[holidays]]
date = "2026-12-28"
name = "Boxing Day (observed)"
"#;
        Arc::new(parse_calendar("t.toml", "t", text).unwrap())
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn rolls_move_off_weekends_and_holidays() {
        let r = |roll, s| {
            BusinessDays {
                calendar: cal(),
                roll,
            }
            .roll(d(s))
            .unwrap()
        };
        assert_eq!(r(Roll::Preceding, "2026-12-25"), d("2026-12-24"));
        // Fri 25 (holiday), weekend, Mon 28 (holiday): Tue 29.
        assert_eq!(r(Roll::Following, "2026-12-25"), d("2026-12-29"));
        assert_eq!(r(Roll::None, "2026-12-25"), d("2026-12-25"));
        // Sat 31 Oct 2026: following is Mon 2 Nov (next month), so modified goes back.
        assert_eq!(r(Roll::ModifiedFollowing, "2026-10-31"), d("2026-10-30"));
        assert_eq!(r(Roll::Following, "2026-10-31"), d("2026-11-02"));
        // Sun 1 Nov 2026: preceding is 30 Oct (previous month), so modified goes on.
        assert_eq!(r(Roll::ModifiedPreceding, "2026-11-01"), d("2026-11-02"));
        assert_eq!(r(Roll::Following, "2026-12-24"), d("2026-12-24"));
    }

    #[test]
    fn bad_days_and_dates_are_named_with_their_place() {
        let text = "weekend = [\"sunday\", \"funday\"]\n[[holidays]]\ndate = \"2026-02-30\"\nname = \"x\"\n";
        let errs = parse_calendar("c.toml", "c", text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("c.toml:1:22: `weekend` holds \"funday\""),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("c.toml:3:8: holiday date \"2026-02-30\" is not a date"),
            "{shown:?}"
        );
    }
}

//! A schedule's occurrences on business days: each nominal fire of the cron, moved by
//! the schedule's calendar and roll rule to the rolled date at the same local time.
//! The occurrence key stays the nominal instant ([`Fire::at`]), so a roll, or a holiday
//! added later, never makes a second run; [`Fire::due`] is when it runs.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use super::calendar::{BusinessDays, MAX_ROLL_DAYS};
use super::schedule::{CronSchedule, Fire, Rolled, place};
use super::spec::ScheduleSpec;

/// Moves `fire` by `business` (unchanged on a business day). With no business day
/// within [`MAX_ROLL_DAYS`], it stays on its nominal date.
pub fn roll_fire(cron: &CronSchedule, business: &BusinessDays, fire: Fire) -> Fire {
    let nominal = fire.nominal_local.date();
    let Some(date) = business.roll(nominal).filter(|d| *d != nominal) else {
        return fire;
    };
    let Some(placed) = place(cron.timezone(), date.and_time(fire.nominal_local.time())) else {
        return fire;
    };
    let because = business.calendar.why_closed(nominal).unwrap_or_default();
    Fire {
        due: placed.at,
        roll: Some(Rolled {
            nominal_date: nominal,
            date,
            local: placed.local,
            because,
        }),
        ..fire
    }
}

/// How far back a nominal fire may sit and still roll forward past an instant.
fn reach() -> Duration {
    Duration::days(MAX_ROLL_DAYS + 1)
}

impl ScheduleSpec {
    /// Occurrences that run strictly after `after`, in order of when they run.
    pub fn after(&self, after: DateTime<Utc>) -> Box<dyn Iterator<Item = Fire> + '_> {
        match &self.business {
            None => Box::new(self.cron.after(after)),
            Some(b) => Box::new(
                self.cron
                    .after(after - reach())
                    .map(move |f| roll_fire(&self.cron, b, f))
                    .filter(move |f| f.due > after),
            ),
        }
    }

    /// Occurrences that run in `(after, until]`, in order of when they run.
    pub fn between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Fire> {
        let Some(b) = &self.business else {
            return self.cron.between(after, until);
        };
        let mut fires: Vec<Fire> = self
            .cron
            .between(after - reach(), until + reach())
            .into_iter()
            .map(|f| roll_fire(&self.cron, b, f))
            .filter(|f| f.due > after && f.due <= until)
            .collect();
        fires.sort_by_key(|f| (f.due, f.at));
        fires
    }
}

/// Most nominal fires [`check_rolls`] looks at (a calendar's years of a daily job).
const CHECKED_FIRES: usize = 4000;

/// Refuses a roll that moves an occurrence past its neighbours: after the next nominal
/// date (or, rolling back, before the previous one), over the years the calendar lists
/// (or 2026 for a calendar of weekends only).
pub fn check_rolls(cron: &CronSchedule, business: &BusinessDays) -> Result<(), String> {
    let (first, last) = business.calendar.years().unwrap_or((2026, 2026));
    let tz = cron.timezone();
    let start = tz
        .with_ymd_and_hms(first, 1, 1, 0, 0, 0)
        .earliest()
        .map(|t| t.with_timezone(&Utc) - Duration::days(1));
    let Some(start) = start else { return Ok(()) };
    let dates: Vec<(NaiveDate, NaiveDate)> = cron
        .after(start)
        .take_while(|f| f.nominal_local.date().year() <= last)
        .take(CHECKED_FIRES)
        .map(|f| {
            let nominal = f.nominal_local.date();
            (nominal, business.roll(nominal).unwrap_or(nominal))
        })
        .collect();
    let shown = |d: NaiveDate| d.format("%A %-d %B %Y").to_string();
    for w in dates.windows(2) {
        let ((a, a_rolled), (b, b_rolled)) = (w[0], w[1]);
        let past = if a_rolled > b {
            Some((a, a_rolled, "after the next one", b))
        } else if b_rolled < a {
            Some((b, b_rolled, "before the previous one", a))
        } else {
            None
        };
        if let Some((d, rolled, how, other)) = past {
            return Err(format!(
                "`schedule.roll` = \"{}\" moves the occurrence of {} to {}, {how} ({}): an occurrence must not overtake its neighbour; let the cron name business days only, or choose another roll",
                business.roll.as_str(),
                shown(d),
                shown(rolled),
                shown(other)
            ));
        }
    }
    Ok(())
}

/// A rolled occurrence, as `plan` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RollPlan {
    pub nominal_date: NaiveDate,
    pub rolled_date: NaiveDate,
    /// The holiday (or weekend day) on the nominal date.
    pub because: String,
}

impl RollPlan {
    pub fn of(r: &Rolled) -> Self {
        Self {
            nominal_date: r.nominal_date,
            rolled_date: r.date,
            because: r.because.clone(),
        }
    }

    /// `  [due Friday 2026-12-25, Christmas Day: rolled to Thursday 2026-12-24]`
    pub fn text(&self) -> String {
        format!(
            "  [due {} {}, {}: rolled to {} {}]",
            self.nominal_date.format("%A"),
            self.nominal_date,
            self.because,
            self.rolled_date.format("%A"),
            self.rolled_date
        )
    }
}

/// What a reviewer should know about a schedule's calendar over `[from, until]`: each
/// year it reaches that the calendar lists no holidays for, and each provisional date.
pub fn calendar_warnings(
    s: &ScheduleSpec,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<String> {
    let Some(b) = &s.business else {
        return Vec::new();
    };
    let cal = &b.calendar;
    let tz = s.cron.timezone();
    let (first, last) = (
        from.with_timezone(&tz).date_naive(),
        (until + reach()).with_timezone(&tz).date_naive(),
    );
    let mut out: Vec<String> = (first.year()..=until.with_timezone(&tz).year())
        .filter(|y| !cal.has_year(*y))
        .map(|y| {
            format!(
                "calendar {} lists no holidays for {y}: occurrences that year roll off weekends only; add {y}'s holidays to the calendar file",
                cal.name
            )
        })
        .collect();
    out.extend(
        cal.holidays
            .range(first..=last)
            .filter(|(_, h)| h.provisional)
            .map(|(d, h)| {
                format!(
                    "calendar {}: {} on {d} is provisional (set by the moon, declared late): the date may move, and with it this plan",
                    cal.name, h.name
                )
            }),
    );
    out
}

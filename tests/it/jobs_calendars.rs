//! Business-day calendars: a year end and a month end rolled, `plan --json` showing the
//! rolled dates and the holiday, validation's refusals with their place, and a holiday
//! added after runs were created making no second run (the scheduler on a real store,
//! both backends).

use chrono::Duration;
use treasury::jobs::calendar::Calendars;
use treasury::jobs::parse::parse_job_with;
use treasury::jobs::{Job, Scheduler};

use crate::backends::TestStore;
use crate::jobs_files::test_grants;
use crate::jobs_scheduler::{ONE_RECIPIENT, config, connect_grant, job_text, keys, runs_of, utc};
use crate::on_both_backends;

/// A folder of calendars: (name, file text).
fn calendars(files: &[(&str, &str)]) -> (Calendars, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
    }
    let (cals, errs) = Calendars::load(dir.path());
    assert!(errs.is_empty(), "{errs:#?}");
    (cals, dir)
}

fn parse(schedule: &str, cals: &Calendars) -> Result<Job, Vec<String>> {
    let text = job_text("cal-job", schedule, ONE_RECIPIENT);
    parse_job_with("cal.toml", text.as_bytes(), Some(&test_grants()), cals)
        .map_err(|e| e.iter().map(ToString::to_string).collect())
}

fn ng() -> Calendars {
    Calendars::load(std::path::Path::new("config/calendars")).0
}

/// The plan as `plan --json` writes it.
fn plan_json(job: &Job, from: &str, next: usize) -> serde_json::Value {
    let plan = treasury::jobs::plan::plan(std::slice::from_ref(job), utc(from), next);
    serde_json::to_value(&plan).unwrap()
}

#[test]
fn christmas_salaries_with_preceding_are_paid_the_day_before_under_the_nominal_key() {
    let j = parse(
        "cron = \"0 10 25 * *\"\ntimezone = \"Africa/Lagos\"\ncalendar = \"ng\"\nroll = \"preceding\"",
        &ng(),
    )
    .unwrap();
    let plan = plan_json(&j, "2026-11-30T00:00:00Z", 2);
    let occ = &plan["jobs"][0]["occurrences"];
    // Friday 25 December 2026 is Christmas: paid Thursday 24th, keyed by the 25th.
    assert_eq!(occ[0]["occurrence_key"], "2026-12-25T09:00:00Z");
    assert_eq!(occ[0]["utc"], "2026-12-24T09:00:00Z");
    assert_eq!(occ[0]["local"], "2026-12-24T10:00:00+01:00");
    assert_eq!(occ[0]["roll"]["nominal_date"], "2026-12-25");
    assert_eq!(occ[0]["roll"]["rolled_date"], "2026-12-24");
    assert_eq!(occ[0]["roll"]["because"], "Christmas Day");
    // Monday 25 January 2027 is a business day: no roll.
    assert_eq!(occ[1]["occurrence_key"], "2027-01-25T09:00:00Z");
    assert!(occ[1]["roll"].is_null());
    assert_eq!(plan["jobs"][0]["trigger"]["calendar"], "ng");
    assert_eq!(plan["jobs"][0]["trigger"]["roll"], "preceding");

    let mut text = Vec::new();
    let plan = treasury::jobs::plan::plan(&[j], utc("2026-11-30T00:00:00Z"), 1);
    treasury::jobs::plan::write_text(&mut text, &plan).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(
            "2026-12-24T10:00:00+01:00  (2026-12-24T09:00:00Z UTC)  [due Friday 2026-12-25, Christmas Day: rolled to Thursday 2026-12-24]"
        ),
        "{text}"
    );
}

#[test]
fn the_year_end_rolls_new_years_day_into_the_next_week() {
    // 1 January 2027 (Friday) is a holiday; following: Monday 4 January.
    let j = parse(
        "cron = \"0 9 1 * *\"\ntimezone = \"Africa/Lagos\"\ncalendar = \"ng\"\nroll = \"following\"",
        &ng(),
    )
    .unwrap();
    let plan = plan_json(&j, "2026-12-15T00:00:00Z", 1);
    let o = &plan["jobs"][0]["occurrences"][0];
    assert_eq!(o["occurrence_key"], "2027-01-01T08:00:00Z");
    assert_eq!(o["utc"], "2027-01-04T08:00:00Z");
    assert_eq!(o["roll"]["because"], "New Year's Day");
}

#[test]
fn a_month_end_with_modified_following_stays_in_its_month() {
    // Saturday 31 October 2026: following would be Monday 2 November, so it goes back
    // to Friday 30 October.
    let j = parse(
        "cron = \"0 10 31 * *\"\ntimezone = \"UTC\"\ncalendar = \"ng\"\nroll = \"modified_following\"",
        &ng(),
    )
    .unwrap();
    let plan = plan_json(&j, "2026-10-01T00:00:00Z", 1);
    let o = &plan["jobs"][0]["occurrences"][0];
    assert_eq!(o["occurrence_key"], "2026-10-31T10:00:00Z");
    assert_eq!(o["utc"], "2026-10-30T10:00:00Z");
    assert_eq!(o["roll"]["because"], "saturday (weekend)");
}

#[test]
fn plan_warns_about_years_without_holidays_and_provisional_dates() {
    let j = parse(
        "cron = \"0 10 20 * *\"\ntimezone = \"Africa/Lagos\"\ncalendar = \"ng\"\nroll = \"following\"",
        &ng(),
    )
    .unwrap();
    // From Feb 2027 to Feb 2028: Eid el-Fitr 2027 is provisional; 2028 is not listed.
    let plan = plan_json(&j, "2027-02-01T00:00:00Z", 13);
    let warnings: Vec<String> =
        serde_json::from_value(plan["jobs"][0]["warnings"].clone()).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("calendar ng lists no holidays for 2028")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w
            == "calendar ng: Eid el-Fitr on 2027-03-10 is provisional (set by the moon, declared late): the date may move, and with it this plan"),
        "{warnings:#?}"
    );
}

#[test]
fn validation_refuses_unknown_calendars_bad_rolls_and_overtaking_rolls() {
    let cals = ng();
    let e = parse(
        "cron = \"0 10 25 * *\"\ntimezone = \"UTC\"\ncalendar = \"gh\"\nroll = \"following\"",
        &cals,
    )
    .unwrap_err();
    assert_eq!(
        e,
        [
            "cal.toml:18:12: `schedule.calendar`: there is no calendar \"gh\" (a file config/calendars/gh.toml); there are: ng"
        ]
    );
    let e = parse(
        "cron = \"0 10 25 * *\"\ntimezone = \"UTC\"\ncalendar = \"ng\"\nroll = \"nearest\"",
        &cals,
    )
    .unwrap_err();
    assert!(
        e[0].starts_with("cal.toml:19:8: `schedule.roll` must be \"following\""),
        "{e:?}"
    );
    let e = parse(
        "cron = \"0 10 25 * *\"\ntimezone = \"UTC\"\ncalendar = \"ng\"",
        &cals,
    )
    .unwrap_err();
    assert!(e[0].contains("`schedule.calendar` needs a `roll`"), "{e:?}");
    // Daily: Saturday's occurrence would follow to Monday, past Sunday's.
    let e = parse(
        "cron = \"0 10 * * *\"\ntimezone = \"UTC\"\ncalendar = \"ng\"\nroll = \"following\"",
        &cals,
    )
    .unwrap_err();
    assert_eq!(
        e,
        [
            "cal.toml:19:8: `schedule.roll` = \"following\" moves the occurrence of Saturday 3 January 2026 to Monday 5 January 2026, after the next one (Sunday 4 January 2026): an occurrence must not overtake its neighbour; let the cron name business days only, or choose another roll"
        ]
    );
    // Weekly on Fridays: Good Friday and Christmas roll to the Tuesday after, well
    // before the next Friday.
    assert!(
        parse(
            "cron = \"0 10 * * 5\"\ntimezone = \"UTC\"\ncalendar = \"ng\"\nroll = \"following\"",
            &cals
        )
        .is_ok()
    );
}

#[test]
fn a_calendar_date_that_is_not_a_date_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("xx.toml"),
        "weekend = [\"sunday\"]\n\n[[holidays]]\ndate = \"2026-13-01\"\nname = \"Nope\"\n",
    )
    .unwrap();
    let (cals, errs) = Calendars::load(dir.path());
    let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [format!(
            "{}:4:8: holiday date \"2026-13-01\" is not a date: write it as \"YYYY-MM-DD\", a day that exists",
            dir.path().join("xx.toml").display()
        )]
    );
    assert!(cals.get("xx").is_none());
}

on_both_backends!(a_holiday_added_after_runs_were_created_makes_no_second_run);

async fn a_holiday_added_after_runs_were_created_makes_no_second_run(ts: TestStore) {
    const WEEKEND: &str = "weekend = [\"saturday\", \"sunday\"]\n";
    let schedule = "cron = \"0 10 25 * *\"\ntimezone = \"UTC\"\ncalendar = \"acme\"\nroll = \"following\"\ncatch_up = \"all\"\nmax_lateness = \"3d\"";
    let (before, _d1) = calendars(&[("acme", WEEKEND)]);
    let text = job_text("cal-salaries", schedule, ONE_RECIPIENT);
    let v1 = parse_job_with("cal.toml", text.as_bytes(), Some(&test_grants()), &before).unwrap();
    let t0 = utc("2026-11-20T00:00:00Z");
    connect_grant(&ts.store, t0).await;
    let s = Scheduler::start(ts.store.clone(), vec![v1], config(Duration::minutes(2)), t0)
        .await
        .unwrap();
    // Wednesday 25 November 2026 is a business day: the run is created then.
    let r = s.tick(utc("2026-11-25T10:00:30Z")).await.unwrap();
    assert_eq!(r.created.len(), 1);

    // The 25th is declared a holiday afterwards: the occurrence now rolls to the 26th.
    let added = format!("{WEEKEND}[[holidays]]\ndate = \"2026-11-25\"\nname = \"Declared late\"\n");
    let (after, _d2) = calendars(&[("acme", &added)]);
    let v2 = parse_job_with("cal.toml", text.as_bytes(), Some(&test_grants()), &after).unwrap();
    let s = Scheduler::start(
        ts.reopen().await,
        vec![v2],
        config(Duration::minutes(2)),
        t0,
    )
    .await
    .unwrap();
    let r = s.tick(utc("2026-11-26T10:00:30Z")).await.unwrap();
    assert!(r.created.is_empty(), "{:?}", r.created);
    assert_eq!(
        keys(&runs_of(&ts.store, "cal-salaries").await),
        ["2026-11-25T10:00:00Z"]
    );

    // December 25th (Friday) is not a holiday in this calendar: it runs on the day.
    let r = s.tick(utc("2026-12-25T10:00:30Z")).await.unwrap();
    assert_eq!(r.created.len(), 1);
    assert_eq!(
        keys(&runs_of(&ts.store, "cal-salaries").await),
        ["2026-11-25T10:00:00Z", "2026-12-25T10:00:00Z"]
    );
}

//! `jobs diff` against a real store (both backends): the versions a scheduler recorded,
//! then edited files: a changed amount and time, a removed job and a new one.

use treasury::jobs::calendar::Calendars;
use treasury::jobs::diff::{Change, FieldChange, diff, write_text};
use treasury::jobs::record_versions;

use crate::backends::TestStore;
use crate::jobs_files::test_grants;
use crate::jobs_scheduler::{job, job_text, utc};
use crate::on_both_backends;

const RECIPIENT: &str = "\n[recipient]\nid = \"5b0e7a0c-3c1d-4f7e-9a61-0c2f4b8d9e01\"\n";

fn text(id: &str, cron: &str, amount: &str) -> String {
    job_text(
        id,
        &format!("cron = \"{cron}\"\ntimezone = \"UTC\""),
        &format!("source_amount = \"{amount}\"\n{RECIPIENT}"),
    )
}

on_both_backends!(diff_names_new_changed_and_gone_jobs_field_by_field);

async fn diff_names_new_changed_and_gone_jobs_field_by_field(ts: TestStore) {
    let now = utc("2026-03-01T00:00:00Z");
    let seen = [
        job(&text("rent", "0 9 1 * *", "100")),
        job(&text("old-vendor", "0 9 * * MON", "50")),
        job(&text("same", "0 9 * * FRI", "10")),
    ];
    record_versions(&ts.store, &seen, "test", now)
        .await
        .unwrap();
    let files = [
        job(&text("rent", "0 10 1 * *", "120")),
        job(&text("same", "0 9 * * FRI", "10")),
        job(&text("new-vendor", "0 9 * * TUE", "75")),
    ];
    let diff_files = |stored: &[_]| {
        let grants = test_grants();
        diff(&files, stored, &Calendars::default(), Some(&grants), now, 2)
    };
    let stored = ts.store.job_versions().await.unwrap();
    assert!(stored.iter().all(|s| s.source.is_some()), "{stored:#?}");

    let d = diff_files(&stored);

    assert_eq!(d.unchanged, 1);
    let by = |id: &str| d.jobs.iter().find(|j| j.id == id).unwrap();
    let rent = by("rent");
    assert_eq!(rent.change, Change::Changed);
    assert_eq!(
        rent.fields,
        [
            FieldChange {
                field: "schedule.cron".into(),
                before: Some("\"0 9 1 * *\"".into()),
                after: Some("\"0 10 1 * *\"".into()),
            },
            FieldChange {
                field: "source_amount".into(),
                before: Some("\"100\"".into()),
                after: Some("\"120\"".into()),
            },
        ]
    );
    // The next occurrence moves an hour later (a new key) and pays 120.
    let keys: Vec<&str> = rent
        .occurrences
        .iter()
        .map(|o| o.occurrence_key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "2026-03-01T09:00:00Z",
            "2026-03-01T10:00:00Z",
            "2026-04-01T09:00:00Z",
            "2026-04-01T10:00:00Z"
        ]
    );
    let o = &rent.occurrences[1];
    assert_eq!(o.before, None);
    assert!(o.after.as_deref().unwrap().contains("120 USDT"), "{o:?}");
    assert!(
        rent.occurrences[0]
            .before
            .as_deref()
            .unwrap()
            .contains("100 USDT")
    );

    let gone = by("old-vendor");
    assert_eq!(gone.change, Change::Gone);
    assert_eq!(gone.occurrences.len(), 2);
    assert!(gone.occurrences.iter().all(|o| o.after.is_none()));
    let new = by("new-vendor");
    assert_eq!(new.change, Change::New);
    assert!(new.fields.is_empty(), "{:?}", new.fields);
    assert_eq!(new.occurrences.len(), 2);
    assert!(new.occurrences.iter().all(|o| o.before.is_none()));

    let mut out = Vec::new();
    write_text(&mut out, &d).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("changed: rent (test.toml)\n  schedule.cron: \"0 9 1 * *\" -> \"0 10 1 * *\"\n  source_amount: \"100\" -> \"120\"\n"), "{out}");
    assert!(out.contains("gone: old-vendor"), "{out}");
    assert!(out.contains("new: new-vendor"), "{out}");
    assert!(out.ends_with("1 job(s) unchanged\n"), "{out}");

    // Once a scheduler loads the files, nothing differs but the gone job.
    record_versions(&ts.store, &files, "test", now)
        .await
        .unwrap();
    let stored = ts.store.job_versions().await.unwrap();
    let d = diff_files(&stored);
    assert_eq!(d.unchanged, 3);
    assert_eq!(d.jobs.len(), 1);
    assert_eq!(d.jobs[0].change, Change::Gone);
}

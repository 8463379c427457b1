//! `treasury jobs diff`: the job files against the versions the store last saw
//! (`job_versions`): which jobs are new, changed or gone, field by field what changed,
//! and what that does to the next occurrences. Computes only; moves no money.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::calendar::Calendars;
use super::parse::parse_job_with;
use super::plan::{OccurrencePlan, plan};
use super::spec::Job;
use crate::config::GrantSpec;
use crate::runs::mask_account;
use crate::store::StoredJobVersion;

/// How a job's file stands against the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    New,
    Changed,
    Gone,
}

/// One field that differs: its dotted path (`schedule.cron`, `payees[ada].target_amount`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    /// As the store's version wrote it (`None`: absent).
    pub before: Option<String>,
    /// As the file writes it now (`None`: removed).
    pub after: Option<String>,
}

/// One job that is new, changed or gone.
#[derive(Clone, Debug, Serialize)]
pub struct JobDiff {
    pub id: String,
    pub change: Change,
    pub path: String,
    pub stored_version: Option<String>,
    pub file_version: Option<String>,
    pub fields: Vec<FieldChange>,
    /// The next occurrences before and after, each in words, where they differ.
    pub occurrences: Vec<OccurrenceChange>,
    /// Why something could not be compared.
    pub note: Option<String>,
}

/// One occurrence's runs, before and after (`None`: it does not exist on that side).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OccurrenceChange {
    pub occurrence_key: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Every job that differs; unchanged jobs are only counted.
#[derive(Clone, Debug, Serialize)]
pub struct JobsDiff {
    pub from: DateTime<Utc>,
    pub unchanged: usize,
    pub jobs: Vec<JobDiff>,
}

/// Compares `jobs` (the files) with `stored`, each job's next `next` occurrences from
/// `from`. The stored text is parsed with the same calendars and grants as the files.
pub fn diff(
    jobs: &[Job],
    stored: &[StoredJobVersion],
    calendars: &Calendars,
    grants: Option<&[GrantSpec]>,
    from: DateTime<Utc>,
    next: usize,
) -> JobsDiff {
    let by_id: BTreeMap<&str, &StoredJobVersion> =
        stored.iter().map(|s| (s.job_id.as_str(), s)).collect();
    let mut out = JobsDiff {
        from,
        unchanged: 0,
        jobs: Vec::new(),
    };
    for job in jobs {
        let before = by_id.get(job.id().as_str());
        if before.is_some_and(|s| s.version == job.version()) {
            out.unchanged += 1;
            continue;
        }
        let old = before.and_then(|s| reparse(s, grants, calendars));
        let note = match before {
            Some(s) if s.source.is_none() => {
                Some("the store did not keep this version's text: fields not compared".into())
            }
            Some(_) if old.is_none() => Some(
                "the stored version no longer parses (a calendar or grant it named is gone): occurrences not compared".into(),
            ),
            _ => None,
        };
        let old_text = before.and_then(|s| s.source.as_deref());
        out.jobs.push(JobDiff {
            id: job.id().to_string(),
            change: if before.is_some() {
                Change::Changed
            } else {
                Change::New
            },
            path: job.path().to_string(),
            stored_version: before.map(|s| s.version.clone()),
            file_version: Some(job.version().to_string()),
            // A new job is all new: its occurrences say what it does.
            fields: match old_text {
                Some(t) => field_changes(Some(t), Some(job.source())),
                None => Vec::new(),
            },
            occurrences: occurrence_changes(old.as_ref(), Some(job), from, next),
            note,
        });
    }
    for s in stored {
        if jobs.iter().any(|j| j.id().as_str() == s.job_id) {
            continue;
        }
        let old = reparse(s, grants, calendars);
        out.jobs.push(JobDiff {
            id: s.job_id.clone(),
            change: Change::Gone,
            path: s.path.clone(),
            stored_version: Some(s.version.clone()),
            file_version: None,
            fields: Vec::new(),
            occurrences: occurrence_changes(old.as_ref(), None, from, next),
            note: Some("no file declares this job any more: it creates no new runs, and its runs in flight finish".into()),
        });
    }
    out
}

/// The stored version as a job, if the store kept its text and it still parses.
fn reparse(
    s: &StoredJobVersion,
    grants: Option<&[GrantSpec]>,
    calendars: &Calendars,
) -> Option<Job> {
    let text = s.source.as_deref()?;
    parse_job_with(&s.path, text.as_bytes(), grants, calendars).ok()
}

/// The fields that differ between two job files' texts.
pub fn field_changes(before: Option<&str>, after: Option<&str>) -> Vec<FieldChange> {
    let flat = |t: Option<&str>| {
        let mut m = BTreeMap::new();
        if let Some(table) = t.and_then(|t| t.parse::<toml::Table>().ok()) {
            flatten("", &toml::Value::Table(table), &mut m);
        }
        m
    };
    differing(&flat(before), &flat(after))
        .map(|(field, before, after)| FieldChange {
            field,
            before,
            after,
        })
        .collect()
}

type Side = Option<String>;

/// The keys of `a` or `b` whose values differ, with both values.
fn differing<'m>(
    a: &'m BTreeMap<String, String>,
    b: &'m BTreeMap<String, String>,
) -> impl Iterator<Item = (String, Side, Side)> + 'm {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
}

/// Dotted paths to leaf values; array items by their `key` (payees) or their index.
fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| flatten(&join(k), v, out)),
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
            for (i, item) in items.iter().enumerate() {
                let name = item
                    .get("key")
                    .and_then(toml::Value::as_str)
                    .map_or(i.to_string(), str::to_string);
                flatten(&format!("{prefix}[{name}]"), item, out);
            }
        }
        other => {
            // Account numbers are shown masked, as everywhere.
            let value = match other.as_str() {
                Some(n) if prefix.ends_with("account_number") => format!("{:?}", mask_account(n)),
                _ => shown(other),
            };
            out.insert(prefix.to_string(), value);
        }
    }
}

/// A leaf value as a job file writes it.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(shown).collect::<Vec<_>>().join(", ")
            )
        }
        toml::Value::Table(_) => "{…}".into(),
    }
}

/// Each planned occurrence in words: when it runs and what each run moves.
fn described(job: Option<&Job>, from: DateTime<Utc>, next: usize) -> BTreeMap<String, String> {
    let Some(job) = job else {
        return BTreeMap::new();
    };
    let plan = plan(std::slice::from_ref(job), from, next);
    let words = |o: &OccurrencePlan| {
        let runs: Vec<String> = o
            .runs
            .iter()
            .map(|r| {
                let who = r
                    .payee
                    .as_deref()
                    .map(|p| format!("{p}: "))
                    .unwrap_or_default();
                let approval = if r.approval_needed { ", approval" } else { "" };
                format!(
                    "{who}{} {} to {}{approval}",
                    r.amount, r.currency, r.recipient
                )
            })
            .collect();
        format!("runs {}; {}", o.local, runs.join("; "))
    };
    plan.jobs
        .iter()
        .flat_map(|j| j.occurrences.iter())
        .map(|o| (o.occurrence_key.clone(), words(o)))
        .collect()
}

/// The next occurrences that differ between the two versions.
fn occurrence_changes(
    before: Option<&Job>,
    after: Option<&Job>,
    from: DateTime<Utc>,
    next: usize,
) -> Vec<OccurrenceChange> {
    let (a, b) = (described(before, from, next), described(after, from, next));
    differing(&a, &b)
        .map(|(occurrence_key, before, after)| OccurrenceChange {
            occurrence_key,
            before,
            after,
        })
        .collect()
}

/// Writes the diff for people.
pub fn write_text(out: &mut dyn Write, d: &JobsDiff) -> std::io::Result<()> {
    if d.jobs.is_empty() {
        return writeln!(
            out,
            "no changes: the {} job(s) are as the store last saw them",
            d.unchanged
        );
    }
    let absent = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    for j in &d.jobs {
        let change = match j.change {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Gone => "gone",
        };
        writeln!(out, "{change}: {} ({})", j.id, j.path)?;
        for f in &j.fields {
            writeln!(
                out,
                "  {}: {} -> {}",
                f.field,
                absent(&f.before),
                absent(&f.after)
            )?;
        }
        if let Some(n) = &j.note {
            writeln!(out, "  note: {n}")?;
        }
        for o in &j.occurrences {
            writeln!(out, "  occurrence {}:", o.occurrence_key)?;
            writeln!(out, "    before: {}", o.before.as_deref().unwrap_or("none"))?;
            writeln!(out, "    after:  {}", o.after.as_deref().unwrap_or("none"))?;
        }
    }
    writeln!(out, "{} job(s) unchanged", d.unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payees_are_named_by_key_and_account_numbers_masked() {
        let before = "[[payees]]\nkey = \"ada\"\naccount_number = \"0123456789\"\ntarget_amount = \"450000\"\n";
        let after = "[[payees]]\nkey = \"ada\"\naccount_number = \"0123459999\"\ntarget_amount = \"460000\"\n";
        let got = field_changes(Some(before), Some(after));
        let shown: Vec<String> = got
            .iter()
            .map(|f| format!("{}: {:?} -> {:?}", f.field, f.before, f.after))
            .collect();
        assert_eq!(
            shown,
            [
                r#"payees[ada].account_number: Some("\"******6789\"") -> Some("\"******9999\"")"#,
                r#"payees[ada].target_amount: Some("\"450000\"") -> Some("\"460000\"")"#,
            ]
        );
        assert!(!format!("{got:?}").contains("0123456789"));
    }
}

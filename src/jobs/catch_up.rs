//! `treasury jobs plan --down-since T`: what a worker coming back now, after being down
//! since `T`, would do with each scheduled occurrence it missed, under each job's
//! `catch_up` and `max_lateness` (the scheduler's own rule, [`decide`]). Computes only.

use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::schedule::{CatchUp, decide};
use super::{Job, SchedulerConfig};

/// What happens to one occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the scheduler's grace: runs as if nothing happened.
    OnTime,
    /// Missed, and `catch_up` runs it now, late.
    Late,
    /// Missed, and not run: `catch_up` or `max_lateness` says so.
    Skipped,
}

/// One occurrence in the down time.
#[derive(Clone, Debug, Serialize)]
pub struct Missed {
    pub occurrence_key: String,
    pub verdict: Verdict,
    /// In plain words, why.
    pub why: String,
}

/// One scheduled job's occurrences in the down time.
#[derive(Clone, Debug, Serialize)]
pub struct JobCatchUp {
    pub id: String,
    pub catch_up: CatchUp,
    pub occurrences: Vec<Missed>,
}

/// The simulation for every scheduled job.
#[derive(Clone, Debug, Serialize)]
pub struct CatchUpPlan {
    pub down_since: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub jobs: Vec<JobCatchUp>,
}

/// What a worker back at `now`, down since `since`, would do.
pub fn simulate(jobs: &[Job], since: DateTime<Utc>, now: DateTime<Utc>) -> CatchUpPlan {
    let grace = SchedulerConfig::default().grace;
    let jobs = jobs
        .iter()
        .filter_map(|job| {
            let s = job.spec().schedule()?;
            let due = s.between(since, now);
            let d = decide(due, now, grace, s.catch_up, s.max_lateness);
            let mut occurrences: Vec<(DateTime<Utc>, Missed)> = Vec::new();
            for f in d.run {
                let late = now - f.due > grace;
                let (verdict, why) = if late {
                    (
                        Verdict::Late,
                        format!("runs now, {} late", ago(now - f.due)),
                    )
                } else {
                    (Verdict::OnTime, "on time".to_string())
                };
                let key = f.occurrence_key();
                occurrences.push((f.due, missed(key, verdict, why)));
            }
            for f in d.skipped {
                let why = if now - f.due > s.max_lateness {
                    "older than max_lateness".to_string()
                } else {
                    match s.catch_up {
                        CatchUp::Latest => "catch_up = \"latest\" runs only the most recent".into(),
                        _ => format!("catch_up = \"{}\"", s.catch_up.as_str()),
                    }
                };
                let key = f.occurrence_key();
                occurrences.push((f.due, missed(key, Verdict::Skipped, why)));
            }
            occurrences.sort_by_key(|(at, _)| *at);
            Some(JobCatchUp {
                id: job.id().to_string(),
                catch_up: s.catch_up,
                occurrences: occurrences.into_iter().map(|(_, m)| m).collect(),
            })
        })
        .collect();
    CatchUpPlan {
        down_since: since,
        now,
        jobs,
    }
}

fn missed(occurrence_key: String, verdict: Verdict, why: String) -> Missed {
    Missed {
        occurrence_key,
        verdict,
        why,
    }
}

fn ago(d: Duration) -> String {
    super::schedule::format_duration(Duration::minutes(d.num_minutes()))
}

/// The simulation as text.
pub fn write_text(out: &mut dyn Write, p: &CatchUpPlan) -> std::io::Result<()> {
    writeln!(
        out,
        "a worker down since {} and back at {} (no money moves)",
        p.down_since.to_rfc3339(),
        p.now.to_rfc3339()
    )?;
    for j in &p.jobs {
        writeln!(out, "{} (catch_up = \"{}\")", j.id, j.catch_up.as_str())?;
        if j.occurrences.is_empty() {
            writeln!(out, "  no occurrence in that time")?;
        }
        for m in &j.occurrences {
            let verdict = match m.verdict {
                Verdict::OnTime => "run",
                Verdict::Late => "run late",
                Verdict::Skipped => "skip",
            };
            writeln!(out, "  {}  {verdict}: {}", m.occurrence_key, m.why)?;
        }
    }
    Ok(())
}

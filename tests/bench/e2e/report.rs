//! The report: each figure's samples, their median and range, and "not run" for
//! what a run did not measure. Never a zero standing in for a figure not taken.

use std::io::Write;
use std::time::Instant;

use serde_json::{Value, json};

/// One figure as taken: its samples, or why it was not taken.
pub enum Taken {
    NotRun(String),
    Samples(Vec<Value>),
}

impl Taken {
    /// A figure taken once, or the reason it could not be (`{"not_run": …}`).
    pub fn once(v: Value) -> Self {
        match v.get("not_run").and_then(Value::as_str) {
            Some(why) => Taken::NotRun(why.to_string()),
            None => Taken::Samples(vec![v]),
        }
    }

    pub fn json(&self) -> Value {
        match self {
            Taken::NotRun(why) => json!({ "not_run": why }),
            Taken::Samples(s) if s.len() == 1 => s[0].clone(),
            Taken::Samples(s) => json!({ "samples": s }),
        }
    }

    /// The median and range of `key` over the samples.
    pub fn stat(&self, key: &str) -> Option<Stat> {
        let Taken::Samples(s) = self else { return None };
        let mut v: Vec<f64> = s.iter().filter_map(|x| x[key].as_f64()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// A value that is the same in every sample (a count, a setting).
    pub fn first(&self, key: &str) -> Option<Value> {
        match self {
            Taken::Samples(s) => s.first().map(|x| x[key].clone()),
            Taken::NotRun(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// A table row: the figure (median), its range over the samples, and the target.
pub fn row(
    measure: &str,
    stat: Option<Stat>,
    show: impl Fn(f64) -> String,
    target: &str,
) -> String {
    match stat {
        None => format!("| {measure} | not run | | {target} |\n"),
        Some(s) if s.n == 0 => format!(
            "| {measure} | {} | from the medians | {target} |\n",
            show(s.median)
        ),
        Some(s) if s.n == 1 => format!("| {measure} | {} | one run | {target} |\n", show(s.median)),
        Some(s) => format!(
            "| {measure} | {} | {} – {} (of {}) | {target} |\n",
            show(s.median),
            show(s.min),
            show(s.max),
            s.n
        ),
    }
}

/// A row whose figure is text already (or "not run").
pub fn text_row(measure: &str, figure: Option<String>, target: &str) -> String {
    let figure = figure.unwrap_or_else(|| "not run".into());
    format!("| {measure} | {figure} | | {target} |\n")
}

/// A derived statistic from two figures' medians (a difference or a ratio); `n` is 0.
pub fn derive(a: Option<Stat>, b: Option<Stat>, f: impl Fn(f64, f64) -> f64) -> Option<Stat> {
    let (a, b) = (a?, b?);
    let v = f(a.median, b.median);
    Some(Stat {
        median: v,
        min: v,
        max: v,
        n: 0,
    })
}

/// The machine as the run found it: cores, load, and what an fsync costs here.
pub fn machine_state(dir: &std::path::Path) -> Value {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "load_1_5_15": load,
        "fsync_ms_median": fsync_ms(dir),
    })
}

/// The median of 20 `write 4 KiB + fsync` on `dir`'s file system, in milliseconds.
fn fsync_ms(dir: &std::path::Path) -> Option<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).ok()?;
    let mut times = Vec::with_capacity(20);
    for _ in 0..20 {
        let started = Instant::now();
        f.write_all(&[0u8; 4096]).ok()?;
        f.sync_all().ok()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    times.sort_by(f64::total_cmp);
    Some(times[times.len() / 2])
}

//! The end-to-end benchmark: instructions per run against a bare loop (the figure that
//! repeats), throughput, behaviour under provider latency, our own CPU overhead, the
//! refresh storm and pacing, all against the in-process Busha sandbox. It writes
//! `target/bench-report.md` and `target/bench-report.json`. It never fails on speed:
//! the figures are reported as they are.
//!
//! `cargo bench --bench e2e` runs everything (about 17 minutes, ten of them the
//! pacing figure at Busha's real limits); `-- --quick` runs small sizes, `-- --no-pacing`
//! leaves the pacing figure out, `-- --repeat K` takes each wall-clock figure K times
//! (default 3; the report gives the median and the range), and `-- --only a,b` measures
//! only the parts named (instructions, scale, pipeline, bare, embedded, tmpfs,
//! distributed, latency, storm, pacing). A part not measured shows as "not run".
//!
//! Durability stays on: the store is SQLite with `synchronous = FULL`, and every state
//! change that guards money commits before the provider call it guards. Throughput and
//! latency figures are about our own cost, so they raise the sandbox's and the pacer's
//! rate limits (x10,000) and say so.

#[path = "e2e/figures.rs"]
mod figures;
#[path = "e2e/instructions.rs"]
mod instructions;
#[path = "e2e/report.rs"]
mod report;
#[path = "e2e/storm.rs"]
mod storm;
#[path = "e2e/worker.rs"]
mod worker;
#[path = "e2e/world.rs"]
mod world;

use std::future::Future;

use serde_json::{Value, json};

use report::{Taken, derive, row, text_row};
use world::SCALE;

struct Options {
    quick: bool,
    no_pacing: bool,
    repeat: usize,
    only: Option<Vec<String>>,
}

impl Options {
    fn from_args(args: &[String]) -> Self {
        let after = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned();
        Options {
            quick: args.iter().any(|a| a == "--quick"),
            no_pacing: args.iter().any(|a| a == "--no-pacing"),
            repeat: after("--repeat")
                .map(|k| k.parse().expect("--repeat takes a number"))
                .unwrap_or(3),
            only: after("--only").map(|v| v.split(',').map(str::to_string).collect()),
        }
    }

    fn wanted(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|w| w == name))
    }

    fn skipped(&self, name: &str) -> Option<Taken> {
        if name == "pacing" && self.no_pacing {
            return Some(Taken::NotRun("--no-pacing".into()));
        }
        (!self.wanted(name)).then(|| Taken::NotRun("--only".into()))
    }
}

/// Takes a wall-clock figure `opts.repeat` times (or not at all, if not wanted).
async fn repeated<F, Fut>(opts: &Options, name: &str, what: &str, take: F) -> Taken
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    if let Some(t) = opts.skipped(name) {
        return t;
    }
    let mut samples = Vec::with_capacity(opts.repeat);
    for i in 0..opts.repeat {
        eprintln!("{what} ({}/{})...", i + 1, opts.repeat);
        samples.push(take().await);
    }
    Taken::Samples(samples)
}

/// Takes a figure once (or not at all).
async fn once<Fut: Future<Output = Value>>(
    opts: &Options,
    name: &str,
    what: &str,
    take: Fut,
) -> Taken {
    if let Some(t) = opts.skipped(name) {
        return t;
    }
    eprintln!("{what}...");
    Taken::once(take.await)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == instructions::CHILD_FLAG) {
        instructions::child(&args[i + 1..]);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(Options::from_args(&args)));
}

async fn bench(opts: Options) {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = std::fs::create_dir_all(&target);
    let machine = report::machine_state(std::path::Path::new(&target));
    let (n, lat_n, pace_n, jobs_n, storm_n, count_n) = if opts.quick {
        (200, 128, 20, 1_000, 100, 20)
    } else {
        (2000, 640, 200, 10_000, 1_000, 100)
    };
    let counted = once(
        &opts,
        "instructions",
        &format!(
            "instructions per run ({count_n} and {} runs per path, under callgrind)",
            2 * count_n
        ),
        async {
            let b = world::bench_world(true).await;
            instructions::measure(&b, count_n).await
        },
    )
    .await;
    let scale = once(
        &opts,
        "scale",
        &format!("config scale ({jobs_n} job files)"),
        async { figures::config_scale(jobs_n) },
    )
    .await;
    let tp = repeated(
        &opts,
        "pipeline",
        &format!("throughput ({n} payouts, pipeline only)"),
        || figures::throughput(n, 64),
    )
    .await;
    let bare = repeated(
        &opts,
        "bare",
        &format!("bare loop ({n} runs of the same calls)"),
        || figures::bare_loop(n, 64),
    )
    .await;
    let embedded = repeated(
        &opts,
        "embedded",
        &format!("through the worker, embedded ({n} payouts)"),
        || worker::through_the_worker(n, false, false),
    )
    .await;
    let tmpfs = once(
        &opts,
        "tmpfs",
        "through the worker, store on tmpfs (diagnostic)",
        worker::through_the_worker(n, false, true),
    )
    .await;
    let distributed = repeated(
        &opts,
        "distributed",
        &format!("through the worker, distributed ({n} payouts)"),
        || worker::through_the_worker(n, true, false),
    )
    .await;
    let lat = repeated(
        &opts,
        "latency",
        &format!("under latency ({lat_n} payouts, 50 ms per call, concurrency 64)"),
        || figures::under_latency(lat_n, 64, 50),
    )
    .await;
    let storm = once(
        &opts,
        "storm",
        &format!("refresh storm ({storm_n} runs on 10 expired grants)"),
        storm::refresh_storm(storm_n, 10),
    )
    .await;
    let pace = once(
        &opts,
        "pacing",
        &format!(
            "pacing ({pace_n} payouts at Busha's documented limits; about {} min)",
            pace_n / 20
        ),
        figures::pacing(pace_n),
    )
    .await;
    let report = json!({
        "machine_at_start": machine,
        "machine_at_end": report::machine_state(std::path::Path::new(&target)),
        "rate_limits": format!("sandbox and pacer raised x{SCALE} for throughput, latency and the storm; Busha's own for pacing"),
        "durability": "SQLite WAL, synchronous=FULL; PostgreSQL defaults",
        "instructions": counted.json(),
        "throughput_pipeline": tp.json(),
        "throughput_worker_embedded": embedded.json(),
        "throughput_worker_distributed": distributed.json(),
        "throughput_worker_embedded_tmpfs_diagnostic": tmpfs.json(),
        "bare_loop": bare.json(),
        "under_latency": lat.json(),
        "pacing": pace.json(),
        "config_scale": scale.json(),
        "refresh_storm": storm.json(),
        "peak_rss_mib": world::peak_rss_mib(),
    });
    std::fs::write(
        format!("{target}/bench-report.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    let figures = Figures {
        counted,
        tp,
        bare,
        embedded,
        tmpfs,
        distributed,
        lat,
        storm,
        pace,
        scale,
    };
    let md = figures.markdown(&report, pace_n, jobs_n, storm_n);
    std::fs::write(format!("{target}/bench-report.md"), &md).unwrap();
    println!("{md}");
}

struct Figures {
    counted: Taken,
    tp: Taken,
    bare: Taken,
    embedded: Taken,
    tmpfs: Taken,
    distributed: Taken,
    lat: Taken,
    storm: Taken,
    pace: Taken,
    scale: Taken,
}

impl Figures {
    fn markdown(&self, report: &Value, pace_n: usize, jobs_n: usize, storm_n: usize) -> String {
        let rate = |v: f64| format!("{v:.0} runs/s");
        let ms = |v: f64| format!("{v:.2} ms");
        let num = |v: f64| format!("{v:.2}");
        let minstr = |v: f64| format!("{:.2} M", v / 1e6);
        let cpu = "cpu_ms_per_run_incl_sandbox";
        let c = &self.counted;
        let mut md = String::from(
            "# treasury benchmark\n\n| measure | figure (median) | range | target |\n|---|---|---|---|\n",
        );
        md += &row(
            "instructions per run, ours (pipeline + store)",
            c.stat("ours_instructions_per_run"),
            minstr,
            "",
        );
        md += &row(
            "instructions per run, bare loop (same calls, no store)",
            c.stat("bare_instructions_per_run"),
            minstr,
            "",
        );
        md += &row(
            "instruction ratio, ours ÷ bare (the gate)",
            c.stat("ratio"),
            num,
            "≤ 1.3",
        );
        md += &text_row(
            "provider calls per run, ours / bare (counted runs)",
            c.first("ours_provider_calls_per_run")
                .zip(c.first("bare_provider_calls_per_run"))
                .map(|(o, b)| format!("{} / {}", o, b)),
            "",
        );
        md += &row(
            "end to end through the worker, embedded (SQLite FULL), zero latency",
            self.embedded.stat("runs_per_second"),
            rate,
            "≥ 1,000",
        );
        md += &row(
            "the same with the store on tmpfs (fsync free; diagnostic, never shipped)",
            self.tmpfs.stat("runs_per_second"),
            rate,
            "",
        );
        md += &row(
            "end to end through the worker, distributed (PostgreSQL + Redis)",
            self.distributed.stat("runs_per_second"),
            rate,
            "",
        );
        md += &row(
            "pipeline only (no queue), embedded",
            self.tp.stat("runs_per_second"),
            rate,
            "",
        );
        md += &row(
            "provider calls per run",
            self.tp.stat("provider_calls_per_run"),
            |v| format!("{v:.1}"),
            "",
        );
        md += &row(
            "CPU per run, ours + in-process sandbox",
            self.tp.stat(cpu),
            ms,
            "",
        );
        md += &row(
            "CPU per run, bare loop + in-process sandbox",
            self.bare.stat(cpu),
            ms,
            "",
        );
        md += &row(
            "our own CPU per run (difference of medians)",
            derive(self.tp.stat(cpu), self.bare.stat(cpu), |a, b| a - b),
            ms,
            "≤ 1 ms",
        );
        md += &row(
            "overhead ratio (ours + sandbox) / (bare + sandbox)",
            derive(self.tp.stat(cpu), self.bare.stat(cpu), |a, b| {
                a / b.max(0.001)
            }),
            num,
            "≤ 2",
        );
        md += &row(
            "under 50 ms latency, concurrency 64: fraction of ideal",
            self.lat.stat("ratio_to_ideal"),
            num,
            "≥ 0.95",
        );
        md += &text_row(
            &format!("pacing at Busha's limits ({pace_n} payouts)"),
            self.pace.stat("transfers_per_minute").map(|s| {
                format!(
                    "{:.1} transfers/min = {:.2} of 20/min, {} × 429",
                    s.median,
                    self.pace
                        .stat("fraction_of_limit")
                        .map_or(0.0, |f| f.median),
                    self.pace.first("responses_429").unwrap_or_default()
                )
            }),
            "≥ 0.95, 0",
        );
        md += &text_row(
            &format!("{jobs_n} job files validated / validated and planned"),
            self.scale.stat("validate_seconds").map(|v| {
                format!(
                    "{:.2} s / {:.2} s, +{:.0} MiB",
                    v.median,
                    self.scale
                        .stat("validate_and_plan_seconds")
                        .map_or(0.0, |s| s.median),
                    self.scale.stat("rss_growth_mib").map_or(0.0, |s| s.median)
                )
            }),
            "< 2 s",
        );
        md += &text_row(
            &format!("refresh storm: {storm_n} runs on 10 expired grants"),
            self.storm.stat("seconds").map(|s| {
                format!(
                    "{} refreshes in {:.1} s",
                    self.storm.first("refreshes").unwrap_or_default(),
                    s.median
                )
            }),
            "10",
        );
        md += &format!(
            "| peak RSS (whole bench process) | {:.0} MiB | | |\n\n",
            report["peak_rss_mib"].as_f64().unwrap_or(0.0)
        );
        md += &format!(
            "Machine at start: {}; at end: {}.\n\
             Rate limits raised x{SCALE} in sandbox and pacer for every figure but pacing.\n",
            report["machine_at_start"], report["machine_at_end"]
        );
        md
    }
}

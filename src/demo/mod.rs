//! `treasury demo`: the whole product on one machine with zero setup. An in-process
//! Busha sandbox on a free port, a temporary SQLite store and a generated master key;
//! a demo customer connected through the real OAuth flow; then the example jobs run on
//! the same code paths as `treasury run`, driven by one clock shared with the sandbox.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::clock::Clock;
use crate::config::{Secret, Settings};
use crate::grants::{
    BushaOAuth, CallbackParams, Connector, Custodian, CustodyConfig, Keyring, OAuthSettings,
};
use crate::jobs::{Job, Payout};
use crate::provider::busha::{BushaClient, BushaConfig};
use crate::provider::pacing::EndpointLimits;
use crate::runs::{RecipientSpec, Run, RunState, mask_account_numbers_in};
use crate::sandbox::{
    LedgerEvent, NewUser, OAuthClientConfig, Sandbox, SandboxConfig, SandboxUser, SavedRecipient,
};
use crate::service::Parts;
use crate::store::{RunFilter, Store};
use tokio_util::sync::CancellationToken;

pub mod folder;
use folder::{DemoFolder, Keepsake};

/// The demo customer's Busha user.
pub const DEMO_USER: &str = "demo-customer";
/// The demo customer's opening USDT balance: enough for the scheduled payouts and the
/// trigger, and below the example sweep's threshold until the deposit lands.
pub const OPENING_USDT: Decimal = Decimal::from_parts(4000, 0, 0, false, 0);
/// The deposit that lands before the sweep phase.
pub const DEPOSIT_USDT: Decimal = Decimal::from_parts(5000, 0, 0, false, 0);
const DEMO_CLIENT: &str = "treasury-demo";

/// Everything the demo runs on.
pub struct DemoEnv {
    pub sandbox: Sandbox,
    pub user: SandboxUser,
    pub clock: Clock,
    pub store: Store,
    pub settings: Settings,
    pub keys: Arc<Keyring>,
    pub oauth: Arc<BushaOAuth>,
    pub custodian: Custodian,
    pub busha: BushaClient,
    /// The folder the store, queue and log live in.
    pub dir: std::path::PathBuf,
    /// The demo's approver accounts.
    pub approvers: Vec<crate::operators::Account>,
}

/// A bank account the sandbox's name enquiry knows: (bank code, number, name).
pub type KnownAccount = (String, String, String);

/// Starts the sandbox, a temporary store and a generated key, and connects every grant
/// alias of `settings` through the real authorization-code + PKCE flow.
pub async fn setup(
    mut settings: Settings,
    accounts: &[KnownAccount],
    dir: &std::path::Path,
    master_key: &str,
    out: &mut (dyn Write + Send),
) -> Result<DemoEnv, String> {
    let clock = Clock::system();
    let secret = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let redirect =
        url::Url::parse("http://127.0.0.1:8787/oauth/callback").map_err(|e| e.to_string())?;
    let sandbox = Sandbox::start(SandboxConfig {
        clock: clock.clone(),
        auto_consent: Some(DEMO_USER.into()),
        clients: vec![OAuthClientConfig::new(
            DEMO_CLIENT,
            &secret,
            redirect.as_str(),
        )],
        transfer_step: chrono::Duration::seconds(2),
        ..SandboxConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    let user = sandbox.create_user(
        NewUser::new(DEMO_USER)
            .balance("USDT", OPENING_USDT)
            .balance("NGN", Decimal::from(5_000_000)),
    );
    for (bank, number, name) in accounts {
        sandbox.add_bank_account(bank, number, name);
    }
    let _ = writeln!(
        out,
        "sandbox    Busha sandbox on {} (user {DEMO_USER}: {OPENING_USDT} USDT)",
        sandbox.url()
    );

    let db = dir.join(folder::STORE_FILE);
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
    settings.store.url = url;
    settings.busha.issuer_url = sandbox.url();
    settings.busha.api_url = sandbox.url();
    settings.busha.client_id = DEMO_CLIENT.into();
    settings.busha.redirect_uri = redirect.clone();
    let _ = writeln!(out, "store      SQLite store {}", db.display());

    let keys = Arc::new(Keyring::parse(master_key).map_err(|e| e.to_string())?);
    let store = store.with_seal_keys(Arc::new(crate::seal::SealKeys::from_keyring(&keys)));
    let oauth = Arc::new(
        BushaOAuth::discover(
            &OAuthSettings::new(sandbox.url(), DEMO_CLIENT, Secret::new(secret), redirect),
            clock.clone(),
        )
        .await
        .map_err(|e| format!("cannot read the sandbox's discovery: {e}"))?,
    );
    let connector = Connector::new(
        store.clone(),
        keys.clone(),
        oauth.clone(),
        clock.clone(),
        settings.grants.clone(),
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    for spec in &settings.grants {
        let started = connector
            .begin(&spec.alias)
            .await
            .map_err(|e| e.to_string())?;
        // The sandbox's auto-consent answers the authorization page with a redirect to
        // our callback; a browser would follow it, and so do we.
        let res = browser
            .get(started.url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url::Url::parse(l).ok())
            .ok_or("the sandbox did not redirect back to the callback")?;
        let mut params = CallbackParams::default();
        for (k, v) in location.query_pairs() {
            match k.as_ref() {
                "code" => params.code = Some(v.into_owned()),
                "state" => params.state = Some(v.into_owned()),
                "error" => params.error = Some(v.into_owned()),
                "error_description" => params.error_description = Some(v.into_owned()),
                _ => {}
            }
        }
        let done = connector
            .complete(&params, "operator:demo")
            .await
            .map_err(|e| e.to_string())?;
        let _ = writeln!(
            out,
            "connect    grant {} connected through OAuth2 + PKCE (Busha user {}, {} scopes)",
            done.grant.alias,
            done.grant.subject,
            done.grant.scopes.len()
        );
    }
    let custodian = Custodian::new(
        store.clone(),
        keys.clone(),
        oauth.clone(),
        clock.clone(),
        CustodyConfig::default(),
    );
    let mut api = BushaConfig::new(sandbox.url());
    // The demo keeps Busha's documented limits: the pacer and the sandbox agree.
    api.limits = EndpointLimits::busha();
    let busha = BushaClient::new(api).map_err(|e| e.to_string())?;
    Ok(DemoEnv {
        sandbox,
        user,
        clock,
        store,
        settings,
        keys,
        oauth,
        custodian,
        busha,
        dir: dir.to_path_buf(),
        approvers: Vec::new(),
    })
}

/// The run table: job, state, amounts, rate, transfer id.
pub fn write_run_table(runs: &[Run], out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<26} {:<34} {:<19} {:>14} {:>16} {:>9}  TRANSFER",
        "JOB", "OCCURRENCE", "STATE", "SOURCE", "TARGET", "RATE"
    )?;
    for r in runs {
        let (source, target, rate) = match &r.quote {
            Some(q) => (
                format!("{} {}", q.source_amount, r.spec.source_currency),
                format!("{} {}", q.target_amount, r.spec.target_currency),
                q.rate.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let occurrence: String = r.occurrence_key.chars().take(34).collect();
        writeln!(
            out,
            "{:<26} {:<34} {:<19} {:>14} {:>16} {:>9}  {}",
            r.job_id,
            mask_account_numbers_in(&occurrence),
            r.state.as_str(),
            source,
            target,
            rate,
            r.transfer_id.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// The demo's last line: `audit chain verified (N entries)`, or the break.
pub async fn audit_line(store: &Store) -> Result<String, String> {
    match store.verify_audit(None).await.map_err(|e| e.to_string())? {
        Ok(chain) => Ok(format!("audit chain verified ({} entries)", chain.entries)),
        Err(broken) => Err(format!("audit chain broken: {broken}")),
    }
}

/// What `treasury demo` runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The worker settings (for the grant aliases the job files name).
    pub config: std::path::PathBuf,
    /// The job files to run.
    pub jobs: std::path::PathBuf,
    /// At most this many scheduled occurrences (in time order, until every scheduled
    /// job has fired once).
    pub max_occurrences: usize,
    /// How long, in real time, any one phase may take before the demo gives up.
    pub phase_timeout: Duration,
    /// `--keep`: the folder to leave the store, config and sandbox state in.
    pub keep: Option<std::path::PathBuf>,
    /// The folder already opened for the demo (by `main`, which logs into it); `None`
    /// opens one here (`keep`'s, or a temporary one).
    pub folder: Option<std::path::PathBuf>,
}

impl DemoOptions {
    pub fn new(config: impl Into<std::path::PathBuf>, jobs: impl Into<std::path::PathBuf>) -> Self {
        Self {
            config: config.into(),
            jobs: jobs.into(),
            max_occurrences: 6,
            phase_timeout: Duration::from_secs(180),
            keep: None,
            folder: None,
        }
    }
}

/// Sets each trigger job's secret variable that is unset to a fresh random secret, so
/// that the demo can sign its trigger with zero setup. Returns the variables it set.
///
/// # Safety
/// Changes the process environment: call it before any other thread exists (from
/// `main`, before the async runtime starts).
pub unsafe fn prepare_env(jobs_dir: &std::path::Path) -> Vec<String> {
    let Ok(loaded) = crate::jobs::load_dir(jobs_dir, None) else {
        return Vec::new();
    };
    let mut set = Vec::new();
    for job in &loaded.jobs {
        if let Some(t) = job.spec().http_trigger()
            && std::env::var_os(&t.secret_env).is_none()
        {
            let secret = format!("demo-{}", uuid::Uuid::new_v4().simple());
            // SAFETY: the caller guarantees no other thread reads the environment.
            unsafe { std::env::set_var(&t.secret_env, secret) };
            set.push(t.secret_env.clone());
        }
    }
    set
}

/// `treasury demo`: the example jobs end to end on an in-process sandbox, through the
/// same service `treasury run` assembles. Prints progress, the run table and, last,
/// `audit chain verified (N entries)`. Fails when any run ends anywhere but settled.
pub async fn run(opts: DemoOptions, out: &mut (dyn Write + Send)) -> Result<(), String> {
    let settings = Settings::load(&opts.config).map_err(|e| e.to_string())?;
    let jobs = crate::jobs::load(&opts.jobs, &settings).map_err(|e| e.to_string())?;
    let (accounts, saved) = demo_recipients(&jobs);
    let opened;
    let dir = match &opts.folder {
        Some(dir) => dir.as_path(),
        None => {
            opened = DemoFolder::open(opts.keep.as_deref())?;
            opened.path()
        }
    };
    let listen = settings.http.listen;
    let master_key = folder::fresh_master_key();
    let mut env = setup(settings, &accounts, dir, &master_key, out).await?;
    let passwords = create_demo_accounts(&mut env).await?;
    for r in saved {
        let id = r.id.clone();
        if !env.sandbox.add_saved_recipient(&env.user.id, r) {
            return Err(format!("cannot seed the saved recipient {id}"));
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    env.settings.http.listen = listener.local_addr().map_err(|e| e.to_string())?;
    drop(listener);
    let queue = crate::queue::QueueConfig::sqlite(env.dir.join("treasury-queue.db"));
    let parts = Parts {
        settings: env.settings.clone(),
        store: env.store.clone(),
        clock: env.clock.clone(),
        keys: env.keys.clone(),
        oauth: env.oauth.clone(),
        busha: env.busha.clone(),
        jobs: jobs.clone(),
        queue,
        webhook_secret: None,
        alert_target: None,
        tick: Duration::from_millis(100),
        sweep_poll: Some(Duration::from_millis(200)),
    };
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(crate::service::run(parts, shutdown.clone()));
    let base = format!("http://{}", env.settings.http.listen);
    let http = reqwest::Client::new();
    wait_until_up(&http, &base).await?;
    let _ = writeln!(
        out,
        "worker     treasury run on {base} (scheduler, triggers, sweeps, queue, HTTP)"
    );

    let outcome = drive(&env, &jobs, &opts, &http, &base, out).await;
    shutdown.cancel();
    let stopped = service
        .await
        .map_err(|e| format!("the worker panicked: {e}"))?;
    outcome?;
    stopped?;

    let runs = env
        .store
        .list_runs(&RunFilter::default())
        .await
        .map_err(|e| e.to_string())?;
    let _ = writeln!(out);
    write_run_table(&runs, out).map_err(|e| e.to_string())?;
    let transfers = env
        .sandbox
        .ledger()
        .iter()
        .filter(|e| matches!(e.event, LedgerEvent::TransferCreated { .. }))
        .count();
    let settled = runs.iter().filter(|r| r.state == RunState::Settled).count();
    let _ = writeln!(
        out,
        "\n{settled} of {} runs settled; Busha's ledger holds {transfers} transfers (one per settled run)",
        runs.len()
    );
    let bad: Vec<String> = runs
        .iter()
        .filter(|r| r.state != RunState::Settled)
        .map(|r| {
            format!(
                "{} {} is {}: {}",
                r.job_id,
                mask_account_numbers_in(&r.occurrence_key),
                r.state,
                r.reason.as_deref().unwrap_or("no reason recorded")
            )
        })
        .collect();
    let line = audit_line(&env.store).await?;
    if !bad.is_empty() || transfers != settled {
        let _ = writeln!(out, "{line}");
        return Err(format!(
            "the demo did not settle every run ({transfers} transfers for {settled} settled runs): {}",
            bad.join("; ")
        ));
    }
    if opts.keep.is_some() {
        let config_text = std::fs::read_to_string(&opts.config).map_err(|e| e.to_string())?;
        let kept = Keepsake {
            dir,
            master_key: &master_key,
            config_text: &config_text,
            http_listen: listen,
        };
        kept.write(&env.sandbox, &env.user.id)?;
        kept.print(&passwords, out).map_err(|e| e.to_string())?;
    }
    writeln!(out, "{line}").map_err(|e| e.to_string())?;
    env.sandbox.shutdown().await;
    Ok(())
}

/// The bank accounts the job files name (the sandbox's name enquiry must know them)
/// and the saved recipient ids they name (the customer saved those before).
fn demo_recipients(jobs: &[Job]) -> (Vec<KnownAccount>, Vec<SavedRecipient>) {
    let mut accounts: Vec<KnownAccount> = Vec::new();
    let mut saved: Vec<SavedRecipient> = Vec::new();
    for job in jobs {
        let recipients: Vec<&RecipientSpec> = match job.spec().payout() {
            Payout::Single { recipient, .. } => vec![recipient],
            Payout::Batch(payees) => payees.iter().map(|p| &p.recipient).collect(),
        };
        for r in recipients {
            match r {
                RecipientSpec::Bank {
                    bank_code,
                    account_number,
                    expected_name,
                } => {
                    let acc = (
                        bank_code.clone(),
                        account_number.clone(),
                        expected_name.clone(),
                    );
                    if !accounts.contains(&acc) {
                        accounts.push(acc);
                    }
                }
                RecipientSpec::Id { id } if !saved.iter().any(|s| &s.id == id) => {
                    // A saved recipient's bank details are the customer's; the demo
                    // invents a plausible one, numbered by its position.
                    saved.push(SavedRecipient {
                        id: id.clone(),
                        currency: job.spec().target_currency().as_str().to_string(),
                        bank_code: "000015".into(),
                        account_number: format!("30{:08}", saved.len() + 1),
                        account_name: format!("SAVED RECIPIENT {}", saved.len() + 1),
                    });
                }
                RecipientSpec::Id { .. } => {}
            }
        }
    }
    (accounts, saved)
}

async fn wait_until_up(http: &reqwest::Client, base: &str) -> Result<(), String> {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "the worker's HTTP server did not come up on {base}"
    ))
}

/// The three phases: scheduled occurrences, one signed trigger, one sweep.
async fn drive(
    env: &DemoEnv,
    jobs: &[Job],
    opts: &DemoOptions,
    http: &reqwest::Client,
    base: &str,
    out: &mut (dyn Write + Send),
) -> Result<(), String> {
    let mut seen = 0usize;
    let mut reported = std::collections::HashSet::new();

    // 1. Scheduled occurrences, in time order, the clock jumping to each.
    for (at, due) in scheduled_occurrences(jobs, env.clock.now(), opts.max_occurrences) {
        env.clock.set(at + chrono::Duration::seconds(1));
        for job in &due {
            let local = at.with_timezone(
                &job.spec()
                    .schedule()
                    .map(|s| s.cron.timezone())
                    .unwrap_or(chrono_tz::UTC),
            );
            let _ = writeln!(
                out,
                "\nschedule   {} fires at {} ({})",
                job.id(),
                local.format("%a %Y-%m-%d %H:%M %Z"),
                at.format("%Y-%m-%dT%H:%MZ")
            );
        }
        let expected: usize = due
            .iter()
            .map(|j| j.spec().payouts(None).map(|p| p.len()).unwrap_or(0))
            .sum();
        seen = phase(env, seen + expected, opts, &mut reported, out).await?;
    }

    // 2. A signed trigger, as the procurement system would send it.
    if let Some(job) = jobs.iter().find(|j| j.spec().http_trigger().is_some()) {
        let t = job.spec().http_trigger().expect("filtered on it");
        let amount = demo_trigger_amount(t.min_amount, t.max_amount);
        let secret = crate::config::signing_secret_from_env(&t.secret_env, "the trigger secret")
            .map_err(|e| e.to_string())?;
        let ts = env.clock.now().timestamp().to_string();
        let event = format!("demo-{}", uuid::Uuid::new_v4().simple());
        let body = serde_json::json!({ "amount": amount.to_string() }).to_string();
        let sig =
            crate::triggers::sign_trigger(secret.expose().as_bytes(), &ts, &event, body.as_bytes());
        let url = format!("{base}/triggers/{}", job.id());
        let _ = writeln!(
            out,
            "\ntrigger    POST /triggers/{} {{amount: {amount} {}}} signed with ${}",
            job.id(),
            match t.side {
                crate::jobs::Side::Source => job.spec().source_currency().as_str(),
                crate::jobs::Side::Target => job.spec().target_currency().as_str(),
            },
            t.secret_env
        );
        for attempt in 0..2 {
            let res = http
                .post(&url)
                .header("x-treasury-timestamp", &ts)
                .header("x-treasury-event-id", &event)
                .header("x-treasury-signature", &sig)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| format!("cannot reach the worker's trigger route: {e}"))?;
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            match (attempt, status.as_u16()) {
                (0, 201) => {}
                (1, 200) => {
                    let _ = writeln!(
                        out,
                        "trigger    the same event again: {status}, no second run"
                    );
                }
                _ => return Err(format!("the trigger was refused: {status} {text}")),
            }
        }
        seen = phase(env, seen + 1, opts, &mut reported, out).await?;
    }

    // 3. A deposit lands; the balance watch sees it above the threshold and sweeps.
    if let Some(job) = jobs.iter().find(|j| j.spec().sweep().is_some()) {
        let s = job.spec().sweep().expect("filtered on it");
        let before = env
            .sandbox
            .balance(&env.user.id, s.balance.as_str())
            .unwrap_or_default();
        let after = before + DEPOSIT_USDT;
        env.sandbox
            .set_balance(&env.user.id, s.balance.as_str(), after);
        let _ = writeln!(
            out,
            "\nsweep      a deposit of {DEPOSIT_USDT} {} lands: available {before} -> {after} (threshold {}, keep {})",
            s.balance, s.threshold, s.keep
        );
        phase(env, seen + 1, opts, &mut reported, out).await?;
    }
    Ok(())
}

/// The demo's trigger amount: a round figure a fifth of the way into the bounds.
fn demo_trigger_amount(min: Decimal, max: Decimal) -> Decimal {
    let raw = min + (max - min) / Decimal::from(5);
    let step = Decimal::from(1000);
    let rounded = (raw / step).floor() * step;
    if rounded >= min { rounded } else { min }
}

/// The next scheduled occurrences after `from`, grouped by instant, until every
/// scheduled job has fired once (at most `max` instants).
fn scheduled_occurrences(
    jobs: &[Job],
    from: chrono::DateTime<chrono::Utc>,
    max: usize,
) -> Vec<(chrono::DateTime<chrono::Utc>, Vec<Job>)> {
    let scheduled: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.spec().schedule().is_some())
        .collect();
    let mut fires: Vec<(chrono::DateTime<chrono::Utc>, &Job)> = Vec::new();
    for job in &scheduled {
        let cron = &job.spec().schedule().expect("filtered on it").cron;
        fires.extend(cron.after(from).take(max).map(|f| (f.at, *job)));
    }
    fires.sort_by_key(|(at, job)| (*at, job.id().as_str().to_string()));
    let mut out: Vec<(chrono::DateTime<chrono::Utc>, Vec<Job>)> = Vec::new();
    let mut fired: std::collections::BTreeSet<String> = Default::default();
    for (at, job) in fires {
        if fired.len() == scheduled.len()
            || (out.len() >= max && out.last().map(|(a, _)| *a) != Some(at))
        {
            break;
        }
        fired.insert(job.id().as_str().to_string());
        match out.last_mut() {
            Some((a, due)) if *a == at => due.push(job.clone()),
            _ => out.push((at, vec![job.clone()])),
        }
    }
    out
}

/// Waits until `expected` runs exist and every one is final, approving the runs that
/// wait for approval as two demo approvers (never the jobs' owners). Moves the shared
/// clock a little at a time so that Busha's transfers progress. Prints each run once,
/// when it reaches a final state. Returns the run count.
async fn phase(
    env: &DemoEnv,
    expected: usize,
    opts: &DemoOptions,
    reported: &mut std::collections::HashSet<String>,
    out: &mut (dyn Write + Send),
) -> Result<usize, String> {
    let started = std::time::Instant::now();
    loop {
        let runs = env
            .store
            .list_runs(&RunFilter::default())
            .await
            .map_err(|e| e.to_string())?;
        for r in &runs {
            if r.state == RunState::AwaitingApproval {
                approve(env, r, out).await?;
            }
            if r.state.is_final() && reported.insert(r.id.to_string()) {
                let _ = writeln!(out, "  {}", progress_line(r));
            }
        }
        if runs.len() >= expected && runs.iter().all(|r| r.state.is_final()) {
            return Ok(runs.len());
        }
        if started.elapsed() > opts.phase_timeout {
            let states: Vec<String> = runs
                .iter()
                .filter(|r| !r.state.is_final())
                .map(|r| {
                    format!(
                        "{} {} ({})",
                        r.job_id,
                        r.state,
                        r.reason.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            return Err(format!(
                "the demo timed out waiting for {expected} final runs ({} exist; still going: {})",
                runs.len(),
                states.join(", ")
            ));
        }
        env.clock.advance(chrono::Duration::seconds(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn progress_line(r: &Run) -> String {
    let who = mask_account_numbers_in(&r.occurrence_key);
    match (&r.quote, r.state) {
        (Some(q), RunState::Settled) => format!(
            "{:<20} {} settled: {} {} -> {} {} at {} (transfer {})",
            r.job_id,
            who,
            q.source_amount,
            r.spec.source_currency,
            q.target_amount,
            r.spec.target_currency,
            q.rate,
            r.transfer_id.as_deref().unwrap_or("-")
        ),
        _ => format!(
            "{:<20} {} {}: {}",
            r.job_id,
            who,
            r.state,
            r.reason.as_deref().unwrap_or("-")
        ),
    }
}

/// Approves a waiting run as the CLI would (`treasury runs approve <id>`), by the two
/// demo approver accounts.
async fn approve(env: &DemoEnv, r: &Run, out: &mut (dyn Write + Send)) -> Result<(), String> {
    for account in &env.approvers {
        let current = env.store.get_run(&r.id).await.map_err(|e| e.to_string())?;
        if current.map(|c| c.state) != Some(RunState::AwaitingApproval) {
            break;
        }
        let _ = write!(out, "  approval   ");
        crate::cli::runs::command(
            &env.store,
            &env.clock,
            crate::cli::runs::RunsCommand::Approve(crate::cli::runs::ApproveArgs {
                id: Some(r.id.to_string()),
                occurrence: None,
                yes: true,
            }),
            Some(&crate::guards::Operator::from_account(account)),
            out,
        )
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The demo's admin and its two approver accounts, with random passwords: `--keep`
/// prints them once, for signing in to the console afterwards.
async fn create_demo_accounts(
    env: &mut DemoEnv,
) -> Result<Vec<(String, crate::config::Secret)>, String> {
    use crate::operators::Role;
    let mut passwords = Vec::new();
    let admin = demo_account(env, "demo-admin", Role::Admin, None, &mut passwords).await?;
    for name in ["demo-approver-1", "demo-approver-2"] {
        let a = demo_account(env, name, Role::Approver, Some(&admin), &mut passwords).await?;
        env.approvers.push(a);
    }
    Ok(passwords)
}

async fn demo_account(
    env: &DemoEnv,
    name: &str,
    role: crate::operators::Role,
    admin: Option<&crate::operators::Account>,
    passwords: &mut Vec<(String, crate::config::Secret)>,
) -> Result<crate::operators::Account, String> {
    use crate::operators::{OperatorName, secrets};
    use crate::store::{ChangedBy, NewOperator};
    let name = OperatorName::new(name)?;
    let password = secrets::one_time_password();
    let new = NewOperator {
        name: name.clone(),
        role,
        password_hash: secrets::hash_password(&password)?,
    };
    let by = admin.map_or(ChangedBy::Bootstrap, ChangedBy::Account);
    let account = env
        .store
        .add_operator(new, by, env.clock.now())
        .await
        .map_err(|e| e.to_string())?;
    passwords.push((name.to_string(), password));
    Ok(account)
}

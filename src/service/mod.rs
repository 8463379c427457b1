//! `treasury run`: the worker as one service. It assembles the pipeline (custodian
//! tokens, guards), the queue and dispatcher, the scheduler, the sweep watches, the
//! alert watcher and the HTTP server (OAuth connect, triggers, webhooks, health,
//! metrics, the console), runs them under one cancellation token, and shuts down in
//! bounded time. [`http`] assembles the HTTP routes.

pub mod http;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::{AlertSink, AlertWatcher, SinkOptions};
use crate::clock::Clock;
use crate::config::QueueBackendKind;
use crate::config::{Secret, Settings};
use crate::grants::{BaanxTokens, BushaOAuth, Custodian, CustodyConfig, Keyring, SealMonitor};
use crate::guards::{Guards, GuardsConfig};
use crate::jobs::Job;
use crate::jobs::in_force::JobSet;
use crate::jobs::reload::Reloader;
use crate::jobs::scheduler::SchedulerConfig;
use crate::pipeline::{Pipeline, PipelineConfig, TokenSource};
use crate::provider::busha::{BushaClient, BushaConfig};
use crate::queue::{Queue, QueueConfig};
use crate::store::Store;
use crate::worker::{Worker, WorkerConfig};

/// Everything the service runs on, built by the caller (`treasury run` from settings
/// and the environment; tests and the demo from their own parts).
pub struct Parts {
    pub settings: Settings,
    pub store: Store,
    pub clock: Clock,
    pub keys: Arc<Keyring>,
    pub oauth: Arc<BushaOAuth>,
    pub busha: BushaClient,
    pub jobs: Vec<Job>,
    /// The dispatch queue: its own SQLite file (never the store's), or Redis.
    pub queue: QueueConfig,
    pub webhook_secret: Option<Secret>,
    /// Where signed alert notices go (`[alerts] url` and its secret); `None`: log only.
    pub alert_target: Option<(url::Url, Secret)>,
    /// How often the scheduler ticks.
    pub tick: Duration,
    /// Polls every sweep's balance this often instead of at its job's `interval`
    /// (the demo, whose clock runs fast).
    pub sweep_poll: Option<Duration>,
}

/// Where the queue file goes: beside a SQLite store, or in the working directory.
pub fn queue_path_for(store_url: &str) -> PathBuf {
    store_url
        .strip_prefix("sqlite://")
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .and_then(|path| {
            Path::new(path)
                .parent()
                .map(|dir| dir.join("treasury-queue.db"))
        })
        .unwrap_or_else(|| PathBuf::from("treasury-queue.db"))
}

/// The service bound to its listener, ready to run (zero2prod's `Application`):
/// The service bound to its listener, ready to run (zero2prod's `Application`):
/// tests bind port 0 and read [`Application::address`], so no port is raced for.
pub struct Application {
    parts: Parts,
    listener: tokio::net::TcpListener,
    jobs_dir: Option<PathBuf>,
}

impl Application {
    /// Checks what must hold before anything listens (every trigger job has a usable
    /// secret), then keeps `listener` for the HTTP server, which is serving before the
    /// queue consumers start.
    pub fn build(parts: Parts, listener: tokio::net::TcpListener) -> Result<Self, String> {
        crate::triggers::TriggerKeys::from_env(&parts.jobs)?;
        Ok(Self {
            parts,
            listener,
            jobs_dir: None,
        })
    }

    /// With `jobs_dir` (where `parts.jobs` were loaded from), the job files are read
    /// again on every change and on `SIGHUP` ([`crate::jobs::reload`]).
    pub fn reloading(mut self, jobs_dir: Option<PathBuf>) -> Self {
        self.jobs_dir = jobs_dir;
        self
    }

    /// Where the HTTP server listens.
    pub fn address(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `shutdown` is cancelled (see [`run`]).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), String> {
        run_on(self.parts, self.listener, self.jobs_dir, shutdown).await
    }
}

/// Binds `[http] listen` and runs until `shutdown` is cancelled, then stops scheduling
/// and lets in-flight executions finish or park (within the worker's shutdown bound).
pub async fn run(parts: Parts, shutdown: CancellationToken) -> Result<(), String> {
    run_reloading(parts, None, shutdown).await
}

/// As [`run`], and with `jobs_dir` (where `parts.jobs` were loaded from) the job files
/// are read again on every change and on `SIGHUP` ([`crate::jobs::reload`]).
pub async fn run_reloading(
    parts: Parts,
    jobs_dir: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    // Before anything listens: every trigger job has a usable secret, or nothing starts.
    crate::triggers::TriggerKeys::from_env(&parts.jobs)?;
    let listen = parts.settings.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    Application::build(parts, listener)?
        .reloading(jobs_dir)
        .run_until_stopped(shutdown)
        .await
}

/// [`run`] on an already-bound listener.
async fn run_on(
    parts: Parts,
    listener: tokio::net::TcpListener,
    jobs_dir: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let worker_id = format!("{}-{}", hostname(), std::process::id());
    let Parts {
        settings,
        store,
        clock,
        keys,
        oauth,
        busha,
        jobs,
        queue,
        webhook_secret,
        alert_target,
        tick,
        sweep_poll,
    } = parts;
    // Before anything listens: every trigger job has a usable secret, or nothing starts.
    let trigger_keys = crate::triggers::TriggerKeys::from_env(&jobs)?;
    let sink = AlertSink::with(SinkOptions {
        target: alert_target,
        kinds: settings.alerts.kinds,
        ..SinkOptions::default()
    });
    let mut seals = SealMonitor::new(store.clone(), keys.clone(), sink.clone(), clock.clone());
    check_seals_at_start(&mut seals).await?;
    let checkpointer = crate::checkpoints::checkpointer_at_start(
        &settings.audit,
        &store,
        &clock,
        &format!("worker:{worker_id}"),
    )
    .await?;
    let baanx = baanx_tokens(&settings);
    let custodian = Custodian::with_providers(
        store.clone(),
        keys.clone(),
        Some(oauth.clone()),
        baanx.clone(),
        clock.clone(),
        CustodyConfig::default(),
    );
    let guards = Guards::with_config(
        store.clone(),
        clock.clone(),
        GuardsConfig::for_worker(&worker_id),
    );
    let ws = &settings.worker;
    let cfg = PipelineConfig {
        worker_id: worker_id.clone(),
        lease: chrono::Duration::from_std(ws.lease).unwrap_or(chrono::Duration::minutes(2)),
        ..PipelineConfig::default()
    };
    let tokens: Arc<dyn TokenSource> = Arc::new(custodian.clone());
    let pipeline = Pipeline::new(
        store.clone(),
        busha.clone(),
        tokens.clone(),
        clock.clone(),
        cfg,
    )
    .with_gate(guards.into_gate());
    let queue_shown = queue.backend.to_string();
    let queue = Queue::open(queue)
        .await
        .map_err(|e| format!("cannot open the queue ({queue_shown}): {e}"))?;
    // The job set: recorded, proposed as the one in force, and swapped on a reload.
    let actor = format!("worker:{worker_id}");
    let set = JobSet::new(jobs, trigger_keys);
    crate::live::start_set(&store, &set, &actor, clock.now())
        .await
        .map_err(|e| format!("cannot record the job set: {e}"))?;
    let jobs = set.jobs.clone();
    let (live_set, live) = tokio::sync::watch::channel(Arc::new(set));
    tracing::info!(jobs = jobs.len(), queue = %queue_shown, pacing = if busha.pacer().is_shared() { "shared (redis)" } else { "local" }, "worker starting");

    let tasks = TaskTracker::new();
    let worker_cfg = WorkerConfig {
        consumers: ws.consumers,
        recovery_interval: ws.recovery_interval,
        // The whole shutdown stays under SHUTDOWN_BOUND: the worker's drain is the
        // longest part, and everything else stops alongside it.
        shutdown_timeout: SHUTDOWN_BOUND - Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(pipeline, queue, clock.clone(), worker_cfg).start(shutdown.clone());

    // The scheduler: every tick creates the runs that are due (idempotently).
    let scheduler = crate::live::ScheduleLoop {
        store: store.clone(),
        live: live.clone(),
        config: SchedulerConfig {
            actor: actor.clone(),
            ..SchedulerConfig::default()
        },
        clock: clock.clone(),
        tick,
    };
    tasks.spawn(scheduler.run(shutdown.clone()));
    // Without a folder to reload from, the set stays as loaded: its sender lives as
    // long as this function, so the readers never see it closed.
    let mut _fixed_set = None;
    if let Some(dir) = jobs_dir {
        let reloader = Reloader::new(
            store.clone(),
            settings.clone(),
            dir,
            clock.clone(),
            actor.clone(),
            live_set,
        );
        tasks.spawn(reloader.run(shutdown.clone()));
    } else {
        _fixed_set = Some(live_set);
    }
    if let Some(cp) = checkpointer {
        let every = settings.audit.checkpoint_every;
        tasks.spawn(crate::checkpoints::run_checkpointer(
            cp,
            every,
            shutdown.clone(),
        ));
    }
    // One balance watch per sweep job of the live set.
    let sweeps = crate::live::SweepParts {
        store: store.clone(),
        busha: busha.clone(),
        tokens: tokens.clone(),
        clock: clock.clone(),
        actor: actor.clone(),
        poll: sweep_poll,
    };
    tasks.spawn(crate::live::run_sweeps(
        sweeps,
        live.clone(),
        shutdown.clone(),
    ));
    // Alerts from the audit log and stuck transfers; the seal check again, so that a
    // grant rekeyed under a version this process lacks turns readiness off.
    let seal_status = seals.status();
    let stuck_after = chrono::Duration::from_std(settings.alerts.stuck_after)
        .unwrap_or(chrono::Duration::minutes(30));
    let watcher = AlertWatcher::new(store.clone(), sink.clone(), clock.clone(), stuck_after)
        .await
        .map_err(|e| e.to_string())?;
    tasks.spawn(watch::alerts(watcher, seals, shutdown.clone()));
    // Keep-alive: refresh grants before their refresh tokens die unused, and alert.
    tasks.spawn(watch::keep_alive(custodian.clone(), shutdown.clone()));
    // HTTP: health and metrics always; connect routes with an operator token; triggers;
    // the console. The listener was bound before anything started.
    let router = http::router(http::HttpParts {
        settings: &settings,
        store: store.clone(),
        clock: clock.clone(),
        keys,
        oauth,
        custodian: custodian.clone(),
        baanx,
        jobs: jobs.clone(),
        trigger_keys: live.borrow().keys.clone(),
        live: Some(live.clone()),
        webhook_secret,
        seals: seal_status,
        worker_id: worker_id.clone(),
    });
    let limits = settings.http.limits();
    tracing::info!(listen = ?listener.local_addr().ok(), "HTTP server listening");
    let http = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let ended = crate::http::serve(listener, router, limits, shutdown).await;
            match &ended {
                Ok(()) => tracing::info!("HTTP server stopped"),
                Err(e) => tracing::error!(error = %e, "HTTP server failed"),
            }
            ended
        })
    };

    shutdown.cancelled().await;
    tracing::info!("shutting down: scheduling stopped, letting in-flight steps finish");
    tasks.close();
    // Everything drains at once, under one bound. A step still in flight at the bound
    // is abandoned: its lease lapses and the next start reconciles before acting.
    let drain = async {
        // Queued alert notices get a short while; a receiver that is down cannot hold
        // the shutdown. Each was logged as an ALERT when raised, so none goes unseen.
        let notices = tokio::time::timeout(Duration::from_secs(2), sink.flush());
        let (done, _, _, _) = tokio::join!(worker.join(), tasks.wait(), http, notices);
        done
    };
    match tokio::time::timeout(SHUTDOWN_BOUND, drain).await {
        Ok(done) => tracing::info!(?done, "worker stopped"),
        Err(_) => tracing::warn!(
            bound = ?SHUTDOWN_BOUND,
            "shutdown bound reached; what was in flight resumes on the next start"
        ),
    }
    Ok(())
}

/// Opens every active grant's tokens before anything is served: each one that does not
/// open is logged, alerted, and keeps `/readyz` not ready; the rest run.
async fn check_seals_at_start(seals: &mut SealMonitor) -> Result<(), String> {
    let problems = seals
        .check()
        .await
        .map_err(|e| format!("cannot check that the grants' tokens open: {e}"))?;
    for p in &problems {
        tracing::error!(grant = %p.alias, key_version = p.key_version, "{p}; /readyz stays not ready");
    }
    Ok(())
}

/// The most a graceful shutdown takes, from SIGTERM to exit.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(8);

/// The queue the settings name: SQLite beside the store, or Redis.
pub fn queue_config(settings: &Settings) -> QueueConfig {
    let base = match (settings.queue.backend, &settings.queue.url) {
        (QueueBackendKind::Redis, Some(url)) => QueueConfig::redis(url),
        _ => QueueConfig::sqlite(queue_path_for(&settings.store.url)),
    };
    QueueConfig {
        concurrency: settings.worker.concurrency,
        batch_size: settings.worker.concurrency,
        // apalis compares heartbeats in whole seconds.
        heartbeat: settings.worker.queue_heartbeat.max(Duration::from_secs(1)),
        ..base
    }
}

/// The Busha client the settings describe: Busha's limits (times `limits_scale`),
/// paced locally or in the shared Redis.
pub fn busha_client(settings: &Settings) -> Result<BushaClient, String> {
    let mut config = BushaConfig::new(settings.busha.api_url.clone());
    config.timeout = settings.worker.busha_timeout;
    config.max_pacing_wait = Some(settings.worker.max_pacing_wait);
    config.limits =
        crate::provider::pacing::EndpointLimits::busha().scaled(settings.pacing.limits_scale);
    if let Some(url) = settings.shared_pacing_url() {
        config.shared_pacing = Some(crate::provider::pacing::SharedPacing::new(
            url,
            &settings.busha.client_id,
        )?);
    }
    BushaClient::new(config).map_err(|e| e.to_string())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// Baanx's token endpoint when `[baanx]` is configured and its secret key is set;
/// without it Baanx grants are neither refreshed nor kept alive here (said loudly).
fn baanx_tokens(settings: &Settings) -> Option<Arc<BaanxTokens>> {
    let b = settings.baanx.as_ref()?;
    match BaanxTokens::from_settings(b) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            tracing::error!(error = %e, "Baanx grants will not be refreshed or kept alive by this worker");
            None
        }
    }
}

/// Builds [`Parts`] from settings and the environment, for `treasury run`.
pub async fn parts_from_env(
    settings: Settings,
    store: Store,
    clock: Clock,
    jobs_dir: &Path,
) -> Result<Parts, String> {
    // Before any network call: a down issuer must not hide a job file's errors.
    let jobs = crate::jobs::load(jobs_dir, &settings).map_err(|e| e.to_string())?;
    let keys = Arc::new(Keyring::from_env().map_err(|e| e.to_string())?);
    // The worker seals and checks runs, approvals and halts under the master key.
    let store = store.with_seal_keys(Arc::new(crate::seal::SealKeys::from_keyring(&keys)));
    let secret = crate::config::secret_from_env(
        crate::config::CLIENT_SECRET_ENV,
        "the Busha OAuth client secret",
    )
    .map_err(|e| e.to_string())?;
    let b = &settings.busha;
    let oauth = Arc::new(
        BushaOAuth::discover(
            &crate::grants::OAuthSettings::new(
                b.issuer_url.clone(),
                &b.client_id,
                secret,
                b.redirect_uri.clone(),
            ),
            clock.clone(),
        )
        .await?,
    );
    let busha = busha_client(&settings)?;
    let alert_target = settings.alerts.target().map_err(|e| e.to_string())?;
    let webhook_secret =
        crate::config::secret_from_env("TREASURY_BUSHA_WEBHOOK_SECRET", "the Busha webhook secret")
            .ok();
    Ok(Parts {
        queue: queue_config(&settings),
        settings,
        store,
        clock,
        keys,
        oauth,
        busha,
        jobs,
        webhook_secret,
        alert_target,
        tick: Duration::from_secs(1),
        sweep_poll: None,
    })
}

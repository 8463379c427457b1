//! The operator CLI (clap): `serve`, `connect <alias>`,
//! `grants list|show|refresh|revoke|rekey`, `runs list|show|approve|reject|cancel|retry|summary`,
//! the kill switch `halt|resume|halts`, `audit verify|head|export`, `reconcile`,
//! `jobs validate|plan`, `run` and `demo`.
//!
//! Commands write to a caller-supplied writer so that tests run them in-process. No
//! output, of any command, contains a token.

pub mod audit;
mod audit_checkpoints;
pub mod connect;
pub mod connect_api;
mod grants;
pub mod guards;
pub mod jobs;
pub mod operators;
pub mod reconcile;
pub mod runs;
mod seals;

pub use grants::GrantsCommand;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{self, CLIENT_SECRET_ENV, Settings, secret_from_env};
use crate::grants::crypto::MASTER_KEY_ENV;
use crate::grants::{BushaOAuth, Connector, Custodian, CustodyConfig, Keyring, OAuthSettings};
use crate::guards::Operator;
use crate::operators::{Login, Role};
use crate::seal::SealKeys;
use crate::store::Store;

/// Automates treasury transfers on Busha: scheduled payouts and sweeps, exactly once,
/// with an audit trail.
#[derive(Parser, Debug)]
#[command(name = "treasury", version)]
pub struct Cli {
    /// The worker's config file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the web console (at `/`), health and the OAuth connect routes over the
    /// store, running no job and no queue consumer, until SIGINT/SIGTERM.
    Serve,
    /// Connect a customer's account to a declared grant alias: Busha in a browser;
    /// Baanx through its hosted UI in a browser (the default), or in API mode
    /// (`flow = "api"`), where the terminal asks for the customer's email, password
    /// (not echoed) and OTP, or reads them as stdin lines, never from arguments.
    Connect {
        alias: String,
        /// Print the URL only; do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Inspect and manage stored grants.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Verify, print the head of, or export the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Read-only: transfers no run of ours made, runs Busha disagrees with, and
    /// transfer ids two runs claim.
    ///
    /// Exit status: 0 when everything was checked and nothing found; 1 when it found
    /// anything; 3 when it found nothing but could not check everything (a grant or a
    /// listed item it could not read, a server repeating a cursor, the page bound, or
    /// SIGINT/SIGTERM, after which it says how far it got).
    Reconcile {
        /// RFC 3339 time or YYYY-MM-DD (UTC).
        #[arg(long)]
        since: String,
        /// One grant alias (default: every declared grant).
        #[arg(long)]
        grant: Option<String>,
        #[arg(long)]
        json: bool,
        /// At most this many pages of transfers (100 each) per grant.
        #[arg(long, default_value_t = crate::reconcile::DEFAULT_MAX_PAGES)]
        max_pages: u32,
    },
    /// Inspect runs and act on them: approve, reject, cancel, retry.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// Kill switch: no new money-moving step starts (everything, one job, or one grant).
    Halt(guards::HaltArgs),
    /// Lift a halt made by `treasury halt` with the same flags.
    Resume(guards::ResumeArgs),
    /// Run the worker: scheduler, triggers, sweeps, queue workers and the HTTP server,
    /// until SIGINT/SIGTERM.
    Run {
        /// The directory of job files.
        #[arg(long, default_value = "jobs")]
        jobs: PathBuf,
    },
    /// The whole product with zero setup: an in-process Busha sandbox, a temporary
    /// store and key, a customer connected through the real OAuth flow, then the job
    /// files run by `treasury run`'s own service (a few scheduled occurrences on a
    /// fast clock, one signed trigger, one sweep). Moves no real money.
    Demo {
        /// The directory of job files.
        #[arg(long, default_value = "jobs")]
        jobs: PathBuf,
        /// At most this many scheduled occurrences.
        #[arg(long, default_value_t = 6)]
        occurrences: usize,
        /// Leave the store, its config, the master key and the sandbox's state in this
        /// (new or empty) folder, and print how to serve the console over it.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Also print the logs on the terminal (they always go to the demo folder's
        /// `demo.log`).
        #[arg(short, long)]
        verbose: bool,
        /// The folder `main` opened for the demo and logs into.
        #[arg(skip)]
        folder: Option<PathBuf>,
    },
    /// Every active halt.
    Halts {
        #[arg(long)]
        json: bool,
    },
    /// Check job files and show what they will do (moves no money).
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Operator accounts: add, list, disable, enable, role, passwd, token.
    Operators {
        #[command(subcommand)]
        command: operators::OperatorsCommand,
    },
}

/// The role a command needs, when it changes anything an operator is accountable
/// for (`operators` commands authenticate themselves).
fn needs(command: &Command) -> Option<Role> {
    match command {
        Command::Runs { command } => runs::needs(command),
        Command::Halt(_) | Command::Resume(_) | Command::Connect { .. } => Some(Role::Operator),
        Command::Grants { command } => match command {
            GrantsCommand::Refresh { .. }
            | GrantsCommand::Revoke { .. }
            | GrantsCommand::Rekey { .. } => Some(Role::Operator),
            GrantsCommand::List { .. } | GrantsCommand::Show { .. } => None,
        },
        _ => None,
    }
}

/// A command that failed, with a message for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    fn from<E: std::fmt::Display>(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// A failed command as the process ends it: the message and the exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub message: String,
    /// `None`: the command's usual failure status (1, or 3 for `reconcile`).
    code: Option<u8>,
}

impl Failure {
    /// A failure with its own exit status.
    pub fn exit(code: u8, message: String) -> Self {
        Self {
            message,
            code: Some(code),
        }
    }

    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        self.code.unwrap_or(1)
    }
}

impl From<CliError> for Failure {
    fn from(e: CliError) -> Self {
        Self {
            message: e.0,
            code: None,
        }
    }
}

/// Runs one command, authenticating its operator from `TREASURY_OPERATOR_AUTH` or
/// the terminal. `shutdown` ends `serve`, `reconcile` (and an unfinished `connect`).
pub async fn run(
    cli: Cli,
    clock: Clock,
    shutdown: CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    run_as(cli, clock, shutdown, Login::from_env(), out).await
}

/// [`run`] with the operator's login given (tests and embedding programs).
pub async fn run_as(
    cli: Cli,
    clock: Clock,
    shutdown: CancellationToken,
    login: Login,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    // Anything that stops `reconcile` before it reports means it could not check.
    let code = match cli.command {
        Command::Reconcile { .. } => crate::reconcile::EXIT_UNCHECKED,
        _ => 1,
    };
    dispatch(cli, clock, shutdown, login, out)
        .await
        .map_err(|e| Failure {
            code: e.code.or(Some(code)),
            ..e
        })
}

async fn dispatch(
    cli: Cli,
    clock: Clock,
    shutdown: CancellationToken,
    mut login: Login,
    out: &mut (dyn Write + Send),
) -> Result<(), Failure> {
    // `jobs` reads the config itself (and reports its errors) and needs no store.
    let command = match cli.command {
        Command::Jobs { command } => {
            return Ok(jobs::run(&cli.config, command, &clock, out).await?);
        }
        // Keys are made and shown without a config or a store.
        Command::Audit {
            command: command @ (audit::AuditCommand::Keygen | audit::AuditCommand::PublicKey),
        } => return Ok(audit_checkpoints::offline(command, out)?),
        // The demo makes its own sandbox, store and key.
        Command::Demo {
            jobs,
            occurrences,
            keep,
            folder,
            ..
        } => {
            let mut opts = crate::demo::DemoOptions::new(&cli.config, jobs);
            opts.max_occurrences = occurrences;
            opts.keep = keep;
            opts.folder = folder;
            // The demo runs for minutes and takes no shutdown token: a signal ends it
            // here (what it printed so far says how far it got).
            let demo = tokio::select! {
                r = crate::demo::run(opts, out) => r,
                _ = shutdown.cancelled() => Err("interrupted by a signal; the demo stopped".into()),
            };
            return Ok(demo.map_err(CliError)?);
        }
        // Config and job files are checked whole before the store or the issuer is
        // reached, so an unreachable server never hides a job's mistakes.
        Command::Run { jobs: dir } => {
            jobs::preflight(&cli.config, &dir, out).await?;
            Command::Run { jobs: dir }
        }
        other => other,
    };
    let settings = Settings::load(&cli.config).map_err(CliError::from)?;
    let store = Store::connect(&settings.store.url)
        .await
        .map_err(CliError::from)?;
    // Approvals, halts and runs are sealed under the master key when it is set (the
    // commands that need it refuse to start without it).
    let store = match Keyring::from_env() {
        Ok(keys) => store.with_seal_keys(Arc::new(SealKeys::from_keyring(&keys))),
        Err(_) => {
            let signs = matches!(
                &command,
                Command::Halt(_)
                    | Command::Resume(_)
                    | Command::Runs {
                        command: runs::RunsCommand::Approve(_)
                    }
            );
            if signs {
                tracing::warn!(
                    "{MASTER_KEY_ENV} is not set: this command's audit entry is not signed with the worker's key, so the worker will not trust it (an approval releases nothing, a resume lifts nothing)"
                );
            }
            store
        }
    };
    let ctx = Context {
        settings,
        store,
        clock,
    };
    let who = match needs(&command) {
        Some(role) => {
            let account = login
                .authenticate(&ctx.store, ctx.clock.now(), role)
                .await
                .map_err(CliError)?;
            Some(Operator::from_account(&account))
        }
        None => None,
    };
    let done = match command {
        Command::Serve => ctx.serve(shutdown).await,
        Command::Connect { alias, no_browser } if ctx.provider_of(&alias) == "baanx" => {
            let opener: &connect::Opener = if no_browser {
                &|_| {}
            } else {
                &connect::open_browser
            };
            let by = acting(who.as_ref())?.actor();
            let requested = connect::Requested {
                alias: &alias,
                by: &by,
            };
            ctx.connect_baanx(requested, opener, shutdown, out).await
        }
        Command::Connect { alias, no_browser } => {
            let by = acting(who.as_ref())?.actor();
            let connector = ctx.connector().await?;
            let listener = connect::bind_redirect(&ctx.settings.busha.redirect_uri).await?;
            let opener: &connect::Opener = if no_browser {
                &|_| {}
            } else {
                &connect::open_browser
            };
            connect::connect(
                &connector,
                connect::Requested {
                    alias: &alias,
                    by: &by,
                },
                listener,
                &ctx.settings.busha.redirect_uri,
                opener,
                shutdown,
                out,
            )
            .await
            .map(|_| ())
            .map_err(CliError::from)
        }
        Command::Grants { command } => ctx.grants(command, who.as_ref(), out).await,
        Command::Audit { command } => ctx.audit(command, out).await,
        Command::Reconcile {
            since,
            grant,
            json,
            max_pages,
        } => {
            let args = reconcile::ReconcileArgs {
                since,
                grant,
                json,
                max_pages,
            };
            return ctx.reconcile(args, &shutdown, out).await;
        }
        Command::Runs { command } => {
            runs::command(&ctx.store, &ctx.clock, command, who.as_ref(), out).await
        }
        Command::Halt(args) => {
            let who = acting(who.as_ref())?;
            guards::halt(&ctx.store, &ctx.clock, &ctx.settings.grants, args, who, out).await
        }
        Command::Resume(args) => {
            let who = acting(who.as_ref())?;
            guards::resume(&ctx.store, &ctx.clock, &ctx.settings.grants, args, who, out).await
        }
        Command::Operators { command } => {
            operators::command(&ctx.store, &ctx.clock, &mut login, command, out).await
        }
        Command::Run { jobs } => {
            owners_are_accounts(&ctx, &jobs).await?;
            let parts = crate::service::parts_from_env(
                ctx.settings.clone(),
                ctx.store.clone(),
                ctx.clock.clone(),
                &jobs,
            )
            .await
            .map_err(CliError)?;
            crate::service::run_reloading(parts, Some(jobs), shutdown)
                .await
                .map_err(CliError)
        }
        Command::Halts { json } => guards::list(&ctx.store, json, out).await,
        Command::Jobs { .. } | Command::Demo { .. } => unreachable!("dispatched above"),
    };
    Ok(done?)
}

/// The authenticated operator of a command that `needs` one.
fn acting(who: Option<&Operator>) -> Result<&Operator, CliError> {
    who.ok_or_else(|| CliError("this command needs an authenticated operator".into()))
}

/// `treasury run` refuses at start any job whose owner is not an operator account
/// (matched by confusable skeleton, as approvals are).
async fn owners_are_accounts(ctx: &Context, jobs: &std::path::Path) -> Result<(), CliError> {
    let (store, set) = (
        &ctx.store,
        crate::jobs::load(jobs, &ctx.settings).map_err(CliError::from)?,
    );
    // The same check a reload makes before it accepts a set.
    let missing = crate::jobs::reload::owners_not_accounts(store, &set)
        .await
        .map_err(CliError::from)?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(CliError(format!(
        "refusing to start: {}, which is not an operator account; add it with `treasury operators add <name> --role viewer` (or any role)",
        missing.join("; ")
    )))
}

/// What every command starts from.
pub struct Context {
    pub settings: Settings,
    pub store: Store,
    pub clock: Clock,
}

impl Context {
    pub(crate) fn keys(&self) -> Result<Arc<Keyring>, CliError> {
        Keyring::from_env().map(Arc::new).map_err(CliError::from)
    }

    async fn oauth(&self) -> Result<Arc<BushaOAuth>, CliError> {
        let secret = secret_from_env(CLIENT_SECRET_ENV, "the Busha OAuth client secret")
            .map_err(CliError::from)?;
        let b = &self.settings.busha;
        let settings = OAuthSettings::new(
            b.issuer_url.clone(),
            &b.client_id,
            secret,
            b.redirect_uri.clone(),
        );
        BushaOAuth::discover(&settings, self.clock.clone())
            .await
            .map(Arc::new)
            .map_err(CliError)
    }

    /// A connector from the environment's keys and the discovered issuer.
    pub async fn connector(&self) -> Result<Connector, CliError> {
        let keys = self.keys()?;
        let oauth = self.oauth().await?;
        Ok(Connector::new(
            self.store.clone(),
            keys,
            oauth,
            self.clock.clone(),
            self.settings.grants.clone(),
        ))
    }

    /// The provider of the declared alias (`busha` when undeclared).
    fn provider_of(&self, alias: &str) -> &str {
        self.settings
            .grant(alias)
            .map_or("busha", |g| g.provider.as_str())
    }

    /// A custodian for grants of `provider`.
    async fn custodian_for(&self, provider: &str) -> Result<Custodian, CliError> {
        match provider {
            "baanx" => self.baanx_custodian(),
            _ => self.custodian().await,
        }
    }

    pub(crate) async fn custodian(&self) -> Result<Custodian, CliError> {
        let keys = self.keys()?;
        let oauth = self.oauth().await?;
        Ok(Custodian::new(
            self.store.clone(),
            keys,
            oauth,
            self.clock.clone(),
            CustodyConfig::default(),
        ))
    }

    /// `treasury serve`: the console, health and the connect routes over the store,
    /// running no job and no queue consumer. Without Busha's secret or a reachable
    /// issuer the connect routes are off (said once) and the console still serves.
    async fn serve(&self, shutdown: CancellationToken) -> Result<(), CliError> {
        let connector = match self.connector().await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "Busha connect is off in this server");
                None
            }
        };
        let listen = self.settings.http.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| CliError(format!("cannot listen on {listen}: {e}")))?;
        if !listen.ip().is_loopback() {
            tracing::warn!(%listen, "the HTTP server listens beyond localhost; put TLS in front of it");
        }
        tracing::info!(%listen, "HTTP server listening: the console is at /");
        let baanx = match &self.settings.baanx {
            Some(_) => Some(self.baanx_connector()?),
            None => None,
        };
        let console = crate::service::http::console_state(
            &self.settings,
            &self.store,
            &self.clock,
            Default::default(),
        );
        let router = crate::http::router(crate::http::AppState {
            connector,
            baanx,
            store: self.store.clone(),
            clock: self.clock.clone(),
        })
        .merge(crate::console::router(console));
        crate::http::serve(listener, router, self.settings.http.limits(), shutdown)
            .await
            .map_err(|e| CliError(format!("the HTTP server stopped: {e}")))
    }
}

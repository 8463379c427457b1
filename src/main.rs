//! `treasury`: the worker and its operator CLI.
//!
//! Thin on purpose: parse the CLI, set up tracing, build a runtime, pass a shutdown
//! token wired to SIGINT/SIGTERM, and run. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use treasury::cli::{self, Cli, Command};
use treasury::clock::Clock;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // The demo logs into its folder (the terminal shows its narrative, and the logs
    // only with -v); the folder lives until the process ends.
    let mut demo_folder = None;
    let mut verbose = true;
    if let Command::Demo {
        jobs,
        keep,
        folder,
        verbose: v,
        ..
    } = &mut cli.command
    {
        // SAFETY: no other thread exists yet: the runtime starts below.
        for var in unsafe { treasury::demo::prepare_env(jobs) } {
            eprintln!("demo: ${var} was unset; using a generated trigger secret");
        }
        let opened = match treasury::demo::folder::DemoFolder::open(keep.as_deref()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        *folder = Some(opened.path().to_path_buf());
        verbose = *v;
        demo_folder = Some(opened);
    }
    if let Err(e) = init_tracing(demo_folder.as_ref(), verbose) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(signal(shutdown.clone()));
        let mut out = std::io::stdout();
        match cli::run(cli, Clock::system(), shutdown, &mut out).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        }
    });
    // A blocking task still running (a stuck DNS lookup, say) must not hold up exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if code != ExitCode::SUCCESS
        && let Some(treasury::demo::folder::DemoFolder::Temporary(dir)) = demo_folder
    {
        // A failed demo's logs are what says why: its folder outlives it.
        let dir = dir.keep();
        eprintln!(
            "demo: its folder is kept for a look: {} ({} holds the logs)",
            dir.display(),
            treasury::demo::folder::LOG_FILE
        );
    }
    code
}

/// Logs to stderr; for the demo, to its folder's log file, and to stderr too only
/// when `terminal`.
fn init_tracing(
    demo: Option<&treasury::demo::folder::DemoFolder>,
    terminal: bool,
) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file = match demo {
        Some(folder) => {
            let f = folder.log_file().map_err(|e| {
                format!(
                    "cannot open the demo's log file in {}: {e}",
                    folder.path().display()
                )
            })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f)),
            )
        }
        None => None,
    };
    let stderr = terminal.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(file)
        .with(stderr)
        .init();
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    shutdown.cancel();
}

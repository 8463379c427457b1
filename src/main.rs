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
    let cli = Cli::parse();
    if let Command::Demo { jobs, .. } = &cli.command {
        // SAFETY: no other thread exists yet: the runtime starts below.
        for var in unsafe { treasury::demo::prepare_env(jobs) } {
            eprintln!("demo: ${var} was unset; using a generated trigger secret");
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    code
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

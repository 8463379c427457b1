//! `treasury`: the worker and its operator CLI.

use clap::Parser;

/// Automates treasury transfers on Busha: scheduled payouts and sweeps, exactly once,
/// with an audit trail.
#[derive(Parser, Debug)]
#[command(name = "treasury", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("treasury: no command yet; see `treasury --help`");
}

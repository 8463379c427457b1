//! `treasury operators add|list|disable|enable|role|passwd|token`.
//!
//! Every command authenticates (see `operators::login`), except the very first
//! `operators add <name> --role admin` while no account exists. Admins manage
//! accounts; a token is minted only by the account itself, with its own password.

use std::io::Write;

use clap::Subcommand;

use super::CliError;
use crate::clock::Clock;
use crate::operators::login::permitted;
use crate::operators::secrets::{
    check_new_password, hash_password, new_token, one_time_password, token_hash,
};
use crate::operators::{Account, DEFAULT_TOKEN_DAYS, Login, MAX_TOKEN_DAYS, OperatorName, Role};
use crate::store::{ChangedBy, NewOperator, OperatorChange, Store};

#[derive(Subcommand, Debug)]
pub enum OperatorsCommand {
    /// Create an account; asks for its password (twice at a terminal, one line of
    /// standard input in scripts). The first account must be an admin.
    Add {
        name: String,
        #[arg(long)]
        role: Role,
    },
    /// Every account, with its role and status.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its tokens and sessions stop working.
    Disable { name: String },
    /// Enable a disabled or locked account.
    Enable { name: String },
    /// Change an account's role: its tokens and sessions stop working.
    Role { name: String, role: Role },
    /// Change your own password (asks for the current one), or, as an admin, reset
    /// another account's to a one-time password that must be changed before it acts.
    Passwd { name: String },
    /// Mint a personal token for your own account (asks for its password). Printed
    /// once; use it as TREASURY_OPERATOR_AUTH=<name>:<token>.
    Token {
        name: String,
        /// Days until it expires.
        #[arg(long, default_value_t = DEFAULT_TOKEN_DAYS, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TOKEN_DAYS)))]
        days: u32,
    },
}

fn io(e: std::io::Error) -> CliError {
    CliError(format!("cannot write output: {e}"))
}

fn name(raw: &str) -> Result<OperatorName, CliError> {
    OperatorName::new(raw).map_err(CliError)
}

/// Runs one `operators` subcommand.
pub async fn command(
    store: &Store,
    clock: &Clock,
    login: &mut Login,
    cmd: OperatorsCommand,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let now = clock.now();
    match cmd {
        OperatorsCommand::Add { name: raw, role } => {
            add(store, clock, login, &raw, role, out).await
        }
        OperatorsCommand::List { json } => {
            login
                .authenticate(store, now, Role::Viewer)
                .await
                .map_err(CliError)?;
            list(store, json, out).await
        }
        OperatorsCommand::Disable { name: n } => {
            change(store, clock, login, &n, OperatorChange::Disable, out).await
        }
        OperatorsCommand::Enable { name: n } => {
            change(store, clock, login, &n, OperatorChange::Enable, out).await
        }
        OperatorsCommand::Role { name: n, role } => {
            change(store, clock, login, &n, OperatorChange::Role(role), out).await
        }
        OperatorsCommand::Passwd { name: n } => passwd(store, clock, login, &n, out).await,
        OperatorsCommand::Token { name: n, days } => {
            token(store, clock, login, &n, days, out).await
        }
    }
}

async fn add(
    store: &Store,
    clock: &Clock,
    login: &mut Login,
    raw: &str,
    role: Role,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let n = name(raw)?;
    let bootstrap = store.operator_count().await.map_err(CliError::from)? == 0;
    let admin = if bootstrap {
        if role != Role::Admin {
            return Err(CliError(
                "no account exists yet: the first one must be an admin (`--role admin`)".into(),
            ));
        }
        None
    } else {
        Some(
            login
                .authenticate(store, clock.now(), Role::Admin)
                .await
                .map_err(CliError)?,
        )
    };
    let password = new_password(login, &n)?;
    let new = NewOperator {
        name: n.clone(),
        role,
        password_hash: hash_password(&password).map_err(CliError)?,
    };
    let by = admin
        .as_ref()
        .map_or(ChangedBy::Bootstrap, ChangedBy::Account);
    let account = store
        .add_operator(new, by, clock.now())
        .await
        .map_err(|e| CliError(e.to_string().trim_start_matches("conflict: ").to_string()))?;
    writeln!(
        out,
        "added operator {} ({}) with role {}",
        account.name, account.id, account.role
    )
    .map_err(io)
}

/// Asks for a new password: twice at a terminal, once from a script.
fn new_password(login: &mut Login, n: &OperatorName) -> Result<crate::config::Secret, CliError> {
    let first = login
        .prompt()
        .secret(&format!("new password for {n}"))
        .map_err(CliError)?;
    check_new_password(first.expose()).map_err(CliError)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let again = login
            .prompt()
            .secret("the same password again")
            .map_err(CliError)?;
        if again.expose() != first.expose() {
            return Err(CliError("the two passwords differ; nothing changed".into()));
        }
    }
    Ok(first)
}

async fn list(store: &Store, json: bool, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let accounts = store.operators().await.map_err(CliError::from)?;
    if json {
        let v = serde_json::to_string(&accounts).map_err(|e| CliError(e.to_string()))?;
        return writeln!(out, "{v}").map_err(io);
    }
    for a in &accounts {
        let status = match (a.disabled, a.locked, a.password_temporary) {
            (true, _, _) => "disabled",
            (_, true, _) => "locked",
            (_, _, true) => "one-time password",
            _ => "active",
        };
        writeln!(out, "{:<24} {:<9} {status}", a.name, a.role.as_str()).map_err(io)?;
    }
    Ok(())
}

async fn account_named(store: &Store, n: &OperatorName) -> Result<Account, CliError> {
    store
        .operator_with_hash(n)
        .await
        .map_err(CliError::from)?
        .map(|(a, _)| a)
        .ok_or_else(|| CliError(format!("no operator named {n}")))
}

async fn change(
    store: &Store,
    clock: &Clock,
    login: &mut Login,
    raw: &str,
    change: OperatorChange,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let n = name(raw)?;
    let admin = login
        .authenticate(store, clock.now(), Role::Admin)
        .await
        .map_err(CliError)?;
    let target = account_named(store, &n).await?;
    crate::operators::may_change(&admin, &target, matches!(change, OperatorChange::Enable))
        .map_err(CliError)?;
    let after = store
        .change_operator(&target, change, &admin, clock.now())
        .await
        .map_err(CliError::from)?;
    let status = if after.disabled {
        "disabled"
    } else {
        "enabled"
    };
    writeln!(
        out,
        "operator {} is {status} with role {}; its earlier tokens and sessions no longer work",
        after.name, after.role
    )
    .map_err(io)
}

async fn passwd(
    store: &Store,
    clock: &Clock,
    login: &mut Login,
    raw: &str,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let n = name(raw)?;
    let target = account_named(store, &n).await?;
    let (me, by_password) = login.identify(store, clock.now()).await.map_err(CliError)?;
    let (by, change, shown) = if me.id == target.id {
        // Your own password, proven by the current one (one-time or not).
        let me = if by_password {
            me
        } else {
            login
                .password_of(store, &n, clock.now())
                .await
                .map_err(CliError)?
        };
        let password = new_password(login, &n)?;
        let hash = hash_password(&password).map_err(CliError)?;
        (
            me,
            OperatorChange::Password {
                hash,
                temporary: false,
            },
            None,
        )
    } else {
        // Someone else's: an admin resets it to a one-time password.
        permitted(&me, Role::Admin).map_err(|e| {
            CliError(format!(
                "{e} (only an admin changes another account's password)"
            ))
        })?;
        let once = one_time_password();
        let hash = hash_password(&once).map_err(CliError)?;
        (
            me,
            OperatorChange::Password {
                hash,
                temporary: true,
            },
            Some(once),
        )
    };
    store
        .change_operator(&target, change, &by, clock.now())
        .await
        .map_err(CliError::from)?;
    match shown {
        None => writeln!(out, "changed the password of {n}; its earlier tokens no longer work"),
        Some(once) => writeln!(
            out,
            "reset the password of {n} to this one-time password (shown once):\n{}\n{n} must choose a new one with `treasury operators passwd {n}` before acting",
            once.expose()
        ),
    }
    .map_err(io)
}

async fn token(
    store: &Store,
    clock: &Clock,
    login: &mut Login,
    raw: &str,
    days: u32,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let n = name(raw)?;
    let account = login
        .password_of(store, &n, clock.now())
        .await
        .map_err(|e| {
            CliError(format!(
                "{e} (a token is minted only by its own account, with its password)"
            ))
        })?;
    permitted(&account, Role::Viewer).map_err(CliError)?;
    let token = new_token();
    let now = clock.now();
    let expires = now + chrono::Duration::days(i64::from(days));
    let id = store
        .add_operator_token(&account, &token_hash(token.expose()), expires, now)
        .await
        .map_err(CliError::from)?;
    writeln!(
        out,
        "token {id} for {n}, valid until {} (shown once; it stops working when the account is disabled or its password or role changes):\nTREASURY_OPERATOR_AUTH={n}:{}",
        expires.to_rfc3339(),
        token.expose()
    )
    .map_err(io)
}

//! Who runs a command: an account proven by a personal token or by its password.
//!
//! `TREASURY_OPERATOR_AUTH=<name>:<token>` names the account and carries its token.
//! Without it, the name and password are asked for: at a terminal, the password is
//! not echoed; otherwise each answer is one line of standard input, for scripts.
//! Nothing is ever taken from argv, and no error repeats a token or a password.

use std::io::{BufRead, IsTerminal, Write};

use chrono::{DateTime, Utc};

use super::names::OperatorName;
use super::secrets::{decoy_hash, token_hash, verify_password};
use super::{Account, Role};
use crate::config::Secret;
use crate::store::Store;

/// The environment variable that names the operator and carries their token.
pub const OPERATOR_AUTH_ENV: &str = "TREASURY_OPERATOR_AUTH";

/// Asks a person (or a script) for one answer.
pub trait Prompter: Send {
    /// A visible answer, such as a name or `yes`.
    fn line(&mut self, label: &str) -> Result<String, String>;
    /// A secret answer, not echoed.
    fn secret(&mut self, label: &str) -> Result<Secret, String>;
}

/// The terminal when there is one; standard input's lines otherwise.
pub struct Terminal;

impl Prompter for Terminal {
    fn line(&mut self, label: &str) -> Result<String, String> {
        if std::io::stdin().is_terminal() {
            eprint!("{label}: ");
            let _ = std::io::stderr().flush();
        }
        read_stdin_line(label)
    }

    fn secret(&mut self, label: &str) -> Result<Secret, String> {
        if std::io::stdin().is_terminal() {
            rpassword::prompt_password(format!("{label}: "))
                .map(Secret::new)
                .map_err(|e| format!("cannot read the {label}: {e}"))
        } else {
            read_stdin_line(label).map(Secret::new)
        }
    }
}

fn read_stdin_line(label: &str) -> Result<String, String> {
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the {label} from standard input: {e}"))?;
    if n == 0 {
        return Err(format!(
            "the {label} is needed: set {OPERATOR_AUTH_ENV}=<name>:<token>, or give it on standard input"
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Answers given in advance, in order (tests and scripts).
pub struct Scripted(std::collections::VecDeque<String>);

impl Scripted {
    pub fn new<S: Into<String>>(answers: impl IntoIterator<Item = S>) -> Self {
        Self(answers.into_iter().map(Into::into).collect())
    }
}

impl Prompter for Scripted {
    fn line(&mut self, label: &str) -> Result<String, String> {
        self.0
            .pop_front()
            .ok_or_else(|| format!("the {label} is needed and none was given"))
    }
    fn secret(&mut self, label: &str) -> Result<Secret, String> {
        self.line(label).map(Secret::new)
    }
}

/// How a command learns who runs it.
pub struct Login {
    /// `<name>:<token>`, from the environment.
    auth: Option<Secret>,
    prompt: Box<dyn Prompter>,
}

impl Login {
    /// `TREASURY_OPERATOR_AUTH` when set, and the terminal.
    pub fn from_env() -> Self {
        let auth = std::env::var(OPERATOR_AUTH_ENV).ok().map(Secret::new);
        Self {
            auth,
            prompt: Box::new(Terminal),
        }
    }

    /// A token login (`<name>:<token>`, if any) and answers for every prompt.
    pub fn new(auth: Option<&str>, prompt: Box<dyn Prompter>) -> Self {
        Self {
            auth: auth.map(Secret::new),
            prompt,
        }
    }

    pub fn prompt(&mut self) -> &mut dyn Prompter {
        self.prompt.as_mut()
    }

    /// The account running this command, which must hold at least `need`.
    pub async fn authenticate(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
        need: Role,
    ) -> Result<Account, String> {
        let (account, _) = self.identify(store, now).await?;
        permitted(&account, need)?;
        Ok(account)
    }

    /// The account running this command, whatever its role, and whether it proved
    /// itself with its password (rather than a token) just now.
    pub async fn identify(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<(Account, bool), String> {
        match self.auth.take() {
            Some(auth) => {
                let found = by_token(store, &auth, now).await;
                self.auth = Some(auth);
                Ok((found?, false))
            }
            None => {
                let name = self.prompt.line("operator name")?;
                let password = self.prompt.secret("password")?;
                Ok((by_password(store, &name, &password, now).await?, true))
            }
        }
    }

    /// The account `name`, proven by its password however this command logged in
    /// (minting a token and changing one's own password need the password itself).
    pub async fn password_of(
        &mut self,
        store: &Store,
        name: &OperatorName,
        now: DateTime<Utc>,
    ) -> Result<Account, String> {
        let password = self.prompt.secret(&format!("password of {name}"))?;
        by_password(store, name.as_str(), &password, now).await
    }
}

/// The account holds `need`, is usable, and does not owe a new password.
pub fn permitted(account: &Account, need: Role) -> Result<(), String> {
    account.usable()?;
    if account.password_temporary {
        return Err(format!(
            "operator {n} has a one-time password: choose a new one with `treasury operators passwd {n}` first",
            n = account.name
        ));
    }
    if account.role < need {
        return Err(format!(
            "operator {} is a {}; this needs the {need} role ({})",
            account.name,
            account.role,
            need.grants()
        ));
    }
    Ok(())
}

async fn by_token(store: &Store, auth: &Secret, now: DateTime<Utc>) -> Result<Account, String> {
    let malformed = || format!("{OPERATOR_AUTH_ENV} must be <name>:<token>");
    let (name, token) = auth.expose().split_once(':').ok_or_else(malformed)?;
    let name = OperatorName::new(name).map_err(|e| format!("{OPERATOR_AUTH_ENV}: {e}"))?;
    let account = store
        .operator_by_token(&token_hash(token.trim()), now)
        .await
        .map_err(|e| e.to_string())?
        .filter(|a| a.name == name.as_str());
    let account = account.ok_or_else(|| {
        format!(
            "{OPERATOR_AUTH_ENV}: the token is not a live token of operator {name} (it is unknown, expired, or was ended by a password, role or status change)"
        )
    })?;
    account.usable()?;
    Ok(account)
}

/// The account `name`, proven by `password` (the console's sign-in): a wrong one
/// counts towards the lockout, as at the CLI's prompt, and says no more than
/// "wrong operator name or password" until the account locks.
pub async fn with_password(
    store: &Store,
    name: &str,
    password: &Secret,
    now: DateTime<Utc>,
) -> Result<Account, String> {
    by_password(store, name, password, now).await
}

async fn by_password(
    store: &Store,
    name: &str,
    password: &Secret,
    now: DateTime<Utc>,
) -> Result<Account, String> {
    let wrong = || "wrong operator name or password".to_string();
    let Ok(name) = OperatorName::new(name) else {
        let _ = verify_password(password, decoy_hash());
        return Err(wrong());
    };
    let found = store
        .operator_with_hash(&name)
        .await
        .map_err(|e| e.to_string())?;
    let Some((account, hash)) = found else {
        let _ = verify_password(password, decoy_hash());
        return Err(wrong());
    };
    // The password first: without it, a caller learns nothing of the account's status.
    let ok = verify_password(password, &hash);
    if ok {
        account.usable()?;
    }
    let after = store
        .record_sign_in(&account.id, ok, now)
        .await
        .map_err(|e| e.to_string())?;
    match (ok, after) {
        (true, Some(a)) => Ok(a),
        (false, Some(a)) if a.locked => Err(format!("{}; {}", wrong(), a.usable().unwrap_err())),
        _ => Err(wrong()),
    }
}

//! Operator accounts for tests: an account per name (created on first use, with an
//! admin made first when the store has none) and a personal token to log in with.

use treasury::clock::Clock;
use treasury::operators::login::Scripted;
use treasury::operators::secrets::{hash_password, new_token, token_hash};
use treasury::operators::{Account, Login, OperatorName, Role};
use treasury::store::{ChangedBy, NewOperator, Store};

/// The admin every test store gets before its first other account.
pub const ROOT: &str = "root-admin";
/// The password every test account is created with.
pub const PASSWORD: &str = "correct horse battery staple";

/// The account `name`, created with `role` if it does not exist.
pub async fn account(store: &Store, clock: &Clock, name: &str, role: Role) -> Account {
    let n = OperatorName::new(name).unwrap();
    if let Some((a, _)) = store.operator_with_hash(&n).await.unwrap() {
        return a;
    }
    if name == ROOT {
        return create(store, clock, n, Role::Admin, ChangedBy::Bootstrap).await;
    }
    let root = Box::pin(account(store, clock, ROOT, Role::Admin)).await;
    create(store, clock, n, role, ChangedBy::Account(&root)).await
}

async fn create(
    store: &Store,
    clock: &Clock,
    name: OperatorName,
    role: Role,
    by: ChangedBy<'_>,
) -> Account {
    let password_hash = hash_password(&treasury::config::Secret::new(PASSWORD)).unwrap();
    let new = NewOperator {
        name,
        role,
        password_hash,
    };
    store.add_operator(new, by, clock.now()).await.unwrap()
}

/// A fresh personal token of `account`.
pub async fn token(store: &Store, clock: &Clock, account: &Account) -> String {
    let token = new_token();
    let expires = clock.now() + chrono::Duration::days(30);
    store
        .add_operator_token(account, &token_hash(token.expose()), expires, clock.now())
        .await
        .unwrap();
    token.expose().to_string()
}

/// A login as `name` (created as an approver when missing) by personal token.
pub async fn login(store: &Store, clock: &Clock, name: &str) -> Login {
    let a = account(store, clock, name, Role::Approver).await;
    let t = token(store, clock, &a).await;
    by_token(&a.name, &t)
}

/// A login by `TREASURY_OPERATOR_AUTH`-style `<name>:<token>`, with no prompt answers.
pub fn by_token(name: &str, token: &str) -> Login {
    Login::new(
        Some(&format!("{name}:{token}")),
        Box::new(Scripted::new(Vec::<String>::new())),
    )
}

/// A login that answers the prompts with `answers`, in order.
pub fn prompted(answers: &[&str]) -> Login {
    Login::new(
        None,
        Box::new(Scripted::new(answers.iter().map(|s| s.to_string()))),
    )
}

/// Takes `--as NAME` out of a test's argv: in these tests it means "logged in as the
/// account NAME" (the CLI itself has no `--as`).
pub fn split_as<'a>(args: &[&'a str]) -> (Vec<&'a str>, Option<&'a str>) {
    let mut rest = Vec::new();
    let mut who = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == "--as" {
            who = it.next().copied();
        } else {
            rest.push(*a);
        }
    }
    (rest, who)
}

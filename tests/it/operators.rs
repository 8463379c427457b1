//! Operators are accounts (issue 14 §1): the first admin, roles, names that cannot
//! look like another, personal tokens minted only by their own account, one-time
//! passwords, lockout, and the two-person rule on the CLI by two real accounts.

use rust_decimal::dec;
use treasury::operators::{Login, Role};
use treasury::runs::RunState;

use crate::guards_world::{World, ngn, with_approval};
use crate::operators_world::{PASSWORD, ROOT, account, by_token, prompted, token};

impl World {
    /// `treasury <args>` with `login`: its output, or its error.
    async fn as_login(&self, login: Login, args: &[&str]) -> Result<String, String> {
        let (out, result) = self.treasury_with(login, args).await;
        result.map(|()| out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_needs_no_login_and_every_later_account_needs_an_admin() {
    let w = World::new().await;
    let first = w
        .as_login(
            prompted(&[PASSWORD]),
            &["operators", "add", "Root-Admin", "--role", "admin"],
        )
        .await
        .unwrap();
    assert!(first.contains("added operator root-admin"), "{first}");
    // The second account without a login: refused, nothing added.
    let err = w
        .as_login(
            prompted(&[]),
            &["operators", "add", "ada", "--role", "approver"],
        )
        .await
        .unwrap_err();
    assert!(err.contains("operator name is needed"), "{err}");
    assert_eq!(w.store.operator_count().await.unwrap(), 1);
    // An approver may not add accounts either.
    let approver = account(&w.store, &w.clock, "bola", Role::Approver).await;
    let t = token(&w.store, &w.clock, &approver).await;
    let err = w
        .as_login(
            by_token("bola", &t),
            &["operators", "add", "ada", "--role", "approver"],
        )
        .await
        .unwrap_err();
    assert!(err.contains("needs the admin role"), "{err}");
    // The admin, by name and password at the prompt, then the new account's password.
    let out = w
        .as_login(
            prompted(&[ROOT, PASSWORD, "a brand new password"]),
            &["operators", "add", "ada", "--role", "approver"],
        )
        .await
        .unwrap();
    assert!(out.contains("added operator ada"), "{out}");
    let audit = w.store.audit_entries(None, None).await.unwrap();
    let added: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "operator.added")
        .collect();
    assert_eq!(added.len(), 3);
    assert_eq!(added[0].actor, "bootstrap:first-admin");
    assert_eq!(added[2].actor, "operator:root-admin");
    assert!(
        !audit
            .iter()
            .any(|e| e.payload.to_string().contains(PASSWORD))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confusable_and_invisible_names_are_refused_when_the_account_is_created() {
    let w = World::new().await;
    let root = account(&w.store, &w.clock, ROOT, Role::Admin).await;
    let t = token(&w.store, &w.clock, &root).await;
    account(&w.store, &w.clock, "alice", Role::Approver).await;
    for (name, why) in [
        ("\u{0430}lice", "looks like the existing account"),
        ("ALICE", "already taken"),
        ("al\u{200B}ice", "invisible or control character U+200B"),
        ("bob\u{202E}", "U+202E"),
        ("eve\u{1b}[31m", "U+001B"),
    ] {
        let err = w
            .as_login(
                Login::new(
                    Some(&format!("{ROOT}:{t}")),
                    Box::new(treasury::operators::login::Scripted::new([PASSWORD])),
                ),
                &["operators", "add", name, "--role", "viewer"],
            )
            .await
            .unwrap_err();
        assert!(err.contains(why), "{name:?}: {err}");
    }
    assert_eq!(w.store.operators().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvals_need_two_accounts_and_the_owner_or_a_look_alike_is_refused() {
    let w = World::new().await;
    // The owner is written with a Cyrillic о and a zero-width space.
    let run = w
        .create(
            "occ-1",
            with_approval(ngn(dec!(1000)), 2, "\u{043E}l\u{200B}u"),
        )
        .await;
    let id = run.as_str();
    let (ada, bola) = (
        account(&w.store, &w.clock, "ada", Role::Approver).await,
        account(&w.store, &w.clock, "bola", Role::Approver).await,
    );
    let olu = account(&w.store, &w.clock, "olu", Role::Approver).await;
    let (ta, ta2, tb, to) = (
        token(&w.store, &w.clock, &ada).await,
        token(&w.store, &w.clock, &ada).await,
        token(&w.store, &w.clock, &bola).await,
        token(&w.store, &w.clock, &olu).await,
    );
    // No login, a wrong token, a token under another name: refused, nothing recorded.
    let err = w
        .as_login(prompted(&[]), &["runs", "approve", id])
        .await
        .unwrap_err();
    assert!(err.contains("operator name is needed"), "{err}");
    let err = w
        .as_login(by_token("ada", "tro_forged"), &["runs", "approve", id])
        .await
        .unwrap_err();
    assert!(
        err.contains("not a live token") && !err.contains("tro_forged"),
        "{err}"
    );
    let err = w
        .as_login(by_token("bola", &ta), &["runs", "approve", id])
        .await
        .unwrap_err();
    assert!(err.contains("not a live token"), "{err}");
    let err = w
        .as_login(by_token("olu", &to), &["runs", "approve", id])
        .await
        .unwrap_err();
    assert!(err.contains("owner"), "{err}");
    // One account counts once, even through two of its tokens.
    let out = w
        .as_login(by_token("ada", &ta), &["runs", "approve", id])
        .await
        .unwrap();
    assert!(out.contains("1 of 2"), "{out}");
    let err = w
        .as_login(by_token("ada", &ta2), &["runs", "approve", id])
        .await
        .unwrap_err();
    assert!(err.contains("already approved"), "{err}");
    assert_eq!(w.run(&run).await.state, RunState::AwaitingApproval);
    // A second account releases it, and the audit names both accounts.
    let out = w
        .as_login(by_token("bola", &tb), &["runs", "approve", id])
        .await
        .unwrap();
    assert!(out.contains("approved") && out.contains("due now"), "{out}");
    let audit = w.store.audit_entries(None, Some(id)).await.unwrap();
    let actors: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "run.approved")
        .map(|e| e.actor.as_str())
        .collect();
    assert_eq!(actors, ["operator:ada", "operator:bola"]);
    assert_eq!(w.run(&run).await.state, RunState::Created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_bound_what_each_account_may_do() {
    let w = World::new().await;
    let id = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 1, "olu"))
        .await;
    let viewer = account(&w.store, &w.clock, "vera", Role::Viewer).await;
    let operator = account(&w.store, &w.clock, "otto", Role::Operator).await;
    let (tv, to) = (
        token(&w.store, &w.clock, &viewer).await,
        token(&w.store, &w.clock, &operator).await,
    );
    let err = w
        .as_login(by_token("vera", &tv), &["halt", "--job", "vendor-payout"])
        .await
        .unwrap_err();
    assert!(err.contains("needs the operator role"), "{err}");
    let err = w
        .as_login(by_token("otto", &to), &["runs", "approve", id.as_str()])
        .await
        .unwrap_err();
    assert!(err.contains("needs the approver role"), "{err}");
    let out = w
        .as_login(by_token("otto", &to), &["runs", "cancel", id.as_str()])
        .await
        .unwrap();
    assert!(out.contains("no money moved"), "{out}");
    let err = w
        .as_login(by_token("otto", &to), &["operators", "disable", "vera"])
        .await
        .unwrap_err();
    assert!(err.contains("needs the admin role"), "{err}");
    // Reading needs no login.
    w.as_login(prompted(&[]), &["runs", "list"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_minted_only_by_its_own_account_and_dies_with_a_change() {
    let w = World::new().await;
    let root = account(&w.store, &w.clock, ROOT, Role::Admin).await;
    let troot = token(&w.store, &w.clock, &root).await;
    account(&w.store, &w.clock, "ada", Role::Approver).await;
    // The admin cannot mint ada's token: it takes ada's password.
    let err = w
        .as_login(
            Login::new(
                Some(&format!("{ROOT}:{troot}")),
                Box::new(treasury::operators::login::Scripted::new([
                    PASSWORD.replace('c', "k")
                ])),
            ),
            &["operators", "token", "ada"],
        )
        .await
        .unwrap_err();
    assert!(err.contains("wrong operator name or password"), "{err}");
    // Ada mints her own; it works, and is shown once.
    let out = w
        .as_login(prompted(&[PASSWORD]), &["operators", "token", "ada"])
        .await
        .unwrap();
    let minted = out
        .rsplit_once("TREASURY_OPERATOR_AUTH=ada:")
        .unwrap()
        .1
        .trim()
        .to_string();
    assert!(minted.starts_with("tro_"), "{out}");
    w.as_login(by_token("ada", &minted), &["halt"])
        .await
        .unwrap();
    assert!(
        !w.store
            .audit_entries(None, None)
            .await
            .unwrap()
            .iter()
            .any(|e| e.payload.to_string().contains(&minted))
    );
    // Disabled: the token stops working; enabled again, it stays dead.
    w.as_login(by_token(ROOT, &troot), &["operators", "disable", "ada"])
        .await
        .unwrap();
    let err = w
        .as_login(by_token("ada", &minted), &["resume"])
        .await
        .unwrap_err();
    assert!(err.contains("not a live token"), "{err}");
    w.as_login(by_token(ROOT, &troot), &["operators", "enable", "ada"])
        .await
        .unwrap();
    let err = w
        .as_login(by_token("ada", &minted), &["resume"])
        .await
        .unwrap_err();
    assert!(err.contains("not a live token"), "{err}");
    // A role change ends a token too.
    let ada = account(&w.store, &w.clock, "ada", Role::Approver).await;
    let fresh = token(&w.store, &w.clock, &ada).await;
    w.as_login(
        by_token(ROOT, &troot),
        &["operators", "role", "ada", "operator"],
    )
    .await
    .unwrap();
    let err = w
        .as_login(by_token("ada", &fresh), &["resume"])
        .await
        .unwrap_err();
    assert!(err.contains("not a live token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_password_is_one_time_and_five_wrong_passwords_lock_the_account() {
    let w = World::new().await;
    let id = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 1, "olu"))
        .await;
    let root = account(&w.store, &w.clock, ROOT, Role::Admin).await;
    let troot = token(&w.store, &w.clock, &root).await;
    account(&w.store, &w.clock, "ada", Role::Approver).await;
    let out = w
        .as_login(by_token(ROOT, &troot), &["operators", "passwd", "ada"])
        .await
        .unwrap();
    let once = out.lines().nth(1).unwrap().trim().to_string();
    // The one-time password signs in, but may not approve until it is changed.
    let err = w
        .as_login(prompted(&["ada", &once]), &["runs", "approve", id.as_str()])
        .await
        .unwrap_err();
    assert!(err.contains("one-time password"), "{err}");
    w.as_login(
        prompted(&["ada", &once, "ada's own new password"]),
        &["operators", "passwd", "ada"],
    )
    .await
    .unwrap();
    let out = w
        .as_login(
            prompted(&["ada", "ada's own new password"]),
            &["runs", "approve", id.as_str()],
        )
        .await
        .unwrap();
    assert!(out.contains("due now"), "{out}");
    // Five wrong passwords lock the account; the right one then fails too.
    for _ in 0..5 {
        let err = w
            .as_login(prompted(&["ada", "not the password"]), &["halts"])
            .await;
        let _ = err;
        let err = w
            .as_login(
                prompted(&["ada", "not the password"]),
                &["halt", "--job", "vendor-payout"],
            )
            .await
            .unwrap_err();
        if err.contains("locked") {
            break;
        }
        assert!(err.contains("wrong operator name or password"), "{err}");
    }
    let a = account(&w.store, &w.clock, "ada", Role::Approver).await;
    assert!(a.locked, "five failures lock the account");
    let err = w
        .as_login(
            prompted(&["ada", "ada's own new password"]),
            &["halt", "--job", "vendor-payout"],
        )
        .await
        .unwrap_err();
    assert!(err.contains("locked"), "{err}");
    let audit = w.store.audit_entries(None, None).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "operator.locked")
            .count(),
        1
    );
    w.as_login(by_token(ROOT, &troot), &["operators", "enable", "ada"])
        .await
        .unwrap();
    w.as_login(
        prompted(&["ada", "ada's own new password"]),
        &["halt", "--job", "vendor-payout"],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn treasury_run_refuses_to_start_while_a_jobs_owner_is_not_an_account() {
    let t = crate::backends::TestStore::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("treasury.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"{}\"\n\n[busha]\nissuer_url = \"http://127.0.0.1:1\"\napi_url = \"http://127.0.0.1:1\"\nclient_id = \"treasury-test\"\nredirect_uri = \"http://127.0.0.1:1/cb\"\n\n[[grants]]\nalias = \"acme-treasury\"\nprovider = \"busha\"\nscopes = [\"balances:read\", \"quotes:write\", \"quotes:read\", \"transfers:write\", \"transfers:read\", \"recipients:read\", \"recipients:write\"]\n",
            t.url
        ),
    )
    .unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::copy("jobs/vendor-weekly.toml", jobs.join("vendor-weekly.toml")).unwrap();
    let clock = treasury::clock::Clock::system();
    let start = || async {
        let argv = [
            "treasury",
            "--config",
            config.to_str().unwrap(),
            "run",
            "--jobs",
            jobs.to_str().unwrap(),
        ];
        let cli = <treasury::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        // Already cancelled: a worker that does start stops at once.
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();
        let mut out = Vec::new();
        treasury::cli::run_as(cli, clock.clone(), stop, prompted(&[]), &mut out)
            .await
            .map_err(|e| e.to_string())
    };
    let err = start().await.unwrap_err();
    assert!(
        err.contains("job vendor-weekly names owner \"finance-lead\"")
            && err.contains("not an operator account"),
        "{err}"
    );
    // Once the owner is an account, the check passes.
    account(&t.store, &clock, "finance-lead", Role::Viewer).await;
    let after = start().await;
    assert!(
        after.as_ref().err().is_none_or(|e| !e.contains("owner")),
        "{after:?}"
    );
}

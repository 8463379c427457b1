//! The `treasury` CLI end to end, in-process, from a config file and the environment:
//! `grants refresh|rekey|revoke|list`, and `connect` refusing to start without a
//! usable master key or with an unreachable issuer.
//!
//! These tests set environment variables. nextest runs every test in a process of its
//! own; under `cargo test` they serialise on [`ENV`], and no other test reads these.

use std::sync::Arc;

use base64::Engine;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use treasury::cli::{Cli, run};
use treasury::grants::{GrantStatus, Keyring};
use treasury::sandbox::LedgerEvent;

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, CLIENT_SECRET, World};
use crate::grants_logs::settings_text;

/// Held by every test here while it changes the environment.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn key(seed: u8) -> String {
    // A fixed key per seed that looks random (a counting pattern is refused as weak).
    let bytes = <sha2::Sha256 as sha2::Digest>::digest([seed]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn set_env(name: &str, value: Option<&str>) {
    // SAFETY: nextest gives this test a process of its own, and under `cargo test` the
    // tests that touch these variables hold `ENV`; no other code reads them meanwhile.
    unsafe {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

/// `treasury <args>` as the operator account `ops`, logged in through
/// `TREASURY_OPERATOR_AUTH` as a person would.
async fn treasury(w: &World, config: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let ops = crate::operators_world::account(
        &w.store(),
        &w.clock,
        "ops",
        treasury::operators::Role::Operator,
    )
    .await;
    let token = crate::operators_world::token(&w.store(), &w.clock, &ops).await;
    set_env("TREASURY_OPERATOR_AUTH", Some(&format!("ops:{token}")));
    let mut argv = vec!["treasury", "--config", config.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    run(cli, w.clock.clone(), CancellationToken::new(), &mut out)
        .await
        .map(|()| String::from_utf8(out).unwrap())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refreshes_rekeys_revokes_and_lists_from_config_and_environment() {
    // Arrange: a grant sealed under master key v1, and the CLI's config and environment.
    let _env = ENV.lock().await;
    let (k1, k2) = (key(3), key(200));
    let mut w = World::start(TestStore::sqlite().await).await;
    w.keys = Arc::new(Keyring::parse(&k1).unwrap());
    let grant = w.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("treasury.toml");
    std::fs::write(&config, settings_text(&w)).unwrap();
    set_env("TREASURY_BUSHA_CLIENT_SECRET", Some(CLIENT_SECRET));
    set_env("TREASURY_MASTER_KEY", Some(&k1));

    // `grants refresh`: one rotation, and no token printed.
    let out = treasury(&w, &config, &["grants", "refresh", ALIAS])
        .await
        .unwrap();
    assert!(
        out.starts_with("refreshed acme: the access token is valid until"),
        "{out}"
    );
    assert_eq!(w.refreshes(), 1);

    // `grants rekey` after rotating the master key to v2.
    set_env("TREASURY_MASTER_KEY", Some(&format!("v2:{k2},v1:{k1}")));
    let out = treasury(&w, &config, &["grants", "rekey"]).await.unwrap();
    assert!(
        out.contains("re-encrypted 1 grant(s) under master key v2"),
        "{out}"
    );
    assert_eq!(
        w.store()
            .grant(&grant.id)
            .await
            .unwrap()
            .unwrap()
            .key_version,
        2
    );

    // `grants revoke` with only v2 left: Busha ends the family; the grant is revoked.
    set_env("TREASURY_MASTER_KEY", Some(&format!("v2:{k2}")));
    let out = treasury(&w, &config, &["grants", "revoke", ALIAS])
        .await
        .unwrap();
    assert!(out.starts_with("revoked acme"), "{out}");
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::FamilyRevoked { .. })),
        1
    );
    let out = treasury(&w, &config, &["grants", "list"]).await.unwrap();
    assert!(
        out.starts_with("!! REVOKED acme: revoked by operator:ops"),
        "{out}"
    );
    let shown = treasury(&w, &config, &["grants", "show", ALIAS, "--json"])
        .await
        .unwrap();
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["usable"], false);
    let g = w.custodian().grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn treasury_connect_refuses_to_start_without_a_usable_master_key_or_issuer() {
    let _env = ENV.lock().await;
    let w = World::start(TestStore::sqlite().await).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("treasury.toml");
    std::fs::write(&config, settings_text(&w)).unwrap();
    set_env("TREASURY_BUSHA_CLIENT_SECRET", Some(CLIENT_SECRET));
    let connect = ["connect", ALIAS, "--no-browser"];

    // Missing.
    set_env("TREASURY_MASTER_KEY", None);
    let err = treasury(&w, &config, &connect).await.unwrap_err();
    assert!(err.contains("TREASURY_MASTER_KEY is not set"), "{err}");

    // Weak (one byte value repeated), and never echoed.
    let weak = base64::engine::general_purpose::STANDARD.encode([0x5a; 32]);
    set_env("TREASURY_MASTER_KEY", Some(&weak));
    let err = treasury(&w, &config, &connect).await.unwrap_err();
    assert!(err.contains("weak") && !err.contains(&weak), "{err}");

    // Short.
    let short = base64::engine::general_purpose::STANDARD.encode(&key(1).as_bytes()[..20]);
    set_env("TREASURY_MASTER_KEY", Some(&short));
    let err = treasury(&w, &config, &connect).await.unwrap_err();
    assert!(err.contains("must be exactly 32 random bytes"), "{err}");

    // A good key, but the issuer does not answer.
    set_env("TREASURY_MASTER_KEY", Some(&key(9)));
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = settings_text(&w).replace(
        &format!("issuer_url = \"{}\"", w.sb.issuer()),
        &format!("issuer_url = \"http://127.0.0.1:{dead}\""),
    );
    std::fs::write(&config, text).unwrap();
    let err = treasury(&w, &config, &connect).await.unwrap_err();
    assert!(
        err.contains("cannot read OIDC discovery from the issuer"),
        "{err}"
    );

    // A missing client secret is named, too.
    set_env("TREASURY_BUSHA_CLIENT_SECRET", None);
    let err = treasury(&w, &config, &connect).await.unwrap_err();
    assert!(
        err.contains("TREASURY_BUSHA_CLIENT_SECRET is not set"),
        "{err}"
    );
    assert!(w.store().grants().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_rekey_with_a_wrong_master_key_fails_naming_the_grant_and_never_says_current() {
    // Arrange: a grant sealed under v1 = k1, and a CLI given a valid but wrong v1.
    let _env = ENV.lock().await;
    let (k1, wrong) = (key(3), key(150));
    let mut w = World::start(TestStore::sqlite().await).await;
    w.keys = Arc::new(Keyring::parse(&k1).unwrap());
    let grant = w.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("treasury.toml");
    std::fs::write(&config, settings_text(&w)).unwrap();
    set_env("TREASURY_MASTER_KEY", Some(&wrong));

    // Act
    let err = treasury(&w, &config, &["grants", "rekey"])
        .await
        .unwrap_err();

    // Assert: a failure that names the grant and its version; nothing claimed current.
    assert!(
        err.starts_with("rekey failed: 1 grant(s) do not open"),
        "{err}"
    );
    assert!(
        err.contains(&format!("grant {ALIAS} is sealed under master key v1")),
        "{err}"
    );
    assert!(
        !err.contains("already current") && !err.contains(&wrong),
        "{err}"
    );
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(row.key_version, 1);

    // The right key: success, and the grant is current.
    set_env("TREASURY_MASTER_KEY", Some(&k1));
    let out = treasury(&w, &config, &["grants", "rekey"]).await.unwrap();
    assert!(out.contains("1 already current"), "{out}");
}

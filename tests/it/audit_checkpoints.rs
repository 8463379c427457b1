//! Signed audit checkpoints: a cut tail and a rewrite with recomputed hashes fail
//! `audit verify --checkpoints` on both backends while an untouched store passes; the
//! README's openssl commands verify a checkpoint; two checkpointers never fork the
//! chain; the worker refuses to start on a chain that lost a checkpointed head.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::{Digest, Sha256};
use treasury::audit::{AuditEntry, GENESIS, NewAuditEntry};
use treasury::checkpoints::key::{SIGNING_KEY_ENV, parse_signing_key, public_key_pem};
use treasury::checkpoints::{Checkpointer, Folder, Made, checkpointer_at_start};
use treasury::clock::Clock;
use treasury::config::AuditSettings;
use treasury::store::{Backend, Store};

use crate::audit_cli::{config_for, treasury};
use crate::backends::TestStore;

/// One fixed, strong test key (every test that sets the variable sets this value).
fn key_b64() -> String {
    STANDARD.encode(Sha256::digest(b"treasury audit checkpoint test key"))
}

fn set_key_env() {
    // Safety: every test sets the same value, so a concurrent reader sees it either way.
    unsafe { std::env::set_var(SIGNING_KEY_ENV, key_b64()) };
}

async fn append(store: &Store, n: usize) {
    for i in 0..n {
        store
            .append_audit(
                chrono::Utc::now(),
                NewAuditEntry::new("worker:w", "run.step", json!({ "amount": "10.50", "i": i }))
                    .run("run_1"),
            )
            .await
            .unwrap();
    }
}

fn checkpointer(store: &Store, dir: &std::path::Path, holder: &str) -> Checkpointer {
    let key = parse_signing_key(&key_b64()).unwrap();
    Checkpointer::new(
        store.clone(),
        Folder::new(dir),
        key,
        Clock::system(),
        holder,
    )
}

async fn make(cp: &Checkpointer) -> u64 {
    match cp.make().await.unwrap() {
        Made::New(c) => c.checkpoint.number,
        other => panic!("expected a new checkpoint, got {other:?}"),
    }
}

/// A store with 15 entries and checkpoints at entries 10 and 15; the CLI's config,
/// the folder, and the public key's PEM file.
struct Checkpointed {
    t: TestStore,
    _config_dir: tempfile::TempDir,
    config: std::path::PathBuf,
    folder: tempfile::TempDir,
    pem: std::path::PathBuf,
}

impl Checkpointed {
    async fn new(t: TestStore) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let cp = checkpointer(&t.store, folder.path(), "worker:a");
        append(&t.store, 10).await;
        assert_eq!(make(&cp).await, 1);
        append(&t.store, 5).await;
        assert_eq!(make(&cp).await, 2);
        let pem = folder.path().join("audit.pub.pem");
        std::fs::write(&pem, public_key_pem(&cp.public_key())).unwrap();
        let (config_dir, config) = config_for(&t.url);
        Self {
            t,
            _config_dir: config_dir,
            config,
            folder,
            pem,
        }
    }

    async fn verify(&self, extra: &[&str]) -> Result<String, String> {
        let dir = self.folder.path().to_str().unwrap();
        let pem = self.pem.to_str().unwrap();
        let mut args = vec!["audit", "verify", "--checkpoints", dir, "--public-key", pem];
        args.extend_from_slice(extra);
        treasury(&self.config, &args).await
    }

    /// A connection that bypasses the application, with the append-only triggers gone.
    async fn admin(&self) -> sqlx::AnyPool {
        let admin = sqlx::AnyPool::connect(&self.t.url).await.unwrap();
        let drops: &[&str] = match self.t.store.backend() {
            Backend::Sqlite => &[
                "DROP TRIGGER audit_log_no_update",
                "DROP TRIGGER audit_log_no_delete",
            ],
            Backend::Postgres => &["DROP TRIGGER audit_log_no_change ON audit_log"],
        };
        for d in drops {
            sqlx::query(*d).execute(&admin).await.unwrap();
        }
        admin
    }
}

async fn an_untouched_store_verifies_and_a_cut_tail_fails(t: TestStore) {
    let c = Checkpointed::new(t).await;
    let ok = c.verify(&[]).await.unwrap();
    assert!(
        ok.starts_with("audit chain verified (15 entries") && ok.contains("2 signed checkpoints"),
        "{ok}"
    );
    // The tail is cut: entries 13..15 go, and the rest still chains perfectly.
    let admin = c.admin().await;
    sqlx::query("DELETE FROM audit_log WHERE seq > 12")
        .execute(&admin)
        .await
        .unwrap();
    assert!(treasury(&c.config, &["audit", "verify"]).await.is_ok());
    let err = c.verify(&[]).await.unwrap_err();
    assert!(
        err.contains("checkpoint 2") && err.contains("truncated"),
        "{err}"
    );
    let err = c.verify(&["--since-checkpoint"]).await.unwrap_err();
    assert!(err.contains("truncated"), "{err}");
}

async fn a_chain_rewritten_with_recomputed_hashes_fails(t: TestStore) {
    let c = Checkpointed::new(t).await;
    assert!(c.verify(&[]).await.is_ok());
    // Every entry rewritten, one amount changed, every hash recomputed.
    let admin = c.admin().await;
    sqlx::query("DELETE FROM audit_log")
        .execute(&admin)
        .await
        .unwrap();
    let mut prev = GENESIS.to_string();
    for seq in 1..=15i64 {
        let amount = if seq == 3 { "9000.00" } else { "10.50" };
        let e = AuditEntry::chain(
            seq,
            chrono::Utc::now(),
            NewAuditEntry::new(
                "worker:w",
                "run.step",
                json!({ "amount": amount, "i": seq }),
            )
            .run("run_1"),
            &prev,
        );
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, actor, action, run_id, job_id, grant_id, payload, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $8)",
        )
        .bind(e.seq)
        .bind(e.at.timestamp_millis())
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.run_id)
        .bind(treasury::audit::canonical_json(&e.payload))
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(&admin)
        .await
        .unwrap();
        prev = e.hash;
    }
    assert!(treasury(&c.config, &["audit", "verify"]).await.is_ok());
    let err = c.verify(&[]).await.unwrap_err();
    assert!(
        err.contains("checkpoint 1") && err.contains("rewritten"),
        "{err}"
    );
    let err = c.verify(&["--since-checkpoint"]).await.unwrap_err();
    assert!(err.contains("rewritten"), "{err}");
}

async fn since_checkpoint_reads_only_the_entries_after_the_last_checkpoint(t: TestStore) {
    let c = Checkpointed::new(t).await;
    append(&c.t.store, 4).await;
    let ok = c.verify(&["--since-checkpoint"]).await.unwrap();
    assert!(
        ok.contains("4 entries after checkpoint 2 (entry 15)") && ok.contains("head 19"),
        "{ok}"
    );
    // An edit after the last checkpoint is found by the incremental check too.
    let admin = c.admin().await;
    sqlx::query(r#"UPDATE audit_log SET payload = '{"amount":"1","i":2}' WHERE seq = 18"#)
        .execute(&admin)
        .await
        .unwrap();
    let err = c.verify(&["--since-checkpoint"]).await.unwrap_err();
    assert!(err.contains("entry 18"), "{err}");
}

async fn the_worker_refuses_to_start_on_a_chain_that_lost_a_checkpointed_head(t: TestStore) {
    set_key_env();
    let c = Checkpointed::new(t).await;
    let settings = AuditSettings {
        checkpoints: Some(c.folder.path().to_path_buf()),
        ..AuditSettings::default()
    };
    let clock = Clock::system();
    assert!(
        checkpointer_at_start(&settings, &c.t.store, &clock, "worker:b")
            .await
            .unwrap()
            .is_some()
    );
    let admin = c.admin().await;
    sqlx::query("DELETE FROM audit_log WHERE seq > 14")
        .execute(&admin)
        .await
        .unwrap();
    let err = checkpointer_at_start(&settings, &c.t.store, &clock, "worker:b")
        .await
        .err()
        .expect("the start must be refused");
    assert!(
        err.contains("refusing to start") && err.contains("truncated"),
        "{err}"
    );
}

async fn two_checkpointers_take_turns_and_never_fork_the_chain(t: TestStore) {
    let folder = tempfile::tempdir().unwrap();
    let other = t.reopen().await;
    let a = checkpointer(&t.store, folder.path(), "worker:a");
    let b = checkpointer(&other, folder.path(), "worker:b");
    // While one holds the lease, the other makes nothing.
    let held = t
        .store
        .take_checkpoint_lease("worker:a", chrono::Utc::now(), chrono::Duration::minutes(1))
        .await
        .unwrap()
        .unwrap();
    append(&t.store, 3).await;
    assert_eq!(b.make().await.unwrap(), Made::Busy);
    t.store.release_checkpoint_lease(&held).await.unwrap();
    // Both race, round after round, with new entries between rounds.
    for _ in 0..8 {
        append(&t.store, 2).await;
        let (ra, rb) = tokio::join!(a.make(), b.make());
        let made: Vec<_> = [ra.unwrap(), rb.unwrap()]
            .into_iter()
            .filter(|m| matches!(m, Made::New(_)))
            .collect();
        assert!(made.len() <= 1, "two checkpoints of one head: {made:?}");
        if made.is_empty() {
            // Both met the other's lease; one of them tries again alone.
            assert!(matches!(a.make().await.unwrap(), Made::New(_)));
        }
    }
    let all = Folder::new(folder.path())
        .read_all(&a.public_key())
        .expect("one unbroken chain of checkpoints");
    assert_eq!(all.len(), 8);
    assert_eq!(all.last().unwrap().checkpoint.head_seq, 19);
}

crate::on_both_backends!(
    an_untouched_store_verifies_and_a_cut_tail_fails,
    a_chain_rewritten_with_recomputed_hashes_fails,
    since_checkpoint_reads_only_the_entries_after_the_last_checkpoint,
    the_worker_refuses_to_start_on_a_chain_that_lost_a_checkpointed_head,
    two_checkpointers_take_turns_and_never_fork_the_chain,
);

/// The `sh` block the README marks `checkpoint-openssl`.
fn readme_openssl_block() -> String {
    let readme = include_str!("../../README.md");
    let after = readme
        .split("<!-- checkpoint-openssl")
        .nth(1)
        .expect("the README marks its openssl block");
    let body = after.split("```sh\n").nth(1).expect("a sh block follows");
    body.split("```").next().unwrap().to_string()
}

fn run_readme_block(dir: &std::path::Path, n: u64) -> std::process::Output {
    std::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(readme_openssl_block())
        .env("N", n.to_string())
        .current_dir(dir)
        .output()
        .expect("bash runs (openssl must be installed: this test never skips)")
}

#[tokio::test]
async fn the_readmes_openssl_commands_verify_a_checkpoint_and_its_link() {
    let t = TestStore::sqlite().await;
    let folder = tempfile::tempdir().unwrap();
    let cp = checkpointer(&t.store, folder.path(), "worker:a");
    append(&t.store, 2).await;
    make(&cp).await;
    append(&t.store, 2).await;
    make(&cp).await;
    std::fs::write(
        folder.path().join("audit.pub.pem"),
        public_key_pem(&cp.public_key()),
    )
    .unwrap();

    let ok = run_readme_block(folder.path(), 2);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("Signature Verified Successfully"),
        "{stdout}"
    );
    assert!(
        stdout.contains("linked to checkpoint-000000000001"),
        "{stdout}"
    );

    // One byte changed in the message: openssl refuses it.
    let msg = folder.path().join("checkpoint-000000000002.msg");
    let edited = std::fs::read_to_string(&msg)
        .unwrap()
        .replace("entries: 4", "entries: 5");
    std::fs::remove_file(&msg).unwrap();
    std::fs::write(&msg, edited).unwrap();
    let bad = run_readme_block(folder.path(), 2);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("Signature Verification Failure"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
}

#[tokio::test]
async fn keygen_prints_a_strong_key_and_public_key_prints_its_pem() {
    let t = TestStore::sqlite().await;
    let (_dir, config) = config_for(&t.url);
    let a = treasury(&config, &["audit", "keygen"]).await.unwrap();
    let b = treasury(&config, &["audit", "keygen"]).await.unwrap();
    assert_ne!(a, b);
    parse_signing_key(a.trim()).expect("keygen prints a key the worker accepts");
    set_key_env();
    let pem = treasury(&config, &["audit", "public-key"]).await.unwrap();
    let want = public_key_pem(&parse_signing_key(&key_b64()).unwrap().verifying_key());
    assert_eq!(pem, want);
}

#[tokio::test]
async fn audit_checkpoint_makes_one_into_the_configured_folder_then_none_while_the_head_stands() {
    set_key_env();
    let t = TestStore::sqlite().await;
    append(&t.store, 3).await;
    let folder = tempfile::tempdir().unwrap();
    let (_dir, config) = config_for(&t.url);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[audit]\ncheckpoints = {:?}\ncheckpoint_every = \"1h\"\n",
        folder.path().display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let made = treasury(&config, &["audit", "checkpoint"]).await.unwrap();
    assert!(made.starts_with("checkpoint 1 made: entry 3 "), "{made}");
    assert!(folder.path().join("checkpoint-000000000001.sig").is_file());
    let again = treasury(&config, &["audit", "checkpoint"]).await.unwrap();
    assert!(again.contains("already covers the head"), "{again}");
    let ok = treasury(&config, &["audit", "verify", "--since-checkpoint"])
        .await
        .unwrap();
    assert!(ok.contains("0 entries after checkpoint 1"), "{ok}");
}

/// Waits until checkpoint `n` is in `dir`, failing after `within`.
async fn wait_for_checkpoint(dir: &std::path::Path, n: u64, within: std::time::Duration) {
    let file = Folder::new(dir).file(n, "msg");
    let start = std::time::Instant::now();
    while !file.is_file() {
        assert!(
            start.elapsed() < within,
            "checkpoint {n} not made within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_running_checkpointer_signs_at_start_and_again_soon_after_a_halt() {
    let t = TestStore::sqlite().await;
    let folder = tempfile::tempdir().unwrap();
    append(&t.store, 3).await;
    let cp = checkpointer(&t.store, folder.path(), "worker:a");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let every = std::time::Duration::from_secs(3600);
    let task = tokio::spawn(treasury::checkpoints::run_checkpointer(
        cp,
        every,
        shutdown.clone(),
    ));
    wait_for_checkpoint(folder.path(), 1, std::time::Duration::from_secs(20)).await;
    // New entries alone wait for the schedule; a halt calls for a checkpoint at once.
    append(&t.store, 2).await;
    t.store
        .append_audit(
            chrono::Utc::now(),
            NewAuditEntry::new("operator:ops", "halt.on", json!({ "scope": "all" })),
        )
        .await
        .unwrap();
    wait_for_checkpoint(folder.path(), 2, std::time::Duration::from_secs(20)).await;
    shutdown.cancel();
    task.await.unwrap();
    let key = parse_signing_key(&key_b64()).unwrap().verifying_key();
    let all = Folder::new(folder.path()).read_all(&key).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].checkpoint.head_seq, 6);
}

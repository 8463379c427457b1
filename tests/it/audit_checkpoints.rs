//! Signed audit checkpoints against the store, on both backends: a cut tail and a
//! rewrite with recomputed hashes fail `audit verify --checkpoints` while an untouched
//! store passes; two checkpointers never fork the chain; the worker refuses to start on
//! a chain that lost a checkpointed head. (The tools around them: `audit_checkpoints_tools`.)

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
pub(crate) fn key_b64() -> String {
    STANDARD.encode(Sha256::digest(b"treasury audit checkpoint test key"))
}

pub(crate) fn set_key_env() {
    // Safety: every test sets the same value, so a concurrent reader sees it either way.
    unsafe { std::env::set_var(SIGNING_KEY_ENV, key_b64()) };
}

pub(crate) async fn append(store: &Store, n: usize) {
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

pub(crate) fn checkpointer(store: &Store, dir: &std::path::Path, holder: &str) -> Checkpointer {
    let key = parse_signing_key(&key_b64()).unwrap();
    Checkpointer::new(
        store.clone(),
        Folder::new(dir),
        key,
        Clock::system(),
        holder,
    )
}

pub(crate) async fn make(cp: &Checkpointer) -> u64 {
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

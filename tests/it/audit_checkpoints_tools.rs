//! The tools around signed audit checkpoints: the README's openssl commands verify one,
//! `audit keygen|public-key|checkpoint` on the CLI, and the checkpointer inside
//! `treasury run`.

use serde_json::json;
use treasury::audit::NewAuditEntry;
use treasury::checkpoints::Folder;
use treasury::checkpoints::key::{parse_signing_key, public_key_pem};

use crate::audit_checkpoints::{append, checkpointer, key_b64, make, set_key_env};
use crate::audit_cli::{config_for, treasury};
use crate::backends::TestStore;

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

//! `treasury audit verify|head|export` in-process, and reconciliation against Busha.

use std::sync::Arc;
use treasury::provider::Unleased;

use chrono::Duration;
use clap::Parser;
use rust_decimal::dec;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use treasury::audit::NewAuditEntry;
use treasury::cli::{Cli, run};
use treasury::clock::Clock;
use treasury::money::Currency;
use treasury::pipeline::{Executed, Pipeline, PipelineConfig, TokenSource};
use treasury::runs::{Run, RunState};

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, World};
use crate::pipeline_grants::{connect_for_payouts, payout};

pub(crate) fn config_for(store_url: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("treasury.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
url = "{store_url}"

[busha]
issuer_url = "http://127.0.0.1:9/"
api_url = "http://127.0.0.1:9/"
client_id = "unused"
redirect_uri = "http://localhost:8787/oauth/callback"
"#
        ),
    )
    .unwrap();
    (dir, path)
}

pub(crate) async fn treasury(config: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["treasury", "--config", config.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    run(cli, Clock::system(), CancellationToken::new(), &mut out)
        .await
        .map(|()| String::from_utf8(out).unwrap())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn audit_verify_passes_then_names_the_tampered_entry_and_head_and_export_agree() {
    let t = TestStore::sqlite().await;
    for i in 1..=4 {
        t.store
            .append_audit(
                chrono::Utc::now(),
                NewAuditEntry::new(
                    "worker:w",
                    "run.quote.locked",
                    json!({ "amount": "100", "i": i }),
                )
                .run("run_x"),
            )
            .await
            .unwrap();
    }
    let (_dir, config) = config_for(&t.url);
    let verified = treasury(&config, &["audit", "verify"]).await.unwrap();
    assert!(
        verified.starts_with("audit chain verified (4 entries"),
        "{verified}"
    );
    let head = treasury(&config, &["audit", "head"]).await.unwrap();
    let (seq, hash) = head.trim().split_once(' ').unwrap();
    assert_eq!(seq, "4");
    assert!(
        treasury(&config, &["audit", "verify", "--expect-head", hash])
            .await
            .is_ok()
    );
    assert!(
        treasury(
            &config,
            &["audit", "verify", "--expect-head", &"0".repeat(64)]
        )
        .await
        .is_err()
    );
    let jsonl = treasury(&config, &["audit", "export", "--format", "jsonl"])
        .await
        .unwrap();
    assert_eq!(jsonl.lines().count(), 4);
    let last: serde_json::Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert_eq!(last["hash"], hash);
    let csv = treasury(
        &config,
        &[
            "audit",
            "export",
            "--format",
            "csv",
            "--since",
            "2000-01-01",
        ],
    )
    .await
    .unwrap();
    assert_eq!(csv.lines().count(), 5, "header and four rows");

    // An admin edits entry 3's amount behind the application's back.
    let admin = sqlx::AnyPool::connect(&t.url).await.unwrap();
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query(r#"UPDATE audit_log SET payload = '{"amount":"900","i":3}' WHERE seq = 3"#)
        .execute(&admin)
        .await
        .unwrap();
    let err = treasury(&config, &["audit", "verify"]).await.unwrap_err();
    assert!(err.contains("entry 3"), "{err}");
}

#[tokio::test]
async fn reconcile_is_clean_for_our_own_runs_and_flags_a_transfer_no_run_made() {
    let w = World::start(TestStore::sqlite().await).await;
    connect_for_payouts(&w).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(100));
    w.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    let custodian = Arc::new(w.custodian());
    let store = w.store();
    let since = w.clock.now() - Duration::minutes(1);
    let run = Run::new("job", "occ", "v1", payout(), false, w.clock.now());
    store
        .create_run(&run, NewAuditEntry::new("test", "run.created", json!({})))
        .await
        .unwrap();
    let p = Pipeline::new(
        store.clone(),
        w.api.clone(),
        custodian.clone(),
        w.clock.clone(),
        PipelineConfig::default(),
    );
    loop {
        match p.execute(&run.id).await.unwrap() {
            Executed::Finished(state) => {
                assert_eq!(state, RunState::Settled);
                break;
            }
            Executed::Waiting(until) => w.clock.set(until),
            other => panic!("{other:?}"),
        }
    }
    let grants = vec![ALIAS.to_string()];
    let clean = treasury::reconcile::reconcile(&store, &w.api, custodian.as_ref(), &grants, since)
        .await
        .unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!((clean.transfers_checked, clean.runs_checked), (1, 1));

    // Someone moves money on the account outside the worker.
    let token = TokenSource::access_token(custodian.as_ref(), ALIAS)
        .await
        .unwrap();
    let recipient = store
        .get_run(&run.id)
        .await
        .unwrap()
        .unwrap()
        .recipient_id
        .unwrap();
    let quote = w
        .api
        .create_quote(
            &token,
            &treasury::provider::busha::NewQuote {
                source_currency: Currency::new("USDT").unwrap(),
                target_currency: Currency::new("NGN").unwrap(),
                amount: treasury::provider::busha::QuoteAmount::Source(dec!(5)),
                reference: None,
                pay_out: Some(treasury::provider::busha::PayOut::BankTransfer {
                    recipient_id: recipient,
                }),
            },
            &Unleased,
        )
        .await
        .unwrap()
        .value;
    let stray = w
        .api
        .create_transfer(&token, &quote.id, &Unleased)
        .await
        .unwrap()
        .value;
    let dirty = treasury::reconcile::reconcile(&store, &w.api, custodian.as_ref(), &grants, since)
        .await
        .unwrap();
    assert!(!dirty.is_clean());
    assert_eq!(dirty.unknown_transfers.len(), 1);
    assert_eq!(dirty.unknown_transfers[0].transfer_id, stray.id);
    assert!(dirty.disagreements.is_empty());
}

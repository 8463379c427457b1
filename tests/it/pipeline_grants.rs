//! The pipeline on a real connected grant: tokens come from the custodian, expire and
//! refresh mid-job, and a customer who disconnects holds the run without moving money.

use std::sync::Arc;

use chrono::Duration;
use rust_decimal::dec;
use treasury::config::GrantSpec;
use treasury::grants::{Connected, Connector};
use treasury::money::Currency;
use treasury::pipeline::{Executed, Pipeline, PipelineConfig};
use treasury::runs::{Amount, PayoutSpec, RateGuard, RecipientSpec, Run, RunState};
use treasury::sandbox::LedgerEvent;

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, Browser, World, callback_params};

pub const PAYOUT_SCOPES: [&str; 9] = [
    "openid",
    "offline_access",
    "balances:read",
    "quotes:read",
    "quotes:write",
    "transfers:read",
    "transfers:write",
    "recipients:read",
    "recipients:write",
];

/// Connects `acme` through the real flow with every scope a payout needs.
pub async fn connect_for_payouts(w: &World) {
    let specs = vec![GrantSpec {
        alias: ALIAS.into(),
        provider: "busha".into(),
        scopes: PAYOUT_SCOPES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }];
    let connector = Connector::new(
        w.store(),
        w.keys.clone(),
        w.oauth.clone(),
        w.clock.clone(),
        specs,
    );
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    let _: Connected = connector
        .complete(&callback_params(&callback), "test")
        .await
        .unwrap();
}

/// 10 USDT to the sandbox's known NGN account.
pub fn payout() -> PayoutSpec {
    PayoutSpec {
        grant: ALIAS.into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount: Amount::Source { amount: dec!(10) },
        recipient: RecipientSpec::Bank {
            bank_code: "000013".into(),
            account_number: "0123456789".into(),
            expected_name: "Ada Lovelace".into(),
        },
        guard: RateGuard::default(),
        max_requotes: 1,
        limits: Default::default(),
        approval: None,
        sweep: None,
    }
}

async fn drive(p: &Pipeline, w: &World, run: &Run) -> Executed {
    for _ in 0..50 {
        match p.execute(&run.id).await.unwrap() {
            Executed::Waiting(until) if until <= w.clock.now() + Duration::minutes(10) => {
                w.clock.set(until)
            }
            other => return other,
        }
    }
    panic!("no end");
}

#[tokio::test]
async fn a_payout_on_a_connected_grant_refreshes_an_expired_token_once_and_settles() {
    let w = World::start(TestStore::sqlite().await).await;
    connect_for_payouts(&w).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(100));
    w.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    let store = w.store();
    let p = Pipeline::new(
        store.clone(),
        w.api.clone(),
        Arc::new(w.custodian()),
        w.clock.clone(),
        PipelineConfig::default(),
    );
    // Two hours on: the access token from the connect has expired.
    w.advance(Duration::hours(2));
    let run = Run::new("job", "occ-1", "v1", payout(), false, w.clock.now());
    store
        .create_run(
            &run,
            treasury::audit::NewAuditEntry::new("test", "run.created", serde_json::json!({})),
        )
        .await
        .unwrap();
    assert_eq!(
        drive(&p, &w, &run).await,
        Executed::Finished(RunState::Settled)
    );
    assert_eq!(w.refreshes(), 1, "one refresh for the expired token");
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::TransferCreated { .. })),
        1
    );
    assert!(store.verify_audit(None).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_disconnected_customer_holds_the_run_and_moves_no_money() {
    let w = World::start(TestStore::sqlite().await).await;
    connect_for_payouts(&w).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(100));
    w.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    w.sb.disconnect_user(&w.user.id);
    w.advance(Duration::hours(2));
    let store = w.store();
    let p = Pipeline::new(
        store.clone(),
        w.api.clone(),
        Arc::new(w.custodian()),
        w.clock.clone(),
        PipelineConfig::default(),
    );
    let run = Run::new("job", "occ-1", "v1", payout(), false, w.clock.now());
    store
        .create_run(
            &run,
            treasury::audit::NewAuditEntry::new("test", "run.created", serde_json::json!({})),
        )
        .await
        .unwrap();
    let outcome = p.execute(&run.id).await.unwrap();
    assert!(matches!(outcome, Executed::Waiting(_)), "{outcome:?}");
    let held = store.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(held.state, RunState::Created);
    let reason = held.reason.unwrap();
    assert!(
        reason.contains("disconnected") && reason.contains("treasury connect acme"),
        "{reason}"
    );
    assert_eq!(
        w.count(|e| matches!(
            e,
            LedgerEvent::QuoteCreated { .. } | LedgerEvent::RecipientCreated { .. }
        )),
        0
    );
}

//! Runs that cannot be rewritten behind the worker's back (issue 16 §1): a pending
//! run's amount or payee edited directly in the store, on both backends, moves no
//! money at any money-moving step; the run goes to `needs_human` with an alert, and
//! `audit verify` names the run. A `run.approved` appended in the store with a correct
//! chain hash but no valid MAC moves nothing either, and `audit verify` names it.

use std::sync::Arc;

use chrono::Duration;
use rust_decimal::dec;
use serde_json::json;
use treasury::alerts::{AlertKind, alert_for};
use treasury::audit::NewAuditEntry;
use treasury::pipeline::{CrashPoints, Executed, PipelineError};
use treasury::runs::{Amount, PayoutSpec, RecipientSpec, RunId, RunState};

use crate::audit_cli::{config_for, treasury};
use crate::backends::TestStore;
use crate::pipeline_world::{BANK, World, fast, ngn};

/// Another account, the one a tamperer would like paid.
const MALLORY: &str = "9876543210";

/// How many calls of one kind the sandbox's ledger holds.
type Counter = fn(&World) -> usize;

/// Abandons the execution right before `point` (a money-moving call).
struct StopBefore(&'static str);

impl CrashPoints for StopBefore {
    fn crash_here(&self, point: &str) -> bool {
        point == self.0
    }
}

/// A connection of the store's own, as a database administrator has.
async fn admin(url: &str) -> sqlx::AnyConnection {
    <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap()
}

/// Rewrites the run's spec in the store as a database administrator could.
async fn tamper(w: &World, id: &RunId, edit: impl FnOnce(&mut PayoutSpec)) {
    let mut spec = w.run(id).await.spec;
    edit(&mut spec);
    let mut conn = admin(&w.url).await;
    let n = sqlx::query("UPDATE runs SET spec = $1 WHERE id = $2")
        .bind(serde_json::to_string(&spec).unwrap())
        .bind(id.as_str())
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
}

fn raise_amount(spec: &mut PayoutSpec) {
    spec.amount = Amount::Target {
        amount: dec!(1500000),
    };
}

fn swap_payee(spec: &mut PayoutSpec) {
    spec.recipient = RecipientSpec::Bank {
        bank_code: BANK.into(),
        account_number: MALLORY.into(),
        expected_name: "Mallory Moneybags".into(),
    };
}

/// The run stopped for a person, said why, was audited with an alert, and `audit
/// verify` (the CLI) names it while the chain itself still verifies.
async fn assert_stopped_and_named(w: &World, id: &RunId) {
    let run = w.run(id).await;
    assert_eq!(run.state, RunState::NeedsHuman);
    let reason = run.reason.unwrap();
    assert!(
        reason.contains("does not match its seal") && reason.contains("no money was moved"),
        "{reason}"
    );
    let entries = w
        .store
        .audit_entries(None, Some(id.as_str()))
        .await
        .unwrap();
    let broken = entries
        .iter()
        .find(|e| e.action == "run.seal_broken")
        .expect("the broken seal is audited");
    let alert = alert_for(broken).expect("a broken seal raises an alert");
    assert_eq!(alert.kind, AlertKind::SealBroken);
    assert_eq!(alert.subject, id.as_str());

    w.audit_verifies().await;
    let (_dir, config) = config_for(&w.url);
    let err = treasury(&config, &["audit", "verify"]).await.unwrap_err();
    assert!(err.contains("seals broken"), "{err}");
    assert!(err.contains(&format!("run {id}: its spec")), "{err}");
    assert!(!err.contains(MALLORY), "an account number in full: {err}");
}

/// A pending run, edited in the store by `edit`, is executed: nothing reaches Busha,
/// and the run is stopped and named.
async fn an_edited_pending_run_moves_no_money(
    w: &World,
    occurrence: &str,
    edit: fn(&mut PayoutSpec),
) {
    let p = w.pipeline("w");
    let id = w.create(occurrence, ngn(dec!(10000))).await;

    tamper(w, &id, edit).await;
    assert_eq!(
        p.execute(&id).await.unwrap(),
        Executed::Finished(RunState::NeedsHuman)
    );

    assert_eq!((w.recipients(), w.quotes(), w.transfers()), (0, 0, 0));
    assert_stopped_and_named(w, &id).await;
}

async fn an_amount_edited_in_the_store_moves_no_money(ts: TestStore) {
    let w = World::with(fast(), Some(&ts)).await;
    an_edited_pending_run_moves_no_money(&w, "edited-amount", raise_amount).await;
}

async fn a_payee_swapped_in_the_store_is_never_created_nor_paid(ts: TestStore) {
    let w = World::with(fast(), Some(&ts)).await;
    w.sb.add_bank_account(BANK, MALLORY, "MALLORY MONEYBAGS");
    an_edited_pending_run_moves_no_money(&w, "swapped-payee", swap_payee).await;
}

/// No money-moving call is left out: the run is edited while it stands right before
/// each of the three (a crash there leaves it so), and none of them is then made.
async fn an_edit_before_any_money_moving_step_stops_that_step(ts: TestStore) {
    let w = World::with(fast(), Some(&ts)).await;
    let steps: [(&str, Counter); 3] = [
        ("before POST /v1/recipients", World::recipients),
        ("before POST /v1/quotes", World::quotes),
        ("before POST /v1/transfers", World::transfers),
    ];
    for (n, (point, made)) in steps.into_iter().enumerate() {
        // A new account each time, so that the recipient step has one to create.
        let account = format!("55500000{n:02}");
        w.sb.add_bank_account(BANK, &account, "ADA LOVELACE");
        let mut spec = ngn(dec!(10000));
        spec.recipient = RecipientSpec::Bank {
            bank_code: BANK.into(),
            account_number: account,
            expected_name: "Ada Lovelace".into(),
        };
        let id = w.create(&format!("step-{n}"), spec).await;
        let crashing = w
            .pipeline("w1")
            .with_crash_points(Arc::new(StopBefore(point)));
        let stopped = crashing.execute(&id).await;
        assert!(
            matches!(&stopped, Err(PipelineError::Crashed(p)) if p == point),
            "{point}: {stopped:?}"
        );
        let before = made(&w);

        tamper(&w, &id, raise_amount).await;
        let p = w.pipeline("w2");
        w.clock.advance(p.takeover_after() + Duration::seconds(1));
        assert_eq!(
            w.drive(&p, &id).await,
            RunState::NeedsHuman,
            "{point}: the edited run must stop"
        );
        assert_eq!(
            made(&w),
            before,
            "{point}: the call was made after the edit"
        );
        assert_eq!(w.transfers(), 0, "{point}: money moved");
        let reason = w.run(&id).await.reason.unwrap();
        assert!(
            reason.contains("does not match its seal"),
            "{point}: {reason}"
        );
    }
}

/// The recipient a run resolved is sealed too: another recipient's id written into
/// `runs.recipient_id` before the quote lock (the spec untouched) moves no money.
async fn a_recipient_id_swapped_after_resolution_is_never_quoted_nor_paid(ts: TestStore) {
    let w = World::with(fast(), Some(&ts)).await;
    w.sb.add_bank_account(BANK, MALLORY, "MALLORY MONEYBAGS");
    // Mallory's recipient exists on the customer's account (made by another run).
    let mut theirs = ngn(dec!(10000));
    theirs.recipient = RecipientSpec::Bank {
        bank_code: BANK.into(),
        account_number: MALLORY.into(),
        expected_name: "Mallory Moneybags".into(),
    };
    let other = w.create("mallory", theirs).await;
    assert_eq!(w.drive(&w.pipeline("w0"), &other).await, RunState::Settled);
    let mallory_recipient = w.run(&other).await.recipient_id.unwrap();
    let transfers_before = w.transfers();

    let id = w.create("ours", ngn(dec!(10000))).await;
    let crashing = w
        .pipeline("w1")
        .with_crash_points(Arc::new(StopBefore("before POST /v1/quotes")));
    assert!(matches!(
        crashing.execute(&id).await,
        Err(PipelineError::Crashed(_))
    ));
    let quotes_before = w.quotes();
    let mut conn = admin(&w.url).await;
    sqlx::query("UPDATE runs SET recipient_id = $1 WHERE id = $2")
        .bind(&mallory_recipient)
        .bind(id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();

    let p = w.pipeline("w2");
    w.clock.advance(p.takeover_after() + Duration::seconds(1));
    assert_eq!(w.drive(&p, &id).await, RunState::NeedsHuman);
    assert_eq!(
        w.quotes(),
        quotes_before,
        "a quote was locked for the swapped recipient"
    );
    assert_eq!(w.transfers(), transfers_before, "money moved");
    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("does not match its seal") && reason.contains("sealed recipient"),
        "{reason}"
    );
}

crate::on_both_backends!(
    a_recipient_id_swapped_after_resolution_is_never_quoted_nor_paid,
    an_amount_edited_in_the_store_moves_no_money,
    a_payee_swapped_in_the_store_is_never_created_nor_paid,
    an_edit_before_any_money_moving_step_stops_that_step,
);

#[tokio::test]
async fn a_forged_approval_moves_nothing_and_verify_names_the_entry() {
    use crate::guards_world::{World, with_approval};
    let w = World::new().await;
    let p = w.pipeline("w1");
    let id = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 1, "olu"))
        .await;
    assert_eq!(p.execute(&id).await.unwrap(), Executed::AwaitingApproval);

    // A well-formed approval appended straight into the store: its chain hash is right
    // (the store computes it), but it carries no MAC; and the row is released by hand.
    let forged = w
        .store
        .append_audit(
            w.clock.now(),
            NewAuditEntry::new(
                "operator:mallory",
                "run.approved",
                json!({ "approver": "mallory", "approvals": 1, "needed": 1, "approvers": ["mallory"], "released": true }),
            )
            .run(id.as_str()),
        )
        .await
        .unwrap();
    let mut conn = admin(&w.ts.url).await;
    sqlx::query("UPDATE runs SET state = 'created' WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();

    assert_eq!(
        p.execute(&id).await.unwrap(),
        Executed::Finished(RunState::NeedsHuman)
    );
    assert_eq!(w.money_moves(), (0, 0, 0));
    let reason = w.store.get_run(&id).await.unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("needs 1 approval(s) and the audit chain proves 0")
            && reason.contains(&format!("seq {}", forged.seq)),
        "{reason}"
    );

    assert!(w.store.verify_audit(None).await.unwrap().is_ok());
    let (_dir, config) = config_for(&w.ts.url);
    let err = treasury(&config, &["audit", "verify"]).await.unwrap_err();
    assert!(
        err.contains(&format!("entry {} (run.approved of run {id})", forged.seq)),
        "{err}"
    );
}

#[tokio::test]
async fn a_genuine_approval_is_trusted_and_verify_passes() {
    use crate::guards_world::{World, with_approval};
    let w = World::new().await;
    let p = w.pipeline("w1");
    let id = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 1, "olu"))
        .await;
    let ada = treasury::guards::Operator::parse("ada").unwrap();
    let approved = w.store.approve_run(&id, &ada, w.clock.now()).await.unwrap();
    assert!(approved.unwrap().released);
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);

    let (_dir, config) = config_for(&w.ts.url);
    let out = treasury(&config, &["audit", "verify"]).await.unwrap();
    assert!(
        out.contains("seals verified (1 runs match their seals"),
        "{out}"
    );
}

#[tokio::test]
async fn a_halt_deleted_in_the_store_still_stops_money_until_resumed() {
    use crate::guards_world::World;
    use treasury::guards::{HaltScope, Operator};
    let w = World::new().await;
    let p = w.pipeline("w1");
    let id = w.create("occ-1", ngn(dec!(1000))).await;
    let ops = Operator::parse("ops").unwrap();
    assert!(
        w.store
            .set_halt(&HaltScope::All, Some("incident"), &ops, w.clock.now())
            .await
            .unwrap()
    );
    let mut conn = admin(&w.ts.url).await;
    sqlx::query("DELETE FROM halts")
        .execute(&mut conn)
        .await
        .unwrap();

    let Executed::Waiting(until) = p.execute(&id).await.unwrap() else {
        panic!("the run must be held");
    };
    let reason = w.store.get_run(&id).await.unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("halted by ops") && reason.contains("incident"),
        "{reason}"
    );
    assert_eq!(w.money_moves(), (0, 0, 0));

    // A forged halt.off (no MAC) lifts nothing; a real resume does.
    w.store
        .append_audit(
            w.clock.now(),
            NewAuditEntry::new(
                "operator:mallory",
                "halt.off",
                json!({ "scope": "all", "target": "" }),
            ),
        )
        .await
        .unwrap();
    w.clock.set(until);
    let Executed::Waiting(later) = p.execute(&id).await.unwrap() else {
        panic!("a forged halt.off must lift nothing");
    };
    assert!(later > until);
    assert_eq!(w.money_moves(), (0, 0, 0));
    assert!(
        w.store
            .clear_halt(&HaltScope::All, &ops, w.clock.now())
            .await
            .unwrap()
    );
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
}

//! `treasury runs …`, `halt`, `resume` and `halts` in-process, against the sandbox:
//! list/show JSON with the timeline and audit sequence numbers (account numbers
//! masked), approve/reject/cancel/retry by command, and batch approval with its
//! summary, then the occurrence's settlement summary.

use rust_decimal::dec;
use serde_json::Value;
use treasury::runs::{RecipientSpec, RunState};

use crate::guards_world::{BANK, World, ngn, with_approval, with_job_cap};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_and_show_json_parse_and_show_the_timeline_with_audit_sequence_numbers() {
    // Arrange: a run approved by command and settled.
    let w = World::new().await;
    let id = w
        .create(
            "occ-1",
            with_job_cap(with_approval(ngn(dec!(150000)), 1, "olu"), dec!(1000)),
        )
        .await;
    let out = w.ok(&["runs", "approve", id.as_str(), "--as", "ada"]).await;
    assert!(out.contains("approved") && out.contains("due now"), "{out}");
    assert_eq!(w.drive(&w.pipeline("w1"), &id).await, RunState::Settled);

    // Act
    let listed = w
        .ok(&["runs", "list", "--json", "--state", "settled"])
        .await;
    let shown = w.ok(&["runs", "show", id.as_str(), "--json"]).await;
    let text = w.ok(&["runs", "show", id.as_str()]).await;

    // Assert: list
    let list: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["state"], "settled");
    let none: Value =
        serde_json::from_str(&w.ok(&["runs", "list", "--json", "--state", "failed"]).await)
            .unwrap();
    assert_eq!(none.as_array().unwrap().len(), 0);

    // Assert: show, with every step, its ids, rate, fees, amounts and sequence numbers.
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["run"]["state"], "settled");
    assert_eq!(v["approvals"][0]["approver"], "ada");
    let timeline = v["timeline"].as_array().unwrap();
    let seqs: Vec<i64> = timeline
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
    let step = |action: &str| {
        timeline
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action} missing from the timeline"))
    };
    for action in [
        "run.created",
        "run.approved",
        "run.recipient.resolved",
        "run.cap.reserved",
        "run.quote.intent",
        "run.quote.locked",
        "run.transfer.submitted",
        "run.settled",
    ] {
        let _ = step(action);
    }
    assert!(
        action_absent(timeline, "run.cap.released"),
        "a settled run keeps its reservation for 24 hours"
    );
    assert_eq!(v["reservation"]["amount"], "93.8125");
    let locked = &step("run.quote.locked")["details"];
    assert_eq!(locked["rate"], "1600");
    assert_eq!(locked["target_amount"], "150000");
    assert_eq!(locked["source_amount"], "93.8125");
    assert!(locked["quote_id"].as_str().unwrap().starts_with("QUO_"));
    assert!(locked["fees"].is_string());
    let submitted = &step("run.transfer.submitted")["details"];
    assert!(submitted["transfer_id"].is_string());
    // Account numbers are masked everywhere.
    for output in [&listed, &shown, &text] {
        assert!(
            !output.contains("0123456789"),
            "unmasked account in {output}"
        );
    }
    assert!(shown.contains("******6789"));
    // The text timeline names sequence numbers, rate and ids too.
    let line = text
        .lines()
        .find(|l| l.contains("run.quote.locked"))
        .unwrap();
    let seq = step("run.quote.locked")["seq"].as_i64().unwrap();
    assert!(
        line.contains(&format!("#{seq}")) && line.contains("rate=1600"),
        "{line}"
    );
}

fn action_absent(timeline: &[Value], action: &str) -> bool {
    !timeline.iter().any(|e| e["action"] == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_reject_cancel_and_retry_work_by_command() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let two = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 2, "olu"))
        .await;
    let err = w
        .refused(&["runs", "approve", two.as_str(), "--as", "olu"])
        .await;
    assert!(err.contains("owner"), "{err}");
    let out = w
        .ok(&["runs", "approve", two.as_str(), "--as", "ada"])
        .await;
    assert!(out.contains("1 of 2"), "{out}");
    let err = w
        .refused(&["runs", "approve", two.as_str(), "--as", "ada"])
        .await;
    assert!(err.contains("already approved"), "{err}");
    w.ok(&["runs", "approve", two.as_str(), "--as", "bola"])
        .await;
    assert_eq!(w.drive(&p, &two).await, RunState::Settled);

    let rejected = w
        .create("occ-2", with_approval(ngn(dec!(1000)), 1, "olu"))
        .await;
    w.ok(&[
        "runs",
        "reject",
        rejected.as_str(),
        "--as",
        "ada",
        "--reason",
        "duplicate invoice",
    ])
    .await;
    assert_eq!(w.run(&rejected).await.state, RunState::Cancelled);

    let cancelled = w.create("occ-3", ngn(dec!(1000))).await;
    let out = w
        .ok(&["runs", "cancel", cancelled.as_str(), "--as", "ops"])
        .await;
    assert!(out.contains("no money moved"), "{out}");
    let err = w
        .refused(&["runs", "cancel", two.as_str(), "--as", "ops"])
        .await;
    assert!(err.contains("settled"), "{err}");

    w.sb.push_transfer_outcome(treasury::sandbox::TransferOutcome::FundsRefunded);
    let failed = w.create("occ-4", ngn(dec!(1000))).await;
    assert_eq!(w.drive(&p, &failed).await, RunState::Failed);
    let out = w
        .ok(&["runs", "retry", failed.as_str(), "--as", "ops"])
        .await;
    assert!(out.contains("new reference"), "{out}");
    assert_eq!(w.drive(&p, &failed).await, RunState::Settled);

    assert_eq!(
        w.transfers(),
        3,
        "two settled and one refunded; none for the others"
    );
    let err = w.refused(&["runs", "show", "run_nope"]).await;
    assert!(err.contains("not a run id"), "{err}");
    w.audit_verifies().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_occurrence_is_approved_at_once_after_a_summary_and_summarised_after() {
    // Arrange: last month's salary run paid Ada; this month adds Bola and Chidi. Chidi's
    // account carries another name, so that run will fail.
    let w = World::new().await;
    let p = w.pipeline("w1");
    w.sb.add_bank_account(BANK, "2222222222", "BOLA ADE");
    w.sb.add_bank_account(BANK, "3333333333", "SOMEONE ELSE");
    let payee = |account: &str, name: &str| {
        let mut s = with_approval(ngn(dec!(1000)), 1, "olu");
        s.recipient = RecipientSpec::Bank {
            bank_code: BANK.into(),
            account_number: account.into(),
            expected_name: name.into(),
        };
        s
    };
    let earlier = w
        .create_in(
            "salaries",
            "2026-01-31T09:00:00Z/ada",
            payee("0123456789", "Ada Lovelace"),
        )
        .await;
    w.ok(&["runs", "approve", earlier.as_str(), "--as", "kemi"])
        .await;
    assert_eq!(w.drive(&p, &earlier).await, RunState::Settled);
    let occ = "2026-02-28T09:00:00Z";
    let mut batch = Vec::new();
    for (key, account, name) in [
        ("ada", "0123456789", "Ada Lovelace"),
        ("bola", "2222222222", "Bola Ade"),
        ("chidi", "3333333333", "Chidi Obi"),
    ] {
        batch.push(
            w.create_in("salaries", &format!("{occ}/{key}"), payee(account, name))
                .await,
        );
    }
    let target = format!("salaries:{occ}");

    // Act 1: without --yes (and no terminal) the summary is shown and nothing approved.
    let (preview, result) = w
        .treasury(&["runs", "approve", "--occurrence", &target, "--as", "kemi"])
        .await;
    assert!(result.unwrap_err().contains("not confirmed"));
    assert!(preview.contains("3 run(s) awaiting approval"), "{preview}");
    assert!(preview.contains("total: 3000 NGN (target)"), "{preview}");
    assert!(preview.contains("new payees (2)"), "{preview}");
    assert!(
        preview.contains("NEW Bola Ade (******2222")
            && preview.contains("NEW Chidi Obi (******3333"),
        "{preview}"
    );
    assert!(!preview.contains("NEW Ada"), "{preview}");
    assert!(!preview.contains("2222222222"), "masked: {preview}");
    for id in &batch {
        assert_eq!(w.run(id).await.state, RunState::AwaitingApproval);
    }

    // Act 2: confirmed.
    let out = w
        .ok(&[
            "runs",
            "approve",
            "--occurrence",
            &target,
            "--as",
            "kemi",
            "--yes",
        ])
        .await;
    assert!(out.contains("3 run(s) now due"), "{out}");
    let mut states = Vec::new();
    for id in &batch {
        states.push(w.drive(&p, id).await);
    }
    assert_eq!(
        states,
        [RunState::Settled, RunState::Settled, RunState::Failed]
    );

    // Assert: the occurrence's summary, as text and JSON.
    let text = w.ok(&["runs", "summary", "salaries", occ]).await;
    assert!(text.contains("2 of 3 runs settled"), "{text}");
    assert!(text.contains("name enquiry mismatch"), "{text}");
    let v: Value =
        serde_json::from_str(&w.ok(&["runs", "summary", "salaries", occ, "--json"]).await).unwrap();
    assert_eq!(v["runs"], 3);
    assert_eq!(v["settled"], 2);
    assert_eq!(v["failed"].as_array().unwrap().len(), 1);
    assert_eq!(v["failed"][0]["id"], batch[2].as_str());
    assert!(
        v["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("mismatch")
    );
    assert_eq!(w.transfers(), 3, "last month's and two of this month's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_and_resume_by_command_are_persisted_audited_and_hold_runs() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    // The job has a run in the store: that is what makes its id known to `halt`.
    let id = w.create("occ-1", ngn(dec!(1000))).await;
    let out = w
        .ok(&[
            "halt",
            "--job",
            "vendor-payout",
            "--reason",
            "bank outage",
            "--as",
            "ops",
        ])
        .await;
    assert!(out.contains("halted job vendor-payout"), "{out}");
    let out = w
        .ok(&["halt", "--job", "vendor-payout", "--as", "ops"])
        .await;
    assert!(out.contains("already halted"), "{out}");
    let listed: Value = serde_json::from_str(&w.ok(&["halts", "--json"]).await).unwrap();
    assert_eq!(listed[0]["scope"], "job");
    assert_eq!(listed[0]["target"], "vendor-payout");
    assert_eq!(listed[0]["halted_by"], "ops");

    assert!(matches!(
        p.execute(&id).await.unwrap(),
        treasury::pipeline::Executed::Waiting(_)
    ));
    assert_eq!(w.money_moves(), (0, 0, 0));
    let shown = w.ok(&["runs", "show", id.as_str()]).await;
    assert!(
        shown.contains("bank outage") && shown.contains("run.held"),
        "{shown}"
    );

    let err = w.refused(&["resume", "--as", "ops"]).await;
    assert!(err.contains("everything is not halted"), "{err}");
    w.ok(&["resume", "--job", "vendor-payout", "--as", "kemi"])
        .await;
    assert_eq!(w.ok(&["halts"]).await.trim(), "nothing is halted");
    w.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);

    let log = w.store.audit_entries(None, None).await.unwrap();
    let flips: Vec<(String, String)> = log
        .iter()
        .filter(|e| e.action.starts_with("halt."))
        .map(|e| (e.action.clone(), e.actor.clone()))
        .collect();
    assert_eq!(
        flips,
        [
            ("halt.on".to_string(), "operator:ops".to_string()),
            ("halt.off".to_string(), "operator:kemi".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_names_the_payee_as_the_provider_reports_it_not_as_the_job_wrote_it() {
    // The job writes "Ada Lovelace"; Busha holds the account as "ADA LOVELACE".
    let w = World::new().await;
    let id = w.create("occ-name", ngn(dec!(1000))).await;
    let before = w.ok(&["runs", "show", id.as_str()]).await;
    assert!(
        before.contains("not yet confirmed by the provider"),
        "{before}"
    );

    assert_eq!(w.drive(&w.pipeline("w1"), &id).await, RunState::Settled);

    let text = w.ok(&["runs", "show", id.as_str()]).await;
    let payee = text
        .lines()
        .find(|l| l.trim_start().starts_with("payee:"))
        .unwrap_or_else(|| panic!("no payee line in {text}"));
    assert!(
        payee.contains("ADA LOVELACE (******6789 at bank 000013)"),
        "{payee}"
    );
    assert!(!payee.contains("Ada Lovelace"), "{payee}");
    let v: Value =
        serde_json::from_str(&w.ok(&["runs", "show", id.as_str(), "--json"]).await).unwrap();
    assert_eq!(v["run"]["recipient_name"], "ADA LOVELACE");
    assert_eq!(
        v["run"]["payee"],
        "ADA LOVELACE (******6789 at bank 000013)"
    );
}

//! Reconciliation against the sandbox, on SQLite and PostgreSQL: every transfer a run
//! ever held is the run's (a refund, `runs retry` and a second transfer is clean), two
//! runs claiming one transfer is a finding, and a server that repeats cursors, pages
//! without end, or lists an item we cannot read leaves the check incomplete (exit 3),
//! never endless and never a false alarm.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::dec;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use treasury::audit::NewAuditEntry;
use treasury::clock::Clock;
use treasury::guards::Operator;
use treasury::pipeline::{Executed, Pipeline, PipelineConfig, StaticTokens};
use treasury::provider::AccessToken;
use treasury::provider::busha::{BushaClient, BushaConfig, TransferFilter};
use treasury::provider::pacing::EndpointLimits;
use treasury::reconcile::{EXIT_FINDINGS, EXIT_UNCHECKED, Report, Scope, reconcile_until};
use treasury::runs::{Run, RunId, RunState};
use treasury::sandbox::{
    Fault, FaultKind, NewUser, OAuthClientConfig, RateLimits, Rewrite, Sandbox, SandboxConfig,
    TransferOutcome,
};
use treasury::store::{NewHeldTransfer, Store};

use crate::backends::TestStore;
use crate::guards_world::{ACCOUNT, BANK, GRANT, usdt};
use crate::on_both_backends;

on_both_backends!(
    a_transfer_refunded_before_a_retry_is_the_runs_own_and_reconcile_is_clean,
    a_transfer_two_runs_claim_is_a_finding,
    an_earlier_transfer_that_was_delivered_too_is_a_finding,
    reconcile_is_clean_after_a_refund_and_runs_retry_driven_by_the_pipeline_alone,
);

const CLIENT: &str = "reconcile-test";

struct World {
    sb: Sandbox,
    clock: Clock,
    ts: TestStore,
    token: AccessToken,
    api: BushaClient,
}

impl World {
    async fn start(ts: TestStore) -> World {
        let start = DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        let sb = Sandbox::start(SandboxConfig {
            rate_limits: RateLimits::busha().scaled(100),
            clock: clock.clone(),
            clients: vec![OAuthClientConfig::new(
                CLIENT,
                "secret",
                "http://localhost/cb",
            )],
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let user = sb.create_user(NewUser::new("ada").balance("USDT", dec!(10000)));
        sb.add_bank_account(BANK, ACCOUNT, "ADA LOVELACE");
        let scopes = [
            "balances:read",
            "quotes:read",
            "quotes:write",
            "transfers:read",
            "transfers:write",
            "recipients:read",
            "recipients:write",
        ];
        let token = AccessToken::new(sb.mint_tokens(CLIENT, &user.id, &scopes).access_token);
        let mut config = BushaConfig::new(sb.url());
        config.limits = EndpointLimits::busha().scaled(100);
        World {
            api: BushaClient::new(config).unwrap(),
            sb,
            clock,
            ts,
            token,
        }
    }

    fn store(&self) -> &Store {
        &self.ts.store
    }

    fn tokens(&self) -> StaticTokens {
        StaticTokens::new().with(GRANT, self.token.clone())
    }

    fn pipeline(&self) -> Pipeline {
        let tokens = Arc::new(self.tokens());
        Pipeline::new(
            self.store().clone(),
            self.api.clone(),
            tokens,
            self.clock.clone(),
            PipelineConfig::default(),
        )
    }

    async fn create(&self, occurrence: &str) -> RunId {
        let run = Run::new(
            "payout",
            occurrence,
            "v1",
            usdt(dec!(10)),
            false,
            self.clock.now(),
        );
        let entry = NewAuditEntry::new("test", "run.created", json!({})).run(run.id.as_str());
        assert!(self.store().create_run(&run, entry).await.unwrap());
        run.id
    }

    /// Executes until the run is final, recording each transfer it submits as held
    /// (through the store API, as the pipeline does for every transfer it submits or
    /// adopts) while the run is still in flight.
    async fn drive(&self, p: &Pipeline, id: &RunId) -> RunState {
        for _ in 0..200 {
            let executed = p.execute(id).await.unwrap();
            if self.run(id).await.state == RunState::TransferSubmitted {
                self.hold_current(id).await;
            }
            match executed {
                Executed::Finished(state) => return state,
                Executed::Waiting(until) => self.clock.set(until),
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("run {id} did not finish");
    }

    /// Executes until the run is final, recording nothing itself: whatever the store
    /// knows of the run's transfers, the pipeline recorded.
    async fn drive_alone(&self, p: &Pipeline, id: &RunId) -> RunState {
        for _ in 0..200 {
            match p.execute(id).await.unwrap() {
                Executed::Finished(state) => return state,
                Executed::Waiting(until) => self.clock.set(until),
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("run {id} did not finish");
    }

    /// Executes until the run has submitted its transfer (and holds it).
    async fn drive_to_submitted(&self, p: &Pipeline, id: &RunId) {
        for _ in 0..200 {
            match p.execute(id).await.unwrap() {
                Executed::Waiting(until) => self.clock.set(until),
                other => panic!("unexpected {other:?}"),
            }
            if self.run(id).await.state == RunState::TransferSubmitted {
                return self.hold_current(id).await;
            }
        }
        panic!("run {id} submitted no transfer");
    }

    async fn run(&self, id: &RunId) -> Run {
        self.store().get_run(id).await.unwrap().unwrap()
    }

    /// Records the run's current transfer as held, through the store API (what the
    /// pipeline does for every transfer it submits or adopts).
    async fn hold_current(&self, id: &RunId) {
        let (mut lease, row) = self
            .store()
            .acquire_run(id, "test", self.clock.now(), Duration::minutes(2))
            .await
            .unwrap()
            .expect("leasable");
        let held = NewHeldTransfer {
            transfer_id: row.transfer_id.clone().expect("a transfer"),
            quote_id: row.quote.as_ref().expect("a quote").id.clone(),
            how: "created".into(),
        };
        self.store()
            .save_run_holding(
                &mut lease,
                &row,
                Some(held),
                vec![],
                self.clock.now(),
                Duration::minutes(2),
            )
            .await
            .unwrap();
        self.store().release_run(&lease).await.unwrap();
    }

    async fn reconcile_within(&self, scope: &Scope) -> Report {
        let tokens = self.tokens();
        let shutdown = CancellationToken::new();
        let check = reconcile_until(self.store(), &self.api, &tokens, scope, &shutdown);
        // A check that pages for ever fails here instead of hanging the suite.
        tokio::time::timeout(StdDuration::from_secs(30), check)
            .await
            .expect("reconcile finished")
            .unwrap()
    }

    async fn reconcile(&self) -> Report {
        let since = self.clock.now() - Duration::days(1);
        self.reconcile_within(&Scope::new(vec![GRANT.into()], since))
            .await
    }

    fn transfer_requests(&self) -> usize {
        self.sb
            .requests()
            .iter()
            .filter(|r| r.endpoint == "GET /v1/transfers")
            .count()
    }
}

async fn a_transfer_refunded_before_a_retry_is_the_runs_own_and_reconcile_is_clean(ts: TestStore) {
    // Arrange: the first transfer is refunded, the run fails, an operator retries it
    // and the second transfer settles. Each transfer is recorded as the run's.
    let w = World::start(ts).await;
    let p = w.pipeline();
    w.sb.push_transfer_outcome(TransferOutcome::FundsRefunded);
    let id = w.create("occ-1").await;
    assert_eq!(w.drive(&p, &id).await, RunState::Failed);
    let first = w.run(&id).await.transfer_id.unwrap();
    w.store()
        .retry_run(&id, &Operator::parse("ops").unwrap(), w.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    let second = w.run(&id).await.transfer_id.unwrap();
    assert_ne!(first, second);
    let held: Vec<String> = w
        .store()
        .transfers_of_run(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.transfer_id)
        .collect();
    assert_eq!(held, [first, second]);

    // Act
    let report = w.reconcile().await;

    // Assert: both transfers are the run's; nothing unknown, nothing unchecked.
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.transfers_checked, report.runs_checked), (2, 1));
    assert_eq!(report.exit_code(), 0);
}

/// The same case as above with nothing recorded by the test: it passes once the
/// pipeline records every transfer it submits or adopts (`Store::save_run_holding`).
async fn reconcile_is_clean_after_a_refund_and_runs_retry_driven_by_the_pipeline_alone(
    ts: TestStore,
) {
    // Arrange: a refund, `runs retry`, a settled second transfer.
    let w = World::start(ts).await;
    let p = w.pipeline();
    w.sb.push_transfer_outcome(TransferOutcome::FundsRefunded);
    let id = w.create("occ-1").await;
    assert_eq!(w.drive_alone(&p, &id).await, RunState::Failed);
    w.store()
        .retry_run(&id, &Operator::parse("ops").unwrap(), w.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.drive_alone(&p, &id).await, RunState::Settled);

    // Act
    let report = w.reconcile().await;

    // Assert
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.transfers_checked, report.runs_checked), (2, 1));
    assert_eq!(report.exit_code(), 0);
}

async fn a_transfer_two_runs_claim_is_a_finding(ts: TestStore) {
    // Arrange: one run settles and holds its transfer; an edited row makes a second
    // run claim the same transfer id.
    let w = World::start(ts).await;
    let p = w.pipeline();
    let a = w.create("occ-a").await;
    assert_eq!(w.drive(&p, &a).await, RunState::Settled);
    let transfer = w.run(&a).await.transfer_id.unwrap();
    let b = w.create("occ-b").await;
    let admin = sqlx::AnyPool::connect(&w.ts.url).await.unwrap();
    sqlx::query("UPDATE runs SET transfer_id = $1 WHERE id = $2")
        .bind(&transfer)
        .bind(b.as_str())
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;

    // Act
    let report = w.reconcile().await;

    // Assert
    assert_eq!(report.shared_transfers.len(), 1, "{report:?}");
    let shared = &report.shared_transfers[0];
    assert_eq!(shared.transfer_id, transfer);
    let mut runs = vec![a.to_string(), b.to_string()];
    runs.sort();
    assert_eq!(shared.run_ids, runs);
    assert_eq!(report.exit_code(), EXIT_FINDINGS);
}

async fn an_earlier_transfer_that_was_delivered_too_is_a_finding(ts: TestStore) {
    // Arrange: the run submits and holds a transfer; then it is made to hold a second
    // one, for the same payee, as its current transfer. Both are delivered: the payee
    // was paid twice.
    let w = World::start(ts).await;
    let p = w.pipeline();
    let id = w.create("occ-1").await;
    w.drive_to_submitted(&p, &id).await;
    let run = w.run(&id).await;
    let first = run.transfer_id.clone().unwrap();
    let quote = w
        .api
        .create_quote(
            &w.token,
            &treasury::provider::busha::NewQuote {
                source_currency: run.spec.source_currency.clone(),
                target_currency: run.spec.target_currency.clone(),
                amount: treasury::provider::busha::QuoteAmount::Source(dec!(10)),
                reference: None,
                pay_out: Some(treasury::provider::busha::PayOut::BankTransfer {
                    recipient_id: run.recipient_id.clone().unwrap(),
                }),
            },
            &treasury::provider::Unleased,
        )
        .await
        .unwrap()
        .value;
    let again = w
        .api
        .create_transfer(&w.token, &quote.id, &treasury::provider::Unleased)
        .await
        .unwrap()
        .value;
    let (mut lease, mut row) = w
        .store()
        .acquire_run(&id, "test", w.clock.now(), Duration::minutes(2))
        .await
        .unwrap()
        .expect("leasable");
    row.transfer_id = Some(again.id.clone());
    row.quote.as_mut().unwrap().id = quote.id.clone();
    let held = NewHeldTransfer {
        transfer_id: again.id.clone(),
        quote_id: quote.id.clone(),
        how: "adopted".into(),
    };
    let now = w.clock.now();
    w.store()
        .save_run_holding(
            &mut lease,
            &row,
            Some(held),
            vec![],
            now,
            Duration::minutes(2),
        )
        .await
        .unwrap();
    w.store().release_run(&lease).await.unwrap();
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);

    // Act
    let report = w.reconcile().await;

    // Assert: the earlier transfer is named as delivered too, and only that.
    assert!(report.unknown_transfers.is_empty(), "{report:?}");
    assert_eq!(report.disagreements.len(), 1, "{report:?}");
    let twice = &report.disagreements[0];
    assert_eq!(twice.transfer_id.as_deref(), Some(first.as_str()));
    assert!(twice.problem.contains("paid twice"), "{}", twice.problem);
    assert_eq!(report.exit_code(), EXIT_FINDINGS);
}

/// Two settled runs, so that a page of one transfer has a real next cursor.
async fn two_settled_runs(w: &World) -> String {
    let p = w.pipeline();
    for occ in ["occ-1", "occ-2"] {
        let id = w.create(occ).await;
        assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    }
    let page = w
        .api
        .list_transfers(
            &w.token,
            &TransferFilter {
                limit: Some(1),
                ..TransferFilter::default()
            },
        )
        .await
        .unwrap()
        .value;
    page.next_cursor.expect("a second page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_repeats_its_next_cursor_is_not_paged_for_ever() {
    // Arrange: every page of transfers names the same (valid) next cursor.
    let w = World::start(TestStore::sqlite().await).await;
    let cursor = two_settled_runs(&w).await;
    let before = w.transfer_requests();
    w.sb.add_fault(Fault::new(
        "GET /v1/transfers",
        FaultKind::Rewrite(Rewrite::new("/pagination/next_cursor", json!(cursor))),
    ));

    // Act
    let report = w.reconcile().await;

    // Assert: two pages, then a stop that says why; incomplete, not a finding.
    assert_eq!(w.transfer_requests() - before, 2);
    assert!(!report.has_findings(), "{report:?}");
    assert_eq!(report.unchecked.len(), 1, "{report:?}");
    let why = &report.unchecked[0];
    assert!(
        why.contains(&format!("cursor {cursor:?} again")) && why.contains("GET /v1/transfers"),
        "{why}"
    );
    assert_eq!(report.exit_code(), EXIT_UNCHECKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_stops_at_its_bound_on_pages_and_says_so() {
    let w = World::start(TestStore::sqlite().await).await;
    let cursor = two_settled_runs(&w).await;
    w.sb.add_fault(Fault::new(
        "GET /v1/transfers",
        FaultKind::Rewrite(Rewrite::new("/pagination/next_cursor", json!(cursor))),
    ));
    let since = w.clock.now() - Duration::days(1);
    let scope = Scope {
        max_pages: 1,
        ..Scope::new(vec![GRANT.into()], since)
    };

    let report = w.reconcile_within(&scope).await;

    assert_eq!(report.unchecked.len(), 1, "{report:?}");
    assert!(
        report.unchecked[0].contains("more than 1 pages"),
        "{report:?}"
    );
    assert_eq!(report.exit_code(), EXIT_UNCHECKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_we_cannot_read_leaves_the_check_incomplete_but_the_rest_is_checked() {
    // Arrange: two runs settle; Busha lists the first item with a currency we cannot
    // read.
    let w = World::start(TestStore::sqlite().await).await;
    two_settled_runs(&w).await;
    let listed = w
        .api
        .list_transfers(&w.token, &TransferFilter::default())
        .await
        .unwrap()
        .value;
    let poisoned = listed.items[0].id.clone();
    w.sb.add_fault(Fault::new(
        "GET /v1/transfers",
        FaultKind::Rewrite(Rewrite::new("/data/0/source_currency", json!("USDT-TRC20"))),
    ));

    // Act
    let report = w.reconcile().await;

    // Assert: the readable transfer is checked; the other is named, unchecked; the
    // run that holds it raises no false "Busha does not list".
    assert_eq!(report.transfers_checked, 1, "{report:?}");
    assert!(!report.has_findings(), "{report:?}");
    assert_eq!(report.unchecked.len(), 1, "{report:?}");
    assert!(report.unchecked[0].contains(&poisoned), "{report:?}");
    assert_eq!(report.exit_code(), EXIT_UNCHECKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_reconcile_mid_page_and_says_how_far_it_got() {
    // Arrange: Busha takes 20 s to answer the listing.
    let w = World::start(TestStore::sqlite().await).await;
    w.sb.add_fault(Fault::new(
        "GET /v1/transfers",
        FaultKind::Latency(StdDuration::from_secs(20)),
    ));
    let shutdown = CancellationToken::new();
    let tokens = w.tokens();
    let since = w.clock.now() - Duration::days(1);
    let scope = Scope::new(vec![GRANT.into()], since);
    let check = reconcile_until(w.store(), &w.api, &tokens, &scope, &shutdown);
    let signal = async {
        // Lets the listing request go out first; if it has not, the signal lands
        // before it, which must stop the check just the same.
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        shutdown.cancel();
    };

    // Act
    let started = std::time::Instant::now();
    let (report, ()) = tokio::join!(check, signal);
    let report = report.unwrap();

    // Assert
    assert!(started.elapsed() < StdDuration::from_secs(10));
    let why = report.interrupted.clone().expect("interrupted");
    assert!(why.contains("before page 1 of grant acme"), "{why}");
    assert_eq!(report.exit_code(), EXIT_UNCHECKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_fails_names_the_status_and_request_id_and_is_unchecked() {
    let w = World::start(TestStore::sqlite().await).await;
    w.sb.add_fault(Fault::new("GET /v1/transfers", FaultKind::ServerError(503)));

    let report = w.reconcile().await;

    assert_eq!(report.unchecked.len(), 1, "{report:?}");
    let why = &report.unchecked[0];
    assert!(
        why.contains("GET /v1/transfers")
            && why.contains("HTTP 503")
            && why.contains("request id req_"),
        "{why}"
    );
    assert_eq!(report.exit_code(), EXIT_UNCHECKED);
}

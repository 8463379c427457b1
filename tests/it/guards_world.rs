//! The guards' test world: the sandbox, a store and pipelines gated by [`Guards`], all on
//! one clock, plus the `treasury` CLI run in-process against the same store. Counts
//! come from the sandbox's ledger.

use std::sync::Arc;

use clap::Parser;
use rust_decimal::{Decimal, dec};
use tokio_util::sync::CancellationToken;
use treasury::audit::NewAuditEntry;
use treasury::clock::Clock;
use treasury::guards::{Guards, GuardsConfig};
use treasury::money::Currency;
use treasury::pipeline::{Executed, Gate, Pipeline, PipelineConfig, StaticTokens};
use treasury::provider::AccessToken;
use treasury::provider::busha::{BushaClient, BushaConfig};
use treasury::provider::pacing::EndpointLimits;
use treasury::runs::{
    Amount, ApprovalRule, Limits, PayoutSpec, RateGuard, RecipientSpec, Run, RunId, RunState,
};
use treasury::sandbox::{
    LedgerEvent, NewUser, OAuthClientConfig, RateLimits, Sandbox, SandboxConfig,
};
use treasury::store::Store;

use crate::backends::TestStore;

pub const CLIENT: &str = "treasury-test";
/// Two aliases for one sandbox customer, so that a grant halt can spare one of them.
pub const GRANT: &str = "acme";
pub const OTHER_GRANT: &str = "acme-eu";
pub const JOB: &str = "vendor-payout";
pub const BANK: &str = "000013";
pub const ACCOUNT: &str = "0123456789";

pub struct World {
    pub sb: Sandbox,
    pub clock: Clock,
    pub store: Store,
    pub ts: TestStore,
    token: AccessToken,
    dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        let clock = Clock::system();
        let config = SandboxConfig {
            rate_limits: RateLimits::busha().scaled(100),
            clock: clock.clone(),
            clients: vec![OAuthClientConfig::new(
                CLIENT,
                "secret",
                "http://localhost/cb",
            )],
            ..SandboxConfig::default()
        };
        let sb = Sandbox::start(config).await.unwrap();
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
        let ts = TestStore::sqlite().await;
        World {
            sb,
            clock,
            store: ts.store.clone(),
            ts,
            token,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn guards(&self) -> Guards {
        self.guards_on(self.store.clone())
    }

    pub fn guards_on(&self, store: Store) -> Guards {
        Guards::with_config(store, self.clock.clone(), GuardsConfig::for_worker("test"))
    }

    /// A pipeline gated by the guards (pacing at 100 times Busha's limits, as the
    /// sandbox: these tests are about guards, not pacing).
    pub fn pipeline(&self, worker: &str) -> Pipeline {
        self.pipeline_with(worker, self.store.clone(), Arc::new(self.guards()))
    }

    pub fn pipeline_with(&self, worker: &str, store: Store, gate: Arc<dyn Gate>) -> Pipeline {
        let mut config = BushaConfig::new(self.sb.url());
        config.limits = EndpointLimits::busha().scaled(100);
        let busha = BushaClient::new(config).unwrap();
        let tokens = Arc::new(
            StaticTokens::new()
                .with(GRANT, self.token.clone())
                .with(OTHER_GRANT, self.token.clone()),
        );
        let cfg = PipelineConfig {
            worker_id: worker.into(),
            ..PipelineConfig::default()
        };
        Pipeline::new(store, busha, tokens, self.clock.clone(), cfg).with_gate(gate)
    }

    /// Creates a run of `job` for `occurrence`.
    pub async fn create_in(&self, job: &str, occurrence: &str, spec: PayoutSpec) -> RunId {
        let needs_approval = treasury::guards::needs_approval(&spec);
        let run = Run::new(
            job,
            occurrence,
            "v1",
            spec,
            needs_approval,
            self.clock.now(),
        );
        let entry = NewAuditEntry::new("scheduler:test", "run.created", serde_json::json!({}))
            .run(run.id.as_str())
            .job(job);
        assert!(self.store.create_run(&run, entry).await.unwrap());
        run.id
    }

    pub async fn create(&self, occurrence: &str, spec: PayoutSpec) -> RunId {
        self.create_in(JOB, occurrence, spec).await
    }

    /// Executes until the run is final, moving the clock to each wake-up time.
    pub async fn drive(&self, p: &Pipeline, id: &RunId) -> RunState {
        for _ in 0..200 {
            match p.execute(id).await.unwrap() {
                Executed::Finished(state) => return state,
                Executed::Waiting(until) => self.clock.set(until),
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("run {id} did not finish");
    }

    pub fn count(&self, pick: impl Fn(&LedgerEvent) -> bool) -> usize {
        self.sb.ledger().iter().filter(|e| pick(&e.event)).count()
    }
    pub fn transfers(&self) -> usize {
        self.count(|e| matches!(e, LedgerEvent::TransferCreated { .. }))
    }
    pub fn quotes(&self) -> usize {
        self.count(|e| matches!(e, LedgerEvent::QuoteCreated { .. }))
    }
    pub fn recipients(&self) -> usize {
        self.count(|e| matches!(e, LedgerEvent::RecipientCreated { .. }))
    }
    /// Every money-moving call Busha saw: recipients created, quotes, transfers.
    pub fn money_moves(&self) -> (usize, usize, usize) {
        (self.recipients(), self.quotes(), self.transfers())
    }
    /// The quote references Busha saw, in order.
    pub fn quote_references(&self) -> Vec<String> {
        self.sb
            .ledger()
            .iter()
            .filter_map(|e| match &e.event {
                LedgerEvent::QuoteCreated { reference, .. } => Some(reference.clone()),
                _ => None,
            })
            .collect()
    }

    pub async fn run(&self, id: &RunId) -> Run {
        self.store.get_run(id).await.unwrap().unwrap()
    }

    pub async fn actions(&self, id: &RunId) -> Vec<String> {
        self.store
            .audit_entries(None, Some(id.as_str()))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    pub async fn audit_verifies(&self) {
        self.store
            .verify_audit(None)
            .await
            .unwrap()
            .expect("the audit chain verifies");
    }

    /// Runs `treasury <args>` in-process on this world's store. Returns the output
    /// whether or not the command failed, and its error if it did.
    pub async fn treasury(&self, args: &[&str]) -> (String, Result<(), String>) {
        // `--as NAME` in a test's args: logged in as the account NAME.
        let (args, who) = crate::operators_world::split_as(args);
        let login = match who {
            Some(name) => crate::operators_world::login(&self.store, &self.clock, name).await,
            None => crate::operators_world::prompted(&[]),
        };
        self.treasury_with(login, &args).await
    }

    /// `treasury <args>` logged in with `login`.
    pub async fn treasury_with(
        &self,
        login: treasury::operators::Login,
        args: &[&str],
    ) -> (String, Result<(), String>) {
        let config = self.dir.path().join("treasury.toml");
        if !config.exists() {
            std::fs::write(
                &config,
                format!(
                    "[store]\nurl = \"{}\"\n\n[busha]\nissuer_url = \"{u}\"\napi_url = \"{u}\"\nclient_id = \"{CLIENT}\"\nredirect_uri = \"http://127.0.0.1:1/cb\"\n",
                    self.ts.url,
                    u = self.sb.issuer()
                ),
            )
            .unwrap();
        }
        let mut argv = vec!["treasury", "--config", config.to_str().unwrap()];
        argv.extend_from_slice(args);
        let cli = treasury::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let result = treasury::cli::run_as(
            cli,
            self.clock.clone(),
            CancellationToken::new(),
            login,
            &mut out,
        )
        .await
        .map_err(|e| e.to_string());
        (String::from_utf8(out).unwrap(), result)
    }

    /// `treasury <args>`, which must succeed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (out, result) = self.treasury(args).await;
        result.unwrap_or_else(|e| panic!("treasury {args:?} failed: {e}\n{out}"));
        out
    }

    /// `treasury <args>`, which must fail; returns its error.
    pub async fn refused(&self, args: &[&str]) -> String {
        let (out, result) = self.treasury(args).await;
        result.expect_err(&format!("treasury {args:?} should fail, printed:\n{out}"))
    }
}

/// A USDT → NGN payout to Ada's bank account.
pub fn spec(amount: Amount) -> PayoutSpec {
    PayoutSpec {
        grant: GRANT.into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount,
        recipient: RecipientSpec::Bank {
            bank_code: BANK.into(),
            account_number: ACCOUNT.into(),
            expected_name: "Ada Lovelace".into(),
        },
        guard: RateGuard::default(),
        max_requotes: 3,
        limits: Limits::default(),
        approval: None,
        sweep: None,
    }
}

/// Sends exactly `amount` USDT.
pub fn usdt(amount: Decimal) -> PayoutSpec {
    spec(Amount::Source { amount })
}

/// Delivers exactly `amount` NGN.
pub fn ngn(amount: Decimal) -> PayoutSpec {
    spec(Amount::Target { amount })
}

pub fn with_job_cap(mut s: PayoutSpec, cap: Decimal) -> PayoutSpec {
    s.limits.job_daily_cap = Some(cap);
    s
}

pub fn with_approval(mut s: PayoutSpec, approvers: u32, owner: &str) -> PayoutSpec {
    s.approval = Some(ApprovalRule {
        approvers,
        owner: owner.into(),
    });
    s
}

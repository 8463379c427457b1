//! The pipeline's test world, shared by the pipeline suites: a sandbox, a store and a
//! pipeline on one clock, with counts from the sandbox's ledger (Busha's side).

use std::sync::Arc;

use rust_decimal::{Decimal, dec};
use treasury::clock::Clock;
use treasury::money::Currency;
use treasury::pipeline::{Executed, Pipeline, PipelineConfig, StaticTokens};
use treasury::provider::AccessToken;
use treasury::provider::busha::{BushaClient, BushaConfig};
use treasury::provider::pacing::EndpointLimits;
use treasury::runs::{Amount, PayoutSpec, RateGuard, RecipientSpec, Run, RunId, RunState};
use treasury::sandbox::{
    LedgerEvent, NewUser, OAuthClientConfig, RateLimits, Sandbox, SandboxConfig, SandboxUser,
};
use treasury::store::Store;

use crate::backends::TestStore;

pub(crate) const CLIENT: &str = "treasury-test";
pub(crate) const GRANT: &str = "acme";
pub(crate) const BANK: &str = "000013";
pub(crate) const ACCOUNT: &str = "0123456789";
pub(crate) const NAME: &str = "ADA LOVELACE";

/// A sandbox, a store and a pipeline sharing one clock.
pub(crate) struct World {
    pub(crate) sb: Sandbox,
    pub(crate) user: SandboxUser,
    pub(crate) clock: Clock,
    pub(crate) store: Store,
    /// The store's URL, for a second "process" or an admin connection.
    pub(crate) url: String,
    pub(crate) token: AccessToken,
    pub(crate) _guard: Option<TestStore>,
}

impl World {
    pub(crate) async fn new() -> World {
        Self::with(fast(), None).await
    }

    /// `shared`: use this store (a fresh pool on it) instead of a new SQLite file.
    pub(crate) async fn with(mut config: SandboxConfig, shared: Option<&TestStore>) -> World {
        let clock = Clock::system();
        config.clock = clock.clone();
        config.clients = vec![OAuthClientConfig::new(
            CLIENT,
            "secret",
            "http://localhost/cb",
        )];
        let sb = Sandbox::start(config).await.unwrap();
        let user = sb.create_user(NewUser::new("ada").balance("USDT", dec!(10000)));
        sb.add_bank_account(BANK, ACCOUNT, NAME);
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
        let (store, url, guard) = match shared {
            Some(t) => (t.reopen().await, t.url.clone(), None),
            None => {
                let t = TestStore::sqlite().await;
                (t.store.clone(), t.url.clone(), Some(t))
            }
        };
        World {
            sb,
            user,
            clock,
            store,
            url,
            token,
            _guard: guard,
        }
    }

    /// A pipeline whose pacer allows 100 times Busha's limits, as does the sandbox: these
    /// tests are about exactly-once, not pacing (the 429 storm keeps the real limits).
    pub(crate) fn pipeline(&self, worker: &str) -> Pipeline {
        self.pipeline_with(worker, EndpointLimits::busha().scaled(100))
    }

    pub(crate) fn pipeline_with(&self, worker: &str, limits: EndpointLimits) -> Pipeline {
        let mut config = BushaConfig::new(self.sb.url());
        config.limits = limits;
        let busha = BushaClient::new(config).unwrap();
        let tokens = Arc::new(StaticTokens::new().with(GRANT, self.token.clone()));
        let cfg = PipelineConfig {
            worker_id: worker.into(),
            ..PipelineConfig::default()
        };
        Pipeline::new(self.store.clone(), busha, tokens, self.clock.clone(), cfg)
    }

    /// A pipeline with its own client settings, config and clock (another process).
    pub(crate) fn pipeline_on(
        &self,
        busha: BushaConfig,
        cfg: PipelineConfig,
        clock: Clock,
    ) -> Pipeline {
        let busha = BushaClient::new(busha).unwrap();
        let tokens = Arc::new(StaticTokens::new().with(GRANT, self.token.clone()));
        Pipeline::new(self.store.clone(), busha, tokens, clock, cfg)
    }

    /// Client settings with the tests' raised limits, on this world's sandbox.
    pub(crate) fn busha_config(&self) -> BushaConfig {
        let mut config = BushaConfig::new(self.sb.url());
        config.limits = EndpointLimits::busha().scaled(100);
        config
    }

    pub(crate) async fn create(&self, occurrence: &str, spec: PayoutSpec) -> RunId {
        let run = Run::new(
            "vendor-payout",
            occurrence,
            "v1",
            spec,
            false,
            self.clock.now(),
        );
        let entry =
            treasury::audit::NewAuditEntry::new("test", "run.created", serde_json::json!({}))
                .run(run.id.as_str());
        assert!(self.store.create_run(&run, entry).await.unwrap());
        run.id
    }

    /// Executes until the run is final, moving the shared clock to each wake-up time.
    pub(crate) async fn drive(&self, p: &Pipeline, id: &RunId) -> RunState {
        for _ in 0..200 {
            match p.execute(id).await.unwrap() {
                Executed::Finished(state) => return state,
                Executed::Waiting(until) => self.clock.set(until),
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("run {id} did not finish");
    }

    pub(crate) fn count(&self, pick: impl Fn(&LedgerEvent) -> bool) -> usize {
        self.sb.ledger().iter().filter(|e| pick(&e.event)).count()
    }

    pub(crate) fn transfers(&self) -> usize {
        self.count(|e| matches!(e, LedgerEvent::TransferCreated { .. }))
    }
    pub(crate) fn quotes(&self) -> usize {
        self.count(|e| matches!(e, LedgerEvent::QuoteCreated { .. }))
    }
    pub(crate) fn recipients(&self) -> usize {
        self.count(|e| matches!(e, LedgerEvent::RecipientCreated { .. }))
    }

    pub(crate) async fn run(&self, id: &RunId) -> Run {
        self.store.get_run(id).await.unwrap().unwrap()
    }

    pub(crate) async fn audit_verifies(&self) -> u64 {
        self.store
            .verify_audit(None)
            .await
            .unwrap()
            .expect("the audit chain verifies")
            .entries
    }
}

/// A sandbox with 100 times Busha's rate limits (see [`World::pipeline`]).
pub(crate) fn fast() -> SandboxConfig {
    SandboxConfig {
        rate_limits: RateLimits::busha().scaled(100),
        ..SandboxConfig::default()
    }
}

pub(crate) fn spec(amount: Amount) -> PayoutSpec {
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
        limits: Default::default(),
        approval: None,
        sweep: None,
    }
}

pub(crate) fn ngn(amount: Decimal) -> PayoutSpec {
    spec(Amount::Target { amount })
}

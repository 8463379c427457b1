//! The Busha emulator: an OAuth2/OIDC issuer and the resource API our worker
//! uses, with a control surface (`/_sandbox/...`) for tests and demos.
//!
//! It follows `busha-api.md`: confirmed behaviour as documented, and every behaviour
//! the reference marks unknown as a switch in [`Behaviour`]. Tests, benchmarks and
//! `treasury demo` start it in-process with [`Sandbox::start`]; the `busha-sandbox`
//! binary runs it standalone. Production code never depends on this module.

mod api;
mod config;
mod control;
mod edge;
mod keys;
mod oauth;
mod reply;
mod state;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::Notify;

pub use super::core::faults::{CannedResponse, Fault, FaultKind, Rewrite};
pub use super::core::rate::RateLimits;
pub use super::core::requests::RequestRecord;
pub use config::{
    Behaviour, DuplicateTransfers, ExpiredQuoteTransfers, NewUser, OAuthClientConfig, RecipientIds,
    ReferenceReuse, RevokedAccessTokens, SCOPE_CATALOGUE, SandboxConfig, SavedRecipient,
    TransferOutcome,
};
pub use state::{LedgerEntry, LedgerEvent, Price};

// The shared core, under the names the Busha modules have always used.
use super::core::faults;

use crate::clock::Clock;
use keys::KeySet;
use state::{BalanceRec, RecipientRec, State, User};

/// A running sandbox. Clones share it.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    keys: RwLock<KeySet>,
    clock: Clock,
    url: url::Url,
    /// `url` without its trailing slash, as advertised in discovery and `iss`.
    issuer: String,
    config: SandboxConfig,
    shutdown: Notify,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A user created in the sandbox.
#[derive(Clone, Debug, Serialize)]
pub struct SandboxUser {
    /// The OAuth subject (`sub`).
    pub id: String,
    pub profile_id: String,
    pub name: String,
}

/// Tokens minted directly, skipping the browser flow (a test shortcut).
#[derive(Clone, Serialize)]
pub struct MintedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
}

impl std::fmt::Debug for MintedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MintedTokens(***)")
    }
}

impl Sandbox {
    /// Binds `config.listen` and serves until [`Sandbox::shutdown`] or the runtime ends.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let url = match &config.public_url {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?,
        };
        let issuer = url.as_str().trim_end_matches('/').to_string();
        let state = State {
            clients: config
                .clients
                .iter()
                .map(|c| (c.client_id.clone(), c.clone()))
                .collect(),
            behaviour: config.behaviour.clone(),
            rate_limits: config.rate_limits.clone(),
            prices: default_prices(),
            ..State::default()
        };
        let sandbox = Sandbox {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                keys: RwLock::new(KeySet::new()),
                clock: config.clock.clone(),
                url,
                issuer,
                config,
                shutdown: Notify::new(),
                server: Mutex::new(None),
            }),
        };
        let app = sandbox.router();
        let inner = sandbox.inner.clone();
        let handle = tokio::spawn(async move {
            let stop = async move { inner.shutdown.notified().await };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        *sandbox.inner.server.lock() = Some(handle);
        Ok(sandbox)
    }

    fn router(&self) -> axum::Router {
        use axum::middleware::{from_fn, from_fn_with_state};
        oauth::routes()
            .merge(api::routes())
            .route_layer(from_fn_with_state(self.clone(), edge::edge))
            .nest("/_sandbox", control::routes())
            .layer(from_fn(edge::request_id))
            .with_state(self.clone())
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(&self) {
        self.inner.shutdown.notify_one();
        let handle = self.inner.server.lock().take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// Base URL of both the issuer and the resource API, with a trailing slash.
    pub fn url(&self) -> url::Url {
        self.inner.url.clone()
    }

    /// The issuer string advertised in discovery and in every token's `iss`.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The state, locked, with every in-flight transfer brought up to `now` (so that
    /// statuses, refunds and the ledger agree with the clock).
    fn settled(&self, now: DateTime<Utc>) -> parking_lot::MutexGuard<'_, State> {
        let mut st = self.inner.state.lock();
        st.advance_transfers(now, self.inner.config.transfer_step);
        st
    }

    pub fn register_client(&self, client: OAuthClientConfig) {
        self.inner
            .state
            .lock()
            .clients
            .insert(client.client_id.clone(), client);
    }

    pub fn create_user(&self, new: NewUser) -> SandboxUser {
        let mut st = self.inner.state.lock();
        create_user(&mut st, new)
    }

    /// Sets a user's available balance in `currency`, creating the balance if needed.
    pub fn set_balance(&self, user_id: &str, currency: &str, available: Decimal) -> bool {
        let mut st = self.inner.state.lock();
        let Some(user) = st.users.get_mut(user_id) else {
            return false;
        };
        user.balances
            .entry(currency.to_ascii_uppercase())
            .or_insert_with(new_balance)
            .available = available;
        true
    }

    /// A user's available balance in `currency`, with transfers brought up to date.
    pub fn balance(&self, user_id: &str, currency: &str) -> Option<Decimal> {
        let now = self.now();
        let st = self.settled(now);
        st.users
            .get(user_id)?
            .balances
            .get(&currency.to_ascii_uppercase())
            .map(|b| b.available)
    }

    /// Issues tokens without the browser flow. Every scope must be in the catalogue.
    pub fn mint_tokens(&self, client_id: &str, user_id: &str, scopes: &[&str]) -> MintedTokens {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let issued = oauth::issue_tokens(self, client_id, user_id, &scopes, None, None, "minted");
        MintedTokens {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
            expires_in: issued.expires_in,
        }
    }

    /// Registers a bank account for name enquiry (`resolve-bank-account`).
    pub fn add_bank_account(&self, bank_code: &str, account_number: &str, account_name: &str) {
        self.inner.state.lock().bank_accounts.insert(
            (bank_code.into(), account_number.into()),
            account_name.into(),
        );
    }

    /// Seeds a recipient the user saved before we came along (in their dashboard),
    /// under a known id, so that job files naming a saved recipient id can run. Not a
    /// ledger event: nothing of ours created it. Returns `false` for an unknown user.
    pub fn add_saved_recipient(&self, user_id: &str, saved: SavedRecipient) -> bool {
        let now = self.now();
        let mut st = self.inner.state.lock();
        let Some(profile_id) = st.users.get(user_id).map(|u| u.profile_id.clone()) else {
            return false;
        };
        let currency = saved.currency.to_ascii_uppercase();
        let bank_name = api::BANKS
            .iter()
            .find(|(_, code, c)| *code == saved.bank_code && *c == currency)
            .map(|(name, _, _)| name.to_string())
            .unwrap_or_else(|| format!("bank {}", saved.bank_code));
        let rec = RecipientRec {
            id: saved.id.clone(),
            user_id: user_id.to_string(),
            profile_id,
            kind: format!("{}_bank", currency.to_ascii_lowercase()),
            country_code: if currency == "KES" { "KE" } else { "NG" }.into(),
            currency,
            bank_name,
            bank_code: saved.bank_code,
            account_number: saved.account_number,
            account_name: saved.account_name,
            legal_entity_type: "personal".into(),
            active: true,
            legacy: false,
            deleted: false,
            created_at: now,
        };
        st.recipients.insert(saved.id, rec);
        true
    }

    /// Sets the reference price of `base`/`counter` (e.g. USDT/NGN).
    pub fn set_price(&self, base: &str, counter: &str, buy: Decimal, sell: Decimal) {
        let price = Price {
            base: base.to_ascii_uppercase(),
            counter: counter.to_ascii_uppercase(),
            buy,
            sell,
        };
        let key = format!("{}{}", price.base, price.counter);
        self.inner.state.lock().prices.insert(key, price);
    }

    pub fn add_fault(&self, fault: Fault) {
        self.inner.state.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.inner.state.lock().faults.clear();
    }

    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.inner.state.lock().rate_limits = limits;
    }

    pub fn update_behaviour(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.inner.state.lock().behaviour);
    }

    /// The next transfer created ends this way (queued, first in first out).
    pub fn push_transfer_outcome(&self, outcome: TransferOutcome) {
        self.inner.state.lock().outcomes.push_back(outcome);
    }

    /// The user disconnects the app in their dashboard: every token family dies.
    pub fn disconnect_user(&self, user_id: &str) -> usize {
        let now = self.now();
        let mut st = self.inner.state.lock();
        let families: Vec<String> = st
            .families
            .iter()
            .filter(|(_, f)| f.user_id == user_id && f.revoked.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        families
            .iter()
            .filter(|id| st.revoke_family(id, "user disconnected the app", now))
            .count()
    }

    /// Generates a new signing key; `retire_old` drops the earlier ones from the JWKS.
    pub fn rotate_keys(&self, retire_old: bool) -> String {
        self.inner.keys.write().rotate(retire_old)
    }

    /// Everything that happened up to now, oldest first (transfers brought up to date
    /// with the clock, so that their final statuses appear without polling).
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        let now = self.now();
        let st = self.settled(now);
        st.ledger.clone()
    }

    /// Every request the sandbox answered (or dropped), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.state.lock().requests.clone()
    }
}

fn new_balance() -> BalanceRec {
    BalanceRec {
        id: uuid::Uuid::new_v4().to_string(),
        available: Decimal::ZERO,
        pending: Decimal::ZERO,
    }
}

fn create_user(st: &mut State, new: NewUser) -> SandboxUser {
    let id = uuid::Uuid::new_v4().to_string();
    let profile_id = format!("BUS_{}", nanoid::nanoid!(21, &ALPHANUMERIC));
    let mut balances: std::collections::BTreeMap<String, BalanceRec> = new
        .balances
        .iter()
        .map(|(c, amount)| {
            let mut b = new_balance();
            b.available = *amount;
            (c.to_ascii_uppercase(), b)
        })
        .collect();
    // Every Busha account can hold the currencies our jobs use.
    for code in ["NGN", "USDT"] {
        balances.entry(code.into()).or_insert_with(new_balance);
    }
    let user = User {
        id: id.clone(),
        profile_id: profile_id.clone(),
        name: new.name.clone(),
        password: new.password.unwrap_or_else(|| "sandbox".into()),
        balances,
    };
    st.users.insert(id.clone(), user);
    SandboxUser {
        id,
        profile_id,
        name: new.name,
    }
}

/// Characters for Busha-style nano ids (`QUO_…`, `TRF_…`, `req_…`).
pub(crate) const ALPHANUMERIC: [char; 62] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i',
    'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'A', 'B',
    'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U',
    'V', 'W', 'X', 'Y', 'Z',
];

fn default_prices() -> std::collections::BTreeMap<String, Price> {
    use rust_decimal::dec;
    [
        ("USDT", "NGN", dec!(1650), dec!(1600)),
        ("USDC", "NGN", dec!(1648), dec!(1598)),
        ("BTC", "USDT", dec!(98500), dec!(97500)),
        ("USDT", "KES", dec!(131), dec!(128)),
    ]
    .into_iter()
    .map(|(base, counter, buy, sell)| {
        (
            format!("{base}{counter}"),
            Price {
                base: base.into(),
                counter: counter.into(),
                buy,
                sell,
            },
        )
    })
    .collect()
}

impl super::core::control::Emulator for Sandbox {
    fn clock(&self) -> Clock {
        Sandbox::clock(self)
    }
    fn add_fault(&self, fault: Fault) {
        Sandbox::add_fault(self, fault)
    }
    fn clear_faults(&self) {
        Sandbox::clear_faults(self)
    }
    fn set_rate_limits(&self, limits: RateLimits) {
        Sandbox::set_rate_limits(self, limits)
    }
    fn ledger_json(&self) -> serde_json::Value {
        serde_json::to_value(self.ledger()).unwrap_or_default()
    }
    fn requests(&self) -> Vec<RequestRecord> {
        Sandbox::requests(self)
    }
}

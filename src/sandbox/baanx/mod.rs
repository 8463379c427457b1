//! The Baanx emulator: OAuth 2.0 + PKCE in both flows (hosted UI and API mode), the
//! login endpoints, the wallet, whitelist and withdrawal API, consent v2, Baanx's
//! error bodies, regions and client keys, on the shared core (faults, ledger, rate
//! limits, request log, control surface).
//!
//! It follows `baanx-api.md`: confirmed behaviour as documented, and each behaviour
//! marked unknown as a switch in [`BaanxBehaviour`]. Tests start it in-process with
//! [`BaanxSandbox::start`]; the `baanx-sandbox` binary runs it standalone.

mod auth;
mod config;
mod consent;
mod control;
mod edge;
mod hosted;
mod oauth;
mod reply;
mod state;
mod token;
mod wallet;
mod whitelist;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::Notify;

pub use config::{
    BaanxBehaviour, BaanxClient, BaanxConfig, CONSENT_TEXT, Custody, NewBaanxUser, NewWallet,
    NewWhitelistEntry, PlatformWallet, REFRESH_7_DAYS, REFRESH_184_DAYS, RefreshLifetime,
    RefreshRotation, Region, SecretKeyRule,
};
pub use state::{BaanxEvent, BaanxLedgerEntry, ExternalWallet};

use crate::clock::Clock;
use crate::sandbox::core::control::Emulator;
use crate::sandbox::core::faults::Fault;
use crate::sandbox::core::rate::RateLimits;
use crate::sandbox::core::requests::RequestRecord;
use state::{PlatformRec, User, WhitelistRec, World};

/// A running Baanx sandbox. Clones share it.
#[derive(Clone)]
pub struct BaanxSandbox {
    inner: Arc<Inner>,
}

struct Inner {
    world: Mutex<World>,
    clock: Clock,
    url: url::Url,
    /// HMAC key of the session JWTs.
    session_secret: [u8; 32],
    shutdown: Notify,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A user created in the sandbox.
#[derive(Clone, Debug, Serialize)]
pub struct BaanxUser {
    pub id: String,
    pub email: String,
    pub region: Region,
}

/// An internal wallet as created: what a withdrawal names as its source.
#[derive(Clone, Debug, Serialize)]
pub struct WalletInfo {
    pub id: String,
    pub address: String,
    pub memo: Option<String>,
}

impl BaanxSandbox {
    /// Binds `config.listen` and serves until [`BaanxSandbox::shutdown`].
    pub async fn start(config: BaanxConfig) -> std::io::Result<BaanxSandbox> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let url = match &config.public_url {
            Some(u) => u.clone(),
            None => url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?,
        };
        let world = World {
            clients: config
                .clients
                .iter()
                .map(|c| (c.client_key.clone(), c.clone()))
                .collect(),
            regions: Default::default(),
            behaviour: config.behaviour.clone(),
            rate_limits: config.rate_limits.clone(),
            faults: Vec::new(),
            windows: Default::default(),
            ledger: Vec::new(),
            requests: Vec::new(),
            withdrawals: 0,
            auto_consent: config.auto_consent.clone(),
        };
        let sandbox = BaanxSandbox {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                clock: config.clock.clone(),
                url,
                session_secret: rand::random(),
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
                tracing::error!(error = %e, "baanx sandbox server stopped");
            }
        });
        *sandbox.inner.server.lock() = Some(handle);
        Ok(sandbox)
    }

    fn router(&self) -> axum::Router {
        use axum::middleware::from_fn_with_state;
        use axum::routing::{delete, get, post};
        let api = axum::Router::new()
            .route("/v1/auth/oauth/authorize/initiate", get(oauth::initiate))
            .route("/v1/auth/oauth/authorize", post(oauth::authorize))
            .route("/v1/auth/oauth/token", post(token::token))
            .route("/v1/auth/oauth/revoke", delete(oauth::revoke_all))
            .route("/v1/auth/login", post(auth::login))
            .route("/v1/auth/login/otp", post(auth::login_otp))
            .route("/v1/auth/logout", post(auth::logout))
            .route("/v1/user", get(auth::get_user))
            .route(
                "/v1/wallet/internal",
                get(wallet::list_internal).post(wallet::create_internal),
            )
            .route(
                "/v1/wallet/internal/withdraw",
                post(whitelist::internal_withdraw),
            )
            .route("/v1/wallet/external", get(wallet::list_external))
            .route(
                "/v1/wallet/whitelist",
                get(whitelist::list)
                    .post(whitelist::create)
                    .delete(whitelist::delete),
            )
            .route("/v1/wallet/history", get(wallet::history))
            .route("/v1/wallet/{kind}", get(wallet::get_platform))
            .route(
                "/v1/wallet/{kind}/withdraw",
                post(wallet::platform_withdraw),
            )
            .route(
                "/v1/wallet/{kind}/withdraw-estimation",
                get(wallet::estimation),
            )
            .merge(consent::routes())
            .route_layer(from_fn_with_state(self.clone(), edge::edge));
        let hosted = axum::Router::new()
            .route(
                "/hosted/login",
                get(hosted::show_login).post(hosted::submit_login),
            )
            .route("/hosted/otp", post(hosted::submit_otp))
            .route("/hosted/consent", post(hosted::submit_consent));
        api.merge(hosted)
            .nest("/_sandbox", control::routes())
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

    /// Base URL of the API and the hosted UI, with a trailing slash.
    pub fn url(&self) -> url::Url {
        self.inner.url.clone()
    }

    fn hosted_login_url(&self, session: &str, region: Region) -> String {
        let mut url = self.inner.url.clone();
        url.set_path("/hosted/login");
        url.query_pairs_mut().append_pair("session", session);
        if region == Region::Us {
            url.query_pairs_mut().append_pair("region", "us");
        }
        url.into()
    }

    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub fn register_client(&self, client: BaanxClient) {
        let mut w = self.inner.world.lock();
        w.clients.insert(client.client_key.clone(), client);
    }

    pub fn create_user(&self, new: NewBaanxUser) -> BaanxUser {
        let now = self.now();
        let id = uuid::Uuid::new_v4().to_string();
        let local = new.email.split('@').next().unwrap_or("sandbox").to_string();
        let user = User {
            id: id.clone(),
            email: new.email.clone(),
            password: new.password,
            otp: new.otp,
            otp_sent_at: None,
            phone_number: new.phone_number,
            verification_state: new.verification_state,
            phase: new.phase,
            first_name: new.first_name.unwrap_or_else(|| local.clone()),
            last_name: new.last_name.unwrap_or_else(|| "Sandbox".into()),
            created_at: now,
            internal: Vec::new(),
            platform: Vec::new(),
            external: Vec::new(),
            whitelist: Vec::new(),
        };
        let mut w = self.inner.world.lock();
        w.region(new.region).users.insert(id.clone(), user);
        BaanxUser {
            id,
            email: new.email,
            region: new.region,
        }
    }

    /// The id of the user with this email, in either region.
    pub fn user_id(&self, email: &str) -> Option<String> {
        let w = self.inner.world.lock();
        w.regions
            .iter()
            .find_map(|r| r.user_by_email(email).map(|u| u.id.clone()))
    }

    /// Creates the internal wallet (or finds it) and sets its balance. `None` for an
    /// unknown user or an unsupported (network, currency).
    pub fn set_wallet(&self, user_id: &str, wallet: NewWallet) -> Option<WalletInfo> {
        let mut w = self.inner.world.lock();
        let (_, user) = w.find_user(user_id)?;
        let x = wallet::ensure_internal(user, &wallet.network, &wallet.currency)?;
        x.balance = wallet.balance;
        Some(WalletInfo {
            id: x.id.clone(),
            address: x.address.clone(),
            memo: x.memo.clone(),
        })
    }

    /// The balance of an internal wallet.
    pub fn balance(&self, user_id: &str, network: &str, currency: &str) -> Option<Decimal> {
        let mut w = self.inner.world.lock();
        let (_, user) = w.find_user(user_id)?;
        user.internal
            .iter()
            .find(|x| x.network == network && x.currency == currency)
            .map(|x| x.balance)
    }

    /// Credits a credit or reward wallet, creating it on first credit.
    pub fn credit(
        &self,
        user_id: &str,
        kind: PlatformWallet,
        amount: Decimal,
        withdrawable: bool,
    ) -> bool {
        let now = self.now();
        let mut w = self.inner.world.lock();
        let Some((_, user)) = w.find_user(user_id) else {
            return false;
        };
        let pos = match user.platform.iter().position(|p| p.kind == kind) {
            Some(pos) => pos,
            None => {
                user.platform.push(PlatformRec {
                    kind,
                    id: uuid::Uuid::new_v4().to_string(),
                    currency: "usdc".into(),
                    balance: Decimal::ZERO,
                    withdrawable,
                    history: Vec::new(),
                });
                user.platform.len() - 1
            }
        };
        let p = &mut user.platform[pos];
        p.balance += amount;
        p.withdrawable = withdrawable;
        p.history.push(state::HistoryItem {
            name: "Credit".into(),
            amount,
            currency: p.currency.clone(),
            sign: "credit",
            date: now,
        });
        true
    }

    /// Registers an external (self-custody) wallet.
    pub fn add_external_wallet(&self, user_id: &str, wallet: ExternalWallet) -> bool {
        let mut w = self.inner.world.lock();
        let Some((_, user)) = w.find_user(user_id) else {
            return false;
        };
        user.external.push(wallet);
        true
    }

    /// Seeds an approved whitelist entry; returns its id.
    pub fn add_whitelist(&self, user_id: &str, entry: NewWhitelistEntry) -> Option<String> {
        let now = self.now();
        let mut w = self.inner.world.lock();
        let (_, user) = w.find_user(user_id)?;
        let id = uuid::Uuid::new_v4().to_string();
        user.whitelist.push(WhitelistRec {
            id: id.clone(),
            currency: entry.currency.to_ascii_lowercase(),
            name: entry.name.clone(),
            first_name: entry.name,
            last_name: "Sandbox".into(),
            address: entry.address.clone(),
            memo: entry.memo,
            created_at: now,
            approved_at: now,
            last_used_at: None,
        });
        w.record(
            now,
            BaanxEvent::WhitelistAdded {
                user_id: user_id.to_string(),
                entry_id: id.clone(),
                currency: entry.currency.to_ascii_lowercase(),
                address: entry.address,
                pending: false,
                approved_at: now,
            },
        );
        Some(id)
    }

    /// The user disconnects the app at Baanx: every token family of the user dies.
    pub fn disconnect_user(&self, user_id: &str) -> usize {
        let now = self.now();
        let mut w = self.inner.world.lock();
        let Some((region, _)) = w.find_user(user_id) else {
            return 0;
        };
        let families: Vec<String> = w.regions[region.index()]
            .families
            .iter()
            .filter(|(_, f)| f.user_id == user_id && f.revoked.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        families
            .iter()
            .filter(|f| oauth::revoke(&mut w, region, f, "user disconnected the app", now))
            .count()
    }

    pub fn update_behaviour(&self, change: impl FnOnce(&mut BaanxBehaviour)) {
        change(&mut self.inner.world.lock().behaviour);
    }

    pub fn behaviour(&self) -> BaanxBehaviour {
        self.inner.world.lock().behaviour.clone()
    }

    pub fn add_fault(&self, fault: Fault) {
        self.inner.world.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.inner.world.lock().faults.clear();
    }

    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.inner.world.lock().rate_limits = limits;
    }

    /// Everything that happened, oldest first.
    pub fn ledger(&self) -> Vec<BaanxLedgerEntry> {
        self.inner.world.lock().ledger.clone()
    }

    /// Every request the sandbox answered (or dropped), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.world.lock().requests.clone()
    }
}

impl Emulator for BaanxSandbox {
    fn clock(&self) -> Clock {
        BaanxSandbox::clock(self)
    }
    fn add_fault(&self, fault: Fault) {
        BaanxSandbox::add_fault(self, fault)
    }
    fn clear_faults(&self) {
        BaanxSandbox::clear_faults(self)
    }
    fn set_rate_limits(&self, limits: RateLimits) {
        BaanxSandbox::set_rate_limits(self, limits)
    }
    fn ledger_json(&self) -> serde_json::Value {
        serde_json::to_value(self.ledger()).unwrap_or_default()
    }
    fn requests(&self) -> Vec<RequestRecord> {
        BaanxSandbox::requests(self)
    }
}

//! A world for Baanx grant tests: the Baanx sandbox (manual clock) from
//! `baanx_sandbox_support`, a store of either backend, a keyring, our Baanx token
//! client, and a scripted terminal and browser.

use std::collections::VecDeque;
use std::sync::Arc;

use reqwest::Method;
use treasury::config::{BaanxFlow, GrantSpec, Secret};
use treasury::grants::{
    BaanxConnector, BaanxTokens, ConnectError, Connected, Custodian, CustodyConfig, Keyring,
    Prompter,
};
use treasury::provider::baanx::{BaanxClient, BaanxConfig, Region};
use treasury::sandbox::baanx::{BaanxEvent, BaanxLedgerEntry};
use treasury::store::Store;
use url::Url;

use crate::baanx_sandbox_support::{Bx, EMAIL, KEY, PASSWORD, SECRET};
use crate::backends::TestStore;
use crate::support::query_map;

/// API mode, international.
pub const API: &str = "cards";
/// The hosted flow, international.
pub const HOSTED: &str = "cards-hosted";
/// A second API-mode alias, for "two aliases on one user".
pub const OTHER: &str = "cards-two";

pub fn specs() -> Vec<GrantSpec> {
    let spec = |alias: &str, flow| GrantSpec {
        alias: alias.into(),
        provider: "baanx".into(),
        region: Some(Region::International),
        flow: Some(flow),
        ..Default::default()
    };
    vec![
        spec(API, BaanxFlow::Api),
        spec(HOSTED, BaanxFlow::Hosted),
        spec(OTHER, BaanxFlow::Api),
    ]
}

pub struct Bw {
    pub bx: Bx,
    pub ts: TestStore,
    pub keys: Arc<Keyring>,
    pub tokens: Arc<BaanxTokens>,
    pub redirect: Url,
    /// Bound on the redirect URI's port, for the CLI's callback listener.
    pub listener: Option<tokio::net::TcpListener>,
}

impl Bw {
    pub async fn start(ts: TestStore) -> Bw {
        Self::start_with(ts, |_| {}).await
    }

    pub async fn start_with(
        ts: TestStore,
        edit: impl FnOnce(&mut treasury::sandbox::baanx::BaanxConfig),
    ) -> Bw {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let redirect: Url = format!(
            "http://127.0.0.1:{}/oauth/baanx/callback",
            listener.local_addr().unwrap().port()
        )
        .parse()
        .unwrap();
        let registered = redirect.to_string();
        let bx = Bx::start_with(|c| {
            c.clients[0].redirect_uris.push(registered);
            edit(c);
        })
        .await;
        let tokens = Arc::new(tokens_for(&bx, &redirect, Some(SECRET)));
        Bw {
            bx,
            ts,
            keys: Arc::new(Keyring::generate(1)),
            tokens,
            redirect,
            listener: Some(listener),
        }
    }

    pub fn store(&self) -> Store {
        self.ts.store.clone()
    }

    pub fn custodian_on(&self, store: Store) -> Custodian {
        Custodian::with_providers(
            store,
            self.keys.clone(),
            None,
            Some(self.tokens.clone()),
            self.bx.sb.clock(),
            CustodyConfig::default(),
        )
    }

    pub fn custodian(&self) -> Custodian {
        self.custodian_on(self.store())
    }

    pub fn connector(&self) -> BaanxConnector {
        BaanxConnector::new(
            self.store(),
            self.keys.clone(),
            self.tokens.clone(),
            self.custodian(),
            self.bx.sb.clock(),
            specs(),
            self.bx.sb.url(),
        )
    }

    /// API mode for `alias` with the default customer's answers.
    pub async fn connect_api(&self, alias: &str) -> Result<Connected, ConnectError> {
        let mut script = Script::new(&[EMAIL, PASSWORD, "yes"]);
        self.connector()
            .connect_api(alias, &mut script, "operator:cli")
            .await
    }

    pub fn ledger(&self) -> Vec<BaanxLedgerEntry> {
        self.bx.sb.ledger()
    }

    pub fn count(&self, what: impl Fn(&BaanxEvent) -> bool) -> usize {
        self.ledger().iter().filter(|e| what(&e.event)).count()
    }

    /// Refresh-token grants the sandbox served.
    pub fn refreshes(&self) -> usize {
        self.count(
            |e| matches!(e, BaanxEvent::TokenIssued { grant, .. } if grant == "refresh_token"),
        )
    }

    pub fn replays(&self) -> usize {
        self.count(|e| matches!(e, BaanxEvent::RefreshReplayed { .. }))
    }

    /// Whether Baanx accepts `token` on `GET /v1/user`.
    pub async fn token_works(&self, token: &str) -> bool {
        self.bx
            .call(Method::GET, "/v1/user")
            .bearer(token)
            .send()
            .await
            .status
            .is_success()
    }
}

/// Our Baanx token client against the sandbox, presenting `secret`.
pub fn tokens_for(bx: &Bx, redirect: &Url, secret: Option<&str>) -> BaanxTokens {
    let mut config = BaanxConfig::new(bx.sb.url(), KEY);
    config.secret_key = secret.map(str::to_string);
    let timeout = config.timeout;
    BaanxTokens::new(BaanxClient::new(config).unwrap(), redirect.clone(), timeout)
}

/// A terminal that answers from a script and remembers what it was told.
pub struct Script {
    answers: VecDeque<String>,
    pub said: Vec<String>,
    pub asked: Vec<String>,
}

impl Script {
    pub fn new(answers: &[&str]) -> Self {
        Self {
            answers: answers.iter().map(|a| a.to_string()).collect(),
            said: Vec::new(),
            asked: Vec::new(),
        }
    }
    fn next(&mut self, prompt: &str) -> Result<String, String> {
        self.asked.push(prompt.to_string());
        self.answers
            .pop_front()
            .ok_or_else(|| format!("no scripted answer for {prompt:?}"))
    }
}

impl Prompter for Script {
    fn line(&mut self, prompt: &str) -> Result<String, String> {
        self.next(prompt)
    }
    fn secret(&mut self, prompt: &str) -> Result<Secret, String> {
        self.next(prompt).map(Secret::new)
    }
    fn say(&mut self, text: &str) {
        self.said.push(text.to_string());
    }
}

/// The customer in a browser: signs in on the hosted UI with plain form posts,
/// approves, and follows the redirect to our callback with a user agent. Returns the
/// callback page's text.
pub async fn hosted_browser(sandbox: Url, login_url: Url, email: &str, password: &str) -> String {
    let http = crate::support::no_redirects();
    let session = query_map(&login_url)["session"].clone();
    let at = |path: &str| sandbox.join(path).unwrap();
    let page = http.get(login_url.clone()).send().await.unwrap();
    assert!(page.status().is_success(), "the sign-in page loads");
    http.post(at("/hosted/login"))
        .form(&[
            ("session", session.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let approved = http
        .post(at("/hosted/consent"))
        .form(&[("session", session.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    let back = approved
        .headers()
        .get("location")
        .expect("the consent redirects back")
        .to_str()
        .unwrap()
        .to_string();
    http.get(back)
        .header("user-agent", "ScriptedBrowser/1.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

//! A spawned world for grant tests: the Busha sandbox on a shared manual clock, a store
//! of either backend, a keyring, the discovered issuer, and a scripted "browser".

use std::sync::Arc;

use chrono::{DateTime, Utc};
use treasury::clock::Clock;
use treasury::config::{GrantSpec, Secret};
use treasury::grants::{
    BushaOAuth, CallbackParams, Connected, Connector, Custodian, CustodyConfig, Grant, Keyring,
    OAuthSettings,
};
use treasury::provider::AccessToken;
use treasury::provider::busha::{BushaClient, BushaConfig};
use treasury::provider::pacing::EndpointLimits;
use treasury::sandbox::{
    LedgerEvent, NewUser, OAuthClientConfig, Sandbox, SandboxConfig, SandboxUser,
};
use treasury::store::Store;
use url::Url;

use crate::backends::TestStore;

pub const CLIENT_ID: &str = "busha-oauth2-7a3e5f10-grants-tests-test";
pub const CLIENT_SECRET: &str = "grants-client-secret-never-logged";
pub const ALIAS: &str = "acme";
pub const USER: &str = "ada";
pub const PASSWORD: &str = "correct horse";

/// The resource scopes the `acme` grant must hold.
pub fn scopes() -> Vec<String> {
    ["balances:read", "transfers:read", "transfers:write"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// How the world is set up.
pub struct Options {
    /// The sandbox approves every authorization at once, for user `ada`.
    pub auto_consent: bool,
    /// The client secret our worker presents (defaults to the registered one).
    pub presented_secret: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            auto_consent: true,
            presented_secret: CLIENT_SECRET.to_string(),
        }
    }
}

pub struct World {
    pub sb: Sandbox,
    pub clock: Clock,
    pub ts: TestStore,
    pub keys: Arc<Keyring>,
    pub oauth: Arc<BushaOAuth>,
    pub redirect_uri: Url,
    /// Bound on the redirect URI's port, for a CLI or HTTP listener to take.
    pub listener: Option<tokio::net::TcpListener>,
    pub user: SandboxUser,
    pub api: BushaClient,
}

impl World {
    pub async fn start(ts: TestStore) -> World {
        World::start_with(ts, Options::default()).await
    }

    pub async fn start_with(ts: TestStore, options: Options) -> World {
        let clock = Clock::manual(start_time());
        let sb = Sandbox::start(SandboxConfig {
            clock: clock.clone(),
            auto_consent: options.auto_consent.then(|| USER.to_string()),
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let user = sb.create_user(NewUser::new(USER).password(PASSWORD));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let redirect_uri = Url::parse(&format!(
            "http://127.0.0.1:{}/oauth/callback",
            listener.local_addr().unwrap().port()
        ))
        .unwrap();
        sb.register_client(OAuthClientConfig::new(
            CLIENT_ID,
            CLIENT_SECRET,
            redirect_uri.as_str(),
        ));
        let oauth = Arc::new(
            BushaOAuth::discover(
                &oauth_settings(&sb.url(), &options.presented_secret, &redirect_uri),
                clock.clone(),
            )
            .await
            .unwrap(),
        );
        let mut api_config = BushaConfig::new(sb.url());
        api_config.limits = EndpointLimits::busha().scaled(100);
        World {
            sb,
            clock,
            ts,
            keys: Arc::new(Keyring::generate(1)),
            oauth,
            redirect_uri,
            listener: Some(listener),
            user,
            api: BushaClient::new(api_config).unwrap(),
        }
    }

    pub fn store(&self) -> Store {
        self.ts.store.clone()
    }

    pub fn specs() -> Vec<GrantSpec> {
        vec![GrantSpec {
            alias: ALIAS.into(),
            provider: "busha".into(),
            scopes: scopes(),
            ..Default::default()
        }]
    }

    pub fn connector(&self) -> Connector {
        self.connector_on(self.store())
    }

    pub fn connector_on(&self, store: Store) -> Connector {
        Connector::new(
            store,
            self.keys.clone(),
            self.oauth.clone(),
            self.clock.clone(),
            World::specs(),
        )
    }

    pub fn custodian(&self) -> Custodian {
        self.custodian_on(self.store())
    }

    /// A custodian of its own (its own locks and lease owner id) on `store`.
    pub fn custodian_on(&self, store: Store) -> Custodian {
        Custodian::new(
            store,
            self.keys.clone(),
            self.oauth.clone(),
            self.clock.clone(),
            CustodyConfig::default(),
        )
    }

    /// Connects `acme` through the real flow: authorization URL, the sandbox's
    /// auto-consent, callback, exchange, verification, storage.
    pub async fn connect(&self) -> Grant {
        let connector = self.connector();
        let started = connector.begin(ALIAS).await.unwrap();
        let callback = Browser::new().follow_auto_consent(&started.url).await;
        let done: Connected = connector
            .complete(&callback_params(&callback), "test")
            .await
            .unwrap();
        done.grant
    }

    /// Refreshes Busha has issued so far (rotations of a refresh token).
    pub fn refreshes(&self) -> usize {
        self.count(
            |e| matches!(e, LedgerEvent::TokenIssued { grant, .. } if grant == "refresh_token"),
        )
    }

    pub fn code_exchanges(&self) -> usize {
        self.count(|e| matches!(e, LedgerEvent::TokenIssued { grant, .. } if grant == "authorization_code"))
    }

    pub fn replays_or_revocations(&self) -> usize {
        self.count(|e| {
            matches!(
                e,
                LedgerEvent::RefreshReplayed { .. } | LedgerEvent::FamilyRevoked { .. }
            )
        })
    }

    pub fn count(&self, pred: impl Fn(&LedgerEvent) -> bool) -> usize {
        self.sb.ledger().iter().filter(|e| pred(&e.event)).count()
    }

    /// Requests the token endpoint received (answered or dropped).
    pub fn token_requests(&self) -> usize {
        self.sb
            .requests()
            .iter()
            .filter(|r| r.endpoint == "POST /oauth2/token")
            .count()
    }

    /// Whether Busha accepts `token` on the resource API.
    pub async fn token_works(&self, token: &AccessToken) -> bool {
        self.api.list_balances(token).await.is_ok()
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }
}

pub fn oauth_settings(issuer: &Url, secret: &str, redirect_uri: &Url) -> OAuthSettings {
    OAuthSettings::new(
        issuer.clone(),
        CLIENT_ID,
        Secret::new(secret),
        redirect_uri.clone(),
    )
}

pub fn callback_params(callback: &Url) -> CallbackParams {
    let mut p = CallbackParams::default();
    for (k, v) in callback.query_pairs() {
        match k.as_ref() {
            "code" => p.code = Some(v.into_owned()),
            "state" => p.state = Some(v.into_owned()),
            "error" => p.error = Some(v.into_owned()),
            "error_description" => p.error_description = Some(v.into_owned()),
            "iss" => p.iss = Some(v.into_owned()),
            _ => {}
        }
    }
    p
}

/// A scripted browser: no automatic redirects, so every hop is visible.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn location(res: &reqwest::Response) -> Url {
        assert_eq!(
            res.status(),
            reqwest::StatusCode::FOUND,
            "expected a redirect"
        );
        Url::parse(res.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// GET the authorization URL; the sandbox auto-consents and redirects to the callback.
    pub async fn follow_auto_consent(&self, authorize: &Url) -> Url {
        let res = self.http.get(authorize.clone()).send().await.unwrap();
        Browser::location(&res)
    }

    /// GET the authorization URL (the consent form), then post the form as a person
    /// would, with `decision` `approve` or `deny`. Returns the callback URL.
    pub async fn consent(&self, authorize: &Url, decision: &str) -> Url {
        let page = self.http.get(authorize.clone()).send().await.unwrap();
        assert_eq!(page.status(), reqwest::StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("<form"), "expected the consent form: {html}");
        let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
        form.push(("username".into(), USER.into()));
        form.push(("password".into(), PASSWORD.into()));
        form.push(("decision".into(), decision.into()));
        let mut post = authorize.clone();
        post.set_query(None);
        let res = self.http.post(post).form(&form).send().await.unwrap();
        Browser::location(&res)
    }

    /// GET the callback; returns the status and page.
    pub async fn callback(&self, callback: &Url) -> (u16, String) {
        let res = self.http.get(callback.clone()).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }
}

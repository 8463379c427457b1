//! Shared harness for the sandbox tests: a sandbox on port 0 with a manual clock, one
//! registered OAuth client and one funded user, plus one helper per HTTP action.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use rust_decimal::dec;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use treasury::clock::Clock;
use treasury::sandbox::{NewUser, OAuthClientConfig, Sandbox, SandboxConfig, SandboxUser};

pub const CLIENT_ID: &str = "busha-oauth2-10d3cdb5-dda3-451a-87fc-9d6ccb0bb691-test";
pub const CLIENT_SECRET: &str = "sandbox-client-secret";
pub const REDIRECT_URI: &str = "http://localhost:8765/oauth/callback";
pub const USER_NAME: &str = "ada";
pub const USER_PASSWORD: &str = "lovelace";

/// Every resource scope the treasury worker asks for.
pub const WORKER_SCOPES: [&str; 9] = [
    "balances:read",
    "quotes:read",
    "quotes:write",
    "transfers:read",
    "transfers:write",
    "recipients:read",
    "recipients:write",
    "transactions:read",
    "offline_access",
];

/// A bank account the sandbox's name enquiry knows.
pub const BANK_CODE: &str = "000013";
pub const ACCOUNT_NUMBER: &str = "0123456789";
pub const ACCOUNT_NAME: &str = "SOSANYA DICKSON OLUMIDE";

/// The instant every test sandbox starts at; only `clock().advance` moves it.
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .expect("a valid RFC 3339 instant")
        .with_timezone(&Utc)
}

/// A sandbox with a manual clock, the client above and a user `ada` holding
/// 1,000 USDT and 500,000 NGN.
pub struct TestSandbox {
    pub sb: Sandbox,
    /// Never follows redirects, so that tests can read `Location`.
    pub http: reqwest::Client,
    pub user: SandboxUser,
}

/// A response, with the body parsed as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    async fn read(res: reqwest::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("read the response body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.name` of a Busha error envelope.
    pub fn error_name(&self) -> &str {
        self.body["error"]["name"].as_str().unwrap_or_default()
    }

    /// `data.id` of a success envelope.
    pub fn id(&self) -> String {
        self.body["data"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no data.id in {}", self.body))
            .to_string()
    }
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build a reqwest client")
}

impl TestSandbox {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the default test config after `edit` has changed it.
    pub async fn start_with(edit: impl FnOnce(&mut SandboxConfig)) -> Self {
        let mut config = SandboxConfig {
            clock: Clock::manual(epoch()),
            clients: vec![OAuthClientConfig::new(
                CLIENT_ID,
                CLIENT_SECRET,
                REDIRECT_URI,
            )],
            ..SandboxConfig::default()
        };
        edit(&mut config);
        let sb = Sandbox::start(config).await.expect("start the sandbox");
        let user = sb.create_user(
            NewUser::new(USER_NAME)
                .password(USER_PASSWORD)
                .balance("USDT", dec!(1000))
                .balance("NGN", dec!(500000)),
        );
        sb.add_bank_account(BANK_CODE, ACCOUNT_NUMBER, ACCOUNT_NAME);
        TestSandbox {
            sb,
            http: no_redirects(),
            user,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.sb
            .url()
            .join(path.trim_start_matches('/'))
            .expect("a valid path")
            .to_string()
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.sb.clock().advance(by);
    }

    /// An access token for `ada` with exactly `scopes`, skipping the browser flow.
    pub fn token(&self, scopes: &[&str]) -> String {
        self.sb
            .mint_tokens(CLIENT_ID, &self.user.id, scopes)
            .access_token
    }

    /// An access token with every scope the worker uses.
    pub fn worker_token(&self) -> String {
        self.token(&WORKER_SCOPES)
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        let res = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("send GET");
        Reply::read(res).await
    }

    pub async fn get_anonymous(&self, path: &str) -> Reply {
        let res = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("send GET");
        Reply::read(res).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        let res = self.try_post(path, token, body).await.expect("send POST");
        Reply::read(res).await
    }

    /// A POST whose transport failure the test wants to see.
    pub async fn try_post(
        &self,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        let res = self
            .http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("send DELETE");
        Reply::read(res).await
    }

    /// Creates the flat-shape NGN bank recipient for the registered account.
    pub async fn create_recipient(&self, token: &str) -> String {
        let reply = self
            .post("/v1/recipients", token, &flat_recipient(ACCOUNT_NUMBER))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.id()
    }

    /// `POST /v1/quotes`; the caller checks the status.
    pub async fn quote(&self, token: &str, body: Value) -> Reply {
        self.post("/v1/quotes", token, &body).await
    }

    /// A USDT → NGN bank payout quote for `usdt`, asserted created.
    pub async fn payout_quote(&self, token: &str, recipient_id: &str, usdt: &str) -> Value {
        let reply = self.quote(token, payout_body(recipient_id, usdt)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["data"].clone()
    }

    pub async fn transfer(&self, token: &str, quote_id: &str) -> Reply {
        self.post("/v1/transfers", token, &json!({ "quote_id": quote_id }))
            .await
    }

    /// `available.amount` of `ada`'s balance in `currency`, over HTTP.
    pub async fn available(&self, token: &str, currency: &str) -> rust_decimal::Decimal {
        let reply = self.get(&format!("/v1/balances/{currency}"), token).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["data"]["available"]["amount"]
            .as_str()
            .expect("amount is a string")
            .parse()
            .expect("amount is a decimal")
    }
}

/// A `2025-07-11` flat NGN bank recipient.
pub fn flat_recipient(account_number: &str) -> Value {
    json!({
        "type": "ngn_bank", "currency": "NGN", "country_code": "NG",
        "bank_name": "Guaranty Trust Bank", "bank_code": BANK_CODE,
        "account_number": account_number, "account_name": ACCOUNT_NAME,
    })
}

/// A `2025-06-01` legacy NGN bank recipient.
pub fn legacy_recipient(account_number: &str) -> Value {
    json!({
        "currency_id": "NGN", "country_id": "NG", "type": "ngn_bank_transfer",
        "legal_entity_type": "business",
        "fields": [
            { "name": "bank_name", "value": "Access Bank" },
            { "name": "bank_code", "value": "000014" },
            { "name": "account_number", "value": account_number },
            { "name": "account_name", "value": "ADA LOVELACE LTD" },
        ],
    })
}

pub fn payout_body(recipient_id: &str, usdt: &str) -> Value {
    json!({
        "source_currency": "USDT", "target_currency": "NGN", "source_amount": usdt,
        "pay_out": { "type": "bank_transfer", "recipient_id": recipient_id },
    })
}

/// A fresh PKCE pair: (verifier, S256 challenge).
pub fn pkce_pair() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The query pairs of a URL, as a map (repeated names keep the last value).
pub fn query_map(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The decoded (unverified) header and claims of a JWT.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = |what: &str| -> Value {
        let part = parts.next().unwrap_or_else(|| panic!("JWT has no {what}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("JWT {what} is not base64url: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT {what} is not JSON: {e}"))
    };
    let header = decode("header");
    let claims = decode("claims");
    (header, claims)
}

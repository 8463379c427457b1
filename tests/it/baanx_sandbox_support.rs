//! A Baanx sandbox for tests: a manual clock, one custodial tenant, and helpers that
//! walk the OAuth flows over real HTTP.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use treasury::clock::Clock;
use treasury::sandbox::baanx::{
    BaanxClient, BaanxConfig, BaanxSandbox, BaanxUser, NewBaanxUser, NewWallet, Region, WalletInfo,
};

use crate::support::{epoch, no_redirects, pkce_pair};

pub const KEY: &str = "bx-client-key";
pub const SECRET: &str = "bx-secret-key-0123456789";
pub const REDIRECT: &str = "https://treasury.example/baanx/callback";
pub const EMAIL: &str = "ada@example.com";
pub const PASSWORD: &str = "correct horse";

pub struct Bx {
    pub sb: BaanxSandbox,
    /// Never follows redirects.
    pub http: reqwest::Client,
    pub user: BaanxUser,
}

/// A response with its body as JSON (`Null` when not JSON) and as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn location(&self) -> url::Url {
        url::Url::parse(self.header("location").expect("a Location header")).expect("a URL")
    }
}

/// A request being built: method, path, bearer, body, region, extra headers.
pub struct Call<'a> {
    bx: &'a Bx,
    req: reqwest::RequestBuilder,
}

impl Call<'_> {
    pub fn bearer(mut self, token: &str) -> Self {
        self.req = self.req.bearer_auth(token);
        self
    }
    pub fn json(mut self, body: Value) -> Self {
        self.req = self.req.json(&body);
        self
    }
    pub fn us(mut self) -> Self {
        self.req = self.req.header("x-us-env", "true");
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.req = self.req.header(name, value);
        self
    }
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        self.req = self.req.form(pairs);
        self
    }
    pub async fn send(self) -> Answer {
        let _ = self.bx;
        let res = self.req.send().await.expect("send the request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("read the body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }
}

/// Tokens from the token endpoint, with the verifier they were issued against.
pub struct Grant {
    pub access: String,
    pub refresh: String,
    pub body: Value,
}

impl Bx {
    pub async fn start() -> Bx {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut BaanxConfig)) -> Bx {
        let mut config = BaanxConfig {
            clock: Clock::manual(epoch()),
            clients: vec![BaanxClient::new(KEY, SECRET, REDIRECT)],
            ..BaanxConfig::default()
        };
        edit(&mut config);
        let sb = BaanxSandbox::start(config)
            .await
            .expect("start the Baanx sandbox");
        let user = sb.create_user(NewBaanxUser::new(EMAIL, PASSWORD));
        Bx {
            sb,
            http: no_redirects(),
            user,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.sb
            .url()
            .join(path.trim_start_matches('/'))
            .expect("a path")
            .to_string()
    }

    pub fn advance(&self, by: Duration) {
        self.sb.clock().advance(by);
    }

    /// A request with the tenant's client key.
    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        let req = self
            .http
            .request(method, self.url(path))
            .header("x-client-key", KEY);
        Call { bx: self, req }
    }

    /// A request without any client key.
    pub fn bare(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            bx: self,
            req: self.http.request(method, self.url(path)),
        }
    }

    /// `initiate` with `mode=api` and the given challenge: the session token.
    pub async fn initiate(&self, challenge: &str, region: Region) -> String {
        let path = format!(
            "/v1/auth/oauth/authorize/initiate?response_type=code&client_id={KEY}&redirect_uri={REDIRECT}&state=state-0123456789abcdef&code_challenge={challenge}&code_challenge_method=S256&mode=api"
        );
        let mut call = self.call(Method::GET, &path);
        if region == Region::Us {
            call = call.us();
        }
        let a = call.send().await;
        assert_eq!(a.status, StatusCode::OK, "initiate: {}", a.text);
        a.body["token"]
            .as_str()
            .expect("a session token")
            .to_string()
    }

    /// A login token for `email`, without OTP.
    pub async fn login(&self, email: &str, password: &str, region: Region) -> String {
        let mut call = self
            .call(Method::POST, "/v1/auth/login")
            .json(json!({ "email": email, "password": password }));
        if region == Region::Us {
            call = call.us();
        }
        let a = call.send().await;
        assert_eq!(a.status, StatusCode::OK, "login: {}", a.text);
        a.body["accessToken"]
            .as_str()
            .expect("an accessToken")
            .to_string()
    }

    /// API mode up to the code: (code, verifier).
    pub async fn code_for(&self, email: &str, password: &str, region: Region) -> (String, String) {
        let (verifier, challenge) = pkce_pair();
        let session = self.initiate(&challenge, region).await;
        let login = self.login(email, password, region).await;
        let mut call = self
            .call(Method::POST, "/v1/auth/oauth/authorize")
            .bearer(&login)
            .json(json!({ "token": session }));
        if region == Region::Us {
            call = call.us();
        }
        let a = call.send().await;
        assert_eq!(a.status, StatusCode::OK, "authorize: {}", a.text);
        (
            a.body["code"].as_str().expect("a code").to_string(),
            verifier,
        )
    }

    pub async fn exchange(&self, code: &str, verifier: &str, region: Region) -> Answer {
        let mut call = self.call(Method::POST, "/v1/auth/oauth/token").json(json!({
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": REDIRECT, "code_verifier": verifier,
        }));
        if region == Region::Us {
            call = call.us();
        }
        call.send().await
    }

    pub async fn refresh(&self, refresh: &str) -> Answer {
        self.call(Method::POST, "/v1/auth/oauth/token")
            .json(json!({ "grant_type": "refresh_token", "refresh_token": refresh }))
            .send()
            .await
    }

    /// The default user through API mode to tokens.
    pub async fn grant(&self) -> Grant {
        let (code, verifier) = self.code_for(EMAIL, PASSWORD, Region::International).await;
        let a = self.exchange(&code, &verifier, Region::International).await;
        assert_eq!(a.status, StatusCode::OK, "token: {}", a.text);
        grant_of(a)
    }

    /// An internal wallet of the default user.
    pub fn wallet(
        &self,
        network: &str,
        currency: &str,
        balance: rust_decimal::Decimal,
    ) -> WalletInfo {
        self.sb
            .set_wallet(
                &self.user.id,
                NewWallet {
                    network: network.into(),
                    currency: currency.into(),
                    balance,
                },
            )
            .expect("a supported wallet")
    }
}

pub fn grant_of(a: Answer) -> Grant {
    Grant {
        access: a.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        refresh: a.body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string(),
        body: a.body,
    }
}

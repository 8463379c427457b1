//! The sandbox's OAuth2/OIDC issuer against `busha-api.md` §1, over real HTTP: the full
//! authorization-code + PKCE flow with the `oauth2` crate (both consent paths), refresh
//! rotation and family revocation, and one test per rule of the issuer.

use std::collections::BTreeMap;

use chrono::Duration;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use serde_json::Value;
use treasury::sandbox::{LedgerEvent, OAuthClientConfig};

use crate::support::{
    CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Reply, TestSandbox, USER_NAME, USER_PASSWORD,
    jwt_parts, pkce_pair, query_map,
};

// ------------------------------------------------------------------ helpers

type FlowClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn flow_client(ts: &TestSandbox) -> FlowClient {
    BasicClient::new(ClientId::new(CLIENT_ID.into()))
        .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
        .set_auth_uri(AuthUrl::new(ts.url("/oauth2/auth")).expect("auth URL"))
        .set_token_uri(TokenUrl::new(ts.url("/oauth2/token")).expect("token URL"))
        .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into()).expect("redirect URL"))
        .set_auth_type(AuthType::BasicAuth)
}

fn assert_invalid_grant<RE: std::error::Error + 'static>(
    result: Result<BasicTokenResponse, RequestTokenError<RE, oauth2::basic::BasicErrorResponse>>,
) {
    match result {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidGrant, "{e:?}")
        }
        Err(other) => panic!("expected invalid_grant, got {other:?}"),
        Ok(_) => panic!("expected invalid_grant, got tokens"),
    }
}

#[derive(Clone, Copy)]
enum Consent {
    /// The sandbox's `auto_consent` approves at once.
    Auto,
    /// A script posts the consent form with the user's credentials.
    Form,
}

/// An authorization request with valid defaults, edited by each test.
struct AuthRequest {
    params: BTreeMap<&'static str, String>,
    verifier: String,
}

impl AuthRequest {
    fn new(scope: &str) -> Self {
        let (verifier, challenge) = pkce_pair();
        let params = [
            ("response_type", "code".to_string()),
            ("client_id", CLIENT_ID.to_string()),
            ("redirect_uri", REDIRECT_URI.to_string()),
            ("scope", scope.to_string()),
            ("state", "state-4f8a1c2e9b7d6a5f".to_string()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".to_string()),
        ]
        .into_iter()
        .collect();
        AuthRequest { params, verifier }
    }

    fn set(mut self, name: &'static str, value: &str) -> Self {
        self.params.insert(name, value.to_string());
        self
    }

    fn without(mut self, name: &'static str) -> Self {
        self.params.remove(name);
        self
    }

    fn url(&self, ts: &TestSandbox) -> url::Url {
        let mut url = url::Url::parse(&ts.url("/oauth2/auth")).expect("auth URL");
        url.query_pairs_mut().extend_pairs(self.params.iter());
        url
    }

    async fn get(&self, ts: &TestSandbox) -> Reply {
        let res = ts
            .http
            .get(self.url(ts))
            .send()
            .await
            .expect("GET /oauth2/auth");
        reply_of(res).await
    }

    /// Posts the consent form: the original parameters plus credentials and decision.
    async fn submit(&self, ts: &TestSandbox, decision: &str) -> Reply {
        let mut form: Vec<(&str, &str)> =
            self.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form.extend([
            ("username", USER_NAME),
            ("password", USER_PASSWORD),
            ("decision", decision),
        ]);
        let res = ts
            .http
            .post(ts.url("/oauth2/auth"))
            .form(&form)
            .send()
            .await
            .expect("POST /oauth2/auth");
        reply_of(res).await
    }

    /// Runs the request through an auto-consent sandbox and returns the code.
    async fn code(&self, ts: &TestSandbox) -> String {
        let reply = self.get(ts).await;
        let query = redirect_query(&reply);
        query
            .get("code")
            .unwrap_or_else(|| panic!("no code in redirect: {query:?}"))
            .clone()
    }
}

async fn reply_of(res: reqwest::Response) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("read body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

/// The query of a 302 back to our redirect URI.
fn redirect_query(reply: &Reply) -> BTreeMap<String, String> {
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    let location = reply.header("location").expect("a Location header");
    assert!(
        location.starts_with(REDIRECT_URI),
        "redirected to {location}, not the registered redirect URI"
    );
    query_map(&url::Url::parse(location).expect("Location is a URL"))
}

async fn auto_consent_sandbox() -> TestSandbox {
    TestSandbox::start_with(|c| c.auto_consent = Some(USER_NAME.into())).await
}

/// `POST /oauth2/token` with HTTP Basic client authentication.
async fn token_call(ts: &TestSandbox, form: &[(&str, &str)]) -> Reply {
    token_call_as(ts, CLIENT_ID, CLIENT_SECRET, form).await
}

async fn token_call_as(ts: &TestSandbox, id: &str, secret: &str, form: &[(&str, &str)]) -> Reply {
    let res = ts
        .http
        .post(ts.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .expect("POST /oauth2/token");
    reply_of(res).await
}

async fn exchange(ts: &TestSandbox, code: &str, verifier: &str, redirect_uri: &str) -> Reply {
    token_call(
        ts,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(ts: &TestSandbox, refresh_token: &str) -> Reply {
    token_call(
        ts,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn revoke(ts: &TestSandbox, token: &str) -> Reply {
    let res = ts
        .http
        .post(ts.url("/oauth2/revoke"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", token), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .expect("POST /oauth2/revoke");
    reply_of(res).await
}

/// Tokens from a full auto-consent flow with `scope`.
async fn tokens_for(ts: &TestSandbox, scope: &str) -> Value {
    let request = AuthRequest::new(scope);
    let code = request.code(ts).await;
    let reply = exchange(ts, &code, &request.verifier, REDIRECT_URI).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn oauth_error(reply: &Reply) -> &str {
    reply.body["error"].as_str().unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
}

/// The OAuth events of the ledger, in order.
fn token_events(ts: &TestSandbox) -> Vec<LedgerEvent> {
    ts.sb
        .ledger()
        .into_iter()
        .map(|e| e.event)
        .filter(|e| {
            matches!(
                e,
                LedgerEvent::TokenIssued { .. }
                    | LedgerEvent::RefreshReplayed { .. }
                    | LedgerEvent::FamilyRevoked { .. }
            )
        })
        .collect()
}

// ------------------------------------------------------------------ the full flow

async fn full_flow(consent: Consent) {
    // Arrange
    let ts = match consent {
        Consent::Auto => auto_consent_sandbox().await,
        Consent::Form => TestSandbox::start().await,
    };
    let client = flow_client(&ts);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(
            ["openid", "offline_access", "balances:read"].map(|s| Scope::new(s.to_string())),
        )
        .add_extra_param("nonce", "nonce-5d1c7e0a")
        .set_pkce_challenge(challenge)
        .url();

    // Act: authorize
    let res = ts
        .http
        .get(auth_url.clone())
        .send()
        .await
        .expect("GET auth URL");
    let redirect = match consent {
        Consent::Auto => reply_of(res).await,
        Consent::Form => {
            let page = reply_of(res).await;
            assert_eq!(page.status, StatusCode::OK);
            assert!(
                page.body
                    .as_str()
                    .is_some_and(|html| html.contains("<form")),
                "the consent screen is a form: {}",
                page.body
            );
            let mut form: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
            form.extend([
                ("username".into(), USER_NAME.into()),
                ("password".into(), USER_PASSWORD.into()),
                ("decision".into(), "approve".into()),
            ]);
            let res = ts
                .http
                .post(ts.url("/oauth2/auth"))
                .form(&form)
                .send()
                .await
                .expect("POST consent");
            reply_of(res).await
        }
    };
    let query = redirect_query(&redirect);
    assert_eq!(
        query.get("state"),
        Some(csrf.secret()),
        "state must round-trip"
    );
    let code = AuthorizationCode::new(query["code"].clone());

    // Act: exchange, then refresh twice
    let first = client
        .exchange_code(code)
        .set_pkce_verifier(verifier)
        .request_async(&ts.http)
        .await
        .expect("exchange the code");
    let rt0 = first
        .refresh_token()
        .expect("offline_access gives a refresh token")
        .clone();
    let second = client
        .exchange_refresh_token(&rt0)
        .request_async(&ts.http)
        .await
        .expect("first refresh");
    let rt1 = second
        .refresh_token()
        .expect("rotated refresh token")
        .clone();
    let third = client
        .exchange_refresh_token(&rt1)
        .request_async(&ts.http)
        .await
        .expect("second refresh");
    let rt2 = third
        .refresh_token()
        .expect("rotated refresh token")
        .clone();
    let replay = client
        .exchange_refresh_token(&rt0)
        .request_async(&ts.http)
        .await;
    let newest = client
        .exchange_refresh_token(&rt2)
        .request_async(&ts.http)
        .await;

    // Assert
    assert_ne!(rt0.secret(), rt1.secret(), "refresh tokens rotate");
    assert_ne!(rt1.secret(), rt2.secret(), "refresh tokens rotate");
    assert_invalid_grant(replay);
    assert_invalid_grant(newest);
    let family = match token_events(&ts).first() {
        Some(LedgerEvent::TokenIssued { family_id, .. }) => family_id.clone(),
        other => panic!("the first OAuth event is not TokenIssued: {other:?}"),
    };
    let issued = |grant: &str| LedgerEvent::TokenIssued {
        client_id: CLIENT_ID.into(),
        user_id: ts.user.id.clone(),
        family_id: family.clone(),
        grant: grant.into(),
    };
    assert_eq!(
        token_events(&ts),
        vec![
            issued("authorization_code"),
            issued("refresh_token"),
            issued("refresh_token"),
            LedgerEvent::RefreshReplayed {
                client_id: CLIENT_ID.into(),
                user_id: ts.user.id.clone(),
                family_id: family.clone(),
            },
            LedgerEvent::FamilyRevoked {
                family_id: family.clone(),
                user_id: ts.user.id.clone(),
                reason: "refresh token replayed".into(),
            },
        ]
    );
}

#[tokio::test]
async fn full_flow_with_auto_consent_rotates_refresh_tokens_and_a_replay_revokes_the_family() {
    full_flow(Consent::Auto).await;
}

#[tokio::test]
async fn full_flow_through_the_consent_form_rotates_refresh_tokens_and_a_replay_revokes_the_family()
{
    full_flow(Consent::Form).await;
}

// ------------------------------------------------------------------ authorization rules

#[tokio::test]
async fn authorization_without_a_pkce_challenge_is_refused_with_invalid_request_and_the_state() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("balances:read")
        .without("code_challenge")
        .without("code_challenge_method");

    let query = redirect_query(&request.get(&ts).await);

    assert_eq!(
        query.get("error").map(String::as_str),
        Some("invalid_request")
    );
    assert_eq!(query.get("state"), request.params.get("state"));
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn authorization_with_the_plain_pkce_method_is_refused_with_invalid_request_and_the_state() {
    let ts = auto_consent_sandbox().await;
    let verifier = "a".repeat(43);
    let request = AuthRequest::new("balances:read")
        .set("code_challenge", &verifier)
        .set("code_challenge_method", "plain");

    let query = redirect_query(&request.get(&ts).await);

    assert_eq!(
        query.get("error").map(String::as_str),
        Some("invalid_request")
    );
    assert_eq!(query.get("state"), request.params.get("state"));
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn a_reused_authorization_code_is_refused_and_revokes_what_it_issued() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("offline_access balances:read");
    let code = request.code(&ts).await;
    let first = exchange(&ts, &code, &request.verifier, REDIRECT_URI).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);

    let second = exchange(&ts, &code, &request.verifier, REDIRECT_URI).await;
    let refresh_after_replay = refresh(&ts, str_of(&first.body, "refresh_token")).await;

    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&second), "invalid_grant");
    // RFC 6749 §4.1.2: a replayed code should revoke the tokens it produced (the default).
    assert_eq!(oauth_error(&refresh_after_replay), "invalid_grant");
}

#[tokio::test]
async fn an_authorization_code_expires_after_ten_minutes() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("balances:read");
    let code = request.code(&ts).await;

    ts.advance(Duration::minutes(11));
    let reply = exchange(&ts, &code, &request.verifier, REDIRECT_URI).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&reply), "invalid_grant");
}

#[tokio::test]
async fn a_mismatched_redirect_uri_gets_an_error_page_not_a_redirect() {
    let ts = auto_consent_sandbox().await;
    // Only the trailing slash differs: redirect URIs are compared byte for byte.
    let request =
        AuthRequest::new("balances:read").set("redirect_uri", &format!("{REDIRECT_URI}/"));

    let reply = request.get(&ts).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.header("location").is_none(),
        "no redirect to an unregistered URI"
    );
    assert!(
        reply
            .body
            .as_str()
            .is_some_and(|html| html.contains("redirect_uri")),
        "the error page says why: {}",
        reply.body
    );
}

#[tokio::test]
async fn a_redirect_uri_other_than_the_authorized_one_is_invalid_grant_at_the_token_endpoint() {
    let ts = auto_consent_sandbox().await;
    let other = "http://localhost:8765/other-callback";
    let mut client = OAuthClientConfig::new(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    client.redirect_uris.push(other.into());
    ts.sb.register_client(client);
    let request = AuthRequest::new("balances:read");
    let code = request.code(&ts).await;

    let reply = exchange(&ts, &code, &request.verifier, other).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&reply), "invalid_grant");
}

#[tokio::test]
async fn a_scope_outside_the_catalogue_is_invalid_scope() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("balances:read wallets:drain");

    let query = redirect_query(&request.get(&ts).await);

    assert_eq!(
        query.get("error").map(String::as_str),
        Some("invalid_scope")
    );
    assert_eq!(query.get("state"), request.params.get("state"));
}

#[tokio::test]
async fn a_scope_outside_the_clients_approved_scopes_is_invalid_scope() {
    let ts = auto_consent_sandbox().await;
    let mut client = OAuthClientConfig::new(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    client.scopes = vec!["balances:read".into(), "offline_access".into()];
    ts.sb.register_client(client);
    let request = AuthRequest::new("balances:read transfers:write");

    let query = redirect_query(&request.get(&ts).await);

    assert_eq!(
        query.get("error").map(String::as_str),
        Some("invalid_scope")
    );
    assert_eq!(query.get("state"), request.params.get("state"));
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn authorization_without_state_is_refused() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("balances:read").without("state");

    let query = redirect_query(&request.get(&ts).await);

    assert_eq!(
        query.get("error").map(String::as_str),
        Some("invalid_request")
    );
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn a_wrong_client_secret_gets_401_invalid_client() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("balances:read");
    let code = request.code(&ts).await;

    let reply = token_call_as(
        &ts,
        CLIENT_ID,
        "not-the-secret",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &request.verifier),
        ],
    )
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(oauth_error(&reply), "invalid_client");
}

#[tokio::test]
async fn client_secret_post_is_refused_with_invalid_client() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("balances:read");
    let code = request.code(&ts).await;

    let res = ts
        .http
        .post(ts.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &request.verifier),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("POST /oauth2/token");
    let reply = reply_of(res).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(oauth_error(&reply), "invalid_client");
}

#[tokio::test]
async fn cancelling_consent_redirects_with_access_denied_and_the_state() {
    let ts = TestSandbox::start().await;
    let request = AuthRequest::new("balances:read");

    let query = redirect_query(&request.submit(&ts, "deny").await);

    assert_eq!(
        query.get("error").map(String::as_str),
        Some("access_denied")
    );
    assert_eq!(query.get("state"), request.params.get("state"));
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn an_id_token_comes_only_with_openid_and_carries_the_nonce() {
    let ts = auto_consent_sandbox().await;
    let with = AuthRequest::new("openid balances:read").set("nonce", "nonce-a1b2c3d4");
    let code = with.code(&ts).await;

    let with_openid = exchange(&ts, &code, &with.verifier, REDIRECT_URI)
        .await
        .body;
    let without_openid = tokens_for(&ts, "balances:read").await;

    let (_, claims) = jwt_parts(str_of(&with_openid, "id_token"));
    assert_eq!(claims["nonce"], "nonce-a1b2c3d4");
    assert_eq!(claims["sub"], ts.user.id.as_str());
    assert_eq!(claims["iss"], ts.sb.issuer());
    assert!(
        claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == CLIENT_ID)),
        "aud names the client: {claims}"
    );
    assert!(without_openid.get("id_token").is_none(), "{without_openid}");
}

#[tokio::test]
async fn a_refresh_token_comes_only_with_offline_access() {
    let ts = auto_consent_sandbox().await;

    let with = tokens_for(&ts, "offline_access balances:read").await;
    let without = tokens_for(&ts, "balances:read").await;

    assert!(
        with["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(without.get("refresh_token").is_none(), "{without}");
}

#[tokio::test]
async fn the_access_token_is_an_rs256_jwt_signed_by_a_published_key() {
    let ts = auto_consent_sandbox().await;
    let tokens = tokens_for(&ts, "balances:read transfers:read").await;
    let jwks: Value = ts
        .http
        .get(ts.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("GET jwks")
        .json()
        .await
        .expect("JWKS is JSON");

    let access = str_of(&tokens, "access_token");
    let (header, claims) = jwt_parts(access);

    assert_eq!(header["alg"], "RS256");
    let kid = str_of(&header, "kid");
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS {jwks}"));
    // The signature verifies with the published key, not merely the kid matching.
    let decoding =
        jsonwebtoken::DecodingKey::from_rsa_components(str_of(key, "n"), str_of(key, "e"))
            .expect("RSA components");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false; // the sandbox clock is not the wall clock
    validation.set_issuer(&[ts.sb.issuer()]);
    jsonwebtoken::decode::<Value>(access, &decoding, &validation).expect("signature verifies");
    for claim in ["iss", "sub", "client_id", "scp", "exp", "iat", "jti"] {
        assert!(
            claims.get(claim).is_some(),
            "claim {claim} missing from {claims}"
        );
    }
    assert_eq!(claims["sub"], ts.user.id.as_str());
    assert_eq!(claims["client_id"], CLIENT_ID);
    assert_eq!(
        claims["scp"],
        serde_json::json!(["balances:read", "transfers:read"])
    );
    assert_eq!(
        claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .map(|(e, i)| e - i),
        Some(3600)
    );
}

#[tokio::test]
async fn discovery_advertises_s256_only_and_the_issuers_endpoints() {
    let ts = TestSandbox::start().await;

    let discovery: Value = ts
        .http
        .get(ts.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("GET discovery")
        .json()
        .await
        .expect("discovery is JSON");

    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(discovery["issuer"], ts.sb.issuer());
    let iss = ts.sb.issuer();
    assert_eq!(discovery["token_endpoint"], format!("{iss}/oauth2/token"));
    assert_eq!(
        discovery["authorization_endpoint"],
        format!("{iss}/oauth2/auth")
    );
    assert_eq!(
        discovery["revocation_endpoint"],
        format!("{iss}/oauth2/revoke")
    );
    assert_eq!(
        discovery["jwks_uri"],
        format!("{iss}/.well-known/jwks.json")
    );
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic"])
    );
}

#[tokio::test]
async fn tokens_survive_a_key_rotation_until_the_old_key_is_retired() {
    let ts = TestSandbox::start().await;
    let old = ts.token(&["balances:read"]);
    ts.sb.rotate_keys(false);
    let new = ts.token(&["balances:read"]);

    let old_after_rotation = ts.get("/v1/balances", &old).await;
    let new_after_rotation = ts.get("/v1/balances", &new).await;
    ts.sb.rotate_keys(true);
    let old_after_retirement = ts.get("/v1/balances", &old).await;
    let newest = ts.get("/v1/balances", &ts.token(&["balances:read"])).await;

    assert_ne!(jwt_parts(&old).0["kid"], jwt_parts(&new).0["kid"]);
    assert_eq!(old_after_rotation.status, StatusCode::OK);
    assert_eq!(new_after_rotation.status, StatusCode::OK);
    assert_eq!(old_after_retirement.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old_after_retirement.error_name(), "unauthorized");
    assert_eq!(newest.status, StatusCode::OK);
}

#[tokio::test]
async fn revoking_a_refresh_token_answers_200_and_kills_its_family() {
    let ts = auto_consent_sandbox().await;
    let tokens = tokens_for(&ts, "offline_access balances:read").await;
    let rt = str_of(&tokens, "refresh_token");

    let revoked = revoke(&ts, rt).await;
    let after = refresh(&ts, rt).await;

    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(after.status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&after), "invalid_grant");
    assert!(
        token_events(&ts)
            .iter()
            .any(|e| matches!(e, LedgerEvent::FamilyRevoked { reason, .. } if reason == "revoked by the client")),
        "the ledger records the revocation"
    );
}

#[tokio::test]
async fn revoking_an_unknown_token_answers_200() {
    let ts = TestSandbox::start().await;

    let reply = revoke(&ts, "no-such-token").await;

    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_token_slides_but_dies_after_31_unused_days() {
    let ts = auto_consent_sandbox().await;
    let tokens = tokens_for(&ts, "offline_access balances:read").await;

    // Used on day 29, the token rotates and the new one gets a fresh 30 days.
    ts.advance(Duration::days(29));
    let slid = refresh(&ts, str_of(&tokens, "refresh_token")).await;
    assert_eq!(slid.status, StatusCode::OK, "{}", slid.body);
    // Left unused for 31 days, it is refused.
    ts.advance(Duration::days(31));
    let expired = refresh(&ts, str_of(&slid.body, "refresh_token")).await;

    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&expired), "invalid_grant");
}

#[tokio::test]
async fn a_disconnected_user_cannot_refresh() {
    let ts = auto_consent_sandbox().await;
    let tokens = tokens_for(&ts, "offline_access balances:read").await;

    let families = ts.sb.disconnect_user(&ts.user.id);
    let reply = refresh(&ts, str_of(&tokens, "refresh_token")).await;

    assert_eq!(families, 1);
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&reply), "invalid_grant");
}

#[tokio::test]
async fn a_refresh_token_issued_to_another_client_is_invalid_grant() {
    // A second, registered client cannot redeem the first client's refresh token.
    let ts = auto_consent_sandbox().await;
    ts.sb.register_client(OAuthClientConfig::new(
        "other-client-test",
        "other-secret",
        REDIRECT_URI,
    ));
    let tokens = tokens_for(&ts, "offline_access balances:read").await;

    let reply = token_call_as(
        &ts,
        "other-client-test",
        "other-secret",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", str_of(&tokens, "refresh_token")),
        ],
    )
    .await;

    assert_eq!(oauth_error(&reply), "invalid_grant");
}

#[tokio::test]
async fn a_pkce_verifier_that_does_not_match_the_challenge_is_invalid_grant() {
    let ts = auto_consent_sandbox().await;
    let request = AuthRequest::new("balances:read");
    let code = request.code(&ts).await;
    let (other_verifier, _) = pkce_pair();

    let reply = exchange(&ts, &code, &other_verifier, REDIRECT_URI).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&reply), "invalid_grant");
}

#[tokio::test]
async fn a_client_that_is_not_approved_gets_unauthorized_client() {
    let ts = auto_consent_sandbox().await;
    let mut client = OAuthClientConfig::new(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI);
    client.status = "suspended".into();
    ts.sb.register_client(client);
    let request = AuthRequest::new("balances:read");

    let query = redirect_query(&request.get(&ts).await);

    assert_eq!(
        query.get("error").map(String::as_str),
        Some("unauthorized_client")
    );
    assert_eq!(query.get("state"), request.params.get("state"));
    assert!(!query.contains_key("code"));
}

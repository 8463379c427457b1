//! Busha's OAuth2 / OIDC endpoints, on the `openidconnect` crate: discovery (issuer
//! pinned), the PKCE S256 authorization URL, the code exchange with `id_token`
//! verification, refresh and revocation, all with HTTP Basic client auth.
//!
//! Its one job beyond the crate is to classify what a refresh did, because that
//! decides whether a customer stays connected: refused (`invalid_grant`), never sent,
//! or outcome unknown. No error here carries a token, a response body or a secret.

use std::time::{Duration, Instant};

use chrono::Utc;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreResponseMode,
    CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpClientError, IssuerUrl,
    JsonWebKeySetUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, RequestTokenError, RevocationUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::crypto::RefreshToken;
use super::token_http::{TokenHttp, TokenHttpError, unavailable_text};
use crate::clock::Clock;
use crate::config::Secret;
use crate::provider::AccessToken;
use crate::untrusted::one_line;

/// Discovery's `revocation_endpoint` (RFC 8414), which core OIDC metadata lacks.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct RevocationMetadata {
    revocation_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for RevocationMetadata {}

type Metadata = ProviderMetadata<
    RevocationMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How to reach the issuer, and as whom.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    pub issuer_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: Url,
    /// Whole-call limit for each token, revoke or discovery call.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl OAuthSettings {
    /// A 15 s call timeout and a 5 s connect timeout.
    pub fn new(issuer_url: Url, client_id: &str, client_secret: Secret, redirect_uri: Url) -> Self {
        Self {
            issuer_url,
            client_id: client_id.into(),
            client_secret,
            redirect_uri,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Busha's refresh-token lifetime: 30 days, sliding (each refresh restarts it;
/// reference §"Tokens"). Busha does not report it, so custody assumes it.
pub const BUSHA_REFRESH_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 3600);

/// Tokens from the token endpoint. Debug never shows a token.
#[derive(Clone, Debug)]
pub struct TokenSet {
    pub access_token: AccessToken,
    /// `expires_in`; `None` when Busha left it out.
    pub expires_in: Option<Duration>,
    pub refresh_token: Option<RefreshToken>,
    /// `scope`; `None` when Busha left it out (then the request's scopes stand).
    pub scopes: Option<Vec<String>>,
    /// How long the refresh token lives unused, when the provider says (Baanx's
    /// `refresh_token_expires_in`); Busha does not.
    pub refresh_expires_in: Option<Duration>,
}

/// What a refresh call did, as far as the grant's fate depends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshFailure {
    /// `invalid_grant` (400 or 401): the refresh token is dead.
    InvalidGrant { description: String },
    /// Nothing reached Busha (the connection was never made): safe to try again.
    NotSent(String),
    /// The request may have been applied (timeout after sending, dropped or unreadable
    /// response, 5xx): the token may already be rotated.
    OutcomeUnknown(String),
    /// Busha refused for another reason (`invalid_client`, `unauthorized_client`, ...):
    /// our configuration, not the customer's grant. Never a 5xx or a 429.
    Refused { error: String, description: String },
    /// A 5xx or 429, with or without an OAuth body (`server_error`,
    /// `temporarily_unavailable`): the issuer did not serve the request. A 429 did
    /// nothing; a 5xx may have come after the rotation, like [`Self::OutcomeUnknown`].
    /// `retry_after` is Busha's `Retry-After`.
    Unavailable {
        retry_after: Option<Duration>,
        detail: String,
    },
}

impl std::fmt::Display for RefreshFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidGrant { description } => write!(f, "invalid_grant ({description})"),
            Self::NotSent(why) => write!(f, "the request never reached Busha: {why}"),
            Self::OutcomeUnknown(why) => write!(f, "outcome unknown: {why}"),
            Self::Refused { error, description } => write!(f, "{error} ({description})"),
            Self::Unavailable { detail, .. } => {
                write!(f, "Busha's token endpoint is unavailable ({detail})")
            }
        }
    }
}

/// A browser authorization about to start: the URL and the secrets to keep for the
/// callback. Debug shows no secret.
pub struct AuthorizationStart {
    pub url: Url,
    pub state: CsrfToken,
    pub verifier: PkceCodeVerifier,
    pub nonce: Nonce,
}

/// Why a code exchange failed, in words an operator can act on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExchangeError {
    #[error(
        "Busha refused the authorization code (invalid_grant: {0}): it expired (codes live 10 minutes), was already used, or its PKCE verifier did not match; start the connection again"
    )]
    CodeRejected(String),
    #[error(
        "Busha rejected our client credentials ({0}): check busha.client_id and TREASURY_BUSHA_CLIENT_SECRET"
    )]
    ClientRejected(String),
    #[error("Busha's token endpoint refused the exchange: {0}")]
    Refused(String),
    #[error("could not complete the exchange with Busha's token endpoint: {0}")]
    Transport(String),
    /// 5xx or 429 on the exchange, with or without an OAuth body: not a refusal.
    #[error("Busha's token endpoint is unavailable ({detail})")]
    Unavailable {
        retry_after: Option<Duration>,
        detail: String,
    },
    #[error("the id_token failed verification: {0}")]
    IdToken(String),
}

/// The token endpoint's answer to a code exchange, not yet accepted: its `id_token` is
/// verified by [`BushaOAuth::verify_subject`]. Debug shows no token.
#[derive(Debug)]
pub struct Exchanged {
    pub tokens: TokenSet,
    id_token: Option<CoreIdToken>,
}

/// Busha's issuer, discovered and pinned. Cheap to share behind an `Arc`.
pub struct BushaOAuth {
    client: Client,
    http: reqwest::Client,
    /// `http` for the token endpoint: 5xx and 429 are never read as refusals.
    token_http: TokenHttp,
    /// Until when Busha's last `Retry-After` from the token endpoint holds: no token
    /// call is sent before it.
    not_before: parking_lot::Mutex<Option<Instant>>,
    client_id: String,
    client_secret: Secret,
    revocation: RevocationUrl,
    timeout: Duration,
    issuer: String,
    issuer_url: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    /// Busha's signing keys, fetched at discovery and again when a token names a key
    /// we do not have (Busha rotated its keys).
    jwks: parking_lot::RwLock<CoreJsonWebKeySet>,
    clock: Clock,
}

impl std::fmt::Debug for BushaOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BushaOAuth")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl BushaOAuth {
    /// Reads discovery and the JWKS from `settings.issuer_url` and pins the issuer.
    /// Fails with a message naming the URL when the issuer cannot be reached or its
    /// discovery document does not name it as issuer.
    pub async fn discover(settings: &OAuthSettings, clock: Clock) -> Result<BushaOAuth, String> {
        let http = reqwest::Client::builder()
            // A redirected token request would carry our Basic credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let issuer_text = settings
            .issuer_url
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let issuer_url = IssuerUrl::new(issuer_text.clone())
            .map_err(|e| format!("busha.issuer_url {issuer_text:?} is not a URL: {e}"))?;
        let metadata = Metadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| {
                format!(
                    "cannot read OIDC discovery from the issuer {issuer_text}: {}",
                    chain(&e)
                )
            })?;
        let issuer = metadata.issuer().as_str().to_string();
        let issuer_url = metadata.issuer().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let jwks = metadata.jwks().clone();
        // Busha documents `/oauth2/revoke` on the issuer; discovery may name it too.
        let revocation = metadata
            .additional_metadata()
            .revocation_endpoint
            .clone()
            .unwrap_or_else(|| format!("{issuer}/oauth2/revoke"));
        let revocation = RevocationUrl::new(revocation)
            .map_err(|e| format!("the revocation endpoint is not a URL: {e}"))?;
        let redirect = RedirectUrl::new(settings.redirect_uri.to_string())
            .map_err(|e| format!("busha.redirect_uri is not a URL: {e}"))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            Some(ClientSecret::new(
                settings.client_secret.expose().to_string(),
            )),
        )
        .set_redirect_uri(redirect);
        Ok(BushaOAuth {
            client,
            token_http: TokenHttp(http.clone()),
            not_before: parking_lot::Mutex::new(None),
            http,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            revocation,
            timeout: settings.timeout,
            issuer_url,
            jwks_uri,
            jwks: parking_lot::RwLock::new(jwks),
            issuer,
            clock,
        })
    }

    /// The whole-call timeout of every request to the issuer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The pinned issuer, as discovery returned it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A PKCE S256 authorization URL with a 32-byte `state` and nonce, asking for
    /// `openid`, `offline_access` and `scopes`.
    pub fn authorization(&self, scopes: &[String]) -> AuthorizationStart {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new_random_len(32),
                || Nonce::new_random_len(32),
            )
            .add_scope(Scope::new("offline_access".into()))
            .set_pkce_challenge(challenge);
        for s in scopes {
            if s != "openid" && s != "offline_access" {
                request = request.add_scope(Scope::new(s.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        AuthorizationStart {
            url,
            state,
            verifier,
            nonce,
        }
    }

    /// Exchanges `code` (HTTP Basic, PKCE verifier). The tokens are not accepted until
    /// [`Self::verify_subject`] has checked the `id_token`; a caller that refuses them
    /// revokes them ([`Self::revoke`]).
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: PkceCodeVerifier,
    ) -> Result<Exchanged, ExchangeError> {
        if let Some(wait) = self.held_back() {
            return Err(ExchangeError::Unavailable {
                retry_after: Some(wait),
                detail: held_back_text(wait),
            });
        }
        let request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| ExchangeError::Refused(e.to_string()))?
            .set_pkce_verifier(verifier);
        let response = request
            .request_async(&self.token_http)
            .await
            .map_err(|e| exchange_error(e, |d| self.note_retry_after(d)))?;
        Ok(Exchanged {
            tokens: token_set(&response),
            id_token: response.id_token().cloned(),
        })
    }

    /// Verifies the exchange's `id_token`: signature against the JWKS (fetched once
    /// more if it names a key we lack), `iss`, `aud`, `exp` and `nonce`. Returns the
    /// verified subject.
    pub async fn verify_subject(
        &self,
        exchanged: &Exchanged,
        nonce: &Nonce,
    ) -> Result<String, ExchangeError> {
        let id_token = exchanged.id_token.as_ref().ok_or_else(|| {
            ExchangeError::IdToken("the token response carries no id_token".into())
        })?;
        match self.verify_id_token(id_token, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // A key we have not seen: Busha rotated its keys. Fetch them once more.
                let fresh = CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http)
                    .await
                    .map_err(|e| {
                        ExchangeError::IdToken(format!(
                            "it is signed with an unknown key and the JWKS could not be fetched again: {}",
                            chain(&e)
                        ))
                    })?;
                *self.jwks.write() = fresh;
                self.verify_id_token(id_token, nonce)
            }
            other => other,
        }
        .map_err(|e| ExchangeError::IdToken(chain(&e)))
    }

    /// Verifies signature (JWKS), `iss`, `aud`, `exp` (on our clock) and `nonce`;
    /// returns the subject.
    fn verify_id_token(
        &self,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<String, ClaimsVerificationError> {
        let clock = self.clock.clone();
        let verifier = CoreIdTokenVerifier::new_confidential_client(
            ClientId::new(self.client_id.clone()),
            ClientSecret::new(self.client_secret.expose().to_string()),
            self.issuer_url.clone(),
            self.jwks.read().clone(),
        )
        .set_time_fn(move || clock.now().with_timezone(&Utc));
        let claims = id_token.claims(&verifier, nonce)?;
        Ok(claims.subject().as_str().to_string())
    }

    /// Presents `refresh_token` once. Never retries: the caller decides.
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenSet, RefreshFailure> {
        if let Some(wait) = self.held_back() {
            return Err(RefreshFailure::NotSent(held_back_text(wait)));
        }
        let rt = openidconnect::RefreshToken::new(refresh_token.secret().to_string());
        let request = self
            .client
            .exchange_refresh_token(&rt)
            .map_err(|e| RefreshFailure::NotSent(e.to_string()))?;
        match request.request_async(&self.token_http).await {
            Ok(response) => Ok(token_set(&response)),
            Err(RequestTokenError::Request(TokenHttpError::Unavailable {
                status,
                retry_after,
                error,
            })) => {
                self.note_retry_after(retry_after);
                Err(RefreshFailure::Unavailable {
                    detail: unavailable_text(status, &retry_after, error.as_deref()),
                    retry_after,
                })
            }
            Err(RequestTokenError::ServerResponse(r)) => {
                let description = one_line(r.error_description().map_or("", String::as_str));
                match r.error() {
                    CoreErrorResponseType::InvalidGrant => {
                        Err(RefreshFailure::InvalidGrant { description })
                    }
                    other => Err(RefreshFailure::Refused {
                        error: one_line(other.as_ref()),
                        description,
                    }),
                }
            }
            Err(RequestTokenError::Request(TokenHttpError::Http(e))) => {
                if is_connect_error(&e) {
                    Err(RefreshFailure::NotSent(http_error(&e)))
                } else {
                    Err(RefreshFailure::OutcomeUnknown(http_error(&e)))
                }
            }
            // A 200 we cannot read, or another status without a readable OAuth body.
            // The body may hold tokens: it is dropped unread.
            Err(RequestTokenError::Parse(_, body)) => Err(RefreshFailure::OutcomeUnknown(format!(
                "unreadable response ({} bytes)",
                body.len()
            ))),
            Err(RequestTokenError::Other(why)) => Err(RefreshFailure::OutcomeUnknown(why)),
        }
    }

    /// How much longer Busha's last `Retry-After` holds, if it does.
    fn held_back(&self) -> Option<Duration> {
        let until = (*self.not_before.lock())?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Remembers a `Retry-After` from the token endpoint (the later one wins).
    fn note_retry_after(&self, retry_after: Option<Duration>) {
        let Some(wait) = retry_after else { return };
        let until = Instant::now() + wait;
        let mut not_before = self.not_before.lock();
        if not_before.is_none_or(|t| t < until) {
            *not_before = Some(until);
        }
    }

    /// Revokes a refresh token (RFC 7009), which ends its whole family at Busha.
    pub async fn revoke(&self, token: &RefreshToken) -> Result<(), String> {
        self.revoke_secret(token.secret(), "refresh_token").await
    }

    /// Revokes an access token (RFC 7009): for tokens issued without a refresh token.
    pub async fn revoke_access(&self, token: &AccessToken) -> Result<(), String> {
        self.revoke_secret(token.secret(), "access_token").await
    }

    /// Sent by hand rather than through `oauth2`, which refuses any non-HTTPS
    /// revocation URL; we refuse one too, except on a loopback host (the sandbox).
    async fn revoke_secret(&self, token: &str, hint: &str) -> Result<(), String> {
        let url = self.revocation.url();
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if url.scheme() != "https" && !loopback {
            return Err(format!("the revocation endpoint {url} is not HTTPS"));
        }
        // RFC 6749 §2.3.1: each part form-urlencoded, then HTTP Basic.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .http
            .post(url.clone())
            .basic_auth(
                encode(&self.client_id),
                Some(encode(self.client_secret.expose())),
            )
            .form(&[("token", token), ("token_type_hint", hint)])
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "transport error"
                };
                format!("{what}: {}", chain(&e))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct OAuthError {
            error: String,
            #[serde(default)]
            error_description: String,
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<OAuthError>(&body) {
            Ok(e) => format!(
                "HTTP {status}: {}: {}",
                one_line(&e.error),
                one_line(&e.error_description)
            ),
            Err(_) => format!("HTTP {status}"),
        })
    }
}

/// What a failed code exchange means. 5xx and 429 are [`ExchangeError::Unavailable`]
/// whatever their body says; only other answers can be refusals.
fn exchange_error(
    e: RequestTokenError<
        TokenHttpError,
        openidconnect::StandardErrorResponse<CoreErrorResponseType>,
    >,
    note_retry_after: impl FnOnce(Option<Duration>),
) -> ExchangeError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let description = one_line(r.error_description().map_or("", String::as_str));
            match r.error() {
                CoreErrorResponseType::InvalidGrant => ExchangeError::CodeRejected(description),
                CoreErrorResponseType::InvalidClient => {
                    ExchangeError::ClientRejected(format!("invalid_client: {description}"))
                }
                other => {
                    ExchangeError::Refused(format!("{}: {description}", one_line(other.as_ref())))
                }
            }
        }
        RequestTokenError::Request(TokenHttpError::Unavailable {
            status,
            retry_after,
            error,
        }) => {
            note_retry_after(retry_after);
            ExchangeError::Unavailable {
                detail: unavailable_text(status, &retry_after, error.as_deref()),
                retry_after,
            }
        }
        RequestTokenError::Request(TokenHttpError::Http(e)) => {
            ExchangeError::Transport(http_error(&e))
        }
        RequestTokenError::Parse(_, body) => {
            ExchangeError::Transport(format!("unreadable response ({} bytes)", body.len()))
        }
        RequestTokenError::Other(why) => ExchangeError::Transport(why),
    }
}

fn held_back_text(wait: Duration) -> String {
    format!(
        "Busha asked us (Retry-After) to wait {} s more; nothing was sent",
        wait.as_secs_f64().ceil()
    )
}

fn token_set(response: &openidconnect::core::CoreTokenResponse) -> TokenSet {
    TokenSet {
        access_token: AccessToken::new(response.access_token().secret().clone()),
        expires_in: response.expires_in(),
        refresh_token: response
            .refresh_token()
            .map(|t| RefreshToken::new(t.secret().clone())),
        scopes: response
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect()),
        refresh_expires_in: Some(BUSHA_REFRESH_WINDOW),
    }
}

fn is_connect_error(e: &HttpClientError<reqwest::Error>) -> bool {
    matches!(e, HttpClientError::Reqwest(inner) if inner.is_connect())
}

fn http_error(e: &HttpClientError<reqwest::Error>) -> String {
    match e {
        HttpClientError::Reqwest(inner) => {
            // reqwest's text names the URL; ours carry no secret (tokens travel in bodies).
            let what = if inner.is_timeout() {
                "timed out"
            } else if inner.is_connect() {
                "could not connect"
            } else if inner.is_body() || inner.is_decode() {
                "the response was cut off"
            } else {
                "transport error"
            };
            format!("{what}: {}", chain(inner.as_ref()))
        }
        other => chain(other),
    }
}

/// An error and its sources, on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

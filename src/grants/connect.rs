//! Connecting a customer: the browser authorization shared by `treasury connect` and
//! the worker's HTTP endpoints.
//!
//! [`Connector::begin`] makes a PKCE S256 authorization with a 32-byte `state` and a
//! nonce, and records it in the store (verifier sealed, state hashed).
//! [`Connector::complete`] refuses a callback whose `iss` (RFC 9207) is not the pinned
//! issuer, consumes the authorization with one conditional UPDATE (so a doubled
//! callback exchanges its code at most once), exchanges the code with HTTP Basic (again
//! while Busha's token endpoint answers 5xx or 429, after its `Retry-After`), verifies
//! the id_token, checks the granted scopes, and stores the grant sealed, with a
//! `grant.connected` audit entry in the same transaction. Every failure stores no grant
//! and says what happened.
//!
//! Nothing is left alive at the issuer: tokens Busha issued for a consent we refuse are
//! revoked, and so is the grant a reconnect replaces, each audited as
//! `grant.tokens_revoked`.

use std::sync::Arc;

use chrono::Duration;
use futures_util::future::BoxFuture;
use openidconnect::{Nonce, PkceCodeVerifier};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use url::Url;

use super::baanx_connect::ClientInfo;
use super::cleanup;
use super::consent::{ConsentRecord, Labelled, PROVIDER_PAGE};
use super::crypto::{CryptoError, Keyring, Owner, RefreshToken};
use super::custodian::{ACCESS_FIELD, REFRESH_FIELD};
use super::oauth::{BushaOAuth, ExchangeError, Exchanged, TokenSet};
use super::{Grant, GrantStatus};
use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::config::GrantSpec;
use crate::store::{
    AuthorizationRow, ConnectedGrantRow, GrantRow, SealedTokens, Store, StoreError,
};

const VERIFIER_FIELD: &str = "pkce_verifier";

/// Code exchanges tried when Busha's token endpoint is unavailable (5xx, 429): the
/// authorization is spent on our side, so a retry is the only way to keep the consent.
const EXCHANGE_ATTEMPTS: u32 = 3;
/// The pause between them without a `Retry-After`, and the longest we wait for one.
const EXCHANGE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_EXCHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The query of a callback: `code` and `state`, or `error` and `state`; and `iss`
/// (RFC 9207) when the issuer sends it.
#[derive(Clone, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("error", &self.error)
            .field("iss", &self.iss)
            .finish_non_exhaustive()
    }
}

/// An authorization started: send the customer's browser to `url`.
pub struct Started {
    pub alias: String,
    pub url: Url,
    /// The `state` sent, so that the CLI can check its own callback.
    pub state: String,
}

/// A grant connected (or re-connected).
#[derive(Clone, Debug)]
pub struct Connected {
    pub grant: Grant,
    /// The alias was already connected before (a re-consent).
    pub reconnected: bool,
    /// A reconnect replaced a grant that held a refresh token: whether it was revoked
    /// at Busha (`Err` says why not; then it is still alive there).
    pub previous_revoked: Option<Result<(), String>>,
    /// What the operator should know although the connect succeeded.
    pub warnings: Vec<String>,
}

/// Why connecting failed. Nothing was stored in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("grant alias {0:?} is not declared in the config's [[grants]]")]
    UnknownAlias(String),
    #[error("the customer declined the authorization (access_denied{}); nothing was stored", .0.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    AccessDenied(Option<String>),
    #[error("state mismatch: {0}; nothing was stored")]
    StateMismatch(String),
    #[error(
        "the callback names issuer {got:?}, not the pinned issuer {expected:?} (RFC 9207: a mix-up or a forgery); nothing was exchanged or stored"
    )]
    IssuerMismatch { got: String, expected: String },
    #[error(
        "this authorization was already completed or has expired (a repeated callback?); nothing was changed"
    )]
    AlreadyUsed,
    #[error("Busha returned {error} to the callback ({description}); nothing was stored")]
    Provider { error: String, description: String },
    #[error("{0}; nothing was stored")]
    Exchange(#[from] ExchangeError),
    #[error(
        "Busha granted {alias} without the scopes it must hold: {missing:?}; nothing was stored"
    )]
    MissingScopes { alias: String, missing: Vec<String> },
    #[error(
        "Busha issued no refresh token (offline_access was not granted), so the grant would die within the hour; nothing was stored"
    )]
    NoRefreshToken,
    #[error(
        "grant {alias} is connected to Busha user {existing}, but this consent came from user {got}; revoke it first (`treasury grants revoke {alias}`); nothing was stored"
    )]
    SubjectChanged {
        alias: String,
        existing: String,
        got: String,
    },
    #[error("the OIDC issuer is unreachable or invalid: {0}")]
    Issuer(String),
    #[error("refused: {0}; nothing was stored")]
    Refused(String),
    #[error("Baanx: {0}; nothing was stored")]
    Baanx(String),
    #[error("no callback arrived: {0}; nothing was stored")]
    NoCallback(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A browser authorization of either provider, as `treasury connect` and the HTTP
/// server drive it: start (the URL to open), then the callback.
pub trait BrowserFlow: Clone + Send + Sync + 'static {
    fn begin<'a>(&'a self, alias: &'a str) -> BoxFuture<'a, Result<Started, ConnectError>>;
    fn complete<'a>(
        &'a self,
        params: &'a CallbackParams,
        actor: &'a str,
        client: ClientInfo,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>>;
}

impl BrowserFlow for Connector {
    fn begin<'a>(&'a self, alias: &'a str) -> BoxFuture<'a, Result<Started, ConnectError>> {
        Box::pin(Connector::begin(self, alias))
    }
    fn complete<'a>(
        &'a self,
        params: &'a CallbackParams,
        actor: &'a str,
        client: ClientInfo,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>> {
        Box::pin(self.complete_from(params, actor, client))
    }
}

impl BrowserFlow for super::BaanxConnector {
    fn begin<'a>(&'a self, alias: &'a str) -> BoxFuture<'a, Result<Started, ConnectError>> {
        Box::pin(super::BaanxConnector::begin(self, alias))
    }
    fn complete<'a>(
        &'a self,
        params: &'a CallbackParams,
        actor: &'a str,
        client: ClientInfo,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>> {
        Box::pin(super::BaanxConnector::complete(self, params, actor, client))
    }
}

/// Runs browser authorizations for the declared grant aliases.
#[derive(Clone)]
pub struct Connector {
    store: Store,
    keys: Arc<Keyring>,
    oauth: Arc<BushaOAuth>,
    clock: Clock,
    specs: Arc<Vec<GrantSpec>>,
    /// How long an authorization may wait for its callback (Busha's codes live 10 min).
    max_age: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

pub(super) fn hash_state(state: &str) -> String {
    Sha256::digest(state.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Connector {
    pub fn new(
        store: Store,
        keys: Arc<Keyring>,
        oauth: Arc<BushaOAuth>,
        clock: Clock,
        specs: Vec<GrantSpec>,
    ) -> Connector {
        Connector {
            store,
            keys,
            oauth,
            clock,
            specs: Arc::new(specs),
            max_age: Duration::minutes(15),
        }
    }

    /// The declared grant `alias`.
    pub fn spec(&self, alias: &str) -> Option<&GrantSpec> {
        self.specs.iter().find(|s| s.alias == alias)
    }

    /// Starts an authorization for `alias` and records it.
    pub async fn begin(&self, alias: &str) -> Result<Started, ConnectError> {
        let spec = self
            .spec(alias)
            .ok_or_else(|| ConnectError::UnknownAlias(alias.to_string()))?
            .clone();
        let start = self.oauth.authorization(&spec.scopes);
        let state = start.state.secret().clone();
        let pending = Pending {
            provider: &spec.provider,
            alias: &spec.alias,
            scopes: spec.scopes.join(" "),
            nonce: start.nonce.secret().clone(),
        };
        record_authorization(
            &self.store,
            &self.keys,
            self.clock.now(),
            self.max_age,
            &state,
            start.verifier.secret(),
            pending,
        )
        .await?;
        tracing::info!(grant = %spec.alias, "authorization started");
        Ok(Started {
            alias: spec.alias,
            url: start.url,
            state,
        })
    }

    /// Completes the authorization a callback names, on behalf of `actor`.
    pub async fn complete(
        &self,
        params: &CallbackParams,
        actor: &str,
    ) -> Result<Connected, ConnectError> {
        self.complete_from(params, actor, ClientInfo::default())
            .await
    }

    /// [`Connector::complete`], recording the browser's address and user agent in the
    /// consent record.
    pub async fn complete_from(
        &self,
        params: &CallbackParams,
        actor: &str,
        client: ClientInfo,
    ) -> Result<Connected, ConnectError> {
        // RFC 9207, before anything is consumed: a callback from another issuer is
        // refused, and the genuine one can still arrive.
        self.check_issuer(params)?;
        let (auth, state_hash) = self.consume(params).await?;
        let code = callback_code(&auth, params)?;
        let verifier = self.keys.open(
            Owner::Authorization(&state_hash),
            VERIFIER_FIELD,
            auth.key_version,
            &auth.verifier_ct,
        )?;
        let exchanged = self.exchange(code, verifier.as_str()).await?;
        let now = self.clock.now();
        let stored = match self.accept(&auth, &exchanged, actor, &client).await {
            Ok(stored) => stored,
            Err(refusal) => {
                // Busha issued tokens we will not keep: they must not stay alive there.
                let ctx = self.cleanup_ctx(&auth.alias, None, actor, now);
                cleanup::revoke_refused(&ctx, &exchanged.tokens, &refusal.to_string()).await;
                return Err(refusal);
            }
        };
        let previous_revoked = match stored.replaced {
            Some(token) => {
                let ctx = self.cleanup_ctx(&auth.alias, Some(&stored.id), actor, now);
                Some(cleanup::revoke_replaced(&ctx, token).await)
            }
            None => None,
        };
        tracing::info!(grant = %auth.alias, "grant connected");
        let row = self.store.grant(&stored.id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("grant {} vanished after connect", stored.id))
        })?;
        Ok(Connected {
            grant: Grant::from_row(&row)?,
            reconnected: stored.reconnected,
            previous_revoked,
            warnings: Vec::new(),
        })
    }

    fn check_issuer(&self, params: &CallbackParams) -> Result<(), ConnectError> {
        match &params.iss {
            Some(iss) if iss != self.oauth.issuer() => {
                tracing::warn!(got = %iss, "OAuth callback from another issuer refused");
                Err(ConnectError::IssuerMismatch {
                    got: iss.clone(),
                    expected: self.oauth.issuer().to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Consumes the authorization the callback's `state` names, once.
    async fn consume(
        &self,
        params: &CallbackParams,
    ) -> Result<(AuthorizationRow, String), ConnectError> {
        consume(&self.store, self.clock.now(), self.max_age, params).await
    }

    /// The code exchange, tried again while Busha's token endpoint is unavailable.
    async fn exchange(&self, code: &str, verifier: &str) -> Result<Exchanged, ConnectError> {
        let mut attempt = 1;
        loop {
            let pkce = PkceCodeVerifier::new(verifier.to_string());
            match self.oauth.exchange_code(code, pkce).await {
                Err(ExchangeError::Unavailable {
                    retry_after,
                    detail,
                }) if attempt < EXCHANGE_ATTEMPTS
                    && retry_after.unwrap_or(EXCHANGE_PAUSE) <= MAX_EXCHANGE_WAIT =>
                {
                    let wait = retry_after.unwrap_or(EXCHANGE_PAUSE);
                    tracing::warn!(attempt, %detail, wait_ms = wait.as_millis() as u64, "code exchange: Busha unavailable; trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Verifies what Busha issued and stores the grant, audited in the same
    /// transaction. Every `Err` leaves the store as it was.
    async fn accept(
        &self,
        auth: &AuthorizationRow,
        exchanged: &Exchanged,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<Stored, ConnectError> {
        let subject = self
            .oauth
            .verify_subject(exchanged, &Nonce::new(auth.nonce.clone()))
            .await?;
        let tokens = &exchanged.tokens;
        let granted = check_scopes(auth, tokens)?;
        let refresh = tokens
            .refresh_token
            .as_ref()
            .ok_or(ConnectError::NoRefreshToken)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let existing = self
            .store
            .grant_by_alias_in(&mut tx, &auth.provider, &auth.alias)
            .await?;
        if let Some(e) = &existing {
            if e.status == GrantStatus::Active.as_str() && e.subject != subject {
                return Err(ConnectError::SubjectChanged {
                    alias: auth.alias.clone(),
                    existing: e.subject.clone(),
                    got: subject,
                });
            }
        }
        let id = existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let record = busha_record(auth, &granted, actor, client, now);
        let mut row = self.sealed_row(auth, &id, &subject, tokens, refresh, &granted, now)?;
        row.consent = Some(record.to_json());
        self.store
            .upsert_connected_grant_in(&mut tx, &row, now)
            .await?;
        let entry = connected_entry(actor, auth, &id, &subject, &record, existing.as_ref());
        self.store.append_audit_in(&mut tx, now, entry).await?;
        // Opened before the commit overwrites it; revoked after the commit.
        let replaced = existing
            .as_ref()
            .and_then(|e| cleanup::replaced_token(&self.keys, e));
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Stored {
            id,
            reconnected: existing.is_some(),
            replaced,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn sealed_row(
        &self,
        auth: &AuthorizationRow,
        id: &str,
        subject: &str,
        tokens: &TokenSet,
        refresh: &RefreshToken,
        granted: &[String],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<ConnectedGrantRow, ConnectError> {
        let expires_at = now
            + tokens
                .expires_in
                .and_then(|d| Duration::from_std(d).ok())
                .unwrap_or(Duration::hours(1));
        let owner = Owner::Grant(id);
        let (version, access_ct) =
            self.keys
                .seal(owner, ACCESS_FIELD, tokens.access_token.secret())?;
        let (_, refresh_ct) = self.keys.seal(owner, REFRESH_FIELD, refresh.secret())?;
        Ok(ConnectedGrantRow {
            id: id.to_string(),
            provider: auth.provider.clone(),
            alias: auth.alias.clone(),
            subject: subject.to_string(),
            tokens: SealedTokens {
                key_version: version,
                access_token_ct: access_ct,
                access_expires_at: expires_at,
                refresh_token_ct: Some(refresh_ct),
                scopes: granted.join(" "),
                refresh_expires_at: tokens
                    .refresh_expires_in
                    .and_then(|d| Duration::from_std(d).ok())
                    .map(|d| now + d),
            },
            region: None,
            consent: None,
        })
    }

    fn cleanup_ctx<'a>(
        &'a self,
        alias: &'a str,
        grant_id: Option<&'a str>,
        actor: &'a str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> cleanup::Context<'a> {
        cleanup::Context {
            store: &self.store,
            oauth: &self.oauth,
            alias,
            grant_id,
            actor,
            now,
        }
    }
}

/// What an authorization in flight is for.
pub(super) struct Pending<'a> {
    pub provider: &'a str,
    pub alias: &'a str,
    pub scopes: String,
    pub nonce: String,
}

/// Records an authorization in flight: the PKCE verifier sealed, the `state` hashed.
/// Old ones are purged first (their codes expired): the table stays small.
pub(super) async fn record_authorization(
    store: &Store,
    keys: &Keyring,
    now: chrono::DateTime<chrono::Utc>,
    max_age: Duration,
    state: &str,
    verifier: &str,
    pending: Pending<'_>,
) -> Result<(), ConnectError> {
    let state_hash = hash_state(state);
    let (version, verifier_ct) =
        keys.seal(Owner::Authorization(&state_hash), VERIFIER_FIELD, verifier)?;
    store.purge_authorizations(now - max_age * 4).await?;
    store
        .insert_authorization(&AuthorizationRow {
            state_hash,
            provider: pending.provider.to_string(),
            alias: pending.alias.to_string(),
            scopes: pending.scopes,
            key_version: version,
            verifier_ct,
            nonce: pending.nonce,
            created_at: now,
        })
        .await?;
    Ok(())
}

/// Consumes the authorization a callback's `state` names, once, if it is younger
/// than `max_age`: the row and the state's hash.
pub(super) async fn consume(
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
    max_age: Duration,
    params: &CallbackParams,
) -> Result<(AuthorizationRow, String), ConnectError> {
    let state = params
        .state
        .as_deref()
        .ok_or_else(|| ConnectError::StateMismatch("the callback carries no state".into()))?;
    let state_hash = hash_state(state);
    match store
        .consume_authorization(&state_hash, now, now - max_age)
        .await?
    {
        Some(auth) => Ok((auth, state_hash)),
        None if store.authorization_exists(&state_hash).await? => Err(ConnectError::AlreadyUsed),
        None => Err(ConnectError::StateMismatch(
            "the callback's state matches no authorization we started".into(),
        )),
    }
}

/// A grant stored by [`Connector::accept`].
struct Stored {
    id: String,
    reconnected: bool,
    /// The replaced grant's refresh token, to revoke (or why it cannot be opened).
    replaced: Option<Result<RefreshToken, String>>,
}

/// The callback's `code`, or the error it carries instead.
pub(super) fn callback_code<'p>(
    auth: &AuthorizationRow,
    params: &'p CallbackParams,
) -> Result<&'p str, ConnectError> {
    if let Some(error) = &params.error {
        // Both come from the browser's query string: anyone can write them.
        let error = &crate::untrusted::one_line(error);
        let description = params
            .error_description
            .as_deref()
            .map(crate::untrusted::one_line);
        tracing::warn!(grant = %auth.alias, %error, "authorization refused");
        return Err(if error == "access_denied" {
            ConnectError::AccessDenied(description)
        } else {
            ConnectError::Provider {
                error: error.to_string(),
                description: description.unwrap_or_default(),
            }
        });
    }
    params
        .code
        .as_deref()
        .ok_or_else(|| ConnectError::Provider {
            error: "invalid_request".into(),
            description: "the callback carries neither code nor error".into(),
        })
}

/// The scopes granted, which must include every scope the authorization asked for.
fn check_scopes(auth: &AuthorizationRow, tokens: &TokenSet) -> Result<Vec<String>, ConnectError> {
    let required: Vec<String> = auth.scopes.split_whitespace().map(str::to_string).collect();
    let granted = tokens.scopes.clone().unwrap_or_else(|| required.clone());
    let missing: Vec<String> = required
        .iter()
        .filter(|s| !granted.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(ConnectError::MissingScopes {
            alias: auth.alias.clone(),
            missing,
        });
    }
    Ok(granted)
}

/// The consent record of a Busha connect: the scopes we asked for and those Busha
/// granted, each labelled; Busha's own consent page is not ours to see.
fn busha_record(
    auth: &AuthorizationRow,
    granted: &[String],
    actor: &str,
    client: &ClientInfo,
    at: chrono::DateTime<chrono::Utc>,
) -> ConsentRecord {
    let mut asked: Vec<String> = vec!["openid".into(), "offline_access".into()];
    asked.extend(auth.scopes.split_whitespace().map(str::to_string));
    ConsentRecord {
        provider: "busha".into(),
        asked_for: Labelled::new("what we asked for (scopes requested)", asked),
        granted: Labelled::new(
            "what Busha granted (scopes its token endpoint reported)",
            granted.to_vec(),
        ),
        provider_page: PROVIDER_PAGE.into(),
        shown_by_us: None,
        at,
        operator: super::consent::operator_label(actor),
        channel: "browser".into(),
        client_address: client.address.clone(),
        user_agent: client.user_agent.clone(),
        provider_consent: None,
        ended: None,
    }
}

fn connected_entry(
    actor: &str,
    auth: &AuthorizationRow,
    id: &str,
    subject: &str,
    consent: &ConsentRecord,
    existing: Option<&GrantRow>,
) -> NewAuditEntry {
    NewAuditEntry::new(
        actor,
        "grant.connected",
        json!({
            "alias": auth.alias,
            "provider": auth.provider,
            "subject": subject,
            "scopes": consent.granted.items,
            "consent": consent,
            "reconnected": existing.is_some(),
            "previous_status": existing.map(|e| e.status.clone()),
            "previous_subject": existing.map(|e| e.subject.clone()),
        }),
    )
    .grant(id)
}

//! Connecting a customer: the browser authorization shared by `treasury connect` and
//! the worker's HTTP endpoints.
//!
//! [`Connector::begin`] makes a PKCE S256 authorization with a 32-byte `state` and a
//! nonce, and records it in the store (verifier sealed, state hashed).
//! [`Connector::complete`] consumes that record with one conditional UPDATE (so a
//! doubled callback exchanges its code at most once), exchanges the code with HTTP
//! Basic, verifies the id_token, checks the granted scopes, and stores the grant
//! sealed, with a `grant.connected` audit entry in the same transaction. Every failure
//! stores no grant and says what happened.

use std::sync::Arc;

use chrono::Duration;
use openidconnect::{Nonce, PkceCodeVerifier};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use url::Url;

use super::crypto::{CryptoError, Keyring, Owner};
use super::custodian::{ACCESS_FIELD, REFRESH_FIELD};
use super::oauth::{BushaOAuth, ExchangeError};
use super::{Grant, GrantStatus};
use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::config::GrantSpec;
use crate::store::{AuthorizationRow, ConnectedGrantRow, SealedTokens, Store, StoreError};

const VERIFIER_FIELD: &str = "pkce_verifier";

/// The query of a callback: `code` and `state`, or `error` and `state`.
#[derive(Clone, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("error", &self.error)
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
    #[error("no callback arrived: {0}; nothing was stored")]
    NoCallback(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
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

fn hash_state(state: &str) -> String {
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
        let state_hash = hash_state(&state);
        let (version, verifier_ct) = self.keys.seal(
            Owner::Authorization(&state_hash),
            VERIFIER_FIELD,
            start.verifier.secret(),
        )?;
        let now = self.clock.now();
        // Old authorizations are useless (their codes expired): keep the table small.
        self.store
            .purge_authorizations(now - self.max_age * 4)
            .await?;
        self.store
            .insert_authorization(&AuthorizationRow {
                state_hash,
                provider: spec.provider.clone(),
                alias: spec.alias.clone(),
                scopes: spec.scopes.join(" "),
                key_version: version,
                verifier_ct,
                nonce: start.nonce.secret().clone(),
                created_at: now,
            })
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
        let state = params
            .state
            .as_deref()
            .ok_or_else(|| ConnectError::StateMismatch("the callback carries no state".into()))?;
        let state_hash = hash_state(state);
        let now = self.clock.now();
        let Some(auth) = self
            .store
            .consume_authorization(&state_hash, now, now - self.max_age)
            .await?
        else {
            return Err(if self.store.authorization_exists(&state_hash).await? {
                ConnectError::AlreadyUsed
            } else {
                ConnectError::StateMismatch(
                    "the callback's state matches no authorization we started".into(),
                )
            });
        };
        if let Some(error) = &params.error {
            let description = params.error_description.clone();
            tracing::warn!(grant = %auth.alias, %error, "authorization refused");
            return Err(if error == "access_denied" {
                ConnectError::AccessDenied(description)
            } else {
                ConnectError::Provider {
                    error: error.clone(),
                    description: description.unwrap_or_default(),
                }
            });
        }
        let code = params
            .code
            .as_deref()
            .ok_or_else(|| ConnectError::Provider {
                error: "invalid_request".into(),
                description: "the callback carries neither code nor error".into(),
            })?;
        let verifier = self.keys.open(
            Owner::Authorization(&state_hash),
            VERIFIER_FIELD,
            auth.key_version,
            &auth.verifier_ct,
        )?;
        let (tokens, subject) = self
            .oauth
            .exchange_code(
                code,
                PkceCodeVerifier::new(verifier.to_string()),
                &Nonce::new(auth.nonce.clone()),
            )
            .await?;

        let required: Vec<String> = auth.scopes.split_whitespace().map(str::to_string).collect();
        let granted = tokens.scopes.clone().unwrap_or_else(|| required.clone());
        let missing: Vec<String> = required
            .iter()
            .filter(|s| !granted.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ConnectError::MissingScopes {
                alias: auth.alias,
                missing,
            });
        }
        let refresh = tokens
            .refresh_token
            .as_ref()
            .ok_or(ConnectError::NoRefreshToken)?;
        let expires_at = now
            + tokens
                .expires_in
                .and_then(|d| Duration::from_std(d).ok())
                .unwrap_or(Duration::hours(1));

        let mut tx = self.store.begin().await?;
        let existing = self
            .store
            .grant_by_alias_in(&mut tx, &auth.provider, &auth.alias)
            .await?;
        if let Some(e) = &existing {
            if e.status == GrantStatus::Active.as_str() && e.subject != subject {
                return Err(ConnectError::SubjectChanged {
                    alias: auth.alias,
                    existing: e.subject.clone(),
                    got: subject,
                });
            }
        }
        let id = existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let owner = Owner::Grant(&id);
        let (version, access_ct) =
            self.keys
                .seal(owner, ACCESS_FIELD, tokens.access_token.secret())?;
        let (_, refresh_ct) = self.keys.seal(owner, REFRESH_FIELD, refresh.secret())?;
        let row = ConnectedGrantRow {
            id: id.clone(),
            provider: auth.provider.clone(),
            alias: auth.alias.clone(),
            subject: subject.clone(),
            tokens: SealedTokens {
                key_version: version,
                access_token_ct: access_ct,
                access_expires_at: expires_at,
                refresh_token_ct: Some(refresh_ct),
                scopes: granted.join(" "),
            },
        };
        self.store
            .upsert_connected_grant_in(&mut tx, &row, now)
            .await?;
        self.store
            .append_audit_in(
                &mut tx,
                now,
                NewAuditEntry::new(
                    actor,
                    "grant.connected",
                    json!({
                        "alias": auth.alias,
                        "provider": auth.provider,
                        "subject": subject,
                        "scopes": granted,
                        "reconnected": existing.is_some(),
                        "previous_status": existing.as_ref().map(|e| e.status.clone()),
                        "previous_subject": existing.as_ref().map(|e| e.subject.clone()),
                    }),
                )
                .grant(&id),
            )
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(grant = %auth.alias, "grant connected");
        let stored = self
            .store
            .grant(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("grant {id} vanished after connect")))?;
        Ok(Connected {
            grant: Grant::from_row(&stored)?,
            reconnected: existing.is_some(),
        })
    }
}

//! Connecting a Baanx customer, through the hosted UI (the default) or API mode
//! ([`super::baanx_api`]). Both end in [`BaanxConnector::finish`]:
//!
//! 1. a reconnect revokes the old grant first: Baanx's revocation kills every token of
//!    our client for the user, so revoking after the new exchange would kill the new
//!    grant too;
//! 2. the code is exchanged once;
//! 3. the profile says who the customer is; one who is not verified, or who is
//!    already connected under another alias (both would share one fate at Baanx), is
//!    refused;
//! 4. the customer's consent status is read: `termsAndPrivacy` denied or revoked is
//!    refused; no record (404) is shown as unknown, with a warning;
//! 5. the grant is stored sealed with its consent record, audited in the same
//!    transaction.

use std::sync::Arc;

use chrono::Duration;
use openidconnect::{CsrfToken, PkceCodeChallenge};
use url::Url;

use super::baanx::BaanxTokens;
use super::connect::{
    CallbackParams, ConnectError, Connected, Pending, Started, callback_code, record_authorization,
};
use super::consent::ShownText;
use super::crypto::{Keyring, Owner};
use super::{Custodian, Grant, GrantStatus};
use crate::clock::Clock;
use crate::config::GrantSpec;
use crate::provider::baanx::{Initiate, Region, Session};
use crate::store::{Store, StoreError};

const VERIFIER_FIELD: &str = "pkce_verifier";

/// Where a browser connect came from, for the consent record.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// What a connect knows besides the code: who, how, and what our screen showed.
pub(super) struct Context<'a> {
    pub spec: &'a GrantSpec,
    pub region: Region,
    pub actor: &'a str,
    pub channel: &'static str,
    pub client: ClientInfo,
    pub shown: Option<ShownText>,
}

/// Connects Baanx customers for the declared Baanx aliases.
#[derive(Clone)]
pub struct BaanxConnector {
    pub(super) store: Store,
    pub(super) keys: Arc<Keyring>,
    pub(super) tokens: Arc<BaanxTokens>,
    custodian: Custodian,
    clock: Clock,
    specs: Arc<Vec<GrantSpec>>,
    hosted_url: Url,
    /// How long an authorization waits for its callback (Baanx's sessions live 10 min).
    max_age: Duration,
}

impl std::fmt::Debug for BaanxConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaanxConnector").finish_non_exhaustive()
    }
}

impl BaanxConnector {
    /// `custodian` revokes the grant a reconnect replaces; `hosted_url` is where the
    /// sign-in URL Baanx hands back must lead.
    pub fn new(
        store: Store,
        keys: Arc<Keyring>,
        tokens: Arc<BaanxTokens>,
        custodian: Custodian,
        clock: Clock,
        specs: Vec<GrantSpec>,
        hosted_url: Url,
    ) -> BaanxConnector {
        BaanxConnector {
            store,
            keys,
            tokens,
            custodian,
            clock,
            specs: Arc::new(specs),
            hosted_url,
            max_age: Duration::minutes(10),
        }
    }

    /// The redirect URI registered with Baanx (the hosted flow's callback).
    pub fn redirect_uri(&self) -> &Url {
        self.tokens.redirect_uri()
    }

    /// The declared Baanx grant `alias` and its region.
    pub fn spec(&self, alias: &str) -> Result<(&GrantSpec, Region), ConnectError> {
        let spec = self
            .specs
            .iter()
            .find(|s| s.alias == alias && s.provider == "baanx")
            .ok_or_else(|| ConnectError::UnknownAlias(alias.to_string()))?;
        let region = spec.region.ok_or_else(|| {
            ConnectError::Refused(format!("grant {alias} declares no Baanx region"))
        })?;
        Ok((spec, region))
    }

    /// Opens a session and returns the hosted UI's sign-in URL; the authorization is
    /// recorded (verifier sealed, state hashed) for the callback.
    pub async fn begin(&self, alias: &str) -> Result<Started, ConnectError> {
        let (spec, region) = self.spec(alias)?;
        let (session, state, verifier) = self.open_session(region).await?;
        let url = Url::parse(&session.url)
            .map_err(|_| ConnectError::Baanx("the hosted UI URL Baanx gave is not a URL".into()))?;
        if url.origin() != self.hosted_url.origin() {
            return Err(ConnectError::Refused(format!(
                "Baanx's sign-in URL leads to {}, not the configured hosted UI {}",
                url.origin().ascii_serialization(),
                self.hosted_url.origin().ascii_serialization()
            )));
        }
        let pending = Pending {
            provider: "baanx",
            alias: &spec.alias,
            scopes: String::new(),
            nonce: String::new(),
        };
        record_authorization(
            &self.store,
            &self.keys,
            self.clock.now(),
            self.max_age,
            &state,
            &verifier,
            pending,
        )
        .await?;
        tracing::info!(grant = %spec.alias, "Baanx authorization started");
        Ok(Started {
            alias: spec.alias.clone(),
            url,
            state,
        })
    }

    /// A session for a new authorization: (session, state, PKCE verifier).
    pub(super) async fn open_session(
        &self,
        region: Region,
    ) -> Result<(Session, String, String), ConnectError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random().secret().clone();
        let session = self
            .tokens
            .client()
            .initiate(
                region,
                &Initiate {
                    redirect_uri: self.tokens.redirect_uri().as_str(),
                    state: &state,
                    code_challenge: challenge.as_str(),
                },
            )
            .await
            .map_err(|e| ConnectError::Baanx(format!("initiate failed: {e}")))?;
        Ok((session.value, state, verifier.secret().clone()))
    }

    /// Completes the hosted flow's callback once, on behalf of `actor`.
    pub async fn complete(
        &self,
        params: &CallbackParams,
        actor: &str,
        client: ClientInfo,
    ) -> Result<Connected, ConnectError> {
        let (auth, state_hash) =
            super::connect::consume(&self.store, self.clock.now(), self.max_age, params).await?;
        let code = callback_code(&auth, params)?;
        let verifier = self.keys.open(
            Owner::Authorization(&state_hash),
            VERIFIER_FIELD,
            auth.key_version,
            &auth.verifier_ct,
        )?;
        let (spec, region) = self.spec(&auth.alias)?;
        let ctx = Context {
            spec,
            region,
            actor,
            channel: "browser",
            client,
            shown: None,
        };
        self.finish(&ctx, code, verifier.as_str()).await
    }

    /// Revoke the old grant, exchange, check, store (see the module docs).
    pub(super) async fn finish(
        &self,
        ctx: &Context<'_>,
        code: &str,
        verifier: &str,
    ) -> Result<Connected, ConnectError> {
        let alias = &ctx.spec.alias;
        let existing = self.store.grant_by_alias("baanx", alias).await?;
        let previous_revoked = match &existing {
            Some(e) if e.status == GrantStatus::Active.as_str() => {
                self.custodian
                    .revoke(&e.id, ctx.actor)
                    .await
                    .map_err(|err| {
                        ConnectError::Refused(format!(
                            "the grant {alias} replaces could not be revoked first ({err}); nothing was exchanged"
                        ))
                    })?;
                Some(Ok(()))
            }
            _ => None,
        };
        let tokens = self
            .tokens
            .exchange(ctx.region, code, verifier)
            .await
            .map_err(|e| ConnectError::Baanx(format!("the code exchange failed: {e}")))?;
        let (subject, mut warnings, consent) = self.check_customer(ctx, &tokens).await?;
        let now = self.clock.now();
        let record = self.record(ctx, consent, now);
        let id = existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.store_grant(
            ctx,
            &id,
            &subject,
            &tokens,
            &record,
            existing.is_some(),
            now,
        )
        .await?;
        if existing.is_some() {
            warnings.push(format!(
                "the grant {alias} replaced was revoked at Baanx first"
            ));
        }
        tracing::info!(grant = %alias, "Baanx grant connected");
        let row = self
            .store
            .grant(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("grant {id} vanished after connect")))?;
        Ok(Connected {
            grant: Grant::from_row(&row)?,
            reconnected: existing.is_some(),
            previous_revoked,
            warnings,
        })
    }
}

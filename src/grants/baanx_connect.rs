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

use chrono::{DateTime, Duration, Utc};
use openidconnect::{CsrfToken, PkceCodeChallenge};
use serde_json::json;
use url::Url;

use super::baanx::{BaanxTokens, region_name};
use super::connect::{CallbackParams, ConnectError, Connected, Started, callback_code, hash_state};
use super::consent::{ConsentRecord, Labelled, PROVIDER_PAGE, ProviderConsent, ShownText};
use super::crypto::{Keyring, Owner};
use super::custodian::{ACCESS_FIELD, REFRESH_FIELD};
use super::oauth::TokenSet;
use super::{Custodian, Grant, GrantStatus};
use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::config::GrantSpec;
use crate::provider::baanx::{Grant as AsCustomer, Initiate, Region, Session};
use crate::store::{AuthorizationRow, ConnectedGrantRow, SealedTokens, Store, StoreError};

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
    keys: Arc<Keyring>,
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
        let state_hash = hash_state(&state);
        let (version, verifier_ct) =
            self.keys
                .seal(Owner::Authorization(&state_hash), VERIFIER_FIELD, &verifier)?;
        let now = self.clock.now();
        self.store
            .purge_authorizations(now - self.max_age * 4)
            .await?;
        self.store
            .insert_authorization(&AuthorizationRow {
                state_hash,
                provider: "baanx".into(),
                alias: spec.alias.clone(),
                scopes: String::new(),
                key_version: version,
                verifier_ct,
                nonce: String::new(),
                created_at: now,
            })
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

    /// Who the customer is, and whether they may connect. A refusal revokes the new
    /// tokens, except when another alias holds the same customer (revoking would end
    /// that grant too).
    async fn check_customer(
        &self,
        ctx: &Context<'_>,
        tokens: &TokenSet,
    ) -> Result<(String, Vec<String>, ProviderConsent), ConnectError> {
        let as_customer = AsCustomer {
            token: &tokens.access_token,
            region: ctx.region,
        };
        let client = self.tokens.client();
        let profile = client
            .user(as_customer)
            .await
            .map_err(|e| {
                ConnectError::Baanx(format!("reading the customer's profile failed: {e}"))
            })?
            .value;
        let others = self.other_aliases(&profile.id, &ctx.spec.alias).await?;
        if !others.is_empty() {
            return Err(ConnectError::Refused(format!(
                "this Baanx customer is already connected as {others:?}: two aliases on one Baanx user would share one fate (a revocation ends both); the new tokens were not stored"
            )));
        }
        if profile.verification_state != "VERIFIED" {
            let why = format!(
                "the customer is not verified at Baanx (verificationState {}); they must complete verification first",
                profile.verification_state
            );
            return Err(self.refused(ctx, tokens, why).await);
        }
        let mut warnings = Vec::new();
        let consent = match client.consent_status(ctx.region, &profile.id).await {
            Ok(Some(c)) => {
                if let Some(t @ ("denied" | "revoked")) = c.terms_and_privacy.as_deref() {
                    let why = format!("the customer's termsAndPrivacy consent at Baanx is {t}");
                    return Err(self.refused(ctx, tokens, why).await);
                }
                ProviderConsent {
                    status: c.status,
                    terms_and_privacy: c.terms_and_privacy,
                }
            }
            Ok(None) => {
                warnings.push(
                    "Baanx has no consent record for this customer in our tenant: their consent status is unknown".to_string(),
                );
                ProviderConsent {
                    status: "unknown".into(),
                    terms_and_privacy: None,
                }
            }
            Err(e) => {
                let why = format!("reading the customer's consent status failed: {e}");
                return Err(self.refused(ctx, tokens, why).await);
            }
        };
        Ok((profile.id, warnings, consent))
    }

    /// The active Baanx aliases, other than `alias`, connected to `subject`.
    pub(super) async fn other_aliases(
        &self,
        subject: &str,
        alias: &str,
    ) -> Result<Vec<String>, ConnectError> {
        let mut tx = self.store.begin().await?;
        let others = self
            .store
            .other_aliases_of_subject_in(&mut tx, "baanx", subject, alias)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(others)
    }

    /// Refuses a consent after the exchange: its new tokens are revoked at Baanx.
    async fn refused(&self, ctx: &Context<'_>, tokens: &TokenSet, why: String) -> ConnectError {
        if let Err(e) = self.tokens.revoke(ctx.region, &tokens.access_token).await {
            tracing::error!(grant = %ctx.spec.alias, error = %e, "could not revoke the tokens of a refused Baanx consent; revoke the app's access from Baanx");
        }
        ConnectError::Refused(why)
    }

    fn record(
        &self,
        ctx: &Context<'_>,
        consent: ProviderConsent,
        at: DateTime<Utc>,
    ) -> ConsentRecord {
        ConsentRecord {
            provider: "baanx".into(),
            asked_for: Labelled::new(
                "what we asked for (Baanx documents no scopes: the app's whole access)",
                Vec::new(),
            ),
            granted: Labelled::new(
                "what Baanx granted (opaque tokens, no scopes reported)",
                Vec::new(),
            ),
            provider_page: PROVIDER_PAGE.into(),
            shown_by_us: ctx.shown.clone(),
            at,
            operator: super::consent::operator_label(ctx.actor),
            channel: ctx.channel.into(),
            client_address: ctx.client.address.clone(),
            user_agent: ctx.client.user_agent.clone(),
            provider_consent: Some(consent),
            ended: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_grant(
        &self,
        ctx: &Context<'_>,
        id: &str,
        subject: &str,
        tokens: &TokenSet,
        record: &ConsentRecord,
        reconnected: bool,
        now: DateTime<Utc>,
    ) -> Result<(), ConnectError> {
        let span = |d: Option<std::time::Duration>| d.and_then(|d| Duration::from_std(d).ok());
        let owner = Owner::Grant(id);
        let (version, access_ct) =
            self.keys
                .seal(owner, ACCESS_FIELD, tokens.access_token.secret())?;
        let refresh = tokens
            .refresh_token
            .as_ref()
            .ok_or(ConnectError::NoRefreshToken)?;
        let (_, refresh_ct) = self.keys.seal(owner, REFRESH_FIELD, refresh.secret())?;
        let row = ConnectedGrantRow {
            id: id.to_string(),
            provider: "baanx".into(),
            alias: ctx.spec.alias.clone(),
            subject: subject.to_string(),
            tokens: SealedTokens {
                key_version: version,
                access_token_ct: access_ct,
                access_expires_at: now + span(tokens.expires_in).unwrap_or(Duration::hours(6)),
                refresh_token_ct: Some(refresh_ct),
                scopes: String::new(),
                refresh_expires_at: span(tokens.refresh_expires_in).map(|d| now + d),
            },
            region: Some(region_name(ctx.region).into()),
            consent: Some(record.to_json()),
        };
        let mut tx = self.store.begin().await?;
        self.store
            .upsert_connected_grant_in(&mut tx, &row, now)
            .await?;
        let entry = NewAuditEntry::new(
            ctx.actor,
            "grant.connected",
            json!({
                "alias": ctx.spec.alias,
                "provider": "baanx",
                "subject": subject,
                "region": region_name(ctx.region),
                "reconnected": reconnected,
                "consent": record,
            }),
        )
        .grant(id);
        self.store.append_audit_in(&mut tx, now, entry).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}

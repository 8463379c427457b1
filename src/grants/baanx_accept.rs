//! The checks and the write that end a Baanx connect ([`BaanxConnector::finish`]):
//! who the customer is and whether they may connect, the consent record, and the
//! sealed grant with its `grant.connected` audit entry in one transaction.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::baanx::region_name;
use super::baanx_connect::{BaanxConnector, Context};
use super::connect::ConnectError;
use super::consent::{ConsentRecord, Labelled, PROVIDER_PAGE, ProviderConsent};
use super::crypto::Owner;
use super::custodian::{ACCESS_FIELD, REFRESH_FIELD};
use super::oauth::TokenSet;
use crate::audit::NewAuditEntry;
use crate::provider::baanx::Grant as AsCustomer;
use crate::store::{ConnectedGrantRow, SealedTokens, StoreError};

impl BaanxConnector {
    /// Who the customer is, and whether they may connect. A refusal revokes the new
    /// tokens, except when another alias holds the same customer (revoking would end
    /// that grant too).
    pub(super) async fn check_customer(
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

    pub(super) fn record(
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
    pub(super) async fn store_grant(
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

//! Grants we must not leave alive at the issuer: tokens Busha issued for a consent we
//! then refused (an id_token that fails verification, missing scopes, another
//! customer), and the old grant a reconnect replaced. Each is revoked (RFC 7009, as
//! `treasury grants revoke` does) and audited as `grant.tokens_revoked`, whether the
//! revocation worked or not: a failure is also logged loudly, since the operator must
//! then revoke it from Busha's dashboard.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::crypto::{Keyring, Owner, RefreshToken};
use super::custodian::REFRESH_FIELD;
use super::oauth::{BushaOAuth, TokenSet};
use crate::audit::NewAuditEntry;
use crate::store::{GrantRow, Store};

/// Why tokens are being revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    /// We refused the consent after Busha issued its tokens.
    Refused,
    /// A reconnect replaced them.
    Replaced,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Replaced => "replaced",
        }
    }
}

/// What to write into the audit entry besides the outcome.
pub(super) struct Context<'a> {
    pub store: &'a Store,
    pub oauth: &'a BushaOAuth,
    pub alias: &'a str,
    pub grant_id: Option<&'a str>,
    pub actor: &'a str,
    pub now: DateTime<Utc>,
}

/// Revokes the tokens of a consent we refused because of `reason`: the refresh token
/// (which ends the family), or the access token when there is none.
pub(super) async fn revoke_refused(ctx: &Context<'_>, tokens: &TokenSet, reason: &str) {
    let outcome = match &tokens.refresh_token {
        Some(rt) => ctx.oauth.revoke(rt).await,
        None => ctx.oauth.revoke_access(&tokens.access_token).await,
    };
    record(ctx, Why::Refused, reason, &outcome).await;
}

/// Opens the refresh token of the grant a reconnect is about to replace, to revoke it
/// once the new one is stored. `Err` says why it cannot be (then nothing is revoked,
/// and that is audited).
pub(super) fn replaced_token(
    keys: &Keyring,
    existing: &GrantRow,
) -> Option<Result<RefreshToken, String>> {
    let ct = existing.refresh_token_ct.as_ref()?;
    Some(
        keys.open(
            Owner::Grant(&existing.id),
            REFRESH_FIELD,
            existing.key_version,
            ct,
        )
        .map(|t| RefreshToken::new(t.as_str()))
        .map_err(|e| format!("its refresh token cannot be opened: {e}")),
    )
}

/// Revokes the replaced grant's refresh token; returns the outcome for the operator.
pub(super) async fn revoke_replaced(
    ctx: &Context<'_>,
    token: Result<RefreshToken, String>,
) -> Result<(), String> {
    let outcome = match token {
        Ok(rt) => ctx.oauth.revoke(&rt).await,
        Err(why) => Err(why),
    };
    record(ctx, Why::Replaced, "the customer connected again", &outcome).await;
    outcome
}

async fn record(ctx: &Context<'_>, why: Why, reason: &str, outcome: &Result<(), String>) {
    match outcome {
        Ok(()) => {
            tracing::info!(grant = %ctx.alias, why = why.as_str(), "tokens revoked at Busha")
        }
        Err(e) => tracing::error!(
            grant = %ctx.alias, why = why.as_str(), error = %e,
            "tokens could NOT be revoked at Busha: revoke the app's access from Busha's dashboard"
        ),
    }
    let mut entry = NewAuditEntry::new(
        ctx.actor,
        "grant.tokens_revoked",
        json!({
            "alias": ctx.alias,
            "why": why.as_str(),
            "reason": reason,
            "revoked": outcome.is_ok(),
            "error": outcome.as_ref().err(),
        }),
    );
    if let Some(id) = ctx.grant_id {
        entry = entry.grant(id);
    }
    if let Err(e) = ctx.store.append_audit(ctx.now, entry).await {
        tracing::error!(grant = %ctx.alias, error = %e, "could not audit a token revocation");
    }
}

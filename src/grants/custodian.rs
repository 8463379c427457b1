//! Token custody: the one place that hands out access tokens and refreshes them
//! (invariant 6).
//!
//! Busha rotates refresh tokens on every use and revokes the whole family when an old
//! one is replayed, so at most one refresh per grant may be in flight anywhere:
//!
//! 1. In a process, callers of one grant queue on a per-grant async mutex and re-read
//!    the store once they hold it: the first refreshes, the rest find the new token.
//! 2. Across processes, the refresher holds a lease in the store, taken with one
//!    conditional UPDATE that also bumps the grant's fence. It re-reads the tokens
//!    under the lease (another process may have refreshed), calls the token endpoint,
//!    and writes the new pair with `WHERE fence = <mine>` before anyone sees it: a
//!    holder whose lease lapsed writes nothing. Waiters poll until the lease is
//!    released and read again.
//! 3. The lease outlives two token calls (the call and its one retry), and a call
//!    never starts with less lease left than its timeout: the lease is renewed first.
//!
//! Refresh outcomes: `invalid_grant` → re-read, then `disconnected` with an audit
//! entry; unknown outcome → exactly one retry with the same refresh token; nothing
//! sent → transient; a pair Busha rotated that we could not store → `lost`, audited as
//! critical.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::baanx::{BaanxTokens, parse_region};
use super::crypto::{Keyring, Owner, RefreshToken};
use super::oauth::{BushaOAuth, RefreshFailure, TokenSet};
use super::{Grant, GrantError, GrantStatus, provider_name};
use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::provider::AccessToken;
use crate::provider::busha::{ErrorKind, ProviderError};
use crate::store::{GrantRow, SealedTokens, Store, StoreError};

/// The longest Busha's `Retry-After` on a refresh is waited out before the one retry;
/// a longer one ends the attempt as transient, with the refresh token kept.
const MAX_RETRY_AFTER_WAIT: StdDuration = StdDuration::from_secs(10);

/// Field names: part of each ciphertext's associated data.
pub(crate) const ACCESS_FIELD: &str = "access_token";
pub(crate) const REFRESH_FIELD: &str = "refresh_token";

/// Timings of custody.
#[derive(Clone, Debug)]
pub struct CustodyConfig {
    /// Refresh when the access token expires within this margin (default 5 min).
    pub refresh_margin: Duration,
    /// How long a refresh lease lasts (default 60 s): more than two token calls.
    pub lease: Duration,
    /// The token call's timeout (default 15 s). A call never starts with less lease
    /// left than this. [`Custodian::new`] raises it to the OAuth client's own timeout,
    /// and the lease to more than two such calls plus the margin, if they fall short.
    pub token_call_timeout: Duration,
    /// Assumed lifetime when Busha omits `expires_in` (default 1 h).
    pub default_lifetime: Duration,
    /// How long a waiter polls for another holder's lease before giving up (real time).
    pub max_wait: StdDuration,
    /// First and longest pause between polls.
    pub poll_min: StdDuration,
    pub poll_max: StdDuration,
}

impl Default for CustodyConfig {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::minutes(5),
            lease: Duration::seconds(60),
            token_call_timeout: Duration::seconds(15),
            default_lifetime: Duration::hours(1),
            max_wait: StdDuration::from_secs(75),
            poll_min: StdDuration::from_millis(5),
            poll_max: StdDuration::from_millis(200),
        }
    }
}

/// Hands out access tokens for stored grants. Cheap to clone; clones share the
/// in-process single-flight locks, so make one per process (or per "process" in tests).
#[derive(Clone)]
pub struct Custodian {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keys: Arc<Keyring>,
    /// Busha's issuer, when this process holds Busha grants.
    oauth: Option<Arc<BushaOAuth>>,
    /// Baanx's token endpoint, when this process is configured for Baanx.
    baanx: Option<Arc<BaanxTokens>>,
    clock: Clock,
    config: CustodyConfig,
    /// This custodian's lease owner id and audit actor.
    owner: String,
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Custodian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custodian")
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

/// What the caller needs from the stored access token.
#[derive(Clone)]
enum Want {
    /// Valid for longer than the margin.
    Fresh,
    /// Fresh, and not this token (Busha refused it, or an operator asked for a new one).
    Replace(AccessToken),
}

/// The outcome of waiting for a lease.
enum Leased<T> {
    Done(T),
    Held(Lease),
}

/// A lease this custodian holds.
#[derive(Clone, Copy, Debug)]
struct Lease {
    fence: i64,
    until: DateTime<Utc>,
}

/// Whether a grant may be used, for schedulers that must hold its jobs otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usability {
    Usable,
    /// Not active: jobs using it are held. `reason` says why, for operators.
    Held {
        status: GrantStatus,
        reason: String,
    },
    /// No grant is stored under this alias yet.
    NotConnected,
}

/// Whether the grant `alias` of `provider` may be used. Reads the store only (no keys).
pub async fn usability(
    store: &Store,
    provider: &str,
    alias: &str,
) -> Result<Usability, StoreError> {
    let Some(row) = store.grant_by_alias(provider, alias).await? else {
        return Ok(Usability::NotConnected);
    };
    let grant = Grant::from_row(&row)?;
    Ok(if grant.status.is_usable() {
        Usability::Usable
    } else {
        Usability::Held {
            status: grant.status,
            reason: grant.status_reason.unwrap_or_default(),
        }
    })
}

impl Custodian {
    pub fn new(
        store: Store,
        keys: Arc<Keyring>,
        oauth: Arc<BushaOAuth>,
        clock: Clock,
        config: CustodyConfig,
    ) -> Custodian {
        Self::with_providers(store, keys, Some(oauth), None, clock, config)
    }

    /// A custodian for the providers given: Busha grants need `oauth`, Baanx grants
    /// `baanx`; a grant of a provider left out cannot be refreshed or revoked here.
    pub fn with_providers(
        store: Store,
        keys: Arc<Keyring>,
        oauth: Option<Arc<BushaOAuth>>,
        baanx: Option<Arc<BaanxTokens>>,
        clock: Clock,
        mut config: CustodyConfig,
    ) -> Custodian {
        // The lease must outlive the token call and its one retry, so that a holder can
        // never still be waiting on the provider after its lease lapsed.
        let longest = [
            oauth.as_ref().map(|o| o.timeout()),
            baanx.as_ref().map(|b| b.timeout()),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(StdDuration::from_secs(15));
        let call = Duration::from_std(longest).unwrap_or(Duration::seconds(15));
        config.token_call_timeout = config.token_call_timeout.max(call);
        config.lease = config
            .lease
            .max(config.token_call_timeout * 2 + Duration::seconds(10));
        let owner = format!(
            "worker:{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Custodian {
            inner: Arc::new(Inner {
                store,
                keys,
                oauth,
                baanx,
                clock,
                config,
                owner,
                locks: parking_lot::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same custodian acting for an authenticated operator (the CLI): its lease
    /// owner and audit actor name the operator, and stay unique to this process.
    pub fn acting_for(mut self, operator_actor: &str) -> Custodian {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.owner = format!(
                "{operator_actor} (cli-{}-{})",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
        }
        self
    }

    /// This custodian's lease owner id (also its audit actor).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A valid access token for `grant_id`, refreshed first when it expires within the
    /// margin. The refreshed pair is stored before the token is returned.
    pub async fn access_token(&self, grant_id: &str) -> Result<AccessToken, GrantError> {
        self.obtain(grant_id, Want::Fresh).await
    }

    /// Busha answered 401 to `rejected`: refresh once, unless another caller already
    /// replaced that token, and return the replacement. Retry the call once with it.
    pub async fn force_refresh(
        &self,
        grant_id: &str,
        rejected: &AccessToken,
    ) -> Result<AccessToken, GrantError> {
        self.obtain(grant_id, Want::Replace(rejected.clone())).await
    }

    /// Refreshes now, whatever the expiry (`treasury grants refresh`).
    pub async fn refresh_now(&self, grant_id: &str) -> Result<AccessToken, GrantError> {
        let row = self.load(grant_id).await?;
        self.check_usable(&row)?;
        let current = self.open_access(&row)?;
        match current {
            Some(token) => self.obtain(grant_id, Want::Replace(token)).await,
            None => self.obtain(grant_id, Want::Fresh).await,
        }
    }

    /// Runs `call` with the grant's token; on a 401 refreshes once and runs it again;
    /// a second 401 fails clearly with [`GrantError::Unauthorized`]. Other provider
    /// errors come back as the inner `Err`.
    pub async fn with_token<T, F, Fut>(
        &self,
        grant_id: &str,
        call: F,
    ) -> Result<Result<T, ProviderError>, GrantError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let token = self.access_token(grant_id).await?;
        match call(token.clone()).await {
            Err(e) if e.kind() == &ErrorKind::Unauthorized => {
                tracing::warn!(grant = grant_id, "Busha answered 401; refreshing once");
                let fresh = self.force_refresh(grant_id, &token).await?;
                match call(fresh).await {
                    Err(e) if e.kind() == &ErrorKind::Unauthorized => {
                        Err(self.after_second_401(grant_id, &e.to_string()).await)
                    }
                    other => Ok(other),
                }
            }
            other => Ok(other),
        }
    }

    /// The grant stored under `alias` (Busha), without tokens.
    pub async fn grant_by_alias(&self, alias: &str) -> Result<Option<Grant>, GrantError> {
        let row = self.inner.store.grant_by_alias("busha", alias).await?;
        Ok(row.as_ref().map(Grant::from_row).transpose()?)
    }

    /// Every stored grant, without tokens.
    pub async fn grants(&self) -> Result<Vec<Grant>, GrantError> {
        let rows = self.inner.store.grants().await?;
        Ok(rows.iter().map(Grant::from_row).collect::<Result<_, _>>()?)
    }

    /// Revokes the grant at Busha (its refresh token, which ends the family) and marks
    /// it revoked, with an audit entry by `actor`. Tokens are wiped from the store. A
    /// grant that is no longer active has no live tokens: it is only marked.
    pub async fn revoke(&self, grant_id: &str, actor: &str) -> Result<Grant, GrantError> {
        let row = self.load(grant_id).await?;
        if row.provider == "baanx" && row.status == GrantStatus::Active.as_str() {
            // Baanx revokes with a bearer token: refresh first when it has expired. A
            // refresh that finds the grant dead leaves it to be marked below.
            if let Err(e) = self.access_token(grant_id).await {
                if e.is_transient() {
                    return Err(e);
                }
            }
        }
        let lock = self.lock_for(grant_id);
        let _serial = lock.lock().await;
        let row = self.load(grant_id).await?;
        if row.status != GrantStatus::Active.as_str() {
            return self.revoke_locked(grant_id, None, actor).await;
        }
        let lease = match self
            .lease_or(grant_id, |_| Ok(None::<std::convert::Infallible>))
            .await?
        {
            Leased::Held(lease) => lease,
            Leased::Done(never) => match never {},
        };
        let result = self.revoke_locked(grant_id, Some(lease), actor).await;
        self.release(grant_id, lease).await;
        result
    }

    async fn revoke_locked(
        &self,
        grant_id: &str,
        lease: Option<Lease>,
        actor: &str,
    ) -> Result<Grant, GrantError> {
        let row = self.load(grant_id).await?;
        let was = row.status.clone();
        if row.provider == "baanx" {
            self.revoke_at_baanx(&row).await?;
        } else if let Some(ct) = &row.refresh_token_ct {
            let rt = RefreshToken::new(
                self.inner
                    .keys
                    .open(Owner::Grant(&row.id), REFRESH_FIELD, row.key_version, ct)?
                    .as_str(),
            );
            self.busha_of(&row)?
                .revoke(&rt)
                .await
                .map_err(|reason| GrantError::Transient {
                    alias: row.alias.clone(),
                    reason: format!(
                        "Busha's revocation endpoint failed: {reason}; nothing changed"
                    ),
                })?;
        }
        let now = self.now();
        let reason = format!("revoked by {actor}");
        let mut tx = self.inner.store.begin().await?;
        if !self
            .inner
            .store
            .end_grant_in(
                &mut tx,
                grant_id,
                lease.map(|l| l.fence),
                "revoked",
                &reason,
                now,
            )
            .await?
        {
            return Err(self.transient(&row, "another holder took the grant over; try again"));
        }
        self.end_consent_in(&mut tx, &row, "revoked", &reason, now)
            .await?;
        self.inner
            .store
            .append_audit_in(
                &mut tx,
                now,
                NewAuditEntry::new(
                    actor,
                    "grant.revoked",
                    json!({
                        "alias": row.alias,
                        "provider": row.provider,
                        "previous_status": was,
                        "revoked_at_provider": row.refresh_token_ct.is_some(),
                    }),
                )
                .grant(&row.id),
            )
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(grant = %row.alias, "grant revoked");
        let row = self.load(grant_id).await?;
        Ok(Grant::from_row(&row)?)
    }

    // ---- the single-flight core ------------------------------------------------

    async fn obtain(&self, grant_id: &str, want: Want) -> Result<AccessToken, GrantError> {
        // Fast path: no lock when the stored token already does.
        let row = self.load(grant_id).await?;
        self.check_usable(&row)?;
        if let Some(token) = self.satisfies(&row, &want)? {
            return Ok(token);
        }
        let serial = self.lock_for(grant_id).lock_owned().await;
        // The refresh runs in a task of its own, holding the per-grant lock, so that a
        // caller who gives up (a timeout, a dropped request) cannot cancel it midway:
        // once the request is sent Busha may have rotated the pair, which must then be
        // stored, and a cancelled holder would leave our own lease re-enterable with a
        // spent refresh token.
        let this = self.clone();
        let id = grant_id.to_string();
        let task = tokio::spawn(async move {
            let _serial = serial;
            this.obtain_serialised(&id, want).await
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(GrantError::Transient {
                alias: grant_id.to_string(),
                reason: format!("the refresh task failed: {e}"),
            }),
        }
    }

    /// [`Custodian::obtain`] once this process's lock for the grant is held.
    async fn obtain_serialised(
        &self,
        grant_id: &str,
        want: Want,
    ) -> Result<AccessToken, GrantError> {
        let lease = match self
            .lease_or(grant_id, |row| self.satisfies(row, &want))
            .await?
        {
            Leased::Done(token) => return Ok(token),
            Leased::Held(lease) => lease,
        };
        let result = self.refresh_under_lease(grant_id, lease, &want).await;
        // A no-op when the outcome's own write released it (same fence) or when the
        // fence has moved on; otherwise it frees the grant for the next holder.
        self.release(grant_id, lease).await;
        result
    }

    /// Polls until `done` is satisfied by the stored row, or this custodian takes the
    /// lease. Returns an error when the grant is not usable or waiting took too long.
    async fn lease_or<T>(
        &self,
        grant_id: &str,
        done: impl Fn(&GrantRow) -> Result<Option<T>, GrantError>,
    ) -> Result<Leased<T>, GrantError> {
        let started = Instant::now();
        let mut pause = self.inner.config.poll_min;
        loop {
            let row = self.load(grant_id).await?;
            self.check_usable(&row)?;
            if let Some(t) = done(&row)? {
                return Ok(Leased::Done(t));
            }
            let now = self.now();
            let until = now + self.inner.config.lease;
            if let Some(fence) = self
                .inner
                .store
                .acquire_grant_lease(grant_id, &self.inner.owner, now, until)
                .await?
            {
                tracing::debug!(grant = %row.alias, fence, "took the refresh lease");
                return Ok(Leased::Held(Lease { fence, until }));
            }
            if started.elapsed() > self.inner.config.max_wait {
                return Err(self.transient(
                    &row,
                    &format!(
                        "{} has held the refresh lease for longer than {} s",
                        row.lease_owner.as_deref().unwrap_or("another worker"),
                        self.inner.config.max_wait.as_secs()
                    ),
                ));
            }
            // Polling with backoff is the protocol here: another process holds the lease
            // and releases it in the store, which cannot notify us.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.inner.config.poll_max);
        }
    }

    async fn refresh_under_lease(
        &self,
        grant_id: &str,
        mut lease: Lease,
        want: &Want,
    ) -> Result<AccessToken, GrantError> {
        // Re-read under the lease: another process may have refreshed meanwhile.
        let row = self.load(grant_id).await?;
        self.check_usable(&row)?;
        if row.fence != lease.fence {
            return Err(self.transient(&row, "the refresh lease was taken over; try again"));
        }
        if let Some(token) = self.satisfies(&row, want)? {
            return Ok(token);
        }
        let Some(rt_ct) = &row.refresh_token_ct else {
            return Err(self
                .disconnect(
                    &row,
                    lease,
                    "the access token expired and the grant holds no refresh token (offline_access was not granted)",
                    false,
                )
                .await);
        };
        let refresh_token = RefreshToken::new(
            self.inner
                .keys
                .open(Owner::Grant(&row.id), REFRESH_FIELD, row.key_version, rt_ct)?
                .as_str(),
        );

        let first = self.call_refresh(&row, &mut lease, &refresh_token).await?;
        let unknown = match first {
            Ok(set) => return self.store_pair(&row, lease, set, &refresh_token).await,
            Err(RefreshFailure::InvalidGrant { description }) => {
                let reason = format!(
                    "{} refused the refresh token: invalid_grant ({description})",
                    provider_name(&row.provider)
                );
                return self.after_invalid_grant(&row, lease, want, &reason).await;
            }
            Err(RefreshFailure::NotSent(why)) => {
                return Err(self.transient(
                    &row,
                    &format!(
                        "{}'s token endpoint could not be reached ({why}); nothing was sent",
                        provider_name(&row.provider)
                    ),
                ));
            }
            Err(RefreshFailure::Refused { error, description }) => {
                return Err(GrantError::Refused {
                    alias: row.alias.clone(),
                    reason: format!("{error}: {description}"),
                });
            }
            Err(RefreshFailure::OutcomeUnknown(why)) => why,
            // A 5xx or 429 is never a refusal (a body saying `server_error` notwithstanding):
            // retried once with the same token like an unknown outcome, after Busha's
            // Retry-After, unless that is longer than we may hold the refresh for.
            Err(busy @ RefreshFailure::Unavailable { retry_after, .. }) => {
                let wait = retry_after.unwrap_or(StdDuration::ZERO);
                if wait > MAX_RETRY_AFTER_WAIT {
                    return Err(self.transient(
                        &row,
                        &format!("{busy}; the stored refresh token is kept for then"),
                    ));
                }
                tokio::time::sleep(wait).await;
                busy.to_string()
            }
        };

        // Invariant 6: an unknown outcome is retried once with the same refresh token.
        // If the first request never arrived, this succeeds; if it did, Busha already
        // rotated the token, the new pair was lost with the response, and the
        // invalid_grant below confirms a disconnect no retry could have prevented.
        tracing::warn!(grant = %row.alias, reason = %unknown, "refresh outcome unknown; retrying once with the same refresh token");
        match self.call_refresh(&row, &mut lease, &refresh_token).await? {
            Ok(set) => self.store_pair(&row, lease, set, &refresh_token).await,
            Err(RefreshFailure::InvalidGrant { description }) => {
                let reason = format!(
                    "the response to a refresh was lost ({unknown}); the retry with the same refresh token got invalid_grant ({description}), so {} had already rotated it and the new pair was lost with the response",
                    provider_name(&row.provider)
                );
                self.after_invalid_grant(&row, lease, want, &reason).await
            }
            Err(RefreshFailure::Refused { error, description }) => Err(GrantError::Refused {
                alias: row.alias.clone(),
                reason: format!("{error}: {description}"),
            }),
            Err(
                again @ (RefreshFailure::NotSent(_)
                | RefreshFailure::OutcomeUnknown(_)
                | RefreshFailure::Unavailable { .. }),
            ) => {
                let again = match again {
                    RefreshFailure::NotSent(why) | RefreshFailure::OutcomeUnknown(why) => why,
                    other => other.to_string(),
                };
                Err(self.transient(
                    &row,
                    &format!(
                        "the refresh outcome is unknown ({unknown}) and so is its one retry ({again}); the stored refresh token is kept"
                    ),
                ))
            }
        }
    }

    /// One token call, after making sure the lease outlasts its timeout.
    async fn call_refresh(
        &self,
        row: &GrantRow,
        lease: &mut Lease,
        refresh_token: &RefreshToken,
    ) -> Result<Result<TokenSet, RefreshFailure>, GrantError> {
        let now = self.now();
        if lease.until - now <= self.inner.config.token_call_timeout {
            let until = now + self.inner.config.lease;
            if !self
                .inner
                .store
                .renew_grant_lease(&row.id, lease.fence, &self.inner.owner, until)
                .await?
            {
                return Err(self.transient(
                    row,
                    "the refresh lease lapsed before the token call; nothing was sent",
                ));
            }
            lease.until = until;
        }
        metrics::counter!("treasury_token_refreshes_total").increment(1);
        if row.provider != "baanx" {
            return Ok(self.busha_of(row)?.refresh(refresh_token).await);
        }
        let (baanx, region) = self.baanx_of(row)?;
        Ok(baanx.refresh(region, refresh_token).await)
    }

    /// Busha's issuer, for a Busha grant.
    fn busha_of(&self, row: &GrantRow) -> Result<&BushaOAuth, GrantError> {
        self.inner
            .oauth
            .as_deref()
            .ok_or_else(|| GrantError::Refused {
                alias: row.alias.clone(),
                reason: "this process has no Busha issuer configured".into(),
            })
    }

    /// The Baanx token endpoint and the grant's region.
    fn baanx_of(
        &self,
        row: &GrantRow,
    ) -> Result<(&BaanxTokens, crate::provider::baanx::Region), GrantError> {
        let refused = |reason: &str| GrantError::Refused {
            alias: row.alias.clone(),
            reason: reason.to_string(),
        };
        let baanx = self
            .inner
            .baanx
            .as_deref()
            .ok_or_else(|| refused("this process has no [baanx] settings"))?;
        let region = parse_region(row.region.as_deref())
            .ok_or_else(|| refused("the grant has no stored Baanx region"))?;
        Ok((baanx, region))
    }

    /// `invalid_grant`: re-read first; use another holder's tokens if it refreshed,
    /// otherwise disconnect the grant.
    async fn after_invalid_grant(
        &self,
        row: &GrantRow,
        lease: Lease,
        want: &Want,
        reason: &str,
    ) -> Result<AccessToken, GrantError> {
        let now_row = self.load(&row.id).await?;
        if now_row.fence != lease.fence || now_row.refresh_token_ct != row.refresh_token_ct {
            self.check_usable(&now_row)?;
            if let Some(token) = self.satisfies(&now_row, want)? {
                tracing::info!(grant = %row.alias, "invalid_grant, but another holder had refreshed; using its tokens");
                return Ok(token);
            }
            return Err(self.transient(row, "another holder changed the grant during the refresh"));
        }
        Err(self.disconnect(row, lease, reason, true).await)
    }

    /// A 401 right after a fresh refresh. On Baanx the refreshed token is refused too:
    /// the customer (or Baanx) ended the access, so the grant is disconnected and its
    /// jobs held. Busha's answer stays a clear failure, as before.
    async fn after_second_401(&self, grant_id: &str, reason: &str) -> GrantError {
        let row = match self.load(grant_id).await {
            Ok(row) => row,
            Err(e) => return e,
        };
        if row.provider != "baanx" {
            return GrantError::Unauthorized {
                alias: row.alias,
                reason: reason.to_string(),
            };
        }
        let reason = format!(
            "Baanx refused a freshly refreshed access token ({reason}): the access was ended at Baanx"
        );
        match self
            .lease_or(grant_id, |_| Ok(None::<std::convert::Infallible>))
            .await
        {
            Ok(Leased::Held(lease)) => {
                let e = self.disconnect(&row, lease, &reason, false).await;
                self.release(grant_id, lease).await;
                e
            }
            Ok(Leased::Done(never)) => match never {},
            Err(e) => e,
        }
    }

    /// Marks the grant disconnected under our fence, with an audit entry.
    async fn disconnect(
        &self,
        row: &GrantRow,
        lease: Lease,
        reason: &str,
        invalid_grant: bool,
    ) -> GrantError {
        let now = self.now();
        let written = async {
            let mut tx = self.inner.store.begin().await?;
            let ok = self
                .inner
                .store
                .end_grant_in(
                    &mut tx,
                    &row.id,
                    Some(lease.fence),
                    "disconnected",
                    reason,
                    now,
                )
                .await?;
            if ok {
                self.end_consent_in(&mut tx, row, "disconnected", reason, now)
                    .await?;
                self.inner
                    .store
                    .append_audit_in(
                        &mut tx,
                        now,
                        NewAuditEntry::new(
                            &self.inner.owner,
                            "grant.disconnected",
                            json!({
                                "alias": row.alias,
                                "provider": row.provider,
                                "reason": reason,
                                "invalid_grant": invalid_grant,
                            }),
                        )
                        .grant(&row.id),
                    )
                    .await?;
                tx.commit().await.map_err(StoreError::from)?;
            }
            Ok::<bool, StoreError>(ok)
        }
        .await;
        match written {
            Ok(true) => {
                tracing::error!(grant = %row.alias, %reason, "grant DISCONNECTED: the customer must connect again; its jobs are held");
                GrantError::Disconnected {
                    alias: row.alias.clone(),
                    reason: reason.to_string(),
                }
            }
            Ok(false) => self.transient(row, "another holder took the grant over; try again"),
            Err(e) => GrantError::Store(e),
        }
    }

    /// Seals and stores a rotated pair under our fence before anyone may use it. If
    /// storing fails, Busha has rotated a pair we do not have: the grant is lost.
    async fn store_pair(
        &self,
        row: &GrantRow,
        lease: Lease,
        set: TokenSet,
        old_refresh: &RefreshToken,
    ) -> Result<AccessToken, GrantError> {
        let now = self.now();
        let keys = &self.inner.keys;
        let owner = Owner::Grant(&row.id);
        let lifetime = set
            .expires_in
            .and_then(|d| Duration::from_std(d).ok())
            .unwrap_or(self.inner.config.default_lifetime);
        // Busha always rotates; if a response ever lacks a refresh token, the one we
        // presented is still the latest (RFC 6749 §6).
        let refresh = set.refresh_token.as_ref().unwrap_or(old_refresh);
        let (version, access_ct) = keys.seal(owner, ACCESS_FIELD, set.access_token.secret())?;
        let (_, refresh_ct) = keys.seal(owner, REFRESH_FIELD, refresh.secret())?;
        let sealed = SealedTokens {
            key_version: version,
            access_token_ct: access_ct,
            access_expires_at: now + lifetime,
            refresh_token_ct: Some(refresh_ct),
            scopes: set
                .scopes
                .as_ref()
                .map(|s| s.join(" "))
                .unwrap_or_else(|| row.scopes.clone()),
            refresh_expires_at: set
                .refresh_expires_in
                .and_then(|d| Duration::from_std(d).ok())
                .map(|d| now + d),
        };
        let mut last_error = None;
        // A passing store hiccup (a lock, a failover) gets a few quick tries: the pair
        // exists nowhere else.
        for attempt in 0..3 {
            match self.write_pair(row, lease, &sealed, now).await {
                Ok(true) => {
                    tracing::info!(grant = %row.alias, expires_at = %sealed.access_expires_at, "refreshed the grant's tokens");
                    return Ok(set.access_token);
                }
                Ok(false) => {
                    return Err(self
                        .discard(
                            row,
                            lease,
                            "a newer holder took the grant over while this refresh was in flight",
                        )
                        .await);
                }
                Err(e) => {
                    tracing::warn!(grant = %row.alias, attempt, error = %e, "storing the rotated pair failed");
                    last_error = Some(e);
                    tokio::time::sleep(self.inner.config.poll_max).await;
                }
            }
        }
        let why = last_error.map(|e| e.to_string()).unwrap_or_default();
        Err(self.mark_lost(row, lease, &why).await)
    }

    async fn write_pair(
        &self,
        row: &GrantRow,
        lease: Lease,
        sealed: &SealedTokens,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.inner.store.begin().await?;
        if !self
            .inner
            .store
            .store_refreshed_tokens_in(&mut tx, &row.id, lease.fence, sealed, now)
            .await?
        {
            return Ok(false);
        }
        self.inner
            .store
            .append_audit_in(
                &mut tx,
                now,
                NewAuditEntry::new(
                    &self.inner.owner,
                    "grant.refreshed",
                    json!({
                        "alias": row.alias,
                        "access_expires_at": sealed.access_expires_at.to_rfc3339(),
                        "fence": lease.fence,
                    }),
                )
                .grant(&row.id),
            )
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(true)
    }

    /// A rotated pair that may not be written (our fence is stale): audited, dropped.
    async fn discard(&self, row: &GrantRow, lease: Lease, why: &str) -> GrantError {
        let entry = NewAuditEntry::new(
            &self.inner.owner,
            "grant.refresh_discarded",
            json!({"alias": row.alias, "fence": lease.fence, "reason": why, "critical": true}),
        )
        .grant(&row.id);
        if let Err(e) = self.inner.store.append_audit(self.now(), entry).await {
            tracing::error!(grant = %row.alias, error = %e, "could not audit a discarded refresh");
        }
        tracing::error!(grant = %row.alias, %why, "discarded a rotated token pair (stale lease)");
        self.transient(row, why)
    }

    /// Critical: Busha rotated the pair and we could not store it.
    async fn mark_lost(&self, row: &GrantRow, lease: Lease, why: &str) -> GrantError {
        let reason = format!(
            "Busha rotated the token pair but storing it failed ({why}); the session is lost and needs re-consent"
        );
        let now = self.now();
        let result = async {
            let mut tx = self.inner.store.begin().await?;
            self.inner
                .store
                .end_grant_in(&mut tx, &row.id, Some(lease.fence), "lost", &reason, now)
                .await?;
            self.inner
                .store
                .append_audit_in(
                    &mut tx,
                    now,
                    NewAuditEntry::new(
                        &self.inner.owner,
                        "grant.lost",
                        json!({"alias": row.alias, "provider": row.provider, "reason": reason, "critical": true}),
                    )
                    .grant(&row.id),
                )
                .await?;
            tx.commit().await.map_err(StoreError::from)
        }
        .await;
        if let Err(e) = result {
            tracing::error!(grant = %row.alias, error = %e, "CRITICAL: grant lost and the store refused to record it");
        }
        tracing::error!(grant = %row.alias, %reason, "CRITICAL: grant LOST");
        GrantError::Lost {
            alias: row.alias.clone(),
            reason,
        }
    }

    // ---- helpers ----------------------------------------------------------------

    /// Revokes at Baanx with the grant's access token (every token of our client for
    /// that user dies). A grant without a live access token has nothing to revoke.
    async fn revoke_at_baanx(&self, row: &GrantRow) -> Result<(), GrantError> {
        let Some(token) = self.open_access(row)? else {
            return Ok(());
        };
        let (baanx, region) = self.baanx_of(row)?;
        baanx
            .revoke(region, &token)
            .await
            .map_err(|reason| GrantError::Transient {
                alias: row.alias.clone(),
                reason: format!("Baanx's revocation endpoint failed: {reason}; nothing changed"),
            })
    }

    /// Records the end of the grant's consent record, if it has one.
    async fn end_consent_in(
        &self,
        tx: &mut crate::store::Tx,
        row: &GrantRow,
        how: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match super::consent::ended(row.consent.as_deref(), how, reason, now) {
            Some(consent) => {
                self.inner
                    .store
                    .set_grant_consent_in(tx, &row.id, &consent)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn release(&self, grant_id: &str, lease: Lease) {
        if let Err(e) = self
            .inner
            .store
            .release_grant_lease(grant_id, lease.fence)
            .await
        {
            // The lease lapses on its own; waiters then take it.
            tracing::warn!(grant = grant_id, error = %e, "could not release the refresh lease");
        }
    }

    fn lock_for(&self, grant_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .locks
            .lock()
            .entry(grant_id.to_string())
            .or_default()
            .clone()
    }

    async fn load(&self, grant_id: &str) -> Result<GrantRow, GrantError> {
        self.inner
            .store
            .grant(grant_id)
            .await?
            .ok_or_else(|| GrantError::Unknown(grant_id.to_string()))
    }

    fn check_usable(&self, row: &GrantRow) -> Result<(), GrantError> {
        let grant = Grant::from_row(row)?;
        if grant.status.is_usable() {
            Ok(())
        } else {
            Err(GrantError::NotUsable {
                alias: grant.alias,
                status: grant.status,
                reason: grant
                    .status_reason
                    .unwrap_or_else(|| "no reason recorded".into()),
            })
        }
    }

    fn open_access(&self, row: &GrantRow) -> Result<Option<AccessToken>, GrantError> {
        row.access_token_ct
            .as_ref()
            .map(|ct| {
                let plain = self.inner.keys.open(
                    Owner::Grant(&row.id),
                    ACCESS_FIELD,
                    row.key_version,
                    ct,
                )?;
                Ok(AccessToken::new(plain.as_str()))
            })
            .transpose()
    }

    /// The stored token, if it meets `want`.
    fn satisfies(&self, row: &GrantRow, want: &Want) -> Result<Option<AccessToken>, GrantError> {
        if row.access_expires_at - self.inner.config.refresh_margin <= self.now() {
            return Ok(None);
        }
        let Some(token) = self.open_access(row)? else {
            return Ok(None);
        };
        Ok(match want {
            Want::Fresh => Some(token),
            Want::Replace(old) if old.secret() != token.secret() => Some(token),
            Want::Replace(_) => None,
        })
    }

    fn transient(&self, row: &GrantRow, reason: &str) -> GrantError {
        GrantError::Transient {
            alias: row.alias.clone(),
            reason: reason.to_string(),
        }
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Whether this custodian can refresh grants of `provider`.
    pub(super) fn handles(&self, provider: &str) -> bool {
        match provider {
            "baanx" => self.inner.baanx.is_some(),
            _ => self.inner.oauth.is_some(),
        }
    }
}

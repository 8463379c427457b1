//! Client-side pacing of provider calls, per endpoint, on `governor`.
//!
//! Busha counts requests per endpoint over any rolling 60 s and answers `429` past the
//! limit. We pace ourselves below that instead of discovering it through 429s: a 429 on
//! `POST /v1/transfers` costs a run a delay, and a burst of them looks like abuse.
//!
//! By default the pacer is per process. In the distributed profile several processes
//! share one budget, and the pacer keeps its state in Redis instead ([`shared`]): the
//! same intervals, burst one, one slot per endpoint across every process.

mod shared;

pub use shared::SharedPacing;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

/// Requests a minute allowed when an endpoint has no override (Busha's documented default).
pub const BUSHA_DEFAULT_PER_MINUTE: u32 = 100;

/// Safety margin on every interval, in per cent. See [`cell_interval`] for why 2 %.
pub const SAFETY_MARGIN_PERCENT: u64 = 2;

/// Per-minute request limits keyed by endpoint, e.g. `"POST /v1/quotes"`.
///
/// Keys are route templates (`"GET /v1/transfers/{id}"`), never concrete paths, because
/// the provider counts per route, not per resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointLimits {
    /// Limit for any endpoint without an override.
    pub default_per_minute: u32,
    /// Endpoint key → requests per minute.
    pub overrides: BTreeMap<String, u32>,
}

impl EndpointLimits {
    /// The same limit for every endpoint, with no overrides.
    pub fn uniform(per_minute: u32) -> Self {
        Self {
            default_per_minute: per_minute,
            overrides: BTreeMap::new(),
        }
    }

    /// Busha's documented limits (OpenAPI `x-rate-limit`, per minute) for the endpoints
    /// this client calls; 100 a minute for everything else.
    pub fn busha() -> Self {
        Self::uniform(BUSHA_DEFAULT_PER_MINUTE)
            .with("POST /v1/quotes", 20)
            .with("POST /v1/transfers", 20)
            .with("POST /v1/recipients", 20)
            .with("POST /v1/recipients/resolve-bank-account", 5)
            .with("GET /v1/banks", 20)
    }

    /// Baanx documents no limits: conservative ones, per client key and endpoint, that
    /// the Baanx sandbox enforces too (60 a minute; 10 on login, OTP and each
    /// withdrawal; 20 on the token endpoint).
    pub fn baanx() -> Self {
        Self::uniform(60)
            .with("POST /v1/auth/login", 10)
            .with("POST /v1/auth/login/otp", 10)
            .with("POST /v1/auth/oauth/token", 20)
            .with("POST /v1/wallet/internal/withdraw", 10)
            .with("POST /v1/wallet/credit/withdraw", 10)
            .with("POST /v1/wallet/reward/withdraw", 10)
    }

    /// Sets (or replaces) the limit of one endpoint.
    pub fn with(mut self, endpoint: &str, per_minute: u32) -> Self {
        self.overrides.insert(endpoint.to_string(), per_minute);
        self
    }

    /// Every limit multiplied by `factor`, for tests and benchmarks that need volume.
    /// Such a test must raise the sandbox's limits by the same factor and say so.
    pub fn scaled(&self, factor: u32) -> Self {
        Self {
            default_per_minute: self.default_per_minute.saturating_mul(factor),
            overrides: self
                .overrides
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_mul(factor)))
                .collect(),
        }
    }

    /// The per-minute limit that applies to `endpoint`.
    pub fn limit_for(&self, endpoint: &str) -> u32 {
        self.overrides
            .get(endpoint)
            .copied()
            .unwrap_or(self.default_per_minute)
    }
}

impl Default for EndpointLimits {
    fn default() -> Self {
        Self::busha()
    }
}

/// The time one governor cell stands for: `60 s / limit`, stretched by a 2 % margin.
///
/// Why this keeps every rolling minute within `limit`, even with jitter: the quota has a
/// burst of one, so any two requests we let through are at least `T = 61.2 s / limit`
/// apart. Busha counts what it *receives*; if the network delays requests by different
/// amounts (at most `j` apart), the requests Busha sees in one 60 s window were sent
/// within `60 s + j`. At most `floor((60 + j) / T) + 1` sends fit in such a span, and that
/// is `<= limit` exactly when `(60 + j) * limit / 61.2 < limit`, i.e. when `j < 1.2 s`,
/// whatever the limit. Without the margin (`T = 60 s / limit`) any jitter at all could
/// put `limit + 1` requests into one window. A burst above one would break this outright:
/// `b` back-to-back requests plus `limit - 1` paced ones fit in one minute.
///
/// A limit of 0 is treated as 1: a pacer must never wait for ever.
pub fn cell_interval(per_minute: u32) -> Duration {
    let per_minute = u64::from(per_minute.max(1));
    let stretched_minute_nanos = 60_000_000_000u64 * (100 + SAFETY_MARGIN_PERCENT) / 100;
    Duration::from_nanos(stretched_minute_nanos / per_minute)
}

/// The governor quota for a per-minute limit: one cell per [`cell_interval`], burst 1.
pub fn quota_for(per_minute: u32) -> Quota {
    // `with_period` is `None` only for a zero period; `cell_interval` is at least 1.02 ms
    // for any `u32` limit, so the fallback never runs. It is there to avoid an `expect`.
    Quota::with_period(cell_interval(per_minute))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::MIN)
}

/// One rate limiter per endpoint key. Cheap to clone; clones share the limiters.
#[derive(Clone)]
pub struct Pacer {
    limits: Arc<EndpointLimits>,
    limiters: Arc<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>>,
    shared: Option<SharedPacing>,
}

impl Pacer {
    pub fn new(limits: EndpointLimits) -> Self {
        Self {
            limits: Arc::new(limits),
            limiters: Arc::default(),
            shared: None,
        }
    }

    /// A pacer whose state every process shares, in Redis.
    pub fn shared(limits: EndpointLimits, shared: SharedPacing) -> Self {
        Self {
            shared: Some(shared),
            ..Self::new(limits)
        }
    }

    /// Whether the budget is shared with other processes.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn limits(&self) -> &EndpointLimits {
        &self.limits
    }

    /// Waits until `endpoint` may be called again, then takes its cell.
    pub async fn acquire(&self, endpoint: &str) {
        if let Some(shared) = &self.shared {
            let interval = cell_interval(self.limits.limit_for(endpoint));
            shared.acquire_within(endpoint, interval, None).await;
            return;
        }
        self.limiter(endpoint).until_ready().await;
    }

    /// Like [`Self::acquire`], but gives up after `max_wait` and returns `false` without
    /// taking a cell, for callers that must not sleep long (a worker handler records a
    /// `next_attempt_at` instead). The waiting is governor's own `until_ready`.
    pub async fn acquire_within(&self, endpoint: &str, max_wait: std::time::Duration) -> bool {
        if let Some(shared) = &self.shared {
            let interval = cell_interval(self.limits.limit_for(endpoint));
            return shared
                .acquire_within(endpoint, interval, Some(max_wait))
                .await;
        }
        let limiter = self.limiter(endpoint);
        tokio::time::timeout(max_wait, limiter.until_ready())
            .await
            .is_ok()
    }

    fn limiter(&self, endpoint: &str) -> Arc<DefaultDirectRateLimiter> {
        // A lock held only to look up or insert; never across an await.
        let mut limiters = self.limiters.lock();
        if let Some(limiter) = limiters.get(endpoint) {
            return Arc::clone(limiter);
        }
        let limiter = Arc::new(RateLimiter::direct(quota_for(
            self.limits.limit_for(endpoint),
        )));
        limiters.insert(endpoint.to_string(), Arc::clone(&limiter));
        limiter
    }
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("limits", &self.limits)
            .field("shared", &self.shared)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn busha_limits_match_the_documented_ones() {
        let limits = EndpointLimits::busha();
        for endpoint in [
            "POST /v1/quotes",
            "POST /v1/transfers",
            "POST /v1/recipients",
        ] {
            assert_eq!(limits.limit_for(endpoint), 20, "{endpoint}");
        }
        assert_eq!(
            limits.limit_for("POST /v1/recipients/resolve-bank-account"),
            5
        );
        assert_eq!(limits.limit_for("GET /v1/banks"), 20);
        assert_eq!(limits.limit_for("GET /v1/transfers/{id}"), 100);
        assert_eq!(limits.limit_for("GET /v1/quotes"), 100);
    }

    #[test]
    fn scaling_multiplies_every_limit() {
        let scaled = EndpointLimits::busha().scaled(10);
        assert_eq!(scaled.default_per_minute, 1000);
        assert_eq!(scaled.limit_for("POST /v1/transfers"), 200);
        assert_eq!(
            scaled.limit_for("POST /v1/recipients/resolve-bank-account"),
            50
        );
    }

    #[test]
    fn twenty_a_minute_is_one_cell_every_3_06_seconds_with_burst_one() {
        assert_eq!(cell_interval(20), Duration::from_millis(3060));
        assert!(cell_interval(20) >= Duration::from_secs(60) / 20);
        assert_eq!(cell_interval(5), Duration::from_millis(12_240));
        assert_eq!(cell_interval(100), Duration::from_millis(612));
        assert_eq!(cell_interval(0), cell_interval(1));

        let quota = quota_for(20);
        assert_eq!(quota.burst_size().get(), 1);
        assert_eq!(quota.replenish_interval(), Duration::from_millis(3060));
    }

    #[test]
    fn no_rolling_minute_can_hold_more_than_the_limit() {
        // Sends spaced exactly one interval apart, the tightest the pacer allows: count
        // the most that fit into any 60 s window, even when Busha sees them up to 1.1 s
        // closer together than we sent them.
        for limit in [1u32, 5, 20, 60, 100, 1000] {
            let t = cell_interval(limit).as_nanos();
            let window = Duration::from_millis(60_000 + 1_100).as_nanos();
            let fit = window / t + 1;
            assert!(fit <= u128::from(limit), "limit {limit}: {fit} fit");
        }
    }

    #[tokio::test]
    async fn acquire_spaces_calls_on_one_endpoint_but_not_across_endpoints() {
        // 600 a minute → 102 ms a cell. Three calls need two full intervals.
        let pacer = Pacer::new(EndpointLimits::uniform(600).with("GET /other", 600));
        let start = Instant::now();
        for _ in 0..3 {
            pacer.acquire("GET /v1/balances").await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(2 * 102 - 5), "{elapsed:?}");

        // A different endpoint has its own budget: its first call does not wait.
        let start = Instant::now();
        pacer.acquire("GET /other").await;
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn acquire_within_gives_up_without_taking_the_cell() {
        // 1 a minute: after the first call the next cell is 61.2 s away.
        let pacer = Pacer::new(EndpointLimits::uniform(1));
        assert!(
            pacer
                .acquire_within("POST /v1/quotes", Duration::ZERO)
                .await
        );
        let start = Instant::now();
        assert!(
            !pacer
                .acquire_within("POST /v1/quotes", Duration::from_millis(50))
                .await
        );
        assert!(start.elapsed() < Duration::from_secs(1));

        // A 10-a-second endpoint has its next cell 102 ms away: a 1 s bound waits for it.
        let pacer = Pacer::new(EndpointLimits::uniform(600));
        assert!(pacer.acquire_within("GET /x", Duration::ZERO).await);
        assert!(pacer.acquire_within("GET /x", Duration::from_secs(1)).await);
        // Giving up took nothing: the third cell is still one interval after the second.
        let start = Instant::now();
        assert!(
            !pacer
                .acquire_within("GET /x", Duration::from_millis(10))
                .await
        );
        assert!(pacer.acquire_within("GET /x", Duration::from_secs(1)).await);
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "{:?}",
            start.elapsed()
        );
    }
}

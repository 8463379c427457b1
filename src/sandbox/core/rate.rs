//! Rolling-minute rate limits, per client and endpoint.
//!
//! Enforced with an exact sliding log (every accepted request time in the last
//! minute), because the sandbox must *detect* any rolling minute that goes over; the
//! clients pace themselves with `governor`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Per-endpoint limits per client over any rolling 60 s, keyed `METHOD /route`. Each
/// emulator has its own defaults (`RateLimits::busha()`, `RateLimits::baanx()`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    pub enabled: bool,
    pub default_per_minute: u32,
    pub overrides: BTreeMap<String, u32>,
}

impl RateLimits {
    /// Every limit multiplied by `factor`, for volume tests (which must say so).
    pub fn scaled(mut self, factor: u32) -> Self {
        self.default_per_minute = self.default_per_minute.saturating_mul(factor);
        for v in self.overrides.values_mut() {
            *v = v.saturating_mul(factor);
        }
        self
    }

    pub fn limit_for(&self, endpoint: &str) -> u32 {
        self.overrides
            .get(endpoint)
            .copied()
            .unwrap_or(self.default_per_minute)
    }
}

/// Accepted request times per (client, endpoint).
pub type Windows = HashMap<(String, String), VecDeque<DateTime<Utc>>>;

/// Counts a request of `key` on `endpoint` against `limits`; on refusal, how long
/// until a slot frees.
pub fn take(
    windows: &mut Windows,
    limits: &RateLimits,
    key: &str,
    endpoint: &str,
    now: DateTime<Utc>,
) -> Result<(), (u32, Duration)> {
    if !limits.enabled {
        return Ok(());
    }
    let limit = limits.limit_for(endpoint);
    let window = windows
        .entry((key.to_string(), endpoint.to_string()))
        .or_default();
    admit(window, now, limit).map_err(|wait| (limit, wait))
}

/// Whole seconds to announce in `Retry-After` for a wait (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    ((wait.num_milliseconds() + 999) / 1000).max(1) as u64
}

/// Sliding-log admission: at most `limit` accepted requests in any (now − 60 s, now].
/// Returns how long until a slot frees when full.
pub fn admit(
    window: &mut VecDeque<DateTime<Utc>>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<(), Duration> {
    let horizon = now - Duration::seconds(60);
    while window.front().is_some_and(|t| *t <= horizon) {
        window.pop_front();
    }
    if window.len() >= limit as usize {
        let oldest = window.front().copied().unwrap_or(now);
        return Err(oldest + Duration::seconds(60) - now);
    }
    window.push_back(now);
    Ok(())
}

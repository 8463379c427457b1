//! Pacing shared by every process acting for one OAuth client, in Redis.
//!
//! Busha counts requests per client and endpoint, so in the distributed profile the
//! budget is shared: three processes pacing themselves alone would send three times
//! the limit. The state is one key per endpoint, updated by one small script: a GCRA
//! with a burst of one. The key holds the endpoint's *theoretical arrival time* (TAT):
//! a call may go when Redis's clock has reached it, and going moves it one
//! [`super::cell_interval`] past now. Redis's own clock (`TIME`) decides, so the
//! processes' clocks never need to agree. With a burst of one, the reasoning of
//! [`super::cell_interval`] (at most `limit` calls in any rolling minute, even with
//! 1.2 s of network jitter) holds across every process together.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// The script, burst 1. KEYS[1]: the endpoint's TAT key (µs since the epoch).
/// ARGV[1]: the interval in µs. Returns 0 when the call may go (and takes the slot),
/// else the µs to wait (and takes nothing).
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > now then
  return tat - now
end
redis.call('SET', KEYS[1], string.format('%d', now + interval), 'PX', math.ceil(interval / 1000) * 2 + 1000)
return 0
"#;

/// A handle on the shared pacing state. Cheap to clone; the connection is made on
/// first use (and re-made by the connection manager after a Redis restart).
#[derive(Clone)]
pub struct SharedPacing {
    client: redis::Client,
    namespace: String,
    conn: std::sync::Arc<OnceCell<ConnectionManager>>,
    script: std::sync::Arc<redis::Script>,
}

impl SharedPacing {
    /// Pacing in the Redis at `url`, under `namespace` (the OAuth client id: the unit
    /// Busha counts per).
    pub fn new(url: &str, namespace: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("the pacing Redis URL is not usable: {e}"))?;
        Ok(Self {
            client,
            namespace: namespace.to_string(),
            conn: Default::default(),
            script: std::sync::Arc::new(redis::Script::new(GCRA)),
        })
    }

    fn key(&self, endpoint: &str) -> String {
        format!("treasury:pace:{}:{endpoint}", self.namespace)
    }

    async fn conn(&self) -> Result<ConnectionManager, String> {
        self.conn
            .get_or_try_init(|| async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    self.client
                        .get_connection_manager_with_config(crate::queue::redis_connection_config()),
                )
                    .await
                    .map_err(|_| "no answer from the pacing Redis in 5 s".to_string())?
                    .map_err(|e| format!("cannot reach the pacing Redis: {e}"))
            })
            .await
            .cloned()
    }

    /// Takes the endpoint's slot if it is free now; otherwise says how long until it
    /// frees (another process may take it first).
    pub async fn try_take(&self, endpoint: &str, interval: Duration) -> Result<Duration, String> {
        let mut conn = self.conn().await?;
        let micros = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let wait: u64 = self
            .script
            .key(self.key(endpoint))
            .arg(micros)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| format!("the pacing script failed: {e}"))?;
        Ok(Duration::from_micros(wait))
    }

    /// Waits for the slot and takes it, giving up after `max_wait` (`None`: never)
    /// without taking anything. A Redis that cannot be reached holds the call back:
    /// without the shared state, no process may assume it has the budget.
    pub async fn acquire_within(
        &self,
        endpoint: &str,
        interval: Duration,
        max_wait: Option<Duration>,
    ) -> bool {
        let deadline = max_wait.map(|w| tokio::time::Instant::now() + w);
        let mut first = true;
        loop {
            // Asking Redis is bounded too, by what is left of `max_wait`: past the
            // deadline nothing is tried (the caller's lease may no longer cover the
            // call), and a slot granted after it is not used.
            let taken = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() && !first {
                        return false;
                    }
                    // One look is always allowed, even with no time to wait: Redis
                    // gets a few milliseconds to answer it.
                    let bound = if first { left.max(FIRST_LOOK) } else { left };
                    let asked = tokio::time::timeout(bound, self.try_take(endpoint, interval))
                        .await
                        .unwrap_or_else(|_| Err("no answer from the pacing Redis in time".into()));
                    if taken_now(&asked) == Some(true)
                        && tokio::time::Instant::now() > d + FIRST_LOOK
                    {
                        return false;
                    }
                    asked
                }
                None => self.try_take(endpoint, interval).await,
            };
            first = false;
            let wait = match taken {
                Ok(wait) if wait.is_zero() => return true,
                Ok(wait) => wait,
                Err(e) => {
                    tracing::warn!(endpoint, error = %e, "shared pacing unavailable; holding the call back");
                    Duration::from_millis(200)
                }
            };
            let now = tokio::time::Instant::now();
            match deadline {
                Some(d) if now + wait > d => return false,
                _ => tokio::time::sleep(wait).await,
            }
        }
    }
}

/// How long Redis may take to answer the one look a zero wait allows.
const FIRST_LOOK: Duration = Duration::from_millis(50);

/// Whether an answer of the script granted the slot.
fn taken_now(answer: &Result<Duration, String>) -> Option<bool> {
    answer.as_ref().ok().map(Duration::is_zero)
}

impl std::fmt::Debug for SharedPacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPacing")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

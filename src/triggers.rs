//! Event triggers: the signed HTTP trigger's keys and verification, and the balance
//! watch that fires sweeps. Decisions here; the HTTP route and the worker loop call
//! them. The keys are read from the environment once, at start ([`TriggerKeys`]).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use sha2::Sha256;

use crate::config::{Secret, signing_secret_from_env};
use crate::jobs::Job;

/// The longest event id a trigger may carry.
pub const MAX_EVENT_ID_CHARS: usize = 128;

/// The key of every job fired by HTTP triggers, read once at start, and a random key
/// for everything else: a trigger for an unknown job is verified like any other, so
/// that it gets the same 401, the same body and the same work as a bad signature.
#[derive(Clone)]
pub struct TriggerKeys {
    by_job: HashMap<String, Secret>,
    /// Random per process, never revealed: nothing can be signed with it.
    dummy: Secret,
}

impl std::fmt::Debug for TriggerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut jobs: Vec<&String> = self.by_job.keys().collect();
        jobs.sort();
        f.debug_struct("TriggerKeys").field("jobs", &jobs).finish()
    }
}

impl TriggerKeys {
    /// Reads every trigger job's secret through [`signing_secret_from_env`]. Refuses if
    /// any is unset, blank or short, naming each such job and its variable.
    pub fn from_env(jobs: &[Job]) -> Result<Self, String> {
        let mut by_job = HashMap::new();
        let mut refused = Vec::new();
        for job in jobs {
            let Some(t) = job.spec().http_trigger() else {
                continue;
            };
            match signing_secret_from_env(&t.secret_env, "the trigger secret") {
                Ok(secret) => {
                    by_job.insert(job.id().to_string(), secret);
                }
                Err(e) => refused.push(format!("job {}: {e}", job.id())),
            }
        }
        if !refused.is_empty() {
            return Err(format!(
                "refusing to start: {} trigger job(s) have no usable secret; set each, or remove the job:\n  {}",
                refused.len(),
                refused.join("\n  ")
            ));
        }
        Ok(Self {
            by_job,
            dummy: random_key(),
        })
    }

    /// Keys given directly (tests, the demo), with a random key for the rest.
    pub fn from_secrets(secrets: impl IntoIterator<Item = (String, Secret)>) -> Self {
        Self {
            by_job: secrets.into_iter().collect(),
            dummy: random_key(),
        }
    }

    /// These keys, plus `old`'s keys for `kept` (trigger jobs a reload removed), so that
    /// a correctly signed trigger for a removed job can be told that it was removed.
    pub fn keeping<'a>(
        mut self,
        old: &TriggerKeys,
        kept: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        for job in kept {
            if let Some(key) = old.by_job.get(job) {
                self.by_job
                    .entry(job.to_string())
                    .or_insert_with(|| key.clone());
            }
        }
        self
    }

    /// The key to verify a trigger for `job` with, and whether it is the job's own.
    /// An unknown job, or one not fired by triggers, gets the random key.
    pub fn key_for(&self, job: &str) -> (&Secret, bool) {
        match self.by_job.get(job) {
            Some(k) => (k, true),
            None => (&self.dummy, false),
        }
    }
}

/// 32 random bytes, hex: as long as the shortest secret accepted.
fn random_key() -> Secret {
    let bytes: [u8; 16] = rand::random();
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Checks an event id: 1 to [`MAX_EVENT_ID_CHARS`] printable ASCII characters other
/// than space (`!` to `~`: letters, digits and punctuation).
pub fn check_event_id(id: &str) -> Result<(), String> {
    let printable = id.bytes().all(|b| b.is_ascii_graphic());
    if !id.is_empty() && id.len() <= MAX_EVENT_ID_CHARS && printable {
        Ok(())
    } else {
        Err(format!(
            "x-treasury-event-id must be 1 to {MAX_EVENT_ID_CHARS} printable ASCII characters (letters, digits and punctuation, `!` to `~`, no spaces); got {} byte(s){}",
            id.len(),
            if printable {
                ""
            } else {
                " with a character outside that set"
            }
        ))
    }
}

/// How far a trigger's timestamp may be from our clock, either way.
pub const TRIGGER_WINDOW: Duration = Duration::minutes(5);

/// Why a signed trigger was refused (every one answers 401 and creates no run).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerRejection {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("the timestamp is not Unix seconds")]
    BadTimestamp,
    #[error(
        "the timestamp is {0} s from now, outside the ±300 s window (a replay or a skewed clock)"
    )]
    Stale(i64),
    #[error("the signature does not match")]
    BadSignature,
}

/// The string a trigger signs: `"{timestamp}.{event id}.{raw body}"`.
fn signed_payload(timestamp: &str, event_id: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(timestamp.len() + event_id.len() + body.len() + 2);
    v.extend_from_slice(timestamp.as_bytes());
    v.push(b'.');
    v.extend_from_slice(event_id.as_bytes());
    v.push(b'.');
    v.extend_from_slice(body);
    v
}

/// `sha256=<hex HMAC-SHA256>` of a trigger, as senders compute it.
pub fn sign_trigger(secret: &[u8], timestamp: &str, event_id: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(&signed_payload(timestamp, event_id, body));
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Checks a signed trigger: `X-Treasury-Timestamp` within ±5 minutes of `now`, and
/// `X-Treasury-Signature` over timestamp, event id and raw body, compared in constant
/// time. The event id is the occurrence key, so a replay inside the window names the
/// same run and creates nothing.
pub fn verify_trigger(
    secret: &[u8],
    timestamp: Option<&str>,
    event_id: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), TriggerRejection> {
    let timestamp = timestamp.ok_or(TriggerRejection::MissingHeader("x-treasury-timestamp"))?;
    let event_id = event_id.ok_or(TriggerRejection::MissingHeader("x-treasury-event-id"))?;
    let signature = signature.ok_or(TriggerRejection::MissingHeader("x-treasury-signature"))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| TriggerRejection::BadTimestamp)?;
    let skew = at - now.timestamp();
    if skew.abs() > TRIGGER_WINDOW.num_seconds() {
        return Err(TriggerRejection::Stale(skew));
    }
    let hex = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(TriggerRejection::BadSignature)?;
    let expected: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or(TriggerRejection::BadSignature)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TriggerRejection::BadSignature)?;
    mac.update(&signed_payload(timestamp, event_id, body));
    mac.verify_slice(&expected)
        .map_err(|_| TriggerRejection::BadSignature)
}

/// A balance-watch sweep: when `available` has stayed above `threshold` for at least
/// `debounce`, move everything above `keep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepRule {
    pub threshold: Decimal,
    pub keep: Decimal,
    /// How long the balance must stay above the threshold (zero: fire at once).
    pub debounce: Duration,
    /// Least time between two sweeps of the job.
    pub min_interval: Duration,
}

/// What the watch remembers between polls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepWatch {
    /// Since when the balance has been above the threshold, without a dip.
    above_since: Option<DateTime<Utc>>,
    last_fired: Option<DateTime<Utc>>,
}

impl SweepWatch {
    /// Resumes a watch whose last sweep was created at `last_fired` (from the store).
    pub fn resume(last_fired: Option<DateTime<Utc>>) -> Self {
        Self {
            above_since: None,
            last_fired,
        }
    }

    /// One poll: returns the amount to sweep if the watch fires now. `in_flight` says a
    /// sweep of this job has not finished yet (at most one at a time).
    pub fn observe(
        &mut self,
        rule: &SweepRule,
        available: Decimal,
        now: DateTime<Utc>,
        in_flight: bool,
    ) -> Option<Decimal> {
        if available <= rule.threshold {
            self.above_since = None;
            return None;
        }
        let since = *self.above_since.get_or_insert(now);
        if now - since < rule.debounce || in_flight {
            return None;
        }
        if self.last_fired.is_some_and(|t| now - t < rule.min_interval) {
            return None;
        }
        let amount = available - rule.keep;
        if amount <= Decimal::ZERO {
            return None;
        }
        self.last_fired = Some(now);
        self.above_since = None;
        Some(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_signed_trigger_verifies_and_tampering_or_staleness_is_refused() {
        let (ts, body) = (now().timestamp().to_string(), br#"{"amount":"150.00"}"#);
        let sig = sign_trigger(b"s3cret", &ts, "evt-1", body);
        assert_eq!(
            verify_trigger(b"s3cret", Some(&ts), Some("evt-1"), Some(&sig), body, now()),
            Ok(())
        );
        assert_eq!(
            verify_trigger(b"other", Some(&ts), Some("evt-1"), Some(&sig), body, now()),
            Err(TriggerRejection::BadSignature)
        );
        assert_eq!(
            verify_trigger(b"s3cret", Some(&ts), Some("evt-2"), Some(&sig), body, now()),
            Err(TriggerRejection::BadSignature)
        );
        assert_eq!(
            verify_trigger(
                b"s3cret",
                Some(&ts),
                Some("evt-1"),
                Some(&sig),
                br#"{"amount":"9999"}"#,
                now()
            ),
            Err(TriggerRejection::BadSignature)
        );
        let late = now() + Duration::minutes(6);
        assert_eq!(
            verify_trigger(b"s3cret", Some(&ts), Some("evt-1"), Some(&sig), body, late),
            Err(TriggerRejection::Stale(-360))
        );
        assert!(
            verify_trigger(
                b"s3cret",
                Some(&ts),
                Some("evt-1"),
                Some(&sig),
                body,
                now() + Duration::minutes(4)
            )
            .is_ok()
        );
        assert_eq!(
            verify_trigger(b"s3cret", None, Some("evt-1"), Some(&sig), body, now()),
            Err(TriggerRejection::MissingHeader("x-treasury-timestamp"))
        );
    }

    #[test]
    fn a_sweep_fires_once_above_the_threshold_after_debounce_and_respects_in_flight_and_interval() {
        let rule = SweepRule {
            threshold: dec!(1000),
            keep: dec!(200),
            debounce: Duration::minutes(2),
            min_interval: Duration::hours(1),
        };
        let t = |m: i64| now() + Duration::minutes(m);
        let mut w = SweepWatch::default();
        assert_eq!(w.observe(&rule, dec!(900), t(0), false), None);
        assert_eq!(
            w.observe(&rule, dec!(1500), t(1), false),
            None,
            "above for 0 min"
        );
        assert_eq!(
            w.observe(&rule, dec!(1500), t(2), false),
            None,
            "above for 1 min"
        );
        assert_eq!(w.observe(&rule, dec!(1500), t(3), false), Some(dec!(1300)));
        // The sweep is in flight: no second one, however high the balance.
        assert_eq!(w.observe(&rule, dec!(5000), t(120), true), None);
        assert_eq!(w.observe(&rule, dec!(5000), t(125), true), None);
        // Finished, but within the minimum interval of the last one.
        let mut w = SweepWatch::resume(Some(now()));
        assert_eq!(w.observe(&rule, dec!(5000), t(30), false), None);
        assert_eq!(w.observe(&rule, dec!(5000), t(61), false), Some(dec!(4800)));
        // A dip below the threshold restarts the debounce.
        let mut w = SweepWatch::default();
        w.observe(&rule, dec!(1500), t(0), false);
        w.observe(&rule, dec!(500), t(1), false);
        assert_eq!(w.observe(&rule, dec!(1500), t(3), false), None);
        assert_eq!(w.observe(&rule, dec!(1500), t(5), false), Some(dec!(1300)));
    }
}

//! Time as a value that can be injected.
//!
//! One `Clock` drives the worker and the in-process sandbox alike, so that tests and
//! `treasury demo` can move time forward (quote expiry, token expiry, cron ticks)
//! without sleeping. Production uses [`Clock::system`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// A cloneable handle to a source of "now". Clones share the same time.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

enum Mode {
    /// Wall-clock time plus an offset that can only grow.
    Offset,
    /// Frozen at `base`; moves only when advanced.
    Manual,
}

struct Inner {
    mode: Mode,
    /// Milliseconds: the offset from wall time (Offset) or the frozen instant (Manual).
    millis: AtomicI64,
}

impl Clock {
    /// Wall-clock time. `advance` still works (it adds an offset), which is what the
    /// demo and the sandbox use to skip ahead while real time keeps flowing.
    pub fn system() -> Self {
        Self::new(Mode::Offset, 0)
    }

    /// A clock frozen at `at`; it moves only through [`Clock::advance`] or [`Clock::set`].
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self::new(Mode::Manual, at.timestamp_millis())
    }

    fn new(mode: Mode, millis: i64) -> Self {
        Self {
            inner: Arc::new(Inner {
                mode,
                millis: AtomicI64::new(millis),
            }),
        }
    }

    /// The current instant, to the millisecond.
    pub fn now(&self) -> DateTime<Utc> {
        let millis = self.inner.millis.load(Ordering::SeqCst);
        match self.inner.mode {
            Mode::Offset => Utc::now() + Duration::milliseconds(millis),
            Mode::Manual => DateTime::from_timestamp_millis(millis).unwrap_or_default(),
        }
    }

    /// Moves time forward by `by`. Negative durations are ignored: time never runs back.
    pub fn advance(&self, by: Duration) {
        let by = by.num_milliseconds().max(0);
        self.inner.millis.fetch_add(by, Ordering::SeqCst);
    }

    /// Moves time forward to `at` (never backwards).
    pub fn set(&self, at: DateTime<Utc>) {
        let delta = at - self.now();
        self.advance(delta);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock").field("now", &self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_never_backwards() {
        let start = DateTime::parse_from_rfc3339("2026-03-08T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::minutes(5));
        assert_eq!(clock.now(), start + Duration::minutes(5));
        clock.advance(Duration::minutes(-10));
        assert_eq!(clock.now(), start + Duration::minutes(5));
        clock.set(start);
        assert_eq!(clock.now(), start + Duration::minutes(5));
    }

    #[test]
    fn system_clock_offset_is_shared_by_clones() {
        let clock = Clock::system();
        let twin = clock.clone();
        clock.advance(Duration::days(1));
        assert!(twin.now() > Utc::now() + Duration::hours(23));
    }
}

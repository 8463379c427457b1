//! The proof, right before a money-moving request leaves, that the run's lease covers
//! the whole call (invariant 3).
//!
//! A process can be paused at any instant. If an executor paused after saving an
//! intent woke up once its lease had lapsed and another executor had taken the run
//! over, its request would be a second payment. So the Busha client asks [`Cover`],
//! after any pacing wait and right before the socket write, how long the lease still
//! covers a call. Two clocks answer, and the smaller answer counts:
//! - the monotonic clock, from an instant taken *before* the write that last renewed
//!   the lease was sent (a wall clock that jumps cannot stretch it);
//! - the run's own clock against the lease's end as the store holds it (the lease
//!   other executors see), minus the takeover grace.
//!
//! An executor that takes a lapsed lease over waits the grace (the longest a sent call
//! can take) on top of the lease before it acts: the store writes each lease as its
//! length plus that grace, and the holder counts only its length.

use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::provider::SendCheck;
use crate::seal::SealChecked;
use crate::store::RunLease;

/// How long a call starting now is covered by `lease`.
pub(super) struct Cover<'a> {
    /// The proof that the run matched its seal when the step began: a call cannot be
    /// covered without one.
    pub _sealed: &'a SealChecked,
    pub lease: &'a RunLease,
    pub clock: &'a Clock,
    /// The lease's length as its holder counts it (without the grace).
    pub hold: Duration,
    /// What the store adds to `hold` for executors that would take over.
    pub grace: chrono::Duration,
    /// Kept back from every answer, for the time between this check and the send.
    pub margin: Duration,
}

impl SendCheck for Cover<'_> {
    fn covered_for(&self) -> Duration {
        let monotonic =
            (self.lease.renewed_at + self.hold).saturating_duration_since(Instant::now());
        let wall = (self.lease.until - self.grace - self.clock.now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        monotonic.min(wall).saturating_sub(self.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::RunId;

    fn lease(clock: &Clock, renewed_at: Instant, until_in: chrono::Duration) -> RunLease {
        RunLease {
            run_id: RunId::derive("j", "o"),
            owner: "w".into(),
            fence: 1,
            until: clock.now() + until_in,
            renewed_at,
        }
    }

    #[test]
    fn the_smaller_of_the_monotonic_and_the_store_clock_counts() {
        let clock = Clock::manual(chrono::Utc::now());
        let grace = chrono::Duration::seconds(30);
        let hold = Duration::from_secs(120);
        // Renewed just now, stored until now + hold + grace: about 120 s - margin.
        let l = lease(&clock, Instant::now(), chrono::Duration::seconds(150));
        let cover = Cover {
            _sealed: &SealChecked::for_tests(),
            lease: &l,
            clock: &clock,
            hold,
            grace,
            margin: Duration::from_secs(2),
        };
        let left = cover.covered_for();
        assert!(
            left <= Duration::from_secs(118) && left > Duration::from_secs(117),
            "{left:?}"
        );

        // The store's clock moved on (a jump, or the holder's view of a takeover).
        clock.advance(chrono::Duration::seconds(100));
        let left = cover.covered_for();
        assert!(left <= Duration::from_secs(18), "{left:?}");
        clock.advance(chrono::Duration::seconds(100));
        assert_eq!(cover.covered_for(), Duration::ZERO);
    }

    #[test]
    fn a_pause_longer_than_the_lease_leaves_no_cover_even_if_the_wall_clock_stood_still() {
        let clock = Clock::manual(chrono::Utc::now());
        // A 50 ms lease, then a pause of 100 ms; the frozen wall clock says all is well.
        let hold = Duration::from_millis(50);
        let l = lease(&clock, Instant::now(), chrono::Duration::seconds(150));
        std::thread::sleep(Duration::from_millis(100));
        let cover = Cover {
            _sealed: &SealChecked::for_tests(),
            lease: &l,
            clock: &clock,
            hold,
            grace: chrono::Duration::seconds(30),
            margin: Duration::ZERO,
        };
        assert_eq!(cover.covered_for(), Duration::ZERO);
    }
}

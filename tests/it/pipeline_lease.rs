//! The lease proof before every money-moving request (invariant 3), on SQLite and
//! PostgreSQL. An executor frozen between its transfer intent and the send, past its
//! lease, while a second executor takes the run over and pays, must send nothing when
//! it wakes, even with the sandbox set to pay a second transfer on one quote. Each of
//! the two clocks the proof reads is tested on its own: the monotonic clock (the
//! frozen process's wall clock stood still) and the store's clock (it jumped).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use futures_util::future::BoxFuture;
use rust_decimal::dec;
use tokio::sync::Notify;
use treasury::clock::Clock;
use treasury::pipeline::{CrashPoints, Executed, PipelineConfig};
use treasury::provider::busha::BushaConfig;
use treasury::runs::{PendingOp, RunId, RunState};
use treasury::sandbox::{DuplicateTransfers, LedgerEvent};

use crate::backends::TestStore;
use crate::pipeline_world::*;

/// Freezes the execution right after its transfer intent was saved, until released.
struct FreezeBeforeTransfer {
    release: Arc<Notify>,
}

impl CrashPoints for FreezeBeforeTransfer {
    fn crash_here(&self, _point: &str) -> bool {
        false
    }
    fn pause_at(&self, point: &str) -> Option<BoxFuture<'static, ()>> {
        (point == "before POST /v1/transfers").then(|| {
            let release = self.release.clone();
            Box::pin(async move { release.notified().await }) as BoxFuture<'static, ()>
        })
    }
}

/// A client whose calls take at most 1 s and wait at most 200 ms for the pacer, so
/// that the lease (twice the longest call) is a few seconds.
fn short_calls(w: &World) -> BushaConfig {
    let mut c = w.busha_config();
    c.timeout = StdDuration::from_secs(1);
    c.connect_timeout = StdDuration::from_millis(500);
    c.max_pacing_wait = Some(StdDuration::from_millis(200));
    c
}

fn config(worker: &str, lease: Duration) -> PipelineConfig {
    PipelineConfig {
        worker_id: worker.into(),
        lease,
        send_margin: Duration::milliseconds(100),
        ..PipelineConfig::default()
    }
}

async fn wait_for_transfer_intent(w: &World, id: &RunId) {
    for _ in 0..400 {
        let run = w.run(id).await;
        if run.pending == Some(PendingOp::CreateTransfer) {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    panic!("the first executor never saved its transfer intent");
}

fn duplicates_allowed(w: &World) {
    w.sb.update_behaviour(|b| b.duplicate_transfers = DuplicateTransfers::Allow);
}

/// The second executor: it may act only once the first one's lease (plus the
/// takeover grace) has lapsed on its own clock. Returns after its first execution
/// that got the lease.
async fn take_over(w: &World, id: &RunId, clock: &Clock) -> Executed {
    let p = w.pipeline_on(
        w.busha_config(),
        config("w2", Duration::seconds(120)),
        clock.clone(),
    );
    for _ in 0..400 {
        match p.execute(id).await.unwrap() {
            Executed::Busy => tokio::time::sleep(StdDuration::from_millis(25)).await,
            done => return done,
        }
    }
    panic!("the second executor never got the lease");
}

async fn a_frozen_executor_sends_nothing_once_its_lease_lapsed_on_the_monotonic_clock(
    t: TestStore,
) {
    let w = World::with(fast(), Some(&t)).await;
    duplicates_allowed(&w);
    let id = w.create("frozen-monotonic", ngn(dec!(40000))).await;
    // The frozen process's own clock stands still, as a stopped VM's may seem to: only
    // the monotonic clock can tell it that its lease lapsed.
    let still = Clock::manual(w.clock.now());
    let release = Arc::new(Notify::new());
    let first = w
        .pipeline_on(short_calls(&w), config("w1", Duration::seconds(2)), still)
        .with_crash_points(Arc::new(FreezeBeforeTransfer {
            release: release.clone(),
        }));
    let frozen = tokio::spawn({
        let id = id.clone();
        async move { first.execute(&id).await }
    });
    wait_for_transfer_intent(&w, &id).await;

    // Real time passes; the second executor's clock (the world's) sees the lease lapse.
    let taken = take_over(&w, &id, &w.clock).await;
    assert!(matches!(taken, Executed::Waiting(_)), "{taken:?}");
    assert_eq!(w.transfers(), 1, "the second executor paid");

    release.notify_one();
    let woke = frozen.await.unwrap().unwrap();

    assert_eq!(woke, Executed::LeaseLost);
    assert_eq!(
        w.transfers(),
        1,
        "the frozen executor sent a second transfer"
    );
    assert_eq!(
        w.count(|e| matches!(
            e,
            LedgerEvent::TransferCreated {
                duplicate: true,
                ..
            }
        )),
        0
    );
    assert_eq!(w.drive(&w.pipeline("w3"), &id).await, RunState::Settled);
    assert_eq!(w.transfers(), 1);
}

async fn a_frozen_executor_sends_nothing_once_its_lease_lapsed_on_the_store_clock(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    duplicates_allowed(&w);
    let id = w.create("frozen-store-clock", ngn(dec!(40000))).await;
    // A long lease on the monotonic clock, and a clock that jumps while it is frozen.
    let release = Arc::new(Notify::new());
    let first = w
        .pipeline_on(
            short_calls(&w),
            config("w1", Duration::seconds(600)),
            w.clock.clone(),
        )
        .with_crash_points(Arc::new(FreezeBeforeTransfer {
            release: release.clone(),
        }));
    let frozen = tokio::spawn({
        let id = id.clone();
        async move { first.execute(&id).await }
    });
    wait_for_transfer_intent(&w, &id).await;

    w.clock.advance(Duration::minutes(15));
    let taken = take_over(&w, &id, &w.clock).await;
    assert!(matches!(taken, Executed::Waiting(_)), "{taken:?}");
    assert_eq!(w.transfers(), 1, "the second executor paid");

    release.notify_one();
    let woke = frozen.await.unwrap().unwrap();

    assert_eq!(woke, Executed::LeaseLost);
    assert_eq!(
        w.transfers(),
        1,
        "the frozen executor sent a second transfer"
    );
}

async fn a_lapsed_lease_is_taken_over_only_after_the_grace_for_a_call_in_flight(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let id = w.create("grace", ngn(dec!(40000))).await;
    let release = Arc::new(Notify::new());
    let first = w
        .pipeline_on(
            short_calls(&w),
            config("w1", Duration::seconds(600)),
            w.clock.clone(),
        )
        .with_crash_points(Arc::new(FreezeBeforeTransfer {
            release: release.clone(),
        }));
    let frozen = tokio::spawn({
        let id = id.clone();
        async move { first.execute(&id).await }
    });
    wait_for_transfer_intent(&w, &id).await;
    let lease = first_lease_length(&w, &id).await;

    // Past the holder's own lease (600 s) but inside the grace for its last call (the
    // whole-call timeout, 1 s here): no one may take the run over yet.
    assert!(lease > Duration::milliseconds(600_500), "{lease:?}");
    w.clock.advance(Duration::milliseconds(600_500));
    let second = w.pipeline_on(
        w.busha_config(),
        config("w2", Duration::seconds(120)),
        w.clock.clone(),
    );
    assert_eq!(
        second.execute(&id).await.unwrap(),
        Executed::Busy,
        "lease {lease:?}"
    );
    // Past the grace, it may.
    w.clock.advance(Duration::seconds(1));
    assert!(matches!(
        second.execute(&id).await.unwrap(),
        Executed::Waiting(_)
    ));

    release.notify_one();
    assert_eq!(frozen.await.unwrap().unwrap(), Executed::LeaseLost);
    assert_eq!(w.transfers(), 1);
}

/// How far ahead of now the store holds the run's lease.
async fn first_lease_length(w: &World, id: &RunId) -> Duration {
    let admin = sqlx::AnyPool::connect(&w.url).await.unwrap();
    let until: i64 = sqlx::query_scalar("SELECT lease_until FROM runs WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&admin)
        .await
        .unwrap();
    Duration::milliseconds(until - w.clock.now().timestamp_millis())
}

crate::on_both_backends!(
    a_frozen_executor_sends_nothing_once_its_lease_lapsed_on_the_monotonic_clock,
    a_frozen_executor_sends_nothing_once_its_lease_lapsed_on_the_store_clock,
    a_lapsed_lease_is_taken_over_only_after_the_grace_for_a_call_in_flight,
);

/// A caller's lease as the client sees it: a fixed cover.
struct Covers(StdDuration);

impl treasury::provider::SendCheck for Covers {
    fn covered_for(&self) -> StdDuration {
        self.0
    }
}

fn unreachable_client(limit_per_minute: u32) -> treasury::provider::busha::BushaClient {
    // Nothing listens on port 9: a call that was sent fails to connect (Transient).
    let mut c = BushaConfig::new(url::Url::parse("http://127.0.0.1:9").unwrap());
    c.timeout = StdDuration::from_secs(1);
    c.connect_timeout = StdDuration::from_millis(200);
    c.limits = treasury::provider::pacing::EndpointLimits::uniform(limit_per_minute);
    c.max_pacing_wait = Some(StdDuration::from_secs(20));
    treasury::provider::busha::BushaClient::new(c).unwrap()
}

#[tokio::test]
async fn a_money_moving_call_the_lease_cannot_cover_is_withheld_and_never_sent() {
    use treasury::provider::busha::ErrorKind;
    let client = unreachable_client(600);
    let token = treasury::provider::AccessToken::new("t");

    let short = client
        .create_transfer(&token, "QUO_1", &Covers(StdDuration::from_millis(999)))
        .await
        .unwrap_err();
    assert_eq!(short.kind(), &ErrorKind::Withheld, "{short}");
    assert!(short.to_string().contains("nothing was sent"), "{short}");

    // With cover for the whole call, it does go out (and fails to connect).
    let sent = client
        .create_transfer(&token, "QUO_1", &Covers(StdDuration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(sent.kind(), &ErrorKind::Transient, "{sent}");
}

#[tokio::test]
async fn the_pacer_waits_no_longer_than_the_lease_leaves_for_the_call() {
    use treasury::provider::busha::ErrorKind;
    // One call a minute: after the first, the next slot is a minute away, and the
    // pacer's own bound (20 s) is longer than what the lease leaves (1.3 s - 1 s).
    let client = unreachable_client(1);
    let token = treasury::provider::AccessToken::new("t");
    let cover = Covers(StdDuration::from_millis(1_300));
    let first = client
        .create_transfer(&token, "QUO_1", &cover)
        .await
        .unwrap_err();
    assert_eq!(first.kind(), &ErrorKind::Transient, "{first}");

    let second = client
        .create_transfer(&token, "QUO_2", &cover)
        .await
        .unwrap_err();

    assert_eq!(
        second.kind(),
        &ErrorKind::RateLimited { retry_after: None },
        "{second}"
    );
    assert!(
        second.to_string().contains("no slot within 300 ms"),
        "{second}"
    );
}

//! Shared pacing on Redis: several processes acting for one OAuth client share one
//! budget per endpoint. Each "process" here is a pacer with a connection of its own.

use std::time::{Duration, Instant};

use treasury::provider::pacing::{EndpointLimits, Pacer, SharedPacing, cell_interval};

fn redis_url() -> String {
    std::env::var("TREASURY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// Three pacers race for one endpoint for `run`; returns every grant's instant, sorted.
async fn race(pacers: Vec<Pacer>, endpoint: &'static str, run: Duration) -> Vec<Instant> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for pacer in pacers {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while started.elapsed() < run {
                if pacer
                    .acquire_within(endpoint, Duration::from_millis(50))
                    .await
                {
                    got.push(Instant::now());
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

fn most_in_any_window(grants: &[Instant], window: Duration) -> usize {
    (0..grants.len())
        .map(|i| {
            grants[i..]
                .iter()
                .take_while(|g| **g - grants[i] < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_sharing_redis_stay_within_one_budget() {
    // 600 a minute: one slot every 102 ms, whoever asks.
    let limits = EndpointLimits::uniform(600);
    let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
    let shared: Vec<Pacer> = (0..3)
        .map(|_| {
            Pacer::shared(
                limits.clone(),
                SharedPacing::new(&redis_url(), &namespace).unwrap(),
            )
        })
        .collect();
    assert!(shared.iter().all(Pacer::is_shared));
    let run = Duration::from_secs(2);
    let grants = race(shared, "POST /v1/quotes", run).await;

    let interval = cell_interval(600);
    let budget = (run.as_micros() / interval.as_micros()) as usize + 1;
    assert!(
        grants.len() <= budget,
        "{} grants in {run:?}, budget {budget}",
        grants.len()
    );
    assert!(
        grants.len() >= budget / 2,
        "the budget is used: {}",
        grants.len()
    );
    // Ten intervals hold at most ten grants (plus one for local receive jitter).
    let most = most_in_any_window(&grants, interval * 10);
    assert!(most <= 11, "{most} grants within ten intervals");

    // The control: three pacers of their own each take the whole budget.
    let local: Vec<Pacer> = (0..3).map(|_| Pacer::new(limits.clone())).collect();
    let unshared = race(local, "POST /v1/quotes", run).await;
    assert!(
        unshared.len() > 2 * budget,
        "unshared pacers overrun the budget: {}",
        unshared.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_have_separate_budgets_and_an_unreachable_redis_holds_calls_back() {
    let namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
    // One a minute on quotes: after one call, the next is 61.2 s away.
    let limits = EndpointLimits::uniform(600).with("POST /v1/quotes", 1);
    let a = Pacer::shared(
        limits.clone(),
        SharedPacing::new(&redis_url(), &namespace).unwrap(),
    );
    let b = Pacer::shared(limits, SharedPacing::new(&redis_url(), &namespace).unwrap());
    assert!(a.acquire_within("POST /v1/quotes", Duration::ZERO).await);
    assert!(
        !b.acquire_within("POST /v1/quotes", Duration::from_millis(100))
            .await,
        "the other process sees the slot taken"
    );
    assert!(
        b.acquire_within("GET /v1/balances", Duration::ZERO).await,
        "another endpoint has its own budget"
    );

    // Nothing listens on port 1: no process may assume it has the budget.
    let down = Pacer::shared(
        EndpointLimits::uniform(600),
        SharedPacing::new("redis://127.0.0.1:1/", &namespace).unwrap(),
    );
    let started = Instant::now();
    assert!(
        !down
            .acquire_within("GET /v1/balances", Duration::from_millis(300))
            .await
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

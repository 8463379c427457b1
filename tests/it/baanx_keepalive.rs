//! Keep-alive on sandbox time (issue 12 §4): a 7-day sliding Baanx grant with no jobs
//! due stays alive for 30 days; a worker stopped for 8 days finds it disconnected and
//! alerts; an absolute lifetime is alerted before it ends.

use chrono::Duration;
use treasury::alerts::{AlertKind, alert_for};
use treasury::grants::{GrantStatus, KeepAlive};
use treasury::sandbox::baanx::{BaanxEvent, RefreshLifetime};

use crate::baanx_grants_harness::{API, Bw};
use crate::backends::TestStore;

/// Keep-alive passes every 6 sandbox hours.
const TICK: i64 = 6;

#[tokio::test]
async fn a_sliding_grant_with_no_jobs_due_stays_alive_for_30_days_with_refreshes_on_time() {
    // Arrange
    let w = Bw::start(TestStore::sqlite().await).await;
    let grant = w.connect_api(API).await.unwrap().grant;
    let custodian = w.custodian();
    let policy = KeepAlive::default();
    let mut refreshed_at = Vec::new();

    // Act: 30 sandbox days of passes, nothing else using the grant.
    for tick in 1..=(30 * 24 / TICK) {
        w.bx.advance(Duration::hours(TICK));
        let report = custodian.keep_alive(&policy).await.unwrap();
        assert!(report.failed.is_empty(), "tick {tick}: {:?}", report.failed);
        assert!(
            report.expiring.is_empty(),
            "a sliding lifetime is never alerted"
        );
        if !report.refreshed.is_empty() {
            refreshed_at.push(tick * TICK);
        }
    }

    // Assert: alive, no replay, and each refresh came before the last one's token died.
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(row.status, GrantStatus::Active.as_str());
    assert_eq!(w.replays(), 0);
    assert_eq!(
        w.count(|e| matches!(e, BaanxEvent::FamilyRevoked { .. })),
        0
    );
    assert!(refreshed_at.len() >= 7, "{refreshed_at:?}");
    let mut last = 0;
    for h in &refreshed_at {
        assert!(
            h - last < 7 * 24,
            "a refresh {h} h in came after the 7-day lifetime from {last} h"
        );
        last = *h;
    }
    assert_eq!(w.refreshes(), refreshed_at.len());
    let token = custodian.access_token(&grant.id).await.unwrap();
    assert!(w.token_works(token.secret()).await);
}

#[tokio::test]
async fn a_worker_stopped_for_8_days_reports_the_grant_disconnected_with_an_alert() {
    let w = Bw::start(TestStore::sqlite().await).await;
    let grant = w.connect_api(API).await.unwrap().grant;
    w.bx.advance(Duration::days(8));

    let report = w
        .custodian()
        .keep_alive(&KeepAlive::default())
        .await
        .unwrap();

    assert_eq!(report.failed.len(), 1, "{report:?}");
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(row.status, "disconnected");
    let entries = w.store().audit_entries(None, None).await.unwrap();
    let alerts: Vec<_> = entries.iter().filter_map(alert_for).collect();
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == AlertKind::GrantDisconnected && a.subject == grant.id),
        "{alerts:?}"
    );
}

#[tokio::test]
async fn an_absolute_lifetime_is_alerted_before_it_ends_naming_the_grant_and_the_date() {
    // Arrange: Baanx's refresh lifetime counts from the first grant.
    let w = Bw::start_with(TestStore::sqlite().await, |c| {
        c.behaviour.refresh_lifetime = RefreshLifetime::Absolute;
    })
    .await;
    let grant = w.connect_api(API).await.unwrap().grant;
    let dies = grant.refresh_expires_at.unwrap();
    let custodian = w.custodian();
    let mut alerted = Vec::new();

    // Act: passes until the lifetime ends.
    for _ in 1..=(7 * 24 / TICK) {
        w.bx.advance(Duration::hours(TICK));
        let report = custodian.keep_alive(&KeepAlive::default()).await.unwrap();
        alerted.extend(
            report
                .expiring
                .iter()
                .map(|(a, by)| (a.clone(), *by, w.bx.sb.clock().now())),
        );
    }

    // Assert: one alert, well before the end, naming the grant and the date.
    assert_eq!(alerted.len(), 1, "{alerted:?}");
    let (alias, by, at) = &alerted[0];
    assert_eq!(alias, API);
    assert_eq!(*by, dies);
    assert!(
        *at <= dies - Duration::days(2),
        "alerted at {at}, dies {dies}"
    );
    assert_eq!(
        w.refreshes(),
        1,
        "an absolute lifetime is not refreshed again and again"
    );
    let entries = w.store().audit_entries(None, None).await.unwrap();
    let alert = entries
        .iter()
        .filter_map(alert_for)
        .find(|a| a.kind == AlertKind::GrantExpiring)
        .expect("an expiring alert");
    assert!(alert.message.contains(API), "{}", alert.message);
    assert!(
        alert.message.contains(&dies.to_rfc3339()),
        "{}",
        alert.message
    );
}

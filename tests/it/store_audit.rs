//! The audit log on both backends: appends chain, concurrent appends serialise into one
//! chain, and any edit, deletion or swap is named by `verify`.

use chrono::Utc;
use serde_json::json;
use sqlx::Executor;
use treasury::audit::{ChainBreak, NewAuditEntry};
use treasury::store::Backend;

use crate::backends::TestStore;
use crate::on_both_backends;

async fn append_n(t: &TestStore, n: i64) {
    for i in 1..=n {
        let entry = NewAuditEntry::new(
            "worker:test",
            "run.quote.locked",
            json!({"amount": "100.50", "rate": "1600", "i": i}),
        )
        .run(format!("run-{i}"));
        t.store
            .append_audit(Utc::now(), entry)
            .await
            .expect("append");
    }
}

/// Plays a database admin who bypasses the application: drops the append-only guard.
async fn as_admin(t: &TestStore, sql: &'static str) {
    let pool = sqlx::AnyPool::connect(&t.url)
        .await
        .expect("admin connection");
    let drop_guard: &[&'static str] = match t.store.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER IF EXISTS audit_log_no_update",
            "DROP TRIGGER IF EXISTS audit_log_no_delete",
        ],
        Backend::Postgres => &["DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log"],
    };
    for stmt in drop_guard {
        pool.execute(*stmt).await.expect("drop guard");
    }
    pool.execute(sql).await.expect("tamper");
    pool.close().await;
}

async fn appended_entries_form_a_chain_that_verifies(t: TestStore) {
    append_n(&t, 5).await;
    let chain = t
        .store
        .verify_audit(None)
        .await
        .unwrap()
        .expect("intact chain");
    assert_eq!(chain.entries, 5);
    let (seq, hash) = t.store.audit_head().await.unwrap().unwrap();
    assert_eq!((seq, hash.clone()), (5, chain.head_hash.clone()));
    assert!(t.store.verify_audit(Some(hash)).await.unwrap().is_ok());
}

async fn concurrent_appends_from_two_pools_serialise_into_one_chain(t: TestStore) {
    let other = t.reopen().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            t.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .append_audit(
                    Utc::now(),
                    NewAuditEntry::new("worker:x", "grant.refreshed", json!({"i": i})),
                )
                .await
                .expect("append")
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let chain = t
        .store
        .verify_audit(None)
        .await
        .unwrap()
        .expect("one intact chain");
    assert_eq!(chain.entries, 40);
    assert_eq!(chain.head_seq, 40);
}

async fn the_application_cannot_update_or_delete_entries(t: TestStore) {
    append_n(&t, 2).await;
    let pool = sqlx::AnyPool::connect(&t.url).await.unwrap();
    assert!(
        pool.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
            .await
            .is_err()
    );
    assert!(
        pool.execute("DELETE FROM audit_log WHERE seq = 1")
            .await
            .is_err()
    );
}

async fn an_edited_amount_is_named_by_its_sequence_number(t: TestStore) {
    append_n(&t, 5).await;
    as_admin(
        &t,
        r#"UPDATE audit_log SET payload = '{"amount":"999.50","i":3,"rate":"1600"}' WHERE seq = 3"#,
    )
    .await;
    let broken = t.store.verify_audit(None).await.unwrap().unwrap_err();
    assert_eq!(broken, ChainBreak::Altered { seq: 3 });
}

async fn a_deleted_entry_is_named_by_its_sequence_number(t: TestStore) {
    append_n(&t, 5).await;
    as_admin(&t, "DELETE FROM audit_log WHERE seq = 2").await;
    let broken = t.store.verify_audit(None).await.unwrap().unwrap_err();
    assert_eq!(broken.seq(), Some(2));
}

async fn swapped_entries_are_named_by_the_first_sequence_number(t: TestStore) {
    append_n(&t, 5).await;
    as_admin(&t, "UPDATE audit_log SET seq = -1 WHERE seq = 2").await;
    as_admin(&t, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    as_admin(&t, "UPDATE audit_log SET seq = 3 WHERE seq = -1").await;
    let broken = t.store.verify_audit(None).await.unwrap().unwrap_err();
    assert_eq!(broken.seq(), Some(2));
}

async fn a_chain_rewritten_wholesale_misses_the_recorded_head(t: TestStore) {
    append_n(&t, 3).await;
    let (_, recorded) = t.store.audit_head().await.unwrap().unwrap();
    // An admin deletes everything and re-appends a consistent but different history.
    as_admin(&t, "DELETE FROM audit_log").await;
    append_n(&t, 3).await;
    assert!(t.store.verify_audit(None).await.unwrap().is_ok());
    let broken = t
        .store
        .verify_audit(Some(recorded))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(broken, ChainBreak::HeadNotFound { .. }));
}

on_both_backends!(
    appended_entries_form_a_chain_that_verifies,
    concurrent_appends_from_two_pools_serialise_into_one_chain,
    the_application_cannot_update_or_delete_entries,
    an_edited_amount_is_named_by_its_sequence_number,
    a_deleted_entry_is_named_by_its_sequence_number,
    swapped_entries_are_named_by_the_first_sequence_number,
    a_chain_rewritten_wholesale_misses_the_recorded_head,
);

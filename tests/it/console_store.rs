//! Console sessions in the store, on both backends: stored hashed, rotated at sign-in,
//! ended by sign-out and by any change of the account's credentials, and audited.

use treasury::clock::Clock;
use treasury::operators::Role;
use treasury::operators::secrets::{new_token, token_hash};
use treasury::store::OperatorChange;

use crate::backends::TestStore;
use crate::on_both_backends;
use crate::operators_world::{ROOT, account};

async fn a_session_is_stored_hashed_rotated_and_ended_by_a_credential_change(t: TestStore) {
    // Arrange
    let clock = Clock::system();
    let alice = account(&t.store, &clock, "alice", Role::Approver).await;
    let root = account(&t.store, &clock, ROOT, Role::Admin).await;
    let (one, two) = (new_token(), new_token());
    let (h1, h2) = (token_hash(one.expose()), token_hash(two.expose()));
    let long_ago = clock.now() - chrono::Duration::days(1);

    // Act and assert: a session is found by its hash, never by the token itself.
    let first = t
        .store
        .open_console_session(&alice, &h1, None, long_ago, clock.now())
        .await
        .unwrap();
    let found = t.store.console_session(&h1).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.account.name.as_str()),
        (first.as_str(), "alice")
    );
    assert!(
        t.store
            .console_session(one.expose())
            .await
            .unwrap()
            .is_none()
    );

    // A touch moves its last use forward; a sign-in in the same browser rotates it.
    let later = clock.now() + chrono::Duration::minutes(5);
    t.store.touch_console_session(&first, later).await.unwrap();
    let touched = t.store.console_session(&h1).await.unwrap().unwrap();
    assert_eq!(
        touched.last_seen_at.timestamp_millis(),
        later.timestamp_millis()
    );
    t.store
        .open_console_session(&alice, &h2, Some(&h1), long_ago, clock.now())
        .await
        .unwrap();
    assert!(
        t.store.console_session(&h1).await.unwrap().is_none(),
        "rotated away"
    );
    assert!(t.store.console_session(&h2).await.unwrap().is_some());

    // A role change (a new credential version) ends it.
    t.store
        .change_operator(
            &alice,
            OperatorChange::Role(Role::Viewer),
            &root,
            clock.now(),
        )
        .await
        .unwrap();
    assert!(
        t.store.console_session(&h2).await.unwrap().is_none(),
        "ended by the role change"
    );

    // Sign-in and sign-out are audited under the account.
    let alice = account(&t.store, &clock, "alice", Role::Viewer).await;
    let third = t
        .store
        .open_console_session(&alice, &h1, None, long_ago, clock.now())
        .await
        .unwrap();
    t.store
        .end_console_session(&third, Some(&alice), clock.now())
        .await
        .unwrap();
    assert!(t.store.console_session(&h1).await.unwrap().is_none());
    let actions: Vec<(String, String)> = t
        .store
        .audit_entries(None, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("console."))
        .map(|e| (e.actor, e.action))
        .collect();
    let signed_in = (
        "operator:alice".to_string(),
        "console.signed_in".to_string(),
    );
    let signed_out = (
        "operator:alice".to_string(),
        "console.signed_out".to_string(),
    );
    assert_eq!(
        actions,
        [signed_in.clone(), signed_in.clone(), signed_in, signed_out]
    );
    assert!(t.store.verify_audit(None).await.unwrap().is_ok());
}

on_both_backends!(a_session_is_stored_hashed_rotated_and_ended_by_a_credential_change);

//! Token custody against the sandbox, on SQLite and PostgreSQL: single flight in a
//! process and across processes, thirty days of sliding refreshes, unknown outcomes,
//! disconnects, encryption at rest, key rotation, forced refresh and revocation.
//! Exactly-once is asserted from the sandbox's ledger.

use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use sqlx::Row;
use treasury::grants::crypto::Owner;
use treasury::grants::custodian::{Usability, usability};
use treasury::grants::rekey::rekey;
use treasury::grants::{GrantError, GrantStatus, Keyring};
use treasury::provider::AccessToken;
use treasury::sandbox::{CannedResponse, Fault, FaultKind, RevokedAccessTokens};

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, CLIENT_ID, CLIENT_SECRET, World};
use crate::on_both_backends;

on_both_backends!(
    refresh_is_single_flight_under_100_concurrent_calls,
    two_custodians_on_two_pools_refresh_once_without_family_revocation,
    thirty_days_of_hourly_use_keep_the_grant_alive_with_one_refresh_an_hour,
    a_refresh_whose_response_is_lost_is_retried_once_then_disconnects_with_the_reason,
    a_refresh_that_never_reached_busha_succeeds_on_its_one_retry,
    a_customer_disconnect_marks_the_grant_disconnected_audited_and_held,
    no_token_is_stored_in_plaintext_in_any_row,
    a_tampered_or_swapped_ciphertext_is_a_clear_error_never_a_token,
    a_wrong_master_key_is_a_clear_error_never_a_token,
    rekey_reseals_every_grant_under_the_newest_key_and_audits_it,
    a_401_forces_one_refresh_and_a_second_401_fails_clearly,
    force_refresh_does_not_refresh_again_once_the_rejected_token_was_replaced,
    revoke_ends_the_family_at_busha_wipes_the_tokens_and_audits,
    a_stale_lease_holder_writes_nothing,
    a_5xx_is_an_unknown_outcome_retried_once_and_twice_leaves_the_grant_active,
    an_unreachable_token_endpoint_is_transient_and_leaves_the_grant_active,
    a_refresh_answered_503_with_an_oauth_body_is_retried_with_the_same_token_after_retry_after,
    a_refresh_told_to_wait_long_is_transient_and_nothing_is_sent_before_retry_after,
);

async fn audit_actions(w: &World) -> Vec<(String, serde_json::Value)> {
    w.store()
        .audit_entries(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.payload))
        .collect()
}

pub async fn refresh_token_of(w: &World, grant_id: &str) -> Option<String> {
    let row = w.store().grant(grant_id).await.unwrap().unwrap();
    row.refresh_token_ct.map(|ct| {
        w.keys
            .open(
                Owner::Grant(grant_id),
                "refresh_token",
                row.key_version,
                &ct,
            )
            .unwrap()
            .to_string()
    })
}

async fn refresh_is_single_flight_under_100_concurrent_calls(ts: TestStore) {
    // Arrange: a connected grant whose access token has expired.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let before = custodian.access_token(&grant.id).await.unwrap();
    w.advance(Duration::hours(1));

    // Act: 100 callers at once.
    let started = Instant::now();
    let calls = (0..100).map(|_| {
        let c = custodian.clone();
        let id = grant.id.clone();
        tokio::spawn(async move { c.access_token(&id).await })
    });
    let tokens: Vec<AccessToken> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let took = started.elapsed();
    println!("100 concurrent access_token calls on an expired grant took {took:?}");

    // Assert: one refresh, one new token for everyone, and Busha accepts it.
    assert_eq!(w.refreshes(), 1);
    assert_eq!(w.token_requests(), 2, "the code exchange and one refresh");
    let first = tokens[0].secret();
    assert!(tokens.iter().all(|t| t.secret() == first));
    assert_ne!(first, before.secret());
    assert!(w.token_works(&tokens[0]).await);
    assert!(!w.token_works(&before).await, "the old token has expired");
}

async fn two_custodians_on_two_pools_refresh_once_without_family_revocation(ts: TestStore) {
    // Arrange: two custodians, each with its own pool, locks and lease owner id.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let a = w.custodian_on(w.store());
    let b = w.custodian_on(w.ts.reopen().await);
    assert_ne!(a.owner(), b.owner());
    w.advance(Duration::minutes(58));

    // Act: both ask at once, 20 callers each.
    let calls = (0..40).map(|i| {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = grant.id.clone();
        tokio::spawn(async move { c.access_token(&id).await })
    });
    let tokens: Vec<AccessToken> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();

    // Assert: exactly one rotation, no replay and no family revocation.
    assert_eq!(w.refreshes(), 1);
    assert_eq!(w.replays_or_revocations(), 0);
    assert!(tokens.iter().all(|t| t.secret() == tokens[0].secret()));
    assert!(w.token_works(&tokens[0]).await);
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(row.lease_owner, None, "the lease was released");
}

async fn thirty_days_of_hourly_use_keep_the_grant_alive_with_one_refresh_an_hour(ts: TestStore) {
    // Arrange: access tokens live 1 h (expires_in 3599 s), the margin is 5 min, and
    // refresh tokens live 30 days, sliding.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let first_refresh_token = refresh_token_of(&w, &grant.id).await.unwrap();

    // Act: use the grant every hour for 30 days, then once more an hour after the
    // first refresh token would have died without sliding.
    let hours = 30 * 24 + 1;
    let started = Instant::now();
    let mut last = None;
    for _ in 0..hours {
        w.advance(Duration::hours(1));
        last = Some(custodian.access_token(&grant.id).await.unwrap());
    }
    println!("{hours} hourly uses took {:?}", started.elapsed());

    // Assert: one refresh per hourly use, the grant alive and its token accepted.
    assert_eq!(w.refreshes(), hours);
    assert_eq!(w.replays_or_revocations(), 0);
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Active);
    assert!(w.token_works(last.as_ref().unwrap()).await);
    assert_ne!(
        refresh_token_of(&w, &grant.id).await.unwrap(),
        first_refresh_token
    );
}

async fn a_refresh_whose_response_is_lost_is_retried_once_then_disconnects_with_the_reason(
    ts: TestStore,
) {
    // Arrange: Busha will rotate the token and then drop the response.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    w.sb.add_fault(Fault::new("POST /oauth2/token", FaultKind::DropAfterCommit).times(1));
    w.advance(Duration::hours(1));

    // Act
    let err = custodian.access_token(&grant.id).await.unwrap_err();

    // Assert: exactly one retry with the same token (Busha saw it as a replay), then a
    // disconnected grant whose reason says the response was lost.
    assert!(matches!(err, GrantError::Disconnected { .. }), "{err}");
    assert_eq!(
        w.token_requests(),
        3,
        "the exchange, the refresh and one retry"
    );
    assert_eq!(w.refreshes(), 1, "the first refresh was applied");
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Disconnected);
    let reason = g.status_reason.unwrap();
    assert!(
        reason.contains("response to a refresh was lost"),
        "{reason}"
    );
    assert!(reason.contains("invalid_grant"), "{reason}");
    let audit = audit_actions(&w).await;
    let (_, payload) = audit
        .iter()
        .find(|(a, _)| a == "grant.disconnected")
        .expect("a grant.disconnected entry");
    assert!(payload["reason"].as_str().unwrap().contains("was lost"));
    // Held: no further call reaches Busha.
    let again = custodian.access_token(&grant.id).await.unwrap_err();
    assert!(again.needs_reconsent(), "{again}");
    assert_eq!(w.token_requests(), 3);
}

async fn a_refresh_that_never_reached_busha_succeeds_on_its_one_retry(ts: TestStore) {
    // Arrange: the first refresh request is dropped before Busha handles it.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    w.sb.add_fault(Fault::new("POST /oauth2/token", FaultKind::DropBeforeCommit).times(1));
    w.advance(Duration::hours(1));

    // Act
    let token = custodian.access_token(&grant.id).await.unwrap();

    // Assert
    assert_eq!(
        w.token_requests(),
        3,
        "the exchange, the dropped refresh and its retry"
    );
    assert_eq!(w.refreshes(), 1);
    assert_eq!(w.replays_or_revocations(), 0);
    assert!(w.token_works(&token).await);
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Active);
}

async fn a_customer_disconnect_marks_the_grant_disconnected_audited_and_held(ts: TestStore) {
    // Arrange: the customer disconnects our app in their Busha dashboard.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    assert_eq!(
        usability(&w.store(), "busha", ALIAS).await.unwrap(),
        Usability::Usable
    );
    w.sb.disconnect_user(&w.user.id);
    w.advance(Duration::hours(1));

    // Act
    let err = custodian.access_token(&grant.id).await.unwrap_err();

    // Assert: disconnected with the reason, audited, held, and loud in `grants list`.
    assert!(matches!(err, GrantError::Disconnected { .. }), "{err}");
    assert!(err.to_string().contains("treasury connect acme"), "{err}");
    match usability(&w.store(), "busha", ALIAS).await.unwrap() {
        Usability::Held { status, reason } => {
            assert_eq!(status, GrantStatus::Disconnected);
            assert!(reason.contains("invalid_grant"), "{reason}");
        }
        other => panic!("expected held, got {other:?}"),
    }
    let audit = audit_actions(&w).await;
    let (_, payload) = audit
        .iter()
        .find(|(a, _)| a == "grant.disconnected")
        .expect("a grant.disconnected entry");
    assert_eq!(payload["alias"], ALIAS);
    assert_eq!(payload["invalid_grant"], true);
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert!(row.access_token_ct.is_none() && row.refresh_token_ct.is_none());
    let requests = w.token_requests();
    assert!(
        custodian
            .access_token(&grant.id)
            .await
            .unwrap_err()
            .needs_reconsent()
    );
    assert_eq!(w.token_requests(), requests, "a held grant calls nobody");
    assert!(w.store().verify_audit(None).await.unwrap().is_ok());
}

async fn no_token_is_stored_in_plaintext_in_any_row(ts: TestStore) {
    // Arrange: connect, then refresh once, remembering every token of both generations.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let mut secrets = vec![
        custodian
            .access_token(&grant.id)
            .await
            .unwrap()
            .secret()
            .to_string(),
        refresh_token_of(&w, &grant.id).await.unwrap(),
    ];
    w.advance(Duration::hours(1));
    secrets.push(
        custodian
            .access_token(&grant.id)
            .await
            .unwrap()
            .secret()
            .to_string(),
    );
    secrets.push(refresh_token_of(&w, &grant.id).await.unwrap());
    // An authorization in flight holds a PKCE verifier.
    w.connector().begin(ALIAS).await.unwrap();

    // Act: read every text column of every table we write.
    let pool = sqlx::AnyPool::connect(&w.ts.url).await.unwrap();
    let mut cells = Vec::new();
    for query in [
        "SELECT id, provider, alias, subject, scopes, status, status_reason, access_token_ct, refresh_token_ct, lease_owner FROM grants",
        "SELECT state_hash, provider, alias, scopes, verifier_ct, nonce FROM grant_authorizations",
        "SELECT actor, action, grant_id, payload, prev_hash, hash FROM audit_log",
    ] {
        for row in sqlx::query(query).fetch_all(&pool).await.unwrap() {
            for i in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                    cells.push(text);
                }
            }
        }
    }
    pool.close().await;

    // Assert: no token, and nothing shaped like a JWT (access and id tokens are JWTs).
    assert!(cells.len() > 20, "read the rows");
    for cell in &cells {
        assert!(!cell.contains("eyJ"), "a JWT in a row: {cell}");
        for s in &secrets {
            assert!(!cell.contains(s.as_str()), "a token in a row");
        }
    }
    // On SQLite, also the database files themselves, WAL included.
    if let Some(path) = w.ts.url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap();
        let mut scanned = 0;
        for file in [path.to_string(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                scanned += bytes.len();
                assert!(find(&bytes, b"eyJ").is_none(), "a JWT in {file}");
                for s in &secrets {
                    assert!(find(&bytes, s.as_bytes()).is_none(), "a token in {file}");
                }
            }
        }
        assert!(scanned > 0, "scanned the SQLite files");
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn a_tampered_or_swapped_ciphertext_is_a_clear_error_never_a_token(ts: TestStore) {
    // Arrange: a grant whose stored access token ciphertext has one character changed.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    let ct = row.access_token_ct.clone().unwrap();
    let mut bytes = ct.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    let pool = sqlx::AnyPool::connect(&w.ts.url).await.unwrap();
    let set = "UPDATE grants SET access_token_ct = $1 WHERE id = $2";
    sqlx::query(set)
        .bind(String::from_utf8(bytes).unwrap())
        .bind(&grant.id)
        .execute(&pool)
        .await
        .unwrap();

    // Act / Assert: a clear error, never a panic and never a token.
    let err = custodian.access_token(&grant.id).await.unwrap_err();
    assert!(matches!(err, GrantError::Crypto(_)), "{err}");
    assert!(err.to_string().contains("altered"), "{err}");

    // A ciphertext moved into another field (the refresh token into the access token)
    // does not open either: the field name is associated data.
    sqlx::query(set)
        .bind(row.refresh_token_ct.clone().unwrap())
        .bind(&grant.id)
        .execute(&pool)
        .await
        .unwrap();
    let err = custodian.access_token(&grant.id).await.unwrap_err();
    assert!(matches!(err, GrantError::Crypto(_)), "{err}");
    // Restored, it opens again.
    sqlx::query(set)
        .bind(&ct)
        .bind(&grant.id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(custodian.access_token(&grant.id).await.is_ok());
    pool.close().await;
}

async fn a_wrong_master_key_is_a_clear_error_never_a_token(ts: TestStore) {
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let wrong = treasury::grants::Custodian::new(
        w.store(),
        Arc::new(Keyring::generate(1)),
        w.oauth.clone(),
        w.clock.clone(),
        Default::default(),
    );
    let err = wrong.access_token(&grant.id).await.unwrap_err();
    assert!(err.to_string().contains("master key is wrong"), "{err}");
    // Nor does it refresh with a key it cannot use.
    w.advance(Duration::hours(1));
    assert!(matches!(
        wrong.access_token(&grant.id).await,
        Err(GrantError::Crypto(_))
    ));
    assert_eq!(w.refreshes(), 0);
}

async fn rekey_reseals_every_grant_under_the_newest_key_and_audits_it(ts: TestStore) {
    use base64::Engine;
    let b64 = |seed: u8| {
        // A fixed key per seed that looks random (a counting pattern is refused as weak).
        let bytes = <sha2::Sha256 as sha2::Digest>::digest([seed]);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let (k1, k2) = (b64(1), b64(99));
    // Arrange: a grant sealed under v1.
    let mut w = World::start(ts).await;
    w.keys = Arc::new(Keyring::parse(&format!("v1:{k1}")).unwrap());
    let grant = w.connect().await;
    assert_eq!(grant.key_version, 1);

    // Act: rotate to v2 and rekey.
    let both = Keyring::parse(&format!("v2:{k2},v1:{k1}")).unwrap();
    let report = rekey(&w.store(), &both, &w.clock, "operator:test")
        .await
        .unwrap();

    // Assert: resealed under v2, opened by v2 alone, audited; a second run is a no-op.
    assert_eq!(report.rekeyed, vec![ALIAS.to_string()]);
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(row.key_version, 2);
    w.keys = Arc::new(Keyring::parse(&format!("v2:{k2}")).unwrap());
    let token = w.custodian().access_token(&grant.id).await.unwrap();
    assert!(w.token_works(&token).await);
    assert!(
        audit_actions(&w)
            .await
            .iter()
            .any(|(a, p)| a == "grant.rekeyed" && p["to_version"] == 2)
    );
    let again = rekey(&w.store(), &both, &w.clock, "operator:test")
        .await
        .unwrap();
    assert!(again.rekeyed.is_empty() && again.already_current == vec![ALIAS.to_string()]);
}

async fn a_401_forces_one_refresh_and_a_second_401_fails_clearly(ts: TestStore) {
    // Arrange: Busha rejects revoked access tokens at once, and the current one is revoked.
    let w = World::start(ts).await;
    w.sb.update_behaviour(|b| b.revoked_family_access_tokens = RevokedAccessTokens::Rejected);
    let grant = w.connect().await;
    let custodian = w.custodian();
    let stale = custodian.access_token(&grant.id).await.unwrap();
    revoke_access_token(&w, &stale).await;
    assert!(!w.token_works(&stale).await);

    // Act: an API call through the custodian.
    let balances = custodian
        .with_token(&grant.id, |t| {
            let api = w.api.clone();
            async move { api.list_balances(&t).await }
        })
        .await
        .unwrap();

    // Assert: one forced refresh, and the call succeeded with the new token.
    assert!(balances.is_ok());
    assert_eq!(w.refreshes(), 1);

    // A call that keeps getting 401 gets one forced refresh, then a clear error.
    let err = custodian
        .with_token(&grant.id, |_| {
            let (api, stale) = (w.api.clone(), stale.clone());
            async move { api.list_balances(&stale).await }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, GrantError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("freshly refreshed"), "{err}");
    assert_eq!(w.refreshes(), 2);
}

/// Revokes an access token at the sandbox, as Busha's client would (RFC 7009).
async fn revoke_access_token(w: &World, token: &AccessToken) {
    let res = reqwest::Client::new()
        .post(w.sb.url().join("oauth2/revoke").unwrap())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", token.secret())])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
}

async fn force_refresh_does_not_refresh_again_once_the_rejected_token_was_replaced(ts: TestStore) {
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let rejected = custodian.access_token(&grant.id).await.unwrap();

    // Ten callers all saw a 401 with the same token.
    let calls = (0..10).map(|_| {
        let (c, id, r) = (custodian.clone(), grant.id.clone(), rejected.clone());
        tokio::spawn(async move { c.force_refresh(&id, &r).await })
    });
    let tokens: Vec<AccessToken> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();

    assert_eq!(w.refreshes(), 1);
    assert!(tokens.iter().all(|t| t.secret() == tokens[0].secret()));
    assert_ne!(tokens[0].secret(), rejected.secret());
}

async fn revoke_ends_the_family_at_busha_wipes_the_tokens_and_audits(ts: TestStore) {
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();

    let revoked = custodian.revoke(&grant.id, "operator:test").await.unwrap();

    assert_eq!(revoked.status, GrantStatus::Revoked);
    assert_eq!(
        w.count(|e| matches!(e, treasury::sandbox::LedgerEvent::FamilyRevoked { .. })),
        1
    );
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert!(row.access_token_ct.is_none() && row.refresh_token_ct.is_none());
    assert!(
        audit_actions(&w)
            .await
            .iter()
            .any(|(a, p)| a == "grant.revoked" && p["alias"] == ALIAS)
    );
    let err = custodian.access_token(&grant.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            GrantError::NotUsable {
                status: GrantStatus::Revoked,
                ..
            }
        ),
        "{err}"
    );
}

async fn a_stale_lease_holder_writes_nothing(ts: TestStore) {
    // Arrange: holder A takes the lease, which then lapses; holder B takes it over.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let store = w.store();
    let now = w.clock.now();
    let fence_a = store
        .acquire_grant_lease(&grant.id, "a", now, now + Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .acquire_grant_lease(&grant.id, "b", now, now + Duration::seconds(60))
            .await
            .unwrap(),
        None,
        "the lease is exclusive while it lasts"
    );
    w.advance(Duration::seconds(61));
    let now = w.clock.now();
    let fence_b = store
        .acquire_grant_lease(&grant.id, "b", now, now + Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    assert!(fence_b > fence_a);

    // Act: A, stale, tries to write a token pair.
    let row = store.grant(&grant.id).await.unwrap().unwrap();
    let sealed = treasury::store::SealedTokens {
        key_version: row.key_version,
        access_token_ct: row.access_token_ct.clone().unwrap(),
        access_expires_at: now + Duration::hours(5),
        refresh_token_ct: row.refresh_token_ct.clone(),
        scopes: row.scopes.clone(),
        refresh_expires_at: None,
    };
    let mut tx = store.begin().await.unwrap();
    let a_wrote = store
        .store_refreshed_tokens_in(&mut tx, &grant.id, fence_a, &sealed, now)
        .await
        .unwrap();
    let b_wrote = store
        .store_refreshed_tokens_in(&mut tx, &grant.id, fence_b, &sealed, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Assert: only the current holder's write landed.
    assert!(!a_wrote);
    assert!(b_wrote);
    let after = store.grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(after.access_expires_at, now + Duration::hours(5));
    assert_eq!(after.lease_owner, None);
}

/// Storing fails after Busha rotated the pair (a trigger refuses the write): the grant
/// is marked lost with a critical audit entry. SQLite only: it needs a trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_pair_that_cannot_be_stored_marks_the_grant_lost_critically() {
    let w = World::start(TestStore::sqlite().await).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let pool = sqlx::AnyPool::connect(&w.ts.url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_rotation BEFORE UPDATE OF refreshed_at ON grants \
         BEGIN SELECT RAISE(ABORT, 'disk full (injected)'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    w.advance(Duration::hours(1));

    let err = custodian.access_token(&grant.id).await.unwrap_err();

    assert!(matches!(err, GrantError::Lost { .. }), "{err}");
    assert_eq!(w.refreshes(), 1, "Busha rotated the pair");
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Lost);
    assert!(g.status_reason.unwrap().contains("injected"));
    let audit = audit_actions(&w).await;
    assert!(
        audit
            .iter()
            .any(|(a, p)| a == "grant.lost" && p["critical"] == true)
    );
}

async fn a_5xx_is_an_unknown_outcome_retried_once_and_twice_leaves_the_grant_active(ts: TestStore) {
    // Arrange: the token endpoint answers 503 once (nothing applied).
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    w.sb.add_fault(Fault::new("POST /oauth2/token", FaultKind::ServerError(503)).times(1));
    w.advance(Duration::hours(1));

    // Act / Assert: one retry, which succeeds.
    let token = custodian.access_token(&grant.id).await.unwrap();
    assert!(w.token_works(&token).await);
    assert_eq!((w.token_requests(), w.refreshes()), (3, 1));

    // Two 503s in a row: no third attempt, a transient error, the grant untouched.
    w.sb.add_fault(Fault::new("POST /oauth2/token", FaultKind::ServerError(503)).times(2));
    w.advance(Duration::hours(1));
    let err = custodian.access_token(&grant.id).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("one retry"), "{err}");
    assert_eq!(w.token_requests(), 5);
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Active);
    assert_eq!(
        w.store()
            .grant(&grant.id)
            .await
            .unwrap()
            .unwrap()
            .lease_owner,
        None
    );

    // The kept refresh token still works on the next call.
    let token = custodian.access_token(&grant.id).await.unwrap();
    assert!(w.token_works(&token).await);
    assert_eq!(w.replays_or_revocations(), 0);
}

async fn an_unreachable_token_endpoint_is_transient_and_leaves_the_grant_active(ts: TestStore) {
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    w.sb.shutdown().await;
    w.advance(Duration::hours(1));

    let err = custodian.access_token(&grant.id).await.unwrap_err();

    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Active);
    assert!(g.has_refresh_token);
}

fn busy(status: u16, error: &str, retry_after: u64) -> FaultKind {
    FaultKind::Respond(CannedResponse {
        status,
        body: serde_json::json!({"error": error, "error_description": "try later"}),
        retry_after: Some(retry_after),
    })
}

async fn a_refresh_answered_503_with_an_oauth_body_is_retried_with_the_same_token_after_retry_after(
    ts: TestStore,
) {
    // Arrange: the token endpoint answers one refresh with 503 `server_error`.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let kept = refresh_token_of(&w, &grant.id).await;
    w.sb.add_fault(Fault::new("POST /oauth2/token", busy(503, "server_error", 1)).times(1));
    w.advance(Duration::hours(1));

    // Act
    let began = Instant::now();
    let token = custodian.access_token(&grant.id).await.unwrap();

    // Assert: not a refusal; one retry, with the same refresh token (no replay at
    // Busha), after Busha's Retry-After.
    assert!(w.token_works(&token).await);
    assert_eq!((w.token_requests(), w.refreshes()), (3, 1));
    assert_eq!(w.replays_or_revocations(), 0);
    assert!(began.elapsed() >= std::time::Duration::from_secs(1));
    assert_ne!(refresh_token_of(&w, &grant.id).await, kept, "rotated once");
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Active);
}

async fn a_refresh_told_to_wait_long_is_transient_and_nothing_is_sent_before_retry_after(
    ts: TestStore,
) {
    // Arrange: a 429 with an OAuth body and a minute's Retry-After.
    let w = World::start(ts).await;
    let grant = w.connect().await;
    let custodian = w.custodian();
    let kept = refresh_token_of(&w, &grant.id).await;
    w.sb.add_fault(
        Fault::new(
            "POST /oauth2/token",
            busy(429, "temporarily_unavailable", 60),
        )
        .times(1),
    );
    w.advance(Duration::hours(1));

    // Act
    let err = custodian.access_token(&grant.id).await.unwrap_err();
    let again = custodian.access_token(&grant.id).await.unwrap_err();

    // Assert: transient, with the status and the wait, never the client settings;
    // the second call sent nothing; the grant and its refresh token are kept.
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(text.contains("HTTP 429") && text.contains("60 s"), "{text}");
    assert!(!text.contains("client settings"), "{text}");
    assert!(again.is_transient(), "{again}");
    assert!(again.to_string().contains("nothing was sent"), "{again}");
    assert_eq!(w.token_requests(), 2, "the exchange and the one refresh");
    assert_eq!(refresh_token_of(&w, &grant.id).await, kept);
    let g = custodian.grant_by_alias(ALIAS).await.unwrap().unwrap();
    assert_eq!(g.status, GrantStatus::Active);
}

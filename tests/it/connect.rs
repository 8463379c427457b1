//! Connecting a customer end to end against the sandbox: through the CLI's code path
//! (its own callback listener, a scripted browser) and through the worker's HTTP
//! endpoints, plus every error path, each of which must store nothing.

use std::sync::Arc;

use chrono::Duration;
use tokio_util::sync::CancellationToken;
use treasury::cli::connect::{Requested, connect};
use treasury::grants::oauth::RefreshFailure;
use treasury::grants::{BushaOAuth, ConnectError, Connected, GrantStatus, RefreshToken};
use treasury::http::{AppState, router, serve};
use treasury::sandbox::{CannedResponse, Fault, FaultKind, LedgerEvent};
use url::Url;

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, Browser, CLIENT_SECRET, Options, World, oauth_settings};
use crate::on_both_backends;

on_both_backends!(
    connect_through_the_cli_with_auto_consent_stores_a_sealed_grant_and_audits_it,
    connect_through_http_redirects_to_busha_and_a_doubled_callback_exchanges_once,
    a_callback_from_another_issuer_is_refused_before_anything_is_exchanged,
    a_reconnect_revokes_the_grant_it_replaces_at_busha_and_audits_it,
    tokens_issued_for_a_consent_we_refuse_are_revoked_at_busha_and_audited,
);

const OPERATOR_TOKEN: &str = "operator-token-for-tests";

/// Runs `treasury connect acme` in-process; `browse` plays the customer's browser with
/// the authorization URL and returns the callback URL it lands on (or None to stop).
async fn run_cli_connect<F, Fut>(
    w: &mut World,
    browse: F,
) -> (
    Result<Connected, ConnectError>,
    String,
    Option<(u16, String)>,
)
where
    F: Fn(Browser, Url) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Url> + Send + 'static,
{
    let listener = w.listener.take().unwrap();
    let connector = w.connector();
    let pages = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let browse = Arc::new(browse);
    let opener = {
        let pages = pages.clone();
        move |url: &Url| {
            let (browser, url, pages, browse) =
                (Browser::new(), url.clone(), pages.clone(), browse.clone());
            pages.lock().push(tokio::spawn(async move {
                let callback = browse(browser.clone(), url).await;
                browser.callback(&callback).await
            }));
        }
    };
    let mut out = Vec::new();
    let result = connect(
        &connector,
        Requested {
            alias: ALIAS,
            by: "operator:ops",
        },
        listener,
        &w.redirect_uri,
        &opener,
        CancellationToken::new(),
        &mut out,
    )
    .await;
    let handle = pages.lock().pop();
    let page = match handle {
        Some(h) => Some(h.await.unwrap()),
        None => None,
    };
    (result, String::from_utf8(out).unwrap(), page)
}

async fn assert_nothing_stored(w: &World) {
    assert!(
        w.store().grants().await.unwrap().is_empty(),
        "a grant was stored"
    );
    let audit = w.store().audit_entries(None, None).await.unwrap();
    assert!(audit.iter().all(|e| e.action != "grant.connected"));
}

async fn connect_through_the_cli_with_auto_consent_stores_a_sealed_grant_and_audits_it(
    ts: TestStore,
) {
    // Arrange
    let mut w = World::start(ts).await;
    let seen = Arc::new(parking_lot::Mutex::new(None));
    let seen_in_browser = seen.clone();

    // Act: the browser follows the URL; the sandbox consents and redirects to the CLI.
    let (result, out, page) = run_cli_connect(&mut w, move |b, url| {
        *seen_in_browser.lock() = Some(url.clone());
        async move { b.follow_auto_consent(&url).await }
    })
    .await;

    // Assert: the authorization request was PKCE S256 with a long state and a nonce.
    let url = seen.lock().clone().unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(
        q["state"].len() >= 43,
        "state carries at least 32 random bytes"
    );
    assert!(q["nonce"].len() >= 43);
    for s in [
        "openid",
        "offline_access",
        "balances:read",
        "transfers:write",
    ] {
        assert!(q["scope"].split(' ').any(|x| x == s), "{s} requested");
    }
    // The grant is stored, active, for the customer's subject, and audited.
    let done = result.unwrap();
    assert_eq!(done.grant.subject, w.user.id);
    assert_eq!(done.grant.status, GrantStatus::Active);
    assert!(done.grant.has_refresh_token);
    assert!(!done.reconnected);
    assert!(out.contains(url.as_str()), "the URL is printed: {out}");
    assert!(out.contains("Connected acme"), "{out}");
    let (status, html) = page.unwrap();
    assert_eq!(status, 200, "{html}");
    assert_eq!(w.code_exchanges(), 1);
    let audit = w.store().audit_entries(None, None).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "grant.connected")
        .unwrap();
    assert_eq!(entry.payload["subject"], w.user.id.as_str());
    assert_eq!(entry.actor, "operator:ops");
    // It is usable, and nothing the CLI printed is a token.
    let token = w.custodian().access_token(&done.grant.id).await.unwrap();
    assert!(w.token_works(&token).await);
    assert!(!out.contains(token.secret()) && !out.contains("eyJ"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_through_the_cli_with_a_scripted_consent_form() {
    let mut w = World::start_with(
        TestStore::sqlite().await,
        Options {
            auto_consent: false,
            ..Options::default()
        },
    )
    .await;

    let (result, _, page) =
        run_cli_connect(
            &mut w,
            |b, url| async move { b.consent(&url, "approve").await },
        )
        .await;

    let done = result.unwrap();
    assert_eq!(done.grant.subject, w.user.id);
    assert_eq!(page.unwrap().0, 200);
    assert_eq!(w.store().grants().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_consent_ends_with_access_denied_and_stores_nothing() {
    let mut w = World::start_with(
        TestStore::sqlite().await,
        Options {
            auto_consent: false,
            ..Options::default()
        },
    )
    .await;

    let (result, out, page) =
        run_cli_connect(
            &mut w,
            |b, url| async move { b.consent(&url, "deny").await },
        )
        .await;

    let err = result.unwrap_err();
    assert!(matches!(err, ConnectError::AccessDenied(_)), "{err}");
    assert!(out.contains("declined"), "{out}");
    assert_eq!(page.unwrap().0, 400);
    assert_eq!(w.code_exchanges(), 0);
    assert_nothing_stored(&w).await;
}

/// `callback` with `name` set to `value` (added if absent).
fn with_param(callback: &Url, name: &str, value: &str) -> Url {
    let mut pairs: Vec<(String, String)> = callback
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != name)
        .collect();
    pairs.push((name.into(), value.into()));
    let mut changed = callback.clone();
    changed.query_pairs_mut().clear().extend_pairs(pairs);
    changed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_ignores_callbacks_that_are_not_its_own_and_connects_with_the_real_one() {
    let mut w = World::start(TestStore::sqlite().await).await;
    let issuer = w.sb.issuer().to_string();

    let (result, out, page) = run_cli_connect(&mut w, move |b, url| {
        let issuer = issuer.clone();
        async move {
            let callback = b.follow_auto_consent(&url).await;
            // Someone who can reach the listener sends a callback with another state,
            // then one with our state from another issuer: both are refused, and the
            // command keeps waiting.
            let forged_state = with_param(&callback, "state", "forged-state-0123456789abcdef");
            let (status, html) = b.callback(&forged_state).await;
            assert_eq!(status, 400, "{html}");
            assert!(html.contains("state mismatch"), "{html}");
            let forged_iss = with_param(&callback, "iss", "https://login.evil.example");
            let (status, html) = b.callback(&forged_iss).await;
            assert_eq!(status, 400, "{html}");
            assert!(html.contains("pinned issuer"), "{html}");
            // Then the customer's browser arrives, naming the real issuer.
            with_param(&callback, "iss", &issuer)
        }
    })
    .await;

    let done = result.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(done.grant.subject, w.user.id);
    assert_eq!(page.unwrap().0, 200);
    assert_eq!(
        w.code_exchanges(),
        1,
        "only the real callback was exchanged"
    );
    assert_eq!(w.store().grants().await.unwrap().len(), 1);
}

async fn a_callback_from_another_issuer_is_refused_before_anything_is_exchanged(ts: TestStore) {
    // Arrange: a genuine authorization, whose callback is replayed with a forged `iss`.
    let w = World::start(ts).await;
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    let forged = with_param(&callback, "iss", "https://login.evil.example");

    // Act
    let err = connector
        .complete(&crate::grants_harness::callback_params(&forged), "test")
        .await
        .unwrap_err();

    // Assert: refused, nothing exchanged or stored, the authorization not spent.
    assert!(
        matches!(&err, ConnectError::IssuerMismatch { got, .. } if got == "https://login.evil.example"),
        "{err}"
    );
    assert_eq!(w.code_exchanges(), 0);
    assert_nothing_stored(&w).await;
    let genuine = with_param(&callback, "iss", w.sb.issuer());
    let done = connector
        .complete(&crate::grants_harness::callback_params(&genuine), "test")
        .await
        .unwrap();
    assert_eq!(done.grant.subject, w.user.id);
}

async fn a_reconnect_revokes_the_grant_it_replaces_at_busha_and_audits_it(ts: TestStore) {
    // Arrange: an active grant, and its refresh token.
    let w = World::start(ts).await;
    let first = w.connect().await;
    let old_token = crate::grants::refresh_token_of(&w, &first.id)
        .await
        .unwrap();

    // Act: the customer connects the same alias again.
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    let done = connector
        .complete(&crate::grants_harness::callback_params(&callback), "test")
        .await
        .unwrap();

    // Assert: the old family is revoked at Busha, the new grant works, and it is said.
    assert!(done.reconnected);
    assert_eq!(done.previous_revoked, Some(Ok(())));
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::FamilyRevoked { reason, .. } if reason == "revoked by the client")),
        1
    );
    let replay = w.oauth.refresh(&RefreshToken::new(&old_token)).await;
    assert!(
        matches!(replay, Err(RefreshFailure::InvalidGrant { .. })),
        "{replay:?}"
    );
    let token = w.custodian().access_token(&done.grant.id).await.unwrap();
    assert!(w.token_works(&token).await);
    let audit = w.store().audit_entries(None, None).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "grant.tokens_revoked")
        .expect("audited");
    assert_eq!(entry.payload["why"], "replaced");
    assert_eq!(entry.payload["revoked"], true);
    assert_eq!(entry.grant_id.as_deref(), Some(first.id.as_str()));
}

async fn tokens_issued_for_a_consent_we_refuse_are_revoked_at_busha_and_audited(ts: TestStore) {
    // Arrange: the id_token will not carry the nonce we expect.
    let w = World::start(ts).await;
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    let pool = sqlx::AnyPool::connect(&w.ts.url).await.unwrap();
    sqlx::query("UPDATE grant_authorizations SET nonce = 'a-different-nonce-0123456789'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // Act
    let err = connector
        .complete(&crate::grants_harness::callback_params(&callback), "test")
        .await
        .unwrap_err();

    // Assert: refused, and the tokens Busha issued for it are dead there.
    assert!(
        err.to_string().contains("id_token failed verification"),
        "{err}"
    );
    assert_eq!(w.code_exchanges(), 1);
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::FamilyRevoked { reason, .. } if reason == "revoked by the client")),
        1
    );
    assert_nothing_stored(&w).await;
    let audit = w.store().audit_entries(None, None).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "grant.tokens_revoked")
        .expect("audited");
    assert_eq!(entry.payload["why"], "refused");
    assert_eq!(entry.payload["revoked"], true);
    assert!(
        entry.payload["reason"].as_str().unwrap().contains("nonce"),
        "{}",
        entry.payload
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_exchange_answered_503_with_an_oauth_body_is_tried_again_after_retry_after() {
    // Arrange: the token endpoint is busy once, saying so in OAuth's words.
    let w = World::start(TestStore::sqlite().await).await;
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    w.sb.add_fault(
        Fault::new(
            "POST /oauth2/token",
            FaultKind::Respond(CannedResponse {
                status: 503,
                body: serde_json::json!({"error": "temporarily_unavailable"}),
                retry_after: Some(1),
            }),
        )
        .times(1),
    );

    // Act
    let began = std::time::Instant::now();
    let done = connector
        .complete(&crate::grants_harness::callback_params(&callback), "test")
        .await
        .unwrap();

    // Assert: the customer's consent is kept; the second try waited Busha's second.
    assert_eq!(done.grant.subject, w.user.id);
    assert_eq!(w.token_requests(), 2);
    assert_eq!(w.code_exchanges(), 1);
    assert!(began.elapsed() >= std::time::Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_stays_busy_is_unavailable_never_a_client_misconfiguration() {
    let w = World::start(TestStore::sqlite().await).await;
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    w.sb.add_fault(Fault::new(
        "POST /oauth2/token",
        FaultKind::Respond(CannedResponse {
            status: 429,
            body: serde_json::json!({"error": "invalid_client", "error_description": "slow down"}),
            retry_after: Some(0),
        }),
    ));

    let err = connector
        .complete(&crate::grants_harness::callback_params(&callback), "test")
        .await
        .unwrap_err();

    let text = err.to_string();
    assert!(
        text.contains("unavailable") && text.contains("HTTP 429"),
        "{text}"
    );
    assert!(
        !text.contains("client credentials") && !text.contains("TREASURY_BUSHA_CLIENT_SECRET"),
        "{text}"
    );
    assert_eq!(w.token_requests(), 3, "three tries in all");
    assert_nothing_stored(&w).await;
}

/// The worker's HTTP server on the redirect URI's port.
async fn spawn_server(w: &mut World) -> (Url, CancellationToken) {
    let listener = w.listener.take().unwrap();
    // The operator account `operator`, whose personal token is OPERATOR_TOKEN.
    let role = treasury::operators::Role::Operator;
    let account = crate::operators_world::account(&w.store(), &w.clock, "operator", role).await;
    let expires = w.clock.now() + chrono::Duration::days(1);
    let hash = treasury::operators::secrets::token_hash(OPERATOR_TOKEN);
    w.store()
        .add_operator_token(&account, &hash, expires, w.clock.now())
        .await
        .unwrap();
    let app = router(AppState {
        connector: Some(w.connector()),
        baanx: None,
        store: w.store(),
        clock: w.clock.clone(),
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, app, Default::default(), shutdown.clone()));
    (w.redirect_uri.join("/").unwrap(), shutdown)
}

/// `GET /oauth/connect/acme` as the operator; returns Busha's authorization URL.
async fn start_http_connect(b: &Browser, base: &Url) -> Url {
    let res = b
        .http
        .get(base.join("oauth/connect/acme").unwrap())
        .basic_auth("operator", Some(OPERATOR_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    Url::parse(res.headers()["location"].to_str().unwrap()).unwrap()
}

async fn connect_through_http_redirects_to_busha_and_a_doubled_callback_exchanges_once(
    ts: TestStore,
) {
    // Arrange
    let mut w = World::start(ts).await;
    let (base, shutdown) = spawn_server(&mut w).await;
    let b = Browser::new();

    // Act: the operator starts, Busha consents, and the callback arrives twice at once.
    let authorize = start_http_connect(&b, &base).await;
    assert!(authorize.as_str().starts_with(w.sb.issuer()), "{authorize}");
    let callback = b.follow_auto_consent(&authorize).await;
    let (first, second) = tokio::join!(b.callback(&callback), b.callback(&callback));

    // Assert: one success, one "already completed", one code exchange, one grant.
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{first:?} {second:?}");
    let done_page = if first.0 == 200 { &first.1 } else { &second.1 };
    assert!(done_page.contains("acme"), "{done_page}");
    assert!(!done_page.contains("eyJ"));
    assert_eq!(w.code_exchanges(), 1);
    let grants = w.store().grants().await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].subject, w.user.id);
    let audit = w.store().audit_entries(None, None).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "grant.connected")
            .count(),
        1
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_connect_endpoint_requires_the_operator_token() {
    let mut w = World::start(TestStore::sqlite().await).await;
    let (base, shutdown) = spawn_server(&mut w).await;
    let b = Browser::new();
    let url = base.join("oauth/connect/acme").unwrap();

    let anonymous = b.http.get(url.clone()).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = b
        .http
        .get(url.clone())
        .basic_auth("operator", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = b
        .http
        .get(base.join("oauth/connect/nobody").unwrap())
        .basic_auth("operator", Some(OPERATOR_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("not declared"));
    // A live token under another name, and a viewer's token, are refused too.
    let renamed = b
        .http
        .get(url.clone())
        .basic_auth("someone-else", Some(OPERATOR_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 401);
    let viewer = crate::operators_world::account(
        &w.store(),
        &w.clock,
        "vera",
        treasury::operators::Role::Viewer,
    )
    .await;
    let viewer_token = crate::operators_world::token(&w.store(), &w.clock, &viewer).await;
    let by_viewer = b
        .http
        .get(url.clone())
        .basic_auth("vera", Some(&viewer_token))
        .send()
        .await
        .unwrap();
    assert_eq!(by_viewer.status(), 401);
    assert_eq!(w.count(|_| true), 0, "Busha saw nothing");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_callback_with_an_unknown_state_stores_nothing() {
    let mut w = World::start(TestStore::sqlite().await).await;
    let (base, shutdown) = spawn_server(&mut w).await;
    let b = Browser::new();
    // A real code, but a state we never issued.
    let authorize = start_http_connect(&b, &base).await;
    let real = b.follow_auto_consent(&authorize).await;
    let code = real
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut forged = base.join("oauth/callback").unwrap();
    forged
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA");

    let (status, page) = b.callback(&forged).await;

    assert_eq!(status, 400);
    assert!(page.contains("state mismatch"), "{page}");
    assert_eq!(w.code_exchanges(), 0);
    assert_nothing_stored(&w).await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_ends_with_a_clear_message_and_stores_nothing() {
    let mut w = World::start(TestStore::sqlite().await).await;
    let (base, shutdown) = spawn_server(&mut w).await;
    let b = Browser::new();
    let authorize = start_http_connect(&b, &base).await;
    let callback = b.follow_auto_consent(&authorize).await;
    // The customer's browser sat on the redirect past the code's 10 minutes.
    w.advance(Duration::minutes(11));

    let (status, page) = b.callback(&callback).await;

    assert_eq!(status, 502);
    assert!(
        page.contains("invalid_grant") && page.contains("expired"),
        "{page}"
    );
    assert_nothing_stored(&w).await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_ends_with_a_clear_message_and_stores_nothing() {
    let w = World::start_with(
        TestStore::sqlite().await,
        Options {
            presented_secret: format!("{CLIENT_SECRET}-but-wrong"),
            ..Options::default()
        },
    )
    .await;
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;

    let err = connector
        .complete(&crate::grants_harness::callback_params(&callback), "test")
        .await
        .unwrap_err();

    let text = err.to_string();
    assert!(text.contains("rejected our client credentials"), "{text}");
    assert!(text.contains("TREASURY_BUSHA_CLIENT_SECRET"), "{text}");
    assert!(!text.contains(CLIENT_SECRET), "the secret is never shown");
    assert_nothing_stored(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_is_a_clear_error_at_startup() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let issuer = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let redirect = Url::parse("http://127.0.0.1:1/oauth/callback").unwrap();

    let err = BushaOAuth::discover(
        &oauth_settings(&issuer, CLIENT_SECRET, &redirect),
        treasury::clock::Clock::system(),
    )
    .await
    .unwrap_err();

    assert!(
        err.contains(&format!(
            "cannot read OIDC discovery from the issuer http://127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!err.contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_a_disconnected_grant_keeps_its_id_and_makes_it_usable_again() {
    let w = World::start(TestStore::sqlite().await).await;
    let first = w.connect().await;
    w.sb.disconnect_user(&w.user.id);
    w.advance(Duration::hours(1));
    assert!(
        w.custodian()
            .access_token(&first.id)
            .await
            .unwrap_err()
            .needs_reconsent()
    );

    let again = w.connect().await;

    assert_eq!(again.id, first.id);
    assert_eq!(again.status, GrantStatus::Active);
    let token = w.custodian().access_token(&again.id).await.unwrap();
    assert!(w.token_works(&token).await);
    let audit = w.store().audit_entries(None, None).await.unwrap();
    let last = audit
        .iter()
        .rfind(|e| e.action == "grant.connected")
        .unwrap();
    assert_eq!(last.payload["reconnected"], true);
    assert_eq!(last.payload["previous_status"], "disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_without_our_nonce_is_refused_and_nothing_stored() {
    let w = World::start(TestStore::sqlite().await).await;
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    // The nonce we expect is no longer the one Busha put in the id_token.
    let pool = sqlx::AnyPool::connect(&w.ts.url).await.unwrap();
    sqlx::query("UPDATE grant_authorizations SET nonce = 'a-different-nonce-0123456789'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let err = connector
        .complete(&crate::grants_harness::callback_params(&callback), "test")
        .await
        .unwrap_err();

    assert!(matches!(err, ConnectError::Exchange(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("id_token failed verification") && text.contains("nonce"),
        "{text}"
    );
    assert_nothing_stored(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_verifies_id_tokens_signed_with_a_key_busha_rotated_in_after_startup() {
    let w = World::start(TestStore::sqlite().await).await;
    // Busha rotates its signing keys and retires the one we fetched at discovery.
    w.sb.rotate_keys(true);

    let grant = w.connect().await;

    assert_eq!(grant.subject, w.user.id);
}

/// Issue 16 §3: every page the worker serves, the OAuth result pages included, says
/// not to run anything, sniff, frame, leak its URL as a referrer, or be cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_the_connect_flow_carries_the_security_headers() {
    let mut w = World::start(TestStore::sqlite().await).await;
    let (base, shutdown) = spawn_server(&mut w).await;
    let b = Browser::new();
    let connect = base.join("oauth/connect/acme").unwrap();
    let signed_in = |url: Url| b.http.get(url).basic_auth("operator", Some(OPERATOR_TOKEN));
    let mut pages = vec![
        (
            "sign-in page",
            b.http.get(connect.clone()).send().await.unwrap(),
        ),
        (
            "unknown grant page",
            signed_in(base.join("oauth/connect/nobody").unwrap())
                .send()
                .await
                .unwrap(),
        ),
        (
            "redirect to Busha",
            signed_in(connect.clone()).send().await.unwrap(),
        ),
    ];
    let authorize = Url::parse(pages[2].1.headers()["location"].to_str().unwrap()).unwrap();
    let callback = b.follow_auto_consent(&authorize).await;
    pages.push((
        "connected page",
        b.http.get(callback.clone()).send().await.unwrap(),
    ));
    pages.push((
        "already used page",
        b.http.get(callback).send().await.unwrap(),
    ));

    let statuses: Vec<u16> = pages.iter().map(|(_, r)| r.status().as_u16()).collect();
    assert_eq!(statuses, [401, 404, 302, 200, 409]);
    for (what, res) in &pages {
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{what}: {csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
    }
    shutdown.cancel();
}

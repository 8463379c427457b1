//! Grants on Baanx (issue 12 §4): both connect flows over real HTTP against the
//! sandbox, custody (single-flight refresh across two "processes"), revocation,
//! reconnects, disconnect detection and consent records.

use chrono::Duration;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use treasury::cli::connect::{Requested, connect};
use treasury::grants::baanx_api::consent_text;
use treasury::grants::crypto::Owner;
use treasury::grants::{GrantError, GrantStatus, Usability, usability};
use treasury::provider::AccessToken;
use treasury::provider::baanx::{Grant as AsCustomer, Region};
use treasury::sandbox::baanx::{BaanxEvent, NewBaanxUser};

use crate::baanx_grants_harness::{API, Bw, HOSTED, Script, hosted_browser, tokens_for};
use crate::baanx_sandbox_support::{EMAIL, PASSWORD};
use crate::backends::TestStore;
use crate::on_both_backends;

on_both_backends!(
    the_hosted_flow_connects_through_treasury_connect_refreshes_twice_and_a_replay_kills_the_family,
    a_refresh_storm_of_two_processes_and_100_callers_makes_exactly_one_refresh,
    a_reconnect_revokes_the_old_grant_before_the_new_code_exchange,
    invalid_grant_on_refresh_disconnects_the_grant_holds_its_jobs_and_raises_an_alert,
);

/// The sealed refresh token of `alias`, opened.
async fn refresh_token_of(w: &Bw, alias: &str) -> String {
    let row = w
        .store()
        .grant_by_alias("baanx", alias)
        .await
        .unwrap()
        .unwrap();
    w.keys
        .open(
            Owner::Grant(&row.id),
            "refresh_token",
            row.key_version,
            row.refresh_token_ct.as_ref().unwrap(),
        )
        .unwrap()
        .to_string()
}

async fn the_hosted_flow_connects_through_treasury_connect_refreshes_twice_and_a_replay_kills_the_family(
    ts: TestStore,
) {
    // Arrange
    let mut w = Bw::start(ts).await;
    let connector = w.connector();
    let listener = w.listener.take().unwrap();
    let sandbox = w.bx.sb.url();
    let opener = move |url: &url::Url| {
        let (sandbox, url) = (sandbox.clone(), url.clone());
        tokio::spawn(async move { hosted_browser(sandbox, url, EMAIL, PASSWORD).await });
    };
    let mut out = Vec::new();

    // Act: connect, then refresh twice.
    let connected = connect(
        &connector,
        Requested {
            alias: HOSTED,
            by: "operator:ops",
        },
        listener,
        &w.redirect,
        &opener,
        CancellationToken::new(),
        &mut out,
    )
    .await
    .unwrap();
    let first_refresh = refresh_token_of(&w, HOSTED).await;
    let custodian = w.custodian();
    let id = connected.grant.id.clone();
    custodian.refresh_now(&id).await.unwrap();
    let second = custodian.refresh_now(&id).await.unwrap();
    let works_before_replay = w.token_works(second.secret()).await;
    let replay = w.bx.refresh(&first_refresh).await;

    // Assert
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("Open this URL to connect cards-hosted"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Connected cards-hosted to Baanx user {}",
            w.bx.user.id
        )),
        "{out}"
    );
    assert!(
        out.contains("WARNING: Baanx has no consent record"),
        "{out}"
    );
    let g = &connected.grant;
    assert_eq!(g.provider, "baanx");
    assert_eq!(g.region.as_deref(), Some("international"));
    assert!(g.refresh_expires_at.is_some());
    let consent = g.consent.as_ref().unwrap();
    assert_eq!(consent.channel, "browser");
    assert_eq!(consent.user_agent.as_deref(), Some("ScriptedBrowser/1.0"));
    assert_eq!(consent.client_address.as_deref(), Some("127.0.0.1"));
    assert!(
        consent.shown_by_us.is_none(),
        "the hosted page is Baanx's, not ours"
    );
    assert_eq!(consent.provider_consent.as_ref().unwrap().status, "unknown");
    assert_eq!(w.refreshes(), 2);
    assert!(works_before_replay);
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.text);
    assert_eq!(replay.body["error"], "invalid_grant");
    assert!(
        !w.token_works(second.secret()).await,
        "the replay killed the family"
    );
}

async fn a_refresh_storm_of_two_processes_and_100_callers_makes_exactly_one_refresh(ts: TestStore) {
    // Arrange: two custodians on two pools (two processes), an expired grant.
    let w = Bw::start(ts).await;
    let grant = w.connect_api(API).await.unwrap().grant;
    let a = w.custodian();
    let b = w.custodian_on(w.ts.reopen().await);
    w.bx.advance(Duration::hours(7));

    // Act
    let calls = (0..100).map(|i| {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let id = grant.id.clone();
        tokio::spawn(async move { c.access_token(&id).await })
    });
    let tokens: Vec<AccessToken> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();

    // Assert
    assert_eq!(w.refreshes(), 1);
    assert_eq!(w.replays(), 0);
    assert!(tokens.iter().all(|t| t.secret() == tokens[0].secret()));
    assert!(w.token_works(tokens[0].secret()).await);
}

async fn a_reconnect_revokes_the_old_grant_before_the_new_code_exchange(ts: TestStore) {
    // Arrange
    let w = Bw::start(ts).await;
    let first = w.connect_api(API).await.unwrap();

    // Act
    let again = w.connect_api(API).await.unwrap();

    // Assert: the old family died before the second code was exchanged.
    let ledger = w.ledger();
    let revoked = ledger
        .iter()
        .position(|e| matches!(e.event, BaanxEvent::FamilyRevoked { .. }))
        .expect("the old grant was revoked");
    let exchanges: Vec<usize> = ledger
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(&e.event, BaanxEvent::TokenIssued { grant, .. } if grant == "authorization_code"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(exchanges.len(), 2);
    assert!(
        revoked < exchanges[1],
        "revoked at {revoked}, exchanged at {}",
        exchanges[1]
    );
    assert!(again.reconnected);
    assert_eq!(again.grant.id, first.grant.id);
    assert_eq!(again.grant.status, GrantStatus::Active);
    let token = w.custodian().access_token(&again.grant.id).await.unwrap();
    assert!(w.token_works(token.secret()).await, "the new grant lives");
    let actions: Vec<String> = w
        .store()
        .audit_entries(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    let revoked_at = actions.iter().position(|a| a == "grant.revoked").unwrap();
    let connected_at = actions
        .iter()
        .rposition(|a| a == "grant.connected")
        .unwrap();
    assert!(revoked_at < connected_at, "{actions:?}");
}

async fn invalid_grant_on_refresh_disconnects_the_grant_holds_its_jobs_and_raises_an_alert(
    ts: TestStore,
) {
    // Arrange: the customer disconnects the app at Baanx.
    let w = Bw::start(ts).await;
    let grant = w.connect_api(API).await.unwrap().grant;
    w.bx.sb.disconnect_user(&w.bx.user.id);
    w.bx.advance(Duration::hours(7));

    // Act
    let err = w.custodian().access_token(&grant.id).await.unwrap_err();

    // Assert
    assert!(matches!(err, GrantError::Disconnected { .. }), "{err}");
    let held = usability(&w.store(), "baanx", API).await.unwrap();
    assert!(
        matches!(
            held,
            Usability::Held {
                status: GrantStatus::Disconnected,
                ..
            }
        ),
        "{held:?}"
    );
    let entries = w.store().audit_entries(None, None).await.unwrap();
    let entry = entries
        .iter()
        .find(|e| e.action == "grant.disconnected")
        .unwrap();
    let alert = treasury::alerts::alert_for(entry).expect("a disconnect raises an alert");
    assert_eq!(alert.subject, grant.id);
    assert!(
        alert.message.contains("Baanx refused the refresh token"),
        "{}",
        alert.message
    );
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    let consent = treasury::grants::consent::ConsentRecord::parse(row.consent.as_deref().unwrap());
    assert_eq!(consent.unwrap().ended.unwrap().how, "disconnected");
}

#[tokio::test]
async fn api_mode_asks_for_the_otp_shows_our_consent_text_and_ends_the_login_token() {
    // Arrange: a customer with an SMS OTP.
    let w = Bw::start(TestStore::sqlite().await).await;
    let user =
        w.bx.sb
            .create_user(NewBaanxUser::new("otp@example.com", "pw-otp").otp("246810"));
    let mut script = Script::new(&["otp@example.com", "pw-otp", "246810", "yes"]);

    // Act
    let connected = w
        .connector()
        .connect_api(API, &mut script, "operator:cli")
        .await
        .unwrap();

    // Assert
    assert_eq!(connected.grant.subject, user.id);
    assert_eq!(script.asked.len(), 4, "{:?}", script.asked);
    assert!(script.asked[2].contains("SMS code"), "{:?}", script.asked);
    assert_eq!(script.said, vec![consent_text(API)]);
    let consent = connected.grant.consent.unwrap();
    assert_eq!(consent.shown_by_us.unwrap().text, consent_text(API));
    assert_eq!(consent.channel, "terminal");
    assert!(consent.operator.starts_with("operator:cli"));
    let ledger = w.ledger();
    let exchanged = ledger
        .iter()
        .position(|e| matches!(&e.event, BaanxEvent::TokenIssued { grant, .. } if grant == "authorization_code"))
        .unwrap();
    let logged_out = ledger
        .iter()
        .position(|e| matches!(&e.event, BaanxEvent::LoggedOut { user_id } if *user_id == user.id))
        .expect("the login token was ended");
    assert!(exchanged < logged_out);
}

#[tokio::test]
async fn a_401_right_after_a_fresh_refresh_disconnects_the_baanx_grant() {
    // Arrange: every call goes to the wrong region, so Baanx answers 401 each time.
    let w = Bw::start(TestStore::sqlite().await).await;
    let grant = w.connect_api(API).await.unwrap().grant;
    let custodian = w.custodian();
    let client = w.tokens.client().clone();

    // Act
    let result = custodian
        .with_token(&grant.id, |token| {
            let client = client.clone();
            async move {
                client
                    .user(AsCustomer {
                        token: &token,
                        region: Region::Us,
                    })
                    .await
            }
        })
        .await;

    // Assert: a wrong-region token gets 401; the one refresh did not help.
    let err = result.unwrap_err();
    assert!(matches!(err, GrantError::Disconnected { .. }), "{err}");
    assert!(err.to_string().contains("freshly refreshed"), "{err}");
    assert_eq!(w.refreshes(), 1);
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(row.status, "disconnected");
}

#[tokio::test]
async fn revoke_refreshes_an_expired_access_token_first_then_deletes_at_baanx() {
    let w = Bw::start(TestStore::sqlite().await).await;
    let grant = w.connect_api(API).await.unwrap().grant;
    w.bx.advance(Duration::hours(7));

    let revoked = w
        .custodian()
        .revoke(&grant.id, "operator:cli")
        .await
        .unwrap();

    assert_eq!(revoked.status, GrantStatus::Revoked);
    let ledger = w.ledger();
    let refreshed = ledger
        .iter()
        .position(|e| matches!(&e.event, BaanxEvent::TokenIssued { grant, .. } if grant == "refresh_token"))
        .expect("refreshed first");
    let killed = ledger
        .iter()
        .position(|e| matches!(&e.event, BaanxEvent::FamilyRevoked { reason, .. } if reason == "revoked by the client"))
        .expect("revoked at Baanx");
    assert!(refreshed < killed);
    let ended = revoked.consent.unwrap().ended.unwrap();
    assert_eq!(ended.how, "revoked");
    assert!(ended.reason.contains("operator:cli"));
}

#[tokio::test]
async fn a_wrong_secret_key_is_invalid_client_and_leaves_the_grant_active() {
    // Arrange: the sandbox accepts a missing secret but refuses a wrong one.
    let w = Bw::start(TestStore::sqlite().await).await;
    let grant = w.connect_api(API).await.unwrap().grant;
    let wrong = std::sync::Arc::new(tokens_for(&w.bx, &w.redirect, Some("not-the-secret")));
    let custodian = treasury::grants::Custodian::with_providers(
        w.store(),
        w.keys.clone(),
        None,
        Some(wrong),
        w.bx.sb.clock(),
        Default::default(),
    );

    let err = custodian.refresh_now(&grant.id).await.unwrap_err();

    assert!(matches!(err, GrantError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    let row = w.store().grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(row.status, "active");
    assert_eq!(w.refreshes(), 0);
}

/// The hosted flow also runs through the worker's own HTTP server (`treasury serve`,
/// `treasury run`): an operator account signs in with its token, the callback lands
/// on `[baanx] redirect_uri`'s path, and the consent record keeps the browser's
/// address and user agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_flow_connects_through_the_workers_http_server() {
    let mut w = Bw::start(TestStore::sqlite().await).await;
    let listener = w.listener.take().unwrap();
    let (store, clock) = (w.store(), w.bx.sb.clock());
    let role = treasury::operators::Role::Operator;
    let ops = crate::operators_world::account(&store, &clock, "ops", role).await;
    let token = crate::operators_world::token(&store, &clock, &ops).await;
    let app = treasury::http::router(treasury::http::AppState {
        connector: None,
        baanx: Some(w.connector()),
        store: store.clone(),
        clock: clock.clone(),
    });
    let stop = CancellationToken::new();
    tokio::spawn(treasury::http::serve(
        listener,
        app,
        Default::default(),
        stop.clone(),
    ));
    let start = w
        .redirect
        .join(&format!("/oauth/connect/{HOSTED}"))
        .unwrap();
    let http = crate::support::no_redirects();

    let anonymous = http.get(start.clone()).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let begun = http
        .get(start)
        .basic_auth("ops", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(begun.status(), StatusCode::FOUND);
    let login = url::Url::parse(begun.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        login.as_str().starts_with(w.bx.sb.url().as_str()),
        "{login}"
    );
    let page = hosted_browser(w.bx.sb.url(), login, EMAIL, PASSWORD).await;

    assert!(
        page.contains(&format!("is connected to Baanx user {}", w.bx.user.id)),
        "{page}"
    );
    let row = store
        .grant_by_alias("baanx", HOSTED)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "active");
    let consent: serde_json::Value = serde_json::from_str(row.consent.as_deref().unwrap()).unwrap();
    assert_eq!(consent["channel"], "browser");
    assert_eq!(consent["user_agent"], "ScriptedBrowser/1.0");
    assert_eq!(consent["client_address"], "127.0.0.1");
    let exchanges = w
        .ledger()
        .iter()
        .filter(|e| matches!(&e.event, BaanxEvent::TokenIssued { grant, .. } if grant == "authorization_code"))
        .count();
    assert_eq!(exchanges, 1, "the code is exchanged once");
    stop.cancel();
}

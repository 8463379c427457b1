//! Console sessions in a real browser: CSRF, rotation, the idle timeout, the lockout,
//! a disabled account, a one-time password changed.

use fantoccini::Locator;
use treasury::operators::Role;
use treasury::store::OperatorChange;

use crate::console_support::{App, Driver, body_text, click, sign_in, sign_in_with};
use crate::console_world::{job, session_cookie, world};
use crate::operators_world::{PASSWORD, ROOT, account};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_refuse_forms_without_csrf_time_out_lock_after_five_failures_and_end_when_disabled()
 {
    let w = world().await;
    let store = w.store();
    account(&store, &w.clock, "alice", Role::Approver).await;
    let dave = account(&store, &w.clock, "dave", Role::Approver).await;
    let carol = account(&store, &w.clock, "carol", Role::Viewer).await;
    let app = App::start(&w, &job(false)).await;
    let driver = Driver::start().await;
    let b = driver.browser().await;

    // A form posted without its CSRF token is refused, and changes nothing.
    sign_in(&b, &app, "alice").await;
    b.goto(&app.url("/halts")).await.unwrap();
    b.execute(
        "document.querySelectorAll('#halt-form input[name=csrf]').forEach(e => e.remove())",
        vec![],
    )
    .await
    .unwrap();
    let refused = click(&b, "#halt").await;
    assert!(
        refused.contains("CSRF token is missing or wrong"),
        "{refused}"
    );
    assert!(store.halts().await.unwrap().is_empty());

    // Signing in again rotates the session: the old cookie no longer works.
    let before = session_cookie(&b).await;
    sign_in(&b, &app, "alice").await;
    let after = session_cookie(&b).await;
    assert_ne!(before, after);
    let old = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/"))
        .header("cookie", format!("treasury_session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 303, "the rotated-away session signs in again");

    // The inbox's own refresh does not count as use: past the idle timeout (an hour
    // here) since the last real request, back to sign-in.
    w.clock.advance(chrono::Duration::minutes(40));
    b.goto(&app.url("/?auto=1")).await.unwrap();
    assert_eq!(
        b.current_url().await.unwrap().path(),
        "/",
        "40 minutes idle is within the hour"
    );
    w.clock.advance(chrono::Duration::minutes(21));
    b.goto(&app.url("/")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");

    // Five wrong passwords lock the account; then even the right one is refused.
    for i in 1..=5 {
        let text = sign_in_with(&b, &app, "dave", "not the password at all").await;
        assert!(
            text.contains("wrong operator name or password"),
            "{i}: {text}"
        );
    }
    let locked = sign_in_with(&b, &app, "dave", PASSWORD).await;
    assert!(
        locked.contains("locked after 5 failed sign-ins"),
        "{locked}"
    );
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");
    let dave_now = store
        .operator_with_hash(&treasury::operators::OperatorName::new("dave").unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(dave_now.locked, "{dave:?} is locked now");

    // A viewer may not see the operators page.
    sign_in(&b, &app, "carol").await;
    b.goto(&app.url("/operators")).await.unwrap();
    let refused = body_text(&b).await;
    assert!(refused.contains("this needs the admin role"), "{refused}");

    // An admin, in another browser, disables carol: her session stops working at its
    // next request.
    let root = account(&store, &w.clock, ROOT, Role::Admin).await;
    let admin = driver.browser().await;
    sign_in(&admin, &app, ROOT).await;
    admin.goto(&app.url("/operators")).await.unwrap();
    let done = click(&admin, "tr[data-name=carol] button").await;
    assert!(done.contains("carol is disabled"), "{done}");
    b.goto(&app.url("/runs")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");
    let carol_now = store
        .operator_with_hash(&treasury::operators::OperatorName::new("carol").unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(carol_now.disabled && carol_now.credential_version > carol.credential_version);
    admin.close().await.unwrap();

    // After an admin's reset, the one-time password is changed in the console; the
    // change ends the session, and the new password signs in.
    let erin = account(&store, &w.clock, "erin", Role::Approver).await;
    let one_time = "one-time password 123";
    let hash =
        treasury::operators::secrets::hash_password(&treasury::config::Secret::new(one_time))
            .unwrap();
    let change = OperatorChange::Password {
        hash,
        temporary: true,
    };
    store
        .change_operator(&erin, change, &root, w.clock.now())
        .await
        .unwrap();
    let text = sign_in_with(&b, &app, "erin", one_time).await;
    assert!(
        text.contains("Your password is a one-time password"),
        "{text}"
    );
    b.goto(&app.url("/password")).await.unwrap();
    for (id, value) in [
        ("current", one_time),
        ("new", "erin's own new password"),
        ("repeat", "erin's own new password"),
    ] {
        b.find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    let changed = click(&b, "#change").await;
    assert!(changed.contains("Your password is changed"), "{changed}");
    b.goto(&app.url("/")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");
    let text = sign_in_with(&b, &app, "erin", "erin's own new password").await;
    assert!(
        text.contains("Inbox") && !text.contains("one-time password"),
        "{text}"
    );
    b.close().await.unwrap();
    app.stop().await;
}

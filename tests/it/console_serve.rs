//! `treasury serve`: the console over a store, running no job, without Busha's secret
//! or a reachable issuer; its cookies and headers, as a plain HTTP client sees them.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use treasury::clock::Clock;
use treasury::operators::Role;

use crate::backends::TestStore;
use crate::operators_world::{PASSWORD, account};

/// The value of cookie `name` in a response's `Set-Cookie` headers, and the whole header.
fn set_cookie(res: &reqwest::Response, name: &str) -> (String, String) {
    let header = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"));
    let value = header[name.len() + 1..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    (value, header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn treasury_serve_serves_the_console_over_a_store_with_strict_cookies_and_headers() {
    let t = TestStore::sqlite().await;
    let clock = Clock::system();
    account(&t.store, &clock, "alice", Role::Approver).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("treasury.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\nsecure_cookies = true\n\n[busha]\nissuer_url = \"http://127.0.0.1:1\"\napi_url = \"http://127.0.0.1:1\"\nclient_id = \"treasury-test\"\nredirect_uri = \"http://127.0.0.1:1/cb\"\n",
            t.url
        ),
    )
    .unwrap();
    let argv = ["treasury", "--config", config.to_str().unwrap(), "serve"];
    let cli = <treasury::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    let shutdown = CancellationToken::new();
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let login = crate::operators_world::prompted(&[]);
            let mut out = Vec::new();
            treasury::cli::run_as(cli, Clock::system(), shutdown, login, &mut out)
                .await
                .map_err(|e| e.to_string())
        })
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "treasury serve answers /healthz");

    // Without a session: back to sign-in.
    let res = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/signin");

    // The sign-in form: the console's CSP, no framing, no sniffing, a strict cookie.
    let res = http.get(format!("{base}/signin")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("form-action 'self'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let (form_token, header) = set_cookie(&res, "treasury_signin");
    assert!(header.contains("HttpOnly") && header.contains("SameSite=Strict"));

    // Signing in sets the session cookie: HttpOnly, SameSite=Strict, Secure as set.
    let res = http
        .post(format!("{base}/signin"))
        .header("cookie", format!("treasury_signin={form_token}"))
        .form(&[
            ("name", "alice"),
            ("password", PASSWORD),
            ("csrf", form_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let (session, header) = set_cookie(&res, "treasury_session");
    for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(header.contains(part), "{part} in {header}");
    }
    let cookie = format!("treasury_session={session}");
    let inbox = http
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.status(), 200);
    assert!(
        inbox
            .text()
            .await
            .unwrap()
            .contains("Nothing awaits approval")
    );

    // A sign-in form posted without its token, and a form without the session's
    // CSRF token, are refused.
    let res = http
        .post(format!("{base}/signin"))
        .form(&[("name", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = http
        .post(format!("{base}/halts"))
        .header("cookie", &cookie)
        .form(&[("scope", "all"), ("reason", "no token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(t.store.halts().await.unwrap().is_empty());

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

//! The Baanx sandbox's client keys, login, OAuth flows (API mode and hosted UI),
//! token rules and switches, regions, rate limits and faults (issue 12 §2).

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::json;
use treasury::sandbox::baanx::{
    BaanxClient, BaanxEvent, CONSENT_TEXT, NewBaanxUser, REFRESH_184_DAYS, RefreshLifetime,
    RefreshRotation, Region, SecretKeyRule,
};
use treasury::sandbox::{Fault, FaultKind, RateLimits};

use crate::baanx_sandbox_support::{Bx, EMAIL, KEY, PASSWORD, REDIRECT, SECRET, grant_of};
use crate::support::{pkce_pair, query_map};

#[tokio::test]
async fn a_missing_client_key_is_499_and_an_unknown_one_498_with_baanx_bodies() {
    let bx = Bx::start().await;
    bx.sb.register_client(BaanxClient {
        region: Some(Region::Us),
        ..BaanxClient::new("us-only", SECRET, REDIRECT)
    });

    let missing = bx.bare(Method::GET, "/v1/user").send().await;
    let unknown = bx
        .bare(Method::GET, "/v1/user")
        .header("x-client-key", "nope")
        .send()
        .await;
    let wrong_region = bx
        .bare(Method::GET, "/v1/wallet/internal")
        .header("x-client-key", "us-only")
        .send()
        .await;

    assert_eq!(missing.status.as_u16(), 499);
    assert_eq!(missing.body, json!({ "message": "Missing client key" }));
    assert_eq!(unknown.status.as_u16(), 498);
    assert_eq!(unknown.body, json!({ "message": "Invalid client key" }));
    assert_eq!(
        wrong_region.status.as_u16(),
        498,
        "a US-only tenant is unknown abroad"
    );
}

#[tokio::test]
async fn initiate_validates_every_parameter_and_accepts_s256_only() {
    let bx = Bx::start().await;
    let (_, challenge) = pkce_pair();
    let full = [
        ("response_type", "code"),
        ("client_id", KEY),
        ("redirect_uri", REDIRECT),
        ("state", "s-0123456789"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for skip in 0..full.len() {
        let mut url = url::Url::parse(&bx.url("/v1/auth/oauth/authorize/initiate")).unwrap();
        for (i, (k, v)) in full.iter().enumerate() {
            if i != skip {
                url.query_pairs_mut().append_pair(k, v);
            }
        }
        let a = bx
            .call(Method::GET, &url[url::Position::BeforePath..])
            .send()
            .await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "without {}",
            full[skip].0
        );
        assert_eq!(a.body["error"], "invalid_request");
        assert_eq!(
            a.body["error_description"],
            format!("Missing required parameter: {}", full[skip].0)
        );
    }
    let plain = bx
        .call(Method::GET, &format!("/v1/auth/oauth/authorize/initiate?response_type=code&client_id={KEY}&redirect_uri={REDIRECT}&state=s&code_challenge=abc&code_challenge_method=plain"))
        .send()
        .await;
    assert_eq!(plain.body["error"], "invalid_request");
    assert_eq!(
        plain.body["error_description"],
        "code_challenge_method must be S256"
    );
}

#[tokio::test]
async fn initiate_redirects_to_the_hosted_ui_or_answers_json_in_api_mode() {
    let bx = Bx::start().await;
    let (_, challenge) = pkce_pair();
    let base = format!(
        "/v1/auth/oauth/authorize/initiate?response_type=code&client_id={KEY}&state=s-1&code_challenge={challenge}&code_challenge_method=S256"
    );

    let hosted = bx
        .call(Method::GET, &format!("{base}&redirect_uri={REDIRECT}"))
        .send()
        .await;
    let api = bx
        .call(
            Method::GET,
            &format!("{base}&redirect_uri={REDIRECT}&mode=api"),
        )
        .send()
        .await;
    let unregistered_hosted = bx
        .call(
            Method::GET,
            &format!("{base}&redirect_uri=https://evil.example/cb"),
        )
        .send()
        .await;
    let unregistered_api = bx
        .call(
            Method::GET,
            &format!("{base}&redirect_uri=https://example.com&mode=api"),
        )
        .send()
        .await;
    bx.sb
        .update_behaviour(|b| b.api_mode_checks_redirect_allow_list = true);
    let checked_api = bx
        .call(
            Method::GET,
            &format!("{base}&redirect_uri=https://example.com&mode=api"),
        )
        .send()
        .await;

    assert_eq!(hosted.status, StatusCode::FOUND);
    assert_eq!(hosted.location().path(), "/hosted/login");
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(
        api.body["token"].as_str().unwrap().split('.').count(),
        3,
        "a JWT"
    );
    assert_eq!(
        url::Url::parse(api.body["url"].as_str().unwrap())
            .unwrap()
            .path(),
        "/hosted/login"
    );
    assert_eq!(unregistered_hosted.body["error"], "invalid_request");
    assert_eq!(
        unregistered_api.status,
        StatusCode::OK,
        "API mode: required but not used"
    );
    assert_eq!(
        checked_api.body["error"], "invalid_request",
        "the allow-list switch"
    );
}

#[tokio::test]
async fn api_mode_logs_in_authorizes_and_exchanges_for_six_hour_tokens() {
    let bx = Bx::start().await;

    let grant = bx.grant().await;
    let user = bx
        .call(Method::GET, "/v1/user")
        .bearer(&grant.access)
        .send()
        .await;

    assert_eq!(grant.body["expires_in"], 21600);
    assert_eq!(grant.body["refresh_token_expires_in"], 7 * 86400);
    assert_eq!(user.status, StatusCode::OK);
    assert_eq!(user.body["email"], EMAIL);
    assert_eq!(user.body["verificationState"], "VERIFIED");
    let kinds: Vec<String> = bx
        .sb
        .ledger()
        .iter()
        .map(|e| {
            serde_json::to_value(&e.event).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "session_opened",
            "login_succeeded",
            "code_issued",
            "token_issued"
        ]
    );
}

#[tokio::test]
async fn login_answers_200_and_branches_on_the_body_for_the_otp_step() {
    let bx = Bx::start().await;
    let otp_user = bx
        .sb
        .create_user(NewBaanxUser::new("otp@example.com", "pw").otp("123456"));
    let login = |otp: Option<&str>| {
        let mut body = json!({ "email": "otp@example.com", "password": "pw" });
        if let Some(code) = otp {
            body["otpCode"] = json!(code);
        }
        bx.call(Method::POST, "/v1/auth/login").json(body).send()
    };

    let first = login(None).await;
    let before_sms = login(Some("123456")).await;
    let sent = bx
        .call(Method::POST, "/v1/auth/login/otp")
        .json(json!({ "userId": otp_user.id }))
        .send()
        .await;
    let wrong = login(Some("000000")).await;
    let right = login(Some("123456")).await;
    bx.advance(Duration::minutes(6));
    let stale = login(Some("123456")).await;

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["accessToken"], json!(null));
    assert_eq!(first.body["isOtpRequired"], true);
    assert_eq!(first.body["userId"], otp_user.id);
    assert_eq!(first.body["phoneNumber"], "*******0123", "masked");
    assert_eq!(first.body["isLinked"], false);
    assert_eq!(
        before_sms.status,
        StatusCode::UNAUTHORIZED,
        "no SMS was sent yet"
    );
    assert_eq!(sent.body, json!({ "success": true }));
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["message"], "Invalid OTP code");
    assert_eq!(right.status, StatusCode::OK);
    assert!(right.body["accessToken"].as_str().is_some());
    assert_eq!(right.body["isOtpRequired"], false);
    assert_eq!(
        stale.status,
        StatusCode::UNAUTHORIZED,
        "the SMS code lives 5 minutes"
    );
}

#[tokio::test]
async fn bad_credentials_are_401_and_repeated_failures_429_with_retry_after() {
    let bx = Bx::start().await;
    let attempt = || {
        bx.call(Method::POST, "/v1/auth/login")
            .json(json!({ "email": EMAIL, "password": "wrong" }))
            .send()
    };
    for _ in 0..5 {
        let a = attempt().await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body, json!({ "message": "Invalid credentials" }));
    }

    let locked = bx
        .call(Method::POST, "/v1/auth/login")
        .json(json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await;
    bx.advance(Duration::minutes(16));
    let later = bx
        .call(Method::POST, "/v1/auth/login")
        .json(json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await;

    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        locked.body["message"],
        "Too many requests, please try again later."
    );
    let wait: u64 = locked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    assert_eq!(later.status, StatusCode::OK, "the lockout window rolls");
}

#[tokio::test]
async fn an_unverified_or_onboarding_user_logs_in_but_cannot_authorize() {
    let bx = Bx::start().await;
    bx.sb
        .create_user(NewBaanxUser::new("new@example.com", "pw").phase("PHYSICAL_ADDRESS"));
    bx.sb
        .create_user(NewBaanxUser::new("kyc@example.com", "pw").verification("PENDING"));
    for (email, phrase) in [
        ("new@example.com", "onboarding is incomplete"),
        ("kyc@example.com", "not verified"),
    ] {
        let (_, challenge) = pkce_pair();
        let session = bx.initiate(&challenge, Region::International).await;
        let login = bx
            .call(Method::POST, "/v1/auth/login")
            .json(json!({ "email": email, "password": "pw" }))
            .send()
            .await;
        let token = login.body["accessToken"].as_str().expect("a login token");
        let a = bx
            .call(Method::POST, "/v1/auth/oauth/authorize")
            .bearer(token)
            .json(json!({ "token": session }))
            .send()
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{email}");
        assert!(
            a.body["message"].as_str().unwrap().contains(phrase),
            "{}",
            a.body
        );
    }
}

#[tokio::test]
async fn the_oauth_session_lives_ten_minutes() {
    let bx = Bx::start().await;
    let (_, challenge) = pkce_pair();
    let early = bx.initiate(&challenge, Region::International).await;
    let late = bx.initiate(&challenge, Region::International).await;
    let login = bx.login(EMAIL, PASSWORD, Region::International).await;
    let authorize = |session: String| {
        bx.call(Method::POST, "/v1/auth/oauth/authorize")
            .bearer(&login)
            .json(json!({ "token": session }))
            .send()
    };

    bx.advance(Duration::seconds(599));
    let in_time = authorize(early).await;
    bx.advance(Duration::seconds(2));
    let too_late = authorize(late).await;

    assert_eq!(in_time.status, StatusCode::OK);
    assert_eq!(in_time.body["state"], "state-0123456789abcdef");
    let url = url::Url::parse(in_time.body["url"].as_str().unwrap()).unwrap();
    assert_eq!(
        query_map(&url)["code"],
        in_time.body["code"].as_str().unwrap()
    );
    assert_eq!(too_late.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_late.body["error"], "invalid_request");
    assert_eq!(
        too_late.body["error_description"],
        "Authorization session has expired"
    );
}

#[tokio::test]
async fn a_code_is_single_use_its_replay_kills_the_grant_and_it_dies_after_ten_minutes() {
    let bx = Bx::start().await;
    let (code, verifier) = bx.code_for(EMAIL, PASSWORD, Region::International).await;
    let first = grant_of(bx.exchange(&code, &verifier, Region::International).await);

    let replay = bx.exchange(&code, &verifier, Region::International).await;
    let access_after = bx
        .call(Method::GET, "/v1/user")
        .bearer(&first.access)
        .send()
        .await;
    let (old_code, old_verifier) = bx.code_for(EMAIL, PASSWORD, Region::International).await;
    bx.advance(Duration::seconds(601));
    let expired = bx
        .exchange(&old_code, &old_verifier, Region::International)
        .await;

    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.body["error"], "invalid_grant");
    assert_eq!(
        replay.body["error_description"],
        "Authorization code has expired or already been used"
    );
    assert_eq!(
        access_after.status,
        StatusCode::UNAUTHORIZED,
        "the replay killed the family"
    );
    assert_eq!(expired.body["error"], "invalid_grant");
    assert!(
        bx.sb
            .ledger()
            .iter()
            .any(|e| matches!(e.event, BaanxEvent::CodeReplayed { .. }))
    );
}

#[tokio::test]
async fn the_token_endpoint_checks_pkce_the_redirect_uri_and_its_json_body() {
    let bx = Bx::start().await;
    let (code, verifier) = bx.code_for(EMAIL, PASSWORD, Region::International).await;
    let token = |body: serde_json::Value| {
        bx.call(Method::POST, "/v1/auth/oauth/token")
            .json(body)
            .send()
    };

    let wrong_verifier = token(json!({ "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": "x".repeat(43) })).await;
    let wrong_redirect = token(json!({ "grant_type": "authorization_code", "code": code, "redirect_uri": "https://treasury.example/other", "code_verifier": verifier })).await;
    let missing = token(
        json!({ "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT }),
    )
    .await;
    let form = bx
        .call(Method::POST, "/v1/auth/oauth/token")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await;
    let odd = token(json!({ "grant_type": "password" })).await;

    assert_eq!(wrong_verifier.body["error"], "invalid_grant");
    assert_eq!(
        wrong_verifier.body["error_description"],
        "code_verifier does not match the code_challenge"
    );
    assert_eq!(wrong_redirect.body["error"], "invalid_grant");
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.body["error_description"],
        "Missing required parameter: code_verifier"
    );
    assert_eq!(
        form.body["error"], "invalid_request",
        "the token endpoint takes JSON only"
    );
    assert_eq!(odd.body["error"], "unsupported_grant_type");
    // The failed attempts did not burn the code.
    assert_eq!(
        bx.exchange(&code, &verifier, Region::International)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn strict_rotation_retires_each_refresh_token_and_a_replay_kills_the_family() {
    let bx = Bx::start().await;
    let first = bx.grant().await;

    let second = grant_of(bx.refresh(&first.refresh).await);
    let third = grant_of(bx.refresh(&second.refresh).await);
    let replay = bx.refresh(&first.refresh).await;
    let newest = bx.refresh(&third.refresh).await;
    let access = bx
        .call(Method::GET, "/v1/user")
        .bearer(&third.access)
        .send()
        .await;

    assert_ne!(first.refresh, second.refresh);
    assert_ne!(second.refresh, third.refresh);
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(replay.body["error"], "invalid_grant");
    assert_eq!(
        newest.body["error"], "invalid_grant",
        "the whole family died"
    );
    assert_eq!(access.status, StatusCode::UNAUTHORIZED);
    let replays = bx
        .sb
        .ledger()
        .iter()
        .filter(|e| matches!(e.event, BaanxEvent::RefreshReplayed { .. }))
        .count();
    assert_eq!(replays, 1);
}

#[tokio::test]
async fn the_non_rotating_profile_returns_the_same_refresh_token_which_stays_valid() {
    let bx = Bx::start().await;
    bx.sb
        .update_behaviour(|b| b.refresh_rotation = RefreshRotation::NonRotating);
    let first = bx.grant().await;

    let a = grant_of(bx.refresh(&first.refresh).await);
    let b = grant_of(bx.refresh(&first.refresh).await);

    assert_eq!(a.refresh, first.refresh);
    assert_eq!(b.refresh, first.refresh);
    assert_ne!(a.access, b.access);
}

#[tokio::test]
async fn a_sliding_lifetime_restarts_on_each_rotation_and_an_absolute_one_does_not() {
    for lifetime in [RefreshLifetime::Sliding, RefreshLifetime::Absolute] {
        let bx = Bx::start().await;
        bx.sb.update_behaviour(|b| b.refresh_lifetime = lifetime);
        let first = bx.grant().await;

        bx.advance(Duration::days(6));
        let rotated = bx.refresh(&first.refresh).await;
        let left = rotated.body["refresh_token_expires_in"].as_i64().unwrap();
        let second = grant_of(rotated);
        bx.advance(Duration::days(2));
        let day8 = bx.refresh(&second.refresh).await;

        match lifetime {
            RefreshLifetime::Sliding => {
                assert_eq!(left, 7 * 86400);
                assert_eq!(day8.status, StatusCode::OK);
            }
            RefreshLifetime::Absolute => {
                assert_eq!(left, 86400, "one day left of the first grant's seven");
                assert_eq!(day8.body["error"], "invalid_grant");
            }
        }
    }
}

#[tokio::test]
async fn lifetimes_are_switches_the_184_day_profile_and_an_absent_expires_in() {
    let bx = Bx::start().await;
    bx.sb.update_behaviour(|b| {
        b.refresh_token_secs = REFRESH_184_DAYS;
        b.access_token_secs = 600;
    });
    let long = bx.grant().await;
    bx.sb
        .update_behaviour(|b| b.refresh_expires_in_field = false);
    let silent = bx.refresh(&long.refresh).await;

    assert_eq!(long.body["refresh_token_expires_in"], 15_897_600);
    assert_eq!(long.body["expires_in"], 600);
    assert_eq!(silent.status, StatusCode::OK);
    assert!(
        silent.body.get("refresh_token_expires_in").is_none(),
        "{}",
        silent.body
    );
    bx.advance(Duration::seconds(601));
    let expired = bx
        .call(Method::GET, "/v1/user")
        .bearer(long.access.as_str())
        .send()
        .await;
    assert_eq!(
        expired.status,
        StatusCode::UNAUTHORIZED,
        "access tokens expire"
    );
}

#[tokio::test]
async fn a_missing_secret_key_is_accepted_a_wrong_one_is_invalid_client_and_strict_requires_it() {
    let bx = Bx::start().await;
    let first = bx.grant().await;
    let with = |secret: Option<&str>, refresh: &str| {
        let mut call = bx
            .call(Method::POST, "/v1/auth/oauth/token")
            .json(json!({ "grant_type": "refresh_token", "refresh_token": refresh }));
        if let Some(s) = secret {
            call = call.header("x-secret-key", s);
        }
        call.send()
    };

    let wrong = with(Some("not-the-secret"), &first.refresh).await;
    let right = grant_of(with(Some(SECRET), &first.refresh).await);
    let missing = grant_of(with(None, &right.refresh).await);
    bx.sb
        .update_behaviour(|b| b.secret_key = SecretKeyRule::Required);
    let strict = with(None, &missing.refresh).await;

    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    assert_eq!(strict.status, StatusCode::UNAUTHORIZED);
    assert_eq!(strict.body["error"], "invalid_client");
    assert_eq!(
        with(Some(SECRET), &missing.refresh).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoke_kills_every_token_of_the_client_for_that_user() {
    let bx = Bx::start().await;
    let one = bx.grant().await;
    let two = bx.grant().await;
    let login = bx.login(EMAIL, PASSWORD, Region::International).await;

    let by_login = bx
        .call(Method::DELETE, "/v1/auth/oauth/revoke")
        .bearer(&login)
        .send()
        .await;
    let revoked = bx
        .call(Method::DELETE, "/v1/auth/oauth/revoke")
        .bearer(&one.access)
        .send()
        .await;

    assert_eq!(
        by_login.status,
        StatusCode::UNAUTHORIZED,
        "a login token is no grant"
    );
    assert_eq!(revoked.body, json!({ "success": true }));
    for access in [&one.access, &two.access] {
        let a = bx.call(Method::GET, "/v1/user").bearer(access).send().await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body, json!({ "message": "Not authenticated" }));
    }
    assert_eq!(
        bx.refresh(&two.refresh).await.body["error"],
        "invalid_grant"
    );
    // The user is not logged out of Baanx itself.
    assert_eq!(
        bx.call(Method::GET, "/v1/user")
            .bearer(&login)
            .send()
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_ends_the_login_token() {
    let bx = Bx::start().await;
    let login = bx.login(EMAIL, PASSWORD, Region::International).await;

    let out = bx
        .call(Method::POST, "/v1/auth/logout")
        .bearer(&login)
        .send()
        .await;
    let after = bx.call(Method::GET, "/v1/user").bearer(&login).send().await;

    assert_eq!(out.body, json!({ "success": true }));
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn regions_are_independent_stores_and_a_token_in_the_wrong_region_is_401() {
    let bx = Bx::start().await;
    bx.sb
        .create_user(NewBaanxUser::new("us@example.com", "pw").region(Region::Us));
    let (code, verifier) = bx.code_for("us@example.com", "pw", Region::Us).await;
    let us = grant_of(bx.exchange(&code, &verifier, Region::Us).await);

    let home = bx
        .call(Method::GET, "/v1/user")
        .bearer(&us.access)
        .us()
        .send()
        .await;
    let abroad = bx
        .call(Method::GET, "/v1/user")
        .bearer(&us.access)
        .send()
        .await;
    let by_query = bx
        .call(Method::GET, "/v1/user?region=us")
        .bearer(&us.access)
        .send()
        .await;
    let login_abroad = bx
        .call(Method::POST, "/v1/auth/login")
        .json(json!({ "email": "us@example.com", "password": "pw" }))
        .send()
        .await;

    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(abroad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        by_query.status,
        StatusCode::OK,
        "region=us selects the US backend too"
    );
    assert_eq!(
        login_abroad.status,
        StatusCode::UNAUTHORIZED,
        "no such user internationally"
    );
}

/// The hosted UI driven by plain form posts: login, OTP, consent, redirect.
#[tokio::test]
async fn the_hosted_ui_logs_in_asks_for_the_otp_shows_the_consent_and_redirects_with_a_code() {
    let bx = Bx::start().await;
    bx.sb
        .create_user(NewBaanxUser::new("otp@example.com", "pw").otp("654321"));
    let (verifier, challenge) = pkce_pair();
    let start = bx
        .call(Method::GET, &format!("/v1/auth/oauth/authorize/initiate?response_type=code&client_id={KEY}&redirect_uri={REDIRECT}&state=hosted-state&code_challenge={challenge}&code_challenge_method=S256"))
        .send()
        .await;
    let login_url = start.location();
    let session = query_map(&login_url)["session"].clone();
    let page = |path: &str| bx.bare(Method::POST, path);

    let form = bx
        .bare(Method::GET, &login_url[url::Position::BeforePath..])
        .send()
        .await;
    let wrong = page("/hosted/login")
        .form(&[
            ("session", &session),
            ("email", "otp@example.com"),
            ("password", "nope"),
        ])
        .send()
        .await;
    let otp = page("/hosted/login")
        .form(&[
            ("session", &session),
            ("email", "otp@example.com"),
            ("password", "pw"),
        ])
        .send()
        .await;
    let bad_code = page("/hosted/otp")
        .form(&[("session", &session), ("otp", "111111")])
        .send()
        .await;
    let consent = page("/hosted/otp")
        .form(&[("session", &session), ("otp", "654321")])
        .send()
        .await;
    let approved = page("/hosted/consent")
        .form(&[("session", &session), ("decision", "approve")])
        .send()
        .await;

    assert!(
        form.text
            .contains("<form method=\"post\" action=\"/hosted/login\""),
        "{}",
        form.text
    );
    assert!(form.text.contains("type=\"password\""));
    assert!(wrong.text.contains("Invalid credentials"));
    assert!(otp.text.contains("action=\"/hosted/otp\""), "{}", otp.text);
    assert!(bad_code.text.contains("Invalid or expired code"));
    assert!(
        consent.text.contains("Treasury"),
        "the consent screen names the app"
    );
    for line in CONSENT_TEXT {
        assert!(consent.text.contains(line), "missing {line:?}");
    }
    assert_eq!(approved.status, StatusCode::FOUND);
    let back = approved.location();
    assert!(back.as_str().starts_with(REDIRECT));
    let q = query_map(&back);
    assert_eq!(q["state"], "hosted-state");
    let tokens = bx
        .exchange(&q["code"], &verifier, Region::International)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
}

#[tokio::test]
async fn cancelling_the_hosted_consent_redirects_with_access_denied() {
    let bx = Bx::start().await;
    let (_, challenge) = pkce_pair();
    let session = bx.initiate(&challenge, Region::International).await;
    bx.bare(Method::POST, "/hosted/login")
        .form(&[
            ("session", &session),
            ("email", EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await;

    let denied = bx
        .bare(Method::POST, "/hosted/consent")
        .form(&[("session", &session), ("decision", "deny")])
        .send()
        .await;

    let q = query_map(&denied.location());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "state-0123456789abcdef");
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn auto_consent_approves_at_once_for_the_named_user() {
    let bx = Bx::start_with(|c| c.auto_consent = Some(EMAIL.into())).await;
    let (verifier, challenge) = pkce_pair();
    let start = bx
        .call(Method::GET, &format!("/v1/auth/oauth/authorize/initiate?response_type=code&client_id={KEY}&redirect_uri={REDIRECT}&state=auto&code_challenge={challenge}&code_challenge_method=S256"))
        .send()
        .await;

    let hosted = bx
        .bare(Method::GET, &start.location()[url::Position::BeforePath..])
        .send()
        .await;

    assert_eq!(hosted.status, StatusCode::FOUND);
    let q = query_map(&hosted.location());
    assert_eq!(q["state"], "auto");
    assert_eq!(
        bx.exchange(&q["code"], &verifier, Region::International)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_client_key_and_endpoint() {
    let bx = Bx::start().await;
    let mut limits = RateLimits::baanx();
    limits.overrides.insert("GET /v1/user".into(), 2);
    bx.sb.set_rate_limits(limits);
    let login = bx.login(EMAIL, PASSWORD, Region::International).await;
    let user = || bx.call(Method::GET, "/v1/user").bearer(&login).send();

    let ok = [user().await.status, user().await.status];
    let limited = user().await;
    bx.advance(Duration::seconds(61));
    let later = user().await;

    assert_eq!(ok, [StatusCode::OK, StatusCode::OK]);
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.body,
        json!({ "message": "Too many requests, please try again later." })
    );
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert_eq!(later.status, StatusCode::OK);
}

#[tokio::test]
async fn injected_faults_answer_in_baanx_shapes() {
    let bx = Bx::start().await;
    let login = bx.login(EMAIL, PASSWORD, Region::International).await;
    bx.sb
        .add_fault(Fault::new("GET /v1/user", FaultKind::ServerError(503)).times(1));

    let server = bx.call(Method::GET, "/v1/user").bearer(&login).send().await;
    bx.sb
        .add_fault(Fault::new("GET /v1/user", FaultKind::RateLimited).times(1));
    let limited = bx.call(Method::GET, "/v1/user").bearer(&login).send().await;
    bx.sb
        .add_fault(Fault::new("GET /v1/user", FaultKind::DropBeforeCommit).times(1));
    let dropped = bx
        .http
        .get(bx.url("/v1/user"))
        .header("x-client-key", KEY)
        .bearer_auth(&login)
        .send()
        .await;
    let fine = bx.call(Method::GET, "/v1/user").bearer(&login).send().await;

    assert_eq!(server.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.body, json!({ "message": "Internal server error" }));
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
    let read = match dropped {
        Ok(res) => res.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(read, "the dropped answer never arrives whole");
    assert_eq!(fine.status, StatusCode::OK);
    let logged: Vec<bool> = bx
        .sb
        .requests()
        .iter()
        .filter(|r| r.endpoint == "GET /v1/user")
        .map(|r| r.dropped)
        .collect();
    assert_eq!(logged, [false, false, true, false]);
}

#[tokio::test]
async fn disconnecting_a_user_through_the_control_surface_kills_their_grants() {
    let bx = Bx::start().await;
    let grant = bx.grant().await;

    let res: serde_json::Value = bx
        .http
        .post(bx.url(&format!("/_sandbox/users/{}/disconnect", bx.user.id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(res["families_revoked"], 1);
    assert_eq!(
        bx.refresh(&grant.refresh).await.body["error"],
        "invalid_grant"
    );
    assert!(bx.sb.ledger().iter().any(|e| matches!(&e.event, BaanxEvent::FamilyRevoked { reason, .. } if reason == "user disconnected the app")));
}

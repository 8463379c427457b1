//! The hosted UI: a real HTML login page (email and password), an OTP step for users
//! who have one, and a consent screen that names the app and lists what it may do.
//! A person can use it in a browser; a script can drive it with plain form posts.
//! Every page carries the session token and region in hidden fields.

use std::collections::HashMap;

use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Duration;
use maud::{DOCTYPE, Markup, html};

use super::BaanxSandbox;
use super::auth::{Checked, check_login};
use super::config::{CONSENT_TEXT, Region};
use super::oauth::{issue_code, not_ready};
use super::state::BaanxEvent;

type Fields = HashMap<String, String>;

fn region_of(f: &Fields) -> Region {
    match f.get("region").map(String::as_str) {
        Some("us") => Region::Us,
        _ => Region::International,
    }
}

fn region_value(r: Region) -> &'static str {
    match r {
        Region::Us => "us",
        Region::International => "international",
    }
}

fn page(title: &str, body: Markup) -> Response {
    Html(
        html! {
            (DOCTYPE)
            html { head { meta charset="utf-8"; title { (title) } } body { h1 { (title) } (body) } }
        }
        .into_string(),
    )
    .into_response()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let mut res = page(
        "Baanx sign-in (sandbox)",
        html! { p role="alert" { (message) } },
    );
    *res.status_mut() = status;
    res
}

fn hidden(session: &str, region: Region) -> Markup {
    html! {
        input type="hidden" name="session" value=(session);
        input type="hidden" name="region" value=(region_value(region));
    }
}

fn login_form(session: &str, region: Region, error: Option<&str>) -> Response {
    page(
        "Sign in to Baanx (sandbox)",
        html! {
            @if let Some(e) = error { p role="alert" { (e) } }
            form method="post" action="/hosted/login" {
                (hidden(session, region))
                label { "Email " input name="email" type="email" autocomplete="username"; }
                label { "Password " input name="password" type="password" autocomplete="current-password"; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

fn otp_form(session: &str, region: Region, phone: &str, error: Option<&str>) -> Response {
    page(
        "Enter your code",
        html! {
            p { "We sent a code by SMS to " (phone) "." }
            @if let Some(e) = error { p role="alert" { (e) } }
            form method="post" action="/hosted/otp" {
                (hidden(session, region))
                label { "Code " input name="otp" inputmode="numeric" autocomplete="one-time-code"; }
                button type="submit" { "Continue" }
            }
        },
    )
}

fn consent_form(session: &str, region: Region, app: &str) -> Response {
    page(
        "Allow access",
        html! {
            p { strong { (app) } " would like to:" }
            ul { @for item in CONSENT_TEXT { li { (item) } } }
            p { "You can revoke this access at any time." }
            form method="post" action="/hosted/consent" {
                (hidden(session, region))
                button name="decision" value="approve" { "Allow" }
                button name="decision" value="deny" { "Cancel" }
            }
        },
    )
}

fn redirect(url: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// The session's client app name, if the session is live.
/// A hosted page that refuses to go on: rendered as an error page.
struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error_page(self.0, self.1)
    }
}

fn live_session(sb: &BaanxSandbox, region: Region, token: &str) -> Result<String, Refused> {
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let (client_key, expired, used) = match w.region(region).sessions.get(token) {
        Some(s) => (s.client_key.clone(), s.expires_at <= now, s.used),
        None => {
            return Err(Refused(StatusCode::BAD_REQUEST, "Unknown sign-in session."));
        }
    };
    if expired {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "This sign-in session has expired (10 minutes). Start again from the app.",
        ));
    }
    if used {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "This sign-in session was already used.",
        ));
    }
    Ok(w.clients
        .get(&client_key)
        .map(|c| c.app_name.clone())
        .unwrap_or(client_key))
}

fn approve(sb: &BaanxSandbox, region: Region, session: &str, user_id: &str) -> Response {
    let refused = not_ready(&mut sb.inner.world.lock(), region, user_id);
    if let Some(why) = refused {
        return error_page(StatusCode::FORBIDDEN, &why);
    }
    match issue_code(sb, region, session, user_id) {
        Ok(issued) => redirect(&issued.url),
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.description),
    }
}

pub async fn show_login(State(sb): State<BaanxSandbox>, Query(q): Query<Fields>) -> Response {
    let region = region_of(&q);
    let Some(session) = q.get("session") else {
        return error_page(StatusCode::BAD_REQUEST, "Missing sign-in session.");
    };
    if let Err(page) = live_session(&sb, region, session) {
        return page.into_response();
    }
    let auto = {
        let mut w = sb.inner.world.lock();
        let email = w.auto_consent.clone();
        email.and_then(|e| w.region(region).user_by_email(&e).map(|u| u.id.clone()))
    };
    match auto {
        Some(user_id) => approve(&sb, region, session, &user_id),
        None => login_form(session, region, None),
    }
}

pub async fn submit_login(State(sb): State<BaanxSandbox>, Form(f): Form<Fields>) -> Response {
    let region = region_of(&f);
    let session = f.get("session").cloned().unwrap_or_default();
    if let Err(page) = live_session(&sb, region, &session) {
        return page.into_response();
    }
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let checked = check_login(&sb, region, field("email"), field("password"), None);
    let user_id = match checked {
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            return error_page(StatusCode::TOO_MANY_REQUESTS, &e.message);
        }
        Err(e) => return login_form(&session, region, Some(&e.message)),
        Ok(Checked::Complete(id)) | Ok(Checked::OtpRequired(id)) => id,
    };
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let store = w.region(region);
    let (has_otp, phone) = match store.users.get_mut(&user_id) {
        Some(u) => {
            if u.otp.is_some() {
                u.otp_sent_at = Some(now);
            }
            (u.otp.is_some(), u.phone_number.clone())
        }
        None => return login_form(&session, region, Some("Invalid credentials")),
    };
    if let Some(s) = store.sessions.get_mut(&session) {
        s.hosted_user = Some(user_id.clone());
        s.hosted_otp_ok = !has_otp;
    }
    if has_otp {
        w.record(now, BaanxEvent::OtpSent { user_id });
        let masked = format!("*******{}", &phone[phone.len().saturating_sub(4)..]);
        return otp_form(&session, region, &masked, None);
    }
    drop(w);
    login_done(&sb, region, &session, &user_id)
}

/// Password (and OTP) done: the user is logged in at Baanx; show the consent screen.
fn login_done(sb: &BaanxSandbox, region: Region, session: &str, user_id: &str) -> Response {
    let _ = super::auth::issue_login_token(sb, region, user_id);
    match live_session(sb, region, session) {
        Ok(app) => consent_form(session, region, &app),
        Err(page) => page.into_response(),
    }
}

pub async fn submit_otp(State(sb): State<BaanxSandbox>, Form(f): Form<Fields>) -> Response {
    let region = region_of(&f);
    let session = f.get("session").cloned().unwrap_or_default();
    if let Err(page) = live_session(&sb, region, &session) {
        return page.into_response();
    }
    let now = sb.now();
    let given = f.get("otp").map(String::as_str).unwrap_or("");
    let found = {
        let mut w = sb.inner.world.lock();
        let store = w.region(region);
        let user_id = store
            .sessions
            .get(&session)
            .and_then(|s| s.hosted_user.clone());
        user_id.and_then(|id| {
            store
                .users
                .get(&id)
                .map(|u| (id, u.otp.clone(), u.otp_sent_at, u.phone_number.clone()))
        })
    };
    let Some((user_id, expected, sent, phone)) = found else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign in with your email and password first.",
        );
    };
    let fresh = sent.is_some_and(|t| now - t <= Duration::seconds(super::config::OTP_SECS));
    if !fresh || expected.as_deref() != Some(given) {
        let masked = format!("*******{}", &phone[phone.len().saturating_sub(4)..]);
        return otp_form(&session, region, &masked, Some("Invalid or expired code"));
    }
    if let Some(s) = sb
        .inner
        .world
        .lock()
        .region(region)
        .sessions
        .get_mut(&session)
    {
        s.hosted_otp_ok = true;
    }
    login_done(&sb, region, &session, &user_id)
}

pub async fn submit_consent(State(sb): State<BaanxSandbox>, Form(f): Form<Fields>) -> Response {
    let region = region_of(&f);
    let session = f.get("session").cloned().unwrap_or_default();
    if let Err(page) = live_session(&sb, region, &session) {
        return page.into_response();
    }
    let progress = {
        let mut w = sb.inner.world.lock();
        w.region(region).sessions.get(&session).map(|s| {
            (
                s.hosted_user.clone(),
                s.hosted_otp_ok,
                s.redirect_uri.clone(),
                s.state.clone(),
            )
        })
    };
    let Some((Some(user_id), true, redirect_uri, state)) = progress else {
        return error_page(StatusCode::BAD_REQUEST, "Sign in first.");
    };
    if f.get("decision").map(String::as_str) != Some("approve") {
        let Ok(mut url) = url::Url::parse(&redirect_uri) else {
            return error_page(StatusCode::BAD_REQUEST, "redirect_uri is not a URL");
        };
        url.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &state);
        if let Some(s) = sb
            .inner
            .world
            .lock()
            .region(region)
            .sessions
            .get_mut(&session)
        {
            s.used = true;
        }
        return redirect(url.as_str());
    }
    approve(&sb, region, &session, &user_id)
}

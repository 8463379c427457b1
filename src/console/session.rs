//! Sign-in, sessions and CSRF.
//!
//! - The session cookie carries a fresh 256-bit token (as personal tokens are made);
//!   the store keeps its SHA-256. Every sign-in mints a new one and ends the one the
//!   browser held: a session is rotated at sign-in.
//! - The cookie is `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` when
//!   `[http] secure_cookies` says the worker is behind TLS.
//! - A session ends after `session_idle_timeout` unused, `session_max_age` after
//!   sign-in, at sign-out, and when its account is disabled, locked, or changes
//!   password or role (the store reads it under the account's credential version).
//!   Time is the console's [`Clock`](crate::clock::Clock), so tests move it.
//! - Every form carries a CSRF token: HMAC-SHA256 of a fixed label under the session
//!   token, so it is tied to the session and the store keeps nothing more. The
//!   sign-in form, before any session, uses a double-submit cookie.
//! - Failed sign-ins are rate-limited per client address (governor), and the account
//!   locks after [`MAX_FAILED_SIGN_INS`](crate::operators::MAX_FAILED_SIGN_INS)
//!   failures in a row (the store's count, shared with the CLI).
//! - The inbox's own refresh (`?auto=1`) does not count as use, so an unattended
//!   browser still times out.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{ConsoleState, HttpError, view};
use crate::config::Secret;
use crate::guards::Operator;
use crate::operators::secrets::{new_token, token_hash};
use crate::operators::{Account, Role, login};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "treasury_session";
/// The sign-in form's double-submit cookie.
const SIGNIN_COOKIE: &str = "treasury_signin";
const CSRF_LABEL: &[u8] = b"treasury console csrf v1";

/// Sign-in attempts per client address: a burst of [`SIGN_INS_PER_MINUTE`], then one
/// every 3 seconds. (The account's own lockout stops guessing at one account sooner.)
pub struct SignInLimiter(DefaultKeyedRateLimiter<IpAddr>);

/// Sign-in attempts one address may make in a burst, and per minute after it.
pub const SIGN_INS_PER_MINUTE: u32 = 20;

impl Default for SignInLimiter {
    fn default() -> Self {
        let n = NonZeroU32::MIN.saturating_add(SIGN_INS_PER_MINUTE - 1);
        Self(RateLimiter::keyed(Quota::per_minute(n)))
    }
}

impl SignInLimiter {
    /// Counts one attempt from `from`; refused past the rate.
    pub fn check(&self, from: IpAddr) -> Result<(), HttpError> {
        self.0.check_key(&from).map_err(|_| HttpError::TooMany)
    }
}

/// A request made in a live session: the account as it stands now.
pub struct Signed {
    pub account: Account,
    pub session_id: String,
    csrf: String,
}

impl Signed {
    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), HttpError> {
        // Both are hex of one HMAC; comparing the bytes in constant time.
        let (a, b) = (self.csrf.as_bytes(), submitted.trim().as_bytes());
        let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0;
        if same { Ok(()) } else { Err(HttpError::Csrf) }
    }

    /// The operator this session acts as, if the account holds `need` (and owes no
    /// new password: a one-time password must be changed before approving).
    pub fn operator(&self, need: Role) -> Result<Operator, HttpError> {
        login::permitted(&self.account, need).map_err(HttpError::Refused)?;
        Ok(Operator::from_account(&self.account))
    }
}

fn csrf_of(token: &str) -> String {
    // HMAC accepts a key of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(CSRF_LABEL);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<ConsoleState> for Signed {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .ok_or_else(|| HttpError::SignIn("no session".into()))?;
        let session = state
            .store
            .console_session(&token_hash(token))
            .await?
            .ok_or_else(|| HttpError::SignIn("no live session".into()))?;
        let now = state.clock.now();
        let idle = chrono::Duration::from_std(state.rules.idle_timeout).unwrap_or_default();
        let max_age = chrono::Duration::from_std(state.rules.max_age).unwrap_or_default();
        let expired = now - session.last_seen_at > idle || now - session.created_at > max_age;
        if expired || session.account.usable().is_err() {
            state
                .store
                .end_console_session(&session.id, None, now)
                .await?;
            return Err(HttpError::SignIn("the session ended".into()));
        }
        if parts.uri.query() != Some("auto=1") {
            state.store.touch_console_session(&session.id, now).await?;
        }
        Ok(Signed {
            csrf: csrf_of(token),
            account: session.account,
            session_id: session.id,
        })
    }
}

/// The `Set-Cookie` value for `name`, living `max_age` seconds (0 clears it).
fn set_cookie(state: &ConsoleState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.rules.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    // Tokens are base64url and names are ASCII: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn redirect(to: &'static str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    res
}

/// `GET /signin`: the form, with a fresh double-submit token.
pub async fn signin_page(State(state): State<ConsoleState>) -> Response {
    signin_form(&state, StatusCode::OK, None)
}

fn signin_form(state: &ConsoleState, status: StatusCode, error: Option<&str>) -> Response {
    let token = new_token();
    let mut res = (
        status,
        view::respond(view::signin_page(token.expose(), error)),
    )
        .into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, SIGNIN_COOKIE, token.expose(), 600),
    );
    res
}

#[derive(Deserialize)]
pub struct SignInForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /signin`: checks the password (counting failures towards the lockout), then
/// opens a new session and ends the one the browser held.
pub async fn sign_in(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, HttpError> {
    if form.csrf.is_empty() || cookie(&headers, SIGNIN_COOKIE) != Some(form.csrf.as_str()) {
        return Err(HttpError::Csrf);
    }
    state.limiter.check(peer.ip())?;
    let now = state.clock.now();
    let password = Secret::new(form.password);
    let account = match login::with_password(&state.store, &form.name, &password, now).await {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(peer = %peer.ip(), "console sign-in refused");
            return Ok(signin_form(&state, StatusCode::UNAUTHORIZED, Some(&why)));
        }
    };
    let token = new_token();
    let old = cookie(&headers, SESSION_COOKIE).map(token_hash);
    let max_age = chrono::Duration::from_std(state.rules.max_age).unwrap_or_default();
    state
        .store
        .open_console_session(
            &account,
            &token_hash(token.expose()),
            old.as_deref(),
            now - max_age,
            now,
        )
        .await?;
    let mut res = redirect("/");
    let max_age = state.rules.max_age.as_secs();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, token.expose(), max_age),
    );
    h.append(header::SET_COOKIE, set_cookie(&state, SIGNIN_COOKIE, "", 0));
    Ok(res)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /signout`: ends the session and clears the cookie.
pub async fn sign_out(
    State(state): State<ConsoleState>,
    signed: Signed,
    Form(form): Form<CsrfForm>,
) -> Result<Response, HttpError> {
    signed.check_csrf(&form.csrf)?;
    state
        .store
        .end_console_session(&signed.session_id, Some(&signed.account), state.clock.now())
        .await?;
    let mut res = redirect("/signin");
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", 0),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_past_the_burst_are_refused_per_address() {
        let limiter = SignInLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        for i in 0..SIGN_INS_PER_MINUTE {
            assert!(limiter.check(a).is_ok(), "attempt {i}");
        }
        assert!(matches!(limiter.check(a), Err(HttpError::TooMany)));
        assert!(
            limiter.check(b).is_ok(),
            "another address has its own budget"
        );
    }

    #[test]
    fn the_csrf_token_is_tied_to_the_session_token() {
        let (one, two) = (csrf_of("tro_one"), csrf_of("tro_two"));
        assert_eq!(one.len(), 64);
        assert_ne!(one, two);
        assert_eq!(one, csrf_of("tro_one"));
    }
}

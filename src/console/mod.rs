//! The web console at `/`: pages rendered on the server (maud), no JavaScript, one
//! small stylesheet, readable on a laptop and on a phone.
//!
//! - [`session`]: sign-in and sign-out, sessions in the store (hashed), cookies,
//!   timeouts, CSRF tokens, the sign-in rate limit.
//! - [`inbox`]: runs awaiting approval, oldest first; approve, reject, batch approve.
//! - [`runs`]: one run's timeline, the runs list and its payments CSV.
//! - [`halts`]: the kill switch.
//! - [`grants`]: grants' status, expiries, scopes, consent; connect links; revoke.
//! - [`jobs`]: each job's plan; [`audit`]: the chain verified, its head, exports;
//!   [`password`]: choosing one's own password (after a reset); [`operators`]: the
//!   accounts, for admins.
//! - [`shown`]: how a run's amount and payee are shown.
//! - [`view`]: the page layout and shared fragments. Every handler fails with the
//!   worker's one HTTP error type, [`HttpError`](crate::http::HttpError).
//!
//! The console decides nothing itself: approvals, rejections and halts go through the
//! same store functions the CLI calls (`Store::approve_run`, `reject_run`, `set_halt`,
//! `clear_halt`), under an [`Operator`](crate::guards::Operator) made from the
//! signed-in account, so the owner rule, distinct approvers and audit entries naming
//! the account hold here as on the CLI.

pub mod audit;
pub mod grants;
pub mod halts;
pub mod inbox;
pub mod jobs;
pub mod operators;
pub mod password;
pub mod runs;
pub mod session;
pub mod shown;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::clock::Clock;
use crate::grants::Custodian;
use crate::jobs::Job;
use crate::store::Store;

pub use crate::http::HttpError;
pub use session::SignInLimiter;

/// How console sessions behave (`[http]` `secure_cookies`, `session_idle_timeout`,
/// `session_max_age`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRules {
    pub secure_cookies: bool,
    pub idle_timeout: Duration,
    pub max_age: Duration,
}

impl Default for SessionRules {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            idle_timeout: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(12 * 3600),
        }
    }
}

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub store: Store,
    pub clock: Clock,
    pub rules: SessionRules,
    /// The jobs this server loaded: their plans, and the ids a halt may name (besides
    /// those the store's runs know). [`ConsoleState::jobs`] reads them.
    jobs: Arc<Vec<Job>>,
    /// The worker's live job set, swapped on a reload: when set, its jobs are the ones.
    live: Option<crate::jobs::in_force::LiveSet>,
    /// The grant aliases the config declares.
    pub grant_aliases: Arc<Vec<String>>,
    pub limiter: Arc<SignInLimiter>,
    /// Revokes grants (`None` in `treasury serve`, which holds no grant keys).
    pub custodian: Option<Custodian>,
}

impl ConsoleState {
    pub fn new(store: Store, clock: Clock, rules: SessionRules) -> Self {
        Self {
            store,
            clock,
            rules,
            jobs: Arc::default(),
            live: None,
            grant_aliases: Arc::default(),
            limiter: Arc::new(SignInLimiter::default()),
            custodian: None,
        }
    }

    /// Grants are revoked through `custodian`.
    pub fn with_custodian(mut self, custodian: Custodian) -> Self {
        self.custodian = Some(custodian);
        self
    }

    /// The loaded jobs and the declared grant aliases.
    pub fn with_names(mut self, jobs: Arc<Vec<Job>>, grant_aliases: Vec<String>) -> Self {
        self.jobs = jobs;
        self.grant_aliases = Arc::new(grant_aliases);
        self
    }

    /// The jobs follow the worker's live set (a reload adds or removes some).
    pub fn following(mut self, live: crate::jobs::in_force::LiveSet) -> Self {
        self.live = Some(live);
        self
    }

    /// The jobs in force in this process now.
    pub fn jobs(&self) -> Arc<Vec<Job>> {
        match &self.live {
            Some(live) => live.borrow().jobs.clone(),
            None => self.jobs.clone(),
        }
    }
}

/// The console's routes, with its own content security policy (forms post to itself,
/// the one stylesheet comes from itself, nothing else loads).
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(inbox::page))
        .route("/console.css", get(stylesheet))
        .route("/signin", get(session::signin_page).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/runs", get(runs::list))
        .route("/runs.csv", get(runs::csv))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/approve", post(inbox::approve))
        .route("/runs/{id}/reject", post(inbox::reject))
        .route("/occurrences/approve", post(inbox::approve_batch))
        .route("/halts", get(halts::page).post(halts::halt))
        .route("/halts/resume", post(halts::resume))
        .route("/jobs", get(jobs::page))
        .route("/grants", get(grants::page))
        .route("/grants/{alias}/revoke", post(grants::revoke))
        .route("/audit", get(audit::page))
        .route("/audit/{file}", get(audit::export))
        .route("/password", get(password::page).post(password::change))
        .route("/operators", get(operators::page))
        .route("/operators/{name}", post(operators::change))
        .layer(axum::middleware::map_response(policy))
        .with_state(state)
}

/// The console's CSP, stricter than none: the shared headers layer adds the rest.
pub const CONSOLE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn policy(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    res
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        view::CSS,
    )
        .into_response()
}

//! The Baanx calls that connect a customer: initiate (session token and hosted URL),
//! API-mode login (password, then the SMS OTP when required), authorize, logout, and
//! the customer's consent status (v2). None of them is paced differently from the
//! rest; none puts a password, OTP or token in `Debug`, logs or errors.

use serde::Deserialize;
use serde_json::{Value, json};

use super::request::{Call, Endpoint};
use super::{BaanxClient, Grant, Region};
use crate::provider::AccessToken;
use crate::provider::busha::{Called, ErrorKind, ProviderError};

endpoint!(INITIATE, "GET", "/v1/auth/oauth/authorize/initiate");
endpoint!(AUTHORIZE, "POST", "/v1/auth/oauth/authorize");
endpoint!(LOGIN, "POST", "/v1/auth/login");
endpoint!(LOGIN_OTP, "POST", "/v1/auth/login/otp");
endpoint!(LOGOUT, "POST", "/v1/auth/logout");
endpoint!(CONSENT, "GET", "/v2/consent/user/{id}");

/// An authorization to start: PKCE S256 challenge, `state`, and our redirect URI.
#[derive(Clone, Debug)]
pub struct Initiate<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub code_challenge: &'a str,
}

/// A 10-minute authorization session: its token and the hosted UI's sign-in URL.
#[derive(Clone, Deserialize)]
pub struct Session {
    pub token: String,
    pub url: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

/// What a login said. Baanx answers 200 and lets the body tell how far it got.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    /// The 6-hour login token; absent while the OTP is still required.
    #[serde(default)]
    pub access_token: Option<String>,
    pub user_id: String,
    #[serde(default)]
    pub is_otp_required: bool,
    /// Set while onboarding is incomplete.
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub verification_state: Option<String>,
    /// Whether this client already holds live tokens for the user.
    #[serde(default)]
    pub is_linked: bool,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("access_token", &self.access_token.as_ref().map(|_| "***"))
            .field("user_id", &self.user_id)
            .field("is_otp_required", &self.is_otp_required)
            .field("phase", &self.phase)
            .field("verification_state", &self.verification_state)
            .finish()
    }
}

impl Login {
    /// Why this user may not connect (onboarding or verification), if so.
    pub fn not_ready(&self) -> Option<String> {
        if let Some(phase) = &self.phase {
            return Some(format!(
                "the customer's Baanx onboarding is incomplete (phase {phase}); they must finish it first"
            ));
        }
        match self.verification_state.as_deref() {
            Some("VERIFIED") | None => None,
            Some(other) => Some(format!(
                "the customer is not verified at Baanx (verificationState {other}); they must complete verification first"
            )),
        }
    }
}

/// A code issued by authorize, with the `state` Baanx echoed.
#[derive(Clone, Deserialize)]
pub struct Authorized {
    pub code: String,
    pub state: String,
}

impl std::fmt::Debug for Authorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorized")
            .field("code", &"***")
            .finish_non_exhaustive()
    }
}

/// The customer's consent status in our tenant (`GET /v2/consent/user/{id}?full=true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentStatus {
    /// `complete` or `incomplete`, as Baanx says.
    pub status: String,
    /// The latest `termsAndPrivacy` record's status (`granted`, `denied`, `revoked`), if any.
    pub terms_and_privacy: Option<String>,
}

impl ConsentStatus {
    fn from_body(v: &Value) -> ConsentStatus {
        let status = v
            .get("consentStatus")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        // The newest record of the type wins: revocations are appended.
        let terms_and_privacy = v
            .get("consentSets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("consents").and_then(Value::as_array))
            .flatten()
            .filter(|c| c.get("consentType").and_then(Value::as_str) == Some("termsAndPrivacy"))
            .filter_map(|c| c.get("consentStatus").and_then(Value::as_str))
            .next_back()
            .map(str::to_string);
        ConsentStatus {
            status,
            terms_and_privacy,
        }
    }
}

impl BaanxClient {
    /// Opens an authorization session (`mode=api`: JSON `{token, url}`, not a 302).
    pub async fn initiate(
        &self,
        region: Region,
        start: &Initiate<'_>,
    ) -> Result<Called<Session>, ProviderError> {
        let call = Call::unauthenticated(region)
            .query("response_type", "code")
            .query("client_id", &self.inner.config.client_key)
            .query("redirect_uri", start.redirect_uri)
            .query("state", start.state)
            .query("code_challenge", start.code_challenge)
            .query("code_challenge_method", "S256")
            .query("mode", "api");
        self.json(
            INITIATE,
            &["v1", "auth", "oauth", "authorize", "initiate"],
            call,
        )
        .await
    }

    /// Logs the customer in (API mode). `otp` is the SMS code, when Baanx asked for it.
    pub async fn login(
        &self,
        region: Region,
        email: &str,
        password: &str,
        otp: Option<&str>,
    ) -> Result<Called<Login>, ProviderError> {
        let mut body = json!({ "email": email, "password": password });
        if let Some(code) = otp {
            body["otpCode"] = code.into();
        }
        let call = Call::unauthenticated(region).body(body);
        self.json(LOGIN, &["v1", "auth", "login"], call).await
    }

    /// Asks Baanx to send the SMS OTP.
    pub async fn request_otp(
        &self,
        region: Region,
        user_id: &str,
    ) -> Result<Called<()>, ProviderError> {
        let call = Call::unauthenticated(region).body(json!({ "userId": user_id }));
        self.success(LOGIN_OTP, &["v1", "auth", "login", "otp"], call)
            .await
    }

    /// Authorizes the session with the login token: a single-use code.
    pub async fn authorize(
        &self,
        region: Region,
        login_token: &AccessToken,
        session: &Session,
    ) -> Result<Called<Authorized>, ProviderError> {
        let grant = Grant {
            token: login_token,
            region,
        };
        let call = Call::as_(grant).body(json!({ "token": session.token }));
        self.json(AUTHORIZE, &["v1", "auth", "oauth", "authorize"], call)
            .await
    }

    /// Ends a login token (it would otherwise stay valid for 6 hours).
    pub async fn logout(
        &self,
        region: Region,
        login_token: &AccessToken,
    ) -> Result<Called<()>, ProviderError> {
        let grant = Grant {
            token: login_token,
            region,
        };
        self.success(LOGOUT, &["v1", "auth", "logout"], Call::as_(grant))
            .await
    }

    /// The customer's consent status in our tenant; `None` when Baanx has no record
    /// of them (404).
    pub async fn consent_status(
        &self,
        region: Region,
        user_id: &str,
    ) -> Result<Option<ConsentStatus>, ProviderError> {
        let call = Call::unauthenticated(region).query("full", "true");
        match self
            .json::<Value>(CONSENT, &["v2", "consent", "user", user_id], call)
            .await
        {
            Ok(called) => Ok(Some(ConsentStatus::from_body(&called.value))),
            Err(e) if e.kind() == &ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Reads `error`/`message` off a failed login for the person at the terminal.
pub fn login_refusal(e: &ProviderError) -> String {
    match e.kind() {
        ErrorKind::Unauthorized => "Baanx refused the email, password or code".into(),
        ErrorKind::RateLimited { retry_after } => format!(
            "Baanx locked the login after repeated failures{}",
            retry_after
                .map(|d| format!("; try again in {} s", d.as_secs()))
                .unwrap_or_default()
        ),
        _ => e.to_string(),
    }
}

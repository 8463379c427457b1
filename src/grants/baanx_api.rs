//! Baanx API mode: the person at the terminal types the customer's email, password
//! and (when Baanx asks) the SMS OTP, reads our consent text, and types `yes`.
//!
//! The answers come through a [`Prompter`] (the terminal without echo for secrets, or
//! stdin lines for scripts; never argv). They are used for the login calls only:
//! never stored, logged, audited or put in an error. Once the code is exchanged (or
//! the attempt fails), the login token is ended with `POST /v1/auth/logout`, not
//! merely dropped: it would stay valid for 6 hours.

use super::baanx_connect::{BaanxConnector, ClientInfo, Context};
use super::connect::{ConnectError, Connected};
use super::consent::ShownText;
use crate::config::Secret;
use crate::provider::AccessToken;
use crate::provider::baanx::{Login, Region, login_refusal};

/// What our terminal shows before asking for `yes`; kept verbatim in the consent record.
pub fn consent_text(alias: &str) -> String {
    format!(
        "treasury (your finance team's payment worker) asks for access to your Baanx account as grant {alias:?}. It may:\n\
         - view your profile, wallets, balances and wallet history;\n\
         - manage your withdrawal whitelist;\n\
         - withdraw from your wallets to whitelisted addresses, as the finance team's reviewed jobs say.\n\
         Baanx grants this access to the app as a whole (it has no finer scopes). You can end it at any time: `treasury grants revoke {alias}`, which revokes every token of this app for you at Baanx."
    )
}

/// Where the person at the terminal answers. Secrets are never echoed.
pub trait Prompter: Send {
    /// One line of plain input (the email, the `yes`).
    fn line(&mut self, prompt: &str) -> Result<String, String>;
    /// One secret line (password, OTP), not echoed.
    fn secret(&mut self, prompt: &str) -> Result<Secret, String>;
    /// Shows text to the person.
    fn say(&mut self, text: &str);
}

impl BaanxConnector {
    /// API mode for `alias`, on behalf of `actor` (see the module docs).
    pub async fn connect_api(
        &self,
        alias: &str,
        prompt: &mut dyn Prompter,
        actor: &str,
    ) -> Result<Connected, ConnectError> {
        let (spec, region) = self.spec(alias)?;
        let ask = |e: String| ConnectError::Refused(format!("reading the answer failed: {e}"));
        let email = prompt.line("Customer's Baanx email: ").map_err(ask)?;
        let password = prompt.secret("Customer's Baanx password: ").map_err(ask)?;
        let (login, token) = self.login(region, email.trim(), &password, prompt).await?;
        drop(password);
        let result = async {
            if let Some(why) = login.not_ready() {
                return Err(ConnectError::Refused(why));
            }
            let others = self.other_aliases(&login.user_id, alias).await?;
            if !others.is_empty() {
                return Err(ConnectError::Refused(format!(
                    "this Baanx customer is already connected as {others:?}: two aliases on one Baanx user would share one fate (a revocation ends both)"
                )));
            }
            let text = consent_text(alias);
            prompt.say(&text);
            let yes = prompt.line("Type yes to grant this access: ").map_err(ask)?;
            if yes.trim() != "yes" {
                return Err(ConnectError::AccessDenied(Some(
                    "the consent was not confirmed with yes".into(),
                )));
            }
            let (code, verifier) = self.authorize(region, &token).await?;
            let ctx = Context {
                spec,
                region,
                actor,
                channel: "terminal",
                client: ClientInfo::default(),
                shown: Some(ShownText {
                    r#where: "treasury connect (API mode), in the terminal".into(),
                    text,
                }),
            };
            self.finish(&ctx, &code, &verifier).await
        }
        .await;
        self.logout(region, &token, prompt).await;
        result
    }

    /// Password, then the OTP when Baanx requires one: the login and its token.
    async fn login(
        &self,
        region: Region,
        email: &str,
        password: &Secret,
        prompt: &mut dyn Prompter,
    ) -> Result<(Login, AccessToken), ConnectError> {
        let client = self.tokens.client();
        let refused = |e| ConnectError::Refused(format!("login failed: {}", login_refusal(&e)));
        let mut login = client
            .login(region, email, password.expose(), None)
            .await
            .map_err(refused)?
            .value;
        if login.is_otp_required {
            client
                .request_otp(region, &login.user_id)
                .await
                .map_err(refused)?;
            let otp = prompt
                .secret("The SMS code Baanx sent to the customer: ")
                .map_err(|e| ConnectError::Refused(format!("reading the code failed: {e}")))?;
            login = client
                .login(region, email, password.expose(), Some(otp.expose().trim()))
                .await
                .map_err(refused)?
                .value;
        }
        let token = login
            .access_token
            .clone()
            .map(AccessToken::new)
            .ok_or_else(|| {
                ConnectError::Refused(
                    login
                        .not_ready()
                        .unwrap_or_else(|| "Baanx gave no login token".into()),
                )
            })?;
        Ok((login, token))
    }

    /// A session authorized with the login token: (code, PKCE verifier). The `state`
    /// Baanx echoes must be ours.
    async fn authorize(
        &self,
        region: Region,
        token: &AccessToken,
    ) -> Result<(String, String), ConnectError> {
        let (session, state, verifier) = self.open_session(region).await?;
        let authorized = self
            .tokens
            .client()
            .authorize(region, token, &session)
            .await
            .map_err(|e| ConnectError::Refused(format!("Baanx refused the authorization: {e}")))?
            .value;
        if authorized.state != state {
            return Err(ConnectError::StateMismatch(
                "Baanx's authorize answered another state".into(),
            ));
        }
        Ok((authorized.code, verifier))
    }

    async fn logout(&self, region: Region, token: &AccessToken, prompt: &mut dyn Prompter) {
        if let Err(e) = self.tokens.client().logout(region, token).await {
            tracing::warn!(error = %e, "could not end the Baanx login token; it expires within 6 hours");
            prompt.say(&format!(
                "WARNING: the customer's Baanx login could not be ended ({e}); it expires within 6 hours"
            ));
        }
    }
}

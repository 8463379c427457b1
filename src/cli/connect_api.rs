//! `treasury connect <alias>` for Baanx grants: the hosted UI (the default) through
//! the browser flow of [`super::connect`], or API mode through the terminal.
//!
//! API mode reads the customer's email, password and OTP from the terminal (secrets
//! without echo) or, when stdin is not a terminal, as lines from stdin for scripts;
//! never from argv. Nothing of them is stored or logged.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{CliError, Context, connect};
use crate::config::{BaanxFlow, Secret};
use crate::grants::{BaanxConnector, BaanxTokens, Custodian, CustodyConfig, Prompter};

/// Answers from the terminal, or stdin lines when stdin is not a terminal.
pub struct Terminal<'a> {
    out: &'a mut (dyn Write + Send),
}

impl<'a> Terminal<'a> {
    pub fn new(out: &'a mut (dyn Write + Send)) -> Self {
        Self { out }
    }

    fn read_line(&mut self, prompt: &str) -> Result<String, String> {
        let _ = write!(self.out, "{prompt}");
        let _ = self.out.flush();
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("stdin: {e}"))?;
        if n == 0 {
            return Err("stdin ended before the answer".into());
        }
        let _ = writeln!(self.out);
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

impl Prompter for Terminal<'_> {
    fn line(&mut self, prompt: &str) -> Result<String, String> {
        self.read_line(prompt)
    }

    fn secret(&mut self, prompt: &str) -> Result<Secret, String> {
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password(prompt)
                .map(Secret::new)
                .map_err(|e| format!("the terminal: {e}"));
        }
        self.read_line(prompt).map(Secret::new)
    }

    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "\n{text}\n");
    }
}

impl Context {
    /// Baanx's token endpoint from `[baanx]` and the secret key in the environment.
    pub(crate) fn baanx_tokens(&self) -> Result<Arc<BaanxTokens>, CliError> {
        let b = self.settings.baanx.as_ref().ok_or_else(|| {
            CliError(
                "the config has no [baanx] section (api_url, hosted_url, client_key, redirect_uri)"
                    .into(),
            )
        })?;
        BaanxTokens::from_settings(b)
            .map(Arc::new)
            .map_err(CliError)
    }

    /// A custodian for Baanx grants only (no Busha discovery).
    pub(crate) fn baanx_custodian(&self) -> Result<Custodian, CliError> {
        Ok(Custodian::with_providers(
            self.store.clone(),
            self.keys()?,
            None,
            Some(self.baanx_tokens()?),
            self.clock.clone(),
            CustodyConfig::default(),
        ))
    }

    pub(crate) fn baanx_connector(&self) -> Result<BaanxConnector, CliError> {
        let hosted = self
            .settings
            .baanx
            .as_ref()
            .map(|b| b.hosted_url.clone())
            .ok_or_else(|| CliError("the config has no [baanx] section".into()))?;
        Ok(BaanxConnector::new(
            self.store.clone(),
            self.keys()?,
            self.baanx_tokens()?,
            self.baanx_custodian()?,
            self.clock.clone(),
            self.settings.grants.clone(),
            hosted,
        ))
    }

    /// `treasury connect` for a Baanx alias, in its declared flow.
    pub(crate) async fn connect_baanx(
        &self,
        requested: connect::Requested<'_>,
        opener: &connect::Opener,
        shutdown: CancellationToken,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        let (alias, by) = (requested.alias, requested.by);
        let connector = self.baanx_connector()?;
        let (spec, _) = connector.spec(alias).map_err(CliError::from)?;
        let result = match spec.baanx_flow() {
            BaanxFlow::Api => {
                let mut terminal = Terminal::new(out);
                let r = tokio::select! {
                    r = connector.connect_api(alias, &mut terminal, by) => r,
                    _ = shutdown.cancelled() => return Err(CliError("interrupted; nothing was stored".into())),
                };
                connect::report(terminal.out, alias, &r);
                r
            }
            BaanxFlow::Hosted => {
                let redirect = connector.redirect_uri().clone();
                let listener = connect::bind_redirect(&redirect).await?;
                connect::connect(
                    &connector, requested, listener, &redirect, opener, shutdown, out,
                )
                .await
            }
        };
        result.map(|_| ()).map_err(CliError::from)
    }
}

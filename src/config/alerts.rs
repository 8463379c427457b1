//! `[alerts]`: where signed alert notices go, how old a transfer is before it counts as
//! stuck, and which kinds are on. Without the section, alerts go to the log (and the
//! metric) only. The signing secret is never here: `secret_env` names the variable.

use serde::Deserialize;
use url::Url;

use super::{ConfigError, Secret};

/// `[alerts]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// Where notices are POSTed; `None`: the log and the metric only.
    pub url: Option<Url>,
    /// The environment variable that holds the HMAC-SHA256 signing secret.
    pub secret_env: Option<String>,
    /// A submitted transfer not final after this long raises `transfer_stuck`.
    pub stuck_after: std::time::Duration,
    pub kinds: AlertKinds,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            url: None,
            secret_env: None,
            stuck_after: std::time::Duration::from_secs(30 * 60),
            kinds: AlertKinds::default(),
        }
    }
}

/// `[alerts.kinds]`: each kind on (the default) or off. A kind that is off is neither
/// logged as an alert nor posted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertKinds {
    pub grant_disconnected: bool,
    pub grant_expiring: bool,
    pub grant_undecryptable: bool,
    pub transfer_stuck: bool,
    pub run_failed: bool,
    pub halt: bool,
}

impl Default for AlertKinds {
    fn default() -> Self {
        Self {
            grant_disconnected: true,
            grant_expiring: true,
            grant_undecryptable: true,
            transfer_stuck: true,
            run_failed: true,
            halt: true,
        }
    }
}

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    url: Option<Url>,
    secret_env: Option<String>,
    stuck_after: Option<String>,
    #[serde(default)]
    kinds: AlertKinds,
}

impl RawAlerts {
    pub(super) fn resolve(self) -> Result<AlertSettings, String> {
        let d = AlertSettings::default();
        let stuck_after = super::positive_duration(
            "[alerts] stuck_after",
            self.stuck_after,
            d.stuck_after,
            "\"30m\", \"2h\"",
        )?;
        if let Some(url) = &self.url {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "[alerts] url = {:?} must be an http or https URL",
                    url.as_str()
                ));
            }
        }
        match (&self.url, &self.secret_env) {
            (Some(_), None) => {
                return Err("[alerts] `url` needs `secret_env`: the name of the environment variable holding the signing secret".into());
            }
            (None, Some(_)) => {
                return Err(
                    "[alerts] `secret_env` signs notices to `url`, which is not set".into(),
                );
            }
            (_, Some(var)) if !is_env_name(var) => {
                return Err(format!(
                    "[alerts] secret_env = {var:?} must be an environment variable name (A-Z, 0-9, _), not the secret itself"
                ));
            }
            _ => {}
        }
        Ok(AlertSettings {
            url: self.url,
            secret_env: self.secret_env,
            stuck_after,
            kinds: self.kinds,
        })
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

impl AlertSettings {
    /// The notice target: the URL and the signing secret read from `secret_env`, or
    /// `None` when no URL is configured. Refuses a secret that is unset, blank or
    /// shorter than [`super::MIN_SIGNING_SECRET_BYTES`], naming the variable, never the value.
    pub fn target(&self) -> Result<Option<(Url, Secret)>, ConfigError> {
        let (Some(url), Some(var)) = (&self.url, &self.secret_env) else {
            return Ok(None);
        };
        // The one reader of signing secrets, shared with triggers.
        let secret = super::signing_secret_from_env(var, "the [alerts] signing secret")
            .map_err(|e| ConfigError::MissingSecret(e.to_string()))?;
        Ok(Some((url.clone(), secret)))
    }
}

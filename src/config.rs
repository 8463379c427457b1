//! Worker settings: `config/treasury.toml`, parsed at the edge into typed values.
//!
//! The file holds no secret. Secrets come only from the environment
//! ([`secret_from_env`]): the Busha client secret, the operator token and the master
//! key (read by `grants::crypto`). Unknown keys are refused with `file:line:col`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

/// The Busha client secret's environment variable.
pub const CLIENT_SECRET_ENV: &str = "TREASURY_BUSHA_CLIENT_SECRET";
/// The operator token's environment variable (HTTP Basic password for operator routes).
pub const OPERATOR_TOKEN_ENV: &str = "TREASURY_OPERATOR_TOKEN";

/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/treasury.toml";

/// Providers a grant can name.
pub const PROVIDERS: &[&str] = &["busha"];

/// A config file that cannot be used, and where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `path:line:col: message`.
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{0}")]
    MissingSecret(String),
}

/// Everything the worker reads from its config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where the file was read from (for messages).
    pub path: PathBuf,
    pub store: StoreSettings,
    pub busha: BushaSettings,
    pub http: HttpSettings,
    pub grants: Vec<GrantSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://PATH?mode=rwc` or `postgres://…`.
    #[serde(default = "default_store_url")]
    pub url: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: default_store_url(),
        }
    }
}

fn default_store_url() -> String {
    "sqlite://treasury.db?mode=rwc".into()
}

/// Where Busha is and who we are to it. The client secret is not here: it comes from
/// [`CLIENT_SECRET_ENV`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BushaSettings {
    /// The OIDC issuer; discovery is read from `{issuer_url}/.well-known/openid-configuration`
    /// at startup and the issuer it returns is pinned.
    pub issuer_url: Url,
    /// The resource API base, e.g. `https://api.busha.io`.
    pub api_url: Url,
    pub client_id: String,
    /// Registered with Busha byte for byte; `treasury connect` listens here.
    pub redirect_uri: Url,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The worker's HTTP server; localhost unless an operator decides otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

/// A grant alias that job files may name, and the scopes it must hold. Validating a job
/// file needs only this, so a fresh clone validates without a store.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    pub alias: String,
    pub provider: String,
    /// Resource scopes (`openid` and `offline_access` are always requested as well).
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    store: StoreSettings,
    busha: BushaSettings,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    grants: Vec<GrantSpec>,
}

impl Settings {
    /// Reads and validates `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Settings, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::parse(path, &text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        let file: File = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: shown.clone(),
                line,
                col,
                message: e.message().trim().to_string(),
            }
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: shown.clone(),
            message,
        };
        let mut seen = BTreeSet::new();
        for g in &file.grants {
            if g.alias.is_empty()
                || !g
                    .alias
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(format!(
                    "grant alias {:?} must be non-empty ASCII letters, digits, '-' or '_'",
                    g.alias
                )));
            }
            if !PROVIDERS.contains(&g.provider.as_str()) {
                return Err(invalid(format!(
                    "grant {:?}: provider {:?} is not one of {PROVIDERS:?}",
                    g.alias, g.provider
                )));
            }
            if !seen.insert((g.provider.clone(), g.alias.clone())) {
                return Err(invalid(format!(
                    "grant alias {:?} is declared twice",
                    g.alias
                )));
            }
        }
        Ok(Settings {
            path: path.to_path_buf(),
            store: file.store,
            busha: file.busha,
            http: file.http,
            grants: file.grants,
        })
    }

    /// The declared grant with this alias.
    pub fn grant(&self, alias: &str) -> Option<&GrantSpec> {
        self.grants.iter().find(|g| g.alias == alias)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A secret string from the environment. `Debug` shows `***`; zeroized on drop.
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(s.into()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a required secret from the environment.
pub fn secret_from_env(var: &str, what: &str) -> Result<Secret, ConfigError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
        _ => Err(ConfigError::MissingSecret(format!(
            "{var} is not set: it must hold {what} (secrets never go in config files)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[store]
url = "sqlite://t.db?mode=rwc"

[busha]
issuer_url = "https://login.busha.io"
api_url = "https://api.busha.io"
client_id = "busha-oauth2-x-test"
redirect_uri = "http://localhost:8787/oauth/callback"

[[grants]]
alias = "acme"
provider = "busha"
scopes = ["balances:read", "transfers:write"]
"#;

    #[test]
    fn a_complete_file_parses_with_defaults_for_what_it_leaves_out() {
        let s = Settings::parse(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(s.http.listen, "127.0.0.1:8787".parse().unwrap());
        assert_eq!(s.grant("acme").unwrap().scopes.len(), 2);
        assert_eq!(s.store.url, "sqlite://t.db?mode=rwc");
    }

    #[test]
    fn an_unknown_key_is_refused_with_file_line_and_column() {
        let text = GOOD.replace("client_id =", "client_secret = \"x\"\nclient_id =");
        let err = Settings::parse(Path::new("config/t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config/t.toml:8:1: "), "{err}");
        assert!(err.contains("client_secret"), "{err}");
    }

    #[test]
    fn a_grant_with_an_unknown_provider_or_a_duplicate_alias_is_refused() {
        let text = GOOD.replace("provider = \"busha\"", "provider = \"baanx\"");
        let err = Settings::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("baanx"), "{err}");
        let text =
            format!("{GOOD}\n[[grants]]\nalias = \"acme\"\nprovider = \"busha\"\nscopes = []\n");
        let err = Settings::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("declared twice"), "{err}");
    }

    #[test]
    fn the_committed_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let s = Settings::load(&path).unwrap();
        assert!(!s.grants.is_empty());
        assert!(s.http.listen.ip().is_loopback());
    }
}

//! Worker settings: `config/treasury.toml`, parsed at the edge into typed values.
//!
//! The file holds no secret. Secrets come only from the environment
//! ([`secret_from_env`]): the Busha client secret, the Baanx secret key, the operator
//! token and the master key (read by `grants::crypto`). Unknown keys are refused with `file:line:col`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

mod alerts;
mod audit;
mod caps;
mod checks;

pub use alerts::{AlertKinds, AlertSettings};
pub use audit::AuditSettings;
pub use caps::DailyCaps;
pub use checks::{Problem, STORE_SCHEMES};

/// The Busha client secret's environment variable.
pub const CLIENT_SECRET_ENV: &str = "TREASURY_BUSHA_CLIENT_SECRET";
/// The Baanx secret key's environment variable (`x-secret-key` on the token endpoint).
pub const BAANX_SECRET_ENV: &str = "TREASURY_BAANX_SECRET_KEY";
/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/treasury.toml";

/// Providers a grant can name.
pub const PROVIDERS: &[&str] = &["busha", "baanx"];

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
    /// Every problem found in one pass, one per line (`path:line:col: message`).
    #[error("{}", problems.iter().map(|p| if p.line == 0 {
        format!("{path}: {}", p.message)
    } else {
        format!("{path}:{}:{}: {}", p.line, p.col, p.message)
    }).collect::<Vec<_>>().join("\n"))]
    Problems {
        path: String,
        problems: Vec<Problem>,
    },
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
    /// `[baanx]`: required when a grant names provider `baanx`.
    pub baanx: Option<BaanxSettings>,
    pub http: HttpSettings,
    pub queue: QueueSettings,
    pub pacing: PacingSettings,
    pub worker: WorkerSettings,
    pub alerts: AlertSettings,
    pub audit: AuditSettings,
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

/// Where Baanx is and who we are to it. The secret key is not here: it comes from
/// [`BAANX_SECRET_ENV`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaanxSettings {
    /// The API base, e.g. `https://api.baanx.com` (or a sandbox's URL).
    pub api_url: Url,
    /// The hosted UI's base: the sign-in URL Baanx hands back must be under it, so that
    /// a customer is never sent elsewhere.
    pub hosted_url: Url,
    /// Our tenant's public key (`x-client-key`, also the OAuth `client_id`).
    pub client_key: String,
    /// Registered with Baanx byte for byte; `treasury connect` listens here in the
    /// hosted flow.
    pub redirect_uri: Url,
}

/// How a Baanx customer connects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BaanxFlow {
    /// Baanx's hosted UI in the customer's browser (the default the reference
    /// recommends: nobody here types the customer's password).
    #[default]
    Hosted,
    /// API mode: the person at the terminal types the customer's email, password and
    /// OTP, which are never stored or logged.
    Api,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The worker's HTTP server; localhost unless an operator decides otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long a connection may take to send a request's head, and may sit idle
    /// between requests ("10s").
    #[serde(default, deserialize_with = "duration_text")]
    pub header_read_timeout: Option<std::time::Duration>,
    /// How long one request may take, handler included ("30s"); then 408.
    #[serde(default, deserialize_with = "duration_text")]
    pub request_timeout: Option<std::time::Duration>,
    /// At most this many open connections; more wait in the kernel's backlog.
    #[serde(default)]
    pub max_connections: Option<std::num::NonZeroUsize>,
    /// Console cookies carry `Secure` (set it when the worker is behind TLS).
    #[serde(default)]
    pub secure_cookies: bool,
    /// A console session unused this long ends ("30m" by default).
    #[serde(default, deserialize_with = "duration_text")]
    pub session_idle_timeout: Option<std::time::Duration>,
    /// A console session ends this long after sign-in, used or not ("12h" by default).
    #[serde(default, deserialize_with = "duration_text")]
    pub session_max_age: Option<std::time::Duration>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            header_read_timeout: None,
            request_timeout: None,
            max_connections: None,
            secure_cookies: false,
            session_idle_timeout: None,
            session_max_age: None,
        }
    }
}

impl HttpSettings {
    /// The edge's bounds: what is set here, the defaults otherwise.
    pub fn limits(&self) -> crate::http::edge::EdgeLimits {
        let d = crate::http::edge::EdgeLimits::default();
        crate::http::edge::EdgeLimits {
            header_read_timeout: self.header_read_timeout.unwrap_or(d.header_read_timeout),
            request_timeout: self.request_timeout.unwrap_or(d.request_timeout),
            max_connections: self.max_connections.map_or(d.max_connections, |n| n.get()),
        }
    }

    /// The console's session rules: what is set here, the defaults otherwise.
    pub fn sessions(&self) -> crate::console::SessionRules {
        let d = crate::console::SessionRules::default();
        crate::console::SessionRules {
            secure_cookies: self.secure_cookies,
            idle_timeout: self.session_idle_timeout.unwrap_or(d.idle_timeout),
            max_age: self.session_max_age.unwrap_or(d.max_age),
        }
    }
}

/// A duration written as text ("10s", "2m"), which must be positive.
fn duration_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    crate::jobs::schedule::parse_duration(&text)
        .ok()
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a positive duration (e.g. \"10s\", \"2m\")"
            ))
        })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

/// `[queue]`: where run ids travel to the executors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// `sqlite` (embedded default: apalis in a file of its own beside the store) or
    /// `redis` (distributed: shared by every process).
    #[serde(default)]
    pub backend: QueueBackendKind,
    /// For `redis`: `redis://host:port/db`. Run that Redis with `noeviction`.
    pub url: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackendKind {
    #[default]
    Sqlite,
    Redis,
}

/// `[pacing]`: how Busha's rate limits are kept.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingSettings {
    /// `local` (this process alone) or `redis` (one budget shared by every process).
    /// Defaults to `redis` when the queue is on Redis, `local` otherwise.
    pub backend: Option<PacingBackendKind>,
    /// For `redis`: defaults to the queue's URL.
    pub url: Option<String>,
    /// Multiplies Busha's documented limits. Keep 1 unless Busha raised yours.
    #[serde(default = "one")]
    pub limits_scale: u32,
}

impl Default for PacingSettings {
    fn default() -> Self {
        Self {
            backend: None,
            url: None,
            limits_scale: 1,
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacingBackendKind {
    Local,
    Redis,
}

impl Settings {
    /// The Redis URL the pacer shares its state in, or `None` to pace locally.
    pub fn shared_pacing_url(&self) -> Option<&str> {
        let backend = self.pacing.backend.unwrap_or(match self.queue.backend {
            QueueBackendKind::Redis => PacingBackendKind::Redis,
            QueueBackendKind::Sqlite => PacingBackendKind::Local,
        });
        match backend {
            PacingBackendKind::Local => None,
            PacingBackendKind::Redis => self.pacing.url.as_deref().or(self.queue.url.as_deref()),
        }
    }
}

/// `[worker]`: how one `treasury run` process executes. Durations are written like
/// job files' (`"30s"`, `"2m"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Queue consumers in this process.
    pub consumers: usize,
    /// Executions in flight per consumer.
    pub concurrency: usize,
    /// A run's lease; raised to twice the longest Busha call if shorter. After a crash,
    /// a run waits this long before another process takes it over.
    pub lease: std::time::Duration,
    /// The whole-call limit on every Busha request.
    pub busha_timeout: std::time::Duration,
    /// The longest a call waits for its pacer before the run schedules a retry.
    pub max_pacing_wait: std::time::Duration,
    /// The queue consumers' heartbeat; a consumer silent for three is dead and its
    /// messages go back to the queue.
    pub queue_heartbeat: std::time::Duration,
    /// How often runs the queue lost are looked for and sent out again.
    pub recovery_interval: std::time::Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            consumers: 2,
            concurrency: 16,
            lease: Duration::from_secs(120),
            busha_timeout: Duration::from_secs(30),
            max_pacing_wait: Duration::from_secs(20),
            queue_heartbeat: Duration::from_secs(10),
            recovery_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    consumers: Option<usize>,
    concurrency: Option<usize>,
    lease: Option<String>,
    busha_timeout: Option<String>,
    max_pacing_wait: Option<String>,
    queue_heartbeat: Option<String>,
    recovery_interval: Option<String>,
}

/// A setting's positive duration, written like job files' (`"30s"`, `"2m"`), or
/// `default` when absent; the error names `setting` and gives `examples`.
pub(crate) fn positive_duration(
    setting: &str,
    value: Option<String>,
    default: std::time::Duration,
    examples: &str,
) -> Result<std::time::Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => crate::jobs::schedule::parse_duration(&text)
            .ok()
            .and_then(|d| d.to_std().ok())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!("{setting} = {text:?} is not a positive duration (e.g. {examples})")
            }),
    }
}

impl RawWorker {
    fn resolve(self) -> Result<WorkerSettings, String> {
        let d = WorkerSettings::default();
        let duration = |key: &str, v: Option<String>, default: std::time::Duration| {
            positive_duration(&format!("[worker] {key}"), v, default, "\"30s\", \"2m\"")
        };
        let count = |key: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(format!("[worker] {key} must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        Ok(WorkerSettings {
            consumers: count("consumers", self.consumers, d.consumers)?,
            concurrency: count("concurrency", self.concurrency, d.concurrency)?,
            lease: duration("lease", self.lease, d.lease)?,
            busha_timeout: duration("busha_timeout", self.busha_timeout, d.busha_timeout)?,
            max_pacing_wait: duration("max_pacing_wait", self.max_pacing_wait, d.max_pacing_wait)?,
            queue_heartbeat: duration("queue_heartbeat", self.queue_heartbeat, d.queue_heartbeat)?,
            recovery_interval: duration(
                "recovery_interval",
                self.recovery_interval,
                d.recovery_interval,
            )?,
        })
    }
}

/// A grant alias that job files may name, and the scopes it must hold. Validating a job
/// file needs only this, so a fresh clone validates without a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    pub alias: String,
    /// `busha` when not given.
    #[serde(default = "default_provider")]
    pub provider: String,
    /// Resource scopes (`openid` and `offline_access` are always requested as well).
    /// Busha only: Baanx documents no scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Rolling 24-hour caps over every run on the grant, per source currency.
    #[serde(default)]
    pub daily_caps: DailyCaps,
    /// Baanx only (required there): which backend the customer lives in.
    #[serde(default)]
    pub region: Option<crate::provider::baanx::Region>,
    /// Baanx only: `hosted` (default) or `api`.
    #[serde(default)]
    pub flow: Option<BaanxFlow>,
}

impl GrantSpec {
    /// The Baanx flow, `hosted` unless declared.
    pub fn baanx_flow(&self) -> BaanxFlow {
        self.flow.unwrap_or_default()
    }

    /// Checks what only one provider may declare.
    fn check_provider_keys(&self) -> Result<(), String> {
        let alias = &self.alias;
        match self.provider.as_str() {
            "baanx" if self.region.is_none() => Err(format!(
                "grant {alias:?}: a Baanx grant must declare region = \"international\" or \"us\""
            )),
            "baanx" if !self.scopes.is_empty() => Err(format!(
                "grant {alias:?}: Baanx documents no scopes; remove `scopes`"
            )),
            "busha" if self.region.is_some() || self.flow.is_some() => Err(format!(
                "grant {alias:?}: `region` and `flow` are for Baanx grants"
            )),
            _ => Ok(()),
        }
    }
}

fn default_provider() -> String {
    "busha".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    store: StoreSettings,
    busha: BushaSettings,
    #[serde(default)]
    baanx: Option<BaanxSettings>,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    queue: QueueSettings,
    #[serde(default)]
    pacing: PacingSettings,
    #[serde(default)]
    worker: RawWorker,
    #[serde(default)]
    alerts: alerts::RawAlerts,
    #[serde(default)]
    audit: audit::RawAudit,
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

    /// Parses `text` as if read from `path`, reporting every problem found in one
    /// pass ([`ConfigError::Problems`]).
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        let mut problems = checks::scan(text);
        let file = match toml::from_str::<File>(text) {
            Ok(file) => Some(file),
            Err(e) => {
                let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                // The scan already said it in plainer words at that line.
                if !problems.iter().any(|p| p.line == line) {
                    problems.push(Problem {
                        line,
                        col,
                        message: e.message().trim().to_string(),
                    });
                }
                None
            }
        };
        let settings = file.map(|file| resolve(path, text, file, &mut problems));
        match settings {
            Some(Some(s)) if problems.is_empty() => Ok(s),
            _ => {
                problems.sort();
                problems.dedup();
                Err(ConfigError::Problems {
                    path: shown,
                    problems,
                })
            }
        }
    }

    /// The declared grant with this alias.
    pub fn grant(&self, alias: &str) -> Option<&GrantSpec> {
        self.grants.iter().find(|g| g.alias == alias)
    }
}

/// The checks that need the whole deserialized file; each problem found is added.
fn resolve(path: &Path, text: &str, file: File, problems: &mut Vec<Problem>) -> Option<Settings> {
    let mut at = |(line, col): (usize, usize), message: String| {
        problems.push(Problem { line, col, message })
    };
    for g in &file.grants {
        if let Err(message) = g.check_provider_keys() {
            at(alias_line(text, &g.alias), message);
        }
    }
    if file.baanx.is_none() && file.grants.iter().any(|g| g.provider == "baanx") {
        at(
            (0, 0),
            "a grant names provider \"baanx\", so a [baanx] section (api_url, hosted_url, client_key, redirect_uri) is required".into(),
        );
    }
    let mut invalid = |message: String| {
        problems.push(Problem {
            line: 0,
            col: 0,
            message,
        })
    };
    for g in &file.grants {
        if g.alias.is_empty()
            || !g
                .alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            invalid(format!(
                "grant alias {:?} must be non-empty ASCII letters, digits, '-' or '_'",
                g.alias
            ));
        }
        if !PROVIDERS.contains(&g.provider.as_str()) {
            invalid(format!(
                "grant {:?}: provider {:?} is not one of {PROVIDERS:?}",
                g.alias, g.provider
            ));
        }
    }
    match (file.queue.backend, &file.queue.url) {
        (QueueBackendKind::Redis, None) => {
            invalid("[queue] backend = \"redis\" needs `url` (redis://host:port/db)".into())
        }
        (QueueBackendKind::Sqlite, Some(_)) => invalid(
            "[queue] `url` is for backend = \"redis\"; the SQLite queue lives beside the store"
                .into(),
        ),
        _ => {}
    }
    if file.pacing.backend == Some(PacingBackendKind::Redis)
        && file.pacing.url.is_none()
        && file.queue.url.is_none()
    {
        invalid("[pacing] backend = \"redis\" needs `url`, or a Redis [queue] to share".into());
    }
    if file.pacing.limits_scale == 0 {
        invalid("[pacing] limits_scale must be at least 1".into());
    }
    let worker = file.worker.resolve().map_err(&mut invalid).ok();
    let alerts = file.alerts.resolve().map_err(&mut invalid).ok();
    let audit = file.audit.resolve().map_err(&mut invalid).ok();
    Some(Settings {
        path: path.to_path_buf(),
        store: file.store,
        busha: file.busha,
        baanx: file.baanx,
        http: file.http,
        queue: file.queue,
        pacing: file.pacing,
        worker: worker?,
        alerts: alerts?,
        audit: audit?,
        grants: file.grants,
    })
}

/// Where `alias = "<alias>"` is written, for messages about that grant.
fn alias_line(text: &str, alias: &str) -> (usize, usize) {
    let quoted = format!("\"{alias}\"");
    text.lines()
        .position(|l| l.trim_start().starts_with("alias") && l.contains(&quoted))
        .map_or((1, 1), |i| (i + 1, 1))
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

/// Least length, in bytes, of a signing secret read from the environment.
pub const MIN_SIGNING_SECRET_BYTES: usize = 32;

/// Why a signing secret in the environment cannot be used. Each names the variable:
/// for operators' eyes (start-up errors, `jobs validate`), never for HTTP callers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningSecretError {
    #[error(
        "${var} is not set: it must hold {what}, at least {MIN_SIGNING_SECRET_BYTES} bytes (secrets never go in files)"
    )]
    Unset { var: String, what: String },
    #[error("${var} is empty or blank: {what} must be at least {MIN_SIGNING_SECRET_BYTES} bytes")]
    Blank { var: String, what: String },
    #[error("${var} holds {len} bytes: {what} must be at least {MIN_SIGNING_SECRET_BYTES} bytes")]
    Short {
        var: String,
        what: String,
        len: usize,
    },
    #[error("${var} is not valid UTF-8: {what} must be text")]
    NotText { var: String, what: String },
}

/// Reads an HMAC signing secret from the environment: every trigger secret goes
/// through here. It must be set, not blank, and at least [`MIN_SIGNING_SECRET_BYTES`]
/// long. The value is used exactly as set (it is a key: never trimmed).
pub fn signing_secret_from_env(var: &str, what: &str) -> Result<Secret, SigningSecretError> {
    let (var, what) = (var.to_string(), what.to_string());
    match std::env::var(&var) {
        Err(std::env::VarError::NotPresent) => Err(SigningSecretError::Unset { var, what }),
        Err(std::env::VarError::NotUnicode(_)) => Err(SigningSecretError::NotText { var, what }),
        Ok(v) if v.trim().is_empty() => Err(SigningSecretError::Blank { var, what }),
        Ok(v) if v.len() < MIN_SIGNING_SECRET_BYTES => Err(SigningSecretError::Short {
            var,
            what,
            len: v.len(),
        }),
        Ok(v) => Ok(Secret::new(v)),
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
        let text = GOOD.replace("provider = \"busha\"", "provider = \"kraken\"");
        let err = Settings::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kraken"), "{err}");
        let text =
            format!("{GOOD}\n[[grants]]\nalias = \"acme\"\nprovider = \"busha\"\nscopes = []\n");
        let err = Settings::parse(Path::new("t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("declared twice"), "{err}");
    }

    const BAANX: &str = r#"
[baanx]
api_url = "https://api.baanx.example"
hosted_url = "https://hosted.baanx.example"
client_key = "bx-key"
redirect_uri = "http://localhost:8787/oauth/baanx/callback"

[[grants]]
alias = "cards"
provider = "baanx"
region = "us"
flow = "api"
"#;

    #[test]
    fn a_baanx_grant_declares_region_and_flow_and_needs_the_baanx_section() {
        use crate::provider::baanx::Region;
        let s = Settings::parse(Path::new("t.toml"), &format!("{GOOD}{BAANX}")).unwrap();
        let g = s.grant("cards").unwrap();
        assert_eq!(g.region, Some(Region::Us));
        assert_eq!(g.baanx_flow(), BaanxFlow::Api);
        assert_eq!(s.baanx.as_ref().unwrap().client_key, "bx-key");
        let hosted = BAANX.replace("flow = \"api\"\n", "");
        let s = Settings::parse(Path::new("t.toml"), &format!("{GOOD}{hosted}")).unwrap();
        assert_eq!(s.grant("cards").unwrap().baanx_flow(), BaanxFlow::Hosted);
    }

    #[test]
    fn baanx_grant_mistakes_are_refused_with_the_line_of_the_grant() {
        let full = format!("{GOOD}{BAANX}");
        let line = full.lines().position(|l| l == "alias = \"cards\"").unwrap() + 1;
        for (from, to, expected) in [
            ("region = \"us\"\n", "", "must declare region"),
            (
                "region = \"us\"",
                "region = \"us\"\nscopes = [\"x\"]",
                "no scopes",
            ),
        ] {
            let text = full.replace(from, to);
            let err = Settings::parse(Path::new("c.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("c.toml:{line}:1: ")), "{err}");
            assert!(err.contains(expected), "{err}");
        }
        let text = full.replace("region = \"us\"", "region = \"mars\"");
        let err = Settings::parse(Path::new("c.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("mars"), "{err}");
        let busha = GOOD.replace(
            "provider = \"busha\"",
            "provider = \"busha\"\nflow = \"api\"",
        );
        let err = Settings::parse(Path::new("c.toml"), &busha).unwrap_err();
        assert!(err.to_string().contains("are for Baanx grants"), "{err}");
        let no_section = full.replace("[baanx]", "[ignored]");
        let err = Settings::parse(Path::new("c.toml"), &no_section).unwrap_err();
        assert!(err.to_string().contains("ignored"), "{err}");
        let missing = format!("{GOOD}{}", &BAANX[BAANX.find("[[grants]]").unwrap()..]);
        let err = Settings::parse(Path::new("c.toml"), &missing).unwrap_err();
        assert!(err.to_string().contains("[baanx] section"), "{err}");
    }

    #[test]
    fn the_distributed_sections_parse_and_pacing_follows_a_redis_queue() {
        let s = Settings::parse(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(s.queue.backend, QueueBackendKind::Sqlite);
        assert_eq!(s.shared_pacing_url(), None, "embedded: local pacing");
        assert_eq!(s.worker, WorkerSettings::default());

        let text = format!(
            "{GOOD}\n[queue]\nbackend = \"redis\"\nurl = \"redis://q:6379/0\"\n\n[worker]\nlease = \"30s\"\nconcurrency = 4\n"
        );
        let s = Settings::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(s.shared_pacing_url(), Some("redis://q:6379/0"));
        assert_eq!(s.worker.lease, std::time::Duration::from_secs(30));
        assert_eq!(s.worker.concurrency, 4);
        assert_eq!(s.worker.consumers, 2);

        let local = format!("{text}\n[pacing]\nbackend = \"local\"\n");
        let s = Settings::parse(Path::new("t.toml"), &local).unwrap();
        assert_eq!(s.shared_pacing_url(), None, "explicitly local");
    }

    #[test]
    fn inconsistent_distributed_sections_are_refused_with_the_reason() {
        for (extra, expected) in [
            ("[queue]\nbackend = \"redis\"\n", "needs `url`"),
            (
                "[queue]\nurl = \"redis://x/\"\n",
                "is for backend = \"redis\"",
            ),
            ("[queue]\nbackend = \"kafka\"\n", "kafka"),
            (
                "[pacing]\nbackend = \"redis\"\n",
                "[pacing] backend = \"redis\" needs `url`",
            ),
            ("[pacing]\nlimits_scale = 0\n", "at least 1"),
            (
                "[worker]\nlease = \"soon\"\n",
                "[worker] lease = \"soon\" is not a positive duration",
            ),
            (
                "[worker]\nconsumers = 0\n",
                "[worker] consumers must be at least 1",
            ),
            ("[worker]\nthreads = 4\n", "threads"),
        ] {
            let text = format!("{GOOD}\n{extra}");
            let err = Settings::parse(Path::new("t.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{extra:?}: {err}");
        }
    }

    #[test]
    fn the_committed_distributed_example_is_valid_and_shares_redis() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/distributed.toml");
        let s = Settings::load(&path).unwrap();
        assert!(s.store.url.starts_with("postgres://"));
        assert_eq!(s.queue.backend, QueueBackendKind::Redis);
        assert!(s.shared_pacing_url().is_some());
    }

    #[test]
    fn the_committed_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_PATH);
        let s = Settings::load(&path).unwrap();
        assert!(!s.grants.is_empty());
        assert!(s.http.listen.ip().is_loopback());
    }
}

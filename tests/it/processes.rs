//! Real `treasury run` processes against an in-process sandbox on wall-clock time: a
//! customer connected into the store they share, config files written for them, and
//! handles to start, SIGTERM and SIGKILL them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use treasury::clock::Clock;
use treasury::config::{GrantSpec, Secret};
use treasury::grants::{BushaOAuth, Connector, Keyring, OAuthSettings};
use treasury::sandbox::{OAuthClientConfig, Sandbox, SandboxConfig, SandboxUser};
use treasury::store::Store;

use crate::grants_harness::{Browser, callback_params};

pub const CLIENT_ID: &str = "busha-oauth2-5e1c0d2a-process-tests-test";
pub const CLIENT_SECRET: &str = "process-client-secret";
pub const GRANT: &str = "acme";
pub const SCOPES: [&str; 7] = [
    "balances:read",
    "quotes:read",
    "quotes:write",
    "transfers:read",
    "transfers:write",
    "recipients:read",
    "recipients:write",
];

/// A sandbox and a store with the customer connected, ready for worker processes.
pub struct Deployment {
    pub sb: Sandbox,
    pub user: SandboxUser,
    pub clock: Clock,
    pub store: Store,
    pub store_url: String,
    pub master_key: String,
    pub dir: tempfile::TempDir,
    redirect: url::Url,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Deployment {
    /// `store_url`: SQLite or PostgreSQL; `edit` adjusts the sandbox (always wall time,
    /// auto-consent for user `ada`).
    pub async fn start(
        store_url: &str,
        edit: impl FnOnce(&mut SandboxConfig),
        user: treasury::sandbox::NewUser,
    ) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::system();
        let redirect =
            url::Url::parse(&format!("http://127.0.0.1:{}/oauth/callback", free_port())).unwrap();
        let mut config = SandboxConfig {
            clock: clock.clone(),
            auto_consent: Some("ada".into()),
            clients: vec![OAuthClientConfig::new(
                CLIENT_ID,
                CLIENT_SECRET,
                redirect.as_str(),
            )],
            ..SandboxConfig::default()
        };
        edit(&mut config);
        let sb = Sandbox::start(config).await.unwrap();
        let user = sb.create_user(user);
        let store = Store::connect(store_url).await.unwrap();
        let master_key =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let keys = Arc::new(Keyring::parse(&master_key).unwrap());
        let oauth = Arc::new(
            BushaOAuth::discover(
                &OAuthSettings::new(
                    sb.url(),
                    CLIENT_ID,
                    Secret::new(CLIENT_SECRET.to_string()),
                    redirect.clone(),
                ),
                clock.clone(),
            )
            .await
            .unwrap(),
        );
        let grants = vec![GrantSpec {
            alias: GRANT.into(),
            provider: "busha".into(),
            scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }];
        let connector = Connector::new(store.clone(), keys, oauth, clock.clone(), grants);
        let started = connector.begin(GRANT).await.unwrap();
        let callback = Browser::new().follow_auto_consent(&started.url).await;
        connector
            .complete(&callback_params(&callback), "test")
            .await
            .unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        // `treasury run` refuses a job whose owner is not an account: the owners that
        // the repository's jobs (and these tests' jobs) name.
        for owner in ["finance-lead", "procurement-lead", "treasurer"] {
            let role = treasury::operators::Role::Viewer;
            crate::operators_world::account(&store, &clock, owner, role).await;
        }
        Deployment {
            sb,
            user,
            clock,
            store,
            store_url: store_url.to_string(),
            master_key,
            dir,
            redirect,
        }
    }

    pub fn add_job(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("jobs").join(name), text).unwrap();
    }

    /// Writes `<name>.toml` for a process listening on `port`, with `extra` sections
    /// (`[queue]`, `[pacing]`, `[worker]`) appended; returns its path.
    pub fn write_config(&self, name: &str, port: u16, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"
[store]
url = "{store_url}"

[busha]
issuer_url = "{sb_url}"
api_url = "{sb_url}"
client_id = "{CLIENT_ID}"
redirect_uri = "{redirect}"

[http]
listen = "127.0.0.1:{port}"

[[grants]]
alias = "{GRANT}"
provider = "busha"
scopes = {scopes:?}

{extra}
"#,
                store_url = self.store_url,
                sb_url = self.sb.url(),
                redirect = self.redirect,
                scopes = SCOPES,
            ),
        )
        .unwrap();
        path
    }
}

/// One `treasury run` process.
pub struct Process {
    child: Option<Child>,
    pub port: u16,
    config: PathBuf,
    dir: PathBuf,
    master_key: String,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Process {
    pub fn new(d: &Deployment, config: PathBuf, port: u16, env: &[(&str, &str)]) -> Process {
        let log = config.with_extension("log");
        Process {
            child: None,
            port,
            config,
            dir: d.dir.path().to_path_buf(),
            master_key: d.master_key.clone(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_treasury"))
            .current_dir(&self.dir)
            .arg("--config")
            .arg(&self.config)
            .args(["run", "--jobs", "jobs"])
            .env("TREASURY_MASTER_KEY", &self.master_key)
            .env("TREASURY_BUSHA_CLIENT_SECRET", CLIENT_SECRET)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start treasury run");
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the HTTP server answers.
    pub async fn wait_up(&self) {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.base())).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "treasury run did not come up\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then how long the process took to exit and whether it exited 0.
    pub fn terminate(&mut self) -> (Duration, bool) {
        let Some(mut child) = self.child.take() else {
            return (Duration::ZERO, true);
        };
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (started.elapsed(), status.success());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("treasury run ignored SIGTERM for 30 s\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `probe` every 50 ms until it yields, or panics after `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    match try_wait_for(timeout, probe).await {
        Some(v) => v,
        None => panic!("timed out waiting for {what}"),
    }
}

/// Polls `probe` every 50 ms until it yields; `None` after `timeout`, so the caller
/// can say what it saw.
pub async fn try_wait_for<T>(
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if started.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

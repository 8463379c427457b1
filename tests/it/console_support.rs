//! The console's test harness: the assembled service (`Application::build` on a port-0
//! listener) over a [`World`] (store, manual clock, Busha sandbox), and headless
//! Chromium driven over WebDriver by fantoccini.
//!
//! The browser tests need Debian's `chromium` and `chromium-driver`
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `.ci/run` installs them). Without
//! them the tests FAIL, never skip. Each test starts one chromedriver on a free port;
//! screenshots go to `<target dir>/screenshots/` (the parent of Cargo's
//! `CARGO_TARGET_TMPDIR`, so `$CARGO_TARGET_DIR/screenshots` or `./target/screenshots`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use treasury::config::{BushaSettings, GrantSpec, HttpSettings, Settings, StoreSettings};
use treasury::service::{Application, Parts};

use crate::grants_harness::{ALIAS, CLIENT_ID, World};
use crate::operators_world::PASSWORD;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the tests save screenshots.
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("screenshots")
}

/// One chromedriver, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub async fn start() -> Driver {
        for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "the browser tests need {path}: `apt-get install -y chromium chromium-driver` ({what}; .ci/run installs it)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{url}/status")).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["value"]["ready"] == json!(true)
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver answered /status as ready");
        Driver { child, url }
    }

    /// A new browser session (a Chromium of its own: its own cookies).
    pub async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--window-size=1280,900"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The assembled service on the world, serving the console.
pub struct App {
    pub base: String,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), String>>,
    _dir: tempfile::TempDir,
}

impl App {
    pub async fn start(w: &World, job: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("job.toml"), job).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = settings(w);
        let jobs = treasury::jobs::load(dir.path(), &settings).unwrap();
        let parts = Parts {
            settings,
            store: w.store(),
            clock: w.clock.clone(),
            keys: w.keys.clone(),
            oauth: w.oauth.clone(),
            busha: w.api.clone(),
            jobs,
            queue: treasury::queue::QueueConfig::sqlite(dir.path().join("queue.db")),
            webhook_secret: None,
            alert_target: None,
            tick: Duration::from_millis(200),
            sweep_poll: None,
        };
        let app = Application::build(parts, listener).unwrap();
        let base = format!("http://{}", app.address().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        App {
            base,
            shutdown,
            handle,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

fn settings(w: &World) -> Settings {
    Settings {
        path: "test.toml".into(),
        store: StoreSettings {
            url: w.ts.url.clone(),
        },
        baanx: None,
        busha: BushaSettings {
            issuer_url: w.sb.url(),
            api_url: w.sb.url(),
            client_id: CLIENT_ID.into(),
            redirect_uri: w.redirect_uri.clone(),
        },
        http: HttpSettings {
            listen: ([127, 0, 0, 1], 0).into(),
            session_idle_timeout: Some(Duration::from_secs(3600)),
            ..HttpSettings::default()
        },
        queue: Default::default(),
        pacing: Default::default(),
        worker: Default::default(),
        alerts: Default::default(),
        audit: Default::default(),
        grants: vec![GrantSpec {
            alias: ALIAS.into(),
            provider: "busha".into(),
            scopes: crate::pipeline_grants::PAYOUT_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Default::default()
        }],
    }
}

/// Signs `name` in with `password` in `b` and returns the page's text.
pub async fn sign_in_with(b: &Client, app: &App, name: &str, password: &str) -> String {
    b.goto(&app.url("/signin")).await.unwrap();
    b.find(Locator::Id("name"))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    b.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click(b, "#signin").await
}

/// Signs `name` in with the test accounts' password; it must land on the inbox.
pub async fn sign_in(b: &Client, app: &App, name: &str) {
    let text = sign_in_with(b, app, name, PASSWORD).await;
    assert!(
        text.contains("Inbox") && text.contains(name),
        "{name} signed in: {text}"
    );
}

/// Signs out through the header's form.
pub async fn sign_out(b: &Client) {
    let text = click(b, "form[action='/signout'] button").await;
    assert!(text.contains("Operator name"), "signed out: {text}");
}

/// The page's visible text.
pub async fn body_text(b: &Client) -> String {
    b.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Clicks the element `css`, waits for the next page (the old one's root goes stale),
/// and returns its text.
pub async fn click(b: &Client, css: &str) -> String {
    let old = b.find(Locator::Css("html")).await.unwrap();
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
    let mut gone = false;
    // Up to 30 s: a loaded CI machine is slow, and the signal is positive.
    for _ in 0..1200 {
        if let Err(e) = old.tag_name().await
            && e.is_stale_element_reference()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "clicking {css} led to another page");
    body_text(b).await
}

/// Saves a PNG of the page as `<screenshot dir>/<name>.png`.
pub async fn screenshot(b: &Client, name: &str) -> PathBuf {
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

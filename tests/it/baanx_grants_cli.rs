//! Baanx grants from the operator's side: consent records in `grants show` (both
//! providers), and `treasury connect` in API mode as a real process reading stdin
//! lines at TRACE level, with the customer's password and OTP nowhere afterwards.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use treasury::cli::{Context, GrantsCommand};
use treasury::config::Settings;
use treasury::grants::baanx_api::consent_text;
use treasury::sandbox::baanx::NewBaanxUser;
use treasury::store::Store;

use crate::baanx_grants_harness::{API, Bw};
use crate::baanx_sandbox_support::{KEY, SECRET};
use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, World};

/// A config naming the Baanx world's sandbox and `store`.
fn baanx_settings_text(w: &Bw, store: &str) -> String {
    let sb = w.bx.sb.url();
    format!(
        r#"
[store]
url = "{store}"

[busha]
issuer_url = "http://127.0.0.1:9/"
api_url = "http://127.0.0.1:9/"
client_id = "unused"
redirect_uri = "http://127.0.0.1:9/cb"

[baanx]
api_url = "{sb}"
hosted_url = "{sb}"
client_key = "{KEY}"
redirect_uri = "{redirect}"

[[grants]]
alias = "{API}"
provider = "baanx"
region = "international"
flow = "api"
"#,
        redirect = w.redirect,
    )
}

async fn show(
    settings: Settings,
    store: Store,
    clock: treasury::clock::Clock,
    alias: &str,
    json: bool,
) -> String {
    let ctx = Context {
        settings,
        store,
        clock,
    };
    let mut out = Vec::new();
    ctx.grants(
        GrantsCommand::Show {
            alias: alias.into(),
            json,
        },
        None,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn grants_show_carries_the_consent_record_for_a_busha_and_a_baanx_grant() {
    // Arrange: one grant of each provider.
    let busha = World::start(TestStore::sqlite().await).await;
    busha.connect().await;
    let baanx = Bw::start(TestStore::sqlite().await).await;
    baanx.connect_api(API).await.unwrap();
    let busha_settings = Settings::parse(
        Path::new("t.toml"),
        &crate::grants_logs::settings_text(&busha),
    )
    .unwrap();
    let baanx_settings = Settings::parse(
        Path::new("t.toml"),
        &baanx_settings_text(&baanx, &baanx.ts.url),
    )
    .unwrap();

    // Act
    let busha_json = show(
        busha_settings.clone(),
        busha.store(),
        busha.clock.clone(),
        ALIAS,
        true,
    )
    .await;
    let baanx_json = show(
        baanx_settings.clone(),
        baanx.store(),
        baanx.bx.sb.clock(),
        API,
        true,
    )
    .await;
    let baanx_text = show(
        baanx_settings,
        baanx.store(),
        baanx.bx.sb.clock(),
        API,
        false,
    )
    .await;

    // Assert
    let b: serde_json::Value = serde_json::from_str(&busha_json).unwrap();
    let c = &b["consent"];
    assert_eq!(c["provider"], "busha");
    assert!(
        c["asked_for"]["label"]
            .as_str()
            .unwrap()
            .starts_with("what we asked for")
    );
    assert!(
        c["asked_for"]["items"]
            .as_array()
            .unwrap()
            .contains(&"offline_access".into())
    );
    assert!(
        c["granted"]["label"]
            .as_str()
            .unwrap()
            .starts_with("what Busha granted")
    );
    assert!(
        c["granted"]["items"]
            .as_array()
            .unwrap()
            .contains(&"transfers:write".into())
    );
    assert!(
        c["provider_page"]
            .as_str()
            .unwrap()
            .contains("not ours to see")
    );
    assert_eq!(c["shown_by_us"], serde_json::Value::Null);
    let x: serde_json::Value = serde_json::from_str(&baanx_json).unwrap();
    let c = &x["consent"];
    assert_eq!(c["provider"], "baanx");
    assert_eq!(c["shown_by_us"]["text"], consent_text(API));
    assert_eq!(c["channel"], "terminal");
    assert_eq!(c["provider_consent"]["status"], "unknown");
    assert_eq!(x["region"], "international");
    assert!(baanx_text.contains("consent:"), "{baanx_text}");
    assert!(baanx_text.contains("what we asked for"), "{baanx_text}");
    assert!(
        baanx_text.contains("    | treasury (your finance team's payment worker)"),
        "{baanx_text}"
    );
}

/// The bytes of every file under `dir` (the SQLite store, its WAL), as text.
fn files_text(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        all.push_str(&String::from_utf8_lossy(&bytes));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_mode_connect_at_trace_level_leaves_the_password_and_otp_in_no_log_row_audit_or_argv()
 {
    // Arrange: a customer with an OTP; the worker as a real process.
    const PASSWORD: &str = "pw-Zebra-8812-secret";
    const OTP: &str = "otp-Quail-93";
    let w = Bw::start(TestStore::sqlite().await).await;
    w.bx.sb
        .create_user(NewBaanxUser::new("otp@example.com", PASSWORD).otp(OTP));
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    let url = format!("sqlite://{}/t.db?mode=rwc", store_dir.display());
    let config = dir.path().join("treasury.toml");
    std::fs::write(&config, baanx_settings_text(&w, &url)).unwrap();
    let master_key = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        rand::random::<[u8; 32]>(),
    );

    // The operator who connects logs in with a personal token from the environment.
    let operator_auth = {
        let store = Store::connect(&url).await.unwrap();
        let clock = treasury::clock::Clock::system();
        let role = treasury::operators::Role::Operator;
        let ops = crate::operators_world::account(&store, &clock, "ops", role).await;
        let token = crate::operators_world::token(&store, &clock, &ops).await;
        store.close().await;
        format!("ops:{token}")
    };

    // Act: the answers arrive as stdin lines, after argv was read.
    let mut child = Command::new(env!("CARGO_BIN_EXE_treasury"))
        .arg("--config")
        .arg(&config)
        .args(["connect", API])
        .env("TREASURY_OPERATOR_AUTH", &operator_auth)
        .env("TREASURY_MASTER_KEY", &master_key)
        .env("TREASURY_BAANX_SECRET_KEY", SECRET)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let argv = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "otp@example.com\n{PASSWORD}\n{OTP}\nyes").unwrap();
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();

    // Assert
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Connected cards to Baanx user"), "{stdout}");
    assert!(stderr.contains("TRACE"), "the worker logged at TRACE level");
    let store = Store::connect(&url).await.unwrap();
    let audit = serde_json::to_string(
        &store
            .audit_entries(None, None)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.action.clone(), e.payload.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(audit.contains("grant.connected"));
    let rows = format!(
        "{:?}",
        store
            .grants()
            .await
            .unwrap()
            .iter()
            .map(|r| (&r.subject, &r.consent))
            .collect::<Vec<_>>()
    );
    let argv = String::from_utf8_lossy(&argv).to_string();
    for secret in [PASSWORD, OTP] {
        for (place, text) in [
            ("stdout", &stdout),
            ("the TRACE log", &stderr),
            ("the audit log", &audit),
            ("the grant rows", &rows),
            ("the store files", &files_text(&store_dir)),
            ("argv", &argv),
        ] {
            assert!(!text.contains(secret), "{secret:?} appears in {place}");
        }
    }
}

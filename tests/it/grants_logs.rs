//! No token in logs or CLI output: everything the worker logs at TRACE level while it
//! connects, refreshes, retries, disconnects, reconnects and revokes is captured and
//! scanned, together with what `treasury grants list|show` prints.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use chrono::Duration;
use treasury::cli::{Context, GrantsCommand};
use treasury::config::Settings;
use treasury::grants::crypto::Owner;
use treasury::sandbox::{Fault, FaultKind};

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, Browser, World, callback_params};

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<parking_lot::Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures everything logged on this thread, at TRACE level, until the guard drops.
pub(crate) fn capture_logs() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (capture, tracing::subscriber::set_default(subscriber))
}

/// A config file naming the world's sandbox and store, as `config/treasury.toml` would.
pub fn settings_text(w: &World) -> String {
    format!(
        r#"
[store]
url = "{store}"

[busha]
issuer_url = "{issuer}"
api_url = "{issuer}"
client_id = "{client}"
redirect_uri = "{redirect}"

[[grants]]
alias = "{ALIAS}"
provider = "busha"
scopes = ["balances:read", "transfers:read", "transfers:write"]

[[grants]]
alias = "payroll"
provider = "busha"
scopes = ["balances:read"]
"#,
        store = w.ts.url,
        issuer = w.sb.issuer(),
        client = crate::grants_harness::CLIENT_ID,
        redirect = w.redirect_uri,
    )
}

fn settings_for(w: &World) -> Settings {
    Settings::parse(Path::new("test.toml"), &settings_text(w)).unwrap()
}

async fn cli_output(w: &World, command: GrantsCommand) -> String {
    let ctx = Context {
        settings: settings_for(w),
        store: w.store(),
        clock: w.clock.clone(),
    };
    let mut out = Vec::new();
    let who = treasury::guards::Operator::parse("ops").unwrap();
    ctx.grants(command, Some(&who), &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

// Current-thread runtime: the sandbox, the custodian and every connection task run on
// this thread, under the capturing subscriber.
#[tokio::test]
async fn no_token_code_or_secret_appears_in_trace_logs_or_cli_output() {
    let (capture, _guard) = capture_logs();

    // Arrange / Act: a grant's whole life, remembering every secret it ever held.
    let w = World::start(TestStore::sqlite().await).await;
    let connector = w.connector();
    let custodian = w.custodian();
    let mut secrets: Vec<String> = vec![crate::grants_harness::CLIENT_SECRET.into()];
    let started = connector.begin(ALIAS).await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    let params = callback_params(&callback);
    secrets.push(params.code.clone().unwrap());
    secrets.push(started.state.clone());
    let grant = connector.complete(&params, "test").await.unwrap().grant;
    let keep = async |secrets: &mut Vec<String>| {
        let row = w.store().grant(&grant.id).await.unwrap().unwrap();
        for (field, ct) in [
            ("access_token", &row.access_token_ct),
            ("refresh_token", &row.refresh_token_ct),
        ] {
            if let Some(ct) = ct {
                let plain = w
                    .keys
                    .open(Owner::Grant(&grant.id), field, row.key_version, ct)
                    .unwrap();
                secrets.push(plain.to_string());
            }
        }
    };
    keep(&mut secrets).await;
    // A plain refresh, a forced one, and one whose first request never arrived.
    w.advance(Duration::hours(1));
    let token = custodian.access_token(&grant.id).await.unwrap();
    keep(&mut secrets).await;
    custodian.force_refresh(&grant.id, &token).await.unwrap();
    keep(&mut secrets).await;
    w.sb.add_fault(Fault::new("POST /oauth2/token", FaultKind::DropBeforeCommit).times(1));
    w.advance(Duration::hours(1));
    custodian.access_token(&grant.id).await.unwrap();
    keep(&mut secrets).await;
    // A lost response: one retry, then disconnected.
    w.sb.add_fault(Fault::new("POST /oauth2/token", FaultKind::DropAfterCommit).times(1));
    w.advance(Duration::hours(1));
    custodian.access_token(&grant.id).await.unwrap_err();
    let list_disconnected = cli_output(&w, GrantsCommand::List { json: false }).await;
    // Reconnect, then revoke.
    let grant = w.connect().await;
    keep(&mut secrets).await;
    let list_json = cli_output(&w, GrantsCommand::List { json: true }).await;
    let show = cli_output(
        &w,
        GrantsCommand::Show {
            alias: ALIAS.into(),
            json: false,
        },
    )
    .await;
    let show_json = cli_output(
        &w,
        GrantsCommand::Show {
            alias: ALIAS.into(),
            json: true,
        },
    )
    .await;
    custodian.revoke(&grant.id, "operator:test").await.unwrap();
    drop(_guard);

    // Assert: the capture worked at TRACE and saw the grant's life...
    let logs = String::from_utf8(capture.0.lock().clone()).unwrap();
    assert!(logs.contains("TRACE"), "captured at TRACE");
    assert!(logs.contains("refreshed the grant's tokens"));
    assert!(logs.contains("DISCONNECTED"));
    assert!(secrets.len() >= 12, "remembered {} secrets", secrets.len());
    // ...and no secret and nothing JWT-shaped appears in logs or CLI output.
    let outputs = [
        ("logs", &logs),
        ("grants list", &list_disconnected),
        ("grants list --json", &list_json),
        ("grants show", &show),
        ("grants show --json", &show_json),
    ];
    for (name, text) in outputs {
        assert!(!text.contains("eyJ"), "a JWT in {name}");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secret in {name}");
        }
    }
    // The CLI makes the disconnect prominent and lists the declared, unconnected alias.
    assert!(
        list_disconnected.starts_with("!! DISCONNECTED acme: "),
        "{list_disconnected}"
    );
    assert!(list_disconnected.contains("treasury connect acme"));
    assert!(list_disconnected.contains("payroll") && list_disconnected.contains("not connected"));
    let listed: serde_json::Value = serde_json::from_str(&list_json).unwrap();
    assert_eq!(listed[0]["alias"], ALIAS);
    assert_eq!(listed[0]["usable"], true);
    assert_eq!(listed[1]["status"], "not_connected");
    assert!(show.contains("refresh token:  held (encrypted)"), "{show}");
}

//! Issue 16 §3: text from a provider or a callback cannot forge a log line. An OAuth
//! callback whose `error` and `error_description` carry newlines (anyone can type that
//! URL) is logged and reported on one line, with the newlines escaped.

use treasury::grants::CallbackParams;

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, World};
use crate::grants_logs::capture_logs;

const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO treasury: transfer approved by ada";

// Current-thread runtime: the connector logs on this thread, under the capture.
#[tokio::test]
async fn a_callback_error_with_newlines_stays_on_its_own_log_line() {
    let (capture, _guard) = capture_logs();

    let w = World::start(TestStore::sqlite().await).await;
    let connector = w.connector();
    let started = connector.begin(ALIAS).await.unwrap();
    let params = CallbackParams {
        state: Some(started.state.clone()),
        error: Some(format!("server_error\n{FORGED}")),
        error_description: Some(format!("busy\r\n{FORGED}\u{2028}")),
        ..CallbackParams::default()
    };

    let err = connector
        .complete(&params, "test")
        .await
        .unwrap_err()
        .to_string();

    assert!(!err.contains(['\n', '\r', '\u{2028}']), "{err:?}");
    assert!(err.contains("\\n2026-01-01T00:00:00"), "{err}");
    let logs = String::from_utf8(capture.0.lock().clone()).unwrap();
    assert!(logs.contains("authorization refused"), "{logs}");
    for line in logs.lines() {
        assert!(!line.starts_with(FORGED), "a forged line: {line:?}\n{logs}");
    }
    assert!(logs.contains("server_error\\n2026"), "{logs}");
}

//! Where alerts go: always a structured log event and a metric; with `[alerts] url`, a
//! signed POST too, delivered by a task of its own so that nothing waits on the
//! receiver.
//!
//! Each POST carries `x-treasury-timestamp` (Unix seconds at sending) and
//! `x-treasury-signature: sha256=<hex HMAC-SHA256 over "{timestamp}.{body}">`. A 5xx,
//! a 429 or no answer is retried with doubling backoff, a bounded number of times; any
//! other refusal is final. A notice that cannot be delivered is logged (without the
//! secret) and counted in `treasury_alert_notices_total{kind, result="failed"}`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use super::{Alert, AlertKind};
use crate::config::{AlertKinds, Secret};

/// Notices waiting for delivery; beyond this many, new ones are dropped (and counted).
const QUEUE: usize = 1024;

/// How hard delivery tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait after the first failure; it doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The whole-request limit of one attempt.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the sink is built from.
#[derive(Clone, Debug, Default)]
pub struct SinkOptions {
    /// The notification URL and the secret that signs each POST; `None`: log only.
    pub target: Option<(url::Url, Secret)>,
    pub kinds: AlertKinds,
    pub retry: Retry,
}

enum Job {
    Deliver(Box<Alert>),
    /// Answered once everything queued before it is delivered or given up.
    Flush(oneshot::Sender<()>),
}

/// The alert sink. Cheap to clone; clones share one delivery task.
#[derive(Clone)]
pub struct AlertSink {
    kinds: AlertKinds,
    queue: Option<mpsc::Sender<Job>>,
}

impl AlertSink {
    /// Every kind on, default retries. Needs a Tokio runtime when `target` is given.
    pub fn new(target: Option<(url::Url, Secret)>) -> Self {
        Self::with(SinkOptions {
            target,
            ..SinkOptions::default()
        })
    }

    /// Starts the delivery task when there is a target (needs a Tokio runtime then).
    pub fn with(options: SinkOptions) -> Self {
        let queue = options.target.map(|(url, secret)| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let courier = Courier {
                http: reqwest::Client::builder()
                    .timeout(options.retry.timeout)
                    .build()
                    .unwrap_or_default(),
                url,
                secret: Arc::new(secret),
                retry: options.retry,
            };
            tokio::spawn(courier.run(rx));
            tx
        });
        Self {
            kinds: options.kinds,
            queue,
        }
    }

    /// Whether alerts of `kind` are on.
    pub fn is_on(&self, kind: AlertKind) -> bool {
        let k = &self.kinds;
        match kind {
            AlertKind::GrantDisconnected => k.grant_disconnected,
            AlertKind::GrantExpiring => k.grant_expiring,
            AlertKind::GrantUndecryptable => k.grant_undecryptable,
            AlertKind::TransferStuck => k.transfer_stuck,
            AlertKind::RunFailed => k.run_failed,
            AlertKind::Halt => k.halt,
            // A row changed behind the worker's back is never a matter of taste.
            AlertKind::SealBroken => true,
            // A refused edit means the reviewed change is not running: always say so.
            AlertKind::JobsRefused => true,
        }
    }

    /// Logs, counts and queues `alert` for delivery; never waits. Returns false when
    /// its kind is off (nothing happens then).
    pub fn emit(&self, alert: &Alert) -> bool {
        let kind = alert.kind.as_str();
        if !self.is_on(alert.kind) {
            tracing::debug!(alert = kind, subject = %alert.subject, "alert kind switched off in [alerts.kinds]");
            return false;
        }
        tracing::warn!(alert = kind, subject = %alert.subject, audit_seq = alert.audit_seq, message = %alert.message, "ALERT");
        metrics::counter!("treasury_alerts_total", "kind" => kind).increment(1);
        if let Some(queue) = &self.queue {
            if let Err(e) = queue.try_send(Job::Deliver(Box::new(alert.clone()))) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the delivery queue is full",
                    mpsc::error::TrySendError::Closed(_) => "delivery has stopped",
                };
                tracing::error!(alert = kind, subject = %alert.subject, "alert notice dropped: {why}");
                count(kind, "dropped");
            }
        }
        true
    }

    /// Waits until every notice queued so far is delivered or given up.
    pub async fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (tx, rx) = oneshot::channel();
        if queue.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn count(kind: &'static str, result: &'static str) {
    metrics::counter!("treasury_alert_notices_total", "kind" => kind, "result" => result)
        .increment(1);
}

/// The delivery task: one notice at a time, in order.
struct Courier {
    http: reqwest::Client,
    url: url::Url,
    secret: Arc<Secret>,
    retry: Retry,
}

/// One attempt's outcome.
enum Sent {
    Delivered,
    /// Worth another attempt (5xx, 429, no answer).
    Transient(String),
    /// Refused for good (any other status).
    Refused(String),
}

impl Courier {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Deliver(alert) => self.deliver(&alert).await,
                Job::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn deliver(&self, alert: &Alert) {
        let kind = alert.kind.as_str();
        let body = match serde_json::to_vec(alert) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(alert = kind, error = %e, "alert notice not encodable");
                return count(kind, "failed");
            }
        };
        let mut wait = self.retry.backoff;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            match self.send(&body).await {
                Sent::Delivered => return count(kind, "delivered"),
                Sent::Refused(why) => {
                    last = why;
                    break;
                }
                Sent::Transient(why) => last = why,
            }
            if attempt < self.retry.attempts {
                tracing::warn!(alert = kind, attempt, reason = %last, "alert notice not delivered; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(self.retry.max_backoff);
            }
        }
        tracing::error!(alert = kind, subject = %alert.subject, url = %self.shown_url(), reason = %last, "alert notice could not be delivered; given up");
        count(kind, "failed");
    }

    async fn send(&self, body: &[u8]) -> Sent {
        // The receiver compares this with its own wall clock, so it is real time.
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = sign(self.secret.expose().as_bytes(), &timestamp, body);
        let sent = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("x-treasury-timestamp", &timestamp)
            .header("x-treasury-signature", format!("sha256={signature}"))
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Sent::Delivered,
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                Sent::Transient(format!("HTTP {}", r.status().as_u16()))
            }
            Ok(r) => Sent::Refused(format!("HTTP {} (not retried)", r.status().as_u16())),
            Err(e) => Sent::Transient(format!("no answer: {}", e.without_url())),
        }
    }

    /// The URL without credentials or query, for logs.
    fn shown_url(&self) -> String {
        let port = self.url.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{port}{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or_default(),
            self.url.path()
        )
    }
}

/// Hex HMAC-SHA256 over `"{timestamp}.{body}"`, as the notification receiver checks it.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

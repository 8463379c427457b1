//! `[audit]`: signed audit checkpoints. Without `checkpoints`, the worker makes none.
//! The signing key is never here: it comes from `TREASURY_AUDIT_SIGNING_KEY`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[audit]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// The append-only checkpoint folder, outside the store (somewhere the store's
    /// administrators cannot write); `None`: no checkpoints.
    pub checkpoints: Option<PathBuf>,
    /// `treasury run` makes a checkpoint this often (and after every halt or approval).
    pub checkpoint_every: std::time::Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoints: None,
            checkpoint_every: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// `[audit]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    checkpoints: Option<PathBuf>,
    checkpoint_every: Option<String>,
}

impl RawAudit {
    pub(super) fn resolve(self) -> Result<AuditSettings, String> {
        let d = AuditSettings::default();
        let checkpoint_every = match self.checkpoint_every {
            None => d.checkpoint_every,
            Some(text) => crate::jobs::schedule::parse_duration(&text)
                .ok()
                .and_then(|d| d.to_std().ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("[audit] checkpoint_every = {text:?} is not a positive duration (e.g. \"15m\", \"1h\")")
                })?,
        };
        if self
            .checkpoints
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("[audit] checkpoints must be a folder path".into());
        }
        Ok(AuditSettings {
            checkpoints: self.checkpoints,
            checkpoint_every,
        })
    }
}

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
        let checkpoint_every = super::positive_duration(
            "[audit] checkpoint_every",
            self.checkpoint_every,
            d.checkpoint_every,
            "\"15m\", \"1h\"",
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuditSettings, String> {
        toml::from_str::<RawAudit>(text)
            .map_err(|e| e.to_string())?
            .resolve()
    }

    #[test]
    fn audit_settings_default_to_no_checkpoints_every_fifteen_minutes_and_refuse_bad_values() {
        assert_eq!(parse("").unwrap(), AuditSettings::default());
        let s = parse("checkpoints = \"/srv/cp\"\ncheckpoint_every = \"1h\"").unwrap();
        assert_eq!(s.checkpoints, Some(PathBuf::from("/srv/cp")));
        assert_eq!(s.checkpoint_every, std::time::Duration::from_secs(3600));
        let err = parse("checkpoint_every = \"0s\"").unwrap_err();
        assert!(err.contains("[audit] checkpoint_every"), "{err}");
        assert!(parse("checkpoints = \"\"").is_err());
        assert!(parse("every = \"1h\"").is_err());
    }
}

//! Consent records: what a connect asked for and what the provider granted, each
//! labelled as such, kept with the grant and written to the audit log.
//!
//! A record never claims what the customer saw on the provider's own page (Busha's
//! consent screen, Baanx's hosted UI, which grants "automatically"): that page is not
//! ours to see. Where our own terminal showed a consent text (Baanx API mode), the
//! record keeps that exact text. Revocation and disconnection record its end.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the provider's own consent page showed: never known to us.
pub const PROVIDER_PAGE: &str = "not recorded: the provider's own consent page is not ours to see";

/// Who started a connect, for the record: the actor, and for the CLI the OS user
/// running it (operator accounts do not exist yet).
pub fn operator_label(actor: &str) -> String {
    if actor != "operator:cli" {
        return actor.to_string();
    }
    match std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
        Ok(user) if !user.trim().is_empty() => format!("{actor} (user {})", user.trim()),
        _ => actor.to_string(),
    }
}

/// One connect's consent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub provider: String,
    /// What we asked for (scopes for Busha; Baanx documents none, so its record says so).
    pub asked_for: Labelled,
    /// What the provider reported as granted.
    pub granted: Labelled,
    /// The provider's consent page, as far as we know it ([`PROVIDER_PAGE`]).
    pub provider_page: String,
    /// The exact consent text our own screen or terminal showed, and where.
    pub shown_by_us: Option<ShownText>,
    /// When the customer consented (the code exchange).
    pub at: DateTime<Utc>,
    /// Who started the connect: the CLI user until operator accounts exist.
    pub operator: String,
    /// How the customer connected: `browser` or `terminal`.
    pub channel: String,
    /// For browser flows: the callback's client address and user agent.
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    /// Baanx's consent status for the customer (`GET /v2/consent/user/{id}`), or
    /// `unknown` when it has no record.
    pub provider_consent: Option<ProviderConsent>,
    /// Set once the grant is revoked or disconnected.
    pub ended: Option<Ended>,
}

/// A list with the label that says whose word it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labelled {
    pub label: String,
    pub items: Vec<String>,
}

impl Labelled {
    pub fn new(label: &str, items: Vec<String>) -> Self {
        Self {
            label: label.into(),
            items,
        }
    }
}

/// A consent text we showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownText {
    pub r#where: String,
    pub text: String,
}

/// The provider's own consent record of the customer, as read at connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConsent {
    /// `complete`, `incomplete`, or `unknown` (no record in our tenant).
    pub status: String,
    pub terms_and_privacy: Option<String>,
}

/// How and when a consent ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// `revoked`, `disconnected` or `lost`.
    pub how: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl ConsentRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(text: &str) -> Option<ConsentRecord> {
        serde_json::from_str(text).ok()
    }
}

/// The stored record with its end set, or `None` when there is no record to end.
pub fn ended(stored: Option<&str>, how: &str, reason: &str, at: DateTime<Utc>) -> Option<String> {
    let mut record = ConsentRecord::parse(stored?)?;
    if record.ended.is_none() {
        record.ended = Some(Ended {
            how: how.into(),
            reason: reason.into(),
            at,
        });
    }
    Some(record.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_record_keeps_the_first_end() {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let r = ConsentRecord {
            provider: "baanx".into(),
            asked_for: Labelled::new("what we asked for", vec![]),
            granted: Labelled::new("what Baanx granted", vec![]),
            provider_page: PROVIDER_PAGE.into(),
            shown_by_us: None,
            at,
            operator: "operator:cli".into(),
            channel: "terminal".into(),
            client_address: None,
            user_agent: None,
            provider_consent: None,
            ended: None,
        };
        let once = ended(Some(&r.to_json()), "revoked", "by ops", at).unwrap();
        let twice = ended(Some(&once), "disconnected", "later", at).unwrap();
        let back = ConsentRecord::parse(&twice).unwrap();
        assert_eq!(back.ended.unwrap().how, "revoked");
        assert_eq!(ended(None, "revoked", "x", at), None);
    }
}

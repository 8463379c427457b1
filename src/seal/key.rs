//! The seals' MAC key: HKDF-SHA256 of each master key version with the purpose
//! [`PURPOSE`], so that it is unrelated to the grants' token keys. An entry's MAC is
//! HMAC-SHA256 over the canonical JSON of everything in it that is known before it is
//! chained (action, actor, ids, time, payload), and sits in the payload as
//! `"mac": {"key": <version>, "tag": <hex>}`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::audit::{AuditEntry, NewAuditEntry, canonical_json};
use crate::grants::crypto::{Keyring, derive_all};

/// The HKDF info of the seal key: a purpose of its own.
pub const PURPOSE: &[u8] = b"treasury/audit-seal/v1";

/// Where the key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Derived from `TREASURY_MASTER_KEY`: seals made under it verify in any process
    /// that holds the same master key.
    MasterKey,
    /// A random key of this process only (tests and tools that run without the master
    /// key). What it seals verifies in this process and nowhere else, so a process
    /// that lacks the master key can never pass an entry off as the worker's.
    Process,
}

/// Why an entry's MAC does not prove it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("it carries no MAC")]
    Missing,
    #[error("its MAC is under key v{0}, which this process does not hold")]
    UnknownVersion(i64),
    #[error("its MAC does not match its contents (forged or edited)")]
    Invalid,
}

/// The MAC key of every master key version held. `Debug` shows versions only.
pub struct SealKeys {
    keys: BTreeMap<i64, Zeroizing<[u8; 32]>>,
    origin: KeyOrigin,
}

impl fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<String> = self.keys.keys().map(|v| format!("v{v}")).collect();
        write!(f, "SealKeys({:?}, {})", self.origin, versions.join(","))
    }
}

impl SealKeys {
    /// The seal keys of every version in `keys`.
    pub fn from_keyring(keys: &Keyring) -> Self {
        Self {
            keys: derive_all(keys, PURPOSE).into_iter().collect(),
            origin: KeyOrigin::MasterKey,
        }
    }

    /// This process's random key, the same for every store it opens.
    pub fn process() -> Arc<SealKeys> {
        static KEYS: OnceLock<Arc<SealKeys>> = OnceLock::new();
        KEYS.get_or_init(|| {
            let ring = Keyring::generate(1);
            Arc::new(Self {
                origin: KeyOrigin::Process,
                ..Self::from_keyring(&ring)
            })
        })
        .clone()
    }

    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    /// `entry` with its MAC in the payload, for appending at `at`.
    pub fn sign(&self, mut entry: NewAuditEntry, at: DateTime<Utc>) -> NewAuditEntry {
        let Some((version, key)) = self.keys.iter().next_back() else {
            return entry;
        };
        if !entry.payload.is_object() {
            entry.payload = json!({ "value": entry.payload });
        }
        let message = message(
            [&entry.action, &entry.actor],
            [&entry.run_id, &entry.job_id, &entry.grant_id],
            at.timestamp_millis(),
            &entry.payload,
        );
        let tag = tag(key, &message);
        if let Value::Object(map) = &mut entry.payload {
            map.insert("mac".into(), json!({ "key": version, "tag": tag }));
        }
        entry
    }

    /// Whether `entry`'s MAC proves that this worker's key wrote it as it stands.
    pub fn check(&self, entry: &AuditEntry) -> Result<(), MacError> {
        let mac = entry.payload.get("mac").ok_or(MacError::Missing)?;
        let version = mac
            .get("key")
            .and_then(Value::as_i64)
            .ok_or(MacError::Invalid)?;
        let tag_hex = mac
            .get("tag")
            .and_then(Value::as_str)
            .ok_or(MacError::Invalid)?;
        let key = self
            .keys
            .get(&version)
            .ok_or(MacError::UnknownVersion(version))?;
        let mut payload = entry.payload.clone();
        if let Value::Object(map) = &mut payload {
            map.remove("mac");
        }
        let message = message(
            [&entry.action, &entry.actor],
            [&entry.run_id, &entry.job_id, &entry.grant_id],
            entry.at.timestamp_millis(),
            &payload,
        );
        let tag = unhex(tag_hex).ok_or(MacError::Invalid)?;
        let mut mac = hmac(key);
        mac.update(message.as_bytes());
        mac.verify_slice(&tag).map_err(|_| MacError::Invalid)
    }
}

fn message(names: [&String; 2], ids: [&Option<String>; 3], at_ms: i64, payload: &Value) -> String {
    canonical_json(&json!({
        "action": names[0],
        "actor": names[1],
        "run_id": ids[0],
        "job_id": ids[1],
        "grant_id": ids[2],
        "at_ms": at_ms,
        "payload": payload,
    }))
}

fn hmac(key: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: a 32-byte key cannot be refused.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn tag(key: &[u8; 32], message: &str) -> String {
    let mut mac = hmac(key);
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEntry, GENESIS};

    fn chained(keys: &SealKeys, payload: Value) -> AuditEntry {
        let at = Utc::now();
        let new = keys.sign(
            NewAuditEntry::new("operator:ada", "run.approved", payload).run("run_1"),
            at,
        );
        AuditEntry::chain(1, at, new, GENESIS)
    }

    #[test]
    fn a_signed_entry_verifies_and_any_edit_or_other_key_fails() {
        let keys = SealKeys::from_keyring(&Keyring::generate(1));
        let entry = chained(&keys, json!({ "approver": "ada" }));
        assert_eq!(keys.check(&entry), Ok(()));

        let mut edited = entry.clone();
        edited.payload["approver"] = json!("mallory");
        assert_eq!(keys.check(&edited), Err(MacError::Invalid));
        let mut moved = entry.clone();
        moved.run_id = Some("run_2".into());
        assert_eq!(keys.check(&moved), Err(MacError::Invalid));

        let other = SealKeys::from_keyring(&Keyring::generate(1));
        assert_eq!(other.check(&entry), Err(MacError::Invalid));
        let mut bare = entry;
        bare.payload.as_object_mut().unwrap().remove("mac");
        assert_eq!(keys.check(&bare), Err(MacError::Missing));
    }

    #[test]
    fn the_seal_key_is_not_the_master_key_nor_a_grant_key() {
        let ring = Keyring::generate(1);
        let keys = SealKeys::from_keyring(&ring);
        let grant = derive_all(&ring, b"treasury/grant/v1run_1");
        assert_ne!(keys.keys[&1].as_ref(), grant[0].1.as_ref());
        assert_eq!(format!("{keys:?}"), "SealKeys(MasterKey, v1)");
    }
}

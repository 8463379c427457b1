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

use crate::audit::{AuditEntry, CanonicalWithout, NewAuditEntry};
use crate::grants::crypto::{Keyring, derive_all};
use crate::runs::Run;

use super::memo::{Hashes, Memo};
use super::spec::{rule_hash, spec_hash};

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
    /// Verdicts and hashes already computed, reused only for equal contents.
    memo: Memo,
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
            memo: Memo::default(),
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
        let fields = Macd {
            action: &entry.action,
            actor: &entry.actor,
            at_ms: at.timestamp_millis(),
            grant_id: &entry.grant_id,
            job_id: &entry.job_id,
            payload: CanonicalWithout {
                value: &entry.payload,
                without: "mac",
            },
            run_id: &entry.run_id,
        };
        let tag = hex::encode(mac_over(key, &fields).finalize().into_bytes());
        if let Value::Object(map) = &mut entry.payload {
            map.insert("mac".into(), json!({ "key": version, "tag": tag }));
        }
        entry
    }

    /// Whether `entry`'s MAC proves that this worker's key wrote it as it stands.
    pub fn check(&self, entry: &AuditEntry) -> Result<(), MacError> {
        self.memo.verdict(entry, || self.check_afresh(entry))
    }

    /// `run`'s (spec hash, rule hash), the rule as it applies when `required`.
    pub fn run_hashes(&self, run: &Run, required: bool) -> Hashes {
        self.memo
            .hashes(run, required, || (spec_hash(run), rule_hash(run, required)))
    }

    fn check_afresh(&self, entry: &AuditEntry) -> Result<(), MacError> {
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
        let fields = Macd {
            action: &entry.action,
            actor: &entry.actor,
            at_ms: entry.at.timestamp_millis(),
            grant_id: &entry.grant_id,
            job_id: &entry.job_id,
            payload: CanonicalWithout {
                value: &entry.payload,
                without: "mac",
            },
            run_id: &entry.run_id,
        };
        let tag = hex::decode(tag_hex).map_err(|_| MacError::Invalid)?;
        mac_over(key, &fields)
            .verify_slice(&tag)
            .map_err(|_| MacError::Invalid)
    }
}

/// What an entry's MAC covers, declared in sorted key order: serialised, it is the
/// canonical JSON of `{action, actor, at_ms, grant_id, job_id, payload, run_id}`, the
/// payload without its `mac`.
#[derive(serde::Serialize)]
struct Macd<'a> {
    action: &'a str,
    actor: &'a str,
    at_ms: i64,
    grant_id: &'a Option<String>,
    job_id: &'a Option<String>,
    payload: CanonicalWithout<'a>,
    run_id: &'a Option<String>,
}

/// HMAC-SHA256 under `key` of `fields`' canonical JSON, streamed in without a copy.
fn mac_over(key: &[u8; 32], fields: &Macd<'_>) -> Hmac<Sha256> {
    struct Feed(Hmac<Sha256>);
    impl std::io::Write for Feed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // HMAC takes keys of any length: a 32-byte key cannot be refused.
    let mut feed =
        Feed(<Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!()));
    // Serialising strings, numbers and JSON values into a MAC cannot fail.
    let _ = serde_json::to_writer(&mut feed, fields);
    feed.0
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
    fn the_mac_is_over_the_canonical_json_of_the_entry_as_it_always_was() {
        // Seals already in stores must keep verifying: the MAC is HMAC-SHA256 of the
        // canonical JSON of these fields, the payload without its `mac`.
        let ring = Keyring::generate(1);
        let keys = SealKeys::from_keyring(&ring);
        let entry = chained(
            &keys,
            json!({ "approver": "ada", "z": [1, {"b": 2, "a": null}] }),
        );
        let mut payload = entry.payload.clone();
        payload.as_object_mut().unwrap().remove("mac");
        let message = crate::audit::canonical_json(&json!({
            "action": entry.action, "actor": entry.actor, "run_id": entry.run_id,
            "job_id": entry.job_id, "grant_id": entry.grant_id,
            "at_ms": entry.at.timestamp_millis(), "payload": payload,
        }));
        let key = &keys.keys[&1];
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).unwrap();
        mac.update(message.as_bytes());
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(entry.payload["mac"]["tag"], json!(expected));
    }

    #[test]
    fn a_remembered_verdict_is_never_reused_for_an_edited_entry() {
        let keys = SealKeys::from_keyring(&Keyring::generate(1));
        let entry = chained(&keys, json!({ "approver": "ada" }));
        for _ in 0..2 {
            assert_eq!(keys.check(&entry), Ok(()), "checked, then remembered");
        }
        // The same sequence number, rewritten in the store after it was checked.
        let mut edited = entry.clone();
        edited.payload["approver"] = json!("mallory");
        assert_eq!(keys.check(&edited), Err(MacError::Invalid));
        let mut later = entry.clone();
        later.at += chrono::Duration::milliseconds(1);
        assert_eq!(keys.check(&later), Err(MacError::Invalid));
        assert_eq!(keys.check(&entry), Ok(()), "the genuine one still verifies");
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

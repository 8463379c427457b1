//! The audit log's domain: entries, their canonical encoding and hash chain, and the
//! verification that detects any edit, deletion or reorder (invariant 9).
//!
//! No IO here: the store appends and reads rows; this module says what a valid chain is.

pub mod checkpoint;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append. The payload holds amounts, rates and ids: never secrets.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEntry {
    /// Worker id (`worker:<host>-<pid>`) or operator name (`operator:<name>`).
    pub actor: String,
    /// What happened, dotted: `grant.connected`, `run.quote.intent`, ...
    pub action: String,
    pub run_id: Option<String>,
    pub job_id: Option<String>,
    pub grant_id: Option<String>,
    pub payload: Value,
}

impl NewAuditEntry {
    pub fn new(actor: impl Into<String>, action: impl Into<String>, payload: Value) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            run_id: None,
            job_id: None,
            grant_id: None,
            payload,
        }
    }
    pub fn run(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }
    pub fn job(mut self, job_id: impl Into<String>) -> Self {
        self.job_id = Some(job_id.into());
        self
    }
    pub fn grant(mut self, grant_id: impl Into<String>) -> Self {
        self.grant_id = Some(grant_id.into());
        self
    }
}

/// A stored entry, as it sits in the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub run_id: Option<String>,
    pub job_id: Option<String>,
    pub grant_id: Option<String>,
    pub payload: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// Builds the entry that follows `prev_hash` at `seq`, computing its hash.
    pub fn chain(seq: i64, at: DateTime<Utc>, new: NewAuditEntry, prev_hash: &str) -> Self {
        let mut entry = AuditEntry {
            seq,
            // The chain hashes milliseconds; keep exactly what is hashed.
            at: DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at),
            actor: new.actor,
            action: new.action,
            run_id: new.run_id,
            job_id: new.job_id,
            grant_id: new.grant_id,
            // Stored as given: every encoding of it (hash, MAC, the stored text) goes
            // through `Canonical`, which sorts keys whatever the map's order.
            payload: new.payload,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// SHA-256 (hex) over the canonical encoding of every field but `hash`: the
    /// canonical JSON of `{seq, at_ms, actor, action, run_id, job_id, grant_id,
    /// payload, prev_hash}`, streamed into the hasher without building it.
    pub fn compute_hash(&self) -> String {
        let fields = HashedFields {
            action: &self.action,
            actor: &self.actor,
            at_ms: self.at.timestamp_millis(),
            grant_id: &self.grant_id,
            job_id: &self.job_id,
            payload: Canonical(&self.payload),
            prev_hash: &self.prev_hash,
            run_id: &self.run_id,
            seq: self.seq,
        };
        let mut hasher = HashWriter(Sha256::new());
        // Serialising strings, numbers and JSON values into a hasher cannot fail.
        let _ = serde_json::to_writer(&mut hasher, &fields);
        hex(&hasher.0.finalize())
    }
}

/// The hashed fields, declared in sorted key order: serialised, they are exactly what
/// [`canonical_json`] makes of the same object.
#[derive(Serialize)]
struct HashedFields<'a> {
    action: &'a str,
    actor: &'a str,
    at_ms: i64,
    grant_id: &'a Option<String>,
    job_id: &'a Option<String>,
    payload: Canonical<'a>,
    prev_hash: &'a str,
    run_id: &'a Option<String>,
    seq: i64,
}

/// A JSON value serialised with object keys sorted at every level, without a copy.
pub(crate) struct Canonical<'a>(pub(crate) &'a Value);

/// A JSON object serialised as [`Canonical`] does, leaving out its top-level key
/// `without` (a value that is not an object is serialised whole).
pub(crate) struct CanonicalWithout<'a> {
    pub(crate) value: &'a Value,
    pub(crate) without: &'a str,
}

impl Serialize for CanonicalWithout<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(map) = self.value else {
            return Canonical(self.value).serialize(s);
        };
        let mut keys: Vec<&String> = map.keys().filter(|k| *k != self.without).collect();
        keys.sort();
        let mut m = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            m.serialize_entry(k, &Canonical(&map[k]))?;
        }
        m.end()
    }
}

impl Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut m = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    m.serialize_entry(k, &Canonical(&map[k]))?;
                }
                m.end()
            }
            Value::Array(items) => s.collect_seq(items.iter().map(Canonical)),
            other => other.serialize(s),
        }
    }
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so
/// that the hash does not depend on how a map happened to be built.
pub fn canonical_json(value: &Value) -> String {
    serde_json::to_string(&Canonical(value)).unwrap_or_default()
}

/// The first place a chain goes wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {expected} is missing (the next entry found is {found})")]
    Missing { expected: i64, found: i64 },
    #[error(
        "entry {seq} does not follow entry {prev}: its prev_hash does not match (deleted, inserted or reordered)"
    )]
    Link { seq: i64, prev: i64 },
    #[error("entry {seq} was altered: its hash does not match its contents")]
    Altered { seq: i64 },
    #[error(
        "the expected head {expected} is not in the chain (the chain was rewritten or truncated)"
    )]
    HeadNotFound { expected: String },
    #[error(
        "entry {seq} is not the entry a checkpoint recorded there: its hash differs (the chain was rewritten)"
    )]
    PinMismatch { seq: i64 },
    #[error(
        "a checkpoint recorded entry {seq}, but the chain ends at entry {head} (the chain was truncated)"
    )]
    PinBeyondHead { seq: i64, head: i64 },
}

impl ChainBreak {
    /// The first bad sequence number, where there is one.
    pub fn seq(&self) -> Option<i64> {
        match self {
            ChainBreak::Missing { expected, .. } => Some(*expected),
            ChainBreak::Link { seq, .. }
            | ChainBreak::Altered { seq }
            | ChainBreak::PinMismatch { seq } => Some(*seq),
            ChainBreak::PinBeyondHead { head, .. } => Some(head + 1),
            ChainBreak::HeadNotFound { .. } => None,
        }
    }
}

/// Checks entries streamed in `seq` order. Feed every entry to [`ChainVerifier::push`],
/// then call [`ChainVerifier::finish`].
#[derive(Debug)]
pub struct ChainVerifier {
    next_seq: i64,
    prev_hash: String,
    expect_head: Option<String>,
    head_seen: bool,
    count: u64,
    /// `(seq, hash)` that the chain must hold, ascending (from checkpoints).
    pins: std::collections::VecDeque<(i64, String)>,
}

/// A verified chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedChain {
    pub entries: u64,
    pub head_seq: i64,
    pub head_hash: String,
}

impl ChainVerifier {
    /// `expect_head`: a hash an operator recorded earlier; it must appear in the chain.
    pub fn new(expect_head: Option<String>) -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_string(),
            expect_head,
            head_seen: false,
            count: 0,
            pins: Default::default(),
        }
    }

    /// A verifier for the entries after `seq`, whose hash is `hash`: what a verified
    /// checkpoint already proved is not read again. `count` is the entries up to `seq`.
    pub fn after(seq: i64, hash: String, count: u64) -> Self {
        Self {
            next_seq: seq + 1,
            prev_hash: hash,
            count,
            ..Self::new(None)
        }
    }

    /// Requires the chain to hold entry `seq` with hash `hash` (pins past the entries
    /// this verifier starts after; ascending by `seq`).
    pub fn pin(mut self, seq: i64, hash: String) -> Self {
        self.pins.push_back((seq, hash));
        self
    }

    /// The sequence number of the next entry expected.
    pub fn next_seq(&self) -> i64 {
        self.next_seq
    }

    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        if entry.seq != self.next_seq {
            if entry.seq > self.next_seq {
                return Err(ChainBreak::Missing {
                    expected: self.next_seq,
                    found: entry.seq,
                });
            }
            return Err(ChainBreak::Link {
                seq: entry.seq,
                prev: self.next_seq - 1,
            });
        }
        if entry.prev_hash != self.prev_hash {
            return Err(ChainBreak::Link {
                seq: entry.seq,
                prev: entry.seq - 1,
            });
        }
        if entry.compute_hash() != entry.hash {
            return Err(ChainBreak::Altered { seq: entry.seq });
        }
        if self.expect_head.as_deref() == Some(entry.hash.as_str()) {
            self.head_seen = true;
        }
        while self.pins.front().is_some_and(|(seq, _)| *seq == entry.seq) {
            if let Some((seq, hash)) = self.pins.pop_front() {
                if hash != entry.hash {
                    return Err(ChainBreak::PinMismatch { seq });
                }
            }
        }
        self.prev_hash = entry.hash.clone();
        self.next_seq += 1;
        self.count += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<VerifiedChain, ChainBreak> {
        if let Some(expected) = self.expect_head {
            if !self.head_seen {
                return Err(ChainBreak::HeadNotFound { expected });
            }
        }
        if let Some((seq, _)) = self.pins.front() {
            return Err(ChainBreak::PinBeyondHead {
                seq: *seq,
                head: self.next_seq - 1,
            });
        }
        Ok(VerifiedChain {
            entries: self.count,
            head_seq: self.next_seq - 1,
            head_hash: self.prev_hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: i64) -> Vec<AuditEntry> {
        chain_by("worker:test", n)
    }

    fn chain_by(actor: &str, n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let e = AuditEntry::chain(
                    seq,
                    Utc::now(),
                    NewAuditEntry::new(actor, "run.step", json!({"amount": "10.50", "n": seq}))
                        .run("run-1"),
                    &prev,
                );
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(entries: &[AuditEntry]) -> Result<VerifiedChain, ChainBreak> {
        let mut v = ChainVerifier::new(None);
        for e in entries {
            v.push(e)?;
        }
        v.finish()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let ok = verify(&c).unwrap();
        assert_eq!(ok.entries, 5);
        assert_eq!(ok.head_hash, c[4].hash);
    }

    #[test]
    fn an_edited_payload_is_named_by_its_sequence_number() {
        let mut c = chain(5);
        c[2].payload = json!({"amount": "1000.50", "n": 3});
        assert_eq!(verify(&c).unwrap_err().seq(), Some(3));
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(
            verify(&c).unwrap_err(),
            ChainBreak::Missing {
                expected: 2,
                found: 3
            }
        );
    }

    #[test]
    fn swapped_entries_are_detected_at_the_first_swapped_position() {
        let mut c = chain(5);
        // Swap the contents of entries 2 and 3 but keep the sequence numbers in order.
        let (a, b) = (c[1].clone(), c[2].clone());
        c[1] = AuditEntry { seq: 2, ..b };
        c[2] = AuditEntry { seq: 3, ..a };
        assert_eq!(verify(&c).unwrap_err().seq(), Some(2));
    }

    #[test]
    fn the_streamed_hash_is_the_hash_of_the_canonical_json_object() {
        let payload: Value = serde_json::from_str(
            r#"{"z":[{"b":1,"a":"\u00e9\n\"q\""}],"amount":"10.50","n":null,"f":1.5,"m":{"y":true,"x":-3}}"#,
        )
        .unwrap();
        let mut e = AuditEntry::chain(
            7,
            Utc::now(),
            NewAuditEntry::new("operator:ädä", "run.approved", payload.clone()).job("j"),
            GENESIS,
        );
        // The payload as a map that was not built sorted, as a row may hold it.
        e.payload = payload;
        let body = serde_json::json!({
            "seq": e.seq, "at_ms": e.at.timestamp_millis(), "actor": e.actor,
            "action": e.action, "run_id": e.run_id, "job_id": e.job_id,
            "grant_id": e.grant_id, "payload": e.payload, "prev_hash": e.prev_hash,
        });
        let want = hex(&Sha256::digest(canonical_json(&body).as_bytes()));
        assert_eq!(e.compute_hash(), want);
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":3,"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":3,"y":2},"b":1}"#);
    }

    #[test]
    fn a_rewritten_chain_misses_the_recorded_head() {
        let c = chain(3);
        let recorded = c[1].hash.clone();
        let rewritten = chain_by("operator:mallory", 3);
        let mut v = ChainVerifier::new(Some(recorded.clone()));
        for e in &rewritten {
            v.push(e).unwrap();
        }
        assert!(matches!(v.finish(), Err(ChainBreak::HeadNotFound { .. })));
        let mut v = ChainVerifier::new(Some(recorded));
        for e in &c {
            v.push(e).unwrap();
        }
        assert!(v.finish().is_ok());
    }
}

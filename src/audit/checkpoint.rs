//! Signed audit checkpoints: what one says, its exact bytes, its hash and its signature.
//!
//! A checkpoint commits to the chain's head at one moment and to the checkpoint before
//! it, so that checkpoints kept outside the store prove the chain was neither cut nor
//! rewritten. The signed message is plain ASCII, one `key: value` line each, every line
//! ending in LF (byte for byte in the README):
//!
//! ```text
//! treasury-audit-checkpoint v1
//! number: 3
//! head_seq: 1200
//! head_hash: <64 lowercase hex>
//! entries: 1200
//! at: 2026-03-02T09:00:00.000Z
//! prev: <64 lowercase hex: SHA-256 of checkpoint 2's message; zeros for number 1>
//! ```
//!
//! The signature is pure Ed25519 (RFC 8032) over those bytes, what
//! `openssl pkeyutl -verify -rawin` checks. No IO here.

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::GENESIS;

/// The first line of every checkpoint message.
pub const MAGIC: &str = "treasury-audit-checkpoint v1";

/// What a checkpoint says. Its `prev` is the hash of the checkpoint before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// 1 for the first checkpoint, then one more each time.
    pub number: u64,
    /// The sequence number of the chain's head that this checkpoint commits to.
    pub head_seq: i64,
    /// That entry's hash.
    pub head_hash: String,
    /// Entries in the chain up to and including `head_seq`.
    pub entries: u64,
    /// When the checkpoint was made (milliseconds kept).
    pub at: DateTime<Utc>,
    /// SHA-256 (hex) of the previous checkpoint's message; [`GENESIS`] for the first.
    pub prev: String,
}

/// A checkpoint with its signature, as kept outside the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The exact signed bytes.
    pub message: Vec<u8>,
    pub signature: [u8; 64],
}

/// Why a checkpoint, or the checkpoints together, cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {what}: not a checkpoint message ({why})")]
    Malformed { what: String, why: String },
    #[error("checkpoint {number}: the signature does not verify with this public key")]
    BadSignature { number: u64 },
    #[error("checkpoint {number} follows checkpoint {prev}: the numbers must go up by one")]
    Gap { number: u64, prev: u64 },
    #[error(
        "checkpoint {number} does not follow checkpoint {}: its prev hash does not match (the checkpoints forked or one was replaced)",
        number - 1
    )]
    Unlinked { number: u64 },
    #[error(
        "checkpoint {number} goes back: head {head_seq} with {entries} entries after a checkpoint at head {prev_head_seq}"
    )]
    Backwards {
        number: u64,
        head_seq: i64,
        entries: u64,
        prev_head_seq: i64,
    },
}

impl Checkpoint {
    /// The first checkpoint (no previous one) or the one after `prev`.
    pub fn after(
        prev: Option<&SignedCheckpoint>,
        head_seq: i64,
        head_hash: &str,
        entries: u64,
        at: DateTime<Utc>,
    ) -> Checkpoint {
        Checkpoint {
            number: prev.map_or(1, |p| p.checkpoint.number + 1),
            head_seq,
            head_hash: head_hash.to_string(),
            entries,
            at: DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at),
            prev: prev.map_or_else(|| GENESIS.to_string(), SignedCheckpoint::hash),
        }
    }

    /// The exact bytes that are signed (see the module docs).
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{MAGIC}\nnumber: {}\nhead_seq: {}\nhead_hash: {}\nentries: {}\nat: {}\nprev: {}\n",
            self.number,
            self.head_seq,
            self.head_hash,
            self.entries,
            self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.prev,
        )
        .into_bytes()
    }

    /// Parses a message; only the canonical encoding is accepted, so that one
    /// checkpoint has exactly one message.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed {
            what: what.to_string(),
            why: why.to_string(),
        };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let mut lines = text.split('\n');
        if lines.next() != Some(MAGIC) {
            return Err(bad("the first line is not the v1 header"));
        }
        let mut field = |key: &str| -> Result<&str, CheckpointError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(": "))
                .ok_or_else(|| bad(&format!("expected the `{key}` line")))
        };
        let number = field("number")?
            .parse()
            .map_err(|_| bad("number is not a count"))?;
        let head_seq = field("head_seq")?
            .parse()
            .map_err(|_| bad("head_seq is not a sequence number"))?;
        let head_hash = hex64(field("head_hash")?).ok_or_else(|| bad("head_hash is not 64 hex"))?;
        let entries = field("entries")?
            .parse()
            .map_err(|_| bad("entries is not a count"))?;
        let at = DateTime::parse_from_rfc3339(field("at")?)
            .map_err(|_| bad("at is not an RFC 3339 time"))?
            .with_timezone(&Utc);
        let prev = hex64(field("prev")?).ok_or_else(|| bad("prev is not 64 hex"))?;
        let cp = Checkpoint {
            number,
            head_seq,
            head_hash,
            entries,
            at,
            prev,
        };
        if cp.message() != bytes {
            return Err(bad("not in canonical form (extra text, spacing or digits)"));
        }
        Ok(cp)
    }

    /// Signs this checkpoint.
    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let message = self.message();
        let signature = key.sign(&message).to_bytes();
        SignedCheckpoint {
            checkpoint: self,
            message,
            signature,
        }
    }
}

impl SignedCheckpoint {
    /// Parses a stored message and signature and proves the signature.
    pub fn open(
        what: &str,
        message: Vec<u8>,
        signature: &[u8],
        key: &VerifyingKey,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        let checkpoint = Checkpoint::parse(what, &message)?;
        let number = checkpoint.number;
        let signature: [u8; 64] = signature
            .try_into()
            .map_err(|_| CheckpointError::BadSignature { number })?;
        key.verify(&message, &Signature::from_bytes(&signature))
            .map_err(|_| CheckpointError::BadSignature { number })?;
        Ok(SignedCheckpoint {
            checkpoint,
            message,
            signature,
        })
    }

    /// SHA-256 (hex) of the message: what the next checkpoint's `prev` holds
    /// (`sha256sum` of the `.msg` file).
    pub fn hash(&self) -> String {
        super::hex(&Sha256::digest(&self.message))
    }
}

/// Proves that `checkpoints` (in file order) form one unbroken chain from number 1:
/// numbers go up by one, each `prev` is the hash of the one before, and heads never go
/// back. Signatures are proven when each is opened.
pub fn check_links(checkpoints: &[SignedCheckpoint]) -> Result<(), CheckpointError> {
    let mut prev: Option<&SignedCheckpoint> = None;
    for cp in checkpoints {
        let c = &cp.checkpoint;
        let (want_number, want_prev) = prev.map_or((1, GENESIS.to_string()), |p| {
            (p.checkpoint.number + 1, p.hash())
        });
        if c.number != want_number {
            return Err(CheckpointError::Gap {
                number: c.number,
                prev: want_number - 1,
            });
        }
        if c.prev != want_prev {
            return Err(CheckpointError::Unlinked { number: c.number });
        }
        if let Some(p) = prev {
            if c.head_seq < p.checkpoint.head_seq || c.entries < p.checkpoint.entries {
                return Err(CheckpointError::Backwards {
                    number: c.number,
                    head_seq: c.head_seq,
                    entries: c.entries,
                    prev_head_seq: p.checkpoint.head_seq,
                });
            }
        }
        prev = Some(cp);
    }
    Ok(())
}

fn hex64(s: &str) -> Option<String> {
    (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = byte
                .wrapping_mul(31)
                .wrapping_add((i as u8).wrapping_mul(97))
                ^ 0x5a;
        }
        SigningKey::from_bytes(&seed)
    }

    fn chain_of(n: u64, key: &SigningKey) -> Vec<SignedCheckpoint> {
        let mut out: Vec<SignedCheckpoint> = Vec::new();
        for i in 1..=n {
            let seq = i64::try_from(i * 10).unwrap();
            let cp = Checkpoint::after(out.last(), seq, &"ab".repeat(32), i * 10, Utc::now());
            out.push(cp.sign(key));
        }
        out
    }

    #[test]
    fn a_message_parses_back_to_the_same_checkpoint_and_nothing_else_does() {
        let cp = Checkpoint::after(None, 7, &"0f".repeat(32), 7, Utc::now());
        let msg = cp.message();
        assert_eq!(Checkpoint::parse("t", &msg).unwrap(), cp);
        let text = String::from_utf8(msg).unwrap();
        for bad in [
            text.replace("number: 1", "number: 01"),
            text.replace("entries: 7\n", "entries: 7 \n"),
            format!("{text}\n"),
            text.replace(MAGIC, "treasury-audit-checkpoint v2"),
        ] {
            assert!(Checkpoint::parse("t", bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_its_message() {
        let k = key(1);
        let cp = Checkpoint::after(None, 3, &"0f".repeat(32), 3, Utc::now()).sign(&k);
        let pk = k.verifying_key();
        assert!(SignedCheckpoint::open("t", cp.message.clone(), &cp.signature, &pk).is_ok());
        let other = key(2).verifying_key();
        assert!(SignedCheckpoint::open("t", cp.message.clone(), &cp.signature, &other).is_err());
        let edited = String::from_utf8(cp.message.clone())
            .unwrap()
            .replace("head_seq: 3", "head_seq: 2");
        assert_eq!(
            SignedCheckpoint::open("t", edited.into_bytes(), &cp.signature, &pk),
            Err(CheckpointError::BadSignature { number: 1 })
        );
    }

    #[test]
    fn checkpoints_must_link_without_gaps_or_forks() {
        let k = key(3);
        let c = chain_of(4, &k);
        assert!(check_links(&c).is_ok());
        let mut gap = c.clone();
        gap.remove(1);
        assert!(matches!(
            check_links(&gap),
            Err(CheckpointError::Gap { number: 3, .. })
        ));
        // A fork: a second checkpoint 3 made from checkpoint 2 with another head.
        let mut fork = c[..2].to_vec();
        let other = Checkpoint::after(Some(&c[1]), 25, &"cd".repeat(32), 25, Utc::now());
        fork.push(other.sign(&k));
        fork.push(c[3].clone());
        assert_eq!(
            check_links(&fork),
            Err(CheckpointError::Unlinked { number: 4 })
        );
    }
}

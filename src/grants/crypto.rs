//! Tokens at rest (invariant 7): AES-256-GCM under a key derived per grant.
//!
//! - The master key comes from `TREASURY_MASTER_KEY`: base64 of 32 random bytes, or a
//!   comma-separated list `v2:<b64>,v1:<b64>` for rotation. The newest version seals;
//!   every listed version opens.
//! - Each grant's key is HKDF-SHA256(master, info = "treasury/grant/v1" ‖ grant id).
//! - Every ciphertext is `hex(nonce ‖ ciphertext+tag)` with a fresh random 96-bit nonce,
//!   and its associated data is the grant id and the field name, so a ciphertext copied
//!   into another row or another column does not open.
//!
//! Nothing here logs, and no error carries key or token bytes.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The environment variable that holds the master key(s).
pub const MASTER_KEY_ENV: &str = "TREASURY_MASTER_KEY";

const NONCE_LEN: usize = 12;

/// A master key that cannot be used, and why. Never holds key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MasterKeyError {
    #[error(
        "{MASTER_KEY_ENV} is not set: set it to the base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    Missing,
    #[error("{MASTER_KEY_ENV}: {0}")]
    Invalid(String),
}

/// A ciphertext that does not open, or a version we lack. Never holds plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "the {field} of {context} is sealed under master key v{version}, which {MASTER_KEY_ENV} does not hold"
    )]
    UnknownVersion {
        context: String,
        field: &'static str,
        version: i64,
    },
    #[error(
        "the {field} of {context} does not decrypt under master key v{version}: the master key is wrong or the stored ciphertext was altered"
    )]
    Undecryptable {
        context: String,
        field: &'static str,
        version: i64,
    },
}

/// One version of the master key. Zeroized on drop; `Debug` shows only the version.
struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
}

/// Every master key version we hold. Cheap to share behind an `Arc`.
pub struct Keyring {
    keys: BTreeMap<i64, MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<String> = self.keys.keys().map(|v| format!("v{v}")).collect();
        write!(f, "Keyring({})", versions.join(","))
    }
}

/// Which row a ciphertext belongs to: HKDF context and associated data.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    /// A grant, by id.
    Grant(&'a str),
    /// A pending authorization, by state hash.
    Authorization(&'a str),
}

impl Owner<'_> {
    fn info(&self) -> Vec<u8> {
        let (prefix, id) = match self {
            Owner::Grant(id) => ("treasury/grant/v1", id),
            Owner::Authorization(id) => ("treasury/authorization/v1", id),
        };
        [prefix.as_bytes(), id.as_bytes()].concat()
    }

    fn describe(&self) -> String {
        match self {
            Owner::Grant(id) => format!("grant {id}"),
            Owner::Authorization(_) => "a pending authorization".to_string(),
        }
    }

    fn id(&self) -> &str {
        match self {
            Owner::Grant(id) | Owner::Authorization(id) => id,
        }
    }
}

impl Keyring {
    /// Reads [`MASTER_KEY_ENV`].
    pub fn from_env() -> Result<Keyring, MasterKeyError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) => Keyring::parse(&Zeroizing::new(v)),
            Err(_) => Err(MasterKeyError::Missing),
        }
    }

    /// Parses `b64` (version 1) or `v2:b64,v1:b64`. Refuses short, long and weak keys
    /// and repeated versions; errors name the version, never the key.
    pub fn parse(spec: &str) -> Result<Keyring, MasterKeyError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(MasterKeyError::Missing);
        }
        let mut keys = BTreeMap::new();
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        for part in &parts {
            let (version, b64) = match part.split_once(':') {
                Some((v, b64)) => {
                    let version = v
                        .strip_prefix('v')
                        .and_then(|n| n.parse::<i64>().ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            MasterKeyError::Invalid(
                                "each entry must look like v<N>:<base64>, with N ≥ 1".into(),
                            )
                        })?;
                    (version, b64)
                }
                None if parts.len() == 1 => (1, *part),
                None => {
                    return Err(MasterKeyError::Invalid(
                        "with several keys, prefix each with its version: v2:<base64>,v1:<base64>"
                            .into(),
                    ));
                }
            };
            let key = decode_key(version, b64)?;
            if keys.insert(version, key).is_some() {
                return Err(MasterKeyError::Invalid(format!(
                    "version v{version} is listed twice"
                )));
            }
        }
        Ok(Keyring { keys })
    }

    /// A keyring of fresh random keys, versions `1..=versions` (tests and demos).
    pub fn generate(versions: i64) -> Keyring {
        let mut keys = BTreeMap::new();
        for v in 1..=versions.max(1) {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand::thread_rng().fill_bytes(bytes.as_mut());
            keys.insert(v, MasterKey { bytes });
        }
        Keyring { keys }
    }

    /// The version that seals.
    pub fn newest(&self) -> i64 {
        // `parse` and `generate` never build an empty keyring.
        self.keys.keys().next_back().copied().unwrap_or(1)
    }

    /// Every version held, oldest first.
    pub fn versions(&self) -> Vec<i64> {
        self.keys.keys().copied().collect()
    }

    fn cipher(
        &self,
        owner: Owner<'_>,
        version: i64,
        field: &'static str,
    ) -> Result<Aes256Gcm, CryptoError> {
        let master = self
            .keys
            .get(&version)
            .ok_or_else(|| CryptoError::UnknownVersion {
                context: owner.describe(),
                field,
                version,
            })?;
        let hk = Hkdf::<Sha256>::new(None, master.bytes.as_ref());
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
        hk.expand(&owner.info(), okm.as_mut())
            .map_err(|_| CryptoError::Undecryptable {
                context: owner.describe(),
                field,
                version,
            })?;
        Ok(Aes256Gcm::new(okm.as_ref().into()))
    }

    /// Seals `plaintext` as `field` of `owner` under the newest key; returns the version
    /// and `hex(nonce ‖ ciphertext)`.
    pub fn seal(
        &self,
        owner: Owner<'_>,
        field: &'static str,
        plaintext: &str,
    ) -> Result<(i64, String), CryptoError> {
        let version = self.newest();
        let cipher = self.cipher(owner, version, field)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = aad(owner, field);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Undecryptable {
                context: owner.describe(),
                field,
                version,
            })?;
        let mut out = String::with_capacity(2 * (NONCE_LEN + ct.len()));
        for b in nonce.iter().chain(ct.iter()) {
            out.push_str(&format!("{b:02x}"));
        }
        Ok((version, out))
    }

    /// Opens what [`Keyring::seal`] produced for the same owner and field.
    pub fn open(
        &self,
        owner: Owner<'_>,
        field: &'static str,
        version: i64,
        sealed: &str,
    ) -> Result<Zeroizing<String>, CryptoError> {
        let bad = || CryptoError::Undecryptable {
            context: owner.describe(),
            field,
            version,
        };
        let cipher = self.cipher(owner, version, field)?;
        let bytes = unhex(sealed).ok_or_else(bad)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(bad());
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let aad = aad(owner, field);
        let mut plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| bad())?;
        let text = match String::from_utf8(std::mem::take(&mut plain)) {
            Ok(s) => Zeroizing::new(s),
            Err(e) => {
                e.into_bytes().zeroize();
                return Err(bad());
            }
        };
        Ok(text)
    }
}

fn aad(owner: Owner<'_>, field: &str) -> Vec<u8> {
    [owner.id().as_bytes(), b"\0", field.as_bytes()].concat()
}

fn decode_key(version: i64, b64: &str) -> Result<MasterKey, MasterKeyError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let decoded = Zeroizing::new(
        engine
            .decode(b64.trim())
            .map_err(|_| MasterKeyError::Invalid(format!("key v{version} is not valid base64")))?,
    );
    if decoded.len() != 32 {
        return Err(MasterKeyError::Invalid(format!(
            "key v{version} decodes to {} bytes; it must be exactly 32 random bytes",
            decoded.len()
        )));
    }
    let mut distinct = [false; 256];
    for b in decoded.iter() {
        distinct[*b as usize] = true;
    }
    let count = distinct.iter().filter(|d| **d).count();
    // 32 random bytes have about 30 distinct values; fewer than 16 is a made-up key
    // (a repeated byte, a short pattern, ASCII words) with a chance of about 1e-10.
    if count < 16 {
        return Err(MasterKeyError::Invalid(format!(
            "key v{version} is weak ({count} distinct byte values in 32); generate it with `openssl rand -base64 32`"
        )));
    }
    if let Some(pattern) = progression(&decoded) {
        return Err(MasterKeyError::Invalid(format!(
            "key v{version} is weak (its bytes {pattern}); generate it with `openssl rand -base64 32`"
        )));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    bytes.copy_from_slice(&decoded);
    Ok(MasterKey { bytes })
}

/// Bytes that step by one constant difference (mod 256): all the same, counting up
/// (00 01 02 .. 1f), counting down, or counting in any fixed stride. Every such key has
/// up to 32 distinct values, so the distinct-count check alone lets it through; 32
/// random bytes form a progression with a chance of 2^-240.
fn progression(bytes: &[u8]) -> Option<&'static str> {
    let (first, second) = (*bytes.first()?, *bytes.get(1)?);
    let step = second.wrapping_sub(first);
    let constant = bytes.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step);
    match (constant, step) {
        (false, _) => None,
        (true, 0) => Some("are all the same"),
        (true, 1) => Some("count up by one"),
        (true, 255) => Some("count down by one"),
        (true, _) => Some("count in a fixed stride"),
    }
}

/// The HKDF-SHA256 key of every master key version for `info` (a purpose of its own,
/// e.g. the audit seals'), newest last. The master keys never leave this module.
pub(crate) fn derive_all(keys: &Keyring, info: &[u8]) -> Vec<(i64, Zeroizing<[u8; 32]>)> {
    keys.keys
        .iter()
        .map(|(version, master)| {
            let hk = Hkdf::<Sha256>::new(None, master.bytes.as_ref());
            let mut okm = Zeroizing::new([0u8; 32]);
            // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail,
            // and an all-zero key would only fail every MAC check (never pass one).
            let _ = hk.expand(info, okm.as_mut());
            (*version, okm)
        })
        .collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An OAuth2 refresh token. `Debug` shows `RefreshToken(***)`; there is no `Display`;
/// the memory is zeroized on drop.
#[derive(Clone)]
pub struct RefreshToken(Zeroizing<String>);

impl RefreshToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Zeroizing::new(token.into()))
    }

    /// The raw token, for the token endpoint and the sealer only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn random_b64() -> String {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        b64(&k)
    }

    #[test]
    fn sealed_token_opens_only_for_its_own_grant_and_field() {
        let ring = Keyring::generate(1);
        let (v, ct) = ring
            .seal(Owner::Grant("g1"), "refresh_token", "rt-secret")
            .unwrap();
        assert_eq!(
            ring.open(Owner::Grant("g1"), "refresh_token", v, &ct)
                .unwrap()
                .as_str(),
            "rt-secret"
        );
        assert!(matches!(
            ring.open(Owner::Grant("g2"), "refresh_token", v, &ct),
            Err(CryptoError::Undecryptable { .. })
        ));
        assert!(matches!(
            ring.open(Owner::Grant("g1"), "access_token", v, &ct),
            Err(CryptoError::Undecryptable { .. })
        ));
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let ring = Keyring::generate(1);
        let a = ring.seal(Owner::Grant("g"), "f", "same").unwrap().1;
        let b = ring.seal(Owner::Grant("g"), "f", "same").unwrap().1;
        assert_ne!(a, b);
    }

    #[test]
    fn a_flipped_bit_is_a_clear_error_not_a_wrong_token() {
        let ring = Keyring::generate(1);
        let (v, ct) = ring.seal(Owner::Grant("g"), "access_token", "tok").unwrap();
        for i in [0, ct.len() / 2, ct.len() - 1] {
            let mut bytes = ct.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(bytes).unwrap();
            let err = ring
                .open(Owner::Grant("g"), "access_token", v, &tampered)
                .unwrap_err();
            assert!(err.to_string().contains("altered"), "{err}");
        }
        assert!(
            ring.open(Owner::Grant("g"), "access_token", v, "zz")
                .is_err()
        );
        assert!(ring.open(Owner::Grant("g"), "access_token", v, "").is_err());
    }

    #[test]
    fn rotation_seals_with_the_newest_and_opens_every_version() {
        let (k1, k2) = (random_b64(), random_b64());
        let old = Keyring::parse(&k1).unwrap();
        let (v1, ct1) = old.seal(Owner::Grant("g"), "f", "one").unwrap();
        assert_eq!(v1, 1);
        let both = Keyring::parse(&format!("v2:{k2}, v1:{k1}")).unwrap();
        assert_eq!(both.newest(), 2);
        assert_eq!(
            both.open(Owner::Grant("g"), "f", 1, &ct1).unwrap().as_str(),
            "one"
        );
        let (v2, _) = both.seal(Owner::Grant("g"), "f", "two").unwrap();
        assert_eq!(v2, 2);
        let only_new = Keyring::parse(&format!("v2:{k2}")).unwrap();
        let err = only_new.open(Owner::Grant("g"), "f", 1, &ct1).unwrap_err();
        assert!(err.to_string().contains("does not hold"), "{err}");
    }

    #[test]
    fn missing_short_and_weak_master_keys_are_refused_without_echoing_them() {
        assert_eq!(Keyring::parse("  ").unwrap_err(), MasterKeyError::Missing);
        let short = b64(&[7u8; 16]);
        let weak = b64(&[0x41u8; 32]);
        let pattern = b64(b"abcdabcdabcdabcdabcdabcdabcdabcd");
        for (key, says) in [
            (short.as_str(), "16 bytes"),
            (weak.as_str(), "weak"),
            (pattern.as_str(), "weak"),
            ("not base64!", "not valid base64"),
        ] {
            let err = Keyring::parse(key).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
            assert!(!err.contains(key), "the error echoes the key: {err}");
        }
        let k = random_b64();
        let err = Keyring::parse(&format!("v1:{k},v1:{k}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice") && !err.contains(&k), "{err}");
    }

    #[test]
    fn counting_and_repeated_bytes_are_refused_as_weak() {
        let up: Vec<u8> = (0x00..=0x1f).collect();
        let down: Vec<u8> = (0xe0..=0xffu8).rev().collect();
        let stride: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(71).wrapping_add(3))
            .collect();
        let wraps: Vec<u8> = (0..32u8).map(|i| i.wrapping_add(0xf0)).collect();
        for (bytes, says) in [
            (up, "count up by one"),
            (down, "count down by one"),
            (stride, "fixed stride"),
            (wraps, "count up by one"),
        ] {
            let err = Keyring::parse(&b64(&bytes)).unwrap_err().to_string();
            assert!(err.contains("weak") && err.contains(says), "{err}");
        }
        // One byte out of step is not a progression (it is a poor key, but not a
        // visibly counting one; the distinct-count check judges it).
        let mut nearly: Vec<u8> = (0x00..=0x1f).collect();
        nearly[17] = 0x99;
        assert!(Keyring::parse(&b64(&nearly)).is_ok());
        assert!(Keyring::parse(&random_b64()).is_ok());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let ring = Keyring::parse(&random_b64()).unwrap();
        assert_eq!(format!("{ring:?}"), "Keyring(v1)");
        assert_eq!(
            format!("{:?}", RefreshToken::new("rt-123")),
            "RefreshToken(***)"
        );
    }
}

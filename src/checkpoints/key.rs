//! The audit signing key: an Ed25519 seed from `TREASURY_AUDIT_SIGNING_KEY`, refused
//! when it is visibly not random, and its public key in the forms auditors use.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use zeroize::Zeroizing;

/// The variable that holds the base64 of the 32-byte Ed25519 seed.
pub const SIGNING_KEY_ENV: &str = "TREASURY_AUDIT_SIGNING_KEY";

/// What is wrong with a key. Never carries the key itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{SIGNING_KEY_ENV} is not set; generate one with `treasury audit keygen` and keep it in the environment"
    )]
    Missing,
    #[error("{SIGNING_KEY_ENV} {0}")]
    Invalid(String),
    #[error("--public-key: {0}")]
    PublicKey(String),
}

/// Reads and checks the signing key from the environment.
pub fn signing_key_from_env() -> Result<SigningKey, KeyError> {
    let text = Zeroizing::new(std::env::var(SIGNING_KEY_ENV).map_err(|_| KeyError::Missing)?);
    if text.trim().is_empty() {
        return Err(KeyError::Missing);
    }
    parse_signing_key(&text)
}

/// Parses the base64 of a 32-byte seed and refuses a weak one.
pub fn parse_signing_key(b64: &str) -> Result<SigningKey, KeyError> {
    let decoded = Zeroizing::new(
        STANDARD
            .decode(b64.trim())
            .map_err(|_| KeyError::Invalid("is not valid base64".into()))?,
    );
    let seed: Zeroizing<[u8; 32]> =
        Zeroizing::new(decoded.as_slice().try_into().map_err(|_| {
            KeyError::Invalid(format!(
                "decodes to {} bytes; it must be exactly 32 random bytes",
                decoded.len()
            ))
        })?);
    if let Some(why) = weakness(&seed) {
        return Err(KeyError::Invalid(format!(
            "is weak ({why}); generate one with `treasury audit keygen`"
        )));
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// Why 32 bytes are visibly not random, if they are: few distinct values (a repeated
/// byte, a short pattern, ASCII words), or a counting run such as 00 01 .. 1f (any
/// constant step, up or down). 32 random bytes have about 30 distinct values and a
/// constant step with a chance of 2^-248.
pub fn weakness(bytes: &[u8; 32]) -> Option<String> {
    let mut seen = [false; 256];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < 16 {
        return Some(format!("{distinct} distinct byte values in 32"));
    }
    let step = bytes[1].wrapping_sub(bytes[0]);
    if bytes.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
        return Some("its bytes count with a constant step".into());
    }
    None
}

/// A new random seed, base64: what `treasury audit keygen` prints.
pub fn generate() -> String {
    loop {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        if weakness(&seed).is_none() {
            return STANDARD.encode(seed.as_ref());
        }
    }
}

/// The public key as a PEM SubjectPublicKeyInfo (`openssl pkeyutl -pubin -inkey`).
pub fn public_key_pem(key: &VerifyingKey) -> String {
    // Encoding a 32-byte Ed25519 key as SPKI cannot fail; the fallback never shows.
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// Reads `--public-key`: PEM text, a file holding PEM, or the base64 of the raw 32 bytes.
pub fn parse_public_key(arg: &str) -> Result<VerifyingKey, KeyError> {
    let text = if arg.trim_start().starts_with("-----BEGIN") {
        arg.to_string()
    } else if std::path::Path::new(arg).is_file() {
        std::fs::read_to_string(arg)
            .map_err(|e| KeyError::PublicKey(format!("cannot read {arg}: {e}")))?
    } else {
        let raw = STANDARD.decode(arg.trim()).map_err(|_| {
            KeyError::PublicKey(format!(
                "{arg:?} is neither PEM, a readable PEM file, nor base64 of 32 bytes"
            ))
        })?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::PublicKey(format!("decodes to {} bytes, not 32", raw.len())))?;
        return VerifyingKey::from_bytes(&raw)
            .map_err(|_| KeyError::PublicKey("is not an Ed25519 public key".into()));
    };
    VerifyingKey::from_public_key_pem(&text)
        .map_err(|e| KeyError::PublicKey(format!("not an Ed25519 PEM public key ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_seeds_are_refused_without_echoing_them() {
        let counting: Vec<u8> = (0u8..32).collect();
        let down: Vec<u8> = (0u8..32).map(|i| 200 - i * 3).collect();
        for weak in [
            vec![0x41u8; 32],
            counting,
            down,
            b"abcdabcdabcdabcdabcdabcdabcdabcd".to_vec(),
        ] {
            let b64 = STANDARD.encode(&weak);
            let err = parse_signing_key(&b64).unwrap_err().to_string();
            assert!(err.contains("weak"), "{err}");
            assert!(!err.contains(&b64), "{err}");
        }
        assert!(parse_signing_key(&STANDARD.encode([7u8; 31])).is_err());
        assert!(parse_signing_key("not base64!").is_err());
    }

    #[test]
    fn a_generated_key_parses_and_its_public_key_round_trips_in_every_form() {
        let key = parse_signing_key(&generate()).unwrap();
        let public = key.verifying_key();
        let pem = public_key_pem(&public);
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(parse_public_key(&pem).unwrap(), public);
        let raw = STANDARD.encode(public.as_bytes());
        assert_eq!(parse_public_key(&raw).unwrap(), public);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &pem).unwrap();
        assert_eq!(
            parse_public_key(file.path().to_str().unwrap()).unwrap(),
            public
        );
        assert!(parse_public_key("AAAA").is_err());
    }
}

//! The sandbox issuer's RS256 signing keys: generation, rotation, JWKS, sign and verify.
//!
//! Signing and verification go through `jsonwebtoken` (on ring); key generation goes
//! through the `rsa` crate because ring cannot generate RSA keys. Nothing here is
//! hand-rolled crypto.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One RSA key with its key id.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    n: String,
    e: String,
}

impl SigningKey {
    fn from_rsa(key: &RsaPrivateKey) -> Self {
        // The DER encoding of a key we just generated cannot fail.
        let der = key.to_pkcs1_der().expect("encode a generated RSA key");
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let decoding = DecodingKey::from_rsa_components(&n, &e).expect("valid RSA components");
        Self {
            kid: format!("sandbox-{}", nanoid::nanoid!(10)),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            n,
            e,
        }
    }
}

fn generate_rsa() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("generate a 2048-bit RSA key")
}

/// Key generation takes a noticeable time, and tests start many sandboxes: every
/// sandbox in a process starts from the same key material under its own `kid`.
/// Rotation always generates fresh material.
fn first_key_material() -> &'static RsaPrivateKey {
    static FIRST: OnceLock<RsaPrivateKey> = OnceLock::new();
    FIRST.get_or_init(generate_rsa)
}

/// The published keys. The newest signs; older ones stay in the JWKS until retired so
/// that tokens they signed keep verifying.
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
}

/// Why a JWT was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token was signed with an unknown key")]
    UnknownKey,
    #[error("token signature or claims are invalid")]
    Invalid,
}

impl KeySet {
    pub fn new() -> Self {
        Self {
            keys: vec![Arc::new(SigningKey::from_rsa(first_key_material()))],
        }
    }

    /// Generates a new signing key. With `retire_old`, earlier keys leave the JWKS and
    /// tokens they signed stop verifying.
    pub fn rotate(&mut self, retire_old: bool) -> String {
        let key = Arc::new(SigningKey::from_rsa(&generate_rsa()));
        if retire_old {
            self.keys.clear();
        }
        let kid = key.kid.clone();
        self.keys.push(key);
        kid
    }

    pub fn active(&self) -> Arc<SigningKey> {
        // There is always at least one key: `new` creates one and `rotate` pushes one.
        self.keys.last().cloned().expect("a key set is never empty")
    }

    /// Signs `claims` as an RS256 JWT with the active key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let key = self.active();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign RS256 claims")
    }

    /// Checks the signature of an RS256 JWT issued by `issuer`. Time claims are checked
    /// by the caller against the sandbox clock, not the wall clock.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, issuer: &str) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(VerifyError::Invalid);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(VerifyError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[issuer]);
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)
    }

    /// The JWKS document (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256",
                    "kid": k.kid, "n": k.n, "e": k.e,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

impl Default for KeySet {
    fn default() -> Self {
        Self::new()
    }
}

//! The sandbox issuer's RS256 signing keys: generation, rotation, JWKS, sign and verify.
//!
//! Signing and verification go through `jsonwebtoken` (on ring); key generation goes
//! through the `rsa` crate because ring cannot generate RSA keys. Nothing here is
//! hand-rolled crypto.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
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

/// The first signing key of every sandbox (PKCS#1 DER, base64), under a fresh `kid`
/// per sandbox. Generating a 2048-bit key costs about half a second, and every test
/// process starts its own sandbox; this key only ever signs sandbox tokens, so it is
/// published here. Rotation always generates fresh material.
const FIRST_KEY_DER_B64: &str = concat!(
    "MIIEowIBAAKCAQEAvWBejftxyvf1nlixwkeOksnNUAaGMEfaYGybzEHRTRsRFeVEOHfyxuD2pF6s9xfVSrE2jCCF",
    "biNx1ksN/8EzBmQeyORzEd7ik0ma5eKZ+vYG/l/OlVqm9iG86bzgGOSVcmovpqVHmNCYjq+F30trsG96YvTjD9MM",
    "fohNKxPefKV2bBFPULk9PPKC4giJOkK76HV13ljU1m8zJ5PJt3YC+hvcjVz3AD+8sqmuj8WH/3/xG5mM0eF935Vx",
    "zLdel7d0A3a3kkeaJpGgpas4VAPIRG7EPL9FJSunsXnrT5a6/e2KB4JFrY8ZBUD9y751tslNnBal8T3yL7gsdTKM",
    "xvVI0wIDAQABAoIBAC9kHPV6Da2F5N0GBCICxz6bqroSj+UoLhGATHLOq8KYeeuZTru05Lf5Vy+mE7HYMIO7GlPx",
    "1YJM83F1oeC1Z//68StD5Dn+JYRHYLCTxwXjKLfioO+GWo7wvXZe0lPYbD/QK/GPnf2zgeH/McjB9oaWNzHpZ6Mv",
    "pQpLMMiNddmKHltNUJ+QWOgqkGs8lwpNlDRbasPy/wg8LTQ2VZRAkCR8LP8RF+iAi45F1ZFN7tkP3z6EUwN9bJJU",
    "oLdU39N9QqMs44tLVsk029CcFMTVA4ud4tkhszhjYijJ/hX1+b/fC3JT9yu92kAR7/FW5iSVTFP5HTXsNL0U1noD",
    "7g5H6bUCgYEA6NMP3ZevKdkQCj2YC165OBf/bavCssRr5GCi4dE+CsJ6Van/JUGDNCwb6tfeTmoQkEhZXTX92g9M",
    "F7kx6TYX6lxz2/QeGSOg0O6bpuS8Ctu1EOcRX94THV4j/yD51+hqOYpiRbfQu2/AC5WwesIOd30xJbR2JHyCDDE6",
    "5PrvbQ0CgYEA0DolNsy3HuTdVaBDiFdDI+1wEz5GEskHSf6eZgFcZz7QZuCmKTHPDYT+m0PHKT2rIDJbZHkA4gc6",
    "Y78w1pEc8tAoJSB6X9dPezj4fd6r5BQ7wfHXcSit95x4dcdTRTjTCKomvjnctcsSYqn0u4kmzqO9e9HFuZc/B7zg",
    "22Pg1V8CgYEAtIUhohDAEdRpaWdEglxZhDKnK+OnPHCrrxF2eVyBnFoZ/F2opLxc/JDOvJHPnkECwrw1/d2lC/Qc",
    "bbB8EHSOqnowovRuedN0F0tKiGaFnm2nwIlIoWpQq86YXnK1BUEBS8gOVjwlrY8B+nl/sk7QZLk+6Bs6FyQquUVa",
    "grxF8+kCgYBhnIBJehn1z4+6ThCaX13H/8xkGPM8ZySVmVijtMueUqHbOEBsWz8WtVutaU55lMEdrL2PEfJKAt1q",
    "WPwJ+ai6Yr4O+XSkbQiDWSeTyciGeL2yoy49i7ZRtvX5MGFmt8al7y2OSw2d4v5RZh6lsxuQDs4Kt0GbSL1xYSd/",
    "cQi6vQKBgF2dzcfXLjO87lIOmyY/5WFeLz/KosbxaV8zyAAFcdBWw47felV42OfdoHu/JdRvGnT/QTQshDzqYGFZ",
    "fgZJy6zSyGoBSVwS9w4cuocVYJhzA6Elt8dFwRV4JeMcGfEwsJKzribwozLHDy0Ku3xQ5p8stgmDasB7sfCelWz1",
    "y42M",
);

fn first_key_material() -> &'static RsaPrivateKey {
    static FIRST: OnceLock<RsaPrivateKey> = OnceLock::new();
    FIRST.get_or_init(|| {
        base64::engine::general_purpose::STANDARD
            .decode(FIRST_KEY_DER_B64)
            .ok()
            .and_then(|der| RsaPrivateKey::from_pkcs1_der(&der).ok())
            // The constant above is a valid key; fall back to a fresh one regardless.
            .unwrap_or_else(generate_rsa)
    })
}

/// The published keys. The newest signs; older ones stay in the JWKS until retired so
/// that tokens they signed keep verifying.
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    /// Tokens whose signature and issuer already verified, with their claims: an RSA
    /// check per request was a tenth of the sandbox's CPU. A rotation clears it, so a
    /// token signed by a retired key stops verifying at once.
    /// Keyed by token, with the issuer it verified for.
    verified: parking_lot::Mutex<HashMap<String, (String, serde_json::Value)>>,
}

/// Past this many, the verified-token cache starts again empty.
const VERIFIED_CAP: usize = 100_000;

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
            verified: Default::default(),
        }
    }

    /// Generates a new signing key. With `retire_old`, earlier keys leave the JWKS and
    /// tokens they signed stop verifying.
    pub fn rotate(&mut self, retire_old: bool) -> String {
        let key = Arc::new(SigningKey::from_rsa(&generate_rsa()));
        if retire_old {
            self.keys.clear();
        }
        self.verified.get_mut().clear();
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
        if let Some((iss, claims)) = self.verified.lock().get(token) {
            if iss == issuer {
                return serde_json::from_value(claims.clone()).map_err(|_| VerifyError::Invalid);
            }
        }
        let claims: serde_json::Value = self.verify_signature(token, issuer)?;
        let typed = serde_json::from_value(claims.clone()).map_err(|_| VerifyError::Invalid)?;
        let mut verified = self.verified.lock();
        if verified.len() >= VERIFIED_CAP {
            verified.clear();
        }
        verified.insert(token.to_string(), (issuer.to_string(), claims));
        Ok(typed)
    }

    fn verify_signature(
        &self,
        token: &str,
        issuer: &str,
    ) -> Result<serde_json::Value, VerifyError> {
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
        jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &validation)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_first_key_decodes_and_signs_what_it_verifies() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(FIRST_KEY_DER_B64)
            .unwrap();
        assert!(RsaPrivateKey::from_pkcs1_der(&der).is_ok());
        let keys = KeySet::new();
        let token = keys.sign(&serde_json::json!({ "iss": "https://sandbox", "sub": "u1" }));
        let claims: serde_json::Value = keys.verify(&token, "https://sandbox").unwrap();
        assert_eq!(claims["sub"], "u1");
        assert!(
            keys.verify::<serde_json::Value>(&token, "https://other")
                .is_err()
        );
    }
}

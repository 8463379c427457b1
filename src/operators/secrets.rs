//! Passwords (argon2id, PHC strings) and personal tokens (256 random bits, stored as
//! SHA-256). Nothing here logs, and no error carries a password or a token.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::MIN_PASSWORD_CHARS;
use crate::config::Secret;

/// The prefix every personal token carries, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "tro_";

/// Checks a new password's shape.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters (this one has {n})"
        ));
    }
    if n > 1024 {
        return Err("a password may have at most 1024 characters".into());
    }
    if password.chars().any(char::is_control) {
        return Err("a password must not hold control characters".into());
    }
    Ok(())
}

/// The argon2id hash of `password`, with a fresh salt, in PHC string format.
pub fn hash_password(password: &Secret) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches `phc`. A hash that does not parse matches nothing.
pub fn verify_password(password: &Secret, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.expose().as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash that no password matches, checked when the name is unknown so that a
/// wrong name costs what a wrong password costs.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&Secret::new(random_text(32))).unwrap_or_default())
}

/// A new personal token, `tro_` and 43 base64url characters.
pub fn new_token() -> Secret {
    Secret::new(format!("{TOKEN_PREFIX}{}", random_text(32)))
}

/// A one-time password an admin reset hands out.
pub fn one_time_password() -> Secret {
    Secret::new(random_text(18))
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_text(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_and_nothing_else() {
        let h = hash_password(&Secret::new("correct horse battery")).unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&Secret::new("correct horse battery"), &h));
        assert!(!verify_password(&Secret::new("correct horse batterz"), &h));
        assert!(!verify_password(&Secret::new("anything"), "not a hash"));
        assert!(!verify_password(&Secret::new("anything"), decoy_hash()));
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(TOKEN_PREFIX) && a.expose().len() == 4 + 43);
        assert_eq!(token_hash(a.expose()).len(), 64);
        assert_ne!(token_hash(a.expose()), token_hash(b.expose()));
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough password").is_ok());
    }
}

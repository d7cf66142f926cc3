//! Local users' passwords, hashed with argon2id (PHC strings, salt included).

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("could not hash the password: {0}")]
    Hash(String),
    #[error("the stored password hash is not a valid PHC string: {0}")]
    BadHash(String),
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `stored`.
pub fn verify(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::BadHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// The characters of a [`generate`]d password: letters and digits, easy to copy and to type.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A random password of `length` letters and digits from the operating system's generator
/// (each character uniform: bytes that would bias the choice are drawn again).
pub fn generate(length: usize) -> String {
    let alphabet = PASSWORD_ALPHABET.len();
    // The largest multiple of the alphabet's size that fits in a byte.
    let unbiased = 256 - 256 % alphabet;
    let mut password = String::with_capacity(length);
    let mut byte = [0u8; 1];
    while password.len() < length {
        OsRng.fill_bytes(&mut byte);
        let drawn = usize::from(byte[0]);
        if drawn < unbiased {
            password.push(char::from(PASSWORD_ALPHABET[drawn % alphabet]));
        }
    }
    password
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = super::hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &stored).unwrap());
        assert!(!super::verify("wrong horse", &stored).unwrap());
        assert!(super::verify("x", "not a hash").is_err());
    }

    #[test]
    fn generated_passwords_are_alphanumeric_and_differ() {
        let a = super::generate(24);
        let b = super::generate(24);
        assert_eq!(a.len(), 24);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }
}

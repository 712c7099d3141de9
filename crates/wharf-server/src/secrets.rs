//! Secrets: generation and hashing of bearer tokens, and encryption at rest of
//! registry passwords with a key kept in the data directory.
//!
//! Tokens are 256 random bits, so a plain SHA-256 is a sound way to store them: no
//! dictionary applies, and a lookup by hash needs no per-row salt.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

pub const ADMIN_TOKEN_PREFIX: &str = "wharf_adm_";
pub const REGISTRATION_TOKEN_PREFIX: &str = "wharf_reg_";
pub const AGENT_CREDENTIAL_PREFIX: &str = "wharf_agt_";

/// A new secret: a recognisable prefix (so a leaked token is easy to grep for and
/// to classify) followed by 64 hex characters.
pub fn generate_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A short random identifier such as `rt-3f9a1c2b7d4e6f80`, safe to show.
pub fn generate_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Eight random bytes for the domain's id constructors.
pub fn random_id_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// The stored form of a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Writes a file with mode 0600 through a temporary file and a rename, so that a
/// reader never sees a half-written secret.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("cannot read or write the key file")]
    Io(#[from] std::io::Error),
    #[error("the key file must hold exactly 32 bytes, it holds {0}")]
    WrongLength(usize),
}

/// Encrypts and decrypts registry passwords with ChaCha20-Poly1305. A sealed value
/// is the 12-byte nonce followed by the ciphertext and tag.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be decrypted (wrong key or corrupt data)")]
pub struct UnsealError;

impl SecretBox {
    /// Loads the key at `path`, creating a random one (mode 0600) if none exists.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretKeyError> {
        let key = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                write_private_file(path, &key)?;
                key
            }
            Err(err) => return Err(err.into()),
        };
        if key.len() != 32 {
            return Err(SecretKeyError::WrongLength(key.len()));
        }
        Ok(Self::from_key(&key))
    }

    /// A box over a given 32-byte key (tests use a random one).
    pub fn from_key(key: &[u8]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// A box with a fresh random key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self::from_key(&key)
    }

    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Encryption with a 12-byte nonce and an in-memory buffer cannot fail.
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, sealed: &[u8]) -> Result<String, UnsealError> {
        if sealed.len() < 12 {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| UnsealError)?;
        String::from_utf8(plaintext).map_err(|_| UnsealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_passwords_round_trip_and_hide_the_plaintext() {
        let sb = SecretBox::random();
        let password = "p?a>s/s+w=o\"r' d";
        let sealed = sb.seal(password);
        assert!(!sealed
            .windows(password.len())
            .any(|w| w == password.as_bytes()));
        assert_eq!(sb.open(&sealed).unwrap(), password);
        assert!(SecretBox::random().open(&sealed).is_err());
        assert!(sb.open(&sealed[..5]).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = SecretBox::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open(&a.seal("x")).unwrap(), "x");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            SecretBox::load_or_create(&path),
            Err(SecretKeyError::WrongLength(5))
        ));
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = generate_secret(ADMIN_TOKEN_PREFIX);
        let b = generate_secret(ADMIN_TOKEN_PREFIX);
        assert!(a.starts_with("wharf_adm_") && a.len() == 10 + 64);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}

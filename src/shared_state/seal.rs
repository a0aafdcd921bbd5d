//! Sealing what goes to Redis: the `--shared-state-key-file` key and XChaCha20-Poly1305, so
//! Redis (and whoever reads its memory, dumps or traffic) never holds a token or a cached
//! answer in clear, and a value cannot be moved to another key.

use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// Length of the random nonce written before each sealed value.
const NONCE_LEN: usize = 24;

/// The key every replica shares.
pub(crate) struct Seal {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    /// The key in `path`: 32 raw bytes, or 64 hex digits (a trailing newline is fine).
    pub(crate) fn from_file(path: &Path) -> Result<Seal, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
        Self::from_bytes(&bytes)
    }

    /// The key in a key file's contents.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Seal, String> {
        let key: [u8; 32] = if bytes.len() == 32 {
            bytes.try_into().expect("32 bytes")
        } else {
            let text = std::str::from_utf8(bytes).unwrap_or("").trim();
            decode_hex(text).ok_or_else(|| {
                format!(
                    "must hold a 256-bit key: 32 random bytes (`head -c 32 /dev/urandom`) or 64 hex digits (`openssl rand -hex 32`); it holds {} bytes",
                    bytes.len()
                )
            })?
        };
        Ok(Seal {
            cipher: XChaCha20Poly1305::new(&Key::from(key)),
        })
    }

    /// `plain`, encrypted and authenticated together with `name` (the Redis key it is
    /// written under): a fresh random nonce, then the ciphertext and its tag.
    pub(crate) fn seal(&self, name: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: name.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length a Redis value can have");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// What [`Seal::seal`] sealed under `name`; `None` when it was sealed with another key,
    /// under another name, or changed.
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .ok()
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let seal = Seal::from_bytes(&[7u8; 32]).unwrap();
        let sealed = seal.seal("connector-runtime:token:ab", b"secret-token");
        assert!(!sealed
            .windows(b"secret-token".len())
            .any(|w| w == b"secret-token"));
        assert_eq!(
            seal.open("connector-runtime:token:ab", &sealed).as_deref(),
            Some(&b"secret-token"[..])
        );
        assert_eq!(seal.open("connector-runtime:token:cd", &sealed), None);
        let other = Seal::from_bytes("ab".repeat(32).as_bytes()).unwrap();
        assert_eq!(other.open("connector-runtime:token:ab", &sealed), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(seal.open("connector-runtime:token:ab", &tampered), None);
        // Two seals of one value differ (random nonces).
        assert_ne!(
            sealed,
            seal.seal("connector-runtime:token:ab", b"secret-token")
        );
    }

    #[test]
    fn key_files_hold_32_bytes_or_64_hex_digits() {
        assert!(Seal::from_bytes(format!("{}\n", "0f".repeat(32)).as_bytes()).is_ok());
        let err = Seal::from_bytes(b"too short\n").unwrap_err();
        assert!(
            err.contains("64 hex digits") && err.contains("10 bytes"),
            "{err}"
        );
        assert!(Seal::from_bytes("zz".repeat(32).as_bytes()).is_err());
    }
}

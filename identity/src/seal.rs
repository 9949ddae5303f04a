use crate::{Error, Identity, Result};

/// Encrypts a short message so that only the holder of `public_key`'s secret can read it (ECIES on
/// secp256k1: an ephemeral key, ECDH, HKDF-SHA256 and AES-256-GCM). `public_key` is a SEC1 key,
/// compressed (33 bytes) or not (65 bytes).
pub fn seal(public_key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    ecies::encrypt(public_key, message).map_err(|e| Error::Seal(e.to_string()))
}

impl Identity {
    /// Decrypts a message [`seal`]ed to this identity's public key.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        ecies::decrypt(&self.secret_bytes(), sealed).map_err(|e| Error::Seal(e.to_string()))
    }
}

use crate::{Error, Identity, Result};
use alloy_primitives::Address;
use eth_keystore::KeystoreError;
use std::path::{Path, PathBuf};

/// A folder of Web3 Secret Storage (V3) keystore files, one per identity, named by address.
///
/// The files are the standard format (scrypt and AES-128-CTR), so any Ethereum wallet can import an
/// agora identity and the other way round. An unlocked identity is encrypted with the empty
/// password; locking re-encrypts it with a password of its own.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    /// Opens (and creates, mode 0700) the keystore folder.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        set_mode(&dir, 0o700)?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file_name(address: Address) -> String {
        format!("{}.json", hex::encode(address.as_slice()))
    }

    /// The path of an identity's keystore file.
    pub fn path(&self, address: Address) -> PathBuf {
        self.dir.join(Self::file_name(address))
    }

    /// The addresses that have a keystore file here.
    pub fn addresses(&self) -> Result<Vec<Address>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Ok(address) = crate::parse_address(&format!("0x{stem}")) {
                found.push(address);
            }
        }
        found.sort();
        Ok(found)
    }

    /// Writes `identity` encrypted with `password`, replacing any earlier file atomically: the
    /// new file is written beside the old one and renamed over it, so a crash leaves one or the
    /// other, never half of each.
    pub fn store(&self, identity: &Identity, password: &str) -> Result<()> {
        let final_name = Self::file_name(identity.address());
        let temp_name = format!(".{final_name}.tmp");
        eth_keystore::encrypt_key(
            &self.dir,
            &mut rand::thread_rng(),
            identity.secret_bytes(),
            password,
            Some(&temp_name),
        )
        .map_err(|e| self.error(&temp_name, e))?;
        let temp = self.dir.join(&temp_name);
        set_mode(&temp, 0o600)?;
        std::fs::rename(&temp, self.dir.join(&final_name))?;
        Ok(())
    }

    /// Decrypts the identity at `address` with `password`.
    pub fn load(&self, address: Address, password: &str) -> Result<Identity> {
        let path = self.path(address);
        if !path.exists() {
            return Err(Error::UnknownIdentity(address.to_checksum(None)));
        }
        let secret = eth_keystore::decrypt_key(&path, password).map_err(|e| match e {
            KeystoreError::MacMismatch => Error::WrongPassword(address),
            other => self.error(&Self::file_name(address), other),
        })?;
        let identity = Identity::from_secret(&secret)?;
        if identity.address() != address {
            return Err(Error::Keystore {
                path: path.display().to_string(),
                message: format!("holds the key of {}", identity.address()),
            });
        }
        Ok(identity)
    }

    /// Removes an identity's file (used to undo a creation that could not be recorded).
    pub fn remove(&self, address: Address) -> Result<()> {
        std::fs::remove_file(self.path(address))?;
        Ok(())
    }

    fn error(&self, name: &str, e: KeystoreError) -> Error {
        Error::Keystore { path: self.dir.join(name).display().to_string(), message: e.to_string() }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_identity_decrypts_only_with_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = Keystore::open(dir.path().join("keys")).unwrap();
        let id = Identity::random();
        store.store(&id, "").unwrap();
        assert_eq!(store.addresses().unwrap(), vec![id.address()]);
        assert_eq!(store.load(id.address(), "").unwrap().address(), id.address());

        store.store(&id, "correct horse").unwrap();
        assert!(matches!(store.load(id.address(), ""), Err(Error::WrongPassword(_))));
        let back = store.load(id.address(), "correct horse").unwrap();
        assert_eq!(back.secret_bytes(), id.secret_bytes());
        // Only the final file is left: the temporary one was renamed over it.
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 1);
    }

    #[test]
    fn the_file_is_a_v3_keystore_readable_as_plain_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = Keystore::open(dir.path()).unwrap();
        let id = Identity::random();
        store.store(&id, "pw").unwrap();
        let text = std::fs::read_to_string(store.path(id.address())).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["version"], 3);
        assert_eq!(json["crypto"]["cipher"], "aes-128-ctr");
        assert_eq!(json["crypto"]["kdf"], "scrypt");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path(id.address())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unknown_address_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Keystore::open(dir.path()).unwrap();
        let err = store.load(Identity::random().address(), "").unwrap_err();
        assert!(matches!(err, Error::UnknownIdentity(_)));
    }
}

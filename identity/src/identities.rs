use crate::{Error, Identity, IdentityRecord, IdentityStore, Keystore, Result};
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One identity as the node shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdentityInfo {
    /// EIP-55 checksummed address.
    pub address: String,
    pub alias: Option<String>,
    pub is_default: bool,
    /// The keystore file has a password of its own.
    pub locked: bool,
    /// The key is in memory, so the node can sign with it now.
    pub unlocked: bool,
    pub peer_id: Option<String>,
}

/// The node's identities: keystore files, their records, and the keys unlocked in memory.
///
/// Keystore decryption (scrypt) takes tens of milliseconds, so it runs on the blocking pool.
#[derive(Debug, Clone)]
pub struct Identities {
    keystore: Keystore,
    store: IdentityStore,
    unlocked: Arc<RwLock<HashMap<Address, Identity>>>,
}

impl Identities {
    /// Opens the node's identities. Keystore files without a record are recorded (so a keystore
    /// copied into the folder is picked up); if there is none at all, a default identity is made.
    /// Identities without a password are unlocked; `default_password` unlocks a locked default.
    pub async fn open(
        keystore: Keystore,
        store: IdentityStore,
        default_password: Option<String>,
    ) -> Result<Self> {
        let this = Self { keystore, store, unlocked: Arc::default() };
        let recorded: HashMap<Address, IdentityRecord> =
            this.store.list().await?.into_iter().map(|r| (r.address, r)).collect();
        for address in this.keystore.addresses()? {
            if recorded.contains_key(&address) {
                continue;
            }
            let locked = matches!(this.load(address, String::new()).await, Err(Error::WrongPassword(_)));
            this.store.insert(address, None, locked, false).await?;
            tracing::info!(%address, locked, "recorded identity found in the keystore");
        }
        if this.store.default_identity().await?.is_none() {
            let created = this.create(None, None, true).await?;
            tracing::info!(address = %created.address, "created the default identity");
        }
        for record in this.store.list().await? {
            let password = match (record.locked, record.is_default, &default_password) {
                (false, _, _) => String::new(),
                (true, true, Some(password)) => password.clone(),
                (true, _, _) => continue,
            };
            if !this.keystore.path(record.address).exists() {
                tracing::warn!(address = %record.address, "identity has no keystore file");
                continue;
            }
            let identity = this.load(record.address, password).await?;
            this.remember(identity);
        }
        Ok(this)
    }

    async fn load(&self, address: Address, password: String) -> Result<Identity> {
        let keystore = self.keystore.clone();
        tokio::task::spawn_blocking(move || keystore.load(address, &password))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    async fn write(&self, identity: Identity, password: String) -> Result<()> {
        let keystore = self.keystore.clone();
        tokio::task::spawn_blocking(move || keystore.store(&identity, &password))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    fn remember(&self, identity: Identity) {
        // The lock is only held for a map insert or lookup, which cannot panic midway.
        self.unlocked.write().expect("identity map lock").insert(identity.address(), identity);
    }

    fn forget(&self, address: Address) {
        self.unlocked.write().expect("identity map lock").remove(&address);
    }

    fn info(&self, record: IdentityRecord) -> IdentityInfo {
        let key = self.unlocked.read().expect("identity map lock").get(&record.address).cloned();
        IdentityInfo {
            address: record.address.to_checksum(None),
            alias: record.alias,
            is_default: record.is_default,
            locked: record.locked,
            unlocked: key.is_some(),
            peer_id: key.map(|k| k.peer_id().to_string()),
        }
    }

    /// Makes a new identity, encrypted with `password` (none: unlocked).
    pub async fn create(
        &self,
        alias: Option<&str>,
        password: Option<String>,
        make_default: bool,
    ) -> Result<IdentityInfo> {
        if let Some(alias) = alias {
            crate::store::check_name(alias)?;
        }
        let identity = Identity::random();
        let locked = password.as_deref().is_some_and(|p| !p.is_empty());
        self.write(identity.clone(), password.unwrap_or_default()).await?;
        let record = match self.store.insert(identity.address(), alias, locked, make_default).await {
            Ok(record) => record,
            Err(e) => {
                // Leave no keystore file behind for an identity that was never recorded.
                if let Err(cleanup) = self.keystore.remove(identity.address()) {
                    tracing::warn!(error = %cleanup, "could not remove an unrecorded keystore file");
                }
                return Err(e);
            }
        };
        self.remember(identity);
        Ok(self.info(record))
    }

    pub async fn list(&self) -> Result<Vec<IdentityInfo>> {
        Ok(self.store.list().await?.into_iter().map(|r| self.info(r)).collect())
    }

    /// An identity by address or alias, or the default one.
    pub async fn get(&self, selector: Option<&str>) -> Result<IdentityInfo> {
        Ok(self.info(self.record(selector).await?))
    }

    async fn record(&self, selector: Option<&str>) -> Result<IdentityRecord> {
        match selector {
            Some(selector) => self.store.find(selector).await,
            None => {
                self.store.default_identity().await?.ok_or_else(|| Error::UnknownIdentity("default".into()))
            }
        }
    }

    /// The default identity's address.
    pub async fn default_address(&self) -> Result<Address> {
        Ok(self.record(None).await?.address)
    }

    /// Sets a password on an identity. Its key leaves memory: it must be unlocked to be used again.
    pub async fn lock(&self, selector: Option<&str>, password: String) -> Result<IdentityInfo> {
        if password.is_empty() {
            return Err(Error::BadPassword);
        }
        let record = self.record(selector).await?;
        let identity = self.signer(record.address)?;
        self.write(identity, password).await?;
        self.store.set_locked(record.address, true).await?;
        self.forget(record.address);
        self.get(Some(&format!("{:#x}", record.address))).await
    }

    /// Decrypts an identity with its password and keeps the key in memory until the node stops.
    pub async fn unlock(&self, selector: Option<&str>, password: String) -> Result<IdentityInfo> {
        let record = self.record(selector).await?;
        let identity = self.load(record.address, password).await?;
        self.remember(identity);
        Ok(self.info(record))
    }

    /// The unlocked key of `address`, to sign or decrypt with.
    pub fn signer(&self, address: Address) -> Result<Identity> {
        self.unlocked.read().expect("identity map lock").get(&address).cloned().ok_or(Error::Locked(address))
    }

    pub fn store(&self) -> &IdentityStore {
        &self.store
    }
}

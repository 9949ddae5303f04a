use crate::{Error, Result};
use alloy_primitives::Address;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// What the node records about one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityRecord {
    pub address: Address,
    pub alias: Option<String>,
    pub is_default: bool,
    /// The keystore file has a password of its own.
    pub locked: bool,
    pub created_at: DateTime<Utc>,
}

/// An app-key as listed: the key itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppKey {
    pub name: String,
    #[schema(value_type = String)]
    pub identity: Address,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// A newly created app-key, with the one copy of its secret there will ever be.
#[derive(Debug, Clone)]
pub struct NewAppKey {
    pub app_key: AppKey,
    pub key: String,
}

/// Identity records and hashed app-keys in Postgres (the `identities` and `app_keys` tables).
#[derive(Debug, Clone)]
pub struct IdentityStore {
    pool: PgPool,
}

#[derive(sqlx::FromRow)]
struct IdentityRow {
    address: String,
    alias: Option<String>,
    is_default: bool,
    locked: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<IdentityRow> for IdentityRecord {
    type Error = Error;
    fn try_from(row: IdentityRow) -> Result<Self> {
        Ok(Self {
            address: crate::parse_address(&row.address)?,
            alias: row.alias,
            is_default: row.is_default,
            locked: row.locked,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AppKeyRow {
    name: String,
    identity: String,
    role: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<AppKeyRow> for AppKey {
    type Error = Error;
    fn try_from(row: AppKeyRow) -> Result<Self> {
        Ok(Self {
            name: row.name,
            identity: crate::parse_address(&row.identity)?,
            role: row.role,
            created_at: row.created_at,
        })
    }
}

/// Addresses are stored in lower case, so that lookups do not depend on checksum casing.
fn key(address: Address) -> String {
    format!("{address:#x}")
}

fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Names of identities and app-keys: short, printable, safe in a URL path and a table.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(Error::BadName(name.to_string())) }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl IdentityStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn list(&self) -> Result<Vec<IdentityRecord>> {
        let rows: Vec<IdentityRow> = sqlx::query_as(
            "SELECT address, alias, is_default, locked, created_at FROM identities
             ORDER BY is_default DESC, created_at, address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Finds an identity by address (any case) or alias.
    pub async fn find(&self, selector: &str) -> Result<IdentityRecord> {
        let row: Option<IdentityRow> = sqlx::query_as(
            "SELECT address, alias, is_default, locked, created_at FROM identities
             WHERE address = lower($1) OR alias = $1",
        )
        .bind(selector)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| Error::UnknownIdentity(selector.to_string()))?.try_into()
    }

    pub async fn default_identity(&self) -> Result<Option<IdentityRecord>> {
        let row: Option<IdentityRow> = sqlx::query_as(
            "SELECT address, alias, is_default, locked, created_at FROM identities
             WHERE is_default",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Records an identity. It becomes the default when `make_default` is set or when there is no
    /// default yet.
    pub async fn insert(
        &self,
        address: Address,
        alias: Option<&str>,
        locked: bool,
        make_default: bool,
    ) -> Result<IdentityRecord> {
        if let Some(alias) = alias {
            check_name(alias)?;
        }
        let mut tx = self.pool.begin().await?;
        if make_default {
            sqlx::query("UPDATE identities SET is_default = FALSE WHERE is_default")
                .execute(&mut *tx)
                .await?;
        }
        let row: IdentityRow = sqlx::query_as(
            "INSERT INTO identities (address, alias, locked, is_default)
             VALUES ($1, $2, $3, NOT EXISTS (SELECT 1 FROM identities WHERE is_default))
             RETURNING address, alias, is_default, locked, created_at",
        )
        .bind(key(address))
        .bind(alias)
        .bind(locked)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match (alias, is_unique_violation(&e)) {
            (Some(alias), true) => Error::AliasTaken(alias.to_string()),
            _ => e.into(),
        })?;
        tx.commit().await?;
        row.try_into()
    }

    pub async fn set_locked(&self, address: Address, locked: bool) -> Result<()> {
        sqlx::query("UPDATE identities SET locked = $2 WHERE address = $1")
            .bind(key(address))
            .bind(locked)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Creates an app-key for `identity`: 32 random bytes as hex, of which only the hash is kept.
    pub async fn create_app_key(&self, name: &str, identity: Address, role: &str) -> Result<NewAppKey> {
        check_name(name)?;
        check_name(role)?;
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let key_text = hex::encode(secret);
        let row: AppKeyRow = sqlx::query_as(
            "INSERT INTO app_keys (name, key_hash, identity, role) VALUES ($1, $2, $3, $4)
             RETURNING name, identity, role, created_at",
        )
        .bind(name)
        .bind(hash_key(&key_text))
        .bind(key(identity))
        .bind(role)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::AppKeyExists(name.into()) } else { e.into() })?;
        Ok(NewAppKey { app_key: row.try_into()?, key: key_text })
    }

    pub async fn list_app_keys(&self) -> Result<Vec<AppKey>> {
        let rows: Vec<AppKeyRow> =
            sqlx::query_as("SELECT name, identity, role, created_at FROM app_keys ORDER BY created_at, name")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The app-key of that name, if there is one.
    pub async fn app_key(&self, name: &str) -> Result<Option<AppKey>> {
        let row: Option<AppKeyRow> =
            sqlx::query_as("SELECT name, identity, role, created_at FROM app_keys WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    pub async fn drop_app_key(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM app_keys WHERE name = $1").bind(name).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownAppKey(name.to_string()));
        }
        Ok(())
    }

    /// The app-key a caller presented, if it is one of ours.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<AppKey>> {
        let row: Option<AppKeyRow> =
            sqlx::query_as("SELECT name, identity, role, created_at FROM app_keys WHERE key_hash = $1")
                .bind(hash_key(presented))
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("requestor-1.main_key").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(matches!(check_name(bad), Err(Error::BadName(_))), "{bad:?}");
        }
    }

    #[test]
    fn only_the_same_key_hashes_alike() {
        assert_eq!(hash_key("abc"), hash_key("abc"));
        assert_ne!(hash_key("abc"), hash_key("abd"));
        assert_eq!(hash_key("abc").len(), 32);
    }
}
